"""Benchmarks of sparsemax, AVCE's Sp(z) (Eq. 6 of Kim & Song, "Emotion-aware Multi-view Contrastive Learning for
Facial Emotion Recognition", ECCV 2022, Sec. 3.5), side by side. Not a test.

1. ``--what=sparsemax``: the ways to compute Sp(z) on one (B, d) batch: median wall time per batch, its ratio to the
   closed form under tf.function, and the largest |delta| to the exact float64 NumPy projection. The paper reports
   about 1.3 s per mini-batch for its cvxpy + ECOS solve (Xeon E5-1650).
2. ``--what=train_step``: training throughput (images/s) of the AVCE model (Algorithm 1: two forward/backward
   passes) with closed-form and with ECOS sparsemax, against the supervised baseline
   (ferkeras.models.baseline, task va: one pass of L_AV) on the same backbone, image size and batch. The three
   models are timed in interleaved rounds (so a change in machine load hits all of them alike); each figure is the
   median over the rounds of ``batch / seconds per train_on_batch``.

    python tools/bench_sparsemax.py --batch=256 --dim=32          # both (after `pip install -e .` or PYTHONPATH=.)
    python tools/bench_sparsemax.py --what=train_step --train_backbone=alexnet --train_image_size=64
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

from ferkeras.ops.sparsemax import sparsemax, sparsemax_numpy  # noqa: E402
from ferkeras.ops.sparsemax_ecos import ECOS_TOLERANCE, project_simplex_ecos, sparsemax_ecos  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch", 256, "Rows per batch (the paper's AlexNet batch is 256).")
flags.DEFINE_integer("dim", 32, "Feature dimension d (the paper's dim z is 32).")
flags.DEFINE_float("scale", 1.0, "Standard deviation of the N(0, scale^2) test features.")
flags.DEFINE_integer("seed", 0, "Seed of the test features.")
flags.DEFINE_integer("reps", 50, "Timed repetitions of the fast methods (closed form, NumPy).")
flags.DEFINE_integer("ecos_reps", 5, "Timed repetitions of the batched ECOS methods.")
flags.DEFINE_integer("per_row_reps", 1, "Timed repetitions of the per-row ECOS method (slow).")
flags.DEFINE_enum("what", "all", ("all", "sparsemax", "train_step"), "Which benchmark(s) to run.")
flags.DEFINE_enum("train_backbone", "resnet18", ("resnet18", "alexnet"), "train_step: encoder of all models.")
flags.DEFINE_integer("train_width", 16, "train_step: ResNet-18 stem width.")
flags.DEFINE_integer("train_image_size", 64, "train_step: image side.")
flags.DEFINE_integer("train_batch", 64, "train_step: batch size.")
flags.DEFINE_integer("train_rounds", 5, "train_step: interleaved timing rounds.")
flags.DEFINE_integer("train_steps", 5, "train_step: timed steps per model and round (after 3 warm-up steps).")


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


def bench_sparsemax():
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


def _train_step_models():
    """name -> compiled model: the baseline (va) and AVCE with closed-form / ECOS sparsemax, same encoder."""
    import keras

    from ferkeras.methods.avce import AVCEModel
    from ferkeras.models.baseline import build_baseline_model, compile_baseline

    shape = (FLAGS.train_image_size, FLAGS.train_image_size, 3)
    width = FLAGS.train_width if FLAGS.train_backbone == "resnet18" else 64
    keras.utils.set_random_seed(FLAGS.seed)
    baseline = build_baseline_model(FLAGS.train_backbone, shape, task="va", width=width)
    compile_baseline(baseline, "va", optimizer=keras.optimizers.Adam(1e-4))
    models = {"baseline (L_AV, one pass)": baseline}
    for method in ("closed_form", "ecos"):
        model = AVCEModel(FLAGS.train_backbone, shape, sparsemax_method=method, width=width)
        model.compile(jit_compile=False)  # the paper's optimisers (Adam 1e-4 / SGD 1e-2)
        models[f"AVCE, {method} sparsemax"] = model
    return models


def bench_train_step():
    rng = np.random.default_rng(FLAGS.seed)
    size, batch = FLAGS.train_image_size, FLAGS.train_batch
    images = tf.constant(rng.uniform(0, 1, (batch, size, size, 3)), tf.float32)
    va = tf.constant(rng.uniform(-1, 1, (batch, 2)), tf.float32)
    models = _train_step_models()
    rates = {name: [] for name in models}
    failures = {}

    def steps(name, count):
        """Runs ``count`` steps of model ``name``; a solver failure (ECOS) drops the model from the benchmark."""
        try:
            for _ in range(count):
                models[name].train_on_batch(images, {"va": va})
        except tf.errors.InvalidArgumentError as err:
            lines = [line.strip() for line in err.message.splitlines() if line.strip()]
            failures[name] = next((line for line in lines if "ECOS" in line), lines[0])[:300]
            return False
        return True

    for name in models:
        steps(name, 3)  # trace, then warm up
    for _ in range(FLAGS.train_rounds):
        for name in models:
            if name in failures:
                continue
            start = time.perf_counter()
            if steps(name, FLAGS.train_steps):
                rates[name].append(batch * FLAGS.train_steps / (time.perf_counter() - start))
    reference = statistics.median(rates["baseline (L_AV, one pass)"])
    closed = statistics.median(rates["AVCE, closed_form sparsemax"] or [float("nan")])
    encoder = FLAGS.train_backbone + (f" width {FLAGS.train_width}" if FLAGS.train_backbone == "resnet18" else "")
    print(f"\nTraining throughput, {encoder}, {size}x{size}, batch {batch}; median of {FLAGS.train_rounds} rounds of "
          f"{FLAGS.train_steps} train_on_batch steps")
    print(f"{'model':32s} {'images/s':>10s} {'ms/step':>9s} {'x baseline':>11s} {'x AVCE closed':>14s}  rounds (images/s)")
    for name, values in rates.items():
        if name in failures:
            print(f"{name:32s} failed after {len(values)} timed round(s): {failures[name]}")
            continue
        rate = statistics.median(values)
        print(f"{name:32s} {rate:10.1f} {batch / rate * 1e3:9.1f} {rate / reference:11.3f} {rate / closed:14.3f}  "
              + " ".join(f"{v:.0f}" for v in values))


def main(argv):
    del argv
    if FLAGS.what in ("all", "sparsemax"):
        bench_sparsemax()
    if FLAGS.what in ("all", "train_step"):
        bench_train_step()


if __name__ == "__main__":
    app.run(main)
