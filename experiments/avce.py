r"""AVCE: valence-arousal regression with emotion-aware multi-view contrastive learning (Kim & Song, "Emotion-aware
Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022; Algorithm 1 in
ferkeras.methods.avce.AVCEModel).

Quick start (no dataset needed; built-in synthetic faces, a few minutes on 2 CPU cores):

    python experiments/avce.py --flagfile=experiments/configs/avce_synthetic.cfg

It trains a quarter-width ResNet-18 with L_AV + L_AVCE (+ L_dis) on 4000 64x64 synthetic faces of 100 identities
and evaluates on 1000 faces of 25 *other* identities: valence / arousal CCC, PCC, RMSE, SAGR, and the run directory
(runs/avce-...) with result.json, va_scatter.png, training_curves.png, activation_maps.png (CAM through R and H,
Grad-CAM, Score-CAM of held-out faces), activation_maps/ (the same during training), TensorBoard logs (scalars and
activation-map images), checkpoints and flags.cfg.

Other runs:

    python experiments/avce.py --flagfile=experiments/configs/avce_smoke.cfg                  # seconds
    python experiments/avce.py --flagfile=experiments/configs/avce_afew_va_alexnet.cfg \
        --data_root=input/afew_va --fold=0                                                    # the paper's setting
    python experiments/avce.py --contrastive=none --nouse_dis ...   # L_AV alone (the paper's baseline)
    python experiments/avce.py --flagfile=runs/<run>/flags.cfg --resume=runs/<run>             # continue a run
    python tools/compare_avce.py                            # L_AV alone vs AVCE f / f1 / f2 vs InfoNCE, one table

Optimisers (Sec. 4.2): Adam(--lr) on E, C, R and SGD(--head_lr) on H, H1, both multiplied by --lr_factor after
--lr_first iterations and then every --lr_every iterations (ferkeras.methods.avce.AVCEStepSchedule). The length of
a run is --iterations (the paper: 50K AFEW-VA / AffectNet, 100K Aff-Wild / Aff-Wild2) or --epochs of --steps.
"""

from __future__ import annotations

import math
import os
import sys
import time

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root: experiments.common
from experiments import common  # noqa: E402

DATASETS = ("synthetic", "afew_va", "aff_wild", "aff_wild2", "affectnet")
CAM_METHODS = ("cam", "cam_head", "gradcam", "scorecam")  # = ferkeras.methods.avce.METHODS (not imported: TF-heavy)

_OWN_FLAGS = [
    flags.DEFINE_enum("backbone", "resnet18", ("alexnet", "resnet18"), "Encoder E (trained from scratch)."),
    flags.DEFINE_integer("width", 16, "resnet18 only: stem width (64 = the standard ResNet-18 of the paper)."),
    flags.DEFINE_enum("sparsemax", "closed_form", ("closed_form", "ecos"), "How Sp(z) (Eq. 6) is computed: the "
                      "closed form, or cvxpy + ECOS through tf.py_function (the paper's solver, one batched problem; slow)."),
    flags.DEFINE_enum("contrastive", "avce", ("avce", "infonce", "barlow_twins", "none"), "Contrastive term: "
                      "L_AVCE (Eq. 2), the Table 4 ablations, or none (with --nouse_dis: L_AV alone, the paper's "
                      "baseline)."),
    flags.DEFINE_enum("similarity", "f", ("f", "f1", "f2"), "Emotion-aware similarity: f (Eq. 4) or f1 / f2 "
                      "(Eq. 5)."),
    flags.DEFINE_bool("use_dis", True, "Second pass with L_dis (Eq. 8); --nouse_dis is the 'w/o L_dis' ablation."),
    flags.DEFINE_enum("compressor", "gap", ("gap", "flatten"), "Compressor C: gap = average pooling + FC (the "
                      "paper, Sec. 3.2); flatten = adaptive average pooling to 6x6, flatten + FC (the authors' code)."),
    flags.DEFINE_float("contrastive_weight", 1.0, "w in L_main = L_AV + w * L_contrastive: 1 in Algorithm 1 (the "
                       "paper, default); the authors' code uses 1e-4."),
    flags.DEFINE_enum("regression_loss", "rmse", ("rmse", "mse"), "Regression term of L_AV: rmse = L_RMSE (the "
                      "paper, Sec. 4.2); mse = MSE_v + MSE_a (the authors' code). PCC and CCC terms alike."),
    flags.DEFINE_bool("head_batch_norm", False, "Batch normalisation in R, H, H1 (as the paper says; the authors' "
                      "code has none)."),
    flags.DEFINE_float("lr", 1e-4, "Adam learning rate of E, C, R (paper: 1e-4)."),
    flags.DEFINE_float("head_lr", 1e-2, "SGD learning rate of H, H1 (paper: 1e-2)."),
    flags.DEFINE_integer("lr_first", 5000, "Iterations before the first learning-rate decay (paper: 5000)."),
    flags.DEFINE_integer("lr_every", 20000, "Iterations between later decays (paper: 20000)."),
    flags.DEFINE_float("lr_factor", 0.8, "Learning-rate decay factor (paper: 0.8)."),
    flags.DEFINE_integer("iterations", None, "Total training iterations (overrides --epochs: the run has "
                         "ceil(iterations / steps) epochs of --steps). Paper: 50000 AFEW-VA / AffectNet, 100000 "
                         "Aff-Wild / Aff-Wild2."),
    flags.DEFINE_integer("cam_images", 4, "Held-out faces drawn in the activation-map PNGs (0 = no maps)."),
    flags.DEFINE_integer("cam_every", 1, "Log activation maps every this many epochs while training (0 = only the "
                         "final activation_maps.png)."),
    flags.DEFINE_list("cam_methods", "cam,cam_head,gradcam", "Maps logged while training (the final PNG has all "
                      f"of {','.join(CAM_METHODS)})."),
]
_FLAGS = _OWN_FLAGS + common.define_shared_flags(DATASETS, augment="flip")
BOUNDS = dict(width=common.AT_LEAST_1, lr=common.POSITIVE, head_lr=common.POSITIVE, lr_first=common.AT_LEAST_0,
              lr_every=common.AT_LEAST_1, lr_factor=common.Bound(0, 1, low_open=True), iterations=common.AT_LEAST_1,
              cam_images=common.AT_LEAST_0, cam_every=common.AT_LEAST_0, contrastive_weight=common.AT_LEAST_0)
