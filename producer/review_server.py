"""`trapline review serve`: the review page, served on this machine.

A person opens the page, sees one image of the review set at a time with its boxes and the models' labels,
and accepts or changes the label with the keyboard or the mouse; each label is stored at once with the
reviewer's name and time (``review_labels``, source ``web``). An image's event (``trapline events``) is shown
as a strip of its frames, and one label can be given to the whole event (source ``web event <id>``). The same
page lists the suspected repeat detections (RDE clusters): one sample image with the box, a strip of
instances, confirm or reject.

The page asks for items a page at a time and for each image scaled to the screen, so a set of thousands of
images never loads at once. One session per request; :class:`ReviewApp` holds the logic as plain methods,
``producer.review_http`` the HTTP server that routes to it, and ``producer.review_security`` what it checks.
Images are served only when the page shows them: the set's, their events' frames, and those of the RDE clusters'
strips.

Bound to 127.0.0.1 by default; beyond this machine only with ``--allow-remote`` and a login token. Requests
whose ``Host`` is not the address served are refused (DNS rebinding), as are requests from other sites, and
writes must be JSON posted from the page's own origin (a cross-site form cannot post JSON without a CORS
preflight, which this server never grants).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from producer.review_http import BEFORE, FROM, ID_MAX, Near, RequestError, ReviewServer
from producer.review_security import check_binding
from shared.config import Settings
from shared.containers import read_image_bytes
from shared.db import DetectionRow, Event, ImageLabel, RdeCluster, ReviewSet
from shared.errors import NotFound
from shared.labels import DETECTION_CATEGORIES, LabelRules
from shared.rde import decisions
from shared.review import REVIEW_LABELS
from shared.store import events, images, rde, results, review, review_page

log = logging.getLogger(__name__)

PAGE_SIZE_MAX = 200
STRIP_INSTANCES = 12  # instances shown under an RDE cluster's sample
IMAGE_SIDE_MAX = 4096
JPEG_QUALITY = 85
RDE_STATUSES = ("suspected", "confirmed", "rejected")
REVIEWER_MAX = 128  # characters: review_labels.reviewer and rde_clusters.decided_by
EVENT_IMAGES_MAX = 500  # images of one event the page lists, and labels at once


@dataclass
class ReviewApp:
    """What the page can ask for, over one review set."""

    sessions: sessionmaker[Session]
    set_id: int
    detector_version_id: int
    rules: LabelRules  # relabelling after an RDE decision, and the box thresholds the page draws
    crop_threshold: float
    default_reviewer: str = ""

    # --- reads -----------------------------------------------------------------------------------

    def state(self, reviewer: str) -> dict[str, Any]:
        with self.sessions() as session:
            review_set = session.get(ReviewSet, self.set_id)
            progress = review_page.set_progress(session, self.set_id, reviewer)
            first = review_page.first_unlabelled(session, self.set_id, reviewer, progress)
            suspected, _ = rde.rde_cluster_page(session, self.detector_version_id, "suspected", 0, 0)
        return {
            "set": {"id": self.set_id, "fraction": review_set.fraction, "seed": review_set.seed,
                    "all_animals": review_set.all_animals, "items": progress.items},
            "progress": {"mine": progress.mine, "anyone": progress.anyone, "first_unlabelled": first and first.position,
                         "first_unlabelled_id": first and first.image_id},
            "labels": list(REVIEW_LABELS), "reviewer": self.default_reviewer, "suspected_clusters": suspected,
            "thresholds": {DETECTION_CATEGORIES[c]: self.rules.thresholds.for_category(c) for c in DETECTION_CATEGORIES},
        }

    def items(self, offset: int, limit: int, reviewer: str, near: Near | None = None) -> dict[str, Any]:
        """A page of items: from ``offset`` (a jump: its cost grows with the offset), or next to an item of the
        set (``near``: the next or previous page, at the same cost wherever it is)."""
        limit = min(limit, PAGE_SIZE_MAX)
        with self.sessions() as session:
            if near is None:
                page = review_page.review_page(session, self.set_id, reviewer, offset, limit)
            elif near.side == BEFORE:
                page = review_page.page_before(session, self.set_id, reviewer, near.image_id, limit, near.position)
            else:
                page = review_page.page_after(session, self.set_id, reviewer, near.image_id, limit,
                                              inclusive=near.side == FROM, position=near.position)
            ids = [item.image_id for item in page]
            boxes = results.detections_of(session, ids, self.detector_version_id)
            crops = results.crops_of(session, {i.image_id: i.label for i in page if i.label is not None})
            of_image = events.events_of(session, ids)
            return {"offset": page[0].position if near is not None and page else offset, "items": [
                {"position": item.position, "image_id": item.image_id, "path": item.path, "site": item.site,
                 "camera": item.camera, "taken_at": item.taken_at.isoformat() if item.taken_at else None,
                 "reason": item.reason, "mine": item.mine, **_model_labels(item.label),
                 "event": _event(of_image.get(item.image_id)),
                 "boxes": [_box(row, crops.get(item.image_id, {}).get(n)) for n, row in enumerate(boxes[item.image_id])]}
                for item in page]}

    def event(self, event_id: int, reviewer: str) -> dict[str, Any]:
        """An event with an image in the set: its images in time order (the first ``EVENT_IMAGES_MAX``), each with
        whether it is in the set and this reviewer's label."""
        with self.sessions() as session:
            event = self._event_of_set(session, event_id)
            members = events.event_members(session, self.set_id, event_id, reviewer, EVENT_IMAGES_MAX)
            return {**_event(event), "members": [
                {"image_id": m.image_id, "path": m.path, "taken_at": m.taken_at.isoformat(), "in_set": m.in_set,
                 "mine": m.mine} for m in members]}

    def _event_of_set(self, session: Session, event_id: int) -> Event:
        event = session.get(Event, event_id) if 0 < event_id <= ID_MAX else None
        if event is None or not events.event_in_set(session, self.set_id, event_id):
            raise RequestError(HTTPStatus.NOT_FOUND, f"no event {event_id} in review set {self.set_id}")
        return event

    def clusters(self, status: str | None, offset: int, limit: int) -> dict[str, Any]:
        if status is not None and status not in RDE_STATUSES:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"status must be one of {', '.join(RDE_STATUSES)}")
        with self.sessions() as session:
            total, page = rde.rde_cluster_page(session, self.detector_version_id, status, offset,
                                               min(limit, PAGE_SIZE_MAX))
            return {"total": total, "offset": offset, "clusters": [
                {**_cluster(cluster), "instances": [
                    {"image_id": row.image_id, "bbox": [row.x, row.y, row.w, row.h], "conf": row.conf}
                    for row in rde.rde_instances(session, cluster.id, STRIP_INSTANCES)]}
                for cluster in page]}

    def image(self, image_id: int, max_side: int) -> bytes:
        """The image as JPEG, upright (EXIF orientation applied, as the detector saw it), at most ``max_side``."""
        from PIL import Image, ImageOps, UnidentifiedImageError

        with self.sessions() as session:
            sources = images.load_sources(session, [image_id]) if self.shows(session, image_id) else []
        if not sources:
            raise RequestError(HTTPStatus.NOT_FOUND, f"no image {image_id} on this page")
        side = max(16, min(max_side, IMAGE_SIDE_MAX))
        try:
            with Image.open(io.BytesIO(read_image_bytes(sources[0]))) as image:
                image.draft("RGB", (side, side))
                shown = ImageOps.exif_transpose(image).convert("RGB")
                shown.thumbnail((side, side))
                out = io.BytesIO()
                shown.save(out, "JPEG", quality=JPEG_QUALITY)
                return out.getvalue()
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as error:
            raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"cannot show image {image_id}: {error}") from error

    def shows(self, session: Session, image_id: int) -> bool:
        """Whether the page shows this image: one of the set's, in an event with one of the set's, or in the
        strip of one of the detector version's RDE clusters (as :meth:`clusters` lists them)."""
        if review_page.in_review_set(session, self.set_id, image_id):
            return True
        if events.shares_event_with_set(session, self.set_id, image_id):
            return True
        return any(image_id in {row.image_id for row in rde.rde_instances(session, cluster_id, STRIP_INSTANCES)}
                   for cluster_id in review_page.clusters_with_image(session, self.detector_version_id, image_id))

    # --- writes ----------------------------------------------------------------------------------

    def save_label(self, body: dict[str, Any]) -> dict[str, Any]:
        image_id, label, reviewer = body.get("image_id"), body.get("label"), _reviewer(body)
        if label not in REVIEW_LABELS:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"label must be one of {', '.join(REVIEW_LABELS)}")
        if type(image_id) is not int:  # exactly: true and false are ints to isinstance
            raise RequestError(HTTPStatus.BAD_REQUEST, "image_id must be an integer")
        now = datetime.now(UTC)
        with self.sessions.begin() as session:
            if not 0 < image_id <= ID_MAX or not review_page.in_review_set(session, self.set_id, image_id):
                raise RequestError(HTTPStatus.NOT_FOUND, f"image {image_id} is not in review set {self.set_id}")
            review.save_review_labels(session, [(image_id, label, reviewer, "web")], now)
        log.info("%s labelled image %d %s", reviewer, image_id, label)
        return {"image_id": image_id, "label": label, "reviewer": reviewer, "labelled_at": now.isoformat()}

    def save_event_label(self, event_id: int, body: dict[str, Any]) -> dict[str, Any]:
        """One label for every image of an event with an image in the set (source ``web event <id>``): a
        person who saw the whole burst or visit says what it holds at once."""
        label, reviewer = body.get("label"), _reviewer(body)
        if label not in REVIEW_LABELS:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"label must be one of {', '.join(REVIEW_LABELS)}")
        now = datetime.now(UTC)
        with self.sessions.begin() as session:
            event = self._event_of_set(session, event_id)
            if event.images > EVENT_IMAGES_MAX:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"event {event_id} has {event.images:,} images, more than "
                                   f"{EVENT_IMAGES_MAX} to label at once: label them one by one, or group events "
                                   "with a shorter TRAPLINE_EVENTS__GAP_MINUTES")
            ids = events.event_images(session, event_id)
            review.save_review_labels(session, [(i, label, reviewer, f"web event {event_id}") for i in ids], now)
        log.info("%s labelled event %d (%d images) %s", reviewer, event_id, len(ids), label)
        return {"event_id": event_id, "image_ids": ids, "label": label, "reviewer": reviewer,
                "labelled_at": now.isoformat()}

    def decide(self, cluster_id: int, body: dict[str, Any]) -> dict[str, Any]:
        decision, reviewer = body.get("decision"), _reviewer(body)
        if decision not in ("confirm", "reject"):
            raise RequestError(HTTPStatus.BAD_REQUEST, "decision must be confirm or reject")
        with self.sessions.begin() as session:
            cluster = session.get(RdeCluster, cluster_id)
            if cluster is None or cluster.detector_version_id != self.detector_version_id:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no RDE cluster {cluster_id}")
            decided = decisions.decide(session, cluster_id, decision == "confirm", reviewer, self.rules,
                                       self.crop_threshold)
            result = _cluster(cluster)
        log.info("%s %sed RDE cluster %d (%d images, %d relabelled)", reviewer, decision, cluster_id, decided.images,
                 decided.relabelled.relabelled)
        return {**result, "images_relabelled": decided.relabelled.relabelled,
                "images_to_classify": len(decided.relabelled.to_classify)}


