"""shared/camera_health.py: each fault planted in a synthetic camera's frames is found, named and dated, and a clean
camera gives nothing (tests/support/camera_archive.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from shared.camera_health import Finding, Frame, check_camera, examine_camera
from shared.config import CheckSettings
from tests.support import camera_archive
from tests.support.camera_archive import DEPLOYMENT, EXPECTED, START

NOW = datetime(2026, 12, 3)
DEFAULTS = CheckSettings()


def findings(camera: str, frames, deployments, settings: CheckSettings = DEFAULTS) -> list[Finding]:
    by_time = sorted(frames, key=lambda f: (f.taken_at, f.rel_path))
    return check_camera(camera, iter(by_time), iter(frames), deployments, settings, NOW)


@pytest.mark.parametrize("camera", sorted(EXPECTED))
def test_each_planted_fault_is_found_and_nothing_else(camera: str) -> None:
    frames, deployments = camera_archive.archive()[camera]

    assert {f.kind for f in findings(camera, frames, deployments)} == EXPECTED[camera]


def test_a_gap_names_its_period() -> None:
    frames = camera_archive.gap(camera_archive.clean(), first_day=20, days=14)

    (gap,) = [f for f in findings("S1/C1", frames, [DEPLOYMENT]) if f.kind == "gap"]

    # the last frame before it (day 19, 20:00) and the first after it (day 34, 08:00)
    assert (gap.start, gap.end) == (START + timedelta(days=19, hours=20), START + timedelta(days=34, hours=8))
    assert gap.evidence == "no frame for 14.5 days"


def test_missing_time_lapse_frames_are_counted_against_the_inferred_schedule() -> None:
    frames = camera_archive.missing_time_lapse(camera_archive.clean(), first_day=30, days=3)

    (missing,) = findings("S1/C1", frames, [DEPLOYMENT])

    assert (missing.kind, missing.count) == ("time-lapse-missing", 3)
    assert (missing.start.date(), missing.end.date()) == ((START + timedelta(days=30)).date(),
                                                          (START + timedelta(days=32)).date())
    assert "(08:00, 20:00 daily)" in missing.evidence


def test_a_reset_clock_names_the_files_where_it_jumped() -> None:
    frames = camera_archive.reset_clock(camera_archive.clean(), at=100)

    (backwards,) = [f for f in findings("S1/C1", frames, [DEPLOYMENT]) if f.kind == "clock-backwards"]

    assert backwards.count == 1
    assert "S1/C1/IMG_00100.JPG 2023-06-30 20:00 → S1/C1/IMG_00101.JPG 2000-01-01 00:00" in backwards.evidence


def test_a_burst_with_one_timestamp_is_not_a_clock_fault() -> None:
    # RECONYX bursts: several files with the same second; a minute's slack for clocks rounding
    frames = camera_archive.clean()
    frames.insert(5, frames[4])

    assert findings("S1/C1", camera_archive.numbered("S1/C1", frames), [DEPLOYMENT]) == []


def test_the_thresholds_are_settings() -> None:
    frames = camera_archive.vegetation_day(camera_archive.clean(), count=150)

    assert findings("S1/C1", frames, [DEPLOYMENT]) == []  # 151 motion frames: under the default 200
    (storm,) = findings("S1/C1", frames, [DEPLOYMENT], CheckSettings(motion_per_day=100))
    assert (storm.kind, storm.count) == ("motion-storm", 1)


def test_night_frames_that_stop_are_found_from_the_last_one() -> None:
    frames = camera_archive.clean()
    broken = START + timedelta(days=20)
    frames = [f for f in frames if f.taken_at < broken or 4 <= f.taken_at.hour < 22]

    (night,) = findings("S1/C1", camera_archive.numbered("S1/C1", frames), [DEPLOYMENT])

    assert night.kind == "no-night"
    assert night.start == START + timedelta(days=18, hours=23, minutes=30)  # the last night frame
    assert night.count == 41  # days with motion frames after it


def test_a_camera_without_deployments_is_judged_by_its_own_frames() -> None:
    frames = camera_archive.dead_battery(camera_archive.clean())

    assert findings("S1/C1", frames, []) == []  # nothing says when it should have run


def periods(frames, deployments) -> list[tuple[datetime, datetime, int, int]]:
    by_time = sorted(frames, key=lambda f: (f.taken_at, f.rel_path))
    health = examine_camera("S1/C1", by_time, frames, deployments, DEFAULTS, NOW)
    return [(p.start, p.end, p.scheduled, p.present) for p in health.periods]


def test_a_clean_time_lapse_camera_ran_all_its_deployment_but_the_setup_day() -> None:
    # the deployment starts the day before the first frame: that day the camera took nothing
    assert periods(camera_archive.clean(), [(*DEPLOYMENT, "d1")]) == [
        (START, DEPLOYMENT[1], 120, 120)]


def test_a_short_outage_of_a_time_lapse_camera_is_cut_out_day_by_day() -> None:
    # two days without any frame: shorter than a gap (7 days), but the schedule says the camera was down
    frames = camera_archive.gap(camera_archive.clean(), first_day=10, days=2)

    assert periods(frames, [(*DEPLOYMENT, "d1")]) == [
        (START, START + timedelta(days=10), 20, 20), (START + timedelta(days=12), DEPLOYMENT[1], 96, 96)]


def test_a_motion_camera_is_not_cut_on_quiet_days() -> None:
    # no schedule: a day without frames is a day without animals, not a dead camera
    frames = [f for f in camera_archive.clean() if f.trigger == "motion" and f.taken_at.day % 5]

    assert periods(frames, [(*DEPLOYMENT, "d1")]) == [(DEPLOYMENT[0], DEPLOYMENT[1], 0, 0)]


def test_a_dense_schedule_is_counted_not_listed() -> None:
    # a frame every 10 minutes (144 a day), and one day's afternoon missing
    frames = [Frame(START + timedelta(minutes=10 * n), "time-lapse") for n in range(144 * 20)]
    frames = [f for f in frames if not (START + timedelta(days=5, hours=12) <= f.taken_at < START + timedelta(days=6))]

    (missing,) = findings("S1/C1", camera_archive.numbered("S1/C1", frames), [])

    assert missing.count == 72
    assert missing.evidence.startswith("72 of 144 scheduled frames (144 a day, 00:00 to 23:50) missing over 1 day(s)")
