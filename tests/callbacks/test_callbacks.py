"""ferkeras.callbacks in plain user `model.fit` runs of small user-defined models (not ferkeras models)."""

import csv
import glob
import hashlib
import json
import logging
import os

import numpy as np
import pytest

import keras
import tensorflow as tf
from keras import layers

from ferkeras.callbacks import (AffectEvaluation, BestCheckpoint, ExpressionEvaluation, LinearProbe, RidgeProbe)
from ferkeras.metrics import numpy_ref

# ExpressionEvaluation's FutureWarning about its deprecated overall_accuracy key (tested in test_expression_labels).
pytestmark = pytest.mark.filterwarnings("ignore:.*is a deprecated alias:FutureWarning")

CLASSES = ["neutral", "happy", "sad", "angry"]
# (log key without prefix, numpy_ref function, column index; None = mean of valence and arousal)
AFFECT_KEYS = [(f"{axis}{metric}", getattr(numpy_ref, metric), index) for metric in ("rmse", "sagr", "pcc", "ccc")
               for axis, index in (("valence_", 0), ("arousal_", 1), ("", None))]


class Recorder(keras.callbacks.Callback):
    """Copies each epoch's logs and the model's predictions on `x` (the weights the evaluation callbacks used)."""

    def __init__(self, x=None):
        super().__init__()
        self.x, self.logs, self.preds = x, [], []

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))
        if self.x is not None:
            self.preds.append(self.model.predict_on_batch(self.x))


def events(log_dir):
    """{tag: [(step, value)]}: scalars as floats, images as decoded (H, W, C) arrays."""
    found = {}
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if plugin == "scalars":
                    found.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
                elif plugin == "images":
                    png = tf.make_ndarray(value.tensor)[2]
                    found.setdefault(value.tag, []).append((event.step, tf.io.decode_png(png).numpy()))
    return {tag: sorted(v, key=lambda s: s[0]) for tag, v in found.items()}


def va_data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    va = np.tanh(x[:, :2] * [0.9, -0.7] + 0.4 * rng.normal(size=(n, 2))).astype("float32")
    order = np.argsort(va[:, 0])  # batches of similar valence: per-batch PCC/CCC far from the whole-set values
    return x[order], va[order]


def per_batch_mean(fn, y, p, batch):
    return np.mean([fn(y[i:i + batch], p[i:i + batch]) for i in range(0, len(y), batch)])


def test_affect_evaluation_whole_set_values_in_logs_csv_tensorboard_and_checkpoint(tmp_path, caplog):
    x_tr, va_tr = va_data(64, 0)
    x_val, va_val = va_data(40, 1)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layers.Dense(2, activation="tanh")(inputs))  # one (B, 2) output
    model.compile(keras.optimizers.Adam(0.05), "mse")
    val = tf.data.Dataset.from_tensor_slices((x_val, va_val)).batch(8)
    tb, csv_path = str(tmp_path / "tb"), str(tmp_path / "log.csv")
    early = BestCheckpoint(str(tmp_path / "early.keras"), monitor="val_ccc")  # before the producer: never sees it
    best = BestCheckpoint(str(tmp_path / "ckpt" / "best.keras"), monitor="val_ccc")
    rec = Recorder(x_val)
    with caplog.at_level(logging.WARNING, logger="ferkeras.callbacks"):
        history = model.fit(x_tr, va_tr, batch_size=16, epochs=3, verbose=0, callbacks=[
            early, AffectEvaluation(val, log_dir=tb), best, rec, keras.callbacks.CSVLogger(csv_path),
            keras.callbacks.EarlyStopping("val_ccc", mode="max", patience=5)])
    assert not os.path.exists(tmp_path / "early.keras") and early.saved_epochs == []
    assert sum("put that callback before BestCheckpoint" in r.getMessage() for r in caplog.records) == 1
    scalars = events(tb)
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    for epoch in range(3):
        preds = rec.preds[epoch]
        for key, fn, index in AFFECT_KEYS:
            ref = fn(va_val, preds, index=index)
            assert rec.logs[epoch]["val_" + key] == pytest.approx(ref, abs=1e-5), (epoch, key)
            assert history.history["val_" + key][epoch] == rec.logs[epoch]["val_" + key]
            assert float(rows[epoch]["val_" + key]) == pytest.approx(ref, abs=1e-5)
            assert scalars["val_" + key][epoch] == (epoch + 1, pytest.approx(ref, abs=1e-5))
        for metric in ("pcc", "ccc"):  # what a per-batch average would have logged instead (valence-sorted set)
            batched = per_batch_mean(lambda y, p: getattr(numpy_ref, metric)(y, p, index=0), va_val, preds, 8)
            assert abs(batched - rec.logs[epoch][f"val_valence_{metric}"]) > 0.05
    cccs = history.history["val_ccc"]
    assert best.best == max(cccs) and best.best_epoch == int(np.argmax(cccs)) + 1
    assert best.saved_epochs == [1] + [e + 1 for e in range(1, 3) if cccs[e] > max(cccs[:e])]
    record = json.load(open(tmp_path / "ckpt" / "best.json"))
    assert record["monitor"] == "val_ccc" and record["epoch"] == best.best_epoch
    assert record["best"] == pytest.approx(max(cccs)) and record["path"] == "best.keras"
    restored = keras.models.load_model(tmp_path / "ckpt" / "best.keras")
    np.testing.assert_allclose(restored.predict_on_batch(x_val), rec.preds[best.best_epoch - 1], atol=1e-6)


