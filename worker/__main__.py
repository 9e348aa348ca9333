"""Worker entry point: ``python -m worker [celery worker options]``.

``trapline worker`` runs this in the worker's own environment; everything after the module name
goes to ``celery worker`` (queues, pool, concurrency, hostname).
"""

from __future__ import annotations

import logging
import sys

from shared.celery_app import create_celery
from shared.config import get_settings
from worker.tasks import register_tasks


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    app = create_celery(settings)
    register_tasks(app, settings)
    app.worker_main(["worker", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
