"""The CSV files people open in spreadsheets and the ones they give back: cells a spreadsheet would run as a
formula are quoted (review list, per-image export) and the quote is taken off again on import; a byte that is
not UTF-8, a field over the csv module's limit and a reviewer name longer than its column are problems of
their line (review labels, deployments, training labels), not tracebacks; deployment ids that look like
formulas are imported with a warning."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from producer.cli import main
from producer.deployments import import_deployments
from producer.export import write_csv
from producer.review import ReviewImportError, read_labels, sample, write_list
from producer.training import LabelProblems
from producer.training import read_labels as read_training_labels
from shared import store
from shared.store.export_rows import image_summaries
from shared.db import ReviewLabel
from shared.deployments import DeploymentErrors
from shared.errors import TraplineError, UsageProblem
from shared.labels import Thresholds
from shared.schemas import Detection, DetectOutcome, OutcomeStatus
from shared.training_data import LabelFileError, read_label_csv
from tests.unit.records import add_detector, add_label, image_ids

ROOT = "/data/evil"
LINK = '=HYPERLINK("http://example.org/x","click")'
FORMULA_FILE = "=1+2.jpg"  # an image at the archive root whose name is a formula
PLAIN_FILE = "s1/c1/IMG_0001.JPG"
LONG_FIELD = "x" * 200_000  # over csv.field_size_limit() (131,072)
LATIN1_E = "\u00e9".encode("latin-1")  # é as Latin-1: the byte 0xE9, not UTF-8


@pytest.fixture
def evil(session: Session) -> dict[str, int]:
    """Two classified images of one archive: ``=1+2.jpg`` in the site ``=HYPERLINK(…)`` on camera ``@cam``
    (its quality model's P(Bad) a made-up -0.25, a number below zero), and a plain one."""
    archive = store.images.get_or_create_archive(session, ROOT, "+region", "{site}/{camera}/...")
    store.images.register_images(session, archive.id, [
        {"rel_path": FORMULA_FILE, "size": 1, "mtime": 0.0, "region": "+region", "site": LINK, "camera": "@cam"},
        {"rel_path": PLAIN_FILE, "size": 1, "mtime": 0.0, "region": "+region", "site": "s1", "camera": "c1"},
    ])
    ids = image_ids(session, archive)
    detector = add_detector(session)
    store.outcomes.save_detect_outcomes(session, None, detector.id, [
        DetectOutcome(i, OutcomeStatus.DONE, detections=(Detection(1, 0.9, (0.1, 0.1, 0.2, 0.2)),))
        for i in ids.values()])
    add_label(session, ids[FORMULA_FILE], detector, "Animal", detection="Animal", present="Animal",
              quality="Good", p_bad=-0.25)
    add_label(session, ids[PLAIN_FILE], detector, "Empty")
    session.commit()
    return {"detector": detector.id, **ids}


def export_rows(session: Session, detector_id: int) -> list[dict[str, str]]:
    archive = store.images.archives_at(session, None)[0]
    out = io.StringIO()
    summaries = [(archive, s) for s in image_summaries(session, archive.id, detector_id, Thresholds())]
    assert write_csv(out, summaries, {detector_id: "md_v5a.0.0.pt"}) == 2
    return list(csv.DictReader(io.StringIO(out.getvalue())))


def write_lines(path: Path, *lines: str | bytes) -> Path:
    """A file of ``lines``: text as UTF-8, bytes as they are (a Latin-1 line)."""
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
    return path


def problems_of(error: pytest.ExceptionInfo) -> list[str]:
    return error.value.problems if isinstance(error.value, TraplineError) else str(error.value).splitlines()


# --- 1. cells a spreadsheet would run ---------------------------------------------------------------------------


def test_export_csv_quotes_formula_text_and_keeps_numbers(session: Session, evil: dict[str, int]) -> None:
    rows = {row["image_id"]: row for row in export_rows(session, evil["detector"])}
    formula, plain = rows[str(evil[FORMULA_FILE])], rows[str(evil[PLAIN_FILE])]

    assert (formula["rel_path"], formula["site"], formula["camera"], formula["region"]) == (
        f"'{FORMULA_FILE}", f"'{LINK}", "'@cam", "'+region")
    assert formula["quality_p_bad"] == "-0.25"  # a number: written as it is
    assert (formula["max_conf_animal"], formula["n_animal"], formula["final_label"]) == ("0.9", "1", "Animal")
    assert (plain["rel_path"], plain["site"], plain["archive"]) == (PLAIN_FILE, "s1", ROOT)


def test_review_list_quotes_formula_text(session: Session, evil: dict[str, int]) -> None:
    drawn = sample(session, evil["detector"], 1.0, True, 0)
    out = io.StringIO()

    assert write_list(session, drawn.set_id, out) == 2

    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[1:] == [[f"{ROOT}/{FORMULA_FILE}", f"'{LINK}", "Animal", "random", ""],
                        [f"{ROOT}/{PLAIN_FILE}", "s1", "Empty", "random", ""]]


def test_review_import_takes_the_quote_off_a_path_as_trapline_wrote_it(
    session: Session, evil: dict[str, int], tmp_path: Path,
) -> None:
    """The export's rel_path column, quoted, made into a labels file (as a spreadsheet saves it) finds its image."""
    exported = [row["rel_path"] for row in export_rows(session, evil["detector"])]
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["path", "label", "reviewer"])
        writer.writerows([path, "Empty", "ann"] for path in exported)

    assert f"'{FORMULA_FILE}" in exported
    assert sorted(image_id for image_id, *_ in read_labels(session, labels, None)) == sorted(
        [evil[FORMULA_FILE], evil[PLAIN_FILE]])