def multitask_model():
    inputs = keras.Input((6,))
    hidden = layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, {"va": layers.Dense(2, activation="tanh", name="va")(hidden),
                                "expression": layers.Dense(len(CLASSES), name="expression")(hidden)})


def multitask_data(n, seed):
    """Pipeline-like labels: {"va": (N, 2) with NaN rows, "expression": (N,) with -1}, sorted by class."""
    rng = np.random.default_rng(seed)
    cls = np.sort(rng.integers(0, len(CLASSES), n)).astype("int32")
    x = (np.eye(6)[cls] * 1.5 + rng.normal(size=(n, 6))).astype("float32")
    va = np.tanh(x[:, :2] - x[:, 2:4]).astype("float32")
    va[::7] = np.nan
    cls_labels = cls.copy()
    cls_labels[3::11] = -1
    return x, {"va": va, "expression": cls_labels}


class MaskedCE(keras.losses.Loss):
    def call(self, y_true, y_pred):
        y = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        keep = y >= 0
        return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            tf.boolean_mask(y, keep), tf.boolean_mask(y_pred, keep), from_logits=True))


class MaskedMSE(keras.losses.Loss):
    def call(self, y_true, y_pred):
        keep = tf.math.is_finite(y_true)
        return tf.reduce_mean(tf.square(tf.boolean_mask(y_pred - tf.where(keep, y_true, 0.0), keep)))


def test_expression_and_affect_evaluation_on_a_dict_output_model(tmp_path):
    x_tr, y_tr = multitask_data(96, 0)
    x_val, y_val = multitask_data(44, 1)
    model = multitask_model()
    model.compile(keras.optimizers.Adam(0.03), loss={"va": MaskedMSE(), "expression": MaskedCE()})
    train = tf.data.Dataset.from_tensor_slices((x_tr, y_tr)).batch(16)
    val = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(8)
    tb, pngs = str(tmp_path / "tb"), str(tmp_path / "cm")
    expr = ExpressionEvaluation(val, CLASSES, every_n_epochs=2, log_dir=tb, out_dir=pngs)
    rec = Recorder(x_val)
    model.fit(train, epochs=3, verbose=0, shuffle=False,
              callbacks=[AffectEvaluation(val, every_n_epochs=2), expr, rec])
    assert "val_macro_f1" not in rec.logs[0] and "val_ccc" not in rec.logs[2]  # epoch 2 only of 1-3
    logs, preds = rec.logs[1], rec.preds[1]
    assert logs["val_ccc"] == pytest.approx(numpy_ref.ccc(y_val["va"], preds["va"]), abs=1e-5)
    assert np.isnan(y_val["va"]).any() and np.isfinite(logs["val_ccc"])
    labels, scores = y_val["expression"], preds["expression"]
    assert logs["val_macro_f1"] == pytest.approx(numpy_ref.macro_f1(labels, scores, 4), abs=1e-9)
    assert logs["val_average_accuracy"] == pytest.approx(numpy_ref.average_accuracy(labels, scores, 4), abs=1e-9)
    assert logs["val_accuracy"] == pytest.approx(numpy_ref.accuracy(labels, scores, 4), abs=1e-9)
    assert logs["val_overall_accuracy"] == logs["val_accuracy"]  # the deprecated alias
    batched = per_batch_mean(lambda y, p: numpy_ref.macro_f1(y, p, 4), labels, scores, 8)
    assert abs(batched - logs["val_macro_f1"]) > 0.05  # class-sorted batches: per-batch F1 would differ
    np.testing.assert_array_equal(expr.last_confusion, numpy_ref.confusion_matrix(labels, scores, 4))
    assert expr.last_confusion.sum() == (labels >= 0).sum()
    found = events(tb)
    assert [s for s, _ in found["val_macro_f1"]] == [2]
    assert found["val_macro_f1"][0][1] == pytest.approx(logs["val_macro_f1"], abs=1e-6)
    (step, image), = found["val_confusion_matrix"]
    assert step == 2 and image.ndim == 3 and image.shape[2] == 3 and image.std() > 10
    assert os.listdir(pngs) == ["val_confusion_matrix_epoch0002.png"]
    assert tf.io.decode_png(open(os.path.join(pngs, os.listdir(pngs)[0]), "rb").read()).shape[:2] == image.shape[:2]


