"""The HTTP side of `trapline review serve`: routing, request bodies, checks and answers.

Standard library server, one thread per request. :class:`Handler` only routes to the server's
:class:`~producer.review_server.ReviewApp`; every answer is JSON, a JPEG or the page, and every answer
(errors included) carries the headers of :data:`producer.review_security.SECURITY_HEADERS`.

What a request must pass, in order: the ``Host`` is this machine's address (loopback only: DNS rebinding);
``Sec-Fetch-Site`` is not another site; the login token, when the server has one; and for writes, an
``Origin`` (if sent) equal to the page's own, a JSON body of a stated length up to :data:`BODY_MAX`. A
connection idle for :attr:`Handler.timeout` seconds (half a request) is closed.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from producer.review_security import (
    FETCH_SITES_REFUSED, SECURITY_HEADERS, address_token, bearer_token, check_binding, cookie_token, is_loopback,
    login_cookie, redacted, same_token, without_token,
)

if TYPE_CHECKING:
    from producer.review_server import ReviewApp

log = logging.getLogger(__name__)

BODY_MAX = 64 * 1024  # bytes of a request body (a label or a decision is well under 1 KiB)
REQUEST_TIMEOUT_S = 30.0  # a connection silent this long (half a request) is closed
ID_MAX = 2**31 - 1  # ids are 32-bit columns; anything larger cannot exist
ROUTES_GET = {
    "/": "page", "/api/state": "state", "/api/items": "items", "/api/clusters": "clusters",
}
IMAGE_PATH = re.compile(r"^/images/(\d{1,10})\.jpg$")
CLUSTER_PATH = re.compile(r"^/api/clusters/(\d{1,10})$")
EVENT_PATH = re.compile(r"^/api/events/(\d{1,10})$")
EVENT_LABELS_PATH = re.compile(r"^/api/events/(\d{1,10})/labels$")
AFTER, FROM, BEFORE = "after", "from", "before"  # where a keyset page of items lies relative to its item
NEAR_SIDES = (AFTER, FROM, BEFORE)


class RequestError(Exception):
    """A request the page should not have made: answered with its status and message."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Near:
    """A page of items asked for next to an item of the set (an image id): the items ``after`` it, ``from`` it
    on, or ``before`` it; ``position`` is the item's own, when the page knows it, to number the page's items."""

    side: str
    image_id: int
    position: int | None = None


@dataclass(frozen=True)
class Reply:
    body: bytes
    content_type: str = "application/json"
    status: HTTPStatus = HTTPStatus.OK
    headers: tuple[tuple[str, str], ...] = ()


def page_html() -> bytes:
    return resources.files("producer").joinpath("static/review.html").read_bytes()


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the server's :class:`ReviewApp`."""

    server: ReviewServer
    server_version = "trapline-review"
    default_request_version = "HTTP/1.0"  # http.server's errors on a bad request line then have headers too
    timeout: float | None = REQUEST_TIMEOUT_S  # socketserver sets it on the connection; tests shorten it

    def do_GET(self) -> None:  # http.server's naming
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _get(self) -> Reply:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        app = self.server.app
        if match := IMAGE_PATH.match(url.path):
            return Reply(app.image(object_id(match[1]), _int(query, "max", 1600)), "image/jpeg")
        if match := EVENT_PATH.match(url.path):
            return _json(app.event(object_id(match[1]), query.get("reviewer", "")))
        route = ROUTES_GET.get(url.path)
        if route == "page":
            return Reply(page_html(), "text/html; charset=utf-8")
        if route == "state":
            return _json(app.state(query.get("reviewer", "")))
        if route == "items":
            return _json(app.items(_int(query, "offset", 0), _int(query, "limit", 50), query.get("reviewer", ""),
                                   _near(query)))
        if route == "clusters":
            return _json(app.clusters(query.get("status") or None, _int(query, "offset", 0), _int(query, "limit", 20)))
        raise RequestError(HTTPStatus.NOT_FOUND, f"no such page: {url.path}")

    def _post(self) -> Reply:
        self._check_origin()
        if self.headers.get_content_type() != "application/json":
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON")
        body = _json_object(self._body())
        path = urlsplit(self.path).path
        if path == "/api/labels":
            return _json(self.server.app.save_label(body))
        if match := CLUSTER_PATH.match(path):
            return _json(self.server.app.decide(object_id(match[1]), body))
        if match := EVENT_LABELS_PATH.match(path):
            return _json(self.server.app.save_event_label(object_id(match[1]), body))
        raise RequestError(HTTPStatus.NOT_FOUND, f"no such action: {path}")

    def _body(self) -> bytes:
        """Exactly the announced body; a client that stops sending is cut off after :attr:`timeout`."""
        self.close_connection = True  # whatever happens, nothing after the body is read on this connection
        length = body_length(self.headers)
        try:
            body = self.rfile.read(length)
        except TimeoutError as error:
            raise RequestError(HTTPStatus.REQUEST_TIMEOUT, "the request body did not arrive in time") from error
        if len(body) < length:
            raise RequestError(HTTPStatus.BAD_REQUEST, "the request body is shorter than its Content-Length")
        return body

    # --- checks ----------------------------------------------------------------------------------

    def _check_host(self) -> None:
        if not self.server.remote and self.headers.get("Host", "") not in self.server.allowed_hosts:
            raise RequestError(HTTPStatus.MISDIRECTED_REQUEST, "unexpected Host header")

    def _check_fetch_site(self) -> None:
        if (self.headers.get("Sec-Fetch-Site") or "").strip().lower() in FETCH_SITES_REFUSED:
            raise RequestError(HTTPStatus.FORBIDDEN, "request from another site refused")

    def _check_origin(self) -> None:
        origin = self.headers.get("Origin")
        if origin is None:
            return
        url = urlsplit(origin)
        if url.scheme != "http" or url.netloc != self.headers.get("Host"):
            raise RequestError(HTTPStatus.FORBIDDEN, "cross-origin request refused")

    def _check_login(self, token: str) -> None:
        offered = (cookie_token(self.headers.get("Cookie"), self.server.port),
                   bearer_token(self.headers.get("Authorization")))
        if not any(same_token(value, token) for value in offered):
            raise RequestError(HTTPStatus.UNAUTHORIZED, "log in first: open the address `trapline review serve` "
                                                        "printed, with ?token=… (or send Authorization: Bearer …)")

    def _login(self, token: str) -> Reply:
        """The login link: a right token becomes a cookie, and the browser goes on to the address without it."""
        if not same_token(address_token(self.path), token):
            raise RequestError(HTTPStatus.UNAUTHORIZED, "wrong login token")
        log.info("%s logged in to the review page", self.address_string())
        return Reply(b"", "text/plain", HTTPStatus.SEE_OTHER,
                     (("Location", without_token(self.path)), ("Set-Cookie", login_cookie(self.server.port, token))))

    # --- answers ---------------------------------------------------------------------------------

    def _reply(self, route: Callable[[], Reply]) -> Reply:
        self._check_host()
        self._check_fetch_site()
        token = self.server.token
        if token is not None:
            if self.command == "GET" and address_token(self.path) is not None:
                return self._login(token)
            self._check_login(token)
        return route()

    def _answer(self, route: Callable[[], Reply]) -> None:
        try:
            reply = self._reply(route)
        except RequestError as error:
            reply = _json({"error": str(error)}, error.status)
        except Exception:
            log.exception("review page request %s failed", redacted(self.path))
            reply = _json({"error": "internal error"}, HTTPStatus.INTERNAL_SERVER_ERROR)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        cached = reply.content_type == "image/jpeg" and reply.status == HTTPStatus.OK
        self.send_header("Cache-Control", "private, max-age=3600" if cached else "no-store")
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def end_headers(self) -> None:
        """Every answer's security headers, also on http.server's own errors (a bad request line, 501)."""
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def version_string(self) -> str:
        return self.server_version  # not Python's version

    def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
        log.debug("%s %s", self.address_string(), redacted(format % args))


