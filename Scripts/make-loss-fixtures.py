"""Generate Keras reference values for NeuralKit's loss and metric tests.

Computes each case in build_cases() with the keras.losses and keras.metrics classes on
the TensorFlow backend in float32, and writes the inputs and results to
Tests/NeuralKitTests/Fixtures/keras-losses.json.

Run from the repository root with a venv that has
tensorflow-cpu==2.21.* and keras==3.15.* installed:

    /work/venv/bin/python Scripts/make-loss-fixtures.py

JSON fields of each case:
  y_pred       nested lists of float32 values, or null when y_pred_spec is set.
  y_pred_spec  {"shape", "fill", "set"} for large tensors: a tensor of the
               given shape filled with "fill", where each [index, value] pair
               in "set" overwrites one element.
  expected     the loss or metric result, or null when Keras raised an error.
               For reduction "none" it is a flat list of the per-sample
               (per-pixel) losses in row-major order. A non-finite result
               would be written as the string "NaN", "Infinity" or
               "-Infinity", so the file stays valid JSON.
  keras_error  {"type", "message"}: the exception class name and the first
               200 characters of its message, present only when Keras raised.
  reduction    for metric cases this is always "sum_over_batch_size" because
               the metric classes return the sample-weighted mean of the
               per-sample values.
"""

import argparse
import json
import math
import os
import pathlib

# The backend must be chosen before keras is imported.
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPOSITORY_ROOT / "Tests/NeuralKitTests/Fixtures/keras-losses.json"

LOSS_CLASSES = {
    "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
}
METRIC_CLASSES = {
    "sparse_categorical_accuracy": keras.metrics.SparseCategoricalAccuracy,
    "categorical_accuracy": keras.metrics.CategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": keras.metrics.SparseTopKCategoricalAccuracy,
}

# Order of the keys in each written case, so reruns produce identical files.
CASE_KEY_ORDER = [
    "name",
    "loss",
    "from_logits",
    "reduction",
    "ignore_class",
    "label_smoothing",
    "k",
    "y_true",
    "y_pred",
    "y_pred_spec",
    "sample_weight",
    "expected",
    "keras_error",
]

THREE_CLASS_PROBABILITIES = [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.2, 0.6, 0.2]]
THREE_CLASS_LOGITS = [2.0, 1.0, 0.1]


def make_case(name, loss, y_true, y_pred, from_logits=False,
              reduction="sum_over_batch_size", **options):
    """Build one case description. Keyword options set the optional JSON fields."""
    case = {
        "name": name,
        "loss": loss,
        "from_logits": from_logits,
        "reduction": reduction,
        "y_true": y_true,
        "y_pred": y_pred,
        "sample_weight": None,
    }
    if loss == "sparse_categorical_crossentropy":
        case["ignore_class"] = None
    if loss == "categorical_crossentropy":
        case["label_smoothing"] = 0.0
    case.update(options)
    return case


def one_hot(labels, class_count):
    return [[1.0 if column == label else 0.0 for column in range(class_count)]
            for label in labels]


def make_per_pixel_inputs():
    """Return deterministic segmentation-style labels (2, 2, 2) and probabilities (2, 2, 2, 3)."""
    labels = [[[0, 1], [2, 0]], [[1, 2], [0, 1]]]
    probabilities = np.zeros((2, 2, 2, 3), dtype=np.float32)
    for index in np.ndindex(2, 2, 2):
        batch, row, column = index
        raw = np.array(
            [(batch * 7 + row * 3 + column * 5 + channel * 11) % 13 + 1
             for channel in range(3)],
            dtype=np.float32,
        )
        probabilities[index] = raw / raw.sum()
    # Written as float32 values so a reader parsing them gets the exact tensor
    # Keras saw.
    return labels, [[[[float(value) for value in pixel] for pixel in row]
                     for row in image] for image in probabilities.tolist()]


