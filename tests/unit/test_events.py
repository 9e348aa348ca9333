"""shared/events.py: a camera's frames grouped into bursts, time-lapse frames and gap events."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from shared.events import EventFrame, EventSource, frame_source, group_events
from shared.schemas import TriggerMode
from tests.unit.test_maker_notes import ARCTIC
from worker.ml.images import decode

T0 = datetime(2023, 7, 1, 12, 0, 0)
GAP = timedelta(minutes=30)
MOTION, LAPSE = TriggerMode.MOTION.value, TriggerMode.TIME_LAPSE.value


def at(image_id: int, minutes: float, trigger: str | None = None, sequence: int | None = None,
       event: int | None = None) -> EventFrame:
    return EventFrame(image_id, T0 + timedelta(minutes=minutes), trigger, sequence, event)


def grouped(frames: list[EventFrame], gap: timedelta = GAP) -> list[tuple[str, list[int]]]:
    return [(e.source.value, e.image_ids) for e in group_events(frames, gap)]


def test_the_rule_of_each_frame() -> None:
    assert frame_source(at(1, 0, MOTION, 1, 9)) == EventSource.BURST
    assert frame_source(at(1, 0, TriggerMode.EXTERNAL.value, 2, 9)) == EventSource.BURST
    assert frame_source(at(1, 0, LAPSE, 0, 9)) == EventSource.TIME_LAPSE
    assert frame_source(at(1, 0, MOTION, 0, 9)) == EventSource.GAP  # no place in a burst
    assert frame_source(at(1, 0, MOTION, 1, None)) == EventSource.GAP
    assert frame_source(at(1, 0)) == EventSource.GAP  # no maker note
    assert frame_source(at(1, 0, TriggerMode.MANUAL.value, 1, 3)) == EventSource.GAP


def test_gap_rule_joins_frames_up_to_the_gap_apart() -> None:
    frames = [at(1, 0), at(2, 10), at(3, 40), at(4, 70.01), at(5, 200)]

    # 10 and 40 are within 30 of the frame before; 70.01 is 30.01 after 40
    assert grouped(frames) == [("gap", [1, 2, 3]), ("gap", [4]), ("gap", [5])]
    assert grouped(frames, timedelta(minutes=5)) == [("gap", [1]), ("gap", [2]), ("gap", [3]), ("gap", [4]),
                                                      ("gap", [5])]
    assert grouped(frames, timedelta(hours=3)) == [("gap", [1, 2, 3, 4, 5])]
    [event, *_] = group_events(frames, GAP)
    assert (event.start, event.end) == (T0, T0 + timedelta(minutes=40))


def test_bursts_follow_the_cameras_event_numbers() -> None:
    frames = [at(1, 0, MOTION, 1, 9), at(2, 0, MOTION, 2, 9), at(3, 1, MOTION, 1, 10), at(4, 1, MOTION, 2, 10),
              at(5, 1.1, MOTION, 3, 10), at(6, 5, MOTION, 1, 11)]

    # one minute apart but numbered apart: three bursts
    assert grouped(frames) == [("burst", [1, 2]), ("burst", [3, 4, 5]), ("burst", [6])]


def test_a_reused_event_number_after_the_gap_is_a_new_burst() -> None:
    frames = [at(1, 0, MOTION, 1, 3), at(2, 24 * 60, MOTION, 1, 3)]  # the camera's count restarted

    assert grouped(frames) == [("burst", [1]), ("burst", [2])]


def test_time_lapse_frames_are_events_of_their_own_and_leave_a_burst_open() -> None:
    frames = [at(1, 0, LAPSE, 0, 4), at(2, 10, LAPSE, 0, 4), at(3, 11, MOTION, 1, 5), at(4, 12, LAPSE, 0, 5),
              at(5, 12, MOTION, 2, 5), at(6, 20, LAPSE, 0, 5)]

    # each event as it closes: the burst at the end
    assert grouped(frames) == [("time-lapse", [1]), ("time-lapse", [2]), ("time-lapse", [4]), ("time-lapse", [6]),
                               ("burst", [3, 5])]


def test_frames_out_of_time_order_are_refused() -> None:
    with pytest.raises(ValueError, match="out of time order"):
        list(group_events([at(1, 10), at(2, 0)], GAP))


def test_no_frames_no_events() -> None:
    assert grouped([]) == []


def test_the_arctic_frames_group_into_the_bursts_their_cameras_numbered(camera_traps: Path) -> None:
    """The 200 shared Arctic photographs, read as the detect worker reads them: each camera's motion frames
    group by the EventNumber exiftool read (``labels.csv``), and each time-lapse frame stands alone."""
    expected: Counter[str] = Counter()
    grouped_frames: Counter[str] = Counter()
    for labels in sorted((camera_traps / ARCTIC).glob("*/labels.csv")):
        with labels.open(newline="") as file:
            rows = list(csv.DictReader(file))
        frames = []
        for n, row in enumerate(rows):
            m = decode((labels.parent / row["raw_file"]).read_bytes()).metadata
            frames.append(EventFrame(n, m.taken_at, m.trigger, m.sequence, m.event_number))
        frames.sort(key=lambda f: (f.taken_at, rows[f.image_id]["raw_file"]))
        events = list(group_events(frames, GAP))
        by_exiftool = {(row["TriggerMode"], row["EventNumber"] if row["TriggerMode"] == "M" else row["raw_file"])
                       for row in rows}
        assert len(events) == len(by_exiftool), labels.parent.name
        for event in events:
            numbers = {(rows[i]["TriggerMode"], rows[i]["EventNumber"]) for i in event.image_ids}
            assert len(numbers) == 1, [rows[i]["raw_file"] for i in event.image_ids]
            if event.source == EventSource.BURST:  # all the frames of that number, in burst order
                assert len(event.image_ids) == sum(1 for r in rows if (r["TriggerMode"], r["EventNumber"]) == next(
                    iter(numbers)))
                assert [rows[i]["Sequence"].split()[0] for i in event.image_ids] == [
                    str(k) for k in range(1, len(event.image_ids) + 1)]
            expected[event.source.value] += 1
            grouped_frames[event.source.value] += len(event.image_ids)
    assert expected["burst"] > 20 and expected["time-lapse"] > 100 and "gap" not in expected
    assert sum(grouped_frames.values()) == 200