def test_output_selection_list_outputs_arrays_and_errors():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 5)).astype("float32")
    onehot = np.eye(3, dtype="float32")[rng.integers(0, 3, 30)]
    inputs = keras.Input((5,))
    model = keras.Model(inputs, [layers.Dense(2, name="va")(inputs), layers.Dense(3, name="logits")(inputs)])
    model.compile("sgd", loss=["mse", "categorical_crossentropy"])
    by_index = ExpressionEvaluation((x, onehot), ["a", "b", "c"], output=1, batch_size=7)  # one-hot labels
    by_name = ExpressionEvaluation((x, onehot), ["a", "b", "c"], output="logits", prefix="named_", batch_size=30)
    part = ExpressionEvaluation((x, onehot), ["a", "b", "c"], output=1, prefix="part_", steps=2, batch_size=7)
    rec = Recorder(x)
    model.fit(x, [onehot[:, :2], onehot], epochs=1, verbose=0, callbacks=[by_index, by_name, part, rec])
    expected = numpy_ref.macro_f1(onehot.argmax(1), rec.preds[0][1], 3)
    assert rec.logs[0]["val_macro_f1"] == pytest.approx(expected) == rec.logs[0]["named_macro_f1"]
    assert rec.logs[0]["part_accuracy"] == pytest.approx(
        numpy_ref.accuracy(onehot[:14].argmax(1), rec.preds[0][1][:14], 3))  # steps=2 batches of 7
    assert part.last_confusion.sum() == 14

    wrong = AffectEvaluation((x, onehot), output=1)  # the (B, 3) output is not valence-arousal
    wrong.set_model(model)
    with pytest.raises(ValueError, match=r"must be \(N, 2\)"):
        wrong.on_epoch_end(0, {})
    missing = AffectEvaluation((x, {"expression": onehot}))
    missing.set_model(model)
    with pytest.raises(ValueError, match="pick one by index or name with output="):
        missing.on_epoch_end(0, {})
    missing.output = 0
    with pytest.raises(ValueError, match=r"labels has no entry 'va' among the keys \['expression'\]"):
        missing.on_epoch_end(0, {})
    with pytest.raises(TypeError, match="one-shot iterator"):
        AffectEvaluation(((x, onehot) for _ in range(2)))
    with pytest.raises(ValueError, match="infinite"):
        AffectEvaluation(tf.data.Dataset.from_tensor_slices((x, onehot)).batch(4).repeat())
    with pytest.raises(ValueError, match="every_n_epochs"):
        ExpressionEvaluation((x, onehot), ["a", "b"], every_n_epochs=0)


class ScriptedMetric(keras.callbacks.Callback):
    """Writes a fixed val_ccc per epoch and sets the model's bias to the epoch number (to tell saves apart)."""

    def __init__(self, values, key="val_ccc"):
        super().__init__()
        self.values, self.key = values, key

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        kernel, bias = self.model.layers[-1].get_weights()
        self.model.layers[-1].set_weights([kernel, np.full_like(bias, epoch + 1)])