def build_cases():
    cases = []
    sparse = "sparse_categorical_crossentropy"
    categorical = "categorical_crossentropy"

    for label in range(3):
        cases.append(make_case(f"sparse_ce_logits_label_{label}", sparse,
                               [label], [THREE_CLASS_LOGITS], from_logits=True))

    cases.append(make_case("categorical_ce_zero_probability", categorical,
                           [[1.0, 0.0]], [[0.0, 1.0]]))

    cases.append(make_case("sparse_ce_logits_two_classes", sparse,
                           [1], [[0.0, 1.0]], from_logits=True))
    cases.append(make_case("sparse_ce_logits_label_out_of_range", sparse,
                           [100], [[0.0, 1.0]], from_logits=True))

    reduction_probabilities = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    for reduction in ["sum_over_batch_size", "sum", "none"]:
        cases.append(make_case(f"sparse_ce_probabilities_{reduction}", sparse,
                               [1, 2], reduction_probabilities,
                               reduction=reduction))
    cases.append(make_case("sparse_ce_probabilities_sample_weight", sparse,
                           [1, 2], reduction_probabilities,
                           sample_weight=[0.3, 0.7]))

    cases.append(make_case("sparse_ce_probabilities_labels_rank_1", sparse,
                           [0, 1, 1], THREE_CLASS_PROBABILITIES))
    cases.append(make_case("sparse_ce_probabilities_labels_rank_2", sparse,
                           [[0], [1], [1]], THREE_CLASS_PROBABILITIES))
    cases.append(make_case("sparse_accuracy_labels_rank_1",
                           "sparse_categorical_accuracy",
                           [0, 1, 1], THREE_CLASS_PROBABILITIES))
    cases.append(make_case("sparse_accuracy_labels_rank_2",
                           "sparse_categorical_accuracy",
                           [[0], [1], [1]], THREE_CLASS_PROBABILITIES))

    # Model.fit turns class_weight {0: 1, 1: 3} into this sample_weight [1, 3]
    # (keras 3.15 class_weight_to_sample_weights).
    cases.append(make_case("sparse_ce_logits_class_weight", sparse,
                           [0, 1], [THREE_CLASS_LOGITS] * 2, from_logits=True,
                           sample_weight=[1.0, 3.0]))
    cases.append(make_case("sparse_ce_logits_unweighted", sparse,
                           [0, 1], [THREE_CLASS_LOGITS] * 2, from_logits=True))

    cases.append(make_case("sparse_ce_logits_ignore_class", sparse,
                           [0, 1, 2, -1], [THREE_CLASS_LOGITS] * 4,
                           from_logits=True, ignore_class=-1))
    cases.append(make_case("sparse_ce_logits_all_ignored", sparse,
                           [-1, -1], [THREE_CLASS_LOGITS] * 2,
                           from_logits=True, ignore_class=-1))

    cases.append(make_case("sparse_ce_logits_large_values", sparse,
                           [0], [[14.4, 50.1, 3.5]], from_logits=True))

    cases.append(make_case("sparse_ce_logits_2050_classes", sparse,
                           [2049], None, from_logits=True,
                           y_pred_spec={"shape": [1, 2050], "fill": 0.0,
                                        "set": [[[0, 2049], 1.0]]}))
    cases.append(make_case("sparse_ce_logits_50000_classes", sparse,
                           [49999], None, from_logits=True,
                           y_pred_spec={"shape": [1, 50000], "fill": 0.0,
                                        "set": []}))

    cases.append(make_case("categorical_ce_probabilities", categorical,
                           one_hot([0, 1, 1], 3), THREE_CLASS_PROBABILITIES))
    cases.append(make_case("categorical_ce_label_smoothing", categorical,
                           one_hot([0, 1, 1], 3), THREE_CLASS_PROBABILITIES,
                           label_smoothing=0.1))
    cases.append(make_case("categorical_ce_logits", categorical,
                           one_hot([0, 2], 3),
                           [[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]],
                           from_logits=True))
    cases.append(make_case("categorical_accuracy_probabilities",
                           "categorical_accuracy",
                           one_hot([0, 1, 1], 3), THREE_CLASS_PROBABILITIES))

    pixel_labels, pixel_probabilities = make_per_pixel_inputs()
    for reduction in ["sum_over_batch_size", "none"]:
        cases.append(make_case(f"sparse_ce_per_pixel_{reduction}", sparse,
                               pixel_labels, pixel_probabilities,
                               reduction=reduction))

    cases.append(make_case("sparse_top_2_accuracy_probabilities",
                           "sparse_top_k_categorical_accuracy",
                           [2, 1, 1], THREE_CLASS_PROBABILITIES, k=2))

    cases.append(make_case("sparse_ce_logits_float_label", sparse,
                           [[3.0]], [[0.0, 0.0, 0.0, 1.0, 0.0]],
                           from_logits=True))

    # Further edge cases that pin down Keras semantics NeuralKit should match.
    cases.append(make_case("sparse_ce_logits_fractional_label", sparse,
                           [[0.7]], [[0.0, 0.0, 0.0, 1.0, 0.0]],
                           from_logits=True))
    cases.append(make_case("sparse_ce_probabilities_label_out_of_range", sparse,
                           [100], [[0.3, 0.7]]))
    cases.append(make_case("sparse_ce_probabilities_unnormalized", sparse,
                           [0], [THREE_CLASS_LOGITS]))
    cases.append(make_case("sparse_ce_logits_ignore_class_none", sparse,
                           [0, 1, 2, -1], [THREE_CLASS_LOGITS] * 4,
                           from_logits=True, reduction="none", ignore_class=-1))
    cases.append(make_case("sparse_ce_logits_ignore_class_sample_weight", sparse,
                           [0, 1, 2, -1], [THREE_CLASS_LOGITS] * 4,
                           from_logits=True, ignore_class=-1,
                           sample_weight=[1.0, 3.0, 1.0, 1.0]))
    return cases


