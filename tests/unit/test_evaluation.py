"""shared/evaluation.py: classification metrics, confidence deciles and the artifacts of a model version.

Every expected value below is computed by hand in the comments.
"""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from shared.evaluation import (
    DECILES,
    ClassMetrics,
    DecileAccuracy,
    Evaluation,
    Tally,
    decile_index,
    evaluate,
    evaluate_labels,
    plot_confusion,
    plot_training_curves,
    write_artifacts,
    write_confusion_csv,
    write_deciles_csv,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASSES = ("cat", "dog", "fox")

# Ten images: (true label, probabilities over CLASSES) -> prediction, confidence, decile bin, correct?
# Bins are closed on the right, bin i = (i/10, (i+1)/10] (bin 0 = [0, 0.1]), so a tenth closes the bin below it.
SAMPLES = [
    ("cat", [0.95, 0.03, 0.02]),  # cat 0.95 bin 9 right
    ("cat", [0.6, 0.3, 0.1]),  #    cat 0.6  bin 5 right
    ("cat", [0.3, 0.5, 0.2]),  #    dog 0.5  bin 4 wrong
    ("cat", [0.2, 0.1, 0.7]),  #    fox 0.7  bin 6 wrong
    ("dog", [0.1, 0.8, 0.1]),  #    dog 0.8  bin 7 right
    ("dog", [0.0, 1.0, 0.0]),  #    dog 1.0  bin 9 right
    ("dog", [0.5, 0.4, 0.1]),  #    cat 0.5  bin 4 wrong
    ("fox", [0.05, 0.05, 0.9]),  #  fox 0.9  bin 8 right
    ("fox", [0.3, 0.4, 0.3]),  #    dog 0.4  bin 3 wrong
    ("fox", [0.25, 0.25, 0.5]),  #  fox 0.5  bin 4 right
]
TRUE = [label for label, _ in SAMPLES]
PROBABILITIES = [row for _, row in SAMPLES]
PREDICTED = ["cat", "cat", "dog", "fox", "dog", "dog", "cat", "fox", "dog", "fox"]

# Confusion (rows true, columns predicted):
#          cat dog fox   support
#   cat     2   1   1      4
#   dog     1   2   0      3
#   fox     0   1   2      3
#   column  3   4   3      (predicted as)
CONFUSION = ((2, 1, 1), (1, 2, 0), (0, 1, 2))
# accuracy = (2 + 2 + 2) / 10 = 0.6
# cat: precision 2/3, recall 2/4 = 1/2, F1 = 2 * (2/3)(1/2) / (2/3 + 1/2) = (2/3) / (7/6) = 4/7
# dog: precision 2/4 = 1/2, recall 2/3, F1 = 4/7 (same pair)
# fox: precision 2/3, recall 2/3, F1 = 2/3
# macro F1 = (4/7 + 4/7 + 2/3) / 3 = (12/21 + 12/21 + 14/21) / 3 = 38/63
EXPECTED_CLASSES = [
    ("cat", 4, 2 / 3, 1 / 2, 4 / 7),
    ("dog", 3, 1 / 2, 2 / 3, 4 / 7),
    ("fox", 3, 2 / 3, 2 / 3, 2 / 3),
]
# Deciles: bin 3 {0.4 wrong} -> 0/1; bin 4 {0.5 wrong, 0.5 wrong, 0.5 right} -> 1/3; bin 5 {0.6 right} -> 1;
# bin 6 {0.7 wrong} -> 0; bin 7 {0.8 right} -> 1; bin 8 {0.9 right} -> 1; bin 9 {0.95 right, 1.0 right} -> 2/2;
# bins 0-2 empty.
EXPECTED_DECILES = [(0, None), (0, None), (0, None), (1, 0.0), (3, 1 / 3), (1, 1.0), (1, 0.0), (1, 1.0), (1, 1.0),
                    (2, 1.0)]


def example() -> Evaluation:
    return evaluate(TRUE, PROBABILITIES, CLASSES)


def test_confusion_and_accuracy_of_the_hand_worked_example() -> None:
    evaluation = example()

    assert evaluation.classes == CLASSES
    assert evaluation.n == 10
    assert evaluation.confusion == CONFUSION
    assert evaluation.accuracy == pytest.approx(0.6)


def test_per_class_precision_recall_and_f1() -> None:
    per_class = example().per_class

    assert [m.label for m in per_class] == list(CLASSES)
    for metrics, (label, support, precision, recall, f1) in zip(per_class, EXPECTED_CLASSES, strict=True):
        assert metrics.label == label
        assert metrics.support == support
        assert metrics.precision == pytest.approx(precision)
        assert metrics.recall == pytest.approx(recall)
        assert metrics.f1 == pytest.approx(f1)


def test_macro_f1() -> None:
    assert example().macro_f1 == pytest.approx(38 / 63)


def test_deciles_of_the_hand_worked_example() -> None:
    deciles = example().deciles

    assert len(deciles) == DECILES
    assert [(d.lower, d.upper) for d in deciles] == [(i / 10, (i + 1) / 10) for i in range(10)]
    assert deciles[0] == DecileAccuracy(0.0, 0.1, 0, None)
    assert deciles[9].lower == 0.9 and deciles[9].upper == 1.0
    for decile, (count, accuracy) in zip(deciles, EXPECTED_DECILES, strict=True):
        assert decile.count == count
        assert decile.accuracy == (None if accuracy is None else pytest.approx(accuracy))


def test_evaluate_labels_gives_the_same_as_evaluate_from_the_argmax() -> None:
    confidences = [max(row) for row in PROBABILITIES]

    assert evaluate_labels(TRUE, PREDICTED, CLASSES, confidences) == example()


def test_a_tally_fed_one_pair_at_a_time_equals_evaluate_labels() -> None:
    confidences = [max(row) for row in PROBABILITIES]
    tally = Tally(CLASSES)
    assert tally.evaluation() == evaluate_labels([], [], CLASSES)  # nothing yet: no deciles, no accuracy
    for true, predicted, confidence in zip(TRUE, PREDICTED, confidences, strict=True):
        tally.add(true, predicted, confidence)

    assert tally.evaluation() == example()
    tally.add(TRUE[0], PREDICTED[0])  # one pair without a confidence: no deciles unless asked for
    assert tally.evaluation().deciles == ()
    assert tally.evaluation(scored=True).deciles[9].count == example().deciles[9].count
    with pytest.raises(ValueError, match="predicted labels not in the classes"):
        tally.add("cat", "wolf")
    with pytest.raises(ValueError, match="not in"):
        tally.add("cat", "dog", 1.5)


def test_without_confidences_there_are_no_deciles() -> None:
    evaluation = evaluate_labels(TRUE, PREDICTED, CLASSES)

    assert evaluation.deciles == ()
    assert evaluation.confusion == CONFUSION
    assert evaluation.macro_f1 == pytest.approx(38 / 63)


def test_a_class_never_predicted_has_no_precision_and_counts_zero_in_macro_f1() -> None:
    # a: 1 of 1 right, predicted twice -> precision 1/2, recall 1, F1 = 2 * 1/2 / (3/2) = 2/3.
    # b: never predicted -> precision None, recall 0/1 = 0, F1 None; counts 0.0 in macro F1: (2/3 + 0) / 2 = 1/3.
    evaluation = evaluate_labels(["a", "b"], ["a", "a"], ["a", "b"])
    a, b = evaluation.per_class

    assert a == ClassMetrics("a", 1, pytest.approx(0.5), pytest.approx(1.0), pytest.approx(2 / 3))
    assert b == ClassMetrics("b", 1, None, 0.0, None)
    assert evaluation.accuracy == pytest.approx(0.5)
    assert evaluation.macro_f1 == pytest.approx(1 / 3)


def test_a_class_without_true_images_has_no_recall_and_is_left_out_of_macro_f1() -> None:
    # c: no true image, predicted once -> precision 0/1 = 0, recall None, F1 None.
    # d: no true image, never predicted -> everything None.
    # a: 1 of 1 right, predicted once -> 1, 1, 1.  b: 0 of 1 -> precision None (never predicted), recall 0.
    # macro F1 over a and b only: (1 + 0) / 2.
    evaluation = evaluate_labels(["a", "b"], ["a", "c"], ["a", "b", "c", "d"])

    assert evaluation.per_class[2] == ClassMetrics("c", 0, 0.0, None, None)
    assert evaluation.per_class[3] == ClassMetrics("d", 0, None, None, None)
    assert evaluation.macro_f1 == pytest.approx(0.5)


def test_precision_and_recall_both_zero_give_f1_zero() -> None:
    # a predicted as b and b as a: each class has precision 0/1 and recall 0/1, so F1 is 0.0, not None.
    evaluation = evaluate_labels(["a", "b"], ["b", "a"], ["a", "b"])

    assert [m.f1 for m in evaluation.per_class] == [0.0, 0.0]
    assert evaluation.accuracy == 0.0
    assert evaluation.macro_f1 == 0.0


def test_an_empty_test_set_has_no_scores() -> None:
    evaluation = evaluate([], [], CLASSES)

    assert evaluation.n == 0
    assert evaluation.accuracy is None
    assert evaluation.macro_f1 is None
    assert evaluation.confusion == ((0, 0, 0),) * 3
    assert all(m == ClassMetrics(m.label, 0, None, None, None) for m in evaluation.per_class)
    assert [d.count for d in evaluation.deciles] == [0] * 10
    assert all(d.accuracy is None for d in evaluation.deciles)


@pytest.mark.parametrize(("confidence", "bin_"), [
    # 0 joins the first bin [0, 0.1]; 5e-324 is the smallest positive float, inside (0, 0.1].
    (0.0, 0), (5e-324, 0), (0.05, 0), (0.0999, 0), (0.1, 0),
    # 0.10000000000000002 and 0.30000000000000004 are the floats just above 0.1 and 0.3: the next bin opens.
    (0.10000000000000002, 1), (0.1001, 1),
    (0.29999999999999993, 2), (0.3, 2), (0.30000000000000004, 3),
    (0.6999, 6), (0.7, 6), (0.7000000000000001, 7), (0.7001, 7),
    (0.8999999999999999, 8), (0.9, 8), (0.9000000000000001, 9), (0.95, 9), (1.0, 9),
])
def test_decile_bin_edges(confidence: float, bin_: int) -> None:
    assert decile_index(confidence) == bin_


@pytest.mark.parametrize("i", range(1, 11))
def test_each_tenth_closes_the_bin_below_it(i: int) -> None:
    # i / 10 and the literal 0.1 ... 0.9, 1.0 are the same float. The binary values of 0.1, 0.2, 0.4, 0.8 and
    # 0.9 lie just above their tenth, so binning the binary value would push them one bin up; binned from
    # the shortest decimal form, each tenth i/10 is the closed upper end of bin i - 1.
    assert decile_index(i / 10) == i - 1
    assert decile_index(float(f"{i // 10}.{i % 10}")) == i - 1


def test_decile_edges_through_evaluate_labels() -> None:
    confidences = [0.0, 0.1, 0.3, 0.7, 0.95, 1.0]
    labels = ["a"] * len(confidences)

    deciles = evaluate_labels(labels, labels, ["a"], confidences).deciles

    # 0.0 -> 0 and 0.1 -> 0 (first bin [0, 0.1]), 0.3 -> 2, 0.7 -> 6, 0.95 -> 9, 1.0 -> 9.
    assert [d.count for d in deciles] == [2, 0, 1, 0, 0, 0, 1, 0, 0, 2]
    assert [d.accuracy for d in deciles] == [1.0, None, 1.0, None, None, None, 1.0, None, None, 1.0]


@pytest.mark.parametrize("confidence", [-0.01, 1.01, float("nan")])
def test_a_confidence_outside_zero_to_one_is_refused(confidence: float) -> None:
    with pytest.raises(ValueError, match="not in"):
        evaluate_labels(["a"], ["a"], ["a"], [confidence])


def test_argmax_takes_the_first_maximum_on_ties() -> None:
    evaluation = evaluate(["cat", "dog", "fox"], [[0.4, 0.4, 0.2], [0.2, 0.4, 0.4], [1 / 3, 1 / 3, 1 / 3]], CLASSES)

    # predictions: cat, dog, cat
    assert evaluation.confusion == ((1, 0, 0), (0, 1, 0), (1, 0, 0))
    # confidences 0.4, 0.4 and 1/3 = 0.3333333333333333 all lie in bin 3 = (0.3, 0.4]
    assert evaluation.deciles[3].count == 3
    assert evaluation.deciles[4].count == 0


@pytest.mark.parametrize(("true", "probabilities", "classes", "message"), [
    (["cat", "dog"], [[1.0, 0.0, 0.0]], CLASSES, "2 true labels but 1 probabilities"),
    (["cat"], [[1.0, 0.0]], CLASSES, "row 0 has 2 values, expected 3"),
    (["cat", "cat"], [[1.0, 0.0, 0.0], [0.5, 0.25, 0.125, 0.125]], CLASSES, "row 1 has 4 values"),
    (["cow"], [[1.0, 0.0, 0.0]], CLASSES, r"true labels not in the classes: \['cow'\]"),
    ([], [], [], "no classes"),
    (["cat"], [[1.0, 0.0]], ["cat", "cat"], "repeat"),
])
def test_evaluate_refuses_inconsistent_input(
    true: list[str], probabilities: list[list[float]], classes: list[str], message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate(true, probabilities, classes)


@pytest.mark.parametrize(("true", "predicted", "confidences", "message"), [
    (["cat"], ["cat", "dog"], None, "1 true labels but 2 predicted labels"),
    (["cat"], ["cow"], None, r"predicted labels not in the classes: \['cow'\]"),
    (["cow"], ["cat"], None, "true labels not in the classes"),
    (["cat"], ["cat"], [0.5, 0.5], "1 true labels but 2 confidences"),
])
def test_evaluate_labels_refuses_inconsistent_input(
    true: list[str], predicted: list[str], confidences: list[float] | None, message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_labels(true, predicted, CLASSES, confidences)


def test_results_are_frozen() -> None:
    evaluation = example()

    with pytest.raises(FrozenInstanceError):
        evaluation.accuracy = 1.0  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        evaluation.per_class[0].f1 = 1.0  # type: ignore[misc]


def test_to_dict_is_json_serialisable_and_complete() -> None:
    # a: right at 0.9 -> bin 8 = (0.8, 0.9]; b: wrong at 0.35 -> bin 3 = (0.3, 0.4].
    evaluation = evaluate_labels(["a", "b"], ["a", "a"], ["a", "b"], [0.9, 0.35])

    data = json.loads(json.dumps(evaluation.to_dict()))

    assert data == {
        "classes": ["a", "b"],
        "n": 2,
        "accuracy": 0.5,
        "macro_f1": pytest.approx(1 / 3),
        "per_class": [
            {"label": "a", "support": 1, "precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3)},
            {"label": "b", "support": 1, "precision": None, "recall": 0.0, "f1": None},
        ],
        "confusion": [[1, 0], [1, 0]],
        "deciles": [
            {"lower": i / 10, "upper": (i + 1) / 10, "count": count, "accuracy": accuracy}
            for i, (count, accuracy) in enumerate(
                [(0, None)] * 3 + [(1, 0.0)] + [(0, None)] * 4 + [(1, 1.0)] + [(0, None)],
            )
        ],
    }


def test_confusion_csv_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "confusion.csv"

    write_confusion_csv(example(), path)

    assert path.read_text() == "true\\predicted,cat,dog,fox\ncat,2,1,1\ndog,1,2,0\nfox,0,1,2\n"


def test_deciles_csv_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "deciles.csv"

    write_deciles_csv(example(), path)

    assert path.read_text() == (
        "lower,upper,count,accuracy\n"
        "0.0,0.1,0,\n"
        "0.1,0.2,0,\n"
        "0.2,0.3,0,\n"
        "0.3,0.4,1,0.0\n"
        "0.4,0.5,3,0.3333333333333333\n"
        "0.5,0.6,1,1.0\n"
        "0.6,0.7,1,0.0\n"
        "0.7,0.8,1,1.0\n"
        "0.8,0.9,1,1.0\n"
        "0.9,1.0,2,1.0\n"
    )


def test_deciles_csv_without_confidences_has_only_the_header(tmp_path: Path) -> None:
    path = tmp_path / "deciles.csv"

    write_deciles_csv(evaluate_labels(TRUE, PREDICTED, CLASSES), path)

    assert path.read_text() == "lower,upper,count,accuracy\n"


def test_write_artifacts_writes_the_four_files(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "species" / "abc123" / "evaluation"  # parents do not exist yet
    evaluation = example()

    files = write_artifacts(evaluation, folder, title="species v1")

    assert files == {
        "metrics": "metrics.json", "confusion_csv": "confusion_matrix.csv", "confusion_png": "confusion_matrix.png",
        "deciles_csv": "confidence_deciles.csv",
    }
    assert sorted(p.name for p in folder.iterdir()) == sorted(files.values())
    assert json.loads((folder / files["metrics"]).read_text()) == json.loads(json.dumps(evaluation.to_dict()))
    assert (folder / files["confusion_csv"]).read_text().splitlines()[1] == "cat,2,1,1"
    assert (folder / files["deciles_csv"]).read_text().splitlines()[5] == "0.4,0.5,3,0.3333333333333333"
    assert (folder / files["confusion_png"]).read_bytes().startswith(PNG_MAGIC)


def test_plot_confusion_writes_a_png_even_for_an_empty_test_set(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"

    plot_confusion(evaluate([], [], CLASSES), path)

    assert path.read_bytes().startswith(PNG_MAGIC)


def test_plot_training_curves_writes_a_png(tmp_path: Path) -> None:
    history = [
        {"loss": 1.2, "val_loss": 1.3, "accuracy": 0.5, "val_accuracy": 0.45},
        {"loss": 0.8, "accuracy": 0.7},  # no validation this epoch: skipped
        {"loss": 0.5, "val_loss": 0.7},
    ]
    learning_rates = [1e-3 * (1 - i / 30) for i in range(30)]  # 10 batches per epoch
    path = tmp_path / "curves.png"

    plot_training_curves(history, learning_rates, path)

    assert path.read_bytes().startswith(PNG_MAGIC)


def test_plot_training_curves_without_any_data(tmp_path: Path) -> None:
    path = tmp_path / "nothing.png"

    plot_training_curves([{"accuracy": 0.5}], [], path)

    assert path.read_bytes().startswith(PNG_MAGIC)
