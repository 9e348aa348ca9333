"""shared/ecology.py, shared/store/ecology.py and producer/ecology.py (`trapline ecology`) on a synthetic archive
whose events and effort are known: RAI, detection histories, effort matrix and naive occupancy computed by hand."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from producer.ecology import compute, write_tables
from shared import store
from shared.camera_health import OperationPeriod
from shared.config import Settings
from shared.db import Image, ImageLabel, Outcome
from shared.schemas import OutcomeStatus, Stage
from shared.ecology import EventSpecies, Occasions, detection_history, naive_occupancy, occasions
from tests.unit.records import NOW, add_detector

JUNE = datetime(2023, 6, 1)
REGISTRY = ["id,lat,lon,start,end,timezone,camera",
            "dA,70.1,29.5,2023-06-01T00:00:00,2023-06-21T00:00:00,UTC,A/c1",  # 20 camera-days
            "dB,70.2,29.6,2023-06-01T00:00:00,2023-06-11T00:00:00,UTC,B/c1"]  # 10 camera-days
# (camera, time, crop counts, a person's label): the animals' frames; every third day an empty frame besides
ANIMALS = [
    ("A/c1", datetime(2023, 6, 2, 10, 0), {"vul_vul": 1}, None),  # one event of two frames: two foxes at most
    ("A/c1", datetime(2023, 6, 2, 10, 5), {"vul_vul": 2, "Rock": 3}, None),  # Rock: a junk class
    ("A/c1", datetime(2023, 6, 9, 10, 0), {"ran_tar": 3}, None),
    ("A/c1", datetime(2023, 6, 12, 10, 0), {"vul_vul": 1}, "Animal"),  # a person agreed
    ("A/c1", datetime(2023, 6, 16, 10, 0), {"vul_vul": 1}, None),
    ("A/c1", datetime(2023, 6, 22, 10, 0), {"vul_vul": 1}, None),  # after the deployment: no effort
    ("B/c1", datetime(2023, 6, 3, 8, 0), {"vul_vul": 1}, None),
    ("B/c1", datetime(2023, 6, 5, 9, 0), {"vul_vul": 1}, "Empty"),  # a person saw no fox
]


def build(session: Session, tmp_path: Path) -> tuple[int, int]:
    """The archive, its deployments and events; (archive id, detector version id)."""
    from producer.deployments import import_deployments

    detector = add_detector(session)
    archive = store.images.get_or_create_archive(session, "/data/eco", None, "{site}/{camera}/...")
    frames = [(c, t, counts, person) for c, t, counts, person in ANIMALS]
    for camera, last in (("A/c1", 20), ("B/c1", 10)):
        frames += [(camera, JUNE + timedelta(days=day, minutes=30), {}, None) for day in range(0, last, 3)]
    for n, (camera, taken_at, counts, person) in enumerate(frames):
        site, name = camera.split("/")
        image = Image(archive_id=archive.id, rel_path=f"{camera}/IMG_{n:04}.JPG", size=1, mtime=0.0, site=site,
                      camera=name, taken_at=taken_at)
        session.add(image)
        session.flush()
        session.add(Outcome(image_id=image.id, stage=Stage.DETECT, detector_version_id=detector.id,
                            status=OutcomeStatus.DONE, finished_at=NOW))
        session.add(ImageLabel(image_id=image.id, detector_version_id=detector.id, detection_label="Animal",
                               merged_label="Animal", counts=counts, animal_present="Animal" if counts else "Empty",
                               has_human=False, v_quality=1, final_label="Animal" if counts else "Empty",
                               crops_version_id=None, updated_at=NOW))
        if person:
            store.review.save_review_labels(session, [(image.id, person, "kim", "labels.csv:2")], NOW)
    registry = tmp_path / "deployments.csv"
    registry.write_text("\n".join(REGISTRY) + "\n")
    import_deployments(session, registry)
    store.events.make_events(session, [archive.id], timedelta(minutes=30))
    session.flush()
    return archive.id, detector.id


def test_rai_histories_and_occupancy_as_computed_by_hand(session: Session, tmp_path: Path) -> None:
    _, detector = build(session, tmp_path)

    result = compute(session, Settings(), detector)

    assert {(p.camera, p.days) for p in result.periods} == {("A/c1", 20.0), ("B/c1", 10.0)}
    assert [(r.site, r.species, r.events, r.individuals, r.camera_days, r.rai) for r in result.rai] == [
        ("A", "ran_tar", 1, 3, 20.0, 5.0), ("A", "vul_vul", 3, 4, 20.0, 15.0), ("B", "vul_vul", 1, 1, 10.0, 10.0)]
    t = result.tallies
    assert (t.counted, t.reviewed, t.outside_effort) == (5, 1, 1)
    assert result.when == Occasions(JUNE, 7, 3)
    assert result.matrix == {"A": [7.0, 7.0, 6.0], "B": [7.0, 3.0, 0.0]}
    assert result.histories == {"vul_vul": {"A": [1, 1, 1], "B": [1, 0, None]},
                                "ran_tar": {"A": [0, 1, 0], "B": [0, 0, None]}}
    assert result.occupancy() == [("ran_tar", 1, 2, 0.5), ("vul_vul", 2, 2, 1.0)]


def test_the_tables_are_written_in_the_tools_shapes(session: Session, tmp_path: Path) -> None:
    _, detector = build(session, tmp_path)
    out = tmp_path / "eco"

    files = write_tables(compute(session, Settings(), detector), out)

    def read(name: str) -> list[list[str]]:
        with (out / name).open(newline="") as file:
            return list(csv.reader(file))

    assert len(files) == 10  # no species has the 20 events an activity density needs: no activity.png
    assert read("activity.csv") == [["time", "species", "events", "bandwidth", "hour", "density_per_hour"]]
    assert read("detection_history/vul_vul.csv") == [["station", "o1", "o2", "o3"], ["A", "1", "1", "1"],
                                                     ["B", "1", "0", "NA"]]
    assert read("detection_history/ran_tar_unmarked.csv") == [["site", "y.1", "y.2", "y.3"], ["A", "0", "1", "0"],
                                                              ["B", "0", "0", "NA"]]
    assert read("effort_matrix.csv")[1:] == [["A", "7.0", "7.0", "6.0"], ["B", "7.0", "3.0", "0.0"]]
    assert read("rai.csv")[0] == ["site", "species", "events", "individuals", "camera_days", "rai_per_100_days"]
    assert read("rai.csv")[2] == ["A", "vul_vul", "3", "4", "20.0", "15.0"]
    assert read("occupancy.csv")[1:] == [["ran_tar", "1", "2", "0.5"], ["vul_vul", "2", "2", "1.0"]]
    assert read("effort.csv")[1][:2] == ["A/c1", "dA"]


def test_activity_of_the_species_with_enough_events(session: Session, tmp_path: Path) -> None:
    from shared.activity import bandwidth, day_radians, density

    _, detector = build(session, tmp_path)
    settings = Settings(ecology={"activity_min_events": 2})

    result = compute(session, settings, detector)
    files = write_tables(result, tmp_path / "eco")

    fox = [day_radians(t) for t in (datetime(2023, 6, 2, 10), datetime(2023, 6, 12, 10), datetime(2023, 6, 16, 10),
                                     datetime(2023, 6, 3, 8))]  # the counted fox events' starts, in stream order
    assert sorted(result.tallies.times["vul_vul"]) == sorted(fox)
    assert list(result.activity["clock"]) == ["vul_vul"]  # one reindeer event is not enough
    fitted = result.activity["clock"]["vul_vul"]
    assert fitted.events == 4 and fitted.bandwidth == pytest.approx(bandwidth(fox))
    assert len(fitted.hours) == 97 and fitted.hours[40] == 10.0
    assert fitted.per_hour[40] == pytest.approx(density(fox, [day_radians(datetime(2023, 1, 1, 10))],
                                                        fitted.bandwidth)[0] * 2 * 3.141592653589793 / 24)
    assert sum(fitted.per_hour[:-1]) * 0.25 == pytest.approx(1.0, rel=1e-3)  # a density over 24 hours
    assert result.overlaps == [] and (tmp_path / "eco" / "activity.png") in files
    # apparent solar time: the stations are at 29.5° and 29.6° east, on UTC: about 2 h later than the clock
    later = [(s - c) * 24 * 60 / (2 * 3.141592653589793)  # minutes; appended event by event, in step
             for s, c in zip(result.tallies.solar["vul_vul"], result.tallies.times["vul_vul"], strict=True)]
    # in event order (A's on June 2, 12 and 16 at 29.5° E, B's on June 3 at 29.6° E): 4 minutes a degree east,
    # plus the equation of time of those days (almanac values, to the ~0.5 min of NOAA's series)
    assert later == [pytest.approx(m, abs=0.6) for m in (118 + 2.2, 118 + 0.3, 118 - 0.4, 118.4 + 2.1)]
    assert list(result.activity["solar"]) == ["vul_vul"] and (tmp_path / "eco" / "activity_solar.png") in files


def test_cli_ecology(cli: CliRunner, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    from producer.cli import main

    with sessions.begin() as session:
        _, detector = build(session, tmp_path)

    done = cli.invoke(main, ["ecology", "-o", str(tmp_path / "eco"), "--occasion-days", "10",
                             "--detector", str(detector)])

    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0] == ("30.0 camera-days at 2 site(s); 5 events with animals counted (1 with a person's label on "
                        "a frame, 4 on the models alone), 1 outside the operation periods left out")
    assert lines[1] == "2 occasion(s) of 10 day(s) from 2023-06-01"
    assert "naive occupancy vul_vul: 2/2 sites = 1.00" in lines and lines[-1].startswith("wrote 10 file(s)")
    assert lines[-2] == "activity: 0 species with enough events"


def test_without_deployments_there_is_no_effort(cli: CliRunner, sessions: sessionmaker[Session],
                                                tmp_path: Path) -> None:
    from producer.cli import main

    with sessions.begin() as session:
        add_detector(session)
        store.images.get_or_create_archive(session, "/data/eco", None, "{site}/{camera}/...")

    done = cli.invoke(main, ["ecology", "-o", str(tmp_path / "eco")])

    assert done.exit_code == 2 and "no operation periods" in done.output


def period(camera: str, start: datetime, days: float) -> OperationPeriod:
    return OperationPeriod(camera, "d", start, start + timedelta(days=days), 0, 0)


def test_occasions_start_at_the_first_midnight_and_cover_every_period() -> None:
    when = occasions([period("A/c", datetime(2023, 6, 1, 15), 10), period("B/c", datetime(2023, 6, 3), 2)], 7)

    assert when == Occasions(datetime(2023, 6, 1), 7, 2)
    assert (when.index(datetime(2023, 6, 1)), when.index(datetime(2023, 6, 8)), when.index(datetime(2023, 6, 15))) \
        == (0, 1, None)
    assert occasions([], 7) is None
    with pytest.raises(ValueError):
        occasions([period("A/c", JUNE, 1)], 0)


def test_a_history_is_na_without_effort_and_naive_occupancy_counts_surveyed_sites() -> None:
    history = detection_history({("A", 1)}, {"A": [1.0, 2.0, 0.0], "B": [0.0, 0.0, 0.0], "C": [0.5, 0.0, 0.0]})

    assert history == {"A": [0, 1, None], "B": [None, None, None], "C": [0, None, None]}
    assert naive_occupancy(history) == (1, 2, 0.5)
    assert naive_occupancy({}) == (0, 0, None)


def test_an_event_species_holds_its_camera_and_counts() -> None:
    event = EventSpecies(1, "A", "A/c1", JUNE, {"vul_vul": 2})
    assert event.reviewed is False and event.counts["vul_vul"] == 2


def test_the_report_shows_the_ecology_section(session: Session, tmp_path: Path) -> None:
    from producer.report import gather, render
    from shared.config import CheckSettings, EcologySettings
    from shared.labels import Thresholds
    from shared.review import STAGES
    from tests.unit.test_report import Page

    _, detector = build(session, tmp_path)

    page = Page(render(gather(session, detector, Thresholds(), STAGES, NOW, check=CheckSettings(),
                              ecology=EcologySettings(activity_min_events=2))))

    assert page.rows("ecology-rai") == [["A", "ran_tar", "1", "3", "20.0", "5.00"],
                                        ["A", "vul_vul", "3", "4", "20.0", "15.00"],
                                        ["B", "vul_vul", "1", "1", "10.0", "10.00"]]
    assert page.rows("ecology-occupancy") == [["ran_tar", "1", "2", "0.50"], ["vul_vul", "2", "2", "1.00"]]
    assert {"diel activity per species, clock time", "diel activity per species, solar time"} <= {
        alt for alt, _ in page.images}
    text = " ".join(page.text)
    assert "1 rest on a person's label" in text and "over occasions of 7 days" in text
