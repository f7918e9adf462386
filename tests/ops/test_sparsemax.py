"""Sparsemax in closed form (ferkeras.ops.sparsemax) and through cvxpy + ECOS (ferkeras.ops.sparsemax_ecos), and
softmax, against NumPy: values, Jacobians, edge cases. AVCE's Sp (Eq. 6) and Sm (Eq. 7) of Kim & Song, "Emotion-aware
Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022; the AVCE feature-view layer built on them
is tested in tests/methods/avce/test_views.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import ferkeras.ops
from ferkeras.ops.sparsemax import softmax, sparsemax, sparsemax_jacobian_numpy, sparsemax_numpy
from ferkeras.ops.sparsemax_ecos import (
    SimplexProjectionError,
    _cached_problem,
    condition_rows,
    project_simplex_ecos,
    sparsemax_ecos,
    support_threshold,
)

#: Accuracy the ECOS path promises against the exact projection, at any scale of z (ferkeras.ops.sparsemax_ecos).
ECOS_ATOL = 1e-5


def _projection_by_bisection(z):
    """Independent exact reference: tau solves sum_i max(z_i - tau, 0) = 1, found by bisection in float64."""
    z = np.asarray(z, dtype=np.float64)
    lo = z.max(axis=-1, keepdims=True) - 1.0  # sum >= 1 here
    hi = z.max(axis=-1, keepdims=True)  # sum = 0 here
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        too_low = np.maximum(z - mid, 0.0).sum(axis=-1, keepdims=True) > 1.0
        lo = np.where(too_low, mid, lo)
        hi = np.where(too_low, hi, mid)
    return np.maximum(z - 0.5 * (lo + hi), 0.0)


def _edge_rows(d):
    """All-equal, all-zero, one-dominant, already-on-simplex, two-way tie and large-scale rows."""
    rows = np.zeros((6, d))
    rows[0] = 3.7
    rows[2, 5 % d] = 10.0
    rows[3] = np.full(d, 1.0 / d)
    rows[4, :2] = 2.0
    rows[5] = np.linspace(-40.0, 40.0, d)
    return rows


def _inputs(shape, seed):
    return np.random.default_rng(seed).normal(size=shape)


SHAPES = [(1, 32), (7, 32), (64, 32), (2, 3, 5)]


def test_numpy_reference_is_the_projection():
    z = np.concatenate([_inputs((50, 32), 1), 5.0 * _inputs((50, 32), 2), _edge_rows(32)])
    np.testing.assert_allclose(sparsemax_numpy(z), _projection_by_bisection(z), atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,atol", [(tf.float64, 1e-12), (tf.float32, 1e-6)])
def test_closed_form_matches_numpy_and_lies_on_simplex(shape, dtype, atol):
    z = 2.0 * _inputs(shape, 3)
    p = sparsemax(tf.constant(z, dtype))
    assert p.dtype == dtype and p.shape == shape
    p = p.numpy()
    np.testing.assert_allclose(p, sparsemax_numpy(z), atol=atol)
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=10 * atol)


@pytest.mark.parametrize("dtype", [tf.float64, tf.float32])
def test_closed_form_edge_cases(dtype):
    d = 32
    p = sparsemax(tf.constant(_edge_rows(d), dtype)).numpy()
    np.testing.assert_allclose(p[0], 1.0 / d, atol=1e-7)  # all equal -> uniform
    np.testing.assert_allclose(p[1], 1.0 / d, atol=1e-7)  # all zero -> uniform
    np.testing.assert_allclose(p[2], np.eye(d)[5], atol=1e-7)  # one dominant -> one-hot
    np.testing.assert_allclose(p[3], 1.0 / d, atol=1e-7)  # already on the simplex -> itself
    np.testing.assert_allclose(p[4], np.r_[0.5, 0.5, np.zeros(d - 2)], atol=1e-7)
    np.testing.assert_allclose(p, sparsemax_numpy(_edge_rows(d)), atol=1e-6)
    np.testing.assert_allclose(sparsemax(tf.constant([[-3.0], [7.0]], dtype)).numpy(), 1.0)  # d = 1


def test_half_precision_is_computed_in_float32():
    # Values whose cumulative sum overflows float16 (max 65504): a float16 computation would return NaN.
    z = np.linspace(3000.0, 3003.1, 32)[None, :]
    p = sparsemax(tf.constant(z, tf.float16))
    assert p.dtype == tf.float16
    np.testing.assert_allclose(p.numpy().astype(np.float64), sparsemax_numpy(z.astype(np.float16)), atol=2e-3)
    z = _inputs((7, 32), 4)
    np.testing.assert_allclose(sparsemax(tf.constant(z, tf.float16)).numpy(), sparsemax_numpy(z), atol=2e-3)
    with tf.GradientTape() as tape:
        zt = tf.constant(z, tf.float16)
        tape.watch(zt)
        loss = tf.reduce_sum(sparsemax(zt) * tf.constant(_inputs((7, 32), 5), tf.float16))
    assert tape.gradient(loss, zt).dtype == tf.float16


def test_integer_input_is_rejected():
    with pytest.raises(TypeError, match="int32"):
        sparsemax(tf.constant([[1, 2, 3]]))


def _full_jacobian_blocks(op, z):
    """tape.jacobian of op over a (B, d) input, checked block-diagonal, returned as its (B, d, d) diagonal blocks."""
    zt = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(zt)
        p = op(zt)
    jac = tape.jacobian(p, zt).numpy()  # (B, d, B, d)
    b = z.shape[0]
    blocks = np.stack([jac[i, :, i, :] for i in range(b)])
    off_diagonal = jac.copy()
    for i in range(b):
        off_diagonal[i, :, i, :] = 0.0
    assert np.abs(off_diagonal).max() == 0.0
    return blocks


@pytest.mark.parametrize("op", [sparsemax, sparsemax_ecos], ids=["closed_form", "ecos"])
def test_gradient_is_the_sparsemax_jacobian(op):
    # Unit-scale rows, N(0, 10^2) rows (ECOS's near-zeros grow with |z|) and the edge cases.
    z = np.concatenate([_inputs((4, 32), 6), 10.0 * _inputs((4, 32), 22), _edge_rows(32)])
    np.testing.assert_allclose(_full_jacobian_blocks(op, z), sparsemax_jacobian_numpy(z), atol=1e-12)


@pytest.mark.parametrize("op", [sparsemax, sparsemax_ecos], ids=["closed_form", "ecos"])
def test_gradient_with_leading_dims(op):
    z = 2.0 * _inputs((2, 3, 32), 7)
    upstream = _inputs((2, 3, 32), 8)
    zt = tf.constant(z, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(zt)
        loss = tf.reduce_sum(op(zt) * tf.constant(upstream, tf.float32))
    expected = np.einsum("...ij,...i->...j", sparsemax_jacobian_numpy(z), upstream)
    np.testing.assert_allclose(tape.gradient(loss, zt).numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_ecos_matches_exact_projection_and_closed_form(shape):
    z = _inputs(shape, 9)
    p = sparsemax_ecos(tf.constant(z, tf.float64))
    assert p.shape == shape and p.dtype == tf.float64
    p = p.numpy()
    np.testing.assert_allclose(p, sparsemax_numpy(z), atol=ECOS_ATOL)
    np.testing.assert_allclose(p, sparsemax(tf.constant(z)).numpy(), atol=ECOS_ATOL)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-7)
    # The entries that are exactly 0 in the projection stay below the support threshold used for the gradient.
    threshold = support_threshold(tf.constant(z)).numpy()
    assert (p <= threshold)[sparsemax_numpy(z) == 0].all()


def test_ecos_edge_cases_and_half_precision():
    z = _edge_rows(32)[:5]  # the large-scale row is outside the unit-scale accuracy statement
    p = sparsemax_ecos(tf.constant(z, tf.float32))
    assert p.dtype == tf.float32
    np.testing.assert_allclose(p.numpy(), sparsemax_numpy(z), atol=ECOS_ATOL)
    p = sparsemax_ecos(tf.constant(z, tf.float16))
    assert p.dtype == tf.float16
    np.testing.assert_allclose(p.numpy().astype(np.float64), sparsemax_numpy(z.astype(np.float16)), atol=2e-3)


def test_ecos_reuses_one_cached_problem_per_shape():
    z = _inputs((7, 32), 10)
    project_simplex_ecos(z)
    problem = _cached_problem(7, 32)
    project_simplex_ecos(z + 1.0)
    assert _cached_problem(7, 32) is problem
    assert _cached_problem(8, 32) is not problem


def test_ecos_rejects_non_finite_rows_by_index():
    z = _inputs((7, 32), 11)
    z[2, 3] = np.inf
    z[5, 0] = np.nan
    with pytest.raises(SimplexProjectionError, match=r"rows \[2, 5\]"):
        project_simplex_ecos(z)
    with pytest.raises(tf.errors.OpError, match=r"rows \[2, 5\]"):
        sparsemax_ecos(tf.constant(z))


def test_ecos_solver_failure_is_reported(monkeypatch):
    import cvxpy as cp

    z = _inputs((4, 32), 12)
    project_simplex_ecos(z)  # builds the cached problem

    def failing_solve(*args, **kwargs):
        raise cp.error.SolverError("Solver 'ECOS' failed.")

    monkeypatch.setattr(_cached_problem(4, 32).problem, "solve", failing_solve)
    with pytest.raises(SimplexProjectionError, match=r"solver error.*\[0, 1, 2, 3\]"):
        project_simplex_ecos(z)


def test_closed_form_compiles_with_xla():
    z = _inputs((4, 32), 20).astype(np.float32)
    upstream = _inputs((4, 32), 21).astype(np.float32)

    @tf.function(jit_compile=True)
    def value_and_gradient(zt):
        with tf.GradientTape() as tape:
            tape.watch(zt)
            loss = tf.reduce_sum(sparsemax(zt) * upstream)
        return sparsemax(zt), tape.gradient(loss, zt)

    p, grad = value_and_gradient(tf.constant(z))
    np.testing.assert_allclose(p.numpy(), sparsemax_numpy(z), atol=1e-6)
    np.testing.assert_allclose(grad.numpy(), np.einsum("bij,bi->bj", sparsemax_jacobian_numpy(z), upstream), atol=1e-5)


def test_softmax_view_matches_numpy():
    z = np.concatenate([_inputs((7, 32), 16), _edge_rows(32)])
    expected = np.exp(z - z.max(axis=-1, keepdims=True))
    expected /= expected.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(softmax(tf.constant(z)).numpy(), expected, atol=1e-12)
    assert (softmax(tf.constant(z)).numpy()[:7] > 0).all()  # dense, unlike Sp


def test_keras_ops_sparsemax_is_still_wrong_on_tensorflow():
    """keras.ops.sparsemax (TF backend, Keras 3.15.1) sums all support cumulative sums: keras-team/keras#23425.

    When this test fails, Keras has shipped the fix: ferkeras.ops.sparsemax may then be compared against (or replaced
    by) keras.ops.sparsemax, and this test removed.
    """
    z = np.array([[0.0, 0.5, 1.0], [1.0, 0.9, -1.0]], dtype=np.float32)
    expected = np.array([[0.0, 0.25, 0.75], [0.55, 0.45, 0.0]])
    np.testing.assert_allclose(sparsemax(tf.constant(z)).numpy(), expected, atol=1e-6)
    from_keras = keras.ops.convert_to_numpy(keras.ops.sparsemax(z))
    assert not np.allclose(from_keras, expected, atol=1e-3), "keras.ops.sparsemax is fixed (keras-team/keras#23425)"
    assert np.all(np.abs(from_keras.sum(axis=-1) - 1.0) > 0.2)  # its rows do not even lie on the simplex


@pytest.mark.parametrize("scale, offset", [(100.0, 0.0), (10.0, 1000.0), (1e-3, -5.0)])
def test_ecos_is_accurate_at_any_scale(scale, offset):
    """Rows are conditioned before solving (shift by the row max, floor at -2), which leaves the projection unchanged:
    trained features of large scale once made ECOS stop at "optimal_inaccurate"."""
    rng = np.random.default_rng(11)
    z = offset + scale * rng.standard_normal((64, 32))
    z[:8] = np.maximum(z[:8], offset)  # ReLU-like rows with many ties at their floor
    conditioned = condition_rows(z)
    assert conditioned.min() >= -2.0 and conditioned.max() == 0.0
    np.testing.assert_allclose(sparsemax_numpy(conditioned), sparsemax_numpy(z), atol=1e-12)
    upstream = rng.standard_normal(z.shape)
    zt = tf.constant(z, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(zt)
        p = sparsemax_ecos(zt)
        loss = tf.reduce_sum(p * tf.constant(upstream))
    np.testing.assert_allclose(p.numpy(), sparsemax_numpy(z), atol=ECOS_ATOL)
    expected = np.einsum("...ij,...i->...j", sparsemax_jacobian_numpy(z), upstream)
    np.testing.assert_allclose(tape.gradient(loss, zt).numpy(), expected, atol=1e-6)


def test_old_import_paths_still_work():
    """ferkeras.ops keeps the names it exported before the restructure; the old modules re-export the new ones."""
    from ferkeras.ops import ecos_projection, feature_transforms

    assert ferkeras.ops.sparsemax is sparsemax and ferkeras.ops.sparsemax_ecos is sparsemax_ecos
    assert feature_transforms.sparsemax is sparsemax and feature_transforms.softmax is softmax
    assert ecos_projection.project_simplex_ecos is project_simplex_ecos
    from ferkeras.ops import FeatureViews, avce_similarity  # resolved lazily from ferkeras.methods.avce
    from ferkeras.methods.avce import FeatureViews as moved_layer, avce_similarity as moved_f

    assert FeatureViews is moved_layer and avce_similarity is moved_f
    assert set(ferkeras.ops.__all__) <= set(dir(ferkeras.ops)) | set(ferkeras.ops._MOVED)
    with pytest.raises(AttributeError, match="no_such_op"):
        ferkeras.ops.no_such_op