"""The ranges of this binary's own numeric flags (the shared ones: :data:`experiments.common.SHARED_BOUNDS`)."""


def settings():
    """Flag values as a dict, with the --smoke overrides (tiny data, image 32 (alexnet: 64), width 16 (no thinner:
    TF's oneDNN fault on AVX-512 CPUs, see README), 2 steps)."""
    backbone, width = flags.FLAGS.backbone, flags.FLAGS.width
    return common.settings(_FLAGS, dict(image_size=64 if backbone == "alexnet" else 32, width=min(width, 16),
                                        iterations=None, cam_images=min(flags.FLAGS.cam_images, 2)))


def check(s):
    """Errors a user can make with flag combinations, reported before anything heavy is imported."""
    common.check(s, BOUNDS)
    common.check_image_size(s, s["backbone"])
    unknown = [m for m in s["cam_methods"] if m not in CAM_METHODS]
    if unknown or not s["cam_methods"]:
        raise app.UsageError(f"--cam_methods={','.join(s['cam_methods'])}: unknown {unknown or 'empty'}; choose "
                             f"from {','.join(CAM_METHODS)}")
    if s["contrastive"] == "barlow_twins" and s["similarity"] != "f":
        raise app.UsageError(f"--similarity={s['similarity']} has no effect with --contrastive=barlow_twins (it "
                             "compares embeddings, not similarities); leave --similarity at its default")
    if s["contrastive"] == "none" and s["contrastive_weight"] != 1.0:
        raise app.UsageError(f"--contrastive_weight={s['contrastive_weight']:g} has no effect with "
                             "--contrastive=none (L_AV alone); leave it at its default")
    if s["sparsemax"] == "ecos" and s["strategy"] == "multi_worker":
        raise app.UsageError("--sparsemax=ecos runs in tf.py_function on each host and is tested with "
                             "--strategy=default or mirrored only, not --strategy=multi_worker")


def run_name(s) -> str:
    """``avce-<backbone>-<dataset>-<contrastive>[-<similarity>][-w<weight>][-flatten][-mse][-nodis]``: the run
    directory's prefix (the settings that differ from the paper's are named)."""
    variant = s["contrastive"] + (f"-{s['similarity']}" if s["contrastive"] in ("avce", "infonce") else "")
    if s["contrastive"] != "none" and s["contrastive_weight"] != 1.0:
        variant += f"-w{s['contrastive_weight']:g}"
    variant += "-flatten" if s["compressor"] == "flatten" else ""
    variant += "-mse" if s["regression_loss"] == "mse" else ""
    variant += "" if s["use_dis"] else "-nodis"
    return f"avce-{s['backbone']}-{s['dataset']}-{variant}"


def _held_out_faces(dataset, n):
    """The first ``n`` images of an unshuffled pipeline, as a NumPy array (fewer if the set is smaller)."""
    import numpy as np

    out = []
    for images, _ in dataset:
        out.append(np.asarray(images))
        if sum(len(x) for x in out) >= n:
            break
    return np.concatenate(out)[:n]


def _eval_model(model):
    """A functional model ``images -> {"va": E -> C -> R}`` sharing ``model``'s weights, compiled with L_AV and
    the baseline's streaming metrics, so ferkeras.training.evaluate_and_report handles it like the baseline."""
    import keras

    from ferkeras.models.baseline import baseline_losses, baseline_metrics

    inputs = keras.Input(model.image_shape, name="image")
    wrapper = keras.Model(inputs, {"va": model(inputs, training=False)}, name="avce_inference")
    losses, _ = baseline_losses("va")
    wrapper.compile(loss=losses, metrics=baseline_metrics("va"), jit_compile=False)
    return wrapper


