"""Training throughput (images/s) of the AVCE model against the supervised baseline, in float32 and under mixed
precision, side by side. Not a test.

The models, all on the same encoder, image size and batch (random images, the paper's optimisers):

* ``baseline``: ferkeras.models.baseline, task va (one forward/backward pass of L_AV);
* ``avce``: AVCEModel with closed-form sparsemax (Kim & Song, "Emotion-aware Multi-view Contrastive Learning for
  Facial Emotion Recognition", ECCV 2022, Algorithm 1: two forward/backward passes);
* ``avce_ecos``: AVCEModel with cvxpy + ECOS sparsemax (the paper's solver, one batched problem);

each built under every ``--precisions`` value (ferkeras.training.precision: none = float32, bfloat16 =
mixed_bfloat16, float16 = mixed_float16). All (model, precision) pairs are timed in interleaved rounds, so a change
in machine load hits them alike; each figure is the median over the rounds of ``batch / seconds per
train_on_batch``, and the ratios compare figures of the same rounds (``x float32``: the same model in float32;
``x baseline`` / ``x AVCE``: the baseline / AVCE with closed-form sparsemax in the same precision). bfloat16 is
fast only where the hardware computes it (CPUs with AVX-512 BF16 / AMX, recent GPUs); the script prints which of
those CPU flags this machine has.

    python tools/bench_train_step.py                                   # after `pip install -e .` or PYTHONPATH=.
    python tools/bench_train_step.py --models=baseline,avce --precisions=none,bfloat16
    python tools/bench_train_step.py --backbone=alexnet --image_size=64 --precisions=none
    python tools/bench_train_step.py --what=gradients --precisions=float16,bfloat16 --image_size=32 --batch=32

``--what=gradients`` compares numerics instead of speed: AVCE at initialisation on one batch, the same weights built in
each precision, each loss and the cosine between its gradient and the float32 gradient.

(The successor of ``tools/bench_sparsemax.py --what=train_step``; the sparsemax benchmark stays there.)
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from ferkeras import training  # noqa: E402

MODELS = {"baseline": "baseline (L_AV, one pass)", "avce": "AVCE, closed_form sparsemax",
          "avce_ecos": "AVCE, ecos sparsemax"}
PRECISION_LABELS = {"none": "float32", "bfloat16": "bfloat16", "float16": "float16"}
BF16_CPU_FLAGS = ("avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "avx_vnni")
"""The /proc/cpuinfo flags that decide whether bfloat16 is computed by the CPU (AVX-512 BF16, AMX) or emulated."""

FLAGS = flags.FLAGS
flags.DEFINE_enum("backbone", "resnet18", ("resnet18", "alexnet"), "Encoder of all models.")
flags.DEFINE_integer("width", 16, "ResNet-18 stem width (64 = the standard ResNet-18).")
flags.DEFINE_integer("image_size", 64, "Image side.")
flags.DEFINE_integer("batch", 64, "Batch size.")
flags.DEFINE_list("models", list(MODELS), f"Models to time, of {', '.join(MODELS)}.")
flags.DEFINE_list("precisions", ["none", "bfloat16"], "Precisions to time each model in, of "
                  f"{', '.join(training.PRECISIONS)}.")
flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds.")
flags.DEFINE_integer("steps", 5, "Timed steps per model and round.")
flags.DEFINE_integer("warmup", 3, "Untimed steps per model first (tracing, then warm-up).")
flags.DEFINE_integer("seed", 0, "Seed of the images and the initialisation.")
flags.DEFINE_enum("what", "throughput", ("throughput", "gradients"), "throughput: the timing table; gradients: how "
                  "far AVCE's losses and their gradients under each --precisions value are from float32's, on one "
                  "batch and the same weights.")


def cpu_bf16_flags(path="/proc/cpuinfo"):
    """``(model name, {flag: present})`` of :data:`BF16_CPU_FLAGS` from ``path`` (``(None, {})`` without it)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None, {}
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), None)
    present = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            present = set(line.split(":", 1)[1].split())
            break
    return name, {flag: flag in present for flag in BF16_CPU_FLAGS}


