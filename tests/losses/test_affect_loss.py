"""L_AV (ferkeras.losses.affect; Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion
Recognition", ECCV 2022, Sec. 4.2, unnumbered equation) and its RMSE / PCC / CCC parts against NumPy, with gradients
and masking."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ferkeras.losses import AffectLoss, affect_loss, ccc_loss, pcc_loss, rmse_loss
from ferkeras.metrics import numpy_ref
from tests import helpers

SHAPES = [(2, 1), (5, 2), (17, 2), (64, 2), (9, 3)]


def np_l_av(t, p, w_rmse=1.0, w_pcc=0.5, w_ccc=0.5):
    """The paper's equation from the textbook statistics of ferkeras.metrics.numpy_ref (no epsilon anywhere)."""
    cols = [k for k in range(t.shape[1]) if np.isfinite(t[:, k]).any()]
    rmse = np.mean([numpy_ref.rmse(t, p, k) for k in cols])
    l_pcc = 1 - np.mean([numpy_ref.pcc(t, p, k) for k in cols])
    l_ccc = 1 - np.mean([numpy_ref.ccc(t, p, k) for k in cols])
    return w_rmse * rmse + w_pcc * l_pcc + w_ccc * l_ccc, rmse, l_pcc, l_ccc


def data(shape, seed=0, mask=True):
    rng = np.random.default_rng(seed)
    t = rng.uniform(-1, 1, shape)
    p = 0.5 * t + rng.normal(0, 0.3, shape)
    if mask and shape[0] > 4:
        t[rng.choice(shape[0], 2, replace=False), 0] = np.nan
        t[rng.choice(shape[0], 1), -1] = np.nan
    return t, p


@pytest.mark.parametrize("shape", SHAPES)
def test_equation_matches_numpy(shape):
    t, p = data(shape)
    want, rmse, l_pcc, l_ccc = np_l_av(t, p)
    tf32, pf32 = t.astype("float32"), p.astype("float32")
    np.testing.assert_allclose(float(rmse_loss(tf32, pf32)), rmse, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(pcc_loss(tf32, pf32)), l_pcc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(ccc_loss(tf32, pf32)), l_ccc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(affect_loss(tf32, pf32)), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(AffectLoss()(tf32, pf32)), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(AffectLoss(2.0, 0.0, 3.0)(tf32, pf32)), np_l_av(t, p, 2.0, 0.0, 3.0)[0],
                               rtol=1e-5, atol=1e-5)


def test_one_dimensional_input_is_one_column():
    t, p = data((11, 1), mask=False)
    np.testing.assert_allclose(float(ccc_loss(t[:, 0], p[:, 0])), 1 - numpy_ref.ccc(t[:, 0], p[:, 0]), rtol=1e-6)


@pytest.mark.parametrize("shape", [(6, 2), (13, 2)])
def test_gradient_matches_finite_differences(shape):
    t, p = data(shape, seed=1)
    f = lambda q: float(affect_loss(t, q))  # noqa: E731  float64 throughout
    x = tf.Variable(p)
    with tf.GradientTape() as tape:
        loss = affect_loss(t, x)
    grad = tape.gradient(loss, x).numpy()
    h = 1e-6
    num = np.zeros_like(p)
    for idx in np.ndindex(p.shape):
        d = np.zeros_like(p)
        d[idx] = h
        num[idx] = (f(p + d) - f(p - d)) / (2 * h)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)
    # a masked label gives no gradient to its prediction
    assert np.all(grad[~np.isfinite(t)] == 0)
    assert np.any(~np.isfinite(t))


def test_masking_equals_dropping_the_rows():
    t, p = data((12, 1), seed=2, mask=False)
    tm = t.copy()
    tm[[1, 4, 5]] = np.nan
    keep = np.isfinite(tm[:, 0])
    np.testing.assert_allclose(float(affect_loss(tm, p)), float(affect_loss(t[keep], p[keep])), rtol=1e-12)
    # a column without any label in the batch is left out of the average
    t2 = np.concatenate([t, np.full_like(t, np.nan)], axis=1)
    p2 = np.concatenate([p, p], axis=1)
    np.testing.assert_allclose(float(affect_loss(t2, p2)), float(affect_loss(t, p)), rtol=1e-12)


