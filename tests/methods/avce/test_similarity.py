"""AVCE's similarities f (Eq. 4), f1 (Sec. 3.4) and f2 (Eq. 5) of Kim & Song, "Emotion-aware Multi-view Contrastive
Learning for Facial Emotion Recognition", ECCV 2022 (ferkeras.methods.avce.similarity) against plain NumPy, with
gradients and the edge cases (zero vectors, +-1 cosines)."""

import numpy as np
import pytest
import tensorflow as tf

from ferkeras.methods.avce.similarity import avce_similarity, dot_similarity, polarity_similarity, similarity
from tests.methods.avce.reference import (
    BATCHES,
    MU,
    NAMES,
    assert_grads_match,
    np_f,
    np_f_textbook,
    np_sim,
    rand,
)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", NAMES)
def test_similarity_matches_numpy(batch, name):
    x, y = rand((batch, 2)), rand((batch, 2))
    np.testing.assert_allclose(similarity(tf.constant(x), tf.constant(y), name).numpy(), np_sim(x, y, name), rtol=1e-12)
    got32 = similarity(tf.constant(x, tf.float32), tf.constant(y, tf.float32), name).numpy()
    np.testing.assert_allclose(got32, np_sim(x, y, name), rtol=1e-4, atol=1e-4)


def test_f_matches_textbook_equation_away_from_edges():
    x, y = rand((64, 2)), rand((64, 2))
    np.testing.assert_allclose(avce_similarity(tf.constant(x), tf.constant(y)).numpy(), np_f_textbook(x, y), atol=1e-9)
    np.testing.assert_allclose(dot_similarity(tf.constant(x), tf.constant(y)).numpy(), np.sum(x * y, 1), rtol=1e-12)


def test_similarity_broadcasts_to_pair_matrix():
    x, y = rand((3, 2)), rand((5, 2))
    got = avce_similarity(tf.constant(x)[:, None], tf.constant(y)[None]).numpy()
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got[2, 4], np_f(x[2], y[4]), rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch", [1, 16])
def test_similarity_gradient_matches_finite_differences(name, batch):
    x, y = rand((batch, 2)), rand((batch, 2))
    assert_grads_match(
        lambda a, b: tf.reduce_sum(similarity(a, b, name)), lambda a, b: np.sum(np_sim(a, b, name)), [x, y]
    )


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_parallel_and_antiparallel_pairs_have_finite_intensity_only_gradient(dtype):
    x = tf.constant([[1.0, 2.0], [1.0, 2.0]], dtype)
    y = tf.constant([[2.0, 4.0], [-2.0, -4.0]], dtype)  # cos = +1 and -1, ||y|| = 2 ||x||
    with tf.GradientTape() as tape:
        tape.watch([x, y])
        value = avce_similarity(x, y)
    gx, gy = tape.gradient(value, [x, y])
    nx, ny = np.sqrt(5.0), np.sqrt(20.0)
    intensity = MU * (1 - abs(nx - ny))
    np.testing.assert_allclose(value.numpy(), [1 + intensity, intensity], atol=2e-4)
    angular = value.numpy() - intensity
    assert np.all(angular > 0) and np.all(angular < 1)  # the paper's (0, 1] clip, strictly inside
    # The clipped cosine passes no gradient: only the intensity term -mu |nx - ny| moves, with ny > nx.
    np.testing.assert_allclose(gx.numpy(), MU * x.numpy() / nx, rtol=1e-5)
    np.testing.assert_allclose(gy.numpy(), -MU * y.numpy() / ny, rtol=1e-5)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_zero_vectors_have_defined_value_and_finite_gradient(dtype):
    x = tf.constant([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]], dtype)
    y = tf.constant([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]], dtype)
    for name in NAMES:
        with tf.GradientTape() as tape:
            tape.watch([x, y])
            value = similarity(x, y, name)
        grads = tape.gradient(value, [x, y])
        assert all(np.all(np.isfinite(g.numpy())) for g in grads), name
        if name != "f1":
            # cos = 0 with a zero vector: theta = pi/2; the norm of a zero vector is eps.
            np.testing.assert_allclose(value.numpy(), [0.5 + MU, 0.5 + MU * (1 - 5), 0.5 + MU * (1 - 5)], atol=1e-5)
        else:
            np.testing.assert_array_equal(value.numpy(), [0.0, 0.0, 0.0])


def test_polarity_penalty_of_f2():
    x = tf.constant([[0.5, 0.1], [0.5, 0.1], [-0.3, 0.2], [0.0, 0.4], [-0.2, -0.3]], tf.float64)
    y = tf.constant([[0.2, -0.4], [-0.2, 0.3], [0.4, 0.4], [-0.7, 0.1], [-0.1, 0.6]], tf.float64)
    diff = (polarity_similarity(x, y) - avce_similarity(x, y)).numpy()
    np.testing.assert_array_equal(diff, [0.0, -0.5, -0.5, 0.0, 0.0])  # zero valence agrees with both signs


def test_f2_equals_f_when_all_valences_share_a_sign():
    x, y = np.abs(rand((32, 2))), np.abs(rand((32, 2)))
    x[:, 1] *= np.sign(rand(32))  # arousal signs do not matter
    for sign in (1.0, -1.0):
        a, b = tf.constant(sign * x), tf.constant(sign * y * [1.0, -1.0])
        np.testing.assert_array_equal(polarity_similarity(a, b).numpy(), avce_similarity(a, b).numpy())


def test_unknown_similarity_name_is_named():
    with pytest.raises(ValueError, match="'cos'"):
        similarity(tf.zeros((1, 2)), tf.zeros((1, 2)), "cos")
