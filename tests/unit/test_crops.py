"""worker/ml/crops.py: MegaDetector's save_crop geometry with square crops, pixel for pixel.

Most tests crop a 160×80 "grid" whose pixel (x, y) is (x, y, 255): every crop pixel says where it
came from, and black (0, 0, 0) is the zero fill beyond the right or bottom edge. The boxes use
fractions of 1/16 and 1/32, so the expected pixels are worked out by hand without float doubts.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageOps

from shared.schemas import Detection
from worker.ml.crops import (
    CLASSIFIER_SIZE,
    CROP_THRESHOLD,
    Crop,
    CropBox,
    classifier_input,
    crops_for_classification,
    cut,
    square_crop,
    square_crop_box,
)

W, H = 160, 80
BLACK = (0, 0, 0)
RED, BLUE = (255, 0, 0), (0, 0, 255)


def grid(width: int = W, height: int = H) -> Image.Image:
    """Pixel (x, y) is (x, y, 255)."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = np.arange(width)[None, :]
    pixels[..., 1] = np.arange(height)[:, None]
    pixels[..., 2] = 255
    return Image.fromarray(pixels, mode="RGB")


def region(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """The grid's pixels of columns x0..x1-1 and rows y0..y1-1."""
    return np.asarray(grid())[y0:y1, x0:x1]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


def is_black(part: np.ndarray) -> bool:
    return part.size > 0 and not part.any()


def crop_of(bbox: tuple[float, float, float, float]) -> tuple[CropBox | None, np.ndarray]:
    crop = square_crop(grid(), bbox)
    assert crop is not None and crop.mode == "RGB"
    return square_crop_box(bbox, W, H), pixels(crop)


# --- inside the image -------------------------------------------------------------------------


def test_a_square_box_in_the_middle_is_cut_as_it_is() -> None:
    box, crop = crop_of((0.5, 0.25, 0.125, 0.25))  # x 80, y 20, 20 × 20

    assert box == CropBox(x=80, y=20, width=20, height=20, side=20)
    assert crop.shape == (20, 20, 3)
    assert (crop == region(80, 20, 100, 40)).all()
    assert tuple(crop[0, 0]) == (80, 20, 255) and tuple(crop[19, 19]) == (99, 39, 255)


def test_a_tall_box_widens_to_a_square_centred_on_it() -> None:
    box, crop = crop_of((0.5, 0.125, 0.0625, 0.75))  # x 80, y 10, 10 × 60: s 60, x 80 - 25

    assert box == CropBox(55, 10, 60, 60, 60)
    assert (crop == region(55, 10, 115, 70)).all()


def test_a_wide_box_grows_down_by_the_odd_pixel() -> None:
    box, crop = crop_of((0.25, 0.5, 0.25, 0.0625))  # x 40, y 40, 40 × 5: s 40, y 40 - int(17.5)

    assert box == CropBox(40, 23, 40, 40, 40)
    assert (crop == region(40, 23, 80, 63)).all()
    assert tuple(crop[17, 0]) == (40, 40, 255)  # the box's own top row: 17 rows above, 18 below


def test_pixels_are_truncated_not_rounded() -> None:
    box = square_crop_box((0.29, 0.29, 0.29, 0.29), 100, 100)  # 0.29 × 100 is 28.999999999999996

    assert box == CropBox(28, 28, 28, 28, 28)


# --- corners and edges ------------------------------------------------------------------------


def test_top_left_corner_shifts_the_square_inside_without_black() -> None:
    box, crop = crop_of((0.0, 0.0, 0.0625, 0.25))  # 10 × 20 at the origin: x -5 clamps to 0

    assert box == CropBox(0, 0, 20, 20, 20)
    assert (crop == region(0, 0, 20, 20)).all()


def test_left_edge_shifts_right() -> None:
    box, crop = crop_of((0.0, 0.25, 0.0625, 0.5))  # 10 × 40 at x 0: x -15 clamps to 0

    assert box == CropBox(0, 20, 40, 40, 40)
    assert (crop == region(0, 20, 40, 60)).all()


def test_top_edge_shifts_down() -> None:
    box, crop = crop_of((0.5, 0.0, 0.25, 0.0625))  # 40 × 5 at y 0: y -17 clamps to 0

    assert box == CropBox(80, 0, 40, 40, 40)
    assert (crop == region(80, 0, 120, 40)).all()


def test_right_edge_runs_past_the_image_and_comes_out_black() -> None:
    box, crop = crop_of((0.9375, 0.25, 0.0625, 0.25))  # 10 × 20 at x 150: x 145, cut to 165

    assert box == CropBox(145, 20, 20, 20, 20)
    assert (crop[:, :15] == region(145, 20, 160, 40)).all()
    assert is_black(crop[:, 15:])
    assert tuple(crop[0, 14]) == (159, 20, 255) and tuple(crop[0, 15]) == BLACK


def test_the_clamp_uses_the_box_size_not_the_square_side() -> None:
    # 20 × 40 at x 155, running past the edge: x 155 - 10 = 145 is capped at W - w = 140, not W - s = 120
    box, crop = crop_of((0.96875, 0.25, 0.125, 0.5))

    assert box == CropBox(140, 20, 40, 40, 40)
    assert (crop[:, :20] == region(140, 20, 160, 60)).all()
    assert is_black(crop[:, 20:])


def test_bottom_edge_comes_out_black() -> None:
    box, crop = crop_of((0.25, 0.9375, 0.125, 0.0625))  # 20 × 5 at (40, 75): y 75 - 7, cut to 88

    assert box == CropBox(40, 68, 20, 20, 20)
    assert (crop[:12] == region(40, 68, 60, 80)).all()
    assert is_black(crop[12:])
    assert tuple(crop[11, 19]) == (59, 79, 255) and tuple(crop[12, 0]) == BLACK


def test_top_right_corner() -> None:
    box, crop = crop_of((0.9375, 0.0, 0.0625, 0.25))  # 10 × 20: x 145, y 0

    assert box == CropBox(145, 0, 20, 20, 20)
    assert (crop[:, :15] == region(145, 0, 160, 20)).all()
    assert is_black(crop[:, 15:])


def test_bottom_left_corner() -> None:
    box, crop = crop_of((0.0, 0.875, 0.125, 0.125))  # 20 × 10 at y 70: y 65

    assert box == CropBox(0, 65, 20, 20, 20)
    assert (crop[:15] == region(0, 65, 20, 80)).all()
    assert is_black(crop[15:])


def test_bottom_right_corner() -> None:
    box, crop = crop_of((0.96875, 0.75, 0.03125, 0.25))  # 5 × 20 at (155, 60): x 155 - 7

    assert box == CropBox(148, 60, 20, 20, 20)
    assert (crop[:, :12] == region(148, 60, 160, 80)).all()
    assert is_black(crop[:, 12:])


def test_a_box_past_the_bottom_right_corner_is_pulled_back_by_its_own_size() -> None:
    box, crop = crop_of((0.9375, 0.9375, 0.125, 0.0625))  # 20 × 5 at (150, 75): x capped at 140

    assert box == CropBox(140, 68, 20, 20, 20)
    assert (crop[:12] == region(140, 68, 160, 80)).all()
    assert is_black(crop[12:])


# --- squares larger than the image: padding ---------------------------------------------------


def test_the_whole_image_is_padded_to_a_square_with_the_content_centred() -> None:
    box, crop = crop_of((0.0, 0.0, 1.0, 1.0))  # 160 × 80: s 160, y -40 clamps to 0

    assert box == CropBox(0, 0, 160, 80, 160) and box.padded
    assert crop.shape == (160, 160, 3)
    assert is_black(crop[:40]) and is_black(crop[120:])
    assert (crop[40:120] == region(0, 0, 160, 80)).all()


def test_a_box_taller_than_the_image_is_padded_like_the_whole_image() -> None:
    box, crop = crop_of((0.25, -0.5, 0.25, 2.0))  # 40 × 160: the cut is the whole 160 × 80 image

    assert box == CropBox(0, 0, 160, 80, 160)
    assert (crop[40:120] == region(0, 0, 160, 80)).all()
    assert is_black(crop[:40]) and is_black(crop[120:])


def test_a_tall_box_on_a_narrow_image_is_padded_left_and_right() -> None:
    image = grid(40, 100)
    bbox = (0.25, 0.1, 0.25, 0.8)  # 10 × 80 at (10, 10): s 80, x -25 clamps to 0; cut 40 × 80

    box = square_crop_box(bbox, 40, 100)
    crop = pixels(square_crop(image, bbox))

    assert box == CropBox(0, 10, 40, 80, 80)
    assert crop.shape == (80, 80, 3)
    assert is_black(crop[:, :20]) and is_black(crop[:, 60:])
    assert (crop[:, 20:60] == np.asarray(image)[10:90, 0:40]).all()


def test_odd_padding_follows_image_ops_pad_rounding() -> None:
    # 41 wide, square 80: 39 columns of padding, round(19.5) = 20 on the left, 19 on the right
    image = grid(41, 100)

    crop = pixels(square_crop(image, (0.0, 0.1, 1.0, 0.8)))

    assert crop.shape == (80, 80, 3)
    assert is_black(crop[:, :20]) and is_black(crop[:, 61:])
    assert (crop[:, 20:61] == np.asarray(image)[10:90]).all()
    assert (crop == pixels(ImageOps.pad(image.crop((0, 10, 41, 90)), (80, 80), color=0))).all()


def test_a_box_larger_than_the_image_both_ways_is_scaled_up_by_image_ops_pad() -> None:
    # 240 × 120 around a 160 × 80 image: the cut is the whole image, short of s = 240 both ways,
    # and ImageOps.pad (as save_crop calls it) scales it to 240 × 120 before padding
    image = Image.new("RGB", (W, H), (10, 200, 30))
    bbox = (-0.25, -0.25, 1.5, 1.5)

    crop = pixels(square_crop(image, bbox))

    assert square_crop_box(bbox, W, H) == CropBox(0, 0, 160, 80, 240)
    assert crop.shape == (240, 240, 3)
    assert is_black(crop[:60]) and is_black(crop[180:])
    assert (crop[60:180] == (10, 200, 30)).all()


# --- nothing to cut ---------------------------------------------------------------------------


@pytest.mark.parametrize("bbox", [(0.5, 0.5, 0.0, 0.0), (0.5, 0.5, 0.001, 0.001)])
def test_a_zero_size_box_is_none(bbox: tuple[float, float, float, float]) -> None:
    assert square_crop_box(bbox, W, H) is None
    assert square_crop(grid(), bbox) is None


def test_a_box_zero_wide_but_not_zero_tall_is_still_cut_as_save_crop_does() -> None:
    # save_crop checks for size 0 after squaring: w 0, h 20 gives a 20 × 20 square
    assert square_crop_box((0.5, 0.25, 0.001, 0.25), W, H) == CropBox(70, 20, 20, 20, 20)


# --- RGB --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_crops_are_rgb_whatever_the_image_mode(mode: str) -> None:
    image = grid().convert(mode)

    crop = square_crop(image, (0.0, 0.0, 1.0, 1.0))

    assert crop.mode == "RGB" and crop.size == (160, 160)
    assert crop.getpixel((0, 0)) == BLACK  # padding stays black


# --- the classifier's input -------------------------------------------------------------------


def test_classifier_input_is_224_square_by_default() -> None:
    crop = square_crop(grid(), (0.5, 0.125, 0.0625, 0.75))

    assert CLASSIFIER_SIZE == 224
    assert classifier_input(crop).size == (224, 224)
    assert classifier_input(crop, size=32).size == (32, 32)
    assert classifier_input(crop).mode == "RGB"


def test_classifier_input_uses_nearest_neighbour() -> None:
    crop = Image.new("RGB", (7, 7), RED)
    crop.paste(BLUE, (3, 0, 7, 7))  # an odd split: bilinear or bicubic would blend the seam

    resized = pixels(classifier_input(crop))

    colours = {tuple(p) for p in resized.reshape(-1, 3)}
    assert colours == {RED, BLUE}
    assert tuple(resized[0, 0]) == RED and tuple(resized[0, 223]) == BLUE


def test_classifier_input_squashes_without_cropping_or_padding() -> None:
    crop = Image.new("RGB", (10, 20), RED)
    crop.paste(BLUE, (0, 10, 10, 20))  # top half red, bottom half blue

    resized = pixels(classifier_input(crop, size=8))

    assert (resized[:4] == RED).all() and (resized[4:] == BLUE).all()


# --- which detections are cropped -------------------------------------------------------------


MIDDLE = (0.5, 0.25, 0.125, 0.25)


def test_threshold_boundary_is_inclusive() -> None:
    detections = [Detection(1, 0.1, MIDDLE), Detection(1, 0.0999, MIDDLE)]

    crops = crops_for_classification(grid(), detections)

    assert CROP_THRESHOLD == 0.1
    assert [c.index for c in crops] == [0]


def test_every_animal_box_is_cropped_with_its_index_and_people_and_vehicles_never() -> None:
    detections = [
        Detection(1, 0.9, MIDDLE),
        Detection(2, 0.8, (0.0, 0.0, 0.25, 0.5)),  # person
        Detection(1, 0.5, (0.9375, 0.25, 0.0625, 0.25)),
        Detection(3, 0.4, (0.25, 0.5, 0.25, 0.25)),  # vehicle
        Detection(1, 0.3, (0.5, 0.5, 0.0, 0.0)),  # zero size: skipped
        Detection(1, 0.2, (0.0, 0.0, 1.0, 1.0)),
        Detection(1, 0.05, MIDDLE),  # below the threshold
    ]

    crops = crops_for_classification(grid(), detections)

    assert [c.index for c in crops] == [0, 2, 5]
    assert [c.detection for c in crops] == [detections[0], detections[2], detections[5]]
    for crop in crops:
        assert isinstance(crop, Crop)
        assert crop.box == square_crop_box(crop.detection.bbox, W, H)
        assert (pixels(crop.image) == pixels(square_crop(grid(), crop.detection.bbox))).all()
    index, detection, box, image = crops[1]
    assert (index, box, image.size) == (2, CropBox(145, 20, 20, 20, 20), (20, 20))


def test_threshold_and_category_can_be_chosen() -> None:
    detections = [Detection(1, 0.6, MIDDLE), Detection(1, 0.4, MIDDLE), Detection(2, 0.9, MIDDLE)]

    assert [c.index for c in crops_for_classification(grid(), detections, threshold=0.5)] == [0]
    assert [c.index for c in crops_for_classification(grid(), detections, category=2)] == [2]


def test_no_detections_no_crops() -> None:
    assert crops_for_classification(grid(), []) == []


def test_cut_reproduces_a_stored_box() -> None:
    box = square_crop_box(MIDDLE, W, H)

    assert (pixels(cut(grid(), box)) == pixels(square_crop(grid(), MIDDLE))).all()


# --- against MegaDetector's own save_crop -----------------------------------------------------


def megadetector_save_crop() -> Callable[..., bool]:
    """save_crop() from the installed megadetector, read from its source without importing the
    module (its imports need azure, and importing megadetector changes Pillow's global state)."""
    spec = importlib.util.find_spec("megadetector")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs the detect environment (megadetector)")
    source_path = Path(next(iter(spec.submodule_search_locations))) / "classification" / "crop_detections.py"
    tree = ast.parse(source_path.read_text())
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "save_crop")
    namespace = {"Image": Image, "ImageOps": ImageOps, "os": os,
                 "tqdm": SimpleNamespace(write=lambda _: None)}
    function.returns = None  # its annotations name types this namespace does not have
    for argument in function.args.args:
        argument.annotation = None
    exec(compile(ast.Module([function], []), str(source_path), "exec"), namespace)
    return namespace["save_crop"]


def test_matches_megadetector_save_crop(tmp_path: Path) -> None:
    save_crop = megadetector_save_crop()
    rng = np.random.default_rng(7)
    sizes = [(160, 80), (80, 160), (41, 100), (100, 41), (37, 37), (255, 3)]
    for case in range(400):
        width, height = sizes[case % len(sizes)]
        image = grid(width, height)
        bbox = tuple(float(v) for v in np.concatenate([rng.uniform(-0.2, 1.0, 2), rng.uniform(0, 1.2, 2)]))
        if case % 10 == 0:
            bbox = (bbox[0], bbox[1], 0.0, bbox[3] if case % 20 else 0.0)
        path = tmp_path / f"{case}.png"

        saved = save_crop(image, bbox_norm=bbox, square_crop=True, save=str(path))
        ours = square_crop(image, bbox)

        assert saved == (ours is not None), (width, height, bbox)
        if saved:
            with Image.open(path) as theirs:
                assert (pixels(ours) == pixels(theirs.convert("RGB"))).all(), (width, height, bbox)
