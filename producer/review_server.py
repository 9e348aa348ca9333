"""`trapline review serve`: the review page, served on this machine.

A person opens the page, sees one image of the review set at a time with its boxes and the models' labels,
and accepts or changes the label with the keyboard or the mouse; each label is stored at once with the
reviewer's name and time (``review_labels``, source ``web``). The same page lists the suspected repeat
detections (RDE clusters): one sample image with the box, a strip of instances, confirm or reject.

The page asks for items a page at a time and for each image scaled to the screen, so a set of thousands of
images never loads at once. Standard library HTTP server, one thread per request, one session per request;
:class:`ReviewApp` holds the logic as plain methods, :class:`Handler` only routes.

Bound to 127.0.0.1 by default. Requests whose ``Host`` is not the address served are refused (DNS
rebinding), and writes must be JSON posted from the page's own origin (a cross-site form cannot post JSON
without a CORS preflight, which this server never grants).
"""

from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.orm import Session, sessionmaker

from shared import aggregates
from shared.config import Settings
from shared.containers import read_image_bytes
from shared.db import DetectionRow, ImageLabel, RdeCluster, ReviewSet
from shared.errors import NotFound
from shared.labels import DETECTION_CATEGORIES, LabelRules
from shared.rde import decisions
from shared.review import REVIEW_LABELS
from shared.store import images, rde, results, review, review_page

log = logging.getLogger(__name__)

PAGE_SIZE_MAX = 200
STRIP_INSTANCES = 12  # instances shown under an RDE cluster's sample
IMAGE_SIDE_MAX = 4096
JPEG_QUALITY = 85
RDE_STATUSES = ("suspected", "confirmed", "rejected")


