"""Labelled training images: reading them, checking them, and splitting them 90/8/2 (WORKFLOW.md, "Training").

The producer uses this module before it enqueues a training run, so it stays light: the standard library
plus Pillow (only to check that a file decodes). Two sources are read:

* folders, either the authors' layout ``root/{train,validate,test}/<class>/*.jpg`` (the split comes from the
  folder; ``validation`` and ``val`` mean ``validate``) or one folder per class, ``root/<class>/*.jpg``
  (no split yet);
* a CSV file with a header and the columns ``path,label[,split]``; for crop models optionally ``x,y,w,h``
  too, a normalised MegaDetector box ``[x_min, y_min, width, height]`` that the worker crops with the
  classify stage's own square-crop function (without a box the whole file is the crop).

``validate`` reports every problem at once, one line each; ``stratified_split`` splits the images that do not
carry a split yet, per class and reproducibly.

**Rounding rule** (``split_counts``). A class with ``n`` images to split gives each held-out split (validate,
test) ``max(1, round_half_up(n × fraction))`` images, computed exactly (fractions are read from their decimal
form, so 0.08 is 8/100) and leaves the rest to train. A split whose fraction is 0 gets nothing. For 90/8/2:
100 → 90/8/2, 50 → 45/4/1, 25 → 22/2/1, 13 → 11/1/1, 3 → 1/1/1. When that would leave train empty (too few
images), the images go one at a time to train, then validate, then test: 2 → 1/1/0, 1 → 1/0/0.

**Minimum per class** (``MIN_PER_CLASS``): the smallest class for which that rule puts at least one image in
every split with a positive fraction, 3 for 90/8/2 (``minimum_per_class``).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from PIL import Image

from shared.csv_input import csv_rows, open_csv

TRAIN, VALIDATE, TEST = "train", "validate", "test"
SPLITS = (TRAIN, VALIDATE, TEST)
SPLIT_ALIASES = {"train": TRAIN, "validate": VALIDATE, "validation": VALIDATE, "val": VALIDATE, "test": TEST}
SPLIT_FRACTIONS = (0.90, 0.08, 0.02)  # train/validate/test, the authors' split (Böhner 2023: 0.80, 0.10, 0.10)
SPLIT_SEED = 0  # seeds the shuffle of each class before it is cut into splits
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff"})  # compared lower-cased
CSV_COLUMNS = ("path", "label")  # required; "split" is optional, other columns are ignored
BOX_COLUMNS = ("x", "y", "w", "h")  # optional, all four or none: a normalised box to crop
_HELD_OUT_FIRST = (TEST, VALIDATE)  # held-out splits, smallest first; train takes the rest


@dataclass(frozen=True, slots=True)
class LabelledImage:
    """One training image: its file, its class and, when already decided, its split.

    ``origin`` names where the entry was read (``labels.csv:12``) for problem messages; it takes no part in
    equality.
    """

    path: str
    label: str
    split: str | None = None
    origin: str | None = field(default=None, compare=False)
    box: tuple[float, float, float, float] | None = None  # normalised x, y, w, h to crop; None: the whole image


class LabelFileError(ValueError):
    """A label CSV that cannot be read as ``path,label[,split]``; the message lists every bad line."""


def normalise_split(name: str) -> str:
    """``train``/``validate``/``test`` for a known split name or alias (any case); otherwise ``name`` unchanged."""
    return SPLIT_ALIASES.get(name.strip().casefold(), name)


# --- reading -----------------------------------------------------------------------------------


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _class_images(folder: Path, label: str, split: str | None) -> list[LabelledImage]:
    """Images under one class folder, at any depth (as the Keras directory iterator reads them)."""
    images = []
    for current, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(current) / name
            if _is_image(path):
                images.append(LabelledImage(str(path), label, split))
    return images


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_label_folders(root: str | os.PathLike[str]) -> list[LabelledImage]:
    """Images under ``root``, labelled by folder, sorted by path.

    When every subfolder of ``root`` is a split name (or alias), the layout is ``root/<split>/<class>/``;
    when none is, it is ``root/<class>/`` and no image has a split. Hidden files and folders and files
    without an image suffix (``IMAGE_SUFFIXES``) are skipped; images directly under ``root`` or a split
    folder belong to no class and are skipped too.

    Raises ``ValueError`` when ``root`` is not a folder or mixes split folders with class folders.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    top = _subfolders(root)
    splits = [p for p in top if p.name.casefold() in SPLIT_ALIASES]
    if splits and len(splits) != len(top):
        others = ", ".join(p.name for p in top if p not in splits)
        raise ValueError(f"{root}: mixes split folders ({', '.join(p.name for p in splits)}) with others ({others})")
    images: list[LabelledImage] = []
    if splits:
        for split_folder in splits:
            split = SPLIT_ALIASES[split_folder.name.casefold()]
            for class_folder in _subfolders(split_folder):
                images.extend(_class_images(class_folder, class_folder.name, split))
    else:
        for class_folder in top:
            images.extend(_class_images(class_folder, class_folder.name, None))
    return sorted(images, key=_sort_key)


