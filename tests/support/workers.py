"""Real Celery worker processes for integration tests, started and stopped like a deployment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

STOP_TIMEOUT_S = 30


class WorkerProcesses:
    """``python -m worker`` processes serving one queue, each logging to its own file."""

    def __init__(self, environment: dict[str, str], log_dir: Path, queue: str = "detect",
                 python: str = sys.executable) -> None:
        # the workers end with this test process, even when it is killed (worker/__main__.py:end_with_parent)
        self.environment = {**os.environ, **environment, "TRAPLINE_PARENT_PID": str(os.getpid())}
        self.log_dir = log_dir
        self.queue = queue
        self.python = python
        self.processes: list[subprocess.Popen] = []

    def start(self, count: int = 1) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            index = len(self.processes)
            log = (self.log_dir / f"{self.queue}-worker-{index}.log").open("ab")
            self.processes.append(subprocess.Popen(
                [self.python, "-m", "worker", "-Q", self.queue, "-P", "solo", "-l", "INFO",
                 "--hostname", f"{self.queue}{index}@%h", "--without-gossip", "--without-mingle"],
                env=self.environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            ))

    def kill(self, index: int) -> None:
        """SIGKILL one worker, as a crash or an OOM kill would."""
        self.processes[index].send_signal(signal.SIGKILL)
        self.processes[index].wait()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob(f"{self.queue}-worker-*.log")))


def wait_until(condition: Callable[[], bool], timeout_s: float, workers: WorkerProcesses | None = None,
               interval_s: float = 0.5) -> None:
    """Poll ``condition`` until true; on timeout fail with the workers' logs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    tail = workers.logs()[-4000:] if workers else ""
    raise AssertionError(f"condition not met within {timeout_s} s\n--- worker logs ---\n{tail}")
