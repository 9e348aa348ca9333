"""Every command that reads a whole archive, timed at growing archive sizes, with its peak memory.

For each size an archive's rows are generated (``bench.archive_rows``: 20 sites × 25 cameras, ~3.6 boxes per
image, 30 % animal images, 10 % pending, labels and crops) into a fresh database, deployments are imported, and
then each command runs as its own ``trapline`` process against it, as a user would run it: ``status``, ``enqueue``
(the pending tenth), the three exports, ``review sample -o``, then a tenth of the drawn items gets a person's
label (written as ``review import`` writes them), ``metrics``, ``report``, ``rde`` over every camera, and the
review page's next 50 items in the middle of the set (an HTTP request to ``trapline review serve``, as the
page's script asks after the last item it shows). Each
command's wall time and peak resident memory (maxrss of its process, taken by a small launcher process) are printed; with two or
more sizes, each command's growth exponent (``log(t₂/t₁) / log(n₂/n₁)``, 1 = linear) between the smallest and
the largest size, for time and for memory. Nothing is extrapolated; nothing is asserted.

    python -m bench.archive_scale [--sizes 100000,1000000] [--sqlite] [--commands status,export-csv,...]
                                  [--redis-url URL --database-url ADMIN_URL] [--keep] [--reuse]

``--keep`` leaves each size's database (``trapline_scale_<size>``) on the server; ``--reuse`` runs the commands on
such a kept database instead of generating it again (a 10M-image archive took about 20 minutes to generate here),
so generation and timing can be separate runs: ``--keep --commands ''`` first, ``--reuse`` later.

Without URLs private Redis and PostgreSQL servers are started (``bench.deployment.services``). ``--sqlite``
runs the same commands on a SQLite file instead (the embedded default), to find where it stops being
comfortable.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis
from sqlalchemy import text

from shared.migrations import upgrade
from bench.archive_rows import Generated, add_camera_notes, existing, forget_enqueued, generate
from bench.deployment import REPO, services
from shared.migrations import ensure_schema
from shared.store.engine import make_engine
from tests.support.services import RedisServer

log = logging.getLogger(__name__)

COMMANDS = ("status", "enqueue", "export-csv", "export-md-json", "export-camtrap-dp", "review-sample", "metrics",
            "report", "rde", "review-page")
REVIEWED = 0.1  # share of the drawn items a person labels before metrics and report
PAGE = 50


@dataclass(frozen=True)
class Measured:
    command: str
    images: int
    seconds: float
    peak_mb: float
    exit_code: int
    note: str = ""


def main(argv: Sequence[str] | None = None) -> list[Measured]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated image counts")
    parser.add_argument("--commands", default=",".join(COMMANDS), help=f"a subset of {','.join(COMMANDS)}")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    parser.add_argument("--redis-url")
    parser.add_argument("--database-url", help="a PostgreSQL server's admin URL (a database is made per size)")
    parser.add_argument("--keep", action="store_true", help="keep the generated databases")
    parser.add_argument("--reuse", action="store_true",
                        help="time the commands on databases kept earlier (--keep) instead of generating them")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sizes = [int(s) for s in args.sizes.split(",")]
    commands = [c for c in args.commands.split(",") if c]
    unknown = set(commands) - set(COMMANDS)
    if unknown:
        parser.error(f"unknown commands: {', '.join(sorted(unknown))}")
    if (args.keep or args.reuse) and (args.sqlite or args.database_url is None):
        parser.error("--keep and --reuse need --database-url (a server that outlives the benchmark)")
    print(f"archive_scale: {', '.join(f'{n:,}' for n in sizes)} images on "
          f"{'SQLite' if args.sqlite else 'PostgreSQL'}, {os.cpu_count()} CPU cores; commands: {', '.join(commands)}",
          flush=True)
    measured: list[Measured] = []
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="trapline-scale-"))
        servers = None if args.sqlite else stack.enter_context(services(args.redis_url, args.database_url))
        redis_url = servers.redis_url if servers else stack.enter_context(_redis(args.redis_url, Path(tmp)))
        for n in sizes:
            folder = Path(tmp) / str(n)
            folder.mkdir()
            if servers is None:
                url = f"sqlite:///{folder / 'trapline.db'}"
                ensure_schema(url)
            else:
                # runs side by side on one server stay apart, unless their databases are kept for --reuse
                name = f"trapline_scale_{n}" if args.keep or args.reuse else f"trapline_scale_{os.getpid()}_{n}"
                url = servers.database(name) if args.reuse else servers.new_database(name)
                if args.keep:
                    servers.created.remove(name)
            measured += run_size(url, redis_url, n, commands, folder, args.seed, args.reuse)
            with contextlib.closing(redis.Redis.from_url(redis_url)) as client:
                client.flushdb()
    if len(sizes) > 1:
        print(growth_table(measured, min(sizes), max(sizes)))
    return measured


@contextlib.contextmanager
def _redis(url: str | None, folder: Path) -> Iterator[str]:
    """The given Redis, or a private one (SQLite runs need no PostgreSQL but ``enqueue`` needs a broker)."""
    if url is not None:
        yield url
        return
    server = RedisServer(folder / "redis")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def run_size(url: str, redis_url: str, n: int, commands: Sequence[str], folder: Path, seed: int,
             reuse: bool = False) -> list[Measured]:
    engine = make_engine(url)
    env = _environment(url, redis_url)
    try:
        start = time.perf_counter()
        if reuse:
            upgrade(url)  # as a user would after updating trapline (adding columns: no table is rewritten)
            archive = existing(engine)
            if archive.images != n:
                raise SystemExit(f"the kept database holds {archive.images:,} images, not {n:,}")
            noted = add_camera_notes(engine)
            if noted:
                print(f"  (maker-note columns added to {noted:,} detected images, as generated now)", flush=True)
            if "enqueue" in commands:  # as generated: the pending tenth in no batch, the broker's queues empty
                forget_enqueued(engine)
                redis.Redis.from_url(redis_url).flushdb()
            print(f"\n{n:,} images: kept database, {', '.join(f'{k} {v:,}' for k, v in archive.rows.items())}",
                  flush=True)
        else:
            archive = generate(engine, n, seed)
            print(f"\n{n:,} images: generated {', '.join(f'{k} {v:,}' for k, v in archive.rows.items())} in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
            _trapline(env, folder, "deployments", "import", str(_deployments(archive, folder / "deployments.csv")))
        seconds, peak, _ = _trapline(env, folder, "--help")
        print(f"  {'start-up (--help)':<18} {seconds:>8.2f} s  {peak:>7.0f} MB  every command pays this", flush=True)
        results = []
        for command in commands:
            result = _measure(command, archive, env, folder, engine)
            results.append(result)
            print(f"  {command:<18} {result.seconds:>8.2f} s  {result.peak_mb:>7.0f} MB"
                  f"{'' if result.exit_code == 0 else f'  EXIT {result.exit_code}'}  {result.note}", flush=True)
        return results
    finally:
        engine.dispose()


def _measure(command: str, archive: Generated, env: dict[str, str], folder: Path, engine) -> Measured:
    n = archive.images
    if command == "review-page":
        return _review_page(archive, env, folder, engine)
    arguments = {
        "status": ["status"],
        "enqueue": ["enqueue"],
        "export-csv": ["export", "--format", "csv", "-o", str(folder / "export.csv")],
        "export-md-json": ["export", "--format", "md-json", "-o", str(folder / "export.json")],
        "export-camtrap-dp": ["export", "--format", "camtrap-dp", "-o", str(folder / "camtrap-dp"), "--title",
                              "Scale", "--contributor", "Bench:contact", "--sampling-design", "systematicRandom"],
        "review-sample": ["review", "sample", "--fraction", "0.1", "-o", str(folder / "review.csv")],
        "metrics": ["metrics", "--json"],
        "report": ["report", "-o", str(folder / "report.html")],
        "rde": ["rde"],
    }[command]
    seconds, peak, code = _trapline(env, folder, *arguments)
    note = ""
    if command.startswith("export") and code == 0:
        done = n - archive.pending
        note = f"{done / seconds:,.0f} images/s"
    if command == "review-sample" and code == 0:
        note = f"{_label_sample(engine):,} items labelled for metrics/report"
    return Measured(command, n, seconds, peak, code, note)


# A small process between the benchmark and each command: a child forked from the benchmark itself would count
# the benchmark's own resident memory (copied at fork, kept in maxrss across exec) as the command's peak.
_LAUNCHER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
             "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
             "sys.exit(code)")


def _trapline(env: dict[str, str], folder: Path, *arguments: str) -> tuple[float, float, int]:
    """Run one ``trapline`` command; (seconds, peak resident MB of its process, exit code). Its output goes to a
    log file."""
    log_file, peak_file = folder / "commands.log", folder / "peak-kb"
    with log_file.open("a") as out:
        out.write(f"$ trapline {' '.join(arguments)}\n")
        out.flush()
        start = time.perf_counter()
        code = subprocess.call([sys.executable, "-S", "-c", _LAUNCHER, str(peak_file), sys.executable, "-m",
                                "producer.cli", *arguments], env=env, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - start
    if code != 0:
        tail = log_file.read_text().splitlines()[-5:]
        log.warning("trapline %s exited %d:\n%s", " ".join(arguments), code, "\n".join(tail))
    return seconds, int(peak_file.read_text()) / 1024, code


def _environment(url: str, redis_url: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("TRAPLINE_")}
    return {**keep, "TRAPLINE_DATABASE_URL": url, "TRAPLINE_REDIS_URL": redis_url,
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}


def _deployments(archive: Generated, path: Path) -> Path:
    """One deployment per camera over the whole archive's time span, on a grid of coordinates."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "lat", "lon", "start", "end", "timezone", "camera"])
        for i, camera in enumerate(archive.cameras()):
            writer.writerow([f"dep-{i:03d}", f"{70 + i / 1000:.4f}", f"{29 + i / 1000:.4f}", "2023-01-01",
                             "2030-12-31", "Europe/Oslo", camera])
    return path


