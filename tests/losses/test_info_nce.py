"""ferkeras.losses.info_nce against plain NumPy loops of the equations (SimCLR / SSL-FER Eq. 1, SupCon)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from ferkeras.losses.info_nce import (
    InfoNCEObjective,
    cosine_similarity_matrix,
    info_nce,
    info_nce_per_anchor,
    info_nce_views,
    top1_accuracy,
    view_candidates,
)
from ferkeras.losses.objective import ContrastiveObjective
from tests import helpers
from tests.helpers import contrastive_views as views, numeric_grad_at as numeric_grad

EPS = 1e-8


# ----------------------------------------------------------------------------------- NumPy references (float64)
def np_cos(u, v):
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    return float(u @ v / (max(np.linalg.norm(u), EPS) * max(np.linalg.norm(v), EPS)))


def np_views_info_nce(a, p, h, tau, denominator="simclr", symmetric=False, scope="all"):
    """SSL-FER Eq. 1 for anchor x_i, positive x_j: -log(e^{s_ij/tau} / sum_{k in D} e^{s_ik/tau}), loops only.

    The batch's views are every anchor a_b, positive p_b and hard negative h_bk. D = all views but the anchor
    itself ("simclr"), and also without the positive ("printed", 1[k != i, j]). Returns the mean over the anchors
    whose denominator is not empty (0 if none).
    """
    B = len(a)
    K = 0 if h is None else h.shape[1]
    views = [("a", b, None, a[b]) for b in range(B)] + [("p", b, None, p[b]) for b in range(B)]
    views += [("h", b, k, h[b, k]) for b in range(B) for k in range(K)]
    anchors = [("a", i) for i in range(B)] + ([("p", i) for i in range(B)] if symmetric else [])
    losses = []
    for kind, i in anchors:
        x = a[i] if kind == "a" else p[i]
        pos_kind = "p" if kind == "a" else "a"
        pos = p[i] if kind == "a" else a[i]
        numerator = math.exp(np_cos(x, pos) / tau)
        denominator_sum = 0.0
        for vkind, b, k, v in views:
            if (vkind, b) == (kind, i):
                continue  # the anchor itself
            if scope == "own" and vkind == "h" and b != i:
                continue
            if denominator == "printed" and (vkind, b) == (pos_kind, i):
                continue  # 1[k != i, j]
            denominator_sum += math.exp(np_cos(x, v) / tau)
        if denominator_sum > 0:
            losses.append(-math.log(numerator / denominator_sum))
    return float(np.mean(losses)) if losses else 0.0


def np_multi_positive(anchors, candidates, weights, exclude, tau, denominator, reduction):
    """Per-anchor multi-positive InfoNCE by loops; None for an anchor without a positive or a denominator."""
    out = []
    for i, x in enumerate(anchors):
        s = [np_cos(x, c) / tau for c in candidates]
        w = [0.0 if exclude[i, c] else float(weights[i, c]) for c in range(len(candidates))]
        den = [c for c in range(len(candidates)) if not exclude[i, c]]
        if denominator == "printed":
            den = [c for c in den if w[c] == 0]
        pos = [c for c in range(len(candidates)) if w[c] > 0]
        if not pos or not den:
            out.append(None)
            continue
        log_den = math.log(sum(math.exp(s[c]) for c in den))
        if reduction == "logsumexp":
            out.append(log_den - math.log(sum(w[c] * math.exp(s[c]) for c in pos)))
        else:
            total = sum(w[c] * (log_den - s[c]) for c in pos)
            out.append(total / sum(w[c] for c in pos) if reduction == "mean" else total)
    return out


# ------------------------------------------------------------------------------------------------------ values
@pytest.mark.parametrize("B,K,D", [(1, 0, 3), (2, 0, 4), (2, 3, 5), (5, 2, 8), (7, 0, 16)])
@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0])
@pytest.mark.parametrize("denominator", ["simclr", "printed"])
def test_views_match_numpy(B, K, D, tau, denominator):
    rng = np.random.default_rng(B * 100 + K * 10 + D)
    a, p, h = views(rng, B, K, D)
    got = float(info_nce_views(a, p, h, temperature=tau, denominator=denominator))
    want = np_views_info_nce(a, p, h, tau, denominator)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("scope", ["all", "own"])
@pytest.mark.parametrize("denominator", ["simclr", "printed"])
def test_views_symmetric_and_scope_match_numpy(symmetric, scope, denominator):
    rng = np.random.default_rng(7)
    a, p, h = views(rng, 4, 2, 6)
    got = float(info_nce_views(a, p, h, temperature=0.2, denominator=denominator, symmetric=symmetric,
                               hard_negatives_scope=scope))
    want = np_views_info_nce(a, p, h, 0.2, denominator, symmetric, scope)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_printed_is_below_simclr_by_the_dropped_positive():
    """-log(e^s / (S - e^s)) < -log(e^s / S): the printed form drops the positive's share from the denominator."""
    rng = np.random.default_rng(0)
    a, p, h = views(rng, 4, 1, 8)
    simclr = float(info_nce_views(a, p, h, temperature=0.5))
    printed = float(info_nce_views(a, p, h, temperature=0.5, denominator="printed"))
    assert printed < simclr
    assert simclr > 0  # SimCLR form: -log of a probability


