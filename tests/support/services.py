"""Private Redis and PostgreSQL servers that a test may stop and restart.

The shared servers of ``scripts/test-services`` serve every test, so a test that takes its
broker or database down starts its own: on a free port of 127.0.0.1, with its data in a folder of
its own, stopped (and the folder removed) at the end. Redis runs without persistence, so a
restart loses every message, as a crashed broker without AOF would.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _wait_for(condition, what: str, timeout_s: float = START_TIMEOUT_S) -> None:  # callable
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} within {timeout_s} s")


def redis_binary() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    """``redis-server`` without persistence: ``restart`` comes back empty."""

    def __init__(self, directory: Path, binary: str = "redis-server") -> None:
        self.directory = directory
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        _wait_for(lambda: _answers(self.port), f"redis-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=STOP_TIMEOUT_S)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def postgres_bin() -> Path | None:
    """``TRAPLINE_POSTGRES_BIN`` (a folder with initdb, pg_ctl, postgres: bench/gpu_run.sh sets pgserver's), else
    the newest installed PostgreSQL server's binaries (Debian layout), or None."""
    if os.environ.get("TRAPLINE_POSTGRES_BIN"):
        return Path(os.environ["TRAPLINE_POSTGRES_BIN"])
    candidates = sorted(Path("/").glob(POSTGRES_BIN_GLOB.lstrip("/")), key=lambda p: int(p.parent.name))
    found = [c for c in candidates if (c / "initdb").exists() and (c / "pg_ctl").exists()]
    return found[-1] if found else None


class PostgresServer:
    """A throwaway PostgreSQL cluster (trust authentication, fsync off) that can be stopped and started.

    PostgreSQL refuses to run as root: as root the cluster belongs to the ``postgres`` account and
    lives in a folder of its own under the system temporary directory (pytest's folders are
    root-only), as ``scripts/test-services`` does it.
    """

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.as_root = os.geteuid() == 0
        self.directory = Path(tempfile.mkdtemp(prefix="trapline-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=START_TIMEOUT_S * 2)

    def init(self) -> None:
        if self.as_root:
            shutil.chown(self.directory, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.directory / "server.log"), "-w", "start",
                  "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off "
                        "-c autovacuum=off")  # an autovacuum worker would block DROP DATABASE … WITH (FORCE)

    def stop(self, mode: str = "fast") -> None:
        """``fast``: roll back and disconnect every session, as a server restart does."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)
