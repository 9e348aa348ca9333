"""`trapline flower` on a real Redis broker: basic auth refuses requests without the right credentials,
and it listens on loopback unless told otherwise."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.workers import wait_until

pytestmark = pytest.mark.integration

TCP_LISTEN = "0A"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status_of(url: str, credentials: bytes | None = None) -> int:
    headers = {"Authorization": "Basic " + base64.b64encode(credentials).decode()} if credentials else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def answers(port: int) -> bool:
    try:
        status_of(f"http://127.0.0.1:{port}/healthcheck")
    except OSError:
        return False
    return True


def listening_addresses(port: int) -> set[str]:
    """The local addresses (hex, as the kernel writes them) of the sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == TCP_LISTEN and int(hex_port, 16) == port:
                found.add(address)
    return found


@pytest.fixture
def flower(redis_url: str, tmp_path: Path) -> Iterator[int]:
    """`trapline flower` on a free port, without --address, its login in the environment (as compose passes it:
    not on the command line, which `ps` shows)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "flower", f"--port={port}"],
        env={**os.environ, "TRAPLINE_REDIS_URL": redis_url, "FLOWER_BASIC_AUTH": "watcher:secret"}, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: process.poll() is None and answers(port), 60)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_flower_needs_credentials_and_listens_on_loopback(flower: int) -> None:
    api = f"http://127.0.0.1:{flower}/api/workers"

    assert status_of(api) == 401
    assert status_of(api, b"watcher:wrong") == 401
    assert status_of(f"http://127.0.0.1:{flower}/", b"someone:secret") == 401
    assert status_of(api, b"watcher:secret") == 200
    # 127.0.0.1 only: no 0.0.0.0 (00000000) or :: listener
    assert listening_addresses(flower) == {"0100007F"}