@pytest.mark.parametrize("reduction", ["mean", "sum", "logsumexp"])
@pytest.mark.parametrize("denominator", ["simclr", "printed"])
@pytest.mark.parametrize("A,C", [(1, 2), (3, 5), (6, 9)])
def test_multi_positive_matches_numpy(reduction, denominator, A, C):
    rng = np.random.default_rng(A * 10 + C)
    anchors = rng.normal(size=(A, 4)).astype(np.float32)
    candidates = rng.normal(size=(C, 4)).astype(np.float32)
    weights = np.where(rng.random((A, C)) < 0.4, rng.uniform(0.2, 2.0, (A, C)), 0.0).astype(np.float32)
    weights[0, 0] = 1.0  # at least one anchor with a positive
    exclude = rng.random((A, C)) < 0.2
    exclude[0, 0] = False
    loss, valid = info_nce_per_anchor(anchors, candidates, weights, exclude, temperature=0.3,
                                      denominator=denominator, positive_reduction=reduction)
    want = np_multi_positive(anchors, candidates, weights, exclude, 0.3, denominator, reduction)
    np.testing.assert_array_equal(valid.numpy(), [w is not None for w in want])
    np.testing.assert_allclose(loss.numpy(), [0.0 if w is None else w for w in want], rtol=1e-4, atol=1e-4)
    valid_values = [w for w in want if w is not None]
    scalar = float(info_nce(anchors, candidates, weights, exclude, 0.3, denominator, reduction))
    np.testing.assert_allclose(scalar, np.mean(valid_values) if valid_values else 0.0, rtol=1e-4, atol=1e-4)


def test_bool_mask_equals_unit_weights_and_supcon_mean():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    labels = np.array([0, 0, 1, 1])
    positives = (labels[:, None] == labels[None, :]) & ~np.eye(4, dtype=bool)
    by_bool = info_nce(x, x, positives, np.eye(4, dtype=bool), 0.1)
    by_float = info_nce(x, x, positives.astype(np.float32), np.eye(4, dtype=bool), 0.1)
    np.testing.assert_allclose(float(by_bool), float(by_float), rtol=1e-6)
    want = np_multi_positive(x, x, positives, np.eye(4, dtype=bool), 0.1, "simclr", "mean")
    np.testing.assert_allclose(float(by_bool), np.mean(want), rtol=1e-5)


