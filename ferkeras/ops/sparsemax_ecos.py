"""Sparsemax solved as a convex program with cvxpy + ECOS, inside the TF graph through ``tf.py_function``.

Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022, Sec. 3.5
("Implementation"), obtain AVCE's attentive view z_a = Sp(z) (Eq. 6, the Euclidean projection onto the simplex) "through
an iterative optimization process based on the CVXPY library" with the ECOS solver. This module solves that
projection for a whole (B, d) batch in ONE parameterised cvxpy problem, built once per (B, d), cached and reused across
steps, and attaches it to TensorFlow through `tf.py_function` with a custom gradient equal to the sparsemax Jacobian
diag(s) - s s^T / |S|. :mod:`ferkeras.ops.sparsemax` computes the same projection in closed form (the default).

Formulation. The rows are independent, so argmin_P sum_i ||p_i - z_i||^2 and argmin_P sum_i ||p_i - z_i|| (s.t.
P >= 0, P 1 = 1) have the same minimiser. ECOS solves the second (one second-order cone of size d + 1 per row)
reliably; on the first (`cp.sum_squares(P - Z)`, one cone over all B*d entries) it stops at "optimal_inaccurate" or
fails on batches of normal features.

Conditioning. ECOS's error grows with the scale of z, so `project_simplex_ecos` conditions every row before solving,
exactly: the projection onto the simplex is unchanged by adding a constant to a row (on the simplex,
||p - z - c1||^2 - ||p - z||^2 does not depend on p), and an entry z_i <= max_j z_j - 1 is never in the support
(tau >= max_j z_j - 1 because the largest entry's p <= 1), so the solver sees z'_i = max(z_i - max_j z_j, -2), entries
in [-2, 0], whatever the scale of z (the floor is -2, not -1, so that no entry sits exactly on the support boundary).
The result is within 1e-5 of the exact projection at any scale (tests/ops/test_sparsemax.py checks unit-scale,
large-scale, offset and ReLU-like rows). Entries that should be 0 come back as small positive numbers, never exactly
0: the support used for the Jacobian is {i : p_i > ECOS_SUPPORT_THRESHOLD} (`support_threshold`), not p_i > 0, which
would put every entry in the support. The first call also imports cvxpy and compiles the problem; timings are in the
README (tools/bench_sparsemax.py).

Limitations.
- Training only: a model holding this op can be exported, but the SavedModel cannot be loaded in a fresh process
  (the Python callback behind `tf.py_function` is not saved: "Could not find callback with key=pyfunc_N in the
  registry"). Export models built with the closed form (same outputs up to the accuracy above).
- No XLA: `tf.py_function` cannot be compiled (the AVCE feature-view layer with ``method="ecos"`` sets
  `supports_jit = False`).
- The solve runs on the CPU (the op is pinned to /CPU:0, inputs are copied there); the gradient is plain TF and
  runs wherever the model runs.
- A solver status other than "optimal" raises `SimplexProjectionError` naming the offending rows; rows holding
  inf or NaN are rejected before solving.

Note: ``ferkeras.ops`` exports the function :func:`sparsemax_ecos` under the same name as this module; import other
names with ``from ferkeras.ops.sparsemax_ecos import ...``.
"""

import collections
import logging
import threading

import numpy as np
import tensorflow as tf

from ferkeras.ops.sparsemax import compute_dtype, sparsemax_vjp

logger = logging.getLogger("ferkeras.ops.sparsemax_ecos")

#: Entries of the ECOS solution above ECOS_SUPPORT_THRESHOLD form the support used for the sparsemax Jacobian (rows
#: are conditioned to entries in [-2, 0] before solving, so one threshold serves every scale of z).
ECOS_SUPPORT_THRESHOLD = 1e-6
#: ECOS absolute, relative and feasibility tolerance (its defaults are 1e-8, 1e-8, 1e-8).
ECOS_TOLERANCE = 1e-10
#: A returned row is off the simplex when an entry is below -this or its sum is off 1 by more than this.
_FEASIBILITY_TOLERANCE = 1e-6
#: How many (B, d) problems stay cached (the last, smaller batch of an epoch adds one shape).
MAX_CACHED_PROBLEMS = 8


class SimplexProjectionError(ValueError):
    """ECOS could not project a batch onto the simplex (non-finite input or a solver failure)."""


class _BatchedSimplexProjection:
    """One parameterised cvxpy problem projecting every row of a (B, d) matrix onto the simplex."""

    def __init__(self, batch, dim):
        import cvxpy as cp  # Imported lazily: cvxpy is slow to import and only this training-time path needs it.

        self._cp = cp
        self.z = cp.Parameter((batch, dim))
        self.p = cp.Variable((batch, dim))
        objective = cp.Minimize(cp.sum(cp.norm(self.p - self.z, 2, axis=1)))
        self.problem = cp.Problem(objective, [self.p >= 0, cp.sum(self.p, axis=1) == 1])
        self.lock = threading.Lock()  # The parameter and variable values are shared state.

    def solve(self, z):
        cp = self._cp
        with self.lock:
            self.z.value = z
            try:
                self.problem.solve(
                    solver=cp.ECOS, abstol=ECOS_TOLERANCE, reltol=ECOS_TOLERANCE, feastol=ECOS_TOLERANCE
                )
                status = self.problem.status
                p = None if self.p.value is None else np.array(self.p.value, dtype=np.float64)
            except cp.error.SolverError as err:
                status, p = f"solver error ({err})", None
        if status != cp.OPTIMAL:
            raise SimplexProjectionError(
                f"ECOS did not solve the simplex projection of a {z.shape[0]}x{z.shape[1]} batch: status "
                f"{status!r}; rows at fault: {_describe_rows(_rows_off_simplex(p, z.shape[0]))}"
            )
        return p