def _reviewer(body: dict[str, Any]) -> str:
    reviewer = body.get("reviewer")
    if not isinstance(reviewer, str) or not reviewer.strip():
        raise RequestError(HTTPStatus.BAD_REQUEST, "a reviewer name is needed")
    name = reviewer.strip()
    if len(name) > REVIEWER_MAX:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"a reviewer name has at most {REVIEWER_MAX} characters")
    if not name.isprintable():  # it goes to the log as is
        raise RequestError(HTTPStatus.BAD_REQUEST, "a reviewer name cannot contain line breaks or control characters")
    return name


def _model_labels(label: ImageLabel | None) -> dict[str, Any]:
    if label is None:
        return {"final_label": None}
    return {"final_label": label.final_label, "detection_label": label.detection_label,
            "quality_label": label.quality_label, "p_bad": label.p_bad, "animal_present": label.animal_present,
            "counts": label.counts or {}}


def _event(event: Event | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {"id": event.id, "source": event.source, "images": event.images, "start": event.start_at.isoformat(),
            "end": event.end_at.isoformat()}


def _box(row: DetectionRow, crop: Any) -> dict[str, Any]:  # Classification | None
    box = {"category": DETECTION_CATEGORIES.get(row.category, str(row.category)), "conf": row.conf,
           "bbox": [row.x, row.y, row.w, row.h], "suppressed": row.suppressed}
    if crop is not None:
        box["crop_label"], box["crop_conf"] = crop.label, crop.conf
    return box


def _cluster(cluster: RdeCluster) -> dict[str, Any]:
    """A cluster as the page reads it; ``instance_count`` is its boxes (the listing's ``instances`` is a strip
    of some of them)."""
    return {"id": cluster.id, "camera": cluster.camera, "bbox": cluster.bbox,
            "category": DETECTION_CATEGORIES.get(cluster.category, str(cluster.category)),
            "instance_count": cluster.instances, "images": cluster.images, "status": cluster.status,
            "decided_by": cluster.decided_by,
            "decided_at": cluster.decided_at.isoformat() if cluster.decided_at else None}


def open_review(session: Session, set_id: int | None) -> ReviewSet:
    """The review set to serve: the one asked for, else the newest."""
    review_set = review.review_set(session, set_id)
    if review_set is None:
        raise NotFound(f"no review set {set_id}" if set_id is not None else "no review set yet",
                       "draw one with `trapline review sample`")
    return review_set


def review_server(sessions: sessionmaker[Session], settings: Settings, set_id: int | None, host: str, port: int,
                  reviewer: str | None, allow_remote: bool = False, token: str | None = None) -> ReviewServer:
    """`trapline review serve`: a server for a review set (the newest by default), not yet serving; beyond
    loopback only with ``allow_remote`` and a login ``token`` (which loopback requires too when given)."""
    check_binding(host.strip("[]"), allow_remote, token)
    with sessions() as session:
        review_set = open_review(session, set_id)
        set_id, detector_version_id = review_set.id, review_set.detector_version_id
    app = ReviewApp(sessions, set_id, detector_version_id, LabelRules.of(settings), settings.crops.threshold,
                    reviewer or "")
    return ReviewServer(app, host, port, allow_remote=allow_remote, token=token)