# ------------------------------------------------------------------------------------------------- edge cases
def test_exact_plus_and_minus_one_cosines():
    """Positive parallel to the anchor (cos +1), n negatives anti-parallel (cos -1): closed forms."""
    a = np.array([[1.0, 2.0, -1.0]], np.float32)
    p = 3.0 * a
    h = -np.stack([a, 2 * a], axis=1)  # (1, 2, 3), cos -1
    tau = 0.07
    # Candidates of a_1: p_1 (+1), h_11, h_12 (-1). SimCLR: log(1 + 2 e^{-2/tau}); printed: -2/tau + log 2.
    got = float(info_nce_views(a, p, h, temperature=tau))
    np.testing.assert_allclose(got, math.log1p(2 * math.exp(-2 / tau)), rtol=1e-4, atol=1e-7)
    printed = float(info_nce_views(a, p, h, temperature=tau, denominator="printed"))
    np.testing.assert_allclose(printed, -2 / tau + math.log(2), rtol=1e-5)
    np.testing.assert_allclose(got, np_views_info_nce(a, p, h, tau), atol=1e-6)
    with tf.GradientTape() as tape:
        tensors = [tf.constant(v) for v in (a, p, h)]
        tape.watch(tensors)
        loss = info_nce_views(*tensors, temperature=tau, denominator="printed")
    for g in tape.gradient(loss, tensors):
        assert np.all(np.isfinite(g.numpy()))
    # And the opposite extreme: the positive anti-parallel, a negative parallel.
    got = float(info_nce_views(a, -p, -h, temperature=1.0))
    np.testing.assert_allclose(got, np_views_info_nce(a, -p, -h, 1.0), rtol=1e-5)


def test_zero_vectors():
    rng = np.random.default_rng(1)
    a, p, h = views(rng, 3, 2, 4)
    a[1] = 0.0
    p[2] = 0.0
    h[0, 1] = 0.0
    for denominator in ("simclr", "printed"):
        got = float(info_nce_views(a, p, h, temperature=0.1, denominator=denominator))
        np.testing.assert_allclose(got, np_views_info_nce(a, p, h, 0.1, denominator), rtol=1e-4)
    # A zero anchor has cosine 0 with all its 2B + BK - 1 candidates: loss = log(#candidates) (SimCLR form).
    z = np.zeros((1, 4), np.float32)
    loss, _ = info_nce_per_anchor(z, np.concatenate([p, h.reshape(-1, 4)]), np.eye(1, 9, dtype=bool),
                                  temperature=0.1)
    np.testing.assert_allclose(loss.numpy(), [math.log(9)], rtol=1e-6)
    with tf.GradientTape() as tape:
        tensors = [tf.constant(v) for v in (a, p, h)]
        tape.watch(tensors)
        loss = info_nce_views(*tensors, temperature=0.1)
    for g in tape.gradient(loss, tensors):
        assert np.all(np.isfinite(g.numpy()))


def test_b1_k0():
    a = np.array([[1.0, 0.0]], np.float32)
    p = np.array([[0.5, 0.5]], np.float32)
    # SimCLR: the only candidate is the positive: loss -log(1) = 0 exactly.
    assert float(info_nce_views(a, p, temperature=0.07)) == pytest.approx(0.0, abs=1e-6)
    # Printed: no negative at all: the anchor is invalid, the loss 0 with zero (not NaN) gradient.
    anchors, candidates, pos, exc = view_candidates(a, p)
    loss, valid = info_nce_per_anchor(anchors, candidates, pos, exc, denominator="printed")
    assert not bool(valid[0]) and float(loss[0]) == 0.0
    with tf.GradientTape() as tape:
        ta, tp = tf.constant(a), tf.constant(p)
        tape.watch([ta, tp])
        loss = info_nce_views(ta, tp, denominator="printed")
    assert float(loss) == 0.0
    for g in tape.gradient(loss, [ta, tp]):
        np.testing.assert_array_equal(g.numpy(), 0.0)
    # An empty hard-negative axis is the same as none.
    np.testing.assert_allclose(float(info_nce_views(a, p, np.zeros((1, 0, 2), np.float32))),
                               float(info_nce_views(a, p)))


