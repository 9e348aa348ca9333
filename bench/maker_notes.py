"""What reading the camera's maker note (``worker.ml.maker_notes``) costs the detect stage.

The detect stage decodes every image (``worker.ml.images.decode``: header, EXIF, pixels) before its model runs;
the maker note is parsed from EXIF bytes that decode has already read. This times ``decode`` on the shared RECONYX
photographs (the Arctic time-lapse frames and the other RECONYX layouts) with the maker note read and with it
skipped, alternating, in one process, best of ``--rounds``; and the parse alone. The share it adds to decoding is
an upper bound of its share of the detect stage, whose model runs on top of the same decode. Asserts nothing.

    python -m bench.maker_notes [--rounds 15] [--draft 1280]

``--draft``: decode as the worker does for MDv5a's 1280 px (JPEG draft mode: fewer pixels, so the share is
larger than at full size); 0 decodes full size.
"""

from __future__ import annotations

import argparse
import io
import logging
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

from PIL import Image

from worker.ml import images
from worker.ml.maker_notes import NO_NOTES, read_maker_note

log = logging.getLogger("bench.maker_notes")

CAMERA_TRAPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "camera-traps"
OTHER_RECONYX = ("megadetector/idaho-camera-traps.jpg", "animl-py/RCNX1419.JPG", "animl-py/IMG_1160.JPG",
                 "google-cameratrapai/blank.jpg")


def photographs(root: Path) -> list[bytes]:
    paths = sorted((root / "hannaboe-camera_trap_workflow").rglob("*.JPG")) + [root / p for p in OTHER_RECONYX]
    return [path.read_bytes() for path in paths]


def best_of(rounds: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--draft", type=int, default=1280, help="decode's long_side (0: full size)")
    parser.add_argument("--root", type=Path, default=CAMERA_TRAPS, help="the shared photographs")
    args = parser.parse_args(argv)
    data = photographs(args.root)
    long_side = args.draft or None
    notes = [(Image.open(io.BytesIO(d)).getexif().get_ifd(images.EXIF_IFD).get(images.TAG_MAKER_NOTE))
             for d in data]
    assert all(n for n in notes), "every photograph here has a maker note"

    def decode_all() -> None:
        for d in data:
            images.decode(d, long_side=long_side)

    def without_notes() -> None:
        with mock.patch.object(images, "read_maker_note", lambda make, note: NO_NOTES):
            decode_all()

    def parse_all() -> None:
        for note in notes:
            read_maker_note("RECONYX", note)

    with_s, without_s = float("inf"), float("inf")
    for round_ in range(args.rounds):  # alternating, first one then the other first: drift hits both alike
        for run in ((decode_all, without_notes) if round_ % 2 == 0 else (without_notes, decode_all)):
            seconds = best_of(1, run)
            if run is decode_all:
                with_s = min(with_s, seconds)
            else:
                without_s = min(without_s, seconds)
    parse_s = best_of(args.rounds, parse_all)
    n = len(data)
    measured = {"images": n, "decode_with_notes_ms": with_s / n * 1e3, "decode_without_notes_ms": without_s / n * 1e3,
                "parse_us": parse_s / n * 1e6}
    measured["share_of_decode"] = parse_s / without_s
    print(f"{n} RECONYX photographs, decode long side {args.draft or 'full'}, best of {args.rounds}:")
    print(f"  decode with maker notes     {measured['decode_with_notes_ms']:8.3f} ms/image")
    print(f"  decode without maker notes  {measured['decode_without_notes_ms']:8.3f} ms/image")
    print(f"  ratio with/without          {with_s / without_s:8.4f}")
    print(f"  maker-note parse alone      {measured['parse_us']:8.2f} µs/image = "
          f"{measured['share_of_decode']:.3%} of decoding (an upper bound of its share of the detect stage)")
    return measured


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
