"""ExpressionEvaluation / expression_metrics take what users have: class-name labels, a clear class-count error,
one name for overall accuracy, and use outside ``fit`` (the README example, run as written)."""

import os
import warnings

import numpy as np
import pytest

import keras
import tensorflow as tf
from keras import layers

from ferkeras.callbacks import ExpressionEvaluation, LinearProbe, expression_metrics
from ferkeras.metrics import OverallAccuracy, numpy_ref
from ferkeras.training.evaluation import affect_scores

NAMES = ["neutral", "happy", "surprise"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 5)).astype("float32")
    ids = rng.integers(0, 3, 24)
    ids[[3, 9]] = -1  # no label
    inputs = keras.Input((5,))
    model = keras.Model(inputs, layers.Dense(3)(inputs))
    return x, ids, model, model.predict_on_batch(x)


def _logs(callback, model):
    callback.set_model(model)
    logs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        callback.on_epoch_end(0, logs)
    return logs


def test_class_name_labels_str_and_bytes_give_the_id_metrics(data):
    x, ids, model, scores = data
    names = np.array([NAMES[i] if i >= 0 else "" for i in ids])  # "" = no label
    by_id = _logs(ExpressionEvaluation((x, ids), NAMES, batch_size=8), model)
    by_str = _logs(ExpressionEvaluation((x, names), NAMES, batch_size=8), model)  # tf.string -> bytes b"surprise"
    as_bytes = tf.data.Dataset.from_tensor_slices((x, {"expression": names.astype(bytes)})).batch(8)
    by_bytes = _logs(ExpressionEvaluation(as_bytes, NAMES), model)
    assert by_id["val_macro_f1"] == pytest.approx(numpy_ref.macro_f1(ids, scores, 3), abs=1e-9)
    assert by_str == by_id and by_bytes == by_id
    # Case and spaces are forgiven; an unknown name is an error naming it and the class names.
    loose = np.array([n.upper() + " " if n else n for n in names])
    assert _logs(ExpressionEvaluation((x, loose), NAMES, batch_size=8), model) == by_id
    with pytest.raises(ValueError, match=r"not among class_names \['neutral', 'happy', 'surprise'\]: first "
                                         r"\['anger'\]"):
        _logs(ExpressionEvaluation((x, np.where(ids == 1, "anger", names)), NAMES, batch_size=8), model)
    # The whole-set report takes names too.
    scores_by_name = affect_scores({"expression": names}, {"expression": scores}, class_names=NAMES)
    assert scores_by_name["expression_accuracy"] == pytest.approx(numpy_ref.accuracy(ids, scores, 3))
    assert scores_by_name["expression_count"] == 22


def test_class_count_mismatch_blames_the_class_names(data):
    x, ids, model, _ = data
    four = NAMES + ["sad"]
    with pytest.raises(ValueError, match=r"scores have 3 classes .* but class_names has 4 names "
                                         r"\['neutral', 'happy', 'surprise', 'sad'\]; give the model's class names"):
        _logs(ExpressionEvaluation((x, ids), four, batch_size=8), model)


def test_one_name_for_overall_accuracy_with_a_warning_alias(data):
    x, ids, model, scores = data
    name = OverallAccuracy(3).name  # the streaming metric's name ...
    metrics, _ = expression_metrics(ids, scores, class_names=NAMES)
    assert name == "accuracy" and metrics[name] == pytest.approx(numpy_ref.accuracy(ids, scores, 3))
    assert "expression_" + name in affect_scores({"expression": ids}, {"expression": scores})  # ... result.json's
    callback = ExpressionEvaluation((x, ids), NAMES, batch_size=8)
    callback.set_model(model)
    logs = {}
    with pytest.warns(FutureWarning, match="'val_overall_accuracy' is a deprecated alias"):
        callback.on_epoch_end(0, logs)
    assert logs["val_" + name] == metrics[name] == logs["val_overall_accuracy"]  # ... and the callback's
    with pytest.warns(FutureWarning, match="deprecated alias"):
        assert metrics["overall_accuracy"] == metrics[name]
    with pytest.warns(FutureWarning, match="deprecated alias"):
        assert metrics.get("overall_accuracy") == metrics[name]
    probe_logs = _logs(LinearProbe(lambda v: v, (x, ids), (x, ids), num_classes=3), model)
    assert probe_logs["probe_" + name] == probe_logs["probe_overall_accuracy"]


# The README's example, "Evaluating outside fit", word for word (between the markers).
README_EXAMPLE = '''
import numpy as np
import keras
from ferkeras.callbacks import AffectEvaluation, ExpressionEvaluation, expression_metrics

names = ["neutral", "happy", "surprise"]
rng = np.random.default_rng(0)
images = rng.random((12, 16, 16, 3), dtype="float32")
labels = np.array(["happy", "surprise", "neutral"] * 4)  # class names, class ids or one-hot rows
va = rng.uniform(-1, 1, (12, 2)).astype("float32")
model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
va_model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])

# A callback outside fit: give it the model, then call its epoch hook with a logs dict to fill.
evaluation = ExpressionEvaluation((images, labels), names, prefix="test_", out_dir="report")
evaluation.set_model(model)
logs = {}
evaluation.on_epoch_end(0, logs)  # epoch 0 is reported as epoch 1
print(logs["test_accuracy"], logs["test_macro_f1"], logs["test_average_accuracy"])
print(evaluation.last_confusion)  # (3, 3) counts, rows = true class
print(evaluation.last_png)        # report/test_confusion_matrix_epoch0001.png

affect = AffectEvaluation((images, va), prefix="test_")
affect.set_model(va_model)
affect.on_epoch_end(0, logs)
print(logs["test_ccc"], logs["test_valence_rmse"])

# Or the same numbers straight from arrays of labels and scores.
metrics, confusion = expression_metrics(labels, model.predict(images, verbose=0), class_names=names)
print(metrics["accuracy"], metrics["macro_f1"])
'''


def test_readme_example_evaluating_outside_fit(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    scope = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        exec(compile(README_EXAMPLE, "README example", "exec"), scope)
    logs, metrics = scope["logs"], scope["metrics"]
    assert logs["test_accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-9)
    assert logs["test_macro_f1"] == pytest.approx(metrics["macro_f1"], abs=1e-9)
    np.testing.assert_array_equal(scope["evaluation"].last_confusion, scope["confusion"])
    assert scope["confusion"].sum() == 12
    assert os.path.isfile(tmp_path / "report" / "test_confusion_matrix_epoch0001.png")
    va, predicted = scope["va"], scope["va_model"].predict(scope["images"], verbose=0)
    assert logs["test_ccc"] == pytest.approx(numpy_ref.ccc(va, predicted), abs=1e-6)
    assert "report/test_confusion_matrix_epoch0001.png" in capsys.readouterr().out
