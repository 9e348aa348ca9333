"""worker/ml/maker_notes.py: serial, trigger, burst, event number and temperature from RECONYX maker notes.

The reference is what the authors' exiftool read from the shared Arctic photographs (their ``labels.csv``); the
other layouts are checked on the shared photographs of those cameras, and garbled notes on made-up bytes.
"""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import pytest

from shared.schemas import TriggerMode
from tests.unit.synthetic import exif_jpeg
from worker.ml.images import decode
from worker.ml.maker_notes import NO_NOTES, read_maker_note

ARCTIC = "hannaboe-camera_trap_workflow"
EXIFTOOL_TRIGGERS = {"T": TriggerMode.TIME_LAPSE, "M": TriggerMode.MOTION}


def _arctic_rows(camera_traps: Path) -> list[tuple[Path, dict[str, str]]]:
    rows = []
    for labels in sorted((camera_traps / ARCTIC).glob("*/labels.csv")):
        with labels.open(newline="") as file:
            rows += [(labels.parent / row["raw_file"], row) for row in csv.DictReader(file)]
    return rows


def test_every_arctic_photograph_matches_what_exiftool_read(camera_traps: Path) -> None:
    rows = _arctic_rows(camera_traps)
    assert len(rows) == 200

    for path, row in rows:
        metadata = decode(path.read_bytes()).metadata

        assert metadata.serial == row["SerialNumber"], path
        assert metadata.trigger == EXIFTOOL_TRIGGERS[row["TriggerMode"]], path
        assert f"{metadata.sequence} {metadata.sequence_length}" == row["Sequence"], path
        assert metadata.event_number == int(row["EventNumber"]), path
        assert metadata.temperature_c == int(row["AmbientTemperatureC"]), path


def test_the_arctic_cameras_mix_time_lapse_frames_and_motion_bursts(camera_traps: Path) -> None:
    # what the metadata is for: both kinds of frame are there, bursts numbered 1..n
    found = {(m.trigger, m.sequence, m.sequence_length) for m in
             (decode(path.read_bytes()).metadata for path, _ in _arctic_rows(camera_traps))}

    assert (TriggerMode.TIME_LAPSE, 0, 0) in found
    assert {(TriggerMode.MOTION, 1, 2), (TriggerMode.MOTION, 2, 2)} <= found


@pytest.mark.parametrize(("path", "expected"), [
    # UltraFire (RECONYXUF layout)
    ("megadetector/idaho-camera-traps.jpg", ("UXR6BI02004234", TriggerMode.MOTION, 4, 5, 122, 4)),
    # HyperFire 2 (RECONYXH2 layout)
    ("animl-py/RCNX1419.JPG", ("HLPXEL09019291", TriggerMode.MOTION, 3, 3, 473, 15)),
    # HyperFire (0xf101 layout) of other models
    ("animl-py/IMG_1160.JPG", ("P900HK05277856", TriggerMode.MOTION, 2, 3, 387, 23)),
    ("google-cameratrapai/blank.jpg", ("H550HH12223408", TriggerMode.MOTION, 5, 5, 115, 21)),
])
def test_each_reconyx_layout_is_read(camera_traps: Path, path: str, expected: tuple) -> None:
    m = decode((camera_traps / path).read_bytes()).metadata

    assert (m.serial, m.trigger, m.sequence, m.sequence_length, m.event_number, m.temperature_c) == expected


@pytest.mark.parametrize("path", ["camtrapR/raw_images/StationB/IMG0001.JPG",  # Cuddeback: an undocumented note
                                  "megadetector/orinoquia-thumb-web.jpg",  # Bushnell: a note of zeros
                                  "animl-r/IMAG0004.JPG",  # BolyMedia
                                  "camera_trap_tools/DSCF0001.JPG"])  # Meidase: no note
def test_other_brands_give_no_maker_note_values(camera_traps: Path, path: str) -> None:
    m = decode((camera_traps / path).read_bytes()).metadata

    assert (m.trigger, m.sequence, m.sequence_length, m.event_number, m.temperature_c) == (None,) * 5
    assert m.taken_at is not None  # the standard tags are still read


def _hyperfire(trigger: bytes = b"T\x00", sequence: tuple[int, int] = (0, 0), event: int = 70_000,
               temperature: int = -23, serial: str = "H600HJ01234567") -> bytes:
    words = [0] * 0x2C
    words[0] = 0xF101
    words[7], words[8] = sequence
    words[9], words[10] = event >> 16, event & 0xFFFF
    note = bytearray(struct.pack(f"<{len(words)}H", *words))
    note[12:14] = trigger
    struct.pack_into("<h", note, 0x14 * 2, temperature)
    note[0x15 * 2:0x15 * 2 + 30] = serial.encode("utf-16-le").ljust(30, b"\x00")
    return bytes(note)


def test_a_hyperfire_note_is_read_word_by_word() -> None:
    notes = read_maker_note("RECONYX", _hyperfire(b"M\x00", (2, 3), 70_000, -23))

    # the event number spans two words; the temperature is signed (an Arctic winter)
    assert (notes.trigger, notes.sequence, notes.sequence_length) == (TriggerMode.MOTION, 2, 3)
    assert (notes.event_number, notes.temperature_c, notes.serial) == (70_000, -23, "H600HJ01234567")


@pytest.mark.parametrize(("letter", "trigger"), [(b"E\x00", TriggerMode.EXTERNAL), (b"C\x00", TriggerMode.OTHER),
                                                 (b"X\x00", None), (b"\x00\x00", None)])
def test_trigger_letters(letter: bytes, trigger: TriggerMode | None) -> None:
    assert read_maker_note("RECONYX", _hyperfire(letter)).trigger == trigger


def test_garbled_and_foreign_notes_give_nothing_they_cannot_back() -> None:
    # cut short: nothing trusted
    assert read_maker_note("RECONYX", _hyperfire()[:30]) == NO_NOTES
    # the version word alone does not make a note RECONYX's when the make says otherwise
    assert read_maker_note("Canon", _hyperfire()) == NO_NOTES
    assert read_maker_note("RECONYX", None) == NO_NOTES
    assert read_maker_note("RECONYX", b"") == NO_NOTES
    # unprintable serial and an impossible temperature are left out, the rest kept
    notes = read_maker_note("RECONYX", _hyperfire(serial="\x01\x02bad", temperature=900))
    assert (notes.serial, notes.temperature_c, notes.trigger) == (None, None, TriggerMode.TIME_LAPSE)


def test_a_serial_in_exif_wins_over_the_maker_notes() -> None:
    # BodySerialNumber (0xA431) is the standard place; the maker note only fills a gap
    decoded = decode(exif_jpeg(make="RECONYX", serial="FROM-EXIF", maker_note=_hyperfire(serial="FROM-NOTE")))

    assert decoded.metadata.serial == "FROM-EXIF"
    assert decoded.metadata.trigger == TriggerMode.TIME_LAPSE
    assert decode(exif_jpeg(make="RECONYX", maker_note=_hyperfire(serial="FROM-NOTE"))).metadata.serial == "FROM-NOTE"
