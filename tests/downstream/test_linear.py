"""ferkeras.downstream.linear: linear evaluation and fine-tuning of an encoder on expressions and valence-arousal.

The decisive tests run on synthetic faces with a label stamped into a corner patch (tests/downstream/stamps.py):
an encoder whose features ARE the label must score near perfectly, a random encoder that cannot see the patch near
chance -- so the evaluation measures what is in the features.
"""

import functools

import keras
import numpy as np
import pytest

from ferkeras import downstream
from ferkeras.data import pipeline
from ferkeras.data.synthetic import synthetic_arrays
from ferkeras.metrics import numpy_ref
from ferkeras.models.backbones import make_backbone
from tests.downstream.stamps import blind_encoder, class_grey, code_reader, stamp

SIZE = 32
CLASSES = 8


@functools.lru_cache(maxsize=None)
def _faces():
    """Stamped synthetic faces: expression class in the top-left patch, valence in the top-right one."""
    out = {}
    for split, n, seed, first in (("train", 512, 0, 0), ("test", 256, 1, 20)):
        a = synthetic_arrays(n, size=SIZE, seed=seed, num_identities=20, first_identity=first)
        images = stamp(a["images"] / 255.0, class_grey(a["expression"], CLASSES), "top_left")
        images = stamp(images, (a["valence"] + 1) / 2, "top_right")
        out[split] = dict(a, images=images)
    return out


def _data(split, batch_size=64, expression=None, valence=None):
    a = _faces()[split]
    return pipeline.from_arrays(a["images"], a["valence"] if valence is None else valence, a["arousal"],
                                a["expression"] if expression is None else expression, batch_size=batch_size,
                                shuffle=split == "train", seed=0)


def test_linear_evaluation_finds_the_expression_in_the_features():
    train, test = _data("train"), _data("test")
    kwargs = dict(task="expression", mode="linear", num_classes=CLASSES, epochs=20, learning_rate=1e-3)
    informed = downstream.evaluate(code_reader(SIZE, "top_left", CLASSES), train, test, **kwargs)
    blind = downstream.evaluate(blind_encoder(SIZE), train, test, **kwargs)
    assert informed["expression_macro_f1"] > 0.9 and informed["expression_accuracy"] > 0.9, informed
    assert blind["expression_macro_f1"] < informed["expression_macro_f1"] - 0.4, blind
    assert informed["expression_count"] == 256 and informed["cached_features"]
    counts = np.bincount(_faces()["train"]["expression"], minlength=CLASSES)
    assert informed["class_counts"] == counts.tolist()  # the balanced softmax prior: the training set's counts


def test_linear_evaluation_finds_valence_in_the_features():
    train, test = _data("train"), _data("test")
    kwargs = dict(task="va", mode="linear", epochs=20, learning_rate=1e-3)
    informed = downstream.evaluate(code_reader(SIZE, "top_right"), train, test, **kwargs)
    blind = downstream.evaluate(blind_encoder(SIZE), train, test, **kwargs)
    assert informed["valence_ccc"] > 0.9 and informed["valence_rmse"] < 0.2, informed
    assert blind["valence_ccc"] < informed["valence_ccc"] - 0.5, blind
    for key in ("arousal_ccc", "mean_ccc", "mean_rmse", "va_count"):
        assert key in informed


def test_uncached_linear_evaluation_keeps_the_encoder_frozen_in_inference_mode():
    """cache_features=False runs the encoder every step: a frozen copy whose weights and batch-norm statistics
    never move, while the caller's encoder is not touched at all."""
    encoder = make_backbone("resnet18", (SIZE, SIZE, 3), pooling="avg", width=16)
    before = [w.copy() for w in encoder.get_weights()]
    result, model = downstream.evaluate(encoder, _data("train", 32), _data("test"), task="expression",
                                        mode="linear", num_classes=CLASSES, epochs=1, steps_per_epoch=2,
                                        cache_features=False, return_model=True)
    trunk = model.layers[1]
    assert trunk is not encoder and not trunk.trainable
    for a, b, c in zip(before, trunk.get_weights(), encoder.get_weights()):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert not result["cached_features"] and result["steps_per_epoch"] == 2


