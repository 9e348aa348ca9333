"""producer/flower_access.py: Flower listens on loopback unless told otherwise, and beyond it only with a login
that is not .env.example's placeholder."""

from __future__ import annotations

import pytest

from producer.flower_access import checked_flower_options, is_loopback
from shared.errors import UsageProblem


def test_loopback_is_added_when_no_address_is_given() -> None:
    assert checked_flower_options(["--port=5555"], {}) == ["--address=127.0.0.1", "--port=5555"]


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"])
def test_loopback_addresses_need_no_login(address: str) -> None:
    assert checked_flower_options([f"--address={address}"], {}) == [f"--address={address}"]
    assert is_loopback(address)


@pytest.mark.parametrize("args", [["--address=0.0.0.0"], ["--address", "192.168.1.5"], ["--address=::"]])
def test_any_other_address_needs_a_login(args: list[str]) -> None:
    with pytest.raises(UsageProblem, match="without a login"):
        checked_flower_options(args, {})
    assert checked_flower_options(args, {"FLOWER_BASIC_AUTH": "watcher:s3cret"}) == args  # the environment's
    assert checked_flower_options([*args, "--basic-auth=watcher:s3cret"], {})  # or the command line's


@pytest.mark.parametrize("login", ["change-me:s3cret", "watcher:change-me", "a:b,change-me:x"])
def test_the_placeholder_login_is_refused(login: str) -> None:
    with pytest.raises(UsageProblem, match="change-me") as raised:
        checked_flower_options(["--address=0.0.0.0"], {"FLOWER_BASIC_AUTH": login})
    assert "s3cret" not in str(raised.value)
    with pytest.raises(UsageProblem, match="change-me"):
        checked_flower_options([f"--basic-auth={login}"], {})


def test_compose_passes_flowers_login_through_the_environment() -> None:
    """Not on the command line, which `docker inspect` and `ps` show."""
    from pathlib import Path

    import yaml

    compose = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())
    flower = compose["services"]["flower"]
    assert not any("basic-auth" in part for part in flower["command"])
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_USER")
    assert "TRAPLINE_REDIS_URL" in flower["environment"]  # the app's environment is kept
