"""Backbones, heads and the supervised baseline model: shapes, parameter counts, serialisation, mixed precision."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from ferkeras.models import backbones, heads
from ferkeras.models.baseline import baseline_losses, build_baseline_model, compile_baseline
from ferkeras.models.layers import CAFFE_BGR_MEAN, CaffePreprocessing
from tests import helpers


def _images(n, size, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, size, size, 3)).astype("float32")


# ------------------------------------------------------------------------------------------------ backbones


@pytest.mark.parametrize("name, size, feature_map", [
    ("resnet18", 64, (2, 2, 512)),
    ("alexnet", 64, (1, 1, 256)),
    ("resnet50", 32, (1, 1, 2048)),
    ("efficientnetb2", 32, (1, 1, 1408)),
])
def test_backbone_shapes(name, size, feature_map):
    model = backbones.make_backbone(name, (size, size, 3), pooling="avg")
    assert tuple(model.get_layer("avg_pool").input.shape) == (None,) + feature_map
    out = model(_images(2, size))
    assert tuple(out.shape) == (2, feature_map[-1])
    assert out.dtype == tf.float32
    assert np.all(np.isfinite(out.numpy()))
    if name in ("resnet18", "alexnet"):  # pooling=None / "max" (cheap to build for the from-scratch ones)
        fmap = backbones.make_backbone(name, (size, size, 3), pooling=None)
        assert tuple(fmap.output.shape) == (None,) + feature_map
        pooled_max = backbones.make_backbone(name, (size, size, 3), pooling="max")
        assert tuple(pooled_max.output.shape) == (None, feature_map[-1])


def test_backbone_geometry_at_224():
    # ResNet-18 downsamples by 32; the AVCE encoder gives AlexNet's 6 x 6 x 256 = 9216 values at 224.
    assert tuple(backbones.resnet18((224, 224, 3)).output.shape) == (None, 7, 7, 512)
    assert tuple(backbones.alexnet((224, 224, 3)).output.shape) == (None, 6, 6, 256)
    # Non-square inputs work.
    assert tuple(backbones.resnet18((96, 64, 3), width=16).output.shape) == (None, 3, 2, 128)


def _resnet18_param_count(width=64, num_blocks=(2, 2, 2, 2)):
    """Trainable parameters of ResNet-18 without fc, counted from its definition (no bias in convs, BN gamma/beta)."""
    def conv(k, cin, cout):
        return k * k * cin * cout

    def bn(c):
        return 2 * c

    total = conv(7, 3, width) + bn(width)
    cin = width
    for stage, blocks in enumerate(num_blocks):
        cout = width * 2 ** stage
        for b in range(blocks):
            total += conv(3, cin, cout) + bn(cout) + conv(3, cout, cout) + bn(cout)
            if cin != cout:
                total += conv(1, cin, cout) + bn(cout)
            cin = cout
    return total


def test_resnet18_parameter_count():
    model = backbones.resnet18((64, 64, 3), pooling="avg")
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    # torchvision's resnet18 has 11,689,512 parameters, of which its fc (512 * 1000 + 1000) is 513,000.
    assert _resnet18_param_count() == 11_689_512 - 513_000 == 11_176_512
    assert trainable == 11_176_512
    # BN moving statistics: two per channel of each of the 20 BN layers.
    bn_channels = 64 + 4 * 64 + (3 * 128 + 2 * 128) + (5 * 256) + (5 * 512)
    assert model.count_params() - trainable == 2 * bn_channels
    thin = backbones.resnet18((64, 64, 3), width=16)
    assert sum(int(np.prod(w.shape)) for w in thin.trainable_weights) == _resnet18_param_count(16)


def test_alexnet_parameter_count():
    # The AlexNet conv stack (torchvision's alexnet().features) has 2,469,696 parameters.
    expected = (11 * 11 * 3 * 64 + 64) + (5 * 5 * 64 * 192 + 192) + (3 * 3 * 192 * 384 + 384) \
        + (3 * 3 * 384 * 256 + 256) + (3 * 3 * 256 * 256 + 256)
    assert expected == 2_469_696
    assert backbones.alexnet((64, 64, 3)).count_params() == expected


def test_backbone_errors_name_the_value():
    with pytest.raises(ValueError, match="vgg16"):
        backbones.make_backbone("vgg16", (64, 64, 3))
    with pytest.raises(ValueError, match="62"):
        backbones.alexnet((62, 62, 3))
    backbones.alexnet((63, 63, 3))  # the smallest size that works
    with pytest.raises(ValueError, match="31"):
        backbones.resnet18((31, 64, 3))
    with pytest.raises(ValueError, match="imagenet"):
        backbones.make_backbone("resnet18", (64, 64, 3), weights="imagenet")
    with pytest.raises(ValueError, match="width"):
        backbones.make_backbone("alexnet", (64, 64, 3), width=32)
    with pytest.raises(ValueError, match="mean"):
        backbones.make_backbone("resnet18", (64, 64, 3), pooling="mean")
    with pytest.raises(ValueError, match=r"\(64, 64, 1\)"):
        backbones.make_backbone("resnet18", (64, 64, 1))


def test_caffe_preprocessing_matches_keras():
    x = _images(2, 8)
    layer = CaffePreprocessing()
    expected = keras.applications.resnet50.preprocess_input(x * 255.0)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-3)
    clone = helpers.assert_config_roundtrip(layer)
    assert clone.scale == 255.0 and tuple(clone.mean) == tuple(CAFFE_BGR_MEAN)
    custom = helpers.assert_config_roundtrip(CaffePreprocessing(scale=1.0, mean=(1.0, 2.0, 3.0)))
    assert custom.scale == 1.0 and tuple(custom.mean) == (1.0, 2.0, 3.0)


# ------------------------------------------------------------------------------------------------ heads


def test_va_head_bounds_and_shapes():
    feats = np.random.default_rng(1).normal(0, 50.0, (16, 12)).astype("float32")
    tanh = heads.va_regressor(12, hidden=8)
    out = tanh(feats).numpy()
    assert out.shape == (16, 2) and np.all(np.abs(out) <= 1.0)
    linear = heads.va_regressor(12, hidden=0, activation="linear")
    linear.get_layer("fc_out").set_weights([np.full((12, 2), 10.0, np.float32), np.zeros(2, np.float32)])
    assert np.abs(linear(feats).numpy()).max() > 1.0
    with_bn = heads.va_regressor(12, hidden=8, batch_norm=True)
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in with_bn.layers)
    with pytest.raises(ValueError, match="sigmoid"):
        heads.va_regressor(12, activation="sigmoid")


def test_expression_head_logits():
    head = heads.expression_classifier(12, 7, hidden=5, dropout=0.5)
    out = head(np.ones((3, 12), np.float32))
    assert tuple(out.shape) == (3, 7)
    with pytest.raises(ValueError, match="num_classes"):
        heads.expression_classifier(12, 1)


# ------------------------------------------------------------------------------------------------ baseline model


def test_baseline_outputs_per_task():
    x = _images(3, 32)
    both = build_baseline_model("resnet18", (32, 32, 3), task="both", num_classes=7, width=16)
    out = both(x)
    assert set(out) == {"va", "expression"}
    assert tuple(out["va"].shape) == (3, 2) and tuple(out["expression"].shape) == (3, 7)
    assert set(build_baseline_model("resnet18", (32, 32, 3), task="va", width=16)(x)) == {"va"}
    assert set(build_baseline_model("resnet18", (32, 32, 3), task="expression", width=16)(x)) == {"expression"}
    with pytest.raises(ValueError, match="'valence'"):
        build_baseline_model("resnet18", (32, 32, 3), task="valence")


def test_masked_expression_loss_matches_numpy():
    loss, _ = baseline_losses("expression")
    logits = np.random.default_rng(2).normal(size=(6, 4)).astype("float32")
    labels = np.array([0, -1, 3, 2, -1, 1], np.int32)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    valid = labels >= 0
    expected = -np.mean(logp[valid, labels[valid]])
    np.testing.assert_allclose(float(loss["expression"](labels, logits)), expected, rtol=1e-5)
    assert float(loss["expression"](np.full(6, -1, np.int32), logits)) == 0.0


def test_baseline_learns_a_tiny_batch_with_missing_labels():
    """One fixed batch, a quarter of the VA labels NaN and a quarter of the classes -1: the loss must fall."""
    rng = np.random.default_rng(3)
    n = 16
    x = _images(n, 64, seed=3)
    va = rng.uniform(-0.9, 0.9, (n, 2)).astype("float32")
    va[:4] = np.nan
    expr = rng.integers(0, 8, n).astype("int32")
    expr[4:8] = -1
    model = build_baseline_model("alexnet", (64, 64, 3), task="both")  # the cheapest backbone to trace
    compile_baseline(model, "both", learning_rate=3e-4)
    ds = tf.data.Dataset.from_tensors((x, {"va": va, "expression": expr})).repeat()
    hist = model.fit(ds, steps_per_epoch=12, epochs=2, verbose=0, shuffle=False).history
    assert all(np.isfinite(v) for v in hist["loss"])
    assert hist["loss"][-1] < 0.8 * hist["loss"][0]
    assert hist["va_ccc"][-1] > 0.5


@pytest.mark.parametrize("backbone, size, task", [("resnet18", 32, "both"), ("alexnet", 64, "va")])
def test_baseline_round_trips(backbone, size, task, tmp_path):
    model = build_baseline_model(backbone, (size, size, 3), task=task, width=16 if backbone == "resnet18" else 64)
    x = _images(2, size)
    helpers.assert_config_roundtrip(model)
    helpers.assert_keras_roundtrip(model, x, tmp_path, atol=1e-6)
    helpers.assert_savedmodel_roundtrip(model, x, tmp_path, atol=1e-6)


def test_caffe_backbone_keras_round_trip(tmp_path):
    """The one custom layer inside a backbone survives .keras save / reload (ResNet-50 at 32 px)."""
    model = backbones.resnet50((32, 32, 3), pooling="avg")
    helpers.assert_keras_roundtrip(model, _images(2, 32), tmp_path)


def test_baseline_task_model(tmp_path):
    """The baseline through the shared task-model test, on a batch shaped as the pipelines yield it (a missing
    valence-arousal label is NaN, a missing class -1). AlexNet: the cheapest backbone to trace."""
    rng = np.random.default_rng(4)
    va = rng.uniform(-0.9, 0.9, (4, 2)).astype("float32")
    va[0] = np.nan
    expression = np.array([2, -1, 0, 7], np.int32)
    batch = (_images(4, 64, seed=4), {"va": va, "expression": expression})
    model = compile_baseline(build_baseline_model("alexnet", (64, 64, 3), task="both"), "both")
    logs = helpers.run_task_model_test(model, batch, tmp_path)["logs"]
    assert {"loss", "va_loss", "expression_loss"} <= set(logs)


@pytest.mark.parametrize("backbone, size", [("resnet18", 32), ("alexnet", 64)])
def test_mixed_precision_outputs_float32(backbone, size):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_baseline_model(backbone, (size, size, 3), task="both",
                                     width=16 if backbone == "resnet18" else 64)
        inner = model.get_layer(backbone).get_layer("stage1_block1_conv1" if backbone == "resnet18" else "conv1")
        assert inner.compute_dtype == "float16"
        out = model(_images(2, size))
        assert out["va"].dtype == tf.float32 and out["expression"].dtype == tf.float32
        assert model.get_layer(backbone).output.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy(previous)
