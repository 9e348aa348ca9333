"""Worker entry point: ``python -m worker [celery worker options]``.

``trapline worker`` runs this in the worker's own environment; everything after the module name
goes to ``celery worker`` (queues, pool, concurrency, hostname).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

from shared.celery_app import Queue, create_celery
from shared.config import get_settings
from worker.tasks import register_tasks


def serves_training(argv: list[str]) -> bool:
    """Whether ``-Q``/``--queues`` in these worker options names the train queue."""
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg in ("-Q", "--queues") and i + 1 < len(argv) else \
            arg.split("=", 1)[1] if arg.startswith(("--queues=", "-Q=")) else None
        if value is not None and Queue.TRAIN.value in value.split(","):
            return True
    return False


PARENT_PID = "TRAPLINE_PARENT_PID"  # set by `trapline run` (producer.embedded) for the workers it starts
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def end_with_parent(environment: dict[str, str] = os.environ) -> bool:
    """A worker started by `trapline run` asks the kernel for SIGTERM when that run's process dies, however it
    dies (even SIGKILL), and exits at once if the run is already gone. False where this does not apply: no
    parent named, or not Linux."""
    parent = environment.get(PARENT_PID)
    if not parent or not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        logging.getLogger(__name__).warning("cannot ask to end with the run: errno %d", ctypes.get_errno())
        return False
    if os.getppid() != int(parent):  # the run died between starting this process and the prctl call
        sys.exit(f"the trapline run ({parent}) that started this worker has ended")
    return True


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    end_with_parent()
    settings = get_settings()
    app = create_celery(settings)
    register_tasks(app, settings)
    if serves_training(argv) and "--disable-prefetch" not in argv:
        # A training task is acknowledged on receipt; a prefetched second one would sit acknowledged behind
        # it for hours and be lost with this worker (docs: optimizing.rst, "Disable prefetch").
        argv = [*argv, "--disable-prefetch"]
    app.worker_main(["worker", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
