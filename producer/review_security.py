"""What `trapline review serve` checks before it answers: where it may listen, the login token, the
headers every answer carries, and the parts of a request it never writes to the log.

The page has no accounts. On this machine (loopback, the default) the ``Host`` check stops DNS rebinding;
beyond it (``--allow-remote``) every request must carry a login token: once in the address
(``/?token=…``), which the server swaps for an HttpOnly, SameSite=Strict cookie, or as
``Authorization: Bearer …`` for scripts.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from shared.errors import UsageProblem

TOKEN_ENV = "TRAPLINE_REVIEW_TOKEN"
TOKEN_PARAMETER = "token"
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{16,256}")  # safe in an address and a cookie, long enough to guess never
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self'; style-src 'unsafe-inline'; "
                           "script-src 'unsafe-inline'; object-src 'none'; base-uri 'none'; form-action 'none'; "
                           "frame-ancestors 'none'")
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Referrer-Policy", "no-referrer"),  # the login address carries the token
)
FETCH_SITES_REFUSED = ("cross-site", "same-site")  # the page's own requests are same-origin, typed ones none
LOCAL_PATH = re.compile(r"/(?:[\w.~-]+/)*[\w.~-]*")  # each part ends in its slash: no backtracking
REDACTED_TOKEN = re.compile(rf"({TOKEN_PARAMETER}=)[^&#\s\"]*", re.IGNORECASE)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, or ``localhost``) is this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, allow_remote: bool, token: str | None) -> None:
    """Refuse to listen beyond this machine unless asked to, with a login token; refuse a token too weak."""
    if token is not None and not TOKEN_PATTERN.fullmatch(token):
        raise UsageProblem(f"the review login token ({TOKEN_ENV}) must be 16 to 256 letters, digits or . _ ~ -",
                           f"unset {TOKEN_ENV} to have one made at start")
    if is_loopback(host):
        return
    if not allow_remote:
        raise UsageProblem(f"--host {host} opens the review page to other machines",
                           "keep the default 127.0.0.1 and reach it through an SSH tunnel "
                           "(ssh -L 8000:127.0.0.1:8000 …), or add --allow-remote: every request then needs "
                           f"the login token ({TOKEN_ENV}, or one made and printed at start)")
    if token is None:
        raise UsageProblem("--allow-remote needs a login token", f"set {TOKEN_ENV}, or let the command make one")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(offered: str | None, token: str) -> bool:
    return offered is not None and hmac.compare_digest(offered.encode(), token.encode())


def cookie_name(port: int) -> str:
    """One cookie per port: cookies are not told apart by port, two servers on one host would clash."""
    return f"trapline_review_{port}"


def login_cookie(port: int, token: str) -> str:
    return f"{cookie_name(port)}={token}; Path=/; HttpOnly; SameSite=Strict"


def cookie_token(cookie_header: str | None, port: int) -> str | None:
    if not cookie_header:
        return None
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(cookie_header)
    except CookieError:
        return None
    morsel = cookies.get(cookie_name(port))
    return morsel.value if morsel is not None else None


def bearer_token(authorization: str | None) -> str | None:
    scheme, _, value = (authorization or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def address_token(path: str) -> str | None:
    """The token in a request's address (the login link), if any."""
    values = [v for k, v in parse_qsl(urlsplit(path).query, keep_blank_values=True) if k == TOKEN_PARAMETER]
    return values[-1] if values else None


def without_token(path: str) -> str:
    """The address with the token taken out: where the login link sends the browser on."""
    url = urlsplit(path)
    query = [(k, v) for k, v in parse_qsl(url.query, keep_blank_values=True) if k != TOKEN_PARAMETER]
    local = LOCAL_PATH.fullmatch(url.path) is not None  # never //host or /\host: another site
    return urlunsplit(("", "", url.path if local else "/", urlencode(query), ""))


def redacted(text: str) -> str:
    """``text`` (a request line, a path) fit for the log: any token in it replaced."""
    return REDACTED_TOKEN.sub(r"\1…", text)
