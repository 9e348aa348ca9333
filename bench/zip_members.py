"""Zip member reads: ``shared.containers.read_member`` (the zip kept open, its central directory parsed once)
against the old way, ``zipfile.ZipFile(path).read(name)`` per member (the whole central directory parsed for
every read), over the same members of one generated zip, in one process. Prints both times, the ratio and
the memory one open zip's central directory holds; asserts nothing.

    python -m bench.zip_members [--members 100000] [--reads 200] [--repeat 1] [--seed 0]

The zip (tiny stored members in DCIM/NNN folders, as a camera card dump looks) is made in a temporary
directory. Each trapline run starts with no zip open, so its time includes the one parse (its first read,
also printed on its own). The old way takes about half a second a read at 100,000 members: --repeat 1.
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

from shared.containers import forget_open_zips, read_member

log = logging.getLogger("bench.zip_members")


def member_name(index: int) -> str:
    return f"DCIM/{index // 1000:03}RECNX/IMG_{index:06}.JPG"


def generate(path: Path, members: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for index in range(members):
            archive.writestr(member_name(index), b"\xff\xd8%06d\xff\xd9" % index)


def old_way(path: str, names: list[str]) -> list[bytes]:
    found = []
    for name in names:
        with zipfile.ZipFile(path) as archive:
            found.append(archive.read(name))
    return found


def trapline(path: str, names: list[str], first_reads: list[float]) -> list[bytes]:
    """Every member by ``read_member``; the first read's seconds (the parse) are appended to ``first_reads``."""
    forget_open_zips()  # every run parses the central directory once
    start = time.perf_counter()
    found = [read_member(path, names[0])]
    first_reads.append(time.perf_counter() - start)
    return found + [read_member(path, name) for name in names[1:]]


def best_of(repeat: int, run: Callable[[], list[bytes]]) -> tuple[float, list[bytes]]:
    best, result = float("inf"), []
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def central_directory_bytes(path: str) -> int:
    """Python heap held by one open ZipFile of ``path`` (its ZipInfo objects and name index)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    archive = zipfile.ZipFile(path)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    archive.close()
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (the best is printed)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with tempfile.TemporaryDirectory(prefix="trapline-bench-zip-") as tmp:
        path = Path(tmp) / "card.zip"
        start = time.perf_counter()
        generate(path, args.members)
        log.info("zip: %d members, %.1f MB (made in %.1f s)", args.members, path.stat().st_size / 1e6,
                 time.perf_counter() - start)
        names = random.Random(args.seed).sample([member_name(i) for i in range(args.members)], args.reads)

        old_s, old = best_of(args.repeat, lambda: old_way(str(path), names))
        first_reads: list[float] = []
        new_s, new = best_of(args.repeat, lambda: trapline(str(path), names, first_reads))
        assert new == old, "read_member returned other bytes than zipfile"
        log.info("old way, ZipFile(path).read(name) per member: %d reads in %.3f s = %.2f ms/read (best of %d)",
                 args.reads, old_s, 1000 * old_s / args.reads, args.repeat)
        parse_s = min(first_reads)
        log.info("trapline read_member (one parse, then cached): %d reads in %.3f s = %.2f ms/read (best of %d); "
                 "its first read (the parse) %.3f s, the others %.3f ms/read", args.reads, new_s,
                 1000 * new_s / args.reads, args.repeat, parse_s, 1000 * (new_s - parse_s) / (args.reads - 1))
        log.info("one open zip of %d members holds %.1f MB of central directory",
                 args.members, central_directory_bytes(str(path)) / 1e6)
        log.info("RESULT members=%d reads=%d old=%.3f s trapline=%.3f s ratio=%.1f", args.members, args.reads,
                 old_s, new_s, old_s / new_s)
        forget_open_zips()


if __name__ == "__main__":
    main()