def read_label_csv(path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None) -> list[LabelledImage]:
    """Images listed in a CSV with a header and the columns ``path,label[,split]``, in file order.

    Relative paths are resolved against ``base`` (default: the CSV's folder). An empty split means none;
    split aliases are normalised (``val`` → ``validate``), unknown split names are kept for ``validate`` to
    report. Each image's ``origin`` is ``<csv name>:<line>``.

    Raises ``LabelFileError`` listing every malformed line (wrong number of fields, empty path or label, a
    byte that is not UTF-8, a field too long for the csv module), or when the header lacks a required column.
    """
    path = Path(path)
    base = Path(base) if base is not None else path.parent
    errors: list[str] = []
    with open_csv(path) as handle:
        rows = csv_rows(handle, path.name, errors)
        _, names = next(rows, (1, []))
        if errors:
            raise LabelFileError("\n".join(errors))
        header = [column.strip().casefold() for column in names]
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise LabelFileError(f"{path}:1: header {header} lacks the column(s) {', '.join(missing)}")
        index = {column: header.index(column) for column in (*CSV_COLUMNS, "split", *BOX_COLUMNS) if column in header}
        has_box = _box_columns(path, header)
        images = []
        for line, row in rows:
            where = f"{path.name}:{line}"
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                errors.append(f"{where}: {len(row)} fields, the header has {len(header)}")
                continue
            file, label = row[index["path"]].strip(), row[index["label"]].strip()
            split = row[index["split"]].strip() if "split" in index else ""
            if not file or not label:
                errors.append(f"{where}: empty {'path' if not file else 'label'}")
                continue
            try:
                box = _box([row[index[c]] for c in BOX_COLUMNS]) if has_box else None
            except ValueError as error:
                errors.append(f"{where}: {error}")
                continue
            full = Path(file) if Path(file).is_absolute() else base / file
            images.append(LabelledImage(str(full), label, normalise_split(split) if split else None, where, box))
    if errors:
        raise LabelFileError("\n".join(errors))
    return images


def _box_columns(path: Path, header: Sequence[str]) -> bool:
    present = [c for c in BOX_COLUMNS if c in header]
    if present and len(present) != len(BOX_COLUMNS):
        raise LabelFileError(f"{path}:1: a box needs all of the columns {', '.join(BOX_COLUMNS)}, found {present}")
    return bool(present)


def _box(cells: Sequence[str]) -> tuple[float, float, float, float] | None:
    """A normalised box from four cells; all empty means none. Raises ValueError for a box outside the image."""
    if not any(cell.strip() for cell in cells):
        return None
    try:
        x, y, w, h = (float(cell) for cell in cells)
    except ValueError as error:
        raise ValueError(f"box {list(cells)} is not four numbers") from error
    if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 and 0 < h <= 1 and x + w <= 1 + 1e-6 and y + h <= 1 + 1e-6):
        raise ValueError(f"box {[x, y, w, h]} is not a normalised [x_min, y_min, width, height] inside the image")
    return x, y, w, h


# --- splitting ----------------------------------------------------------------------------------


def _exact(fractions: Sequence[float]) -> dict[str, Fraction]:
    """The split fractions as exact decimals, checked: three, non-negative, train positive, summing to 1."""
    if len(fractions) != len(SPLITS):
        raise ValueError(f"expected {len(SPLITS)} fractions (train, validate, test), got {len(fractions)}")
    exact = {split: Fraction(str(f)) for split, f in zip(SPLITS, fractions, strict=True)}
    if any(f < 0 for f in exact.values()) or exact[TRAIN] == 0 or sum(exact.values()) != 1:
        raise ValueError(f"split fractions {tuple(fractions)} must be non-negative, train > 0, summing to 1")
    return exact