def _label_sample(engine) -> int:
    """A person's label on every tenth item of the newest review set (the label the models gave, or Bad), as
    ``review import`` stores them; returns how many."""
    with engine.begin() as connection:
        set_id = connection.scalar(text("SELECT max(id) FROM review_sets"))
        return connection.execute(text(
            "INSERT INTO review_labels (image_id, label, reviewer, labelled_at, source) "
            "SELECT i.image_id, CASE WHEN i.image_id % 7 = 0 THEN 'Bad' ELSE l.final_label END, 'bench', "
            "CURRENT_TIMESTAMP, 'bench' FROM review_items i "
            "JOIN image_labels l ON l.image_id = i.image_id "
            "WHERE i.set_id = :set AND i.image_id % :every = 0"), {"set": set_id, "every": round(1 / REVIEWED)}
        ).rowcount


def _review_page(archive: Generated, env: dict[str, str], folder: Path, engine) -> Measured:
    """``trapline review serve`` started; a jump to the middle of the set (untimed), then what a reviewer waits
    for at each page turn there: the next page, asked for after the last item shown (the time measured); and,
    in the note, the page's state (progress counts and the first unlabelled item, asked for on load)."""
    with engine.connect() as connection:
        items = connection.scalar(text("SELECT count(*) FROM review_items WHERE set_id = "
                                       "(SELECT max(id) FROM review_sets)")) or 0
    try:
        with _server(env, folder, _free_port()) as base:
            middle = max(0, min(items // 2, items - 2 * PAGE))  # a full page follows it
            middle = _get(f"{base}/api/items?offset={middle}&limit={PAGE}&reviewer=bench")["items"]
            last = middle[-1]
            start = time.perf_counter()
            page = _get(f"{base}/api/items?after={last['image_id']}&position={last['position']}&limit={PAGE}"
                        "&reviewer=bench")["items"]
            seconds = time.perf_counter() - start
            start = time.perf_counter()
            _get(f"{base}/api/state?reviewer=bench")
            state = time.perf_counter() - start
    except (OSError, RuntimeError, KeyError, IndexError) as error:
        return Measured("review-page", archive.images, 0.0, 0.0, 1, f"{type(error).__name__}: {error}")
    return Measured("review-page", archive.images, seconds, 0.0, 0,
                    f"set of {items:,} items: next {len(page)} items from the middle; page state {state:.2f} s")


@contextlib.contextmanager
def _server(env: dict[str, str], folder: Path, port: int) -> Iterator[str]:
    with (folder / "review-serve.log").open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "producer.cli", "review", "serve", "--port", str(port)],
                                   env=env, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _get(f"{base}/api/state?reviewer=bench")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"review serve did not start; see {folder / 'review-serve.log'}") from None
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(30)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=600) as response:
        return json.loads(response.read())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def growth_table(measured: Sequence[Measured], small: int, large: int) -> str:
    """Per command: time and memory at the smallest and largest size and their growth exponents."""
    by = {(m.command, m.images): m for m in measured}
    lines = [f"\ngrowth from {small:,} to {large:,} images (exponent 1 = linear, 0 = flat)",
             f"  {'command':<18} {'time':>22} {'exp':>5}  {'peak memory':>18} {'exp':>5}"]
    for command in dict.fromkeys(m.command for m in measured):
        a, b = by.get((command, small)), by.get((command, large))
        if a is None or b is None:
            continue
        ratio = math.log(large / small)
        t_exp = math.log(b.seconds / a.seconds) / ratio if a.seconds > 0 and b.seconds > 0 else float("nan")
        m_exp = math.log(b.peak_mb / a.peak_mb) / ratio if a.peak_mb > 0 and b.peak_mb > 0 else float("nan")
        lines.append(f"  {command:<18} {a.seconds:>9.2f} → {b.seconds:>8.2f} s {t_exp:>5.2f}  "
                     f"{a.peak_mb:>6.0f} → {b.peak_mb:>6.0f} MB {m_exp:>5.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
