"""producer/model_versions.py: which model version the settings mean, without loading a framework."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.orm import Session

from producer.model_versions import current_detector, is_weights_path
from shared.config import DetectorSettings
from shared.errors import ModelFileError, UsageProblem
from shared.schemas import DetectionOptions, ModelKind


@pytest.mark.parametrize(("weights", "expected"), [
    ("MDV5A", False), ("mdv5b", False),
    ("md_v5a.0.0.pt", True), ("model.pth", True), ("model.onnx", True), ("models/md", True), ("/abs/md", True),
])
def test_is_weights_path(weights: str, expected: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    assert is_weights_path(weights) is expected


def test_an_existing_file_is_a_path_whatever_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "MDV5A").write_bytes(b"weights")

    assert is_weights_path("MDV5A") is True


def test_a_weights_file_is_identified_by_its_sha256(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "md_v5a.0.0.pt"
    path.write_bytes(b"not really a checkpoint")

    version = current_detector(session, DetectorSettings(weights=str(path)))
    again = current_detector(session, DetectorSettings(weights=str(path)))

    assert (version.kind, version.name, version.source) == (ModelKind.DETECTOR, "md_v5a.0.0.pt", str(path))
    assert version.sha256 == hashlib.sha256(b"not really a checkpoint").hexdigest()
    assert again.id == version.id


def test_a_changed_weights_file_is_refused(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "md_v5a.0.0.pt"
    path.write_bytes(b"first")
    current_detector(session, DetectorSettings(weights=str(path)))
    path.write_bytes(b"retrained in place")

    with pytest.raises(ValueError, match="needs a new name"):
        current_detector(session, DetectorSettings(weights=str(path)))


def test_missing_weights_file(session: Session, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="TRAPLINE_DETECTOR__WEIGHTS"):
        current_detector(session, DetectorSettings(weights=str(tmp_path / "gone.pt")))


def test_a_known_model_name_is_recorded_without_a_checksum(session: Session, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    version = current_detector(session, DetectorSettings(weights="mdv5a"))

    assert (version.name, version.source, version.sha256) == ("MDV5A", "MDV5A", None)
    assert current_detector(session, DetectorSettings(weights="MDV5A")).id == version.id


# --- detection options: part of the version -----------------------------------------------------------


def test_the_packages_plain_run_keeps_the_weights_name(session: Session) -> None:
    version = current_detector(session, DetectorSettings())

    assert version.name == "MDV5A"
    assert DetectionOptions.of_manifest(version.manifest) == DetectionOptions()


def test_other_options_are_another_version_named_after_them(session: Session) -> None:
    plain = current_detector(session, DetectorSettings())
    tta = current_detector(session, DetectorSettings(augment=True))
    paper = current_detector(session, DetectorSettings(preset="celis2024"))
    again = current_detector(session, DetectorSettings(augment=True, tiling=True, merge=True))

    assert len({plain.id, tta.id, paper.id}) == 3 and again.id == paper.id  # the preset is those three switches
    assert tta.name == "MDV5A [tta 1664px]" and tta.source == "MDV5A"
    assert paper.name == "MDV5A [tta 1664px, tiles 1280/0.5 nms 0.45 q95, merge 0.65/0.05/0.2]"
    assert DetectionOptions.of_manifest(paper.manifest) == DetectionOptions(augment=True, tiling=True, merge=True)


def test_options_that_do_not_fit_together_are_refused(session: Session) -> None:
    with pytest.raises(ValidationError, match="merge combines the whole-image and the tiled passes: it needs tiling"):
        DetectorSettings(merge=True)  # the settings themselves: `trapline` says which variable
    with pytest.raises(UsageProblem, match="draft decoding needs tiling off"):  # a preset that does not fit
        current_detector(session, DetectorSettings(preset="celis2024", decode="draft"))


def test_a_worker_keeps_the_options_the_producer_recorded(session: Session) -> None:
    from shared.store.model_versions import record_model_checksum

    version = current_detector(session, DetectorSettings(tiling=True, tile_size=640))
    record_model_checksum(session, version.id, "a" * 64, {"megadetector_version": "v5a.0.0", "image_size": 1280})
    session.expire_all()

    manifest = session.get(type(version), version.id).manifest
    assert manifest["megadetector_version"] == "v5a.0.0"
    assert DetectionOptions.of_manifest(manifest).tile_size == 640


def _detected(session: Session, version_id: int, image_ids: list[int]) -> None:
    from shared import store
    from shared.schemas import DetectOutcome, OutcomeStatus

    store.outcomes.save_detect_outcomes(session, None, version_id, [
        DetectOutcome(i, OutcomeStatus.DONE, detections=[]) for i in image_ids])


def test_results_are_read_from_the_configured_detector_or_the_chosen_one(session: Session, tmp_path: Path) -> None:
    from producer.model_versions import results_detector
    from shared.errors import NotFound
    from tests.unit.records import add_archive, add_detector, image_ids

    ids = list(image_ids(session, add_archive(session, ["a/1.JPG", "a/2.JPG"])).values())
    other = add_detector(session, "md_other.pt")
    _detected(session, other.id, ids)
    configured = DetectorSettings(weights="MDV5A")

    # Given results of another detector only, the configured one's (none) are not silently read
    with pytest.raises(NotFound, match="the configured detector MDV5A has no results") as raised:
        results_detector(session, configured)
    assert raised.value.hint.startswith(f"detector versions with results: {other.id}: md_other.pt (2 images)")
    assert "--detector" in raised.value.hint

    # --detector by id or name reads them; an unknown one is named with the choices
    assert results_detector(session, configured, str(other.id)).id == other.id
    assert results_detector(session, configured, "md_other.pt").id == other.id
    with pytest.raises(NotFound, match="no detector version 'nope' has results"):
        results_detector(session, configured, "nope")

    # and once the configured detector has results, they are its
    mdv5a = current_detector(session, configured)
    _detected(session, mdv5a.id, ids[:1])
    assert results_detector(session, configured).id == mdv5a.id


def test_a_detector_file_is_registered_for_every_version_of_it(session: Session) -> None:
    from shared import store
    from tests.unit.records import add_detector

    plain = add_detector(session, "md_x.pt")
    tiled = add_detector(session, "md_x.pt [tiles]")
    assert not store.model_versions.detector_file_registered(session, plain.sha256)

    store.model_versions.register_detector_file(session, plain)

    assert store.model_versions.detector_file_registered(session, plain.sha256)
    session.expire_all()
    assert tiled.manifest["registered"] is True
