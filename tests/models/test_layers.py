"""Small layers of ferkeras.models.layers: AdaptiveAveragePooling against a loop over PyTorch's AdaptiveAvgPool2d
bins (the pooling AVCE's published compressor uses before it flattens), config / .keras / SavedModel round trips."""

import math

import keras
import numpy as np
import pytest

from ferkeras.models.layers import AdaptiveAveragePooling, adaptive_pool_matrix
from tests import helpers


def np_adaptive_pool(x, out_h, out_w):
    """For every output cell, the plain mean over the input window [floor(i h / o), ceil((i + 1) h / o))."""
    b, h, w, c = x.shape
    y = np.zeros((b, out_h, out_w, c))
    for i in range(out_h):
        r0, r1 = math.floor(i * h / out_h), math.ceil((i + 1) * h / out_h)
        for j in range(out_w):
            c0, c1 = math.floor(j * w / out_w), math.ceil((j + 1) * w / out_w)
            y[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
    return y


@pytest.mark.parametrize("h, w, out", [(13, 13, (6, 6)), (6, 6, (6, 6)), (7, 9, (6, 6)), (2, 2, (6, 6)),
                                       (1, 1, (6, 6)), (8, 5, (3, 4)), (5, 5, (1, 1))])
def test_adaptive_pool_matches_the_window_means(h, w, out):
    x = np.random.default_rng(h * 31 + w).normal(size=(3, h, w, 4)).astype("float32")
    got = np.asarray(AdaptiveAveragePooling(out)(x))
    np.testing.assert_allclose(got, np_adaptive_pool(x, *out), rtol=1e-5, atol=1e-6)
    if out == (1, 1):
        np.testing.assert_allclose(got[:, 0, 0], x.mean(axis=(1, 2)), rtol=1e-5)
    if (h, w) == out:
        np.testing.assert_allclose(got, x, rtol=1e-6)  # identity at the grid size (AlexNet at 224 -> 6 x 6)


def test_pool_matrix_rows_are_averages():
    for size, out in [(13, 6), (2, 6), (6, 6), (7, 3)]:
        m = adaptive_pool_matrix(size, out)
        np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=1e-6)
        assert (m > 0).any(axis=0).all()  # every input cell is read


def test_round_trips_and_errors(tmp_path):
    inputs = keras.Input((5, 7, 3))
    model = keras.Model(inputs, AdaptiveAveragePooling((6, 6))(inputs))
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype("float32")
    assert model.output.shape == (None, 6, 6, 3)
    helpers.assert_config_roundtrip(AdaptiveAveragePooling((2, 3)))
    helpers.assert_keras_roundtrip(model, x, tmp_path)
    helpers.assert_savedmodel_roundtrip(model, x, tmp_path)
    with pytest.raises(ValueError, match="output_size"):
        AdaptiveAveragePooling((0, 6))
    with pytest.raises(ValueError, match="static spatial shape"):
        AdaptiveAveragePooling((6, 6))(keras.Input((None, None, 3)))
