"""shared/deployments.py and producer/deployments.py: the registry CSV, time zones, membership, import."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from producer.cli import main
from producer.deployments import import_deployments
from shared import store
from shared.config import get_settings
from shared.deployments import DeploymentErrors, iso, localize, parse_deployments, parse_local, zone
from shared.schemas import DetectOutcome, ImageMetadata, OutcomeStatus
from tests.unit.records import add_detector, image_ids

HEADER = "id,lat,lon,start,end,timezone,camera,bait"
GOOD = [HEADER,
        "d1,70.1,29.5,2023-03-01,2023-04-30,Europe/Oslo,s1/c1,true",
        "d2,,,2023-03-01T12:00,2023-03-02T12:00:00+00:00,+02:00,s1/c2,"]


def parse(*lines: str) -> list:
    return parse_deployments(lines, "deployments.csv")


def problems(*lines: str) -> list[str]:
    with pytest.raises(DeploymentErrors) as error:
        parse(*lines)
    return error.value.problems


def test_parses_rows_dates_and_offsets() -> None:
    first, second = parse(*GOOD)

    assert (first.id, first.camera, first.latitude, first.longitude, first.bait) == ("d1", "s1/c1", 70.1, 29.5, True)
    assert (first.starts_at, first.ends_at) == (datetime(2023, 3, 1), datetime(2023, 4, 30, 23, 59, 59))
    assert (first.source, second.source) == ("deployments.csv:2", "deployments.csv:3")
    assert (second.latitude, second.longitude, second.bait) == (None, None, None)
    assert second.starts_at == datetime(2023, 3, 1, 12)
    assert second.ends_at == datetime(2023, 3, 2, 14)  # 12:00Z is 14:00 at +02:00


def test_accepts_camtrap_dp_column_names_and_ignores_others() -> None:
    (record,) = parse("deploymentID,latitude,longitude,deploymentStart,deploymentEnd,timezone,cameraID,baitUse,habitat",
                      "a,1,2,2023-01-01T00:00:00Z,2023-01-02T00:00:00Z,UTC,-/c9,no,tundra")

    assert (record.id, record.camera, record.bait, record.timezone) == ("a", "-/c9", False, "UTC")


@pytest.mark.parametrize(("row", "message"), [
    ("d,95,10,2023-01-01,2023-01-02,UTC,s/c,", "deployments.csv:2: latitude 95 outside -90..90"),
    ("d,10,-181,2023-01-01,2023-01-02,UTC,s/c,", "deployments.csv:2: longitude -181 outside -180..180"),
    ("d,north,10,2023-01-01,2023-01-02,UTC,s/c,", "deployments.csv:2: latitude 'north' is not a number"),
    ("d,10,,2023-01-01,2023-01-02,UTC,s/c,", "deployments.csv:2: give both latitude and longitude, or neither"),
    ("d,1,1,2023-01-01,2023-01-02,Mars/Olympus,s/c,", "deployments.csv:2: unknown timezone 'Mars/Olympus'"),
    ("d,1,1,2023-01-01,2023-01-02,+25:00,s/c,", "deployments.csv:2: unknown timezone '+25:00'"),
    ("d,1,1,2023-02-01,2023-01-01,UTC,s/c,", "deployments.csv:2: end 2023-01-01T23:59:59 is before start 2023-02-01T00:00:00"),
    ("d,1,1,2023-13-01,2023-01-01,UTC,s/c,",
     "deployments.csv:2: start '2023-13-01' is not a date or time (YYYY-MM-DD[THH:MM[:SS]][±hh:mm])"),
    ("d,1,1,2023-01-01,yesterday,UTC,s/c,",
     "deployments.csv:2: end 'yesterday' is not a date or time (YYYY-MM-DD[THH:MM[:SS]][±hh:mm])"),
    ("d,1,1,2023-01-01,2023-01-02,UTC,c7,",
     "deployments.csv:2: camera 'c7' is not site/camera (as `trapline rde list` names cameras; '-' for a missing site)"),
    ("d,1,1,2023-01-01,2023-01-02,UTC,s/c,maybe", "deployments.csv:2: bait 'maybe' is not true or false"),
    (",1,1,2023-01-01,2023-01-02,UTC,s/c,", "deployments.csv:2: id is empty"),
    ("d,1,1,,2023-01-02,UTC,s/c,", "deployments.csv:2: start is empty"),
])
def test_reports_each_bad_value_with_its_line(row: str, message: str) -> None:
    assert problems(HEADER, row) == [message]


def test_reports_missing_columns_on_the_header_line() -> None:
    assert problems("id,lat,start,end,camera", "d,1,2023-01-01,2023-01-02,s/c") == [
        "deployments.csv:1: missing column(s) lon, timezone"]
    assert problems("") == ["deployments.csv:1: missing column(s) id, lat, lon, start, end, timezone, camera"]


def test_reports_duplicates_and_overlaps_and_every_line() -> None:
    found = problems(HEADER,
                     "d1,1,1,2023-01-01,2023-01-31,UTC,s/c,",
                     "",  # blank lines are skipped, and still counted
                     "d1,1,1,2023-03-01,2023-03-31,UTC,s/c,",
                     "d3,1,1,2023-01-31,2023-02-10,UTC,s/c,",
                     "d4,95,1,2023-01-01,2023-01-02,UTC,s/x,")

    assert found == [
        "deployments.csv:4: duplicate id 'd1' (first on line 2)",
        "deployments.csv:6: latitude 95 outside -90..90",
        "deployments.csv:5: deployment 'd3' overlaps 'd1' (deployments.csv:2) on camera s/c",
    ]


def test_time_zones_follow_daylight_saving_time() -> None:
    winter, summer = datetime(2023, 3, 25, 12), datetime(2023, 3, 26, 12)  # Europe switched on the 26th

    assert iso(localize(winter, "Europe/Oslo")) == "2023-03-25T12:00:00+01:00"
    assert iso(localize(summer, "Europe/Oslo")) == "2023-03-26T12:00:00+02:00"
    assert iso(localize(summer, "+01:00")) == "2023-03-26T12:00:00+01:00"  # a clock that ignores DST
    assert iso(localize(datetime(2023, 10, 29, 2, 30), "Europe/Oslo")) == "2023-10-29T02:30:00+02:00"  # repeated hour
    assert iso(localize(winter, "-0330")) == "2023-03-25T12:00:00-03:30"
    assert zone("UTC+05:45").utcoffset(None).total_seconds() == 5.75 * 3600


def test_an_aware_time_is_converted_to_the_deployment_zone_dst_aware() -> None:
    assert parse_local("2023-07-01T10:00:00Z", "Europe/Oslo", False) == datetime(2023, 7, 1, 12)
    assert parse_local("2023-01-01T10:00:00Z", "Europe/Oslo", False) == datetime(2023, 1, 1, 11)


# --- database ----------------------------------------------------------------------------------------


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "deployments.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_import_is_idempotent_and_updates_by_id(session: Session, tmp_path: Path) -> None:
    assert import_deployments(session, write(tmp_path, *GOOD)) == 2
    assert import_deployments(session, write(tmp_path, HEADER, "d1,71,29.5,2023-03-01,2023-04-30,Europe/Oslo,s1/c1,"))
    session.commit()

    rows = {d.id: d for d in store.deployments.deployments(session)}
    assert sorted(rows) == ["d1", "d2"]
    assert (rows["d1"].latitude, rows["d1"].bait, rows["d1"].source) == (71.0, None, "deployments.csv:2")


def test_import_refuses_an_overlap_with_a_registered_deployment(session: Session, tmp_path: Path) -> None:
    import_deployments(session, write(tmp_path, *GOOD))

    with pytest.raises(DeploymentErrors) as error:
        import_deployments(session, write(tmp_path, HEADER, "d9,1,1,2023-04-30,2023-05-30,UTC,s1/c1,"))

    assert error.value.problems == [
        "deployments.csv:2: deployment 'd9' overlaps 'd1' (deployments.csv:2) on camera s1/c1"]


def test_images_belong_by_camera_and_local_time_inclusive(session: Session, tmp_path: Path) -> None:
    archive = store.images.get_or_create_archive(session, "/data/a", None, "{site}/{camera}/...")
    paths = ["s1/c1/first.jpg", "s1/c1/last.jpg", "s1/c1/after.jpg", "s1/c2/other.jpg", "c1/nosite.jpg"]
    store.images.register_images(session, archive.id, [
        {"rel_path": p, "size": 1, "mtime": 0.0, "site": p.split("/")[0] if p.count("/") == 2 else None,
         "camera": p.split("/")[-2]} for p in paths])
    ids = image_ids(session, archive)
    times = [datetime(2023, 3, 1), datetime(2023, 4, 30, 23, 59, 59), datetime(2023, 5, 1), datetime(2023, 3, 2),
             datetime(2023, 3, 2)]
    version = add_detector(session)
    store.outcomes.save_detect_outcomes(session, None, version.id, [
        DetectOutcome(ids[p], OutcomeStatus.DONE, metadata=ImageMetadata("a" * 64, 10, 10, taken_at=t))
        for p, t in zip(paths, times, strict=True)])
    import_deployments(session, write(tmp_path, HEADER, GOOD[1], "d3,1,1,2023-01-01,2023-12-31,UTC,-/c1,"))

    owners = store.deployments.deployments_of(session, list(ids.values()))
    count, undeployed = store.deployments.undeployed_images(session, [archive.id], 10)

    assert {p: owners.get(ids[p]) for p in paths} == {
        "s1/c1/first.jpg": "d1", "s1/c1/last.jpg": "d1", "s1/c1/after.jpg": None, "s1/c2/other.jpg": None,
        "c1/nosite.jpg": "d3"}
    assert (count, undeployed) == (2, ["/data/a/s1/c1/after.jpg", "/data/a/s1/c2/other.jpg"])


# --- command line and migration --------------------------------------------------------------------


@pytest.fixture
def cli(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    monkeypatch.chdir(tmp_path)  # no .env of the working tree
    monkeypatch.setenv("TRAPLINE_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    yield sqlite_url
    get_settings.cache_clear()


def test_cli_imports_all_lines_or_none_and_lists(cli: str, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = write(tmp_path, *GOOD, "d7,95,1,2023-01-01,2023-01-02,UTC,s/c,")

    result = runner.invoke(main, ["deployments", "import", str(bad)])

    assert result.exit_code == 1
    assert "deployments.csv:4: latitude 95 outside -90..90" in result.output
    assert "1 problem(s) in deployments.csv; nothing was imported" in result.output
    assert json.loads(runner.invoke(main, ["deployments", "list", "--json"]).stdout) == []

    result = runner.invoke(main, ["deployments", "import", str(write(tmp_path, *GOOD))])
    assert result.exit_code == 0, result.output
    assert "imported 2 deployments" in result.stdout
    listed = json.loads(runner.invoke(main, ["deployments", "list", "--json"]).stdout)
    assert [(r["id"], r["camera"], r["start"], r["timezone"]) for r in listed] == [
        ("d1", "s1/c1", "2023-03-01T00:00:00", "Europe/Oslo"), ("d2", "s1/c2", "2023-03-01T12:00:00", "+02:00")]
    assert "no coordinates" in runner.invoke(main, ["deployments", "list"]).stdout


# --- clock offsets -----------------------------------------------------------------------------------------------

CLOCK = "id,lat,lon,start,end,timezone,camera,cameraTime,actualTime"


def test_a_clock_offset_is_the_true_time_minus_the_cameras() -> None:
    slow, fast, right = parse(CLOCK, "d1,70,29,2023-03-01,2023-03-31,UTC,s1/c1,2023-03-01T09:00,2023-03-01T10:00:30",
                              "d2,70,29,2023-03-01,2023-03-31,UTC,s1/c2,2023-03-01T10:02:00,2023-03-01T10:00:00",
                              "d3,70,29,2023-03-01,2023-03-31,UTC,s1/c3,,")

    assert (slow.clock_offset_s, fast.clock_offset_s, right.clock_offset_s) == (3630.0, -120.0, None)
    # the interval on the camera's clock, which its images' EXIF times are read on
    assert (slow.camera_starts_at, slow.camera_ends_at) == (datetime(2023, 2, 28, 22, 59, 30),
                                                            datetime(2023, 3, 31, 22, 59, 29))
    assert right.camera_starts_at == right.starts_at


@pytest.mark.parametrize(("cells", "message"), [
    ("2023-03-01T09:00,", "give both camera_time and actual_time"),
    (",2023-03-01T09:00", "give both camera_time and actual_time"),
    ("yesterday,2023-03-01T09:00", "camera_time 'yesterday' is not a date or time"),
])
def test_a_clock_offset_needs_both_times(cells: str, message: str) -> None:
    (problem,) = problems(CLOCK, f"d1,70,29,2023-03-01,2023-03-31,UTC,s1/c1,{cells}")

    assert problem.startswith("deployments.csv:2: ") and message in problem


def test_overlaps_are_judged_on_the_cameras_clock() -> None:
    # back to back in true time, but the second deployment's camera clock runs an hour behind: on the clock its
    # images carry, the two intervals overlap, so an image could belong to both
    assert problems(CLOCK, "d1,70,29,2023-03-01,2023-03-31,UTC,s1/c1,,",
                    "d2,70,29,2023-04-01,2023-04-30,UTC,s1/c1,2023-04-01T09:00,2023-04-01T10:00") == [
        "deployments.csv:3: deployment 'd2' overlaps 'd1' (deployments.csv:2) on camera s1/c1"]


def test_images_belong_by_their_true_time(session: Session, tmp_path: Path) -> None:
    # the camera runs an hour slow: 23:30 on its clock on March 31 is 00:30 on April 1, after the deployment
    archive = store.images.get_or_create_archive(session, "/data/a", None, "{site}/{camera}/...")
    times = {"s1/c1/early.jpg": datetime(2023, 2, 28, 23, 30), "s1/c1/late.jpg": datetime(2023, 3, 31, 23, 30)}
    store.images.register_images(session, archive.id, [{"rel_path": p, "size": 1, "mtime": 0.0, "site": "s1",
                                                       "camera": "c1"} for p in times])
    ids = image_ids(session, archive)
    version = add_detector(session)
    store.outcomes.save_detect_outcomes(session, None, version.id, [
        DetectOutcome(ids[p], OutcomeStatus.DONE, metadata=ImageMetadata("a" * 64, 10, 10, taken_at=t))
        for p, t in times.items()])
    import_deployments(session, write(tmp_path, CLOCK,
                                      "d1,70,29,2023-03-01,2023-03-31,UTC,s1/c1,2023-03-01T09:00,2023-03-01T10:00"))

    owners = store.deployments.deployments_of(session, list(ids.values()))
    finder = store.deployments.deployment_finder(session)

    assert {p: owners.get(ids[p]) for p in times} == {"s1/c1/early.jpg": "d1", "s1/c1/late.jpg": None}
    # the exports' in-memory lookup agrees with the database's
    assert {p: finder.find("s1/c1", t) for p, t in times.items()} == {"s1/c1/early.jpg": ("d1", 3600.0),
                                                                      "s1/c1/late.jpg": None}