def test_sample_weight_is_a_frequency_weight():
    t, p = data((10, 2), seed=3)
    w = np.array([0, 1, 2, 1, 3, 0, 1, 1, 2, 1], "float64")
    rep = np.repeat(np.arange(10), w.astype(int))
    np.testing.assert_allclose(float(affect_loss(t, p, sample_weight=w)), float(affect_loss(t[rep], p[rep])),
                               rtol=1e-10)
    np.testing.assert_allclose(float(AffectLoss()(t, p, sample_weight=w)), float(affect_loss(t[rep], p[rep])),
                               rtol=1e-5)


def grad_of(fn, t, p):
    x = tf.Variable(p)
    with tf.GradientTape() as tape:
        loss = fn(t, x)
    return float(loss), tape.gradient(loss, x).numpy()


def test_degenerate_batches_are_finite():
    t, _ = data((8, 2), seed=4, mask=False)
    # identical predictions: PCC = CCC = 0 so both correlation losses are 1
    const = np.full_like(t, 0.2, dtype="float32")
    value, grad = grad_of(affect_loss, t.astype("float32"), const)
    want = np.mean([numpy_ref.rmse(t, const, k) for k in (0, 1)]) + 0.5 * 1 + 0.5 * 1
    np.testing.assert_allclose(value, want, rtol=1e-5)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    # perfect predictions: loss ~ 0 (only the epsilons), zero-ish and finite gradient
    value, grad = grad_of(affect_loss, t.astype("float32"), t.astype("float32"))
    assert 0 <= value < 1e-3 and np.all(np.isfinite(grad))
    # constant labels and predictions, all equal
    value, grad = grad_of(affect_loss, const, const)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    # no label at all: 0 with zero gradient; a single labelled row: finite
    nan = np.full_like(t, np.nan)
    value, grad = grad_of(affect_loss, nan, t)
    assert value == 0 and np.all(grad == 0)
    one = nan.copy()
    one[3] = t[3]
    value, grad = grad_of(affect_loss, one, t + 0.1)
    np.testing.assert_allclose(value, 0.1 + 0.5 + 0.5, rtol=1e-5)
    assert np.all(np.isfinite(grad))


def test_config_round_trip_and_errors():
    loss = AffectLoss(rmse_weight=2.0, pcc_weight=0.0, ccc_weight=1.0, epsilon=1e-6, name="va_loss")
    t, p = data((9, 2), seed=5)
    clone = helpers.assert_config_roundtrip(loss)
    assert float(clone(t, p)) == float(loss(t, p))
    with pytest.raises(ValueError, match="rmse_weight"):
        AffectLoss(rmse_weight=-1)
    with pytest.raises(ValueError, match="differ"):
        affect_loss(np.zeros((4, 2)), np.zeros((4, 3)))