def split_counts(n: int, fractions: Sequence[float] = SPLIT_FRACTIONS) -> dict[str, int]:
    """How many of a class's ``n`` unsplit images go to each split (the rounding rule in the module doc)."""
    exact = _exact(fractions)
    counts = {TRAIN: 0, VALIDATE: 0, TEST: 0}
    held_out = {s: max(1, math.floor(n * exact[s] + Fraction(1, 2))) for s in _HELD_OUT_FIRST if exact[s] > 0}
    if n - sum(held_out.values()) >= 1:
        counts.update(held_out)
        counts[TRAIN] = n - sum(held_out.values())
        return counts
    for i, split in enumerate(s for s in SPLITS if exact[s] > 0):  # too few: one each, train first
        counts[split] = 1 if i < n else 0
    return counts


def minimum_per_class(fractions: Sequence[float] = SPLIT_FRACTIONS) -> int:
    """The fewest images of a class for which ``split_counts`` leaves no split with a positive fraction empty."""
    exact = _exact(fractions)
    n = sum(1 for f in exact.values() if f > 0)
    while not all(c > 0 for s, c in split_counts(n, fractions).items() if exact[s] > 0):
        n += 1
    return n


MIN_PER_CLASS = minimum_per_class(SPLIT_FRACTIONS)  # 3: one image in each of train, validate, test


def _sort_key(image: LabelledImage) -> tuple[str, str, str, tuple[float, ...]]:
    return image.path, image.label, image.split or "", image.box or ()


def stratified_split(
    images: Iterable[LabelledImage], fractions: Sequence[float] = SPLIT_FRACTIONS, seed: int | str = SPLIT_SEED,
) -> dict[str, list[LabelledImage]]:
    """``{"train": [...], "validate": [...], "test": [...]}``, each sorted by path; every image in one.

    Images that carry a split keep it. The others are split per class: their distinct paths sorted, shuffled
    with ``random.Random(f"{seed}/{label}")`` (so adding a class leaves the other classes' splits unchanged),
    then cut into test, validate and train by ``split_counts``; every box of one photo and class goes with
    its photo, so no crop of a training photo is tested. The split of the unsplit images ignores the
    images that already carry one. Output images carry their split.

    Raises ``ValueError`` for a split name that is not train, validate or test, or bad fractions.
    """
    _exact(fractions)
    result: dict[str, list[LabelledImage]] = {split: [] for split in SPLITS}
    unsplit: dict[str, list[LabelledImage]] = defaultdict(list)
    for image in images:
        if image.split is None:
            unsplit[image.label].append(image)
        elif image.split in result:
            result[image.split].append(image)
        else:
            raise ValueError(f"{image.origin or image.path}: unknown split {image.split!r}")
    for label in sorted(unsplit):
        photos: dict[str, list[LabelledImage]] = defaultdict(list)  # a photo's boxes stay in one split
        for image in unsplit[label]:
            photos[image.path].append(image)
        paths = sorted(photos)
        random.Random(f"{seed}/{label}").shuffle(paths)
        counts, start = split_counts(len(paths), fractions), 0
        for split in (TEST, VALIDATE, TRAIN):
            for path in paths[start:start + counts[split]]:
                result[split].extend(LabelledImage(i.path, i.label, split, i.origin, i.box) for i in photos[path])
            start += counts[split]
    return {split: sorted(members, key=_sort_key) for split, members in result.items()}


# --- validation ---------------------------------------------------------------------------------


def _where(image: LabelledImage) -> str:
    return f"{image.origin}: {image.path}" if image.origin else image.path