def test_review_list_round_trip_through_the_import(session: Session, evil: dict[str, int], tmp_path: Path) -> None:
    drawn = sample(session, evil["detector"], 1.0, True, 0)
    out = io.StringIO()
    write_list(session, drawn.set_id, out)
    filled = [row[:4] + ["Bad"] for row in csv.reader(io.StringIO(out.getvalue()))][1:]
    labels = tmp_path / "list.csv"
    with labels.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["path", "site", "model_label", "reason", "label"], *filled])

    assert sorted(i for i, *_ in read_labels(session, labels, "ann")) == sorted([evil[FORMULA_FILE], evil[PLAIN_FILE]])


# --- 2. bytes that are not UTF-8 and over-long fields -----------------------------------------------------------


def test_review_import_reports_a_latin1_byte_and_a_long_field_by_line(
    session: Session, evil: dict[str, int], tmp_path: Path,
) -> None:
    labels = write_lines(tmp_path / "labels.csv", "path,label,reviewer", f"{PLAIN_FILE},Empty,ann",
                         f"{PLAIN_FILE},Empty,Ren".encode() + LATIN1_E, f"{PLAIN_FILE},Empty,{LONG_FIELD}",
                         f"{PLAIN_FILE},Fox,bo")

    with pytest.raises(ReviewImportError) as error:
        read_labels(session, labels, None)

    assert problems_of(error) == [
        "labels.csv:3: byte 0xE9 is not UTF-8; save the file as UTF-8 (CSV UTF-8 in Excel)",
        "labels.csv:4: a field is longer than 131,072 characters (is a quote left open?)",
        "labels.csv:5: unknown label 'Fox' (expected one of Animal, Empty, Human, Bad)",
    ]


def test_review_import_reports_a_bad_header_line(session: Session, tmp_path: Path) -> None:
    labels = write_lines(tmp_path / "labels.csv", b"path,label,r\xe9viewer", "a.jpg,Empty,ann")

    with pytest.raises(ReviewImportError) as error:
        read_labels(session, labels, None)

    assert problems_of(error) == ["labels.csv:1: byte 0xE9 is not UTF-8; save the file as UTF-8 (CSV UTF-8 in Excel)"]


def test_review_import_cli_prints_the_lines_not_a_traceback(cli: CliRunner, tmp_path: Path) -> None:
    labels = write_lines(tmp_path / "labels.csv", "path,label,reviewer", b"a.jpg,Empty,Ren\xe9")

    result = cli.invoke(main, ["review", "import", str(labels)])

    assert result.exit_code == 1, result.output
    assert "labels.csv:2: byte 0xE9 is not UTF-8" in result.output
    assert "nothing was imported" in result.output and "Traceback" not in result.output


DEPLOYMENT_HEADER = "id,lat,lon,start,end,timezone,camera"


def test_deployment_import_reports_a_latin1_byte_and_a_long_field_by_line(session: Session, tmp_path: Path) -> None:
    registry = write_lines(tmp_path / "deployments.csv", DEPLOYMENT_HEADER,
                           "d1,70,29,2023-03-01,2023-04-30,Europe/Oslo,s1/c1",
                           "d2,70,29,2023-03-01,2023-04-30,Europe/Oslo,s\xe9/c2".encode("latin-1"),
                           f"d3,70,29,2023-03-01,2023-04-30,Europe/Oslo,s1/{LONG_FIELD}",
                           "d4,95,29,2023-03-01,2023-04-30,Europe/Oslo,s1/c4")

    with pytest.raises(DeploymentErrors) as error:
        import_deployments(session, registry)

    assert problems_of(error) == [
        "deployments.csv:3: byte 0xE9 is not UTF-8; save the file as UTF-8 (CSV UTF-8 in Excel)",
        "deployments.csv:4: a field is longer than 131,072 characters (is a quote left open?)",
        "deployments.csv:5: latitude 95 outside -90..90",
    ]
    assert store.deployments.deployments(session) == []