class FileHashes(keras.callbacks.Callback):
    def __init__(self, path):
        super().__init__()
        self.path, self.hashes = path, []

    def on_epoch_end(self, epoch, logs=None):
        self.hashes.append(hashlib.sha1(open(self.path, "rb").read()).hexdigest() if os.path.exists(self.path)
                           else None)


def test_best_checkpoint_saves_only_on_improvement(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, layers.Dense(2)(inputs))
    model.compile(keras.optimizers.SGD(0.0), "mse")
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    path = str(tmp_path / "best.keras")
    ckpt = BestCheckpoint(path, monitor="val_ccc", mode="max")
    hashes = FileHashes(path)
    model.fit(x, y, epochs=6, verbose=0,
              callbacks=[ScriptedMetric([0.1, 0.3, 0.2, 0.5, 0.5, float("nan")]), ckpt, hashes])
    assert ckpt.saved_epochs == [1, 2, 4]  # 0.2 is worse, the second 0.5 is no improvement, NaN never counts
    h = hashes.hashes
    assert h[0] != h[1] and h[2] == h[1] and h[3] != h[1] and h[5] == h[4] == h[3]
    assert keras.models.load_model(path).layers[-1].get_weights()[1].tolist() == [4.0, 4.0]
    record = json.load(open(tmp_path / "best.json"))
    assert (record["best"], record["epoch"], record["mode"]) == (0.5, 4, "max")
    assert record["logs"]["val_ccc"] == 0.5 and "loss" in record["logs"]

    # resume: starts from the recorded 0.5, so 0.45 does not overwrite the earlier run's best
    resumed = BestCheckpoint(path, monitor="val_ccc", resume=True)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[ScriptedMetric([0.45, 0.6]), resumed])
    assert resumed.saved_epochs == [2] and json.load(open(tmp_path / "best.json"))["best"] == 0.6

    weights = str(tmp_path / "w" / "low.weights.h5")
    low = BestCheckpoint(weights, monitor="val_rmse", mode="min", min_delta=0.05)
    model.fit(x, y, epochs=4, verbose=0, callbacks=[ScriptedMetric([0.5, 0.47, 0.3, 0.31], "val_rmse"), low])
    assert low.saved_epochs == [1, 3] and os.path.exists(tmp_path / "w" / "low.json")
    model.load_weights(weights)
    assert model.layers[-1].get_weights()[1].tolist() == [3.0, 3.0]
    with pytest.raises(ValueError, match=r"\.keras"):
        BestCheckpoint(str(tmp_path / "best.h5"))
    with pytest.raises(ValueError, match="mode"):
        BestCheckpoint(path, mode="auto")


def ridge_reference(x, y, lam, standardise_with=None):
    """The ridge problem as one augmented least-squares system: rows [Z/sqrt(n), 1/sqrt(n)] and [sqrt(lam) I, 0];
    Z = x standardised with the mean and std of `standardise_with` (default x)."""
    ref = x if standardise_with is None else standardise_with
    mean, std = ref.mean(0), ref.std(0)
    z = (x - mean) / std
    n, d = z.shape
    a = np.vstack([np.hstack([z, np.ones((n, 1))]) / np.sqrt(n),
                   np.hstack([np.sqrt(lam) * np.eye(d), np.zeros((d, 1))])])
    b = np.vstack([y / np.sqrt(n), np.zeros((d, y.shape[1]))])
    sol = np.linalg.lstsq(a, b, rcond=None)[0]
    return lambda q: ((q - mean) / std) @ sol[:-1] + sol[-1]


@pytest.mark.parametrize("n,d", [(50, 6), (8, 20)])  # primal and dual (n < d) solutions
def test_ridge_probe_matches_least_squares(n, d):
    rng = np.random.default_rng(n)
    x, y = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, d), rng.normal(size=(n, 3))
    probe = RidgeProbe.fit(x, y, ridge=0.1)
    q = rng.normal(size=(5, d))
    np.testing.assert_allclose(probe.predict(q), ridge_reference(x, y, 0.1)(q), rtol=1e-8, atol=1e-10)
    y_nan = y.copy()
    y_nan[::3, 1] = np.nan  # column 1 is fitted on its labelled rows (features standardised over all rows)
    masked = RidgeProbe.fit(x, y_nan, ridge=0.1).predict(q)
    keep = np.isfinite(y_nan[:, 1])
    np.testing.assert_allclose(masked[:, 1], ridge_reference(x[keep], y[keep, 1:2], 0.1, x)(q)[:, 0], rtol=1e-8,
                               atol=1e-10)
    np.testing.assert_allclose(masked[:, [0, 2]], ridge_reference(x, y[:, [0, 2]], 0.1)(q), rtol=1e-8, atol=1e-10)


