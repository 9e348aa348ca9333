"""worker/ml/tiling.py: where the tiles of an image lie, what a tile holds, and how its boxes map back."""

from __future__ import annotations

import pytest
from PIL import Image

from shared.schemas import Detection
from worker.ml.tiling import Tile, cut, deduplicate, tiles_of, to_image

pytestmark = pytest.mark.detect


def test_tiles_cover_the_image_with_the_last_ones_flush_to_its_edges() -> None:
    tiles = tiles_of(2048, 1536, 1280, 0.5)

    assert [(t.x, t.y) for t in tiles] == [(0, 0), (640, 0), (768, 0), (0, 256), (640, 256), (768, 256)]
    assert all(t.size == 1280 for t in tiles)


def test_an_image_narrower_than_a_tile_gets_one_column_from_zero() -> None:
    assert [(t.x, t.y) for t in tiles_of(1920, 1080, 1280, 0.5)] == [(0, 0), (640, 0)]
    assert [(t.x, t.y) for t in tiles_of(600, 400, 1280, 0.5)] == [(0, 0)]


def test_a_tile_beyond_the_image_is_black_there_as_the_package_crops_it() -> None:
    image = Image.new("RGB", (300, 200), (200, 100, 50))

    patch = cut(image, Tile(0, 0, 256), 0)
    edge = cut(image, Tile(100, 0, 256), 0)

    assert patch.size == (256, 256) and patch.getpixel((10, 10)) == (200, 100, 50)
    assert patch.getpixel((10, 250)) == (0, 0, 0)  # below the image
    assert edge.getpixel((250, 10)) == (0, 0, 0)  # right of the image


def test_the_jpeg_round_trip_changes_pixels_only_slightly() -> None:
    image = Image.effect_noise((300, 300), 40).convert("RGB")

    plain, encoded = cut(image, Tile(0, 0, 256), 0), cut(image, Tile(0, 0, 256), 95)

    assert plain.tobytes() != encoded.tobytes()
    assert max(abs(a - b) for a, b in zip(plain.tobytes(), encoded.tobytes(), strict=True)) < 64


def test_boxes_map_back_to_the_image_with_the_packages_rounding() -> None:
    box = Detection(1, 0.87654, (0.5, 0.25, 0.25, 0.5))

    (mapped,) = to_image([box], Tile(640, 256, 1280), 2048, 1536)

    assert mapped == Detection(1, 0.877, (round((640 + 640) / 2048, 4), round((256 + 320) / 1536, 4),
                                          round(320 / 2048, 4), round(640 / 1536, 4)))


def test_deduplication_keeps_the_more_confident_of_overlapping_boxes_whatever_their_category() -> None:
    a, b = Detection(1, 0.9, (0.1, 0.1, 0.2, 0.2)), Detection(2, 0.5, (0.11, 0.11, 0.2, 0.2))
    far = Detection(1, 0.3, (0.6, 0.6, 0.2, 0.2))

    assert deduplicate([b, a, far], 0.45) == [a, far]
    assert deduplicate([], 0.45) == []
