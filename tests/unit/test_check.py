"""producer/check.py and `trapline check`, with shared/store/camera_frames.py: the synthetic archive of planted
faults (tests/support/camera_archive.py) registered in a database, its deployments imported, checked camera by
camera from the streamed frames."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy.orm import Session

from producer.check import check_cameras
from producer.cli import main
from shared.config import CheckSettings
from shared.store.camera_frames import camera_frames
from tests.support.camera_archive import EXPECTED, archive, register


def test_every_planted_fault_is_found_from_the_database(session: Session, tmp_path: Path) -> None:
    register(session, tmp_path)

    checked = check_cameras(session, CheckSettings(), now=datetime(2026, 12, 3))

    assert checked.cameras == len(EXPECTED)
    found = {camera: set() for camera in EXPECTED}
    for finding in checked.findings:
        found[finding.camera].add(finding.kind)
    assert found == EXPECTED
    assert checked.lines()[-1] == f"{len(checked.findings)} finding(s) on 7 of 8 camera(s)"


def test_both_streams_hold_each_cameras_frames(session: Session, tmp_path: Path) -> None:
    archive_id = register(session, tmp_path)
    expected = archive()

    for frames in camera_frames(session, [archive_id]):
        by_time, by_path = list(frames.by_time), list(frames.by_path)
        planted, deployments = expected[frames.camera]
        assert by_path == planted  # file order
        assert by_time == sorted(planted, key=lambda f: (f.taken_at, f.rel_path))
        assert [(start, end) for start, end, _ in frames.deployments] == deployments


def test_one_camera(session: Session, tmp_path: Path) -> None:
    register(session, tmp_path)

    checked = check_cameras(session, CheckSettings(), camera="S1/battery", now=datetime(2026, 12, 3))

    assert checked.cameras == 1
    assert [f.kind for f in checked.findings] == ["stopped"]


def test_the_command_prints_each_finding_or_json(cli: CliRunner, sessions, tmp_path: Path) -> None:
    with sessions() as session:
        register(session, tmp_path)

    text = cli.invoke(main, ["check"])
    as_json = cli.invoke(main, ["check", "--json"])
    clean = cli.invoke(main, ["check", "--camera", "S1/clean"])

    assert text.exit_code == as_json.exit_code == clean.exit_code == 0, text.output
    battery = [line for line in text.output.splitlines() if line.startswith("S1/battery")]
    assert battery == ["S1/battery               stopped              2023-07-10 23:30 → 2023-07-31 00:00  "
                       "last frame 2023-07-10 23:30, 20.0 days before the deployment's end 2023-07-31 00:00"]
    findings = json.loads(as_json.output)
    assert {f["kind"] for f in findings if f["camera"] == "S2/future"} == {"clock-future"}
    assert set(findings[0]) == {"camera", "kind", "start", "end", "count", "evidence"}
    assert clean.output.splitlines() == ["no finding on 1 camera(s)"]


def test_operation_periods_and_camera_days(cli: CliRunner, sessions, tmp_path: Path) -> None:
    with sessions() as session:
        register(session, tmp_path)

    text = cli.invoke(main, ["check", "--operation", "--camera", "S1/gap"])
    as_json = cli.invoke(main, ["check", "--operation", "--json"])

    assert text.exit_code == as_json.exit_code == 0, text.output
    # the deployment (May 31 – July 31) less its first day (no frame) and the two weeks without a frame
    assert text.output.splitlines() == [
        "S1/gap                   d2               2023-06-01 00:00 → 2023-06-20 20:00    19.83 days  40/40 scheduled frames",
        "S1/gap                   d2               2023-07-05 08:00 → 2023-07-31 00:00    25.67 days  52/52 scheduled frames",
        "45.50 camera-days in 2 period(s) of 1 deployment(s)"]
    periods = json.loads(as_json.output)
    by_camera = {}
    for period in periods:
        by_camera.setdefault(period["camera"], []).append(period)
    assert "S2/future" not in by_camera  # no deployment: no interval it was meant to run
    assert [(p["days"], p["scheduled"], p["present"]) for p in by_camera["S1/schedule"]] == [(60.0, 120, 117)]
    assert [p["days"] for p in by_camera["S1/battery"]] == [39.9792]