def probe_data(n, seed, separable):
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, 4, n).astype("int32")
    x = rng.normal(size=(n, 8)).astype("float32")
    if separable:
        x[:, :4] += 4.0 * np.eye(4, dtype="float32")[cls]
    return x, cls


@pytest.mark.parametrize("separable", [True, False])
def test_linear_probe_accuracy_separable_vs_random_features(separable):
    x_tr, c_tr = probe_data(240, 0, separable)
    x_val, c_val = probe_data(240, 1, separable)
    inputs = keras.Input((8,))
    encoder = keras.Model(inputs, layers.Dense(16, activation="relu", name="embedding")(inputs), name="encoder")
    model = keras.Model(inputs, layers.Dense(8)(encoder(inputs)))  # a toy "self-supervised" autoencoder
    model.compile(keras.optimizers.Adam(0.01), "mse")
    probe = LinearProbe(encoder, (x_tr, {"expression": c_tr}), (x_val, {"expression": c_val}), num_classes=4,
                        batch_size=64, every_n_epochs=2)
    rec = Recorder()
    model.fit(x_tr, x_tr, epochs=2, batch_size=32, verbose=0, callbacks=[probe, rec])
    assert "probe_macro_f1" not in rec.logs[0]
    logs = rec.logs[1]
    f_tr, f_val = encoder.predict_on_batch(x_tr), encoder.predict_on_batch(x_val)
    scores = ridge_reference(f_tr.astype(np.float64), np.eye(4)[c_tr], 1e-3)(f_val.astype(np.float64))
    assert logs["probe_accuracy"] == pytest.approx(numpy_ref.accuracy(c_val, scores, 4))
    assert logs["probe_macro_f1"] == pytest.approx(numpy_ref.macro_f1(c_val, scores, 4))
    assert logs["probe_average_accuracy"] == pytest.approx(numpy_ref.average_accuracy(c_val, scores, 4))
    if separable:
        assert logs["probe_accuracy"] > 0.95 and logs["probe_macro_f1"] > 0.95
    else:
        assert 0.1 < logs["probe_accuracy"] < 0.4  # chance is 0.25


def test_linear_probe_va_with_a_callable_encoder_and_feature_maps(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(120, 5)).astype("float32")
    va = (0.3 * x @ rng.normal(size=(5, 2)) + 0.02 * rng.normal(size=(120, 2))).astype("float32")
    va[::9, 1] = np.nan

    def encoder(batch):  # (B, 2, 2, 10) feature maps: the probe average-pools them
        feats = tf.concat([batch, tf.square(batch)], axis=-1)
        return tf.tile(feats[:, None, None, :], [1, 2, 2, 1])

    inputs = keras.Input((5,))
    model = keras.Model(inputs, layers.Dense(1)(inputs))
    model.compile("sgd", "mse")
    tb = str(tmp_path / "tb")
    probe = LinearProbe(encoder, (x[:80], {"va": va[:80]}), (x[80:], {"va": va[80:]}), task="va", log_dir=tb,
                        prefix="lin_")
    rec = Recorder()
    model.fit(x, x[:, :1], epochs=1, verbose=0, callbacks=[probe, rec])
    logs = rec.logs[0]
    assert probe.last_probe.weights.shape == (10, 2)
    assert logs["lin_ccc"] == pytest.approx(numpy_ref.ccc(va[80:], probe.last_probe.predict(
        encoder(x[80:]).numpy().mean(axis=(1, 2)))))
    assert logs["lin_ccc"] > 0.99 and logs["lin_valence_rmse"] < 0.05  # labels linear in the features + noise
    assert events(tb)["lin_ccc"] == [(1, pytest.approx(logs["lin_ccc"], abs=1e-6))]
    with pytest.raises(ValueError, match="task"):
        LinearProbe(encoder, (x, va), (x, va), task="age")
