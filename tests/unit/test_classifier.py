"""worker/ml/classifier.py, in the classify environment (Keras 3 on TensorFlow).

One test also loads the saved model under KERAS_BACKEND=torch in the detect environment and
compares the outputs, since model code must run on both backends.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow", reason="needs the classify environment (Keras + TensorFlow)")

from worker.ml.classifier import (  # after the environment check
    IncompatibleModel,
    build_resnet50,
    check_classes,
    load_model,
    predict,
    preprocess,
)

pytestmark = pytest.mark.classify

SMALL = 32  # the smallest input ResNet-50 accepts: keeps these tests fast
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_resnet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random-weight ResNet-50 (3 classes, 32 px) saved as .keras and as HDF5."""
    import keras

    keras.utils.set_random_seed(0)
    model = build_resnet50(3, input_size=SMALL)
    folder = tmp_path_factory.mktemp("resnet")
    paths = {"keras": folder / "model.keras", "h5": folder / "model.h5"}
    model.save(paths["keras"])
    model.save(paths["h5"])
    return paths


def images(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 255, (40 + 7 * i, 60, 3), dtype=np.uint8)) for i in range(count)]


def test_preprocess_squashes_with_nearest_and_rescales():
    two_colours = Image.new("RGB", (10, 4), (255, 0, 0))
    two_colours.paste((0, 0, 255), (5, 0, 10, 4))
    batch = preprocess([two_colours], (6, 6))
    assert batch.shape == (1, 6, 6, 3) and batch.dtype == np.float32
    assert set(map(tuple, batch.reshape(-1, 3).tolist())) == {(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)}  # no blending


@pytest.mark.parametrize("kind", ["keras", "h5"])
def test_saved_model_loads_and_matches_classes(tiny_resnet, kind):
    model = load_model(tiny_resnet[kind])
    found = check_classes(model, ["Bad", "Good", "Other"])
    assert (found.input_size, found.outputs) == ((SMALL, SMALL), 3)
    with pytest.raises(IncompatibleModel, match="3 outputs but 2 classes"):
        check_classes(model, ["Bad", "Good"])


def test_batch_equals_single(tiny_resnet):
    model = load_model(tiny_resnet["keras"])
    batch = predict(model, images(5), batch_size=4)
    singles = np.concatenate([predict(model, [image]) for image in images(5)])
    assert batch.shape == (5, 3)
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    np.testing.assert_allclose(batch.sum(axis=1), 1.0, atol=1e-5)  # softmax rows


def test_unknown_file_type_is_refused(tmp_path):
    with pytest.raises(IncompatibleModel):
        load_model(tmp_path / "model.onnx")


def test_same_outputs_under_the_torch_backend(tiny_resnet, tmp_path):
    """The model saved under TensorFlow gives the same probabilities under KERAS_BACKEND=torch."""
    python = Path(os.environ.get("TRAPLINE_DETECT_PYTHON", REPO / ".venv/detect/bin/python"))
    if not python.exists():
        pytest.fail(f"the detect environment ({python}) is needed for the torch-backend comparison")
    inputs = preprocess(images(3), (SMALL, SMALL))
    np.save(tmp_path / "inputs.npy", inputs)
    expected = np.asarray(load_model(tiny_resnet["keras"]).predict_on_batch(inputs))
    script = (
        "import json, sys, numpy as np, keras; "
        "m = keras.models.load_model(sys.argv[1], compile=False); "
        "print(json.dumps({'backend': keras.backend.backend(), "
        "'out': np.asarray(m.predict_on_batch(np.load(sys.argv[2]))).tolist()}))"
    )
    result = subprocess.run(
        [str(python), "-c", script, str(tiny_resnet["keras"]), str(tmp_path / "inputs.npy")],
        env={**os.environ, "KERAS_BACKEND": "torch"}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["backend"] == "torch"
    np.testing.assert_allclose(np.asarray(answer["out"]), expected, atol=1e-4)
