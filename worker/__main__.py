"""Worker entry point: ``python -m worker [celery worker options]``.

``trapline worker`` runs this in the worker's own environment; everything after the module name
goes to ``celery worker`` (queues, pool, concurrency, hostname).
"""

from __future__ import annotations

import logging
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


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
