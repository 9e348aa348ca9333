"""What `trapline review serve` refuses, over real HTTP on a free port: bodies of a bad or missing length,
half-sent requests, images the page does not show, requests from other sites, addresses beyond this machine
without a login token, and labels whose image id or reviewer name cannot be stored."""

from __future__ import annotations

import http.client
import io
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import producer.review_server
from producer.cli import main
from producer.review_http import Handler
from producer.review_security import TOKEN_ENV, is_loopback
from producer.review_server import ReviewApp, ReviewServer
from shared import store
from shared.db import RdeCluster, ReviewLabel
from shared.errors import UsageProblem
from shared.labels import LabelRules
from shared.review import Drawn
from tests.unit import test_review_server as base
from tests.unit.records import add_images

review = base.review  # the fixtures: eight photos of one camera, all in the review set and in one RDE cluster
server = base.server
TOKEN = "a-test-login-token-of-32-letters"
SECURITY_HEADERS = {"X-Frame-Options": "DENY", "Cross-Origin-Resource-Policy": "same-origin",
                    "X-Content-Type-Options": "nosniff"}

Answer = tuple[int, http.client.HTTPMessage, bytes]


def start(app: ReviewApp, host: str = "127.0.0.1", **options: object) -> ReviewServer:
    served = ReviewServer(app, host, 0, **options)
    threading.Thread(target=served.serve_forever, daemon=True).start()
    return served


@pytest.fixture
def stop() -> Iterator[list[ReviewServer]]:
    """Servers a test starts itself, stopped after it."""
    started: list[ReviewServer] = []
    yield started
    for served in started:
        served.shutdown()
        served.server_close()


