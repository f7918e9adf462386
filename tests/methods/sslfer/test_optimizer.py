"""SSL-FER's optimiser (Adam with a coupled L2 penalty, as torch.optim.Adam(weight_decay=...)) against a NumPy
computation of Adam's Algorithm 1, and the "cosine from epoch 10" schedule."""

import math

import keras
import numpy as np
import pytest

from ferkeras.methods.sslfer.optimizer import AdamL2, pretraining_optimizer, pretraining_schedule
from tests import helpers


def numpy_adam_l2(w, grads, lr, l2, beta_1=0.9, beta_2=0.999, eps=1e-7):
    """PyTorch's Adam with weight_decay (Kingma & Ba, Algorithm 1, gradient g + l2 w), Keras' epsilon placement:
    w -= lr_t m / (sqrt(v) + eps) with lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)."""
    w = np.array(w, np.float64)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g, np.float64) + l2 * w
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        lr_t = lr * math.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        w = w - lr_t * m / (np.sqrt(v) + eps)
    return w


@pytest.mark.parametrize("l2", [0.0, 1e-4, 0.5])
def test_adam_l2_matches_the_numpy_algorithm(l2):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 4)).astype(np.float32)
    grads = [rng.normal(size=(3, 4)).astype(np.float32) * s for s in (1.0, 0.01, 3.0, 0.0)]
    var = keras.Variable(w0)
    opt = AdamL2(0.05, l2=l2)
    for g in grads:
        opt.apply([keras.ops.convert_to_tensor(g)], [var])
    np.testing.assert_allclose(np.asarray(var), numpy_adam_l2(w0, grads, 0.05, l2), rtol=2e-5, atol=2e-6)


def test_adam_l2_differs_from_decoupled_decay():
    """With a zero gradient, L2 moves a weight by about lr per step (Adam normalises the penalty's gradient), the
    decoupled decay by lr * wd * w: the two are different optimisers, and l2=0 is plain Adam."""
    w0 = np.array([2.0, -1.0], np.float32)
    coupled, decoupled, plain = keras.Variable(w0), keras.Variable(w0), keras.Variable(w0)
    zero = [keras.ops.zeros((2,))]
    AdamL2(0.01, l2=1e-2).apply(zero, [coupled])
    keras.optimizers.Adam(0.01, weight_decay=1e-2).apply(zero, [decoupled])
    AdamL2(0.01, l2=0.0).apply(zero, [plain])
    np.testing.assert_allclose(np.asarray(coupled), w0 - 0.01 * np.sign(w0), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(decoupled), w0 * (1 - 0.01 * 1e-2), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(plain), w0)


def test_adam_l2_config_roundtrip_and_errors():
    opt = AdamL2(1e-3, l2=3e-4, beta_1=0.8)
    helpers.assert_config_roundtrip(opt)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(clone, AdamL2) and clone.l2 == 3e-4 and clone.get_config()["beta_1"] == 0.8
    with pytest.raises(ValueError, match="coupled L2"):
        AdamL2(1e-3, weight_decay=1e-4)
    with pytest.raises(ValueError, match="l2 must be >= 0"):
        AdamL2(1e-3, l2=-1.0)
    assert isinstance(pretraining_optimizer(decay="l2"), AdamL2)
    decoupled = pretraining_optimizer(decay="decoupled")
    assert type(decoupled) is keras.optimizers.Adam and decoupled.weight_decay == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="decay must be"):
        pretraining_optimizer(decay="adamw")


def test_schedule_holds_then_anneals_to_zero():
    schedule = pretraining_schedule(3e-4, total_steps=100, hold_steps=40)
    lr = np.array([float(schedule(step)) for step in range(101)])
    np.testing.assert_allclose(lr[:41], 3e-4, rtol=1e-6)             # constant through the hold
    expected = 3e-4 * 0.5 * (1 + np.cos(np.pi * (np.arange(40, 101) - 40) / 60))
    np.testing.assert_allclose(lr[40:], expected, rtol=1e-5, atol=1e-10)
    assert lr[100] == pytest.approx(0.0, abs=1e-12)
    constant = pretraining_schedule(1e-3, total_steps=10, hold_steps=50)
    assert [float(constant(s)) for s in (0, 5, 10)] == pytest.approx([1e-3] * 3)
    with pytest.raises(ValueError):
        pretraining_schedule(0.0, 10, 1)