def build(model_key, precision, shape, width):
    """One compiled model of ``model_key`` (:data:`MODELS`) built under ``precision``."""
    import keras

    from ferkeras.methods.avce import AVCEModel
    from ferkeras.models.baseline import build_baseline_model, compile_baseline

    keras.utils.set_random_seed(FLAGS.seed)
    with training.precision_scope(precision):
        if model_key == "baseline":
            model = build_baseline_model(FLAGS.backbone, shape, task="va", width=width)
            compile_baseline(model, "va", optimizer=keras.optimizers.Adam(1e-4))
        else:
            model = AVCEModel(FLAGS.backbone, shape, width=width,
                              sparsemax_method="ecos" if model_key == "avce_ecos" else "closed_form")
            model.compile(jit_compile=False)  # the paper's optimisers (Adam 1e-4 / SGD 1e-2)
    return model


def measure(models, images, va, rounds, steps, warmup):
    """Interleaved timing of ``models`` (key -> compiled model): ``(key -> images/s of each round, key -> failure
    message)``. A model whose step fails (e.g. an ECOS solver failure) is dropped from the later rounds."""
    batch = int(images.shape[0])
    rates = {key: [] for key in models}
    failures = {}

    def run(key, count):
        try:
            for _ in range(count):
                models[key].train_on_batch(images, {"va": va})
        except tf.errors.InvalidArgumentError as err:
            lines = [line.strip() for line in err.message.splitlines() if line.strip()]
            failures[key] = next((line for line in lines if "ECOS" in line), lines[0])[:300]
            return False
        return True

    for key in models:
        run(key, warmup)
    for _ in range(rounds):
        for key in models:
            if key in failures:
                continue
            start = time.perf_counter()
            if run(key, steps):
                rates[key].append(batch * steps / (time.perf_counter() - start))
    return rates, failures


def report(rates, failures, batch):
    """The table: one row per (model, precision), with its ratios to float32 and to the baseline."""
    medians = {key: statistics.median(values) for key, values in rates.items() if values and key not in failures}
    lines = [f"{'model':30s} {'precision':>9s} {'images/s':>9s} {'ms/step':>8s} {'x float32':>9s} "
             f"{'x baseline':>10s} {'x AVCE':>7s}  rounds (images/s)"]
    for (model_key, precision), values in rates.items():
        label = f"{MODELS[model_key]:30s} {PRECISION_LABELS[precision]:>9s}"
        if (model_key, precision) in failures:
            lines.append(f"{label} failed after {len(values)} timed round(s): {failures[(model_key, precision)]}")
            continue
        rate = medians[(model_key, precision)]
        f32 = medians.get((model_key, "none"))
        base, avce = medians.get(("baseline", precision)), medians.get(("avce", precision))
        ratio = (lambda ref: f"{rate / ref:.3f}" if ref else "-")
        lines.append(f"{label} {rate:9.1f} {batch / rate * 1e3:8.1f} {ratio(f32):>9s} {ratio(base):>10s} "
                     f"{ratio(avce):>7s}  " + " ".join(f"{v:.0f}" for v in values))
    return "\n".join(lines)


