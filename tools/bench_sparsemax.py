"""Benchmark of the ways to compute AVCE's Sp(z) (Eq. 6, seed 000 Sec. 3.5) on one (B, d) batch, side by side.

Prints, for each method, the median wall time per batch, its ratio to the closed form under tf.function, and the
largest |delta| to the exact float64 NumPy projection. The paper reports about 1.3 s per mini-batch for its
cvxpy + ECOS solve (Xeon E5-1650). Not a test.

    python tools/bench_sparsemax.py --batch=256 --dim=32   # after `pip install -e .` (or with PYTHONPATH=.)
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import collections  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from ferkeras.ops import ECOS_TOLERANCE, project_simplex_ecos, sparsemax, sparsemax_ecos, sparsemax_numpy  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch", 256, "Rows per batch (the paper's AlexNet batch is 256).")
flags.DEFINE_integer("dim", 32, "Feature dimension d (the paper's dim z is 32).")
flags.DEFINE_float("scale", 1.0, "Standard deviation of the N(0, scale^2) test features.")
flags.DEFINE_integer("seed", 0, "Seed of the test features.")
flags.DEFINE_integer("reps", 50, "Timed repetitions of the fast methods (closed form, NumPy).")
flags.DEFINE_integer("ecos_reps", 5, "Timed repetitions of the batched ECOS methods.")
flags.DEFINE_integer("per_row_reps", 1, "Timed repetitions of the per-row ECOS method (slow).")


def _time(fn, reps):
    """Median seconds per call over `reps` calls, and the last result."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


class _PerRowEcos:
    """The authors' way: a new cvxpy problem, solved by ECOS (default tolerances), for every row."""

    def __init__(self):
        import cvxpy as cp

        self.cp = cp
        self.statuses = collections.Counter()

    def __call__(self, z):
        cp = self.cp
        out = np.empty_like(z)
        for i, row in enumerate(z):
            p = cp.Variable(row.shape[0])
            problem = cp.Problem(cp.Minimize(cp.sum_squares(p - row)), [p >= 0, cp.sum(p) == 1])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                problem.solve(solver=cp.ECOS)
            self.statuses[problem.status] += 1
            out[i] = p.value
        return out


class _SumSquaresBatch:
    """Batched parameterised problem with the single objective sum_squares(P - Z) (ferkeras uses row norms)."""

    def __init__(self, batch, dim):
        import cvxpy as cp

        self.cp = cp
        self.z = cp.Parameter((batch, dim))
        self.p = cp.Variable((batch, dim))
        constraints = [self.p >= 0, cp.sum(self.p, axis=1) == 1]
        self.problem = cp.Problem(cp.Minimize(cp.sum_squares(self.p - self.z)), constraints)
        self.status = None

    def __call__(self, z):
        self.z.value = z
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.problem.solve(solver=self.cp.ECOS)
            self.status = self.problem.status
        except self.cp.error.SolverError:
            self.status = "solver error"
            return np.full(z.shape, np.nan)
        return self.p.value


def main(argv):
    del argv
    z = FLAGS.scale * np.random.default_rng(FLAGS.seed).normal(size=(FLAGS.batch, FLAGS.dim))
    exact = sparsemax_numpy(z)
    z32 = tf.constant(z, tf.float32)
    z64 = tf.constant(z, tf.float64)
    closed_form_graph = tf.function(sparsemax)
    closed_form_graph(z32)  # trace once per dtype
    closed_form_graph(z64)

    rows = []  # (name, seconds, result, note)

    def run(name, fn, reps, note=lambda: ""):
        """Times fn; `note` is called afterwards (it may report solver statuses collected while timing)."""
        seconds, result = _time(fn, reps)
        rows.append((name, seconds, np.asarray(result, dtype=np.float64), note()))

    run("closed form, TF eager (float32)", lambda: sparsemax(z32).numpy(), FLAGS.reps)
    run("closed form, tf.function (float32)", lambda: closed_form_graph(z32).numpy(), FLAGS.reps)
    run("closed form, tf.function (float64)", lambda: closed_form_graph(z64).numpy(), FLAGS.reps)
    run("NumPy sort-based (float64)", lambda: sparsemax_numpy(z), FLAGS.reps)

    start = time.perf_counter()
    project_simplex_ecos(z)
    first_call = time.perf_counter() - start
    run(
        "batched ECOS, cached problem (NumPy)",
        lambda: project_simplex_ecos(z),
        FLAGS.ecos_reps,
        lambda: f"first call (cvxpy import + compile) {first_call:.2f} s; tol {ECOS_TOLERANCE:g}",
    )
    run("batched ECOS via tf.py_function (float64)", lambda: sparsemax_ecos(z64).numpy(), FLAGS.ecos_reps)

    sum_squares = _SumSquaresBatch(FLAGS.batch, FLAGS.dim)
    sum_squares(z)  # compile
    run(
        "batched ECOS, sum_squares objective",
        lambda: sum_squares(z),
        FLAGS.ecos_reps,
        lambda: f"status {sum_squares.status!r}; default tol",
    )
    per_row = _PerRowEcos()
    run(
        "per-row ECOS (authors' way)",
        lambda: per_row(z),
        FLAGS.per_row_reps,
        lambda: f"row statuses {dict(per_row.statuses)}; default tol",
    )

    reference = rows[1][1]
    print(f"\nSp(z) on one {FLAGS.batch}x{FLAGS.dim} batch, z ~ N(0, {FLAGS.scale:g}^2), seed {FLAGS.seed}")
    print(f"{'method':44s} {'time/batch':>12s} {'x closed form':>14s} {'max |delta|':>12s}  note")
    for name, seconds, result, note in rows:
        delta = np.abs(result - exact).max()
        print(f"{name:44s} {seconds * 1e3:10.3f}ms {seconds / reference:14.3g} {delta:12.2e}  {note}")
    print("(x closed form: ratio to the closed form under tf.function, float32; paper: ECOS ~1.3 s per mini-batch)")


if __name__ == "__main__":
    app.run(main)