class RequestError(Exception):
    """A request the page should not have made: answered with its status and message."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


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
            drawn = aggregates.review_progress(session, self.detector_version_id, set_id=self.set_id)
            total, anyone = sum(p.drawn for p in drawn), sum(p.labelled for p in drawn)
            mine = sum(n for _, name, n in aggregates.reviewer_progress(session, self.detector_version_id,
                                                                        set_id=self.set_id) if name == reviewer)
            first = review_page.first_unlabelled(session, self.set_id, reviewer)
            suspected, _ = rde.rde_cluster_page(session, self.detector_version_id, "suspected", 0, 0)
        return {
            "set": {"id": self.set_id, "fraction": review_set.fraction, "seed": review_set.seed,
                    "all_animals": review_set.all_animals, "items": total},
            "progress": {"mine": mine, "anyone": anyone, "first_unlabelled": first},
            "labels": list(REVIEW_LABELS), "reviewer": self.default_reviewer, "suspected_clusters": suspected,
            "thresholds": {DETECTION_CATEGORIES[c]: self.rules.thresholds.for_category(c) for c in DETECTION_CATEGORIES},
        }

    def items(self, offset: int, limit: int, reviewer: str) -> dict[str, Any]:
        with self.sessions() as session:
            page = review_page.review_page(session, self.set_id, reviewer, offset, min(limit, PAGE_SIZE_MAX))
            ids = [item.image_id for item in page]
            boxes = results.detections_of(session, ids, self.detector_version_id)
            crops = results.crops_of(session, {i.image_id: i.label for i in page if i.label is not None})
            return {"offset": offset, "items": [
                {"position": item.position, "image_id": item.image_id, "path": item.path, "site": item.site,
                 "camera": item.camera, "taken_at": item.taken_at.isoformat() if item.taken_at else None,
                 "reason": item.reason, "mine": item.mine, **_model_labels(item.label),
                 "boxes": [_box(row, crops.get(item.image_id, {}).get(n)) for n, row in enumerate(boxes[item.image_id])]}
                for item in page]}

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
            sources = images.load_sources(session, [image_id])
        if not sources:
            raise RequestError(HTTPStatus.NOT_FOUND, f"no image {image_id}")
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

    # --- writes ----------------------------------------------------------------------------------

    def save_label(self, body: dict[str, Any]) -> dict[str, Any]:
        image_id, label, reviewer = body.get("image_id"), body.get("label"), _reviewer(body)
        if label not in REVIEW_LABELS:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"label must be one of {', '.join(REVIEW_LABELS)}")
        if not isinstance(image_id, int):
            raise RequestError(HTTPStatus.BAD_REQUEST, "image_id must be an integer")
        now = datetime.now(UTC)
        with self.sessions.begin() as session:
            if not review_page.in_review_set(session, self.set_id, image_id):
                raise RequestError(HTTPStatus.NOT_FOUND, f"image {image_id} is not in review set {self.set_id}")
            review.save_review_labels(session, [(image_id, label, reviewer, "web")], now)
        log.info("%s labelled image %d %s", reviewer, image_id, label)
        return {"image_id": image_id, "label": label, "reviewer": reviewer, "labelled_at": now.isoformat()}

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
    return reviewer.strip()[:128]


def _model_labels(label: ImageLabel | None) -> dict[str, Any]:
    if label is None:
        return {"final_label": None}
    return {"final_label": label.final_label, "detection_label": label.detection_label,
            "quality_label": label.quality_label, "p_bad": label.p_bad, "animal_present": label.animal_present,
            "counts": label.counts or {}}


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


# --- HTTP ------------------------------------------------------------------------------------------

ROUTES_GET = {
    "/": "page", "/api/state": "state", "/api/items": "items", "/api/clusters": "clusters",
}
IMAGE_PATH = re.compile(r"^/images/(\d+)\.jpg$")
CLUSTER_PATH = re.compile(r"^/api/clusters/(\d+)$")


def page_html() -> bytes:
    return resources.files("producer").joinpath("static/review.html").read_bytes()


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the server's :class:`ReviewApp`; every answer is JSON, a JPEG or the page."""

    server: ReviewServer
    server_version = "trapline-review"

    def do_GET(self) -> None:  # http.server's naming
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _get(self) -> tuple[str, bytes]:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        app = self.server.app
        if match := IMAGE_PATH.match(url.path):
            return "image/jpeg", app.image(int(match[1]), _int(query, "max", 1600))
        route = ROUTES_GET.get(url.path)
        if route == "page":
            return "text/html; charset=utf-8", page_html()
        if route == "state":
            return _json(app.state(query.get("reviewer", "")))
        if route == "items":
            return _json(app.items(_int(query, "offset", 0), _int(query, "limit", 50), query.get("reviewer", "")))
        if route == "clusters":
            return _json(app.clusters(query.get("status") or None, _int(query, "offset", 0), _int(query, "limit", 20)))
        raise RequestError(HTTPStatus.NOT_FOUND, f"no such page: {url.path}")

    def _post(self) -> tuple[str, bytes]:
        self._check_origin()
        if self.headers.get_content_type() != "application/json":
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON")
        length = int(self.headers.get("Content-Length") or 0)
        if length > 64 * 1024:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as error:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"not JSON: {error}") from error
        if not isinstance(body, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "send a JSON object")
        path = urlsplit(self.path).path
        if path == "/api/labels":
            return _json(self.server.app.save_label(body))
        if match := CLUSTER_PATH.match(path):
            return _json(self.server.app.decide(int(match[1]), body))
        raise RequestError(HTTPStatus.NOT_FOUND, f"no such action: {path}")

    def _check_host(self) -> None:
        if self.headers.get("Host", "") not in self.server.allowed_hosts:
            raise RequestError(HTTPStatus.MISDIRECTED_REQUEST, "unexpected Host header")

    def _check_origin(self) -> None:
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc not in self.server.allowed_hosts:
            raise RequestError(HTTPStatus.FORBIDDEN, "cross-origin request refused")

    def _answer(self, route) -> None:  # bound method
        try:
            self._check_host()
            content_type, body = route()
            status = HTTPStatus.OK
        except RequestError as error:
            status, (content_type, body) = error.status, _json({"error": str(error)})
        except Exception:
            log.exception("review page request %s failed", self.path)
            status, (content_type, body) = HTTPStatus.INTERNAL_SERVER_ERROR, _json({"error": "internal error"})
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store" if content_type != "image/jpeg" else "private, max-age=3600")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self'; "
                                                    "style-src 'unsafe-inline'; script-src 'unsafe-inline'")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
        log.debug("%s %s", self.address_string(), format % args)


class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: ReviewApp, host: str, port: int) -> None:
        super().__init__((host, port), Handler)
        self.app = app
        bound = self.server_address[1]
        self.allowed_hosts = {f"{host}:{bound}", f"127.0.0.1:{bound}", f"localhost:{bound}"}

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}/"


def _json(value: Any) -> tuple[str, bytes]:
    return "application/json", json.dumps(value).encode()


def _int(query: dict[str, str], name: str, default: int) -> int:
    try:
        value = int(query.get(name, default))
    except ValueError as error:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{name} must be an integer") from error
    if value < 0:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{name} must not be negative")
    return value


def open_review(session: Session, set_id: int | None) -> ReviewSet:
    """The review set to serve: the one asked for, else the newest."""
    review_set = review.review_set(session, set_id)
    if review_set is None:
        raise NotFound(f"no review set {set_id}" if set_id is not None else "no review set yet",
                       "draw one with `trapline review sample`")
    return review_set


def review_server(sessions: sessionmaker[Session], settings: Settings, set_id: int | None, host: str, port: int,
                  reviewer: str | None) -> ReviewServer:
    """`trapline review serve`: a server for a review set (the newest by default), not yet serving."""
    with sessions() as session:
        review_set = open_review(session, set_id)
        set_id, detector_version_id = review_set.id, review_set.detector_version_id
    app = ReviewApp(sessions, set_id, detector_version_id, LabelRules.of(settings), settings.crops.threshold,
                    reviewer or "")
    return ReviewServer(app, host, port)