def gradient_agreement(precisions, images, va, width):
    """AVCE at initialisation, one batch, the same weights in every precision: each loss (L_AV, L_AVCE, L_dis) and the
    cosine between its gradient and float32's, with respect to E, C, R (L_AV, L_AVCE) or E, C (L_dis), and H1 (L_dis).
    Returns printable lines."""
    from ferkeras.methods.avce import AVCEModel

    shape = tuple(images.shape[1:])

    def losses_and_grads(model):
        with tf.GradientTape(persistent=True) as tape:
            _, l_av, l_con = model.main_losses(images, va)
            l_dis = model.dis_loss_value(images)
        out = {}
        for name, loss, variables in (("L_AV -> E,C,R", l_av, model.main_variables()),
                                      ("L_AVCE -> E,C,R", l_con, model.main_variables()),
                                      ("L_dis -> E,C", l_dis, model.dis_variables()),
                                      ("L_dis -> H1", l_dis, model.head1.trainable_variables)):
            grads = tape.gradient(loss, variables)
            out[name] = (float(loss), np.concatenate([
                np.zeros(int(np.prod(v.shape))) if g is None else np.ravel(np.asarray(g, np.float64))
                for g, v in zip(grads, variables)]))
        return out

    models = {}
    for precision in ["none"] + [p for p in precisions if p != "none"]:
        with training.precision_scope(precision):
            models[precision] = AVCEModel(FLAGS.backbone, shape, width=width)
        models[precision].set_weights(models["none"].get_weights())
    reference = losses_and_grads(models["none"])
    lines = [f"{'precision':9s} {'loss -> variables':17s} {'float32':>9s} {'mixed':>9s} {'rel. diff':>9s} "
             f"{'grad cosine':>11s} {'|grad| ratio':>12s}"]
    for precision, model in models.items():
        if precision == "none":
            continue
        for name, (loss, grad) in losses_and_grads(model).items():
            ref_loss, ref_grad = reference[name]
            cosine = grad @ ref_grad / max(np.linalg.norm(grad) * np.linalg.norm(ref_grad), 1e-30)
            lines.append(f"{PRECISION_LABELS[precision]:9s} {name:17s} {ref_loss:9.4f} {loss:9.4f} "
                         f"{abs(loss - ref_loss) / max(abs(ref_loss), 1e-30):9.2e} {cosine:11.4f} "
                         f"{np.linalg.norm(grad) / max(np.linalg.norm(ref_grad), 1e-30):12.3f}")
    return lines


def main(argv):
    del argv
    unknown = ([m for m in FLAGS.models if m not in MODELS]
               + [p for p in FLAGS.precisions if p not in training.PRECISIONS])
    if unknown:
        raise app.UsageError(f"unknown --models / --precisions value(s) {unknown}; models: {', '.join(MODELS)}; "
                             f"precisions: {', '.join(training.PRECISIONS)}")
    size, batch = FLAGS.image_size, FLAGS.batch
    width = FLAGS.width if FLAGS.backbone == "resnet18" else 64
    rng = np.random.default_rng(FLAGS.seed)
    images = tf.constant(rng.uniform(0, 1, (batch, size, size, 3)), tf.float32)
    va = tf.constant(rng.uniform(-1, 1, (batch, 2)), tf.float32)
    if FLAGS.what == "gradients":
        import keras

        keras.utils.set_random_seed(FLAGS.seed)
        print(f"\nAVCE at initialisation, {FLAGS.backbone} width {width}, {size}x{size}, batch {batch}, same weights: "
              "losses and gradient agreement with float32")
        print("\n".join(gradient_agreement(FLAGS.precisions, images, va, width)))
        return
    models = {(m, p): build(m, p, (size, size, 3), width) for m in FLAGS.models for p in FLAGS.precisions}
    rates, failures = measure(models, images, va, FLAGS.rounds, FLAGS.steps, FLAGS.warmup)

    cpu, cpu_flags = cpu_bf16_flags()
    encoder = FLAGS.backbone + (f" width {FLAGS.width}" if FLAGS.backbone == "resnet18" else "")
    print(f"\nTraining throughput, {encoder}, {size}x{size}, batch {batch}; median of {FLAGS.rounds} interleaved "
          f"rounds of {FLAGS.steps} train_on_batch steps")
    if cpu_flags:
        have = [f for f, ok in cpu_flags.items() if ok]
        print(f"CPU {cpu}; of {', '.join(BF16_CPU_FLAGS)} it has: {', '.join(have) or 'none'}"
              f"{'' if cpu_flags['avx512_bf16'] or cpu_flags['amx_bf16'] else ' (bfloat16 is emulated)'}; "
              f"{os.cpu_count()} logical CPUs")
    print(report(rates, failures, batch))


if __name__ == "__main__":
    app.run(main)
