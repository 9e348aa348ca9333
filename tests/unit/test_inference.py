"""worker/ml/inference.py: decode ahead of the model, group, infer; failures are outcomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.schemas import Detection, DetectionOptions, Failure, ImageFlag, ImageSource, OutcomeStatus
from tests.unit.stand_ins import FakeDetector
from tests.unit.synthetic import jpeg
from worker.ml.inference import detect_images

BOX = (0.1, 0.1, 0.5, 0.5)


@pytest.fixture
def sources(tmp_path: Path) -> list[ImageSource]:
    """1: 2000×1500 JPEG; 2: text named .JPG; 3: 64×48 JPEG; 4: missing; 5: truncated 640×480 JPEG."""
    (tmp_path / "1.JPG").write_bytes(jpeg(2000, 1500))
    (tmp_path / "2.JPG").write_text("not a photograph")
    (tmp_path / "3.JPG").write_bytes(jpeg(64, 48))
    whole = jpeg(640, 480)
    (tmp_path / "5.JPG").write_bytes(whole[: len(whole) // 2])
    return [ImageSource(i, str(tmp_path / f"{i}.JPG")) for i in range(1, 6)]


def test_every_source_gets_one_outcome_in_order(sources: list[ImageSource]) -> None:
    detector = FakeDetector(image_size=320)

    outcomes = detect_images(detector, sources, threshold=0.005, decode_threads=3, infer_batch=2)

    assert [(o.image_id, o.status, o.failure) for o in outcomes] == [
        (1, OutcomeStatus.DONE, None),
        (2, OutcomeStatus.FAILED, Failure.NOT_AN_IMAGE),
        (3, OutcomeStatus.DONE, None),
        (4, OutcomeStatus.FAILED, Failure.MISSING),
        (5, OutcomeStatus.DONE, None),
    ]
    # decoded whole by default: the model's preprocessing sees the full 2000 px (the package's pixels)
    assert [o.detections for o in outcomes] == [
        (Detection(1, 2.0, BOX),), (), (Detection(1, 0.064, BOX),), (), (Detection(1, 0.64, BOX),),
    ]
    assert [o.flags for o in outcomes] == [(), (), (), (), (ImageFlag.TRUNCATED,)]
    assert (outcomes[0].metadata.width, outcomes[0].metadata.height) == (2000, 1500)
    assert outcomes[1].metadata is None and outcomes[1].detail == "not a format Pillow can read"
    # groups of two decoded images; failed decodes never reach the model
    assert detector.calls == [([1], 0.005), ([3], 0.005), ([5], 0.005)]


def test_draft_decoding_is_an_option(sources: list[ImageSource]) -> None:
    detector = FakeDetector(image_size=320)

    outcomes = detect_images(detector, sources, threshold=0.005, infer_batch=2,
                             options=DetectionOptions(decode="draft"))

    # 2000 px decoded in draft mode at 1/4 scale (500 px ≥ 320); 640 px at 1/2 (320 px)
    assert [o.detections for o in outcomes] == [
        (Detection(1, 0.5, BOX),), (), (Detection(1, 0.064, BOX),), (), (Detection(1, 0.32, BOX),),
    ]
    assert (outcomes[0].metadata.width, outcomes[0].metadata.height) == (2000, 1500)  # the image's own size


def test_a_model_error_fails_the_images_of_its_group_only(sources: list[ImageSource]) -> None:
    detector = FakeDetector(raise_on_detect=RuntimeError("CUDA out of memory"))

    outcomes = detect_images(detector, sources[:3], threshold=0.1, decode_threads=1, infer_batch=8)

    assert [(o.status, o.failure, o.detail) for o in outcomes] == [
        (OutcomeStatus.FAILED, Failure.INFERENCE, "RuntimeError: CUDA out of memory"),
        (OutcomeStatus.FAILED, Failure.NOT_AN_IMAGE, "not a format Pillow can read"),
        (OutcomeStatus.FAILED, Failure.INFERENCE, "RuntimeError: CUDA out of memory"),
    ]
    assert outcomes[0].metadata.width == 2000  # what was learnt from the bytes is kept


def test_an_image_without_a_result_is_an_inference_failure(sources: list[ImageSource]) -> None:
    detector = FakeDetector(no_result_for=frozenset({3}))

    outcomes = detect_images(detector, [sources[0], sources[2]], threshold=0.1, decode_threads=2, infer_batch=2)

    assert [(o.image_id, o.failure, o.detail) for o in outcomes] == [
        (1, None, None), (3, Failure.INFERENCE, "the detector returned no result"),
    ]
    assert detector.calls == [([1, 3], 0.1)]


def test_no_sources_no_outcomes() -> None:
    assert detect_images(FakeDetector(), [], threshold=0.1) == []
