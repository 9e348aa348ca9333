"""Registration throughput: `trapline scan` (walk, stat, path pattern, bulk insert into PostgreSQL) against a
bare ``os.scandir`` walk with ``stat`` over the same generated archive, in one process. Prints files/s of both
and the ratio; asserts nothing. Target: ≥ 20,000 files/s registered (a million images in under a minute).

    eval "$(scripts/test-services start)"      # or pass --database-url
    python -m bench.scan_throughput [--files 100000] [--archive DIR] [--database-url URL]

The archive (small identical JPEGs in site/camera folders, as a time-lapse card dump looks) is generated once
under ``--archive`` and reused. Each trapline run registers into a fresh database, so every file is new; a
second scan of the same archive (every file already registered) is timed too. The walk runs first, so both
read a warm directory cache.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from producer.enqueue import register_archive
from shared import store
from shared.migrations import upgrade

SITES, CAMERAS = 20, 5
PATTERN = "{site}/{camera}/..."

log = logging.getLogger("bench.scan_throughput")


def generate(root: Path, files: int) -> None:
    """``files`` copies of one small JPEG below ``root``/site/camera (kept when already there)."""
    marker = root / f".generated-{files}"
    if marker.exists():
        return
    from PIL import Image

    data = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 110, 70)).save(data, "JPEG", quality=80)
    payload = data.getvalue()
    per_folder = -(-files // (SITES * CAMERAS))
    written = 0
    for site in range(SITES):
        for camera in range(CAMERAS):
            folder = root / f"site{site:02}" / f"cam{camera}"
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(min(per_folder, files - written)):
                (folder / f"IMG_{n:06}.JPG").write_bytes(payload)
                written += 1
    marker.touch()


def bare_walk(root: str) -> int:
    """The floor: every file's directory entry and stat, nothing else."""
    count, stack = 0, [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif not entry.name.startswith("."):
                    entry.stat()
                    count += 1
    return count


class FreshDatabase:
    """A new PostgreSQL database on the server of ``url`` for one run, dropped afterwards."""

    def __init__(self, url: str) -> None:
        self.server = make_url(url)
        self.name = f"bench_scan_{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> str:
        with create_engine(self.server, isolation_level="AUTOCOMMIT").connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.name}"'))
        url = self.server.set(database=self.name).render_as_string(hide_password=False)
        upgrade(url)
        return url

    def __exit__(self, *exc: object) -> None:
        with create_engine(self.server, isolation_level="AUTOCOMMIT").connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


def trapline_scan(url: str, root: Path) -> tuple[float, int, float, int]:
    """(seconds, added) of a first scan into an empty database and (seconds, added) of a second scan."""
    engine = store.make_engine(url)
    sessions = store.make_sessionmaker(engine)
    timings = []
    for _ in range(2):
        start = time.perf_counter()
        with sessions.begin() as session:
            registration = register_archive(session, root, "finnmark", PATTERN)
        timings += [time.perf_counter() - start, registration.added]
    engine.dispose()
    return tuple(timings)  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--archive", type=Path, default=Path(tempfile.gettempdir()) / "trapline-bench-archive")
    parser.add_argument("--database-url", default=os.environ.get("TRAPLINE_TEST_DATABASE_URL"),
                        help="a PostgreSQL server (default: TRAPLINE_TEST_DATABASE_URL); a fresh database is made")
    parser.add_argument("--repeat", type=int, default=2, help="trapline runs (each into a fresh database)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.database_url or make_url(args.database_url).get_backend_name() != "postgresql":
        parser.error("needs a PostgreSQL URL: --database-url or TRAPLINE_TEST_DATABASE_URL")

    root = args.archive / str(args.files)
    start = time.perf_counter()
    generate(root, args.files)
    log.info("archive: %d files below %s (%.1f s to make or find)", args.files, root, time.perf_counter() - start)

    bare_walk(str(root))  # warm the directory cache
    walks = []
    for _ in range(3):
        start = time.perf_counter()
        count = bare_walk(str(root))
        walks.append(time.perf_counter() - start)
    walk_s = min(walks)
    log.info("bare os.scandir + stat walk: %d files in %.2f s = %.0f files/s (best of 3)", count, walk_s,
             count / walk_s)

    best = None
    for run in range(args.repeat):
        with FreshDatabase(args.database_url) as url:
            first_s, added, again_s, added_again = trapline_scan(url, root)
        log.info("trapline scan run %d: %d new in %.2f s = %.0f files/s; rescan (all known): %d new in %.2f s = "
                 "%.0f files/s", run + 1, added, first_s, added / first_s, added_again, again_s, count / again_s)
        best = first_s if best is None else min(best, first_s)
    rate = count / best
    log.info("RESULT files=%d walk=%.0f files/s trapline=%.0f files/s ratio=%.3f target>=20000 files/s: %s",
             count, count / walk_s, rate, walk_s / best, "met" if rate >= 20_000 else "missed")


if __name__ == "__main__":
    main()
