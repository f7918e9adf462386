"""AVCE similarities (Eqs. 4-5) and losses (Eqs. 1, 2, 8, Barlow Twins) against plain NumPy computations."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ferkeras.losses.avce import (
    AVCELoss,
    DiscriminativeLoss,
    avce_loss,
    discriminative_loss,
    make_contrastive_loss,
)
from ferkeras.losses.contrastive import BarlowTwinsLoss, InfoNCELoss, barlow_twins_loss, info_nce_loss
from ferkeras.ops.similarity import avce_similarity, dot_similarity, polarity_similarity, similarity

MU, EPS = 0.75, 1e-7
BATCHES = [1, 2, 16, 128]
NAMES = ["f", "f1", "f2"]


# ---------------------------------------------------------------- plain NumPy versions of the paper's equations
def np_norm(v, eps=EPS):
    return np.sqrt(np.maximum(np.sum(v * v, axis=-1), eps * eps))


def np_f(x, y, mu=MU, eps=EPS):
    """Eq. 4 with the documented conventions (cosine clipped to [-1+eps, 1-eps], norms floored at eps)."""
    nx, ny = np_norm(x, eps), np_norm(y, eps)
    cos = np.clip(np.sum(x * y, axis=-1) / (nx * ny), -1 + eps, 1 - eps)
    return (1 - np.arccos(cos) / np.pi) + mu * (1 - np.abs(nx - ny))


def np_f_textbook(x, y, mu=MU):
    """Eq. 4 for 2-D vectors with the angle from atan2 and no eps anywhere."""
    theta = np.arctan2(np.abs(x[..., 0] * y[..., 1] - x[..., 1] * y[..., 0]), np.sum(x * y, axis=-1))
    return (1 - theta / np.pi) + mu * (1 - np.abs(np.linalg.norm(x, axis=-1) - np.linalg.norm(y, axis=-1)))


def np_sim(x, y, name, mu=MU):
    if name == "f1":
        return np.sum(x * y, axis=-1)
    value = np_f(x, y, mu)
    if name == "f2":
        value = value + np.where(np.sign(x[..., 0]) != np.sign(y[..., 0]), -0.5, 0.0) * (x[..., 0] * y[..., 0] != 0)
    return value


def np_avce(x, ya, yn, name="f", alpha=0.5, beta=0.005, gamma=0.5):
    fa, fn = np_sim(x, ya, name), np_sim(x, yn, name)
    objective = fa.mean() - alpha * fn.mean() - beta / 2 * (fa**2).mean() - gamma / 2 * (fn**2).mean()
    return -objective


def np_dis(v, va, vn, delta1=1.0, delta2=0.8, reduce=np.sum):
    def unit(u):
        return u / np_norm(u)[:, None]

    push = np.maximum(delta1 - np.sum((va - vn) ** 2, axis=1), 0.0)
    hold = (np_norm(unit(va) - unit(v)) - delta2) + (np_norm(unit(vn) - unit(v)) - delta2)
    return reduce(push + hold)


def np_infonce(x, ya, yn, name="f", temperature=1.0):
    """Eq. 1 per anchor i: candidates y_a_i (the positive, first) then y_n_j for every j."""
    batch = len(x)
    candidates = np.concatenate([ya[:, None], np.broadcast_to(yn[None], (batch, batch, yn.shape[1]))], axis=1)
    s = np_sim(x[:, None], candidates, name) / temperature
    return -np.mean(np.log(np.exp(s[:, 0]) / np.mean(np.exp(s), axis=1)))


def np_barlow(z1, z2, lambda_=5e-3, eps=1e-5):
    def standardise(z):
        return (z - z.mean(0)) / np.sqrt(z.var(0) + eps)

    c = standardise(z1).T @ standardise(z2) / len(z1)
    off = c - np.diag(np.diag(c))
    return np.sum((1 - np.diag(c)) ** 2) + lambda_ * np.sum(off**2)


def numeric_grad(fun, arrays, h=1e-6):
    """Central finite differences of the scalar fun(*arrays) with respect to every array (float64)."""
    grads = []
    for k, a in enumerate(arrays):
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            plus = [b.copy() for b in arrays]
            minus = [b.copy() for b in arrays]
            plus[k][idx] += h
            minus[k][idx] -= h
            g[idx] = (fun(*plus) - fun(*minus)) / (2 * h)
        grads.append(g)
    return grads


def tape_grad(fun, arrays):
    tensors = [tf.constant(a) for a in arrays]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        value = fun(*tensors)
    return value, tape.gradient(value, tensors)


def rand(shape, scale=1.0):
    return np.random.normal(scale=scale, size=shape)


def assert_grads_match(tf_fun, np_fun, arrays, rtol=1e-5, atol=1e-6):
    value, grads = tape_grad(tf_fun, arrays)
    np.testing.assert_allclose(value.numpy(), np_fun(*arrays), rtol=1e-10, atol=1e-12)
    for got, want in zip(grads, numeric_grad(np_fun, arrays)):
        np.testing.assert_allclose(got.numpy(), want, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------- similarities
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


# -------------------------------------------------------------------------------------------------- L_AVCE
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", NAMES)
def test_avce_loss_matches_numpy(batch, name):
    x, ya, yn = rand((batch, 2)), rand((batch, 2)), rand((batch, 2))
    want = np_avce(x, ya, yn, name)
    np.testing.assert_allclose(np.mean(avce_loss(x, ya, yn, name).numpy()), want, rtol=1e-12)
    loss = AVCELoss(similarity=name, dtype="float64")
    np.testing.assert_allclose(loss(x, (ya, yn)).numpy(), want, rtol=1e-12)
    got32 = AVCELoss(similarity=name)(x.astype("float32"), (ya.astype("float32"), yn.astype("float32")))
    np.testing.assert_allclose(got32.numpy(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", NAMES)
def test_avce_loss_gradient_matches_finite_differences(batch, name):
    x, ya, yn = rand((batch, 2)), rand((batch, 2)), rand((batch, 2))
    loss = AVCELoss(similarity=name, dtype="float64")
    assert_grads_match(lambda a, b, c: loss(a, (b, c)), lambda a, b, c: np_avce(a, b, c, name), [x, ya, yn])


def test_avce_loss_hyperparameters_and_sample_weight():
    x, ya, yn = rand((8, 2)), rand((8, 2)), rand((8, 2))
    loss = AVCELoss(alpha=0.3, beta=0.1, gamma=0.2, dtype="float64")
    np.testing.assert_allclose(loss(x, (ya, yn)).numpy(), np_avce(x, ya, yn, "f", 0.3, 0.1, 0.2), rtol=1e-12)
    weights = np.arange(8.0)
    per_sample = avce_loss(x, ya, yn).numpy()
    got = AVCELoss(dtype="float64")(x, (ya, yn), sample_weight=weights).numpy()
    np.testing.assert_allclose(got, np.sum(per_sample * weights) / 8, rtol=1e-12)


def test_avce_loss_rewards_positive_and_penalises_negative_similarity():
    x = np.array([[0.4, 0.2]])
    assert AVCELoss(dtype="float64")(x, (x, -x)).numpy() < AVCELoss(dtype="float64")(x, (-x, x)).numpy()


# --------------------------------------------------------------------------------------------------- L_dis
@pytest.mark.parametrize("batch", BATCHES)
def test_discriminative_loss_matches_numpy_sum_and_mean(batch):
    v, va, vn = rand((batch, 8), 0.3), rand((batch, 8), 0.3), rand((batch, 8), 0.3)
    want = np_dis(v, va, vn)
    np.testing.assert_allclose(DiscriminativeLoss(dtype="float64")(v, (va, vn)).numpy(), want, rtol=1e-12)
    mean = DiscriminativeLoss(reduction="sum_over_batch_size", dtype="float64")(v, (va, vn)).numpy()
    np.testing.assert_allclose(mean, want / batch, rtol=1e-12)
    np.testing.assert_allclose(np.sum(discriminative_loss(v, va, vn, 0.5, 0.1).numpy()), np_dis(v, va, vn, 0.5, 0.1))


@pytest.mark.parametrize("batch", BATCHES)
def test_discriminative_loss_gradient_matches_finite_differences(batch):
    v, va, vn = rand((batch, 8), 0.3), rand((batch, 8), 0.3), rand((batch, 8), 0.3)
    loss = DiscriminativeLoss(dtype="float64")
    assert_grads_match(lambda a, b, c: loss(a, (b, c)), np_dis, [v, va, vn])


def test_discriminative_loss_margin_exactly_reached():
    v = tf.constant([[0.2, 0.5, -0.1, 0.3, 0.0, 0.4, 0.1, -0.2]], tf.float64)
    va = tf.constant([[1.0, 0, 0, 0, 0, 0, 0, 0]], tf.float64)
    vn_at = tf.constant([[1.0, 1.0, 0, 0, 0, 0, 0, 0]], tf.float64)  # ||va - vn||^2 = delta1 exactly
    vn_in = tf.constant([[1.0, 0.9, 0, 0, 0, 0, 0, 0]], tf.float64)  # inside the margin

    def value_and_grads(vn, delta1):
        with tf.GradientTape() as tape:
            tape.watch([v, va, vn])
            value = tf.reduce_sum(discriminative_loss(v, va, vn, delta1=delta1))
        return value.numpy(), [g.numpy() for g in tape.gradient(value, [v, va, vn])]

    at, grads_at = value_and_grads(vn_at, 1.0)
    hold_only, grads_hold = value_and_grads(vn_at, 0.5)  # push term certainly inactive
    np.testing.assert_allclose(at, hold_only, rtol=1e-12)  # the hinge is exactly 0 at the margin
    for got, want in zip(grads_at, grads_hold):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    inside, grads_in = value_and_grads(vn_in, 1.0)
    np.testing.assert_allclose(inside, np_dis(v.numpy(), va.numpy(), vn_in.numpy()), rtol=1e-12)
    assert not np.allclose(grads_in[1], value_and_grads(vn_in, 0.5)[1][1])  # the push acts inside the margin


def test_discriminative_hold_terms_are_not_hinged_and_finite_when_parallel():
    v = tf.constant([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]], tf.float64)
    va, vn = 2.0 * v, 3.0 * v  # vbar_a = vbar_n = 0
    with tf.GradientTape() as tape:
        tape.watch([v, va, vn])
        value = tf.reduce_sum(discriminative_loss(v, va, vn))
    grads = tape.gradient(value, [v, va, vn])
    # push: [1 - ||v||^2]_+ = 1 - 2.04 -> 0; hold: 2 * (eps - 0.8), negative as printed in Eq. 8.
    np.testing.assert_allclose(value.numpy(), 2 * (EPS - 0.8), atol=1e-12)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)


# ------------------------------------------------------------------------------------------------- InfoNCE
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("temperature", [1.0, 0.1])
def test_infonce_matches_numpy(batch, name, temperature):
    x, ya, yn = rand((batch, 2)), rand((batch, 2)), rand((batch, 2))
    loss = InfoNCELoss(similarity=name, temperature=temperature, dtype="float64")
    np.testing.assert_allclose(loss(x, (ya, yn)).numpy(), np_infonce(x, ya, yn, name, temperature), rtol=1e-10)


@pytest.mark.parametrize("batch", BATCHES)
def test_infonce_gradient_matches_finite_differences(batch):
    x, ya, yn = rand((batch, 2)), rand((batch, 2)), rand((batch, 2))
    loss = InfoNCELoss(temperature=0.5, dtype="float64")
    assert_grads_match(
        lambda a, b, c: loss(a, (b, c)), lambda a, b, c: np_infonce(a, b, c, "f", 0.5), [x, ya, yn], atol=1e-5
    )


def test_infonce_single_sample_has_two_candidates():
    x, ya, yn = rand((1, 2)), rand((1, 2)), rand((1, 2))
    sa, sn = np_f(x, ya)[0], np_f(x, yn)[0]
    want = -(sa - np.log((np.exp(sa) + np.exp(sn)) / 2))
    np.testing.assert_allclose(info_nce_loss(x, ya, yn).numpy(), [want], rtol=1e-12)


# -------------------------------------------------------------------------------------------- Barlow Twins
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
    assert_grads_match(barlow_twins_loss, np_barlow, [z1, z2], atol=1e-5)


@pytest.mark.parametrize("batch", [1, 4])
def test_barlow_twins_single_sample_or_constant_batch_is_dim_with_zero_gradient(batch):
    z1 = np.tile([[0.3, -0.2, 0.1]], (batch, 1))
    z2 = rand((1, 3)) if batch == 1 else np.tile([[0.5, 0.5, 0.5]], (batch, 1))
    value, grads = tape_grad(barlow_twins_loss, [z1, z2])
    assert value.numpy() == pytest.approx(3.0)
    for g in grads:
        np.testing.assert_array_equal(g.numpy(), 0.0)


# ----------------------------------------------------------------------- edge cases shared by every loss
def every_loss():
    return [
        AVCELoss(similarity="f"),
        AVCELoss(similarity="f1"),
        AVCELoss(similarity="f2"),
        InfoNCELoss(),
        InfoNCELoss(similarity="f2", temperature=0.1),
        BarlowTwinsLoss(),
        DiscriminativeLoss(),
    ]


@pytest.mark.parametrize(
    "case",
    ["identical", "zeros", "parallel", "antiparallel", "single"],
)
def test_every_loss_is_finite_on_edge_cases(case):
    base = np.array([[0.3, -0.4]] * 6, "float32")
    x, ya, yn = {
        "identical": (base, base, base),
        "zeros": (np.zeros_like(base), np.zeros_like(base), base),
        "parallel": (base, 2 * base, 0.5 * base),
        "antiparallel": (base, -base, -2 * base),
        "single": (base[:1], base[:1] * 2, -base[:1]),
    }[case]
    for loss in every_loss():
        a, b, c = (tf.constant(t) for t in (x, ya, yn))
        with tf.GradientTape() as tape:
            tape.watch([a, b, c])
            value = loss(a, (b, c))
        grads = tape.gradient(value, [a, b, c])
        assert np.isfinite(value.numpy()), (case, loss.name)
        for g in grads:
            assert g is None or np.all(np.isfinite(g.numpy())), (case, loss.name)


def test_losses_run_in_graph_mode_with_unknown_batch():
    spec = tf.TensorSpec((None, 2), tf.float32)
    x, ya, yn = (rand((5, 2)).astype("float32") for _ in range(3))
    for loss in every_loss():
        graph = tf.function(lambda a, b, c, loss=loss: loss(a, (b, c)), input_signature=[spec, spec, spec])
        np.testing.assert_allclose(graph(x, ya, yn).numpy(), loss(x, (ya, yn)).numpy(), rtol=1e-6)


# --------------------------------------------------------------------------------- configs and the factory
@pytest.mark.parametrize(
    "loss",
    [
        AVCELoss(similarity="f2", alpha=0.4, beta=0.01, gamma=0.3, mu=0.5, eps=1e-6, name="avce"),
        DiscriminativeLoss(delta1=2.0, delta2=0.5, reduction="sum_over_batch_size"),
        InfoNCELoss(similarity="f1", temperature=0.2),
        BarlowTwinsLoss(lambda_=0.01, eps=1e-4),
    ],
    ids=lambda loss: type(loss).__name__,
)
def test_get_config_round_trip(loss):
    config = loss.get_config()
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == config
    x, ya, yn = (rand((6, 2)).astype("float32") for _ in range(3))
    np.testing.assert_allclose(restored(x, (ya, yn)).numpy(), loss(x, (ya, yn)).numpy(), rtol=1e-6)


def test_make_contrastive_loss():
    assert isinstance(make_contrastive_loss(), AVCELoss)
    assert make_contrastive_loss("avce", similarity="f1").similarity == "f1"
    infonce = make_contrastive_loss("infonce", temperature=0.07)
    assert isinstance(infonce, InfoNCELoss) and infonce.temperature == pytest.approx(0.07)
    assert make_contrastive_loss("barlow_twins", lambda_=0.02).lambda_ == pytest.approx(0.02)
    with pytest.raises(ValueError, match="'simclr'"):
        make_contrastive_loss("simclr")


def test_user_errors_name_the_value_at_fault():
    with pytest.raises(ValueError, match="'cos'"):
        AVCELoss(similarity="cos")
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(temperature=0.0)
    x = rand((3, 2)).astype("float32")
    with pytest.raises(ValueError, match=r"AVCELoss expects y_pred = \(y_a, y_n\)"):
        AVCELoss()(x, x)
    with pytest.raises(ValueError, match="length 3"):
        DiscriminativeLoss()(x, (x, x, x))
    with pytest.raises(ValueError, match="sample_weight"):
        BarlowTwinsLoss()(x, (x, x), sample_weight=np.ones(3))