def test_training_labels_report_a_latin1_byte_and_a_long_field_by_line(tmp_path: Path) -> None:
    labels = write_lines(tmp_path / "labels.csv", "path,label", "a.jpg,Good", "caf\xe9.jpg,Good".encode("latin-1"),
                         f"{LONG_FIELD}.jpg,Bad", "d.jpg,")
    expected = [
        "labels.csv:3: byte 0xE9 is not UTF-8; save the file as UTF-8 (CSV UTF-8 in Excel)",
        "labels.csv:4: a field is longer than 131,072 characters (is a quote left open?)",
        "labels.csv:5: empty label",
    ]

    with pytest.raises(LabelFileError) as error:
        read_label_csv(labels)
    assert problems_of(error) == expected
    with pytest.raises(LabelProblems) as error:  # as `trapline train` reports it
        read_training_labels(labels)
    assert problems_of(error) == expected


@pytest.mark.parametrize("importer", ["review", "deployments", "training"])
def test_a_long_field_alone_is_a_problem_not_a_csv_error(importer: str, session: Session, tmp_path: Path) -> None:
    header, row = {"review": ("path,label", f"{LONG_FIELD},Empty"),
                   "deployments": (DEPLOYMENT_HEADER, f"{LONG_FIELD},70,29,2023-03-01,2023-04-30,UTC,s1/c1"),
                   "training": ("path,label", f"{LONG_FIELD}.jpg,Good")}[importer]
    path = write_lines(tmp_path / "in.csv", header, row)
    read = {"review": lambda: read_labels(session, path, "ann"), "deployments": lambda: import_deployments(session, path),
            "training": lambda: read_training_labels(path)}[importer]

    with pytest.raises(TraplineError) as error:
        read()

    assert problems_of(error) == ["in.csv:2: a field is longer than 131,072 characters (is a quote left open?)"]


# --- 3. reviewer names fit their column -------------------------------------------------------------------------


def test_a_reviewer_name_over_128_characters_is_a_problem_of_its_line(
    session: Session, evil: dict[str, int], tmp_path: Path,
) -> None:
    labels = write_lines(tmp_path / "labels.csv", "path,label,reviewer", f"{PLAIN_FILE},Empty,{'a' * 128}",
                         f"{PLAIN_FILE},Animal,{'b' * 5000}")

    with pytest.raises(ReviewImportError) as error:
        read_labels(session, labels, None)

    assert problems_of(error) == ["labels.csv:3: reviewer name is 5,000 characters long, at most 128 fit"]
    assert session.scalars(select(ReviewLabel)).all() == []


def test_a_reviewer_option_over_128_characters_is_refused(session: Session, evil: dict[str, int],
                                                         tmp_path: Path) -> None:
    labels = write_lines(tmp_path / "labels.csv", "path,label", f"{PLAIN_FILE},Empty")

    assert [row[2] for row in read_labels(session, labels, f" {'a' * 128} ")] == ["a" * 128]
    with pytest.raises(UsageProblem, match="--reviewer is 129 characters long, at most 128 fit"):
        read_labels(session, labels, "a" * 129)


# --- 4. deployment ids that look like formulas ------------------------------------------------------------------


def test_deployment_import_warns_of_ids_and_locations_that_look_like_formulas(
    session: Session, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    registry = write_lines(tmp_path / "deployments.csv", DEPLOYMENT_HEADER,
                           "=HYPERLINK(1),70,29,2023-03-01,2023-04-30,UTC,s1/c1",
                           "d2,70,29,2023-03-01,2023-04-30,UTC,@s2/c2",
                           "d3,70,29,2023-03-01,2023-04-30,UTC,-/c3",  # '-': no site, trapline's own
                           "-d4,70,29,2023-03-01,2023-04-30,UTC,s4/=c4")  # only the site is Camtrap DP's location

    with caplog.at_level(logging.WARNING, logger="producer.deployments"):
        assert import_deployments(session, registry) == 4

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w.split(" starts like")[0] for w in warnings] == [
        "deployments.csv:2: deployment id '=HYPERLINK(1)'",
        "deployments.csv:3: location '@s2'",
        "deployments.csv:5: deployment id '-d4'",
    ]
    assert all("a spreadsheet opening them may run it" in w for w in warnings)