def _file_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable image, or None. Decodes it (JPEG at reduced scale, which is cheap but
    still reads every byte, so truncated files are caught)."""
    if not path.is_file():
        return "file not found"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return f"suffix {path.suffix or '(none)'!r} is not one of {', '.join(sorted(IMAGE_SUFFIXES))}"
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.draft("RGB", (1, 1))
            image.load()
    except Exception as error:  # any decoder error means the same thing here
        return f"not a readable image ({type(error).__name__}: {error})"
    return None


def _digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _class_problems(
    images: Sequence[LabelledImage], classes: Collection[str] | None, min_per_class: int, fractions: Sequence[float],
) -> list[str]:
    """Classes with too few images, or with a split left empty after ``stratified_split``'s rule."""
    exact = _exact(fractions)
    problems = []
    totals = Counter(image.label for image in images if image.label)
    given: dict[str, Counter[str]] = defaultdict(Counter)
    unsplit_photos: dict[str, set[str]] = defaultdict(set)
    for image in images:
        if image.label:
            given[image.label][image.split or ""] += 1
            if image.split is None:
                unsplit_photos[image.label].add(image.path)
    for label in sorted(set(totals) | set(classes or ())):
        total = totals.get(label, 0)
        if total < min_per_class:
            problems.append(f"class {label!r}: {total} image(s), at least {min_per_class} needed")
            continue
        counts = given[label]
        photos = len(unsplit_photos[label])  # stratified_split cuts a class by photos, not boxes
        planned = split_counts(photos, fractions) if photos else dict.fromkeys(SPLITS, 0)
        empty = [s for s in SPLITS if exact[s] > 0 and counts[s] + planned[s] == 0]
        if empty:
            problems.append(f"class {label!r}: no image in split(s) {', '.join(empty)}")
    return problems


def validate(
    images: Iterable[LabelledImage],
    classes: Collection[str] | None = None,
    min_per_class: int = MIN_PER_CLASS,
    check_files: bool = True,
    fractions: Sequence[float] = SPLIT_FRACTIONS,
) -> list[str]:
    """Every problem with a set of labelled images, one line each (empty when the set can be trained on).

    Per image: empty label, a label not in ``classes`` (when given), a split other than train, validate or
    test, the same path listed twice; with ``check_files``, a missing file, a suffix outside
    ``IMAGE_SUFFIXES``, a file Pillow cannot decode, and a file with the same bytes as another listed file.
    Per class (of the images and of ``classes``): fewer than ``min_per_class`` images, or a split (with a
    positive fraction) that would hold none of the class after ``stratified_split``.
    """
    images = list(images)
    if not images:
        return ["no labelled images"]
    problems: list[str] = []
    known = set(classes) if classes is not None else None
    seen: dict[tuple, LabelledImage] = {}
    contents: dict[tuple, LabelledImage] = {}
    checked: dict[str, str | None] = {}  # path -> problem: each file is read once, however many boxes it has
    digests: dict[str, str] = {}
    for image in images:
        where = _where(image)
        if not image.label:
            problems.append(f"{where}: empty label")
        elif known is not None and image.label not in known:
            problems.append(f"{where}: unknown class {image.label!r} (expected one of {', '.join(sorted(known))})")
        if image.split is not None and image.split not in SPLITS:
            problems.append(f"{where}: unknown split {image.split!r} (expected one of {', '.join(SPLITS)})")
        key = (os.path.normpath(os.path.abspath(image.path)), image.box)
        if key in seen:
            first = seen[key]
            extra = f" (as {first.label!r}, now {image.label!r})" if first.label != image.label else ""
            problems.append(f"{where}: listed twice, first at {first.origin or first.path}{extra}")
            continue
        seen[key] = image
        if check_files:
            if key[0] not in checked:
                checked[key[0]] = _file_problem(Path(image.path))
            if checked[key[0]]:
                problems.append(f"{where}: {checked[key[0]]}")
                continue
            if key[0] not in digests:
                digests[key[0]] = _digest(Path(image.path))
            digest = (digests[key[0]], image.box)
            if digest in contents:
                other = contents[digest]
                problems.append(f"{where}: same bytes as {_where(other)} (labels {other.label!r}/{image.label!r}, "
                                f"splits {other.split}/{image.split})")
            else:
                contents[digest] = image
    problems.extend(_class_problems(images, classes, min_per_class, fractions))
    return problems


def class_counts(splits: Mapping[str, Iterable[LabelledImage]]) -> dict[str, dict[str, int]]:
    """``{split: {label: count}}`` of a ``stratified_split`` result, labels sorted: for logs and manifests."""
    return {split: dict(sorted(Counter(image.label for image in members).items()))
            for split, members in splits.items()}
