"""AVCE's Sp(z) the way the authors' code computes it, as a benchmark reference for tools/bench_sparsemax.py.

Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022, Sec. 3.5
("Implementation"), obtain the attentive view z_a = Sp(z) (Eq. 6, the Euclidean projection onto the simplex) with
cvxpy and the ECOS solver. Their code builds ONE parameterised cvxpy problem for a single row,

    minimise ||p - z||^2  subject to  sum_i p_i = 1,  p >= 0        (z a cvxpy Parameter, p a Variable; DPP),

re-solves it for every row of the batch, and differentiates it as a layer: the backward pass solves a linear system
built from the optimality (KKT) conditions at the solution. This module does the same, written from that description
(not from their code), so that the benchmark can time it. It is not a training path: ferkeras trains with the closed
form (:func:`ferkeras.ops.sparsemax`) or the batched ECOS solve (:func:`ferkeras.ops.sparsemax_ecos`).

Backward pass. With the Lagrangian ||p - z||^2 + nu (1^T p - 1) - lambda^T p, the KKT conditions at the solution are

    2 (p - z) + nu 1 - lambda = 0,    1^T p = 1,    lambda_i p_i = 0,    p >= 0,  lambda >= 0.

Differentiating the three equalities (the approach of Amos & Kolter, "OptNet: Differentiable Optimization as a Layer
in Neural Networks", ICML 2017) gives, for a change dz of the input,

    K [dp; dnu; dlambda] = [2 dz; 0; 0],    K = [[2 I, 1, -I], [1^T, 0, 0], [diag(lambda), 0, diag(p)]]   ((2d+1)^2),

so dp/dz = 2 (K^-1)[:d, :d] and, for an upstream gradient g, dL/dz = (dp/dz)^T g = 2 x[:d] with K^T x = [g; 0; 0]
(:func:`kkt_sparsemax_vjp`, one system per row). Under strict complementarity (p_i > 0 or lambda_i > 0 for every i,
which holds unless an entry z_i sits exactly on the threshold tau) K is invertible and this equals the closed-form
vector-Jacobian product of Martins & Astudillo, "From Softmax to Sparsemax", ICML 2016: s * (g - mean of g over the
support), s the support indicator. At a degenerate point (an entry with p_i = lambda_i = 0, i.e. z_i exactly on the
threshold) K is singular and sparsemax has no derivative; there the constraint p_i >= 0 is taken as active (its row of
K becomes dp_i = 0), the closed form's convention (support = {p_i > 0}), and the row is counted.

With a solver's solution (p_i and lambda_i are never exactly 0, and off by the solver's accuracy) an entry within
about the solver's error of the threshold gets a gradient between the two one-sided ones: K is solved as it is, as a
differentiable-optimisation layer does. tools/bench_sparsemax.py reports how far that lands from the closed form.
"""

import collections
import warnings

import numpy as np


def kkt_matrix(p, lam):
    """The KKT matrix K of one row (module docstring): shape (2d + 1, 2d + 1), float64.

    Args:
      p: the solution of the row, shape (d,).
      lam: the multipliers of the constraint p >= 0 at the solution, shape (d,).
    """
    p = np.asarray(p, dtype=np.float64)
    lam = np.asarray(lam, dtype=np.float64)
    d = p.shape[0]
    eye = np.eye(d)
    k = np.zeros((2 * d + 1, 2 * d + 1))
    k[:d, :d] = 2.0 * eye  # stationarity: 2 dp + dnu 1 - dlambda = 2 dz
    k[:d, d] = 1.0
    k[:d, d + 1:] = -eye
    k[d, :d] = 1.0  # primal feasibility: 1^T dp = 0
    k[d + 1:, :d] = np.diag(lam)  # complementary slackness: lambda_i dp_i + p_i dlambda_i = 0
    k[d + 1:, d + 1:] = np.diag(p)
    return k