def test_candidate_layout():
    a, p, h = np.ones((2, 3)), 2 * np.ones((2, 3)), 3 * np.ones((2, 2, 3))
    anchors, candidates, pos, exc = view_candidates(a, p, h, symmetric=True, hard_negatives_scope="own")
    assert anchors.shape == (4, 3) and candidates.shape == (8, 3)
    pos, exc = pos.numpy(), exc.numpy()
    np.testing.assert_array_equal(np.argwhere(pos), [[0, 2], [1, 3], [2, 0], [3, 1]])
    # a_1 excludes itself and sample 2's hard negatives (columns 6, 7); p_2 excludes itself and h_11, h_12.
    np.testing.assert_array_equal(np.flatnonzero(exc[0]), [0, 6, 7])
    np.testing.assert_array_equal(np.flatnonzero(exc[3]), [3, 4, 5])


def test_large_logits_stable():
    """tau = 0.01: logits of +-100 stay finite (log-sum-exp) and match float64 NumPy."""
    rng = np.random.default_rng(5)
    a, p, h = views(rng, 3, 1, 4)
    got = float(info_nce_views(a, p, h, temperature=0.01))
    np.testing.assert_allclose(got, np_views_info_nce(a, p, h, 0.01), rtol=1e-4)


# -------------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("denominator", ["simclr", "printed"])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("B,K", [(2, 0), (3, 2)])
def test_gradients_match_finite_differences(denominator, symmetric, B, K):
    rng = np.random.default_rng(11 + B + K)
    a, p, h = views(rng, B, K, 3)
    tau = 0.5
    tensors = [tf.constant(v) for v in (a, p, h) if v is not None]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        loss = info_nce_views(*tensors, temperature=tau, denominator=denominator, symmetric=symmetric)
    grads = tape.gradient(loss, tensors)
    a64, p64 = a.astype(np.float64), p.astype(np.float64)
    h64 = None if h is None else h.astype(np.float64)
    ref = [
        numeric_grad(lambda x: np_views_info_nce(x, p64, h64, tau, denominator, symmetric), a64),
        numeric_grad(lambda x: np_views_info_nce(a64, x, h64, tau, denominator, symmetric), p64),
    ]
    if h is not None:
        ref.append(numeric_grad(lambda x: np_views_info_nce(a64, p64, x, tau, denominator, symmetric), h64))
    for got, want in zip(grads, ref):
        np.testing.assert_allclose(got.numpy(), want, atol=2e-4 * max(1.0, np.abs(want).max()), rtol=1e-3)


def test_multi_positive_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    anchors = rng.normal(size=(3, 4))
    candidates = rng.normal(size=(5, 4))
    weights = np.array([[1, 0.5, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0.3, 0.7]], np.float64)
    exclude = np.zeros((3, 5), bool)
    exclude[1, 0] = True
    for reduction in ("mean", "sum", "logsumexp"):
        for denominator in ("simclr", "printed"):
            def ref(x, y):
                return float(np.mean(np_multi_positive(x, y, weights, exclude, 0.2, denominator, reduction)))

            ta, tc = tf.constant(anchors, tf.float32), tf.constant(candidates, tf.float32)
            with tf.GradientTape() as tape:
                tape.watch([ta, tc])
                loss = info_nce(ta, tc, weights, exclude, 0.2, denominator, reduction)
            ga, gc = tape.gradient(loss, [ta, tc])
            want_a = numeric_grad(lambda x: ref(x, candidates), anchors)
            want_c = numeric_grad(lambda y: ref(anchors, y), candidates)
            np.testing.assert_allclose(ga.numpy(), want_a, atol=1e-3, rtol=1e-3, err_msg=f"{reduction} {denominator}")
            np.testing.assert_allclose(gc.numpy(), want_c, atol=1e-3, rtol=1e-3, err_msg=f"{reduction} {denominator}")