def ask(served: ReviewServer, method: str, path: str, body: object = None, **headers: str) -> Answer:
    """One request, redirects not followed; ``Host`` is the served address unless given."""
    connection = http.client.HTTPConnection("127.0.0.1" if served.address_family == socket.AF_INET else "::1",
                                            served.port, timeout=10)
    data = None if body is None else json.dumps(body).encode()
    sent = {"Host": f"127.0.0.1:{served.port}", **({"Content-Type": "application/json"} if data else {}),
            **{name.replace("_", "-"): value for name, value in headers.items()}}
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def raw(served: ReviewServer, request: bytes, wait: float = 5.0) -> bytes:
    """Send ``request`` as is and leave the connection open: what comes back until the server closes it (a
    server that waits for more fails the test with a timeout)."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=wait) as connection:
        connection.sendall(request)
        return read_all(connection)


def read_all(connection: socket.socket) -> bytes:
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def labels_in(sessions: sessionmaker[Session]) -> list[tuple[int, str, str]]:
    with sessions() as session:
        return [tuple(row) for row in session.execute(select(ReviewLabel.image_id, ReviewLabel.label,
                                                             ReviewLabel.reviewer))]


# --- 1. request bodies ---------------------------------------------------------------------------------------

def post_head(served: ReviewServer, *lines: str) -> bytes:
    return "\r\n".join(["POST /api/labels HTTP/1.1", f"Host: 127.0.0.1:{served.port}",
                        "Content-Type: application/json", *lines, "", ""]).encode()


@pytest.mark.parametrize(("lines", "status", "message"), [
    (["Content-Length: -1"], 400, b"Content-Length must be a number"),
    (["Content-Length: lots"], 400, b"Content-Length must be a number"),
    (["Content-Length: +2"], 400, b"Content-Length must be a number"),
    ([], 411, b"a Content-Length is needed"),
    (["Content-Length: 65537"], 413, b"request too large"),
    (["Content-Length: 99999999999999999999999"], 413, b"request too large"),
    (["Content-Length: 2", "Content-Length: 2"], 400, b"one Content-Length"),
    (["Transfer-Encoding: chunked"], 400, b"no Transfer-Encoding"),
])
def test_a_body_without_a_plain_length_within_the_limit_is_refused_at_once(
        server: ReviewServer, sessions: sessionmaker[Session], lines: list[str], status: int, message: bytes) -> None:
    answer = raw(server, post_head(server, *lines) + b"{}")  # the connection stays open: no waiting for its end
    assert status_of(answer) == status and message in answer
    assert labels_in(sessions) == []


def test_exactly_the_announced_body_is_read(server: ReviewServer, review: tuple[ReviewApp, dict[str, int]],
                                            sessions: sessionmaker[Session]) -> None:
    _, ids = review
    body = json.dumps({"image_id": ids["s1/c1/IMG_0003.JPG"], "label": "Empty", "reviewer": "ann"}).encode()
    answer = raw(server, post_head(server, f"Content-Length: {len(body)}") + body + b"GARBAGE")
    assert status_of(answer) == 200
    assert labels_in(sessions) == [(ids["s1/c1/IMG_0003.JPG"], "Empty", "ann")]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
        connection.sendall(post_head(server, "Content-Length: 50") + b'{"image_id": 1')
        connection.shutdown(socket.SHUT_WR)  # the client gives up half way
        answer = read_all(connection)
    assert status_of(answer) == 400 and b"shorter than its Content-Length" in answer


@pytest.mark.parametrize(("request_start", "status"), [
    (b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{", 408),  # half a body
    (b"Content-Type: appli", None),  # half the headers: closed without an answer
])
def test_a_half_sent_request_is_cut_off(server: ReviewServer, monkeypatch: pytest.MonkeyPatch,
                                        request_start: bytes, status: int | None) -> None:
    assert Handler.timeout == 30  # what a user's server waits
    monkeypatch.setattr(Handler, "timeout", 0.5)
    began = time.monotonic()
    answer = raw(server, f"POST /api/labels HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode() + request_start)
    assert time.monotonic() - began < 3
    if status is None:
        assert answer == b""
    else:
        assert status_of(answer) == status and b"did not arrive in time" in answer


# --- 2. only the images the page shows ----------------------------------------------------------------------

def test_only_images_of_the_set_and_of_the_clusters_strips_are_served(
        review: tuple[ReviewApp, dict[str, int]], sessions: sessionmaker[Session], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, stop: list[ReviewServer]) -> None:
    app, ids = review
    base._jpeg(tmp_path / "other" / "s2/c2/ELSEWHERE.JPG", (64, 48))
    with sessions.begin() as session:
        elsewhere = add_images(session, str(tmp_path / "other"), "finnmark", [("s2/c2/ELSEWHERE.JPG", "s2")])
        one = ids["s1/c1/IMG_0001.JPG"]
        small_set, _ = store.review.save_review_set(session, app.detector_version_id, 0.5, False, 1, "test", 8,
                                                    [Drawn(one, "s1 Animal", 2, "random")])
        small_set_id = small_set.id
    monkeypatch.setattr(producer.review_server, "STRIP_INSTANCES", 3)
    whole = start(app)
    small = start(ReviewApp(app.sessions, small_set_id, app.detector_version_id, LabelRules(), 0.1))
    stop.extend([whole, small])

    other = elsewhere["s2/c2/ELSEWHERE.JPG"]
    assert ask(whole, "GET", f"/images/{other}.jpg")[0] == 404  # registered, in no set and no cluster
    (cluster,) = json.loads(ask(small, "GET", "/api/clusters")[2])["clusters"]
    strip = {instance["image_id"] for instance in cluster["instances"]}
    assert len(strip) == 3 and one not in strip
    for image_id in strip | {one}:
        status, headers, body = ask(small, "GET", f"/images/{image_id}.jpg?max=64")
        assert status == 200 and headers["Content-Type"] == "image/jpeg" and PILImage.open(io.BytesIO(body))
    hidden = set(ids.values()) - strip - {one}
    assert hidden and all(ask(small, "GET", f"/images/{i}.jpg")[0] == 404 for i in hidden)
    assert all(ask(whole, "GET", f"/images/{i}.jpg")[0] in (200, 422) for i in ids.values())  # all in its set
    assert ask(whole, "GET", f"/images/{2**40}.jpg")[0] == 404


# --- 3. headers, and other sites ----------------------------------------------------------------------------

def test_every_answer_forbids_framing_and_other_origins(server: ReviewServer,
                                                        review: tuple[ReviewApp, dict[str, int]]) -> None:
    _, ids = review
    answers = [ask(server, "GET", "/"), ask(server, "GET", "/api/state"),
               ask(server, "GET", f"/images/{ids['s1/c1/IMG_0002.JPG']}.jpg"), ask(server, "GET", "/nothing"),
               ask(server, "GET", "/", Host="evil.example"), ask(server, "POST", "/api/labels", {}),
               ask(server, "PUT", "/api/labels")]  # http.server's own 501
    assert [status for status, _, _ in answers] == [200, 200, 200, 404, 421, 400, 501]
    for _, headers, _ in answers:
        assert {name: headers[name] for name in SECURITY_HEADERS} == SECURITY_HEADERS
        policy = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'unsafe-inline'" in policy
    bad_line = raw(server, b"NOT HTTP\r\n\r\n")
    assert status_of(bad_line) == 400 and b"X-Frame-Options: DENY" in bad_line


def test_requests_from_other_sites_are_refused(server: ReviewServer, review: tuple[ReviewApp, dict[str, int]],
                                               sessions: sessionmaker[Session]) -> None:
    _, ids = review
    label = {"image_id": ids["s1/c1/IMG_0004.JPG"], "label": "Human", "reviewer": "eve"}
    assert ask(server, "GET", "/api/state", Sec_Fetch_Site="cross-site")[0] == 403
    assert ask(server, "GET", f"/images/{ids['s1/c1/IMG_0004.JPG']}.jpg", Sec_Fetch_Site="cross-site")[0] == 403
    assert ask(server, "POST", "/api/labels", label, Sec_Fetch_Site="cross-site")[0] == 403
    assert ask(server, "POST", "/api/labels", label, Sec_Fetch_Site="same-site")[0] == 403  # another port
    assert labels_in(sessions) == []
    assert ask(server, "GET", "/", Sec_Fetch_Site="none")[0] == 200  # typed in, or a bookmark
    assert ask(server, "POST", "/api/labels", label, Sec_Fetch_Site="same-origin",
               Origin=f"http://127.0.0.1:{server.port}")[0] == 200


# --- 4. binding and login -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("review.example.org", False),
])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_listening_beyond_this_machine_needs_allow_remote_and_a_token(
        review: tuple[ReviewApp, dict[str, int]]) -> None:
    app, _ = review
    with pytest.raises(UsageProblem, match="opens the review page to other machines") as refused:
        ReviewServer(app, "0.0.0.0", 0)
    assert "--allow-remote" in str(refused.value) and TOKEN_ENV in str(refused.value)
    with pytest.raises(UsageProblem, match="needs a login token"):
        ReviewServer(app, "0.0.0.0", 0, allow_remote=True)
    with pytest.raises(UsageProblem, match="16 to 256"):
        ReviewServer(app, "0.0.0.0", 0, allow_remote=True, token="short")


def test_with_a_token_every_request_must_carry_it(review: tuple[ReviewApp, dict[str, int]],
                                                  sessions: sessionmaker[Session], stop: list[ReviewServer]) -> None:
    app, ids = review
    served = start(app, "0.0.0.0", allow_remote=True, token=TOKEN)
    stop.append(served)
    image = f"/images/{ids['s1/c1/IMG_0002.JPG']}.jpg"
    label = {"image_id": ids["s1/c1/IMG_0005.JPG"], "label": "Bad", "reviewer": "ann"}
    host = {"Host": f"traps.example.org:{served.port}"}  # any name reaches it: the token guards it
    for path in ("/", "/api/state", image):
        assert ask(served, "GET", path, **host)[0] == 401
    assert ask(served, "POST", "/api/labels", label, **host)[0] == 401
    assert ask(served, "GET", "/?token=not-the-token-at-all-000", **host)[0] == 401
    assert ask(served, "GET", "/api/state", Authorization="Bearer wrong", **host)[0] == 401
    assert ask(served, "GET", "/api/state", Cookie=f"trapline_review_{served.port}=wrong", **host)[0] == 401
    assert labels_in(sessions) == []

    status, headers, _ = ask(served, "GET", f"/?x=1&token={TOKEN}", **host)  # the login link
    assert status == 303 and headers["Location"] == "/?x=1"
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"trapline_review_{served.port}={TOKEN};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    for elsewhere in ("//evil.example/", "/\\evil.example/"):  # the login link never sends the browser off site
        location = ask(served, "GET", f"{elsewhere}?token={TOKEN}", **host)[1]["Location"]
        assert location.startswith("/") and location[1:2] not in ("/", "\\")
    logged_in = {**host, "Cookie": cookie.split(";")[0]}
    for path in ("/", "/api/state", image):
        assert ask(served, "GET", path, **logged_in)[0] == 200
    assert ask(served, "GET", "/api/state", Authorization=f"Bearer {TOKEN}", **host)[0] == 200
    assert ask(served, "POST", "/api/labels", label, Origin=f"http://traps.example.org:{served.port}",
               **logged_in)[0] == 200
    assert ask(served, "POST", "/api/labels", label, Origin="http://evil.example", **logged_in)[0] == 403
    assert labels_in(sessions) == [(label["image_id"], "Bad", "ann")]


def test_a_token_on_loopback_is_required_and_the_host_still_checked(
        review: tuple[ReviewApp, dict[str, int]], stop: list[ReviewServer]) -> None:
    app, _ = review
    served = start(app, token=TOKEN)
    stop.append(served)
    assert ask(served, "GET", "/api/state")[0] == 401
    assert ask(served, "GET", "/api/state", Authorization=f"Bearer {TOKEN}")[0] == 200
    assert ask(served, "GET", "/api/state", Authorization=f"Bearer {TOKEN}", Host=f"evil.example:{served.port}")[0] \
        == 421


def test_the_token_never_reaches_the_log(review: tuple[ReviewApp, dict[str, int]], stop: list[ReviewServer],
                                         caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = review
    served = start(app, token=TOKEN)
    stop.append(served)
    caplog.set_level(logging.DEBUG, logger="producer")

    def broken(body: dict) -> dict:
        raise RuntimeError("a bug")

    monkeypatch.setattr(app, "save_label", broken)
    assert ask(served, "GET", f"/?token={TOKEN}")[0] == 303
    assert ask(served, "GET", "/api/state?token=wrong-but-long-enough-1234")[0] == 401
    assert ask(served, "POST", f"/api/labels?token={TOKEN}", {}, Authorization=f"Bearer {TOKEN}")[0] == 500
    assert "a bug" in caplog.text and "token=…" in caplog.text
    assert TOKEN not in caplog.text and "wrong-but-long-enough" not in caplog.text


def test_ipv6_loopback(review: tuple[ReviewApp, dict[str, int]], stop: list[ReviewServer]) -> None:
    app, _ = review
    served = start(app, "::1")
    stop.append(served)
    assert served.url == f"http://[::1]:{served.port}/"
    status, _, body = ask(served, "GET", "/", Host=f"[::1]:{served.port}")
    assert status == 200 and b"trapline review" in body
    assert ask(served, "GET", "/api/state", Host=f"localhost:{served.port}")[0] == 200
    assert ask(served, "GET", "/api/state", Host=f"evil.example:{served.port}")[0] == 421


@pytest.fixture
def not_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """`review serve` returns as soon as it would serve."""
    monkeypatch.setattr(ReviewServer, "serve_forever", lambda self, poll_interval=0.5: None)


def test_serve_refuses_a_remote_host_without_allow_remote(cli: CliRunner, review: tuple[ReviewApp, dict[str, int]],
                                                          not_serving: None) -> None:
    result = cli.invoke(main, ["review", "serve", "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 2
    assert result.output.splitlines()[0] == "Error: --host 0.0.0.0 opens the review page to other machines"
    assert "--allow-remote" in result.output


def test_serve_with_allow_remote_prints_a_login_address_once(
        cli: CliRunner, review: tuple[ReviewApp, dict[str, int]], not_serving: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    result = cli.invoke(main, ["review", "serve", "--host", "0.0.0.0", "--port", "0", "--allow-remote"])
    assert result.exit_code == 0, result.output
    first, second = result.output.splitlines()
    assert re.fullmatch(r"review set \d+ at http://0\.0\.0\.0:\d+/\?token=[\w-]{43} \(Ctrl-C to stop\)", first)
    assert TOKEN_ENV in second

    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    result = cli.invoke(main, ["review", "serve", "--host", "0.0.0.0", "--port", "0", "--allow-remote"])
    assert result.exit_code == 0 and TOKEN not in result.output and TOKEN_ENV in result.output
    monkeypatch.setenv(TOKEN_ENV, "short")
    assert cli.invoke(main, ["review", "serve", "--port", "0"]).exit_code == 2


# --- 5. what a label may hold ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "message"), [
    ({"image_id": True, "label": "Empty", "reviewer": "ann"}, "image_id must be an integer"),
    ({"image_id": False, "label": "Empty", "reviewer": "ann"}, "image_id must be an integer"),
    ({"image_id": 1.0, "label": "Empty", "reviewer": "ann"}, "image_id must be an integer"),
    ({"image_id": 1, "label": "Empty", "reviewer": "a" * 129}, "at most 128 characters"),
    ({"image_id": 1, "label": "Empty", "reviewer": "ann\nINFO forged log line"}, "control characters"),
])
def test_labels_the_database_cannot_hold_are_refused(server: ReviewServer, sessions: sessionmaker[Session],
                                                     body: dict, message: str) -> None:
    status, _, answer = ask(server, "POST", "/api/labels", body)
    assert status == 400 and message in json.loads(answer)["error"]
    assert labels_in(sessions) == []


def test_a_reviewer_name_of_128_characters_is_kept_whole(server: ReviewServer, sessions: sessionmaker[Session],
                                                         review: tuple[ReviewApp, dict[str, int]]) -> None:
    _, ids = review
    name = "ø" * 128
    assert ask(server, "POST", "/api/labels", {"image_id": ids["s1/c1/IMG_0000.JPG"], "label": "Empty",
                                               "reviewer": name})[0] == 200
    assert labels_in(sessions) == [(ids["s1/c1/IMG_0000.JPG"], "Empty", name)]
    assert ask(server, "POST", "/api/labels", {"image_id": 2**40, "label": "Empty", "reviewer": "ann"})[0] == 404


def test_a_cluster_decision_with_too_long_a_name_is_refused(server: ReviewServer,
                                                            sessions: sessionmaker[Session]) -> None:
    (cluster,) = json.loads(ask(server, "GET", "/api/clusters")[2])["clusters"]
    status, _, answer = ask(server, "POST", f"/api/clusters/{cluster['id']}", {"decision": "confirm",
                                                                               "reviewer": "b" * 129})
    assert status == 400 and "at most 128 characters" in json.loads(answer)["error"]
    with sessions() as session:
        assert session.get(RdeCluster, cluster["id"]).status == "suspected"
