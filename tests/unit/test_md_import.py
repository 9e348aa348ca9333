"""worker/md_import.py's rules without a database: paths and categories (the whole import runs end to end in
tests/e2e/test_md_import.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.md_import import InvalidResults, category_map, relative_path, validate


def test_paths_are_made_relative_to_the_archive() -> None:
    assert relative_path("cam1/IMG_1.JPG", "/data/a", "site1") == "site1/cam1/IMG_1.JPG"
    assert relative_path("cam1\\IMG_1.JPG", "/data/a", "") == "cam1/IMG_1.JPG"  # a Windows tool's path
    assert relative_path("/data/a/site1/IMG_1.JPG", "/data/a", "ignored") == "site1/IMG_1.JPG"
    assert relative_path("/elsewhere/IMG_1.JPG", "/data/a", "") == "/elsewhere/IMG_1.JPG"  # matches nothing


def test_categories_map_by_name() -> None:
    assert category_map({"1": "animal", "2": "person", "3": "vehicle"}, "r.json") == {"1": 1, "2": 2, "3": 3}
    assert category_map({"0": "Animal"}, "r.json") == {"0": 1}
    with pytest.raises(InvalidResults) as refused:
        category_map({"1": "animal", "4": "bird"}, "r.json")
    assert refused.value.problems == ["detection category 4: bird is none of animal, person, vehicle"]


def test_the_packages_validator_refuses_a_broken_file(tmp_path: Path) -> None:
    pytest.importorskip("megadetector")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"images": [{"file": "x.jpg"}]}))

    with pytest.raises(InvalidResults) as refused:
        validate(broken)

    assert refused.value.problems and "nothing was imported" in refused.value.message
