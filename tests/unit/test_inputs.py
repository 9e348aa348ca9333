"""worker/ml/inputs.py: training inputs are cut as the classify stage cuts them; unreadable files are named.

Synthetic JPEGs, in the classify environment (the input pipeline's datasets and the full training runs that use
them are tested in ``test_training.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow", reason="needs the classify environment (Keras + TensorFlow)")

from shared.schemas import DRAFT_PREPROCESSING
from worker.ml.classifier import whole_image_input
from worker.ml.crops import classifier_input, square_crop
from worker.ml.images import decode
from worker.ml.inputs import Example, TrainingError, load_input

pytestmark = pytest.mark.classify


def _jpeg(path: Path, value: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(value, 20, size=(96, 128, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return str(path)


def test_inputs_are_cut_as_the_classify_stage_cuts_them(tmp_path: Path) -> None:
    path = _jpeg(tmp_path / "bright.jpg", 200, 1)
    data = Path(path).read_bytes()
    whole = load_input(Example(path, 0), 32, DRAFT_PREPROCESSING)
    assert whole.shape == (32, 32, 3) and whole.dtype == np.uint8
    assert np.array_equal(whole, np.asarray(whole_image_input(data, 32, DRAFT_PREPROCESSING)))
    box = (0.25, 0.1, 0.5, 0.3)
    crop = load_input(Example(path, 0, box), 32, DRAFT_PREPROCESSING)
    expected = classifier_input(square_crop(decode(data).image, box), 32)
    assert np.array_equal(crop, np.asarray(expected))


def test_an_unreadable_image_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(TrainingError, match="broken.jpg"):
        load_input(Example(str(broken), 0), 32, DRAFT_PREPROCESSING)
