"""Barlow Twins (ferkeras.losses.barlow_twins; Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction", ICML 2021, Eqs. 1-2) against plain NumPy: values over several shapes, gradients by finite differences,
single-sample and constant batches, both call interfaces, config round-trip."""

import numpy as np
import pytest

from ferkeras.losses.barlow_twins import BarlowTwinsLoss, barlow_twins_loss
from tests import helpers
from tests.helpers import numeric_grad, tape_grad

BATCHES = [1, 2, 16, 128]


def np_barlow(z1, z2, lambda_=5e-3, eps=1e-5):
    def standardise(z):
        return (z - z.mean(0)) / np.sqrt(z.var(0) + eps)

    c = standardise(z1).T @ standardise(z2) / len(z1)
    off = c - np.diag(np.diag(c))
    return np.sum((1 - np.diag(c)) ** 2) + lambda_ * np.sum(off**2)


def rand(shape):
    return np.random.normal(size=shape)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dim", [2, 5])
def test_barlow_twins_matches_numpy(batch, dim):
    z1, z2 = rand((batch, dim)), rand((batch, dim))
    np.testing.assert_allclose(barlow_twins_loss(z1, z2).numpy(), np_barlow(z1, z2), rtol=1e-10)
    loss = BarlowTwinsLoss(lambda_=0.1, dtype="float64")
    np.testing.assert_allclose(loss(z1, (z2, rand((batch, dim)))).numpy(), np_barlow(z1, z2, 0.1), rtol=1e-10)


@pytest.mark.parametrize("batch", [2, 16, 128])
def test_barlow_twins_gradient_matches_finite_differences(batch):
    z1, z2 = rand((batch, 2)), rand((batch, 2))
    value, grads = tape_grad(barlow_twins_loss, [z1, z2])
    np.testing.assert_allclose(value.numpy(), np_barlow(z1, z2), rtol=1e-10)
    for got, want in zip(grads, numeric_grad(np_barlow, [z1, z2])):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 4])
def test_barlow_twins_single_sample_or_constant_batch_is_dim_with_zero_gradient(batch):
    z1 = np.tile([[0.3, -0.2, 0.1]], (batch, 1))
    z2 = rand((1, 3)) if batch == 1 else np.tile([[0.5, 0.5, 0.5]], (batch, 1))
    value, grads = tape_grad(barlow_twins_loss, [z1, z2])
    assert value.numpy() == pytest.approx(3.0)
    for g in grads:
        np.testing.assert_array_equal(g.numpy(), 0.0)


def test_loss_takes_the_second_view_or_a_view_pair():
    """loss(z1, z2) and AVCE's view-pair interface loss(x, (y_a, y_n)) (y_n ignored) give the same value."""
    z1, z2 = rand((8, 3)), rand((8, 3))
    loss = BarlowTwinsLoss(dtype="float64")
    want = np_barlow(z1, z2)
    np.testing.assert_allclose(loss(z1, z2).numpy(), want, rtol=1e-10)
    np.testing.assert_allclose(loss(z1, (z2, rand((8, 3)))).numpy(), want, rtol=1e-10)
    with pytest.raises(ValueError, match="length 3"):
        loss(z1, (z2, z2, z2))
    with pytest.raises(ValueError, match="sample_weight"):
        loss(z1, z2, sample_weight=np.ones(8))


def test_config_round_trip():
    loss = BarlowTwinsLoss(lambda_=0.01, eps=1e-4, name="bt")
    restored = helpers.assert_config_roundtrip(loss)
    z1, z2 = rand((6, 4)).astype("float32"), rand((6, 4)).astype("float32")
    np.testing.assert_allclose(restored(z1, z2).numpy(), loss(z1, z2).numpy(), rtol=1e-6)
