"""Every query trapline runs, one module per concept; callers own the transaction.

- ``engine``: engines, sessions, the dialect-aware INSERT helpers
- ``images``: archives, image registration, where an image's bytes are
- ``model_versions``: the registry of model files and which are promoted
- ``batches``: task messages' rows, pending images
- ``outcomes``: writing a batch's results (outcomes, boxes, classifications, labels)
- ``image_labels``: the per-image labels and what they were derived from
- ``results``: reading results back for exports, the review page and the classify stage
- ``progress``: per stage and per worker, for `trapline status` and `trapline run`
- ``training_runs``, ``review``, ``review_page``, ``rde``, ``deployments``, ``events``: their tables

Counts that reports and metrics read (GROUP BY) live in ``shared.aggregates``. Writes are idempotent:
registration inserts on conflict do nothing; a batch's results replace the rows of an earlier delivery.
"""

from shared.store import (
    batches, deployments, engine, events, image_labels, images, model_versions, outcomes, progress, rde, results,
    review, review_page, training_runs,
)
from shared.store.engine import make_engine, make_sessionmaker

__all__ = [
    "batches", "deployments", "engine", "events", "image_labels", "images", "make_engine", "make_sessionmaker",
    "model_versions", "outcomes", "progress", "rde", "results", "review", "review_page", "training_runs",
]