def kkt_sparsemax_vjp(p, lam, upstream):
    """dL/dz of the projection onto the simplex by solving the KKT system of every row (module docstring).

    Args:
      p: the projections, shape (B, d).
      lam: the multipliers of p >= 0 at the solutions, shape (B, d) (from the solver, or 2 max(tau - z, 0) exactly).
      upstream: the upstream gradient g = dL/dp, shape (B, d).

    Returns:
      (grad, degenerate_rows): grad of shape (B, d), float64; degenerate_rows the indices of the rows holding an
      entry with p_i <= 0 and lambda_i <= 0 (K singular), solved with that constraint taken as active.
    """
    p = np.asarray(p, dtype=np.float64)
    lam = np.asarray(lam, dtype=np.float64)
    g = np.asarray(upstream, dtype=np.float64)
    if p.ndim != 2 or p.shape != lam.shape or p.shape != g.shape:
        raise ValueError(f"kkt_sparsemax_vjp needs p, lam and upstream of one shape (B, d), got {p.shape}, "
                         f"{lam.shape} and {g.shape}")
    batch, d = p.shape
    grad = np.empty((batch, d))
    degenerate = (p <= 0.0) & (lam <= 0.0)
    rhs = np.zeros(2 * d + 1)
    for i in range(batch):
        # A degenerate entry's complementarity row would be all zeros; lambda_i = 1 turns it into dp_i = 0 (active).
        k = kkt_matrix(p[i], np.where(degenerate[i], 1.0, lam[i]))
        rhs[:d] = g[i]
        grad[i] = 2.0 * np.linalg.solve(k.T, rhs)[:d]
    return grad, np.flatnonzero(degenerate.any(axis=1))


class ParameterisedSimplexProjection:
    """One parameterised cvxpy problem for a row of size `dim`, re-solved by ECOS (default tolerances) per row.

    `forward(z)` projects every row of a (B, dim) batch and keeps the solutions and multipliers; `backward(g)` is the
    KKT vector-Jacobian product at the last forward's solutions. `statuses` counts the solver status of every row.
    """

    def __init__(self, dim):
        import cvxpy as cp  # Imported lazily: cvxpy is slow to import.

        self._cp = cp
        self.dim = dim
        self.z = cp.Parameter(dim)
        self.p = cp.Variable(dim)
        self.sums_to_one = cp.sum(self.p) == 1
        self.nonnegative = self.p >= 0
        self.problem = cp.Problem(cp.Minimize(cp.sum_squares(self.p - self.z)), [self.sums_to_one, self.nonnegative])
        if not self.problem.is_dpp():
            raise AssertionError("the parameterised simplex projection must be DPP (compiled once, re-solved)")
        self.statuses = collections.Counter()
        self.degenerate_rows = 0
        self._last = None

    def forward(self, z):
        """Projections (B, dim) and the multipliers of p >= 0 (B, dim), float64, one ECOS solve per row."""
        cp = self._cp
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"expected a batch of shape (B, {self.dim}), got {z.shape}")
        p = np.empty_like(z)
        lam = np.empty_like(z)
        for i, row in enumerate(z):
            self.z.value = row
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.problem.solve(solver=cp.ECOS)
            self.statuses[self.problem.status] += 1
            if self.p.value is None:
                raise ValueError(f"ECOS found no solution for row {i} (status {self.problem.status!r}): {row}")
            p[i] = self.p.value
            lam[i] = self.nonnegative.dual_value
        self._last = (p, lam)
        return p, lam

    def backward(self, upstream):
        """dL/dz (B, dim) at the last forward's solutions, by the KKT system of each row."""
        if self._last is None:
            raise RuntimeError("backward() needs a forward() first")
        grad, degenerate = kkt_sparsemax_vjp(*self._last, upstream)
        self.degenerate_rows += degenerate.size
        return grad

    def forward_backward(self, z, upstream):
        """(p, dL/dz): the forward pass then the KKT backward pass, as a differentiable layer runs them."""
        p, _ = self.forward(z)
        return p, self.backward(upstream)
