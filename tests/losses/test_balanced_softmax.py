"""ferkeras.losses.balanced_softmax against a NumPy computation of Ren et al. (NeurIPS 2020), Eq. 4."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from ferkeras.losses.balanced_softmax import (
    BalancedSoftmaxLoss,
    balanced_softmax_cross_entropy,
    log_class_prior,
)
from tests import helpers


def np_balanced_softmax(labels, logits, counts, min_count=1.0):
    """-log( pi_y e^{z_y} / sum_c pi_c e^{z_c} ) per sample by loops (float64); None for a negative label."""
    counts = [max(float(c), min_count) for c in counts]
    prior = [c / sum(counts) for c in counts]
    out = []
    for y, z in zip(labels, np.asarray(logits, np.float64)):
        if y < 0:
            out.append(None)
            continue
        den = sum(prior[c] * math.exp(z[c]) for c in range(len(counts)))
        out.append(-math.log(prior[y] * math.exp(z[y]) / den))
    return out


def np_mean(values):
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else 0.0


def np_gradient(labels, logits, counts):
    """Analytic d mean / d z = (softmax(z + log pi) - onehot(y)) / n_labelled for labelled rows, 0 otherwise."""
    prior = np.asarray(counts, np.float64) / np.sum(counts)
    shifted = np.asarray(logits, np.float64) + np.log(prior)
    soft = np.exp(shifted - shifted.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    grad = np.zeros_like(soft)
    n = max(int(np.sum(np.asarray(labels) >= 0)), 1)
    for i, y in enumerate(labels):
        if y >= 0:
            grad[i] = soft[i] / n
            grad[i, y] -= 1.0 / n
    return grad


@pytest.mark.parametrize("B,C", [(1, 2), (4, 3), (16, 8)])
def test_matches_numpy(B, C):
    rng = np.random.default_rng(B * C)
    logits = (3 * rng.normal(size=(B, C))).astype(np.float32)
    labels = rng.integers(-1, C, B)
    counts = rng.integers(1, 500, C)
    got = balanced_softmax_cross_entropy(labels, logits, counts).numpy()
    want = np_balanced_softmax(labels, logits, counts)
    np.testing.assert_allclose(got, [0.0 if w is None else w for w in want], rtol=1e-5, atol=1e-5)
    loss = BalancedSoftmaxLoss(counts)
    np.testing.assert_allclose(float(loss(labels, logits)), np_mean(want), rtol=1e-5, atol=1e-6)


def test_uniform_counts_equal_plain_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 6)
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    np.testing.assert_allclose(float(BalancedSoftmaxLoss([10, 10, 10, 10])(labels, logits)), float(plain),
                               rtol=1e-5)
    # A rare class raises its own loss less than a frequent class raises its own (the prior favours frequent ones).
    loss = balanced_softmax_cross_entropy([0, 1], np.zeros((2, 2), np.float32), [1000, 10]).numpy()
    np.testing.assert_allclose(loss, [math.log(1010 / 1000), math.log(1010 / 10)], rtol=1e-5)


def test_single_class_batch():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 3)).astype(np.float32)
    labels = np.full(5, 2)
    counts = [100, 5, 1]
    np.testing.assert_allclose(float(BalancedSoftmaxLoss(counts)(labels, logits)),
                               np_mean(np_balanced_softmax(labels, logits, counts)), rtol=1e-5)


def test_ignored_labels_and_sample_weights():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(4, 3)).astype(np.float32)
    labels = np.array([0, -1, 2, -1])
    counts = [3, 4, 5]
    want = np_balanced_softmax(labels, logits, counts)
    loss = BalancedSoftmaxLoss(counts)
    np.testing.assert_allclose(float(loss(labels, logits)), np_mean(want), rtol=1e-5)  # mean over 2, not 4
    np.testing.assert_allclose(float(loss(labels[:, None], logits)), np_mean(want), rtol=1e-5)  # (B, 1) labels
    weights = np.array([2.0, 5.0, 1.0, 5.0], np.float32)
    np.testing.assert_allclose(float(loss(labels, logits, sample_weight=weights)),
                               (2 * want[0] + want[2]) / 3, rtol=1e-5)
    # All labels unknown: loss 0, gradient 0.
    z = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = loss(np.full(4, -1), z)
    assert float(value) == 0.0
    np.testing.assert_array_equal(tape.gradient(value, z).numpy(), 0.0)
    # "sum_over_batch_size" divides by the whole batch.
    summed = BalancedSoftmaxLoss(counts, reduction="sum_over_batch_size")(labels, logits)
    np.testing.assert_allclose(float(summed), (want[0] + want[2]) / 4, rtol=1e-5)


def test_zero_count_class_is_floored():
    logits = np.array([[0.5, 1.0, -0.5]], np.float32)
    counts = [10, 0, 30]
    prior = log_class_prior(counts)
    np.testing.assert_allclose(prior, np.log(np.array([10, 1, 30]) / 41), rtol=1e-6)
    got = balanced_softmax_cross_entropy([1], logits, counts).numpy()
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, np_balanced_softmax([1], logits, counts), rtol=1e-5)
    np.testing.assert_allclose(balanced_softmax_cross_entropy([1], logits, counts, min_count=0.5).numpy(),
                               np_balanced_softmax([1], logits, counts, min_count=0.5), rtol=1e-5)


@pytest.mark.parametrize("B,C", [(3, 2), (8, 5)])
def test_gradient_matches_analytic_numpy(B, C):
    rng = np.random.default_rng(B + C)
    logits = rng.normal(size=(B, C)).astype(np.float32)
    labels = rng.integers(-1, C, B)
    labels[0] = 0
    counts = rng.integers(1, 100, C)
    z = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = BalancedSoftmaxLoss(counts)(labels, z)
    np.testing.assert_allclose(tape.gradient(value, z).numpy(), np_gradient(labels, logits, counts), atol=1e-6)


def test_extreme_logits_and_float16():
    logits = np.array([[80.0, -80.0, 0.0], [-80.0, 80.0, 0.0]], np.float32)
    got = balanced_softmax_cross_entropy([1, 1], logits, [1, 2, 3]).numpy()
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got[0], 160 - math.log(2), rtol=1e-4)
    half = BalancedSoftmaxLoss([1, 2, 3])(np.array([0, 2]), tf.constant(logits / 20, tf.float16))
    assert np.isfinite(float(half))


def test_in_a_model_and_roundtrips(tmp_path):
    loss = BalancedSoftmaxLoss([5, 1, 2], min_count=0.5, name="bsce")
    clone = helpers.assert_config_roundtrip(loss)
    assert clone.class_counts == [5.0, 1.0, 2.0] and clone.min_count == 0.5
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=loss)
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    y = np.array([0, 1, 2, -1, 0, 0, 2, -1])
    history = model.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, BalancedSoftmaxLoss) and loaded.loss.class_counts == [5.0, 1.0, 2.0]


def test_errors():
    with pytest.raises(ValueError, match="class_counts"):
        BalancedSoftmaxLoss([1, -2, 3])
    with pytest.raises(ValueError, match="class_counts"):
        BalancedSoftmaxLoss([[1, 2]])
    with pytest.raises(ValueError, match="min_count"):
        BalancedSoftmaxLoss([1, 2], min_count=0)
    with pytest.raises(ValueError, match="3 classes"):
        balanced_softmax_cross_entropy([0], np.zeros((1, 3), np.float32), [1, 2])