def _rows_off_simplex(p, batch):
    """Rows of a returned solution that are not on the simplex (all rows when there is no solution)."""
    if p is None:
        return np.arange(batch)
    bad = (p.min(axis=1) < -_FEASIBILITY_TOLERANCE) | (np.abs(p.sum(axis=1) - 1.0) > _FEASIBILITY_TOLERANCE)
    bad |= ~np.isfinite(p).all(axis=1)
    rows = np.flatnonzero(bad)
    return rows if rows.size else np.arange(batch)


def _describe_rows(rows, limit=20):
    shown = ", ".join(str(r) for r in rows[:limit])
    return f"[{shown}{', ...' if rows.size > limit else ''}] ({rows.size} row(s))"


_PROBLEMS = collections.OrderedDict()
_PROBLEMS_LOCK = threading.Lock()


def _cached_problem(batch, dim):
    """The cached problem for (batch, dim), built on first use (thread-safe, least recently used evicted)."""
    key = (batch, dim)
    with _PROBLEMS_LOCK:
        problem = _PROBLEMS.get(key)
        if problem is None:
            logger.debug("building the batched ECOS simplex projection for shape %s", key)
            problem = _BatchedSimplexProjection(batch, dim)
            _PROBLEMS[key] = problem
            while len(_PROBLEMS) > MAX_CACHED_PROBLEMS:
                _PROBLEMS.popitem(last=False)
        _PROBLEMS.move_to_end(key)
        return problem


def project_simplex_ecos(z):
    """Sparsemax of `z` in NumPy (AVCE's Sp, Eq. 6), solved by ECOS through one cached, batched cvxpy problem.

    Args:
      z: array of shape (..., d); every row along the last axis is projected onto the simplex.

    Returns:
      float64 array of the shape of `z`; within 1e-5 of the exact projection at any scale of `z` (module
      docstring).

    Raises:
      SimplexProjectionError: a row holds inf or NaN, or ECOS did not reach status "optimal".
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 0 or z.shape[-1] == 0:
        raise SimplexProjectionError(f"the simplex projection needs a last axis of size >= 1, got shape {z.shape}")
    rows = z.reshape(-1, z.shape[-1])
    if rows.shape[0] == 0:
        return np.zeros(z.shape)
    non_finite = np.flatnonzero(~np.isfinite(rows).all(axis=1))
    if non_finite.size:
        raise SimplexProjectionError(
            f"cannot project rows holding inf or NaN onto the simplex: rows {_describe_rows(non_finite)} of a "
            f"{rows.shape[0]}x{rows.shape[1]} batch"
        )
    p = _cached_problem(*rows.shape).solve(condition_rows(rows))
    return p.reshape(z.shape)


def condition_rows(rows):
    """Rows with the same simplex projection and entries in [-2, 0]: max(z_i - max_j z_j, -2) (module docstring)."""
    return np.maximum(rows - rows.max(axis=1, keepdims=True), -2.0)


def support_threshold(z):
    """The threshold separating ECOS's support from its near-zeros, broadcastable against `z`'s rows.

    ECOS_SUPPORT_THRESHOLD for every row: `project_simplex_ecos` conditions the rows to a unit scale first.
    """
    return tf.fill(tf.concat([tf.shape(z)[:-1], [1]], axis=0), tf.constant(ECOS_SUPPORT_THRESHOLD, z.dtype))


def _project_tensor(z):
    return project_simplex_ecos(z.numpy())


@tf.custom_gradient
def _sparsemax_ecos_with_grad(z):
    with tf.device("/CPU:0"):
        dim = tf.shape(z)[-1]
        rows = tf.reshape(tf.cast(z, tf.float64), tf.stack([-1, dim]))
        p = tf.py_function(_project_tensor, [rows], Tout=tf.float64, name="sparsemax_ecos")
        p = tf.cast(tf.reshape(p, tf.shape(z)), z.dtype)
    p.set_shape(z.shape)

    def grad(upstream):
        return sparsemax_vjp(p, upstream, p > support_threshold(z))

    return p, grad


def sparsemax_ecos(z):
    """Sparsemax of `z` by cvxpy + ECOS inside the TF graph (AVCE's Sp, Eq. 6, by the paper's solver, on one batched
    problem); training only.

    Same contract as :func:`ferkeras.ops.sparsemax.sparsemax` (last axis, any leading dims, half precision computed
    in float32, gradient = sparsemax Jacobian with support p > `support_threshold(z)`), but the forward pass is the
    batched ECOS solve of `project_simplex_ecos` through `tf.py_function` on the CPU. Within 1e-5 of the exact
    projection at any scale of z (see the module docstring). A model using it cannot be reloaded from a SavedModel in
    a fresh process.

    Raises (when the op runs): a `tf.errors.OpError` whose message carries the `SimplexProjectionError` text.
    """
    z = tf.convert_to_tensor(z)
    work_dtype = compute_dtype(z.dtype)
    return tf.cast(_sparsemax_ecos_with_grad(tf.cast(z, work_dtype)), z.dtype)
