"""Benchmarks of sparsemax, AVCE's Sp(z) (Eq. 6 of Kim & Song, "Emotion-aware Multi-view Contrastive Learning for
Facial Emotion Recognition", ECCV 2022, Sec. 3.5), side by side. Not a test.

1. ``--what=sparsemax``: the ways to compute Sp(z) on one (B, d) batch, each labelled for what it is: the closed form
   (TF, NumPy), ferkeras's batched ECOS solve (one cached cvxpy problem for the whole batch), a new cvxpy problem per
   row, and the authors' way (one parameterised cvxpy problem re-solved per row, and a backward pass through the KKT
   system of every row; tools/authors_sparsemax.py). For the forward pass and, where the method has one, forward +
   backward (upstream gradient g ~ N(0, 1)): median wall time per batch, its ratio to the closed form under
   tf.function (float32) doing the same, and the largest |delta| of p and of dL/dz to the exact float64 projection
   and closed-form Jacobian-vector product. The paper reports about 1.3 s per mini-batch for its cvxpy + ECOS solve
   (Xeon E5-1650).
2. The training-step benchmark (AVCE against the baseline, float32 and bfloat16) is tools/bench_train_step.py.

    python tools/bench_sparsemax.py --batch=256 --dim=32          # after `pip install -e .` or PYTHONPATH=.
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

from authors_sparsemax import ParameterisedSimplexProjection  # noqa: E402  (tools/authors_sparsemax.py)
from ferkeras.ops.sparsemax import sparsemax, sparsemax_jacobian_numpy, sparsemax_numpy  # noqa: E402
from ferkeras.ops.sparsemax_ecos import ECOS_TOLERANCE, project_simplex_ecos, sparsemax_ecos  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch", 256, "Rows per batch (the paper's AlexNet batch is 256).")
flags.DEFINE_integer("dim", 32, "Feature dimension d (the paper's dim z is 32).")
flags.DEFINE_float("scale", 1.0, "Standard deviation of the N(0, scale^2) test features.")
flags.DEFINE_integer("seed", 0, "Seed of the test features.")
flags.DEFINE_integer("rounds", 5, "sparsemax: interleaved timing rounds (every method runs once per round, so a change "
                     "in machine load hits all of them alike).", lower_bound=1)
flags.DEFINE_integer("reps", 20, "sparsemax: timed calls per round of the fast methods (closed form).", lower_bound=1)
flags.DEFINE_integer("ecos_reps", 2, "sparsemax: timed calls per round of the batched ECOS methods.", lower_bound=1)
flags.DEFINE_integer("per_row_reps", 1, "sparsemax: timed calls per round of the new-cvxpy-problem-per-row method "
                     "(slow).", lower_bound=1)
flags.DEFINE_integer("authors_reps", 1, "sparsemax: timed calls per round of the authors' way, forward and forward + "
                     "backward (slow).", lower_bound=1)
flags.DEFINE_enum("what", "sparsemax", ("all", "sparsemax", "train_step"), "sparsemax (all = sparsemax); "
                  "train_step moved to tools/bench_train_step.py.")


class _PerRowEcos:
    """A new cvxpy problem for every row, built and solved by ECOS (default tolerances): the naive per-row way.

    Not the authors' way: they build one parameterised problem and re-solve it (tools/authors_sparsemax.py).
    """

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


def _closed_form_vjp(op):
    """(z, g) -> (op(z), dL/dz for the upstream gradient g), through a GradientTape."""

    def forward_backward(z, g):
        with tf.GradientTape() as tape:
            tape.watch(z)
            p = op(z)
        return p, tape.gradient(p, z, output_gradients=g)

    return forward_backward


def _numpy_pair(pair):
    return tuple(np.asarray(t, dtype=np.float64) for t in pair)


def bench_sparsemax():
    rng = np.random.default_rng(FLAGS.seed)
    z = FLAGS.scale * rng.normal(size=(FLAGS.batch, FLAGS.dim))
    g = rng.normal(size=z.shape)  # the upstream gradient dL/dp of the forward + backward timings
    exact = sparsemax_numpy(z)
    support = (exact > 0).astype(np.float64)
    exact_grad = support * (g - (support * g).sum(axis=1, keepdims=True) / support.sum(axis=1, keepdims=True))
    z32, g32 = tf.constant(z, tf.float32), tf.constant(g, tf.float32)
    z64, g64 = tf.constant(z, tf.float64), tf.constant(g, tf.float64)
    closed_form_graph = tf.function(sparsemax)
    closed_form_vjp = _closed_form_vjp(sparsemax)
    closed_form_vjp_graph = tf.function(closed_form_vjp)
    ecos_vjp_graph = tf.function(_closed_form_vjp(sparsemax_ecos))
    for z_t, g_t in ((z32, g32), (z64, g64)):  # trace once per dtype
        closed_form_graph(z_t)
        closed_form_vjp_graph(z_t, g_t)

    methods = []  # dicts: name, forward (-> p), forward_backward (-> (p, dL/dz)) or None, reps, note, times, results

    def run(name, forward, reps, forward_backward=None, note=lambda grad: ""):
        """Registers a method, timed in the interleaved rounds below; `note(dL/dz or None)` is called after the
        rounds (it may report solver statuses collected while timing)."""
        methods.append(dict(name=name, calls=(forward, forward_backward), reps=reps, note=note, times=([], []),
                            results=[None, None]))

    run("closed form, tf.function (float32)", lambda: closed_form_graph(z32).numpy(), FLAGS.reps,
        lambda: _numpy_pair(closed_form_vjp_graph(z32, g32)))
    run("closed form, TF eager (float32)", lambda: sparsemax(z32).numpy(), FLAGS.reps,
        lambda: _numpy_pair(closed_form_vjp(z32, g32)))
    run("closed form, tf.function (float64)", lambda: closed_form_graph(z64).numpy(), FLAGS.reps,
        lambda: _numpy_pair(closed_form_vjp_graph(z64, g64)))
    run("closed form, NumPy sort + Jacobian (float64)", lambda: sparsemax_numpy(z), FLAGS.reps,
        lambda: (sparsemax_numpy(z), np.einsum("bij,bi->bj", sparsemax_jacobian_numpy(z), g)))

    start = time.perf_counter()
    project_simplex_ecos(z)
    first_call = time.perf_counter() - start
    run(
        "ferkeras batched ECOS: one cached problem per batch (NumPy)",
        lambda: project_simplex_ecos(z),
        FLAGS.ecos_reps,
        note=lambda _: f"first call (cvxpy import + compile) {first_call:.2f} s; tol {ECOS_TOLERANCE:g}",
    )
    ecos_vjp_graph(z64, g64)  # trace
    run(
        "ferkeras batched ECOS in tf.py_function (float64)",
        lambda: sparsemax_ecos(z64).numpy(),
        FLAGS.ecos_reps,
        lambda: _numpy_pair(ecos_vjp_graph(z64, g64)),
        note=lambda _: "backward: closed-form Jacobian on the ECOS support",
    )

    sum_squares = _SumSquaresBatch(FLAGS.batch, FLAGS.dim)
    sum_squares(z)  # compile
    run(
        "batched ECOS, sum_squares objective, one problem per batch",
        lambda: sum_squares(z),
        FLAGS.ecos_reps,
        note=lambda _: f"status {sum_squares.status!r}; default tol",
    )
    per_row = _PerRowEcos()
    run(
        "a new cvxpy problem per row (ECOS)",
        lambda: per_row(z),
        FLAGS.per_row_reps,
        note=lambda _: f"row statuses {dict(per_row.statuses)}; default tol",
    )

    start = time.perf_counter()
    authors = ParameterisedSimplexProjection(FLAGS.dim)
    authors.forward(z)
    first_call = time.perf_counter() - start
    authors.statuses.clear()

    def authors_note(grad):
        off = int((np.abs(grad - exact_grad).max(axis=1) > 1e-3).sum())
        backward_times = []
        for _ in range(5):  # the KKT backward alone, at the last forward's solutions (cheap next to the solves)
            start = time.perf_counter()
            authors.backward(g)
            backward_times.append(time.perf_counter() - start)
        return (f"KKT backward alone {statistics.median(backward_times) * 1e3:.1f} ms; row statuses "
                f"{dict(authors.statuses)}; default tol; first batch (build + compile) {first_call:.2f} s; rows with "
                f"a dL/dz entry off by > 1e-3: {off}/{FLAGS.batch}; degenerate rows {authors.degenerate_rows}")

    run(
        "authors' way: one parameterised cvxpy problem re-solved per row (ECOS), KKT backward",
        lambda: authors.forward(z)[0],
        FLAGS.authors_reps,
        lambda: authors.forward_backward(z, g),
        note=authors_note,
    )

    for _ in range(FLAGS.rounds):
        for method in methods:
            for k, fn in enumerate(method["calls"]):
                if fn is None:
                    continue
                for _ in range(method["reps"]):
                    start = time.perf_counter()
                    method["results"][k] = fn()
                    method["times"][k].append(time.perf_counter() - start)
    rows = []  # (name, forward s, forward + backward s or None, p, dL/dz or None, note)
    for method in methods:
        (forward_times, both_times), (p, both) = method["times"], method["results"]
        grad = None if both is None else np.asarray(both[1], dtype=np.float64)
        rows.append((method["name"], statistics.median(forward_times),
                     statistics.median(both_times) if both_times else None, np.asarray(p, dtype=np.float64), grad,
                     method["note"](grad)))
    forward_ref, both_ref = rows[0][1], rows[0][2]
    width = max(len(row[0]) for row in rows)
    print(f"\nSp(z) on one {FLAGS.batch}x{FLAGS.dim} batch, z ~ N(0, {FLAGS.scale:g}^2), upstream g ~ N(0, 1), "
          f"seed {FLAGS.seed}; median time per batch over {FLAGS.rounds} interleaved rounds")
    print(f"{'method':{width}s} {'forward':>11s} {'x cf':>8s} {'fwd+bwd':>11s} {'x cf':>8s} {'max|dp|':>9s} "
          f"{'max|dgrad|':>10s}  note")
    for name, seconds, both_seconds, p, grad, note in rows:
        if both_seconds is None:
            both = f"{'-':>11s} {'-':>8s}"
            grad_delta = f"{'-':>10s}"
        else:
            both = f"{both_seconds * 1e3:9.2f}ms {both_seconds / both_ref:8.3g}"
            grad_delta = f"{np.abs(grad - exact_grad).max():10.2e}"
        print(f"{name:{width}s} {seconds * 1e3:9.2f}ms {seconds / forward_ref:8.3g} {both} "
              f"{np.abs(p - exact).max():9.2e} {grad_delta}  {note}")
    print("(x cf: ratio to the closed form under tf.function, float32, doing the same (forward, or forward + "
          "backward); max|dp|, max|dgrad|: largest |delta| to the exact float64 projection and closed-form "
          "Jacobian-vector product s * (g - mean of g over the support); paper: ECOS ~1.3 s per mini-batch)")


def main(argv):
    del argv
    if FLAGS.what == "train_step":
        raise app.UsageError("the training-step benchmark moved to tools/bench_train_step.py (float32 and bfloat16 "
                             "side by side): python tools/bench_train_step.py --backbone=resnet18 --width=16 "
                             "--image_size=64 --batch=64")
    bench_sparsemax()


if __name__ == "__main__":
    app.run(main)
