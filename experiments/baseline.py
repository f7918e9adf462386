r"""Supervised baseline: a backbone with a valence-arousal regressor and/or an expression classifier.

Quick start (no dataset needed; trains on the built-in synthetic faces, a few minutes on 2 CPU cores):

    python experiments/baseline.py

It trains a quarter-width ResNet-18 on 4000 64x64 synthetic faces of 100 identities for 8 epochs and evaluates
on 1000 faces of 25 *other* identities: it prints valence / arousal CCC, PCC, RMSE and SAGR, the expression
accuracy, average accuracy and macro-F1, and the run directory (runs/baseline-...) with result.json,
va_scatter.png, training_curves.png, TensorBoard logs, checkpoints and flags.cfg. Measured figures:
experiments/README.md.

Other runs:

    python experiments/baseline.py --flagfile=experiments/configs/baseline_smoke.cfg      # seconds
    python experiments/baseline.py --dataset=affectnet --data_root=input/affectnet --backbone=resnet18 \
        --width=64 --image_size=224 --batch_size=128 --task=va --epochs=20 --lr=1e-4
    python experiments/baseline.py --flagfile=runs/<run>/flags.cfg --resume=runs/<run>     # continue a run

Losses: L_AV (Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV
2022, Sec. 4.2) on valence-arousal, cross-entropy on expressions; labels a dataset lacks (NaN valence-arousal,
expression -1) are masked, so --task=both works on VA-only and class-only datasets.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root: experiments.common
from experiments import common  # noqa: E402

DATASETS = ("synthetic", "affectnet", "afew_va", "aff_wild2", "raf_db", "fer2013", "ferplus")

_OWN_FLAGS = [
    flags.DEFINE_enum("backbone", "resnet18", ("resnet18", "alexnet", "resnet50", "efficientnetb2"), "Encoder."),
    flags.DEFINE_integer("width", 16, "ResNet-18 stem width (64 = the standard ResNet-18); other backbones "
                         "ignore it."),
    flags.DEFINE_string("weights", None, "keras.applications weights for resnet50 / efficientnetb2: 'imagenet' "
                        "or a weights file; default random initialisation."),
    flags.DEFINE_float("lr", 2e-3, "Adam learning rate (cosine-decayed to 0 over the run)."),
    flags.DEFINE_enum("task", "both", ("va", "expression", "both"), "Outputs to train."),
    flags.DEFINE_enum("va_activation", "tanh", ("tanh", "linear"), "Valence-arousal output activation."),
]
_FLAGS = _OWN_FLAGS + common.define_shared_flags(DATASETS)
BOUNDS = dict(width=common.AT_LEAST_1, lr=common.POSITIVE)
"""The ranges of this binary's own numeric flags (the shared ones: :data:`experiments.common.SHARED_BOUNDS`)."""


def settings():
    """Flag values as a dict, with the --smoke overrides applied (tiny data, image 32 (alexnet: 64), width 16:
    the thinnest ResNet-18 whose 1x1 stride-2 shortcuts avoid TF's oneDNN fault on AVX-512 CPUs, see README)."""
    backbone, width = flags.FLAGS.backbone, flags.FLAGS.width
    return common.settings(_FLAGS, dict(image_size=64 if backbone == "alexnet" else 32, width=min(width, 16)))


def check(s):
    """Errors a user can make with flag combinations, reported before anything heavy is imported."""
    common.check(s, BOUNDS)
    common.check_image_size(s, s["backbone"])
    if s["weights"] and s["backbone"] in ("resnet18", "alexnet"):
        raise app.UsageError(f"--weights={s['weights']} is not available for --backbone={s['backbone']} "
                             "(trained from scratch)")


def run(s):
    """Trains and evaluates one baseline; returns ``(result dict, run directory path)``."""
    import keras
    import numpy as np

    from ferkeras import training

    strategy = common.make_strategy(s)  # first: a strategy must exist before any TensorFlow op (data, model)
    from ferkeras.models.baseline import build_baseline_model, check_task, compile_baseline

    t0 = time.perf_counter()
    keras.utils.set_random_seed(s["seed"])
    training.set_precision(s["mixed_precision"])  # before any layer is built
    outputs = check_task(s["task"])
    run_dir = common.run_directory(s, f"baseline-{s['backbone']}-{s['dataset']}-{s['task']}")
    run_dir.save_flags({holder.name: s[holder.name] for holder in _FLAGS})  # the settings that ran
    logging.info("run directory: %s", run_dir.path)

    _, val_ds, test_ds, classes, num_train = common.load_data(s, common.augmentation(s), task=s["task"])
    num_classes = len(classes) if classes else 8

    def select(images, targets):
        return images, {key: targets[key] for key in outputs}

    val_ds, test_ds = (ds.map(select) for ds in (val_ds, test_ds))
    steps = common.steps_per_epoch(s, num_train)
    train_stream = common.training_stream(s, select, task=s["task"])
    data_seconds = time.perf_counter() - t0

    with strategy.scope():
        model = build_baseline_model(
            s["backbone"], (s["image_size"], s["image_size"], 3), task=s["task"], num_classes=num_classes,
            width=s["width"] if s["backbone"] == "resnet18" else 64, weights=s["weights"],
            va_activation=s["va_activation"])
        schedule = keras.optimizers.schedules.CosineDecay(s["lr"], decay_steps=steps * s["epochs"])
        compile_baseline(model, s["task"], optimizer=keras.optimizers.Adam(schedule), num_classes=num_classes)
    logging.info("model: %s, %s trainable parameters", s["backbone"],
                 f"{sum(int(np.prod(w.shape)) for w in model.trainable_weights):,}")

    monitor = common.checkpoint_monitor(s)
    _, train_seconds = training.fit(model, train_stream, run_dir, epochs=s["epochs"], steps_per_epoch=steps,
                                    validation_data=val_ds, monitor=monitor, verbose=s["verbose"],
                                    extra_callbacks=common.drop_callbacks(s), backup_freq=s["backup_every"] or "epoch")
    run_dir.restore_checkpoint(model)
    held_out = "identities" if s["dataset"] == "synthetic" else "split"
    title = f"baseline {s['backbone']} on {s['dataset']} (held-out {held_out})"
    result = training.evaluate_and_report(
        model, test_ds, run_dir, title=title, class_names=classes,
        extra={"flags": s, "data_seconds": data_seconds, "train_seconds": train_seconds,
               "total_seconds": time.perf_counter() - t0, "steps_per_epoch": steps,
               "evaluated_model": f"{run_dir.CHECKPOINT} (best {monitor})", "checkpoint": run_dir.checkpoint_record(),
               "distribution": training.strategy_info(strategy)})
    common.record_drops(s, result, run_dir)
    return result, run_dir.path


def summary_title(s) -> str:
    """The heading of the terminal summary (:func:`experiments.common.summary`)."""
    return "baseline result on the held-out set"


def main(argv):
    common.main(argv, settings, check, run, summary_title)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(main)
