"""`trapline import md-json`, the part that needs the detect environment: another tool's MegaDetector results file
(MegaDetector's own runner, AddaxAI, Timelapse's recognition files) checked with the megadetector package's
validator, its entries matched to an archive's registered images, and each stored as a detect outcome of the
given detector version, with the image's EXIF and maker note read from its bytes as the detect worker reads
them (no pixel is decoded). Then classify, review, events and ecology go on as after trapline's own detection.

* A path is the entry's ``file`` with the ``prefix`` in front (the other tool ran on a folder below the archive
  root), or an absolute path below the root made relative. Entries that match no image are counted and written,
  one per line, to the unmatched file; nothing else is lost.
* Boxes map by the file's category names (``animal``, ``person``, ``vehicle``) onto trapline's categories; a file
  with another category is refused by name. An entry with ``failure`` is stored as a failed outcome with the
  tool's reason; an image trapline cannot read now is stored failed with its own reason.
* Writing replaces earlier outcomes of the version (importing again is idempotent).

The file is read whole (``json.load``), as the package's validator reads it: memory grows with the file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import store
from shared.calls import ImportMdJson, MdJsonImported
from shared.chunking import chunked
from shared.db import Archive, Image
from shared.errors import ProblemsFound
from shared.schemas import Detection, DetectOutcome, Failure, OutcomeStatus
from worker.ml.images import ImageError, read_metadata, read_source

log = logging.getLogger(__name__)

CHUNK = 500  # entries matched and stored per transaction
SHOWN = 10  # unmatched paths named in the answer
CATEGORIES = {"animal": 1, "person": 2, "vehicle": 3}  # MegaDetector's names, trapline's numbers
ACCESS_FAILURES = ("failure image access", "failure image loading")


class InvalidResults(ProblemsFound):
    """A results file the megadetector package's validator (or trapline's category mapping) refuses."""


def validate(path: Path) -> None:
    """The megadetector package's validator on the file (image existence not checked: the paths are the archive's)."""
    from megadetector.postprocessing.validate_batch_results import (
        ValidateBatchResultsOptions, validate_batch_results,
    )

    options = ValidateBatchResultsOptions()
    options.check_image_existence = False
    options.raise_errors = False
    errors = validate_batch_results(str(path), options)["validation_results"]["errors"]
    if errors:
        raise InvalidResults([str(e) for e in errors], path.name)


def category_map(categories: dict[str, str], name: str) -> dict[str, int]:
    """The file's category ids → trapline's, by name; ``InvalidResults`` naming any other."""
    unknown = sorted(f"{key}: {value}" for key, value in categories.items() if value.lower() not in CATEGORIES)
    if unknown:
        raise InvalidResults([f"detection category {u} is none of {', '.join(CATEGORIES)}" for u in unknown], name)
    return {key: CATEGORIES[value.lower()] for key, value in categories.items()}


def relative_path(file: str, root: str, prefix: str) -> str:
    """The archive-relative path an entry names."""
    path = PurePosixPath(file.replace("\\", "/"))
    if path.is_absolute():
        try:
            return path.relative_to(PurePosixPath(root)).as_posix()
        except ValueError:
            return path.as_posix()  # matches nothing: reported
    return (PurePosixPath(prefix) / path).as_posix() if prefix else path.as_posix()


def import_md_json(session: Session, request: ImportMdJson) -> MdJsonImported:
    """Validate, then store the file's entries chunk by chunk (module doc)."""
    path = Path(request.path)
    validate(path)
    results = json.loads(path.read_text(encoding="utf-8"))
    categories = category_map(results.get("detection_categories") or {}, path.name)
    archive = session.get(Archive, request.archive_id)
    entries = results["images"]
    shown: list[str] = []
    imported = failed = boxes = unmatched = 0
    with open(request.unmatched_file, "w", encoding="utf-8") as unmatched_out:
        for chunk in chunked(entries, CHUNK):
            missing: list[str] = []
            outcomes = list(_outcomes(session, archive, chunk, categories, request.prefix, missing))
            store.outcomes.save_detect_outcomes(session, None, request.detector_version_id, outcomes)
            session.commit()
            imported += len(outcomes)
            failed += sum(o.status == OutcomeStatus.FAILED for o in outcomes)
            boxes += sum(len(o.detections) for o in outcomes)
            unmatched += len(missing)
            unmatched_out.writelines(f"{m}\n" for m in missing)
            shown += missing[:SHOWN - len(shown)]
    detector = (results.get("info") or {}).get("detector")
    log.info("imported %d of %d entries of %s (%d unmatched)", imported, len(entries), path, unmatched)
    return MdJsonImported(images=len(entries), imported=imported, failed=failed, boxes=boxes, unmatched=unmatched,
                          unmatched_shown=shown, detector=detector)


def _outcomes(session: Session, archive: Archive, chunk: Sequence[dict], categories: dict[str, int], prefix: str,
              missing: list[str]) -> Iterator[DetectOutcome]:
    """The chunk's entries that name an image of the archive as outcomes; the others' paths into ``missing``."""
    paths = [relative_path(entry["file"], archive.root, prefix) for entry in chunk]
    ids = dict(session.execute(select(Image.rel_path, Image.id)
                               .where(Image.archive_id == archive.id, Image.rel_path.in_(set(paths)))).all())
    sources = {s.image_id: s for s in store.images.load_sources(session, list(ids.values()))}
    for entry, rel_path in zip(chunk, paths, strict=True):
        image_id = ids.get(rel_path)
        if image_id is None:
            missing.append(entry["file"])
            continue
        if entry.get("failure"):
            reason = str(entry["failure"])
            failure = Failure.UNREADABLE if reason.lower() in ACCESS_FAILURES else Failure.INFERENCE
            yield DetectOutcome(image_id, OutcomeStatus.FAILED, failure=failure, detail=f"{reason} (imported)")
            continue
        try:
            metadata = read_metadata(read_source(sources[image_id]))
        except ImageError as error:
            yield DetectOutcome(image_id, OutcomeStatus.FAILED, failure=error.failure, detail=error.detail)
            continue
        detections = tuple(Detection(categories[str(d["category"])], float(d["conf"]), tuple(d["bbox"]))
                           for d in entry.get("detections") or ())
        yield DetectOutcome(image_id, OutcomeStatus.DONE, metadata=metadata, detections=detections)