def run(s):
    """Trains and evaluates AVCE as the settings dict ``s`` (flag names -> values) says; returns ``(result dict, run
    directory path)``. Synthetic faces are drawn once per process (tools/compare_avce.py trains several models)."""
    import keras
    import numpy as np

    from ferkeras import metrics as fm
    from ferkeras import training

    strategy = common.make_strategy(s)  # first: a strategy must exist before any TensorFlow op (data, model)
    from ferkeras.callbacks import ActivationMapLogger
    from ferkeras.methods.avce import AVCEModel, AVCEStepSchedule, activation_grid

    t0 = time.perf_counter()
    keras.utils.set_random_seed(s["seed"])
    training.set_precision(s["mixed_precision"])  # before any layer is built
    run_dir = common.run_directory(s, run_name(s))
    run_dir.save_flags({holder.name: s[holder.name] for holder in _FLAGS})
    logging.info("run directory: %s", run_dir.path)

    data = common.load_data(s, common.augmentation(s), task="va")
    num_train = data.num_train

    def select(images, targets):
        return images, {"va": targets["va"]}

    val_ds, test_ds = (ds.map(select) for ds in (data.val, data.test))
    steps = common.steps_per_epoch(s, num_train)
    epochs = math.ceil(s["iterations"] / steps) if s["iterations"] else s["epochs"]
    train_stream = common.training_stream(s, select, task="va")
    data_seconds = time.perf_counter() - t0

    with strategy.scope():
        model = AVCEModel(
            s["backbone"], (s["image_size"], s["image_size"], 3), sparsemax_method=s["sparsemax"],
            contrastive=s["contrastive"], similarity=s["similarity"], use_dis=s["use_dis"],
            head_batch_norm=s["head_batch_norm"], width=s["width"] if s["backbone"] == "resnet18" else 64,
            compressor=s["compressor"], contrastive_weight=s["contrastive_weight"],
            regression_loss=s["regression_loss"])

        def schedule(lr):
            return AVCEStepSchedule(lr, first=s["lr_first"], every=s["lr_every"], factor=s["lr_factor"])

        model.compile(optimizer=keras.optimizers.Adam(schedule(s["lr"])),
                      head_optimizer=keras.optimizers.SGD(schedule(s["head_lr"])),
                      metrics=[fm.CCC(0), fm.CCC(1), fm.CCC(), fm.PCC(), fm.RMSE(), fm.SAGR()], jit_compile=False)
    logging.info("model: AVCE %s (%s x %g, %s%s, sparsemax %s, compressor %s, L_AV with %s), %s trainable "
                 "parameters", s["backbone"], s["contrastive"], s["contrastive_weight"], s["similarity"],
                 ", L_dis" if s["use_dis"] else "", s["sparsemax"], s["compressor"], s["regression_loss"],
                 f"{sum(int(np.prod(w.shape)) for w in model.trainable_weights):,}")

    cam_faces = _held_out_faces(data.test, s["cam_images"]) if s["cam_images"] else None
    callbacks = common.drop_callbacks(s)
    if cam_faces is not None and s["cam_every"]:
        callbacks.append(ActivationMapLogger(cam_faces, every_n_epochs=s["cam_every"],
                                             out_dir=run_dir.file("activation_maps"), method=s["cam_methods"],
                                             log_dir=run_dir.file("tensorboard")))
    monitor = common.checkpoint_monitor(s)
    _, train_seconds = training.fit(model, train_stream, run_dir, epochs=epochs, steps_per_epoch=steps,
                                    validation_data=val_ds, monitor=monitor, verbose=s["verbose"],
                                    extra_callbacks=callbacks, backup_freq=s["backup_every"] or "epoch")
    run_dir.restore_checkpoint(model)

    figures = {}
    if cam_faces is not None:
        activation_grid(model, cam_faces, CAM_METHODS, path=run_dir.file("activation_maps.png"))
        figures["final"] = "activation_maps.png"
        if os.path.isdir(run_dir.file("activation_maps")):
            figures["during_training"] = sorted(
                os.path.join("activation_maps", f) for f in os.listdir(run_dir.file("activation_maps")))
    held_out = "identities" if s["dataset"] == "synthetic" else "split"
    title = f"{run_name(s)} (held-out {held_out})"
    result = training.evaluate_and_report(
        _eval_model(model), test_ds, run_dir, title=title,
        extra={"flags": s, "data_seconds": data_seconds, "train_seconds": train_seconds,
               "total_seconds": time.perf_counter() - t0, "steps_per_epoch": steps, "epochs": epochs,
               "iterations": int(model.optimizer.iterations.numpy()), "activation_maps": figures,
               "evaluated_model": f"{run_dir.CHECKPOINT} (best {monitor})", "checkpoint": run_dir.checkpoint_record(),
               "distribution": training.strategy_info(strategy)})
    common.record_drops(s, result, run_dir)
    return result, run_dir.path


def summary_title(s) -> str:
    """The heading of the terminal summary (:func:`experiments.common.summary`)."""
    return f"AVCE result on the held-out set ({s['contrastive']}, similarity {s['similarity']})"


def main(argv):
    common.main(argv, settings, check, run, summary_title)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(main)