# -------------------------------------------------------------------------------------------- objective, misc
def test_cosine_similarity_matrix():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 4)), rng.normal(size=(2, 4))
    x[0] = 0
    got = cosine_similarity_matrix(x, y).numpy()
    np.testing.assert_allclose(got, [[np_cos(u, v) for v in y] for u in x], rtol=1e-5, atol=1e-7)


def test_top1_accuracy():
    a = np.eye(3, 4, dtype=np.float32)
    p = a + 0.01
    anchors, candidates, pos, exc = view_candidates(a, p)
    logits = cosine_similarity_matrix(anchors, candidates)
    assert float(top1_accuracy(logits, pos, exc)) == 1.0
    anchors, candidates, pos, exc = view_candidates(a, -p)
    logits = cosine_similarity_matrix(anchors, candidates)
    assert float(top1_accuracy(logits, pos, exc)) == 0.0


def test_objective_equals_functional_and_roundtrips():
    rng = np.random.default_rng(4)
    a, p, h = views(rng, 4, 2, 6)
    obj = InfoNCEObjective(temperature=0.2, denominator="printed", symmetric=True, hard_negatives_scope="own")
    assert isinstance(obj, ContrastiveObjective)
    assert obj.precompute({"anchor": a}) == {}
    out = obj({"anchor": a, "positive": p, "hard_negatives": h}, {})
    want = np_views_info_nce(a, p, h, 0.2, "printed", True, "own")
    np.testing.assert_allclose(float(out["loss"]), want, rtol=1e-4)
    assert set(out) == {"loss", "info_nce", "accuracy"}
    clone = helpers.assert_config_roundtrip(obj)
    np.testing.assert_allclose(float(clone({"anchor": a, "positive": p, "hard_negatives": h}, {})["loss"]), want,
                               rtol=1e-4)
    helpers.assert_config_roundtrip(InfoNCEObjective())
    # In a tf.function with an unknown batch size.
    fn = tf.function(lambda x, y, z: obj({"anchor": x, "positive": y, "hard_negatives": z}, {})["loss"])
    concrete = fn.get_concrete_function(tf.TensorSpec([None, 6]), tf.TensorSpec([None, 6]),
                                        tf.TensorSpec([None, 2, 6]))
    np.testing.assert_allclose(float(concrete(tf.constant(a), tf.constant(p), tf.constant(h))), want, rtol=1e-4)


def test_mixed_precision_inputs_are_computed_in_float32():
    rng = np.random.default_rng(6)
    a, p, h = views(rng, 3, 1, 8)
    got = info_nce_views(tf.constant(a, tf.float16), tf.constant(p, tf.float16), tf.constant(h, tf.float16))
    assert got.dtype == tf.float32
    np.testing.assert_allclose(float(got), np_views_info_nce(a, p, h, 0.07), rtol=5e-3)


def test_argument_errors():
    with pytest.raises(ValueError, match="denominator"):
        InfoNCEObjective(denominator="paper")
    with pytest.raises(ValueError, match="temperature"):
        InfoNCEObjective(temperature=0.0)
    with pytest.raises(ValueError, match="hard_negatives_scope"):
        InfoNCEObjective(hard_negatives_scope="none")
    with pytest.raises(ValueError, match="positive_reduction"):
        info_nce(np.ones((1, 2)), np.ones((1, 2)), np.ones((1, 1)), positive_reduction="max")


def test_objective_computes_in_float32_under_mixed_precision():
    rng = np.random.default_rng(9)
    a, p, h = views(rng, 4, 1, 16)
    want = np_views_info_nce(a, p, h, 0.07)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        obj = InfoNCEObjective()
        out = obj({"anchor": a, "positive": p, "hard_negatives": h}, {})
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert out["loss"].dtype == tf.float32
    np.testing.assert_allclose(float(out["loss"]), want, rtol=1e-5)
