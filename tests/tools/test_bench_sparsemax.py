"""tools/authors_sparsemax.py (the AVCE authors' way to compute Sp: one parameterised cvxpy problem re-solved per
row, and a backward pass through the KKT system of every row) against the closed-form sparsemax and its Jacobian,
and the labelled rows of tools/bench_sparsemax.py --what=sparsemax (subprocess, tiny batch)."""

import importlib.util
import os

import numpy as np
import pytest

from ferkeras.ops.sparsemax import sparsemax_jacobian_numpy, sparsemax_numpy
from tests import helpers

TOOLS = os.path.join(helpers.REPO, "tools")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"tools_{name}", os.path.join(TOOLS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


authors = _load("authors_sparsemax")  # defines no absl flags, so it can be imported next to the binaries


def _exact_solution(z):
    """The exact projection p and the multipliers of p >= 0: lambda = 2 max(tau - z, 0) (objective ||p - z||^2)."""
    p = sparsemax_numpy(z)
    top = np.argmax(p, axis=1)
    tau = (z - p)[np.arange(z.shape[0]), top][:, None]  # p_i = z_i - tau on the support
    return p, 2.0 * np.maximum(tau - z, 0.0)


def _closed_form_vjp(z, g):
    """Martins & Astudillo: J^T g = s * (g - mean of g over the support), s the support indicator."""
    s = (sparsemax_numpy(z) > 0).astype(np.float64)
    return s * (g - (s * g).sum(axis=1, keepdims=True) / s.sum(axis=1, keepdims=True))


def _with_edge_rows(z):
    """z with, where room allows, a row with one dominant entry (support of size 1), a constant row (support of
    every entry) and a row whose two largest entries tie (support of size 2)."""
    z = z.copy()
    d = z.shape[1]
    z[0] = np.linspace(-0.5, 0.0, d)
    z[0, d // 2] = 5.0
    if z.shape[0] > 1:
        z[1] = 0.7
    if z.shape[0] > 2 and d > 2:
        z[2] = np.linspace(-1.0, 0.0, d)
        z[2, :2] = 3.0
    return z


@pytest.mark.parametrize("shape, scale", [((1, 1), 1.0), ((3, 2), 1.0), ((5, 7), 0.1), ((6, 32), 1.0),
                                          ((4, 50), 10.0)])
def test_kkt_backward_equals_closed_form_vjp(shape, scale):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    z = _with_edge_rows(scale * rng.normal(size=shape))
    g = rng.normal(size=shape)
    p, lam = _exact_solution(z)
    grad, degenerate = authors.kkt_sparsemax_vjp(p, lam, g)
    expected = _closed_form_vjp(z, g)
    np.testing.assert_allclose(grad, expected, atol=1e-10)
    np.testing.assert_allclose(grad, np.einsum("bij,bi->bj", sparsemax_jacobian_numpy(z), g), atol=1e-10)
    assert degenerate.size == 0
    if shape[1] > 2:  # the edge rows really are the edge cases
        assert (p[0] > 0).sum() == 1 and (p[1] > 0).all() and (p[2] > 0).sum() == 2


def test_kkt_backward_at_a_degenerate_point_uses_the_closed_form_support():
    # z = (1, 0, 0, -1): tau = 0, so entries 1 and 2 sit exactly on the threshold (p_i = lambda_i = 0, K singular).
    z = np.array([[1.0, 0.0, 0.0, -1.0], [0.3, 0.1, -0.5, 0.0]])
    g = np.array([[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 2.0, 1.0]])
    p, lam = _exact_solution(z)
    assert np.linalg.matrix_rank(authors.kkt_matrix(p[0], lam[0])) < 9
    grad, degenerate = authors.kkt_sparsemax_vjp(p, lam, g)
    np.testing.assert_allclose(grad, _closed_form_vjp(z, g), atol=1e-12)
    assert degenerate.tolist() == [0]


def test_kkt_backward_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"one shape \(B, d\), got \(2, 3\), \(2, 3\) and \(2, 4\)"):
        authors.kkt_sparsemax_vjp(np.ones((2, 3)) / 3, np.zeros((2, 3)), np.zeros((2, 4)))


def test_parameterised_ecos_layer_matches_closed_form():
    pytest.importorskip("cvxpy")
    rng = np.random.default_rng(3)
    z = _with_edge_rows(rng.normal(size=(8, 6)))
    g = rng.normal(size=z.shape)
    layer = authors.ParameterisedSimplexProjection(6)
    assert layer.problem.is_dpp() and layer.z.shape == (6,)  # one problem for one row, re-solved per row
    p, grad = layer.forward_backward(z, g)
    assert layer.statuses == {"optimal": 8}
    exact, _ = _exact_solution(z)
    np.testing.assert_allclose(p, exact, atol=1e-3)  # ECOS's default tolerances on the sum-of-squares objective
    # Away from the threshold the KKT gradient at ECOS's solution is the closed-form one (near it, it is blended).
    tau = (z - exact)[np.arange(8), exact.argmax(axis=1)][:, None]
    clear = np.abs(z - tau).min(axis=1) > 0.05
    assert clear.sum() >= 5
    np.testing.assert_allclose(grad[clear], _closed_form_vjp(z, g)[clear], atol=1e-4)
    with pytest.raises(ValueError, match=r"expected a batch of shape \(B, 6\), got \(2, 5\)"):
        layer.forward(np.zeros((2, 5)))


@pytest.mark.slow
def test_benchmark_labels_every_row_for_what_it_is():
    proc = helpers.run_script("tools/bench_sparsemax.py", "--what=sparsemax", "--batch=4", "--dim=6", "--rounds=1",
                              "--reps=2", "--ecos_reps=1", "--authors_reps=1", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {line.split("  ")[0].strip(): line for line in proc.stdout.splitlines() if "ms " in line}
    assert "per-row ECOS (authors' way)" not in proc.stdout
    new_problem = lines["a new cvxpy problem per row (ECOS)"]
    authors_row = lines["authors' way: one parameterised cvxpy problem re-solved per row (ECOS), KKT backward"]
    assert "row statuses {'optimal': 4}" in new_problem and " - " in new_problem  # forward only
    # forward ms, x closed form, forward + backward ms, x closed form, max|dp|, max|dgrad|
    fields = authors_row.split("KKT backward")[1].split()
    assert fields[0].endswith("ms") and fields[2].endswith("ms") and float(fields[4]) < 1e-3
    assert "row statuses {'optimal': 8}" in authors_row and "degenerate rows 0" in authors_row
    reference = lines["closed form, tf.function (float32)"].split(")")[1].split()
    assert float(reference[1]) == 1 and float(reference[3]) == 1  # the ratios' reference
