"""shared/training_data.py: reading, validating and splitting labelled training images.

Images are synthetic (tests.unit.synthetic), each with its own seed so no two files share their bytes.
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest

from shared.training_data import (
    MIN_PER_CLASS,
    LabelFileError,
    LabelledImage,
    class_counts,
    minimum_per_class,
    read_label_csv,
    read_label_folders,
    split_counts,
    stratified_split,
    validate,
)
from tests.unit import synthetic

_seeds = itertools.count(1)


def _image(path: Path, data: bytes | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(synthetic.jpeg(16, 12, seed=next(_seeds)) if data is None else data)
    return path


def _labelled(tmp_path: Path, counts: dict[str, int], split: str | None = None) -> list[LabelledImage]:
    """Real image files, ``counts[label]`` of each class."""
    return [LabelledImage(str(_image(tmp_path / label / f"{i:03d}.jpg")), label, split)
            for label, n in counts.items() for i in range(n)]


def _fake(counts: dict[str, int]) -> list[LabelledImage]:
    """Entries without files, for the split arithmetic."""
    return [LabelledImage(f"/data/{label}/{i:04d}.jpg", label) for label, n in counts.items() for i in range(n)]


# --- reading ------------------------------------------------------------------------------------


def test_authors_layout_takes_the_split_from_the_folder(tmp_path: Path) -> None:
    for split, label, name in [("train", "Good", "b.JPG"), ("train", "Good", "a.jpg"), ("train", "Bad", "c.png"),
                               ("validation", "Good", "d.tif"), ("test", "Bad", "e.TIFF")]:
        _image(tmp_path / split / label / name)
    (tmp_path / "train" / "Good" / "notes.txt").write_text("x")
    (tmp_path / "train" / "Good" / ".hidden.jpg").write_bytes(b"")
    images = read_label_folders(tmp_path)
    assert [(Path(i.path).relative_to(tmp_path).as_posix(), i.label, i.split) for i in images] == [
        ("test/Bad/e.TIFF", "Bad", "test"),
        ("train/Bad/c.png", "Bad", "train"),
        ("train/Good/a.jpg", "Good", "train"),
        ("train/Good/b.JPG", "Good", "train"),
        ("validation/Good/d.tif", "Good", "validate"),
    ]
    assert read_label_folders(tmp_path) == images


def test_val_is_validate(tmp_path: Path) -> None:
    _image(tmp_path / "VAL" / "Bad" / "x.jpeg")
    assert [i.split for i in read_label_folders(tmp_path)] == ["validate"]


def test_class_folders_have_no_split(tmp_path: Path) -> None:
    _image(tmp_path / "Good" / "2.jpg")
    _image(tmp_path / "Good" / "sub" / "1.jpg")  # nested, as the Keras directory iterator reads them
    _image(tmp_path / "Bad" / "1.jpg")
    _image(tmp_path / "loose.jpg")  # no class: skipped
    images = read_label_folders(tmp_path)
    assert [(Path(i.path).relative_to(tmp_path).as_posix(), i.label, i.split) for i in images] == [
        ("Bad/1.jpg", "Bad", None), ("Good/2.jpg", "Good", None), ("Good/sub/1.jpg", "Good", None),
    ]


def test_mixed_layout_and_missing_root_are_errors(tmp_path: Path) -> None:
    _image(tmp_path / "train" / "Bad" / "1.jpg")
    _image(tmp_path / "Good" / "1.jpg")
    with pytest.raises(ValueError, match="mixes split folders"):
        read_label_folders(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        read_label_folders(tmp_path / "absent")


def test_csv_resolves_relative_paths_against_its_folder(tmp_path: Path) -> None:
    labels = tmp_path / "sub" / "labels.csv"
    labels.parent.mkdir()
    labels.write_text("\ufeffpath,label,split,comment\n"
                      "a.jpg,Good,train,x\n"
                      "\n"
                      "/abs/b.jpg, Bad ,val,\n"
                      "c.jpg,Bad,,\n"
                      "d.jpg,Bad,Holdout,\n")
    images = read_label_csv(labels)
    assert images == [
        LabelledImage(str(tmp_path / "sub" / "a.jpg"), "Good", "train"),
        LabelledImage("/abs/b.jpg", "Bad", "validate"),
        LabelledImage(str(tmp_path / "sub" / "c.jpg"), "Bad", None),
        LabelledImage(str(tmp_path / "sub" / "d.jpg"), "Bad", "Holdout"),  # left for validate to report
    ]
    assert [i.origin for i in images] == ["labels.csv:2", "labels.csv:4", "labels.csv:5", "labels.csv:6"]
    assert read_label_csv(labels, base=tmp_path)[0].path == str(tmp_path / "a.jpg")


def test_csv_without_split_column(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("label,path\nGood,a.jpg\n")
    assert read_label_csv(labels) == [LabelledImage(str(tmp_path / "a.jpg"), "Good", None)]


def test_csv_reports_every_malformed_line(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\na.jpg,Good\nb.jpg\n,Bad\nc.jpg,\nd.jpg,Good,extra\n")
    with pytest.raises(LabelFileError) as error:
        read_label_csv(labels)
    assert str(error.value).splitlines() == [
        "labels.csv:3: 1 fields, the header has 2",
        "labels.csv:4: empty path",
        "labels.csv:5: empty label",
        "labels.csv:6: 3 fields, the header has 2",
    ]
    labels.write_text("file,label\na.jpg,Good\n")
    with pytest.raises(LabelFileError, match="lacks the column"):
        read_label_csv(labels)


# --- the rounding rule ------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "expected"), [
    (1000, (900, 80, 20)),
    (100, (90, 8, 2)),   # exact
    (50, (45, 4, 1)),    # 4.0 and 1.0
    (25, (22, 2, 1)),    # 2.0 and 0.5 → 1 (half up)
    (19, (16, 2, 1)),    # 1.52 → 2 and 0.38 → 1 (at least one)
    (13, (11, 1, 1)),    # 1.04 → 1 and 0.26 → 1 (at least one)
    (4, (2, 1, 1)),
    (3, (1, 1, 1)),      # the minimum
    (2, (1, 1, 0)),      # too few: train, then validate, then test
    (1, (1, 0, 0)),
    (0, (0, 0, 0)),
])
def test_split_counts_by_hand(n: int, expected: tuple[int, int, int]) -> None:
    counts = split_counts(n)
    assert (counts["train"], counts["validate"], counts["test"]) == expected


def test_split_counts_for_other_fractions() -> None:
    assert split_counts(10, (0.8, 0.1, 0.1)) == {"train": 8, "validate": 1, "test": 1}
    assert split_counts(10, (0.9, 0.1, 0.0)) == {"train": 9, "validate": 1, "test": 0}
    assert minimum_per_class((0.9, 0.1, 0.0)) == 2
    with pytest.raises(ValueError):
        split_counts(10, (0.9, 0.08, 0.03))
    with pytest.raises(ValueError):
        split_counts(10, (0.0, 0.5, 0.5))


def test_minimum_per_class_is_three() -> None:
    assert MIN_PER_CLASS == minimum_per_class() == minimum_per_class((0.8, 0.1, 0.1)) == 3


# --- splitting ----------------------------------------------------------------------------------


def test_split_is_stratified_with_the_rule_counts() -> None:
    images = _fake({"Bad": 100, "Good": 13, "Vole": 3})
    splits = stratified_split(images, seed=7)
    assert class_counts(splits) == {
        "train": {"Bad": 90, "Good": 11, "Vole": 1},
        "validate": {"Bad": 8, "Good": 1, "Vole": 1},
        "test": {"Bad": 2, "Good": 1, "Vole": 1},
    }
    members = [i for split in splits.values() for i in split]
    assert sorted(i.path for i in members) == sorted(i.path for i in images)
    assert all(i.split == name for name, split in splits.items() for i in split)
    assert all(split == sorted(split, key=lambda i: i.path) for split in splits.values())


def test_split_is_deterministic_and_independent_of_input_order() -> None:
    images = _fake({"Bad": 40, "Good": 30})
    first = stratified_split(images, seed=1)
    assert stratified_split(list(reversed(images)), seed=1) == first
    assert stratified_split(images, seed=2) != first


def test_adding_a_class_leaves_the_others_alone() -> None:
    before = stratified_split(_fake({"Bad": 40}), seed=3)
    after = stratified_split(_fake({"Bad": 40, "Good": 30}), seed=3)
    assert {s: [i for i in v if i.label == "Bad"] for s, v in after.items()} == before


def test_given_splits_win() -> None:
    given = [LabelledImage(f"/t/{i}.jpg", "Bad", "test") for i in range(5)]
    splits = stratified_split(given + _fake({"Bad": 13}), seed=0)
    assert class_counts(splits) == {"train": {"Bad": 11}, "validate": {"Bad": 1}, "test": {"Bad": 6}}
    assert set(given) <= set(splits["test"])


def test_unknown_split_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        stratified_split([LabelledImage("/a.jpg", "Bad", "holdout")])


# --- validation ---------------------------------------------------------------------------------


def test_a_good_set_has_no_problems(tmp_path: Path) -> None:
    images = _labelled(tmp_path, {"Bad": 3, "Good": 4})
    assert validate(images, classes=["Bad", "Good"]) == []
    assert validate(read_label_folders(tmp_path), classes={"Bad", "Good"}) == []


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    images = _labelled(tmp_path, {"Bad": 3, "Good": 3})
    broken = _image(tmp_path / "Good" / "broken.jpg", b"not an image")
    truncated = _image(tmp_path / "Good" / "truncated.jpg", synthetic.jpeg(64, 48, seed=999)[:400])
    copy = _image(tmp_path / "Good" / "copy.jpg", Path(images[0].path).read_bytes())
    text = _image(tmp_path / "Good" / "notes.txt", synthetic.jpeg(16, 12, seed=next(_seeds)))
    extra = [
        LabelledImage(str(tmp_path / "Good" / "missing.jpg"), "Good", None, "labels.csv:9"),
        LabelledImage(str(broken), "Good"),
        LabelledImage(str(truncated), "Good"),
        LabelledImage(str(copy), "Good", "test"),
        LabelledImage(str(text), "Good"),
        LabelledImage(images[1].path, "Good", None, "labels.csv:12"),
        LabelledImage(str(_image(tmp_path / "Stoat" / "1.jpg")), "Stoat", "holdout"),
        LabelledImage(str(_image(tmp_path / "Good" / "x.jpg")), ""),
    ]
    problems = validate(images + extra, classes=["Bad", "Good", "Shrew"])
    expected = [
        f"labels.csv:9: {tmp_path}/Good/missing.jpg: file not found",
        f"{broken}: not a readable image",
        f"{truncated}: not a readable image",
        f"{copy}: same bytes as {images[0].path} (labels 'Bad'/'Good', splits None/test)",
        f"{text}: suffix '.txt' is not one of",
        f"labels.csv:12: {images[1].path}: listed twice, first at {images[1].path} (as 'Bad', now 'Good')",
        f"{tmp_path}/Stoat/1.jpg: unknown class 'Stoat' (expected one of Bad, Good, Shrew)",
        f"{tmp_path}/Stoat/1.jpg: unknown split 'holdout' (expected one of train, validate, test)",
        f"{tmp_path}/Good/x.jpg: empty label",
        "class 'Shrew': 0 image(s), at least 3 needed",
        "class 'Stoat': 1 image(s), at least 3 needed",
    ]
    assert len(problems) == len(expected), "\n".join(problems)
    for line in expected:
        assert sum(p.startswith(line) for p in problems) == 1, f"{line!r} not in:\n" + "\n".join(problems)


def test_class_too_small_for_the_split(tmp_path: Path) -> None:
    images = _labelled(tmp_path, {"Bad": 2, "Good": 3, "Vole": 20})
    assert validate(images) == ["class 'Bad': 2 image(s), at least 3 needed"]
    assert validate(images, min_per_class=10) == [
        "class 'Bad': 2 image(s), at least 10 needed", "class 'Good': 3 image(s), at least 10 needed",
    ]


def test_given_splits_that_leave_a_split_empty(tmp_path: Path) -> None:
    images = (_labelled(tmp_path / "train", {"Bad": 3, "Good": 3}, "train")
              + _labelled(tmp_path / "validate", {"Bad": 1, "Good": 1}, "validate")
              + _labelled(tmp_path / "test", {"Good": 1}, "test"))
    assert validate(images) == ["class 'Bad': no image in split(s) test"]
    assert validate(images, fractions=(0.9, 0.1, 0.0)) == []


def test_validate_without_files_checks_only_the_list() -> None:
    images = _fake({"Bad": 3, "Good": 3})
    assert validate(images, check_files=False) == []
    assert validate([]) == ["no labelled images"]


def test_split_of_a_validated_folder_set(tmp_path: Path) -> None:
    """The producer's path: read, validate, split; every class lands in every split."""
    _labelled(tmp_path, {"Bad": 13, "Good": 25})
    images = read_label_folders(tmp_path)
    assert validate(images) == []
    splits = stratified_split(images)
    assert {s: Counter(i.label for i in v) for s, v in splits.items()} == {
        "train": Counter(Bad=11, Good=22), "validate": Counter(Bad=1, Good=2), "test": Counter(Bad=1, Good=1),
    }


def test_every_box_of_a_photo_goes_to_the_split_of_its_photo() -> None:
    boxes = [(0.1, 0.1, 0.2, 0.2), (0.5, 0.5, 0.2, 0.2)]
    images = [LabelledImage(f"/d/photo{i:02d}.jpg", "fox", box=box) for i in range(20) for box in boxes]
    splits = stratified_split(images)
    where = {}
    for split, members in splits.items():
        for image in members:
            assert where.setdefault(image.path, split) == split, image.path
    # cut by photos: 20 photos → 18/1/1 (90/8/2 of 20 rounds 1.6 to 2 for validate, 0.4 up to 1 for test)
    photos = {split: len({i.path for i in members}) for split, members in splits.items()}
    assert photos == split_counts(20) and sum(len(m) for m in splits.values()) == 40


def test_boxes_of_too_few_photos_leave_a_split_empty() -> None:
    images = [LabelledImage("/d/one.jpg", "fox", box=(0.1 * k, 0.1, 0.05, 0.05)) for k in range(1, 5)]
    assert validate(images, check_files=False) == ["class 'fox': no image in split(s) validate, test"]
