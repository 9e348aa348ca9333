"""Who may see Flower: `trapline flower` listens on loopback unless told otherwise, and anywhere else only
behind a login that is not .env.example's placeholder.

The login comes best from the environment (``FLOWER_BASIC_AUTH=user:password``, which Flower reads itself):
a ``--basic-auth`` on the command line is visible to every user of the machine in ``ps`` and, in a container,
in ``docker inspect``'s command.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from shared.config import PLACEHOLDER
from shared.errors import UsageProblem

LOOPBACK = "127.0.0.1"
ENVIRONMENT_LOGIN = "FLOWER_BASIC_AUTH"


def _value(args: Sequence[str], option: str) -> str | None:
    """The value of ``--option=value`` or ``--option value`` (the last one given), else None."""
    found = None
    for index, arg in enumerate(args):
        if arg.startswith(f"{option}="):
            found = arg.split("=", 1)[1]
        elif arg == option and index + 1 < len(args):
            found = args[index + 1]
    return found


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def checked_flower_options(args: Sequence[str], environment: Mapping[str, str]) -> list[str]:
    """Flower's options with the loopback address added unless one is given; refused when Flower would listen
    beyond loopback without a login, or with a placeholder login."""
    logins = [login for login in (_value(args, "--basic-auth"), environment.get(ENVIRONMENT_LOGIN)) if login]
    for login in logins:
        if any(part == PLACEHOLDER for entry in login.split(",") for part in entry.split(":", 1)):
            raise UsageProblem(f"Flower's login is still {PLACEHOLDER!r} from .env.example",
                               "set FLOWER_USER and FLOWER_PASSWORD (or FLOWER_BASIC_AUTH=user:password) to your own")
    address = _value(args, "--address")
    if address is None:
        return [f"--address={LOOPBACK}", *args]
    if not is_loopback(address) and not logins and not _value(args, "--auth"):
        raise UsageProblem(f"Flower would listen on {address} without a login",
                           f"set {ENVIRONMENT_LOGIN}=user:password (or use an OAuth --auth), or listen on {LOOPBACK}")
    return list(args)
