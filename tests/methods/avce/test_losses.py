"""AVCE's losses (ferkeras.methods.avce.losses) against plain NumPy computations of the equations of Kim & Song,
"Emotion-aware Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022: L_AVCE (Eq. 2), L_dis
(Eq. 8), InfoNCE with an AVCE similarity as its critic (Eq. 1), and the Table 4 ablation factory; values, gradients,
edge cases and configs. The generic Barlow Twins loss is tested in tests/losses/test_barlow_twins.py."""

import numpy as np
import pytest
import tensorflow as tf

from ferkeras.losses.barlow_twins import BarlowTwinsLoss
from ferkeras.methods.avce.losses import (
    AVCELoss,
    DiscriminativeLoss,
    InfoNCELoss,
    avce_loss,
    discriminative_loss,
    info_nce_loss,
    make_contrastive_loss,
)
from tests import helpers
from tests.methods.avce.reference import (
    BATCHES,
    EPS,
    NAMES,
    assert_grads_match,
    np_avce,
    np_dis,
    np_f,
    np_infonce,
    rand,
)


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
    restored = helpers.assert_config_roundtrip(loss)
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


def test_old_import_paths_still_work():
    """ferkeras.losses keeps the names it exported before the restructure (AVCE's resolved lazily); the old modules
    ferkeras.losses.avce and ferkeras.losses.contrastive re-export the moved objects themselves."""
    import ferkeras.losses
    from ferkeras.losses import avce as old_avce, contrastive as old_contrastive

    assert ferkeras.losses.AVCELoss is AVCELoss and ferkeras.losses.InfoNCELoss is InfoNCELoss
    assert ferkeras.losses.make_contrastive_loss is make_contrastive_loss
    assert old_avce.DiscriminativeLoss is DiscriminativeLoss and old_avce.avce_loss is avce_loss
    assert old_contrastive.info_nce_loss is info_nce_loss and old_contrastive.BarlowTwinsLoss is BarlowTwinsLoss
    assert set(ferkeras.losses.__all__) <= set(dir(ferkeras.losses)) | set(ferkeras.losses._MOVED)
    with pytest.raises(AttributeError, match="no_such_loss"):
        ferkeras.losses.no_such_loss