def test_compile_evaluate_reports_the_loss():
    """compile(loss=AffectLoss()) on one batch reports L_AV of that batch (training with it: test_metrics.py)."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = np.tanh(x[:, :2] - 0.5 * x[:, 2:]).astype("float32")
    y[::7, 1] = np.nan
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(loss=AffectLoss())
    got = model.evaluate(x, y, batch_size=32, verbose=0)
    np.testing.assert_allclose(got, float(affect_loss(y, model(x))), rtol=1e-5)
    np.testing.assert_allclose(got, np_l_av(y.astype("float64"), model(x).numpy().astype("float64"))[0], rtol=1e-4)


@pytest.mark.parametrize("dtype, atol", [("float64", 1e-9), ("float32", 2e-6)])
@pytest.mark.parametrize("std", [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])
def test_near_constant_predictions_keep_their_true_correlations(std, dtype, atol):
    """An untrained regressor's predictions barely vary: PCC and CCC must be the textbook values (NumPy, float64,
    on the same input values), not pulled towards 0 by a regulariser. The old ``+ eps`` in the PCC denominator
    gave L_PCC = 0.48 at std 1e-4 instead of ~0."""
    rng = np.random.default_rng(int(-np.log10(std)))
    t = rng.uniform(-1, 1, (64, 2))
    p = (0.1 + std * (t + rng.normal(0, 0.5, t.shape))).astype(dtype)
    t = t.astype(dtype)
    t64, p64 = t.astype("float64"), p.astype("float64")
    assert np.std(p64, axis=0).min() > 0.5 * std
    want_pcc = 1 - np.mean([numpy_ref.pcc(t64, p64, k) for k in (0, 1)])
    want_ccc = 1 - np.mean([numpy_ref.ccc(t64, p64, k) for k in (0, 1)])
    assert want_pcc < 0.4  # correlated predictions: a regularised PCC (-> 0) would give a loss near 1
    np.testing.assert_allclose(float(pcc_loss(t, p)), want_pcc, rtol=0, atol=atol)
    np.testing.assert_allclose(float(ccc_loss(t, p)), want_ccc, rtol=0, atol=atol)
    np.testing.assert_allclose(float(rmse_loss(t, p)), np.mean([numpy_ref.rmse(t64, p64, k) for k in (0, 1)]),
                               rtol=1e-6 if dtype == "float64" else 1e-5)
    # and the gradient is the true one (central differences in float64)
    if dtype == "float64":
        value, grad = grad_of(pcc_loss, t, p)
        h = std * 1e-3
        for idx in [(0, 0), (5, 1), (63, 0)]:
            d = np.zeros_like(p)
            d[idx] = h
            num = (float(pcc_loss(t, p + d)) - float(pcc_loss(t, p - d))) / (2 * h)
            np.testing.assert_allclose(grad[idx], num, rtol=1e-4)


def test_zero_variance_counts_as_no_correlation_with_zero_gradient():
    """Below the floor (``epsilon``: std_t * std_p, or the CCC denominator) PCC / CCC are 0, with zero gradient, and
    RMSE of perfect predictions is exactly 0 with zero gradient: no NaN anywhere."""
    t, _ = data((8, 2), seed=6, mask=False)
    p = np.full_like(t, 0.3)
    p[:, 1] += 1e-12 * np.arange(8)  # std 2.3e-12: std_t * std_p < 1e-8
    value, grad = grad_of(pcc_loss, t, p)
    assert value == 1.0 and np.all(grad == 0)
    value, grad = grad_of(rmse_loss, t, t.copy())
    assert value == 0.0 and np.all(grad == 0)
    value, grad = grad_of(ccc_loss, np.full_like(t, 0.3), np.full_like(t, 0.3))
    assert value == 1.0 and np.all(np.isfinite(grad))
    # a larger floor switches PCC off earlier
    assert float(pcc_loss(t, t * 1e-3 + 0.3)) < 1e-6
    assert float(pcc_loss(t, t * 1e-3 + 0.3, epsilon=1e-2)) == 1.0


@pytest.mark.parametrize("shape", [(5, 2), (64, 2), (9, 3)])
def test_authors_mse_variant(shape):
    """The authors' code trains on MSE_v + MSE_a in place of L_RMSE: ``AffectLoss(**AUTHORS_MSE)``."""
    from ferkeras.losses import AUTHORS_MSE, mse_loss

    t, p = data(shape, seed=7)
    cols = [k for k in range(shape[1]) if np.isfinite(t[:, k]).any()]
    mse_sum = sum(numpy_ref.rmse(t, p, k) ** 2 for k in cols)
    _, _, l_pcc, l_ccc = np_l_av(t, p)
    np.testing.assert_allclose(float(mse_loss(t, p)), mse_sum / len(cols), rtol=1e-10)
    loss = AffectLoss(**AUTHORS_MSE)
    # two columns (valence, arousal): exactly MSE_v + MSE_a; K columns: 2 / K times their sum
    np.testing.assert_allclose(float(loss(t, p)), 2 * mse_sum / len(cols) + 0.5 * l_pcc + 0.5 * l_ccc, rtol=1e-6)
    clone = helpers.assert_config_roundtrip(loss)
    assert clone.mse_weight == 2.0 and clone.rmse_weight == 0.0
    with pytest.raises(ValueError, match="mse_weight"):
        AffectLoss(mse_weight=-1)
