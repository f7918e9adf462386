"""ferkeras.training.evaluation: whole-set scores against the NumPy definitions, strict JSON, the result report."""

import json
import math

import numpy as np
import pytest

from ferkeras import training
from ferkeras.metrics import numpy_ref


def test_affect_scores_match_numpy_references():
    rng = np.random.default_rng(0)
    va_true = rng.uniform(-1, 1, (50, 2))
    va_true[:5, 0] = np.nan  # unlabelled valence
    va_pred = np.clip(va_true + rng.normal(0, 0.3, (50, 2)), -1, 1)
    va_pred[:5, 0] = 0.1
    expr_true = rng.integers(-1, 4, 50)
    logits = rng.normal(size=(50, 4))
    scores = training.affect_scores({"va": va_true, "expression": expr_true},
                                    {"va": va_pred, "expression": logits})
    labelled = ~np.isnan(va_true[:, 0])
    t, p = va_true[labelled, 0], va_pred[labelled, 0]
    ccc = 2 * np.mean((t - t.mean()) * (p - p.mean())) / (t.var() + p.var() + (t.mean() - p.mean()) ** 2)
    assert scores["valence_ccc"] == pytest.approx(ccc)
    assert scores["arousal_rmse"] == pytest.approx(np.sqrt(np.mean((va_pred[:, 1] - va_true[:, 1]) ** 2)))
    assert scores["mean_pcc"] == pytest.approx(numpy_ref.pcc(va_true, va_pred))
    keep = expr_true >= 0
    assert scores["expression_accuracy"] == pytest.approx(np.mean(logits.argmax(1)[keep] == expr_true[keep]))
    assert scores["expression_count"] == keep.sum()
    assert scores["va_count"] == 45


def test_jsonable_gives_strict_json():
    value = {1: np.float32(0.25), "nan": float("nan"), "inf": np.float64(-np.inf), "ints": np.arange(3),
             "nested": ({"x": np.int64(7)}, [np.float16(1.5)]), "text": "a", "none": None, "flag": True}
    out = training.jsonable(value)
    assert out == {"1": 0.25, "nan": None, "inf": None, "ints": [0, 1, 2], "nested": [{"x": 7}, [1.5]],
                   "text": "a", "none": None, "flag": True}
    assert type(out["ints"][0]) is int and type(out["1"]) is float
    json.dumps(out, allow_nan=False)  # raises on any NaN / inf / NumPy value left


def test_evaluate_and_report_writes_what_it_returns(tmp_path):
    """result.json holds the NumPy scores of the collected predictions, the Keras metrics, class names, figures and
    the caller's extras; the returned dict is the same."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5)).astype("float32")
    va = np.tanh(x[:, :2] + 0.1 * rng.normal(size=(40, 2))).astype("float32")
    expression = (x[:, 2] > 0).astype("int32")
    inputs = keras.Input((5,))
    model = keras.Model(inputs, {"va": keras.layers.Dense(2, activation="tanh", name="va")(inputs),
                                 "expression": keras.layers.Dense(3, name="expression")(inputs)})
    model.compile(loss={"va": "mse", "expression": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
    data = tf.data.Dataset.from_tensor_slices((x, {"va": va, "expression": expression})).batch(16)

    run = training.RunDir(str(tmp_path / "run"))
    with open(run.csv_log_path, "w") as f:
        f.write("epoch,loss\n0,2.0\n1,1.0\n")
    result = training.evaluate_and_report(model, data, run, extra={"seconds": np.float64(1.5)}, title="t",
                                          class_names=["a", "b", "c"])
    labels, preds = training.collect_predictions(model, data)
    assert labels["va"].shape == (40, 2) and preds["expression"].shape == (40, 3)
    expected = training.affect_scores(labels, preds, num_classes=3)
    assert result["metrics"]["valence_ccc"] == pytest.approx(expected["valence_ccc"], rel=1e-6)
    assert result["metrics"]["expression_confusion"] == expected["expression_confusion"]
    assert result["class_names"] == ["a", "b", "c"] and result["seconds"] == 1.5
    assert result["figures"] == {"va_scatter": run.VA_SCATTER, "training_curves": run.CURVES}
    assert math.isclose(result["keras_metrics"]["loss"], model.evaluate(data, verbose=0)[0], rel_tol=1e-6)
    saved = run.read_result()
    assert saved == training.jsonable(result)
    for name in result["figures"].values():
        with open(run.file(name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_collect_predictions_of_an_empty_set_fails_clearly():
    import keras
    import tensorflow as tf

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    empty = tf.data.Dataset.from_tensor_slices((np.zeros((0, 2), "float32"), np.zeros((0, 2), "float32"))).batch(4)
    with pytest.raises(ValueError, match="yielded no batch"):
        training.collect_predictions(model, empty)