def test_finetuning_trains_a_copy_and_selects_the_epoch_on_validation():
    encoder = blind_encoder(SIZE)
    before = [w.copy() for w in encoder.get_weights()]
    result, model = downstream.evaluate(encoder, _data("train"), _data("test"), task="expression", mode="finetune",
                                        num_classes=CLASSES, epochs=2, learning_rate=1e-3, val_data=_data("test"),
                                        return_model=True)
    assert result["mode"] == "finetune" and 1 <= result["best_epoch"] <= 2
    assert result["steps_per_epoch"] == 512 // 64
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, model.layers[1].get_weights()))
    for a, b in zip(before, encoder.get_weights()):
        np.testing.assert_array_equal(a, b)
    # the reported numbers are the returned model's, on the test set
    preds = model.predict(_faces()["test"]["images"], verbose=0)
    assert result["expression_macro_f1"] == pytest.approx(
        numpy_ref.macro_f1(_faces()["test"]["expression"], preds, CLASSES), abs=1e-6)


def test_evaluate_tasks_runs_both_and_masks_missing_labels():
    """Unknown labels (-1 expression, NaN valence) are left out of training and of the scores."""
    expression = _faces()["test"]["expression"].copy()
    expression[::4] = -1
    valence = _faces()["test"]["valence"].copy()
    valence[1::4] = np.nan
    test = _data("test", expression=expression, valence=valence)
    out = downstream.evaluate_tasks(code_reader(SIZE, "top_left", CLASSES), _data("train"), test,
                                    tasks=("expression", "va"), mode="linear", num_classes=CLASSES, epochs=1,
                                    hidden=())
    assert out["expression_count"] == 256 - 64 and out["va_count"] == 256 - 64
    assert out["expression_details"]["mode"] == "linear" and "va_details" in out


def test_scores_match_the_numpy_references():
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 4, 50)
    logits = rng.normal(size=(50, 4))
    got = downstream.scores("expression", labels, logits, 4)
    assert got["expression_macro_f1"] == numpy_ref.macro_f1(labels, logits, 4)
    assert got["expression_accuracy"] == numpy_ref.accuracy(labels, logits, 4)
    assert got["expression_count"] == int(np.sum(labels >= 0))
    va = rng.uniform(-1, 1, (50, 2))
    va[3, 0] = np.nan
    pred = va + rng.normal(scale=0.3, size=va.shape)
    got = downstream.scores("va", va, pred)
    assert got["valence_ccc"] == numpy_ref.ccc(va, pred, 0) and got["arousal_rmse"] == numpy_ref.rmse(va, pred, 1)
    assert got["mean_ccc"] == pytest.approx((got["valence_ccc"] + got["arousal_ccc"]) / 2)
    assert got["va_count"] == 49


def test_downstream_model_structure():
    encoder = make_backbone("resnet18", (SIZE, SIZE, 3), pooling="avg", width=16)
    model = downstream.build_downstream_model(encoder, "expression", "finetune", num_classes=7)
    head = model.layers[2]
    assert [layer.units for layer in head.layers if isinstance(layer, keras.layers.Dense)] == [1024, 512, 7]
    assert model.layers[1].trainable and model.layers[1] is not encoder
    va = downstream.build_downstream_model(encoder, "va", "linear", hidden=(16,), dropout=0.0)
    out = va.predict(np.random.default_rng(0).random((2, SIZE, SIZE, 3)), verbose=0)
    assert out.shape == (2, 2) and np.all(np.abs(out) < 1)  # tanh


@pytest.mark.parametrize("kwargs, match", [
    (dict(task="age"), "task must be"),
    (dict(mode="frozen"), "mode must be"),
    (dict(num_classes=None), "num_classes"),
    (dict(mode="finetune", cache_features=True), "cache_features"),
    (dict(epochs=0), "epochs"),
])
def test_argument_errors(kwargs, match):
    args = dict(task="expression", mode="linear", num_classes=CLASSES, epochs=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        downstream.evaluate(blind_encoder(SIZE), _data("train"), _data("test"), **args)


def test_feature_map_encoder_is_rejected_with_a_hint():
    encoder = make_backbone("resnet18", (SIZE, SIZE, 3), pooling=None, width=16)
    with pytest.raises(ValueError, match="pooled features"):
        downstream.build_downstream_model(encoder, "va")