def materialize_y_pred(case):
    """Return y_pred as a float32 array, expanding y_pred_spec when present."""
    spec = case.get("y_pred_spec")
    if spec is None:
        return np.array(case["y_pred"], dtype=np.float32)
    y_pred = np.full(spec["shape"], spec["fill"], dtype=np.float32)
    for index, value in spec["set"]:
        y_pred[tuple(index)] = value
    return y_pred


def make_labels(y_true):
    """Convert labels to int32 when every value is an int, else to float32."""
    flat = np.array(y_true).ravel().tolist()
    if all(isinstance(value, int) for value in flat):
        return np.array(y_true, dtype=np.int32)
    return np.array(y_true, dtype=np.float32)


def compute_with_keras(case):
    """Run the case through the Keras class it names and return the result array."""
    y_true = make_labels(case["y_true"])
    y_pred = materialize_y_pred(case)
    sample_weight = case["sample_weight"]
    if sample_weight is not None:
        sample_weight = np.array(sample_weight, dtype=np.float32)

    name = case["loss"]
    if name in LOSS_CLASSES:
        options = {"from_logits": case["from_logits"], "reduction": case["reduction"]}
        if "ignore_class" in case:
            options["ignore_class"] = case["ignore_class"]
        if "label_smoothing" in case:
            options["label_smoothing"] = case["label_smoothing"]
        loss = LOSS_CLASSES[name](**options)
        result = loss(y_true, y_pred, sample_weight=sample_weight)
    else:
        options = {"k": case["k"]} if "k" in case else {}
        metric = METRIC_CLASSES[name](**options)
        metric.update_state(y_true, y_pred, sample_weight=sample_weight)
        result = metric.result()
    return np.asarray(keras.ops.convert_to_numpy(result), dtype=np.float32)


def to_json_float(value):
    """Convert a float32 to a JSON-safe Python value with full float32 precision."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def evaluate(case):
    """Fill in "expected", or "keras_error" when Keras raises instead."""
    try:
        result = compute_with_keras(case)
    except Exception as error:  # Any Keras or TensorFlow error is a recorded outcome.
        case["expected"] = None
        case["keras_error"] = {"type": type(error).__name__, "message": str(error)[:200]}
        return case

    if case["reduction"] == "none":
        case["expected"] = [to_json_float(value) for value in result.ravel()]
    else:
        case["expected"] = to_json_float(result.reshape(()))
    return case


def order_keys(case):
    return {key: case[key] for key in CASE_KEY_ORDER if key in case}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT,
                        help="path of the JSON file to write (default: %(default)s)")
    arguments = parser.parse_args()

    cases = [order_keys(evaluate(case)) for case in build_cases()]
    document = {
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "cases": cases,
    }

    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    arguments.output.write_text(text, encoding="utf-8")
    print(f"Wrote {len(cases)} cases to {arguments.output}")


if __name__ == "__main__":
    main()
