"""The Camtrap DP package's own metadata: datapackage.json (profile, resources, project, coverage) and what
the command line gives for it (title, contributors, sampling design, licence, scientific names).
``producer.camtrap_dp`` writes the tables."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.db import Deployment
from shared.deployments import iso

VERSION_URL = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/"
PROFILE = VERSION_URL + "camtrap-dp-profile.json"
RESOURCES = ("deployments", "media", "observations")
ROLES = ("contact", "principalInvestigator", "rightsHolder", "publisher", "contributor")
SAMPLING_DESIGNS = ("simpleRandom", "systematicRandom", "clusteredRandom", "experimental", "targeted", "opportunistic")
CAPTURE_METHOD = "timeLapse"  # the project's, when no image says (the workflow's design: time-lapse cameras)
# Crop classes → scientific names, from the codes and the authors' common names (WORKFLOW.md "The 16 classes").
# lag_mut and lep_arc are left out until the data owners confirm them (their codes and names disagree):
# their animals are exported without a name unless --scientific-name supplies one.
SCIENTIFIC_NAMES = {
    "alc_alc": "Alces alces", "aqu_chr": "Aquila chrysaetos", "cor_cora": "Corvus corax", "cor_corn": "Corvus cornix",
    "gul_gul": "Gulo gulo", "hal_alb": "Haliaeetus albicilla", "pic_pic": "Pica pica", "ran_tar": "Rangifer tarandus",
    "vul_lag": "Vulpes lagopus", "vul_vul": "Vulpes vulpes",
}

CONTRIBUTOR = re.compile(r"^(?P<title>[^<:]+?)\s*(?:<(?P<email>[^>]+)>)?\s*(?::\s*(?P<role>\w+))?$")


@dataclass(frozen=True, slots=True)
class PackageInfo:
    """What the profile requires beyond the data: from the command line."""

    title: str
    contributors: Sequence[dict[str, str]]
    sampling_design: str
    license: str | None = None
    scientific_names: dict[str, str] = field(default_factory=lambda: dict(SCIENTIFIC_NAMES))
    exclude_humans: bool = False  # no media row for images with a person; their observations stay, without it
    coordinate_decimals: int | None = None  # deployments' coordinates rounded to this many decimals

    def coordinate(self, value: float) -> float:
        return rounded(value, self.coordinate_decimals)


def rounded(coordinate: float, decimals: int | None) -> float:
    """A coordinate rounded to ``decimals`` (``--coordinate-decimals``), or as it is when None."""
    return coordinate if decimals is None else round(coordinate, decimals)


def contributor(text: str) -> dict[str, str]:
    """``"Jane Doe <jane@example.org>:principalInvestigator"`` (email and role optional; role: contact)."""
    match = CONTRIBUTOR.match(text.strip())
    role = (match and match["role"]) or "contact"
    if not match or role not in ROLES:
        raise ValueError(f"{text!r}: expected 'NAME [<EMAIL>][:ROLE]', ROLE one of {', '.join(ROLES)}")
    return {"title": match["title"], **({"email": match["email"]} if match["email"] else {}), "role": role}


def descriptor(info: PackageInfo, deployments: Sequence[Deployment], scientific_names: Iterable[str],
               created: datetime, capture_methods: Collection[str] = (), with_events: bool = False) -> dict[str, Any]:
    """datapackage.json: the profile's required properties, with the official profile and schema URLs;
    ``capture_methods``: the media's (none known: the workflow's time-lapse); ``with_events``: observations.csv
    holds event-level rows too."""
    lons = [info.coordinate(d.longitude) for d in deployments]
    lats = [info.coordinate(d.latitude) for d in deployments]
    west, east, south, north = min(lons), max(lons), min(lats), max(lats)
    spatial = ({"type": "Point", "coordinates": [west, south]} if (west, south) == (east, north) else
               {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north], [west, north],
                                                    [west, south]]]})
    package: dict[str, Any] = {
        "resources": [{"name": name, "path": f"{name}.csv", "profile": "tabular-data-resource", "format": "csv",
                       "mediatype": "text/csv", "encoding": "utf-8",
                       "schema": f"{VERSION_URL}{name}-table-schema.json"} for name in RESOURCES],
        "profile": PROFILE,
        "created": iso(created.astimezone(UTC)).replace("+00:00", "Z"),
        "title": info.title,
        "contributors": list(info.contributors),
        "project": {"title": info.title, "samplingDesign": info.sampling_design, "captureMethod": sorted(capture_methods) or [CAPTURE_METHOD],
                    "individualAnimals": False, "observationLevel": ["media", "event"] if with_events else ["media"]},
        "spatial": spatial,
        "temporal": {"start": min(d.starts_at for d in deployments).date().isoformat(),
                     "end": max(d.ends_at for d in deployments).date().isoformat()},
        "taxonomic": [{"scientificName": name, **({"taxonRank": "species"} if len(name.split()) == 2 else {})}
                      for name in sorted(scientific_names)],
    }
    if info.coordinate_decimals is not None:
        package["coordinatePrecision"] = 10.0 ** -info.coordinate_decimals
    if info.license:
        package["licenses"] = [{"name": info.license, "scope": "data"}, {"name": info.license, "scope": "media"}]
    return package


def package_info(title: str | None, contributors: Sequence[str], sampling_design: str | None,
                 license: str | None = None, scientific_names: Sequence[str] = (), exclude_humans: bool = True,
                 coordinate_decimals: int | None = None) -> PackageInfo:
    """PackageInfo from command-line text; ValueError names what is missing or malformed. People's images are
    left out unless ``exclude_humans`` is false (GBIF's guidance for publishing camera-trap data)."""
    missing = [option for option, value in (("--title", title), ("--contributor", contributors),
                                            ("--sampling-design", sampling_design)) if not value]
    if missing:
        raise ValueError(f"a Camtrap DP package needs {', '.join(missing)}")
    names = dict(SCIENTIFIC_NAMES)
    for pair in scientific_names:
        code, _, name = pair.partition("=")
        if not code.strip() or not name.strip():
            raise ValueError(f"--scientific-name {pair!r}: expected CODE=NAME, e.g. lag_mut='Lagopus lagopus'")
        names[code.strip()] = name.strip()
    if coordinate_decimals is not None and not 0 <= coordinate_decimals <= 8:
        raise ValueError(f"--coordinate-decimals {coordinate_decimals}: expected 0 to 8")
    return PackageInfo(title, [contributor(c) for c in contributors], sampling_design, license, names,
                       exclude_humans, coordinate_decimals)