class ReviewServer(ThreadingHTTPServer):
    """The review page of ``app`` on ``host``:``port``: loopback (``127.0.0.1``, ``::1``, ``localhost``)
    unless ``allow_remote``, which needs a login ``token``; a token given on loopback is required as well."""

    daemon_threads = True

    def __init__(self, app: ReviewApp, host: str, port: int, *, allow_remote: bool = False,
                 token: str | None = None) -> None:
        host = host.strip("[]")
        check_binding(host, allow_remote, token)
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)
        self.app, self.token, self.remote = app, token, not is_loopback(host)
        self.port: int = self.server_address[1]
        self.allowed_hosts = loopback_hosts(host, self.port)

    @property
    def url(self) -> str:
        return f"http://{url_host(str(self.server_address[0]))}:{self.port}/"


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def loopback_hosts(host: str, port: int) -> set[str]:
    """The ``Host`` headers a browser on this machine sends to the server (without the port on port 80)."""
    names = {url_host(host), "127.0.0.1", "localhost", "[::1]"}
    return {f"{name}:{port}" for name in names} | (names if port == 80 else set())


def body_length(headers: Message) -> int:
    """The body's length as announced: one plain ``Content-Length`` of at most :data:`BODY_MAX`."""
    lengths = headers.get_all("Content-Length") or []
    if headers.get("Transfer-Encoding") is not None or len(lengths) > 1:
        raise RequestError(HTTPStatus.BAD_REQUEST, "send one Content-Length and no Transfer-Encoding")
    if not lengths:
        raise RequestError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length is needed")
    value = lengths[0].strip()
    if not (value.isascii() and value.isdigit()):
        raise RequestError(HTTPStatus.BAD_REQUEST, "Content-Length must be a number of bytes")
    if len(value) > 12 or int(value) > BODY_MAX:
        raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request too large (at most {BODY_MAX} bytes)")
    return int(value)


def object_id(text: str) -> int:
    """An image or cluster id from the address; one too large to exist is not found."""
    value = int(text)
    if value > ID_MAX:
        raise RequestError(HTTPStatus.NOT_FOUND, f"no such id: {text}")
    return value


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"not JSON: {error}") from error
    if not isinstance(value, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, "send a JSON object")
    return value


def _json(value: Any, status: HTTPStatus = HTTPStatus.OK) -> Reply:
    return Reply(json.dumps(value).encode(), "application/json", status)


def _near(query: dict[str, str]) -> Near | None:
    """The item a keyset page lies next to (``after``, ``from`` or ``before``: an image id), if asked for."""
    sides = [side for side in NEAR_SIDES if side in query]
    if not sides:
        return None
    if len(sides) > 1:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"give one of {', '.join(NEAR_SIDES)}")
    position = _int(query, "position", 0) if "position" in query else None
    return Near(sides[0], _int(query, sides[0], 0), position)


def _int(query: dict[str, str], name: str, default: int) -> int:
    try:
        value = int(query.get(name, default))
    except ValueError as error:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{name} must be an integer") from error
    if value < 0:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{name} must not be negative")
    if value > ID_MAX:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{name} is too large")
    return value
