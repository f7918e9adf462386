"""The SimCLR projection head and SSL-FER's downstream MLP head (ferkeras.models.heads)."""

import keras
import numpy as np
import pytest

from ferkeras.models import heads
from tests import helpers


def _dense_params(widths):
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def test_projection_head_is_fc_relu_fc():
    head = heads.projection_head(2048)  # SSL-FER on ResNet-50: 2048 -> 2048 -> 128
    assert tuple(head.output.shape) == (None, 128)
    assert head.count_params() == _dense_params([2048, 2048, 128])
    small = heads.projection_head(16, hidden=(32,), output_dim=8)
    x = np.random.default_rng(0).normal(size=(5, 16)).astype("float32")
    w1, b1, w2, b2 = (w.numpy() for w in small.weights)
    np.testing.assert_allclose(small(x), np.maximum(x @ w1 + b1, 0) @ w2 + b2, atol=1e-5)
    assert small(x).dtype == "float32"
    # several hidden layers, BN variant, a linear head
    deep = heads.projection_head(16, hidden=(32, 24), output_dim=8, batch_norm=True)
    assert [type(layer).__name__ for layer in deep.layers[1:]] == [
        "Dense", "BatchNormalization", "ReLU", "Dense", "BatchNormalization", "ReLU", "Dense", "Activation"]
    assert heads.projection_head(16, hidden=(), output_dim=8).count_params() == _dense_params([16, 8])
    helpers.assert_config_roundtrip(deep)


def test_mlp_head_matches_ssl_fer_downstream_head():
    head = heads.mlp_head(2048, 8)  # 2048 -> 1024 -> 512 -> C, dropout 0.5
    assert head.count_params() == _dense_params([2048, 1024, 512, 8])
    dropouts = [layer.rate for layer in head.layers if isinstance(layer, keras.layers.Dropout)]
    assert dropouts == [0.5, 0.5]
    small = heads.mlp_head(6, 3, hidden=(5, 4), dropout=0.5)
    x = np.random.default_rng(1).normal(size=(7, 6)).astype("float32")
    w = [v.numpy() for v in small.weights]
    want = np.maximum(np.maximum(x @ w[0] + w[1], 0) @ w[2] + w[3], 0) @ w[4] + w[5]
    np.testing.assert_allclose(small(x, training=False), want, atol=1e-5)  # dropout off at inference
    assert not np.allclose(small(x, training=True), want, atol=1e-3)  # and on in training
    va = heads.mlp_head(6, 2, hidden=(), activation="tanh")
    assert np.all(np.abs(va(100 * x)) <= 1.0) and va.count_params() == _dense_params([6, 2])
    helpers.assert_config_roundtrip(small)


@pytest.mark.parametrize("call, match", [
    (lambda: heads.mlp_head(8, 3, activation="softmax"), "activation"),
    (lambda: heads.mlp_head(8, 3, dropout=1.0), "dropout"),
    (lambda: heads.mlp_head(8, 0), "num_outputs"),
    (lambda: heads.projection_head(8, hidden=(0,)), "hidden"),
    (lambda: heads.projection_head(8, output_dim=2.5), "output_dim"),
])
def test_head_arguments_are_checked(call, match):
    with pytest.raises(ValueError, match=match):
        call()
