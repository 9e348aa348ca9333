"""Camtrap DP validation without internet access: frictionless with an HTTP session that answers the
profile's and the table schemas' official URLs from the local copies in ../shared/data/camtrap-dp-1.0.2.

The profile also references two generic schemas: GeoJSON (answered with frictionless's bundled copy) and the
generic Data Package profile (answered with ``{}``: frictionless checks a package against its own built-in
Data Package profile anyway). Any other URL is a 404, so nothing is fetched from the network.

``python -m tests.support.camtrap_dp validate pkg/datapackage.json`` runs the `frictionless` command
line (any of its commands) with that session.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import frictionless
import requests
from requests.adapters import BaseAdapter

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO.parent / "shared" / "data" / "camtrap-dp-1.0.2"
OFFICIAL = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/"
GEOJSON = "http://json.schemastore.org/geojson.json"
DATA_PACKAGE = "https://specs.frictionlessdata.io/schemas/data-package.json"


def documents() -> dict[str, bytes]:
    """URL → the local bytes served for it."""
    served = {OFFICIAL + path.name: path.read_bytes() for path in LOCAL.glob("*.json")}
    served[GEOJSON] = (Path(frictionless.__file__).parent / "assets" / "profiles" / "geojson.json").read_bytes()
    served[DATA_PACKAGE] = b"{}"
    return served


class LocalCopies(BaseAdapter):
    """A requests transport that answers from ``documents()`` and 404s everything else."""

    def __init__(self) -> None:
        super().__init__()
        self.served = documents()
        self.requested: list[str] = []

    def send(self, request, **kwargs) -> requests.Response:  # requests' own signature
        self.requested.append(request.url)
        body = self.served.get(request.url)
        response = requests.Response()
        response.url, response.request = request.url, request
        response.status_code = 404 if body is None else 200
        response.raw = io.BytesIO(body or b"")
        return response

    def close(self) -> None:
        pass


def offline_session() -> requests.Session:
    session = requests.Session()
    adapter = LocalCopies()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def validate(descriptor: Path) -> frictionless.Report:
    """frictionless's validation of a package (profile, schemas, types, constraints, keys), offline."""
    with frictionless.system.use_context(http_session=offline_session()):
        return frictionless.validate(str(descriptor), type="package")


if __name__ == "__main__":
    from frictionless.console import console

    with frictionless.system.use_context(http_session=offline_session()):
        console(sys.argv[1:], prog_name="frictionless")
