r"""Supervised baseline: a backbone with a valence-arousal regressor and/or an expression classifier.

Quick start (no dataset needed; trains on the built-in synthetic faces, a few minutes on 2 CPU cores):

    python experiments/baseline.py

It trains a quarter-width ResNet-18 on 4000 64x64 synthetic faces of 100 identities for 8 epochs and evaluates
on 1000 faces of 25 *other* identities: it prints valence / arousal CCC, PCC, RMSE and SAGR (CCC about
0.82-0.85 / 0.87-0.89), the expression accuracy, average accuracy and macro-F1 (about 0.74), and the run
directory (runs/baseline-...) with result.json, va_scatter.png, training_curves.png, TensorBoard logs,
checkpoints and flags.cfg. Measured figures: experiments/README.md.

Other runs:

    python experiments/baseline.py --flagfile=experiments/configs/baseline_smoke.cfg      # seconds
    python experiments/baseline.py --dataset=affectnet --data_root=input/affectnet --backbone=resnet18 \
        --width=64 --image_size=224 --batch_size=128 --task=va --epochs=20 --lr=1e-4
    python experiments/baseline.py --flagfile=runs/<run>/flags.cfg --resume=runs/<run>     # continue a run

Losses: L_AV (AVCE, seed 000, Sec. 4.2) on valence-arousal, cross-entropy on expressions; labels a dataset
lacks (NaN valence-arousal, expression -1) are masked, so --task=both works on VA-only and class-only datasets.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

from absl import app, flags, logging

DATASETS = ("synthetic", "affectnet", "afew_va", "affwild2", "rafdb", "fer2013", "ferplus")
# Flag value -> ferkeras.data.readers name, and the split used as held-out evaluation set.
READER_NAMES = {"affectnet": "affectnet", "afew_va": "afew_va", "affwild2": "aff_wild2", "rafdb": "raf_db",
                "fer2013": "fer2013", "ferplus": "ferplus"}
EVAL_SPLITS = {"affectnet": "val", "afew_va": "test", "affwild2": "val", "rafdb": "test", "fer2013": "test",
               "ferplus": "test"}
AUGMENTATIONS = ("none", "flip", "avce", "sslfer", "srp", "rmfer")

_FLAGS = [
    flags.DEFINE_enum("backbone", "resnet18", ("resnet18", "alexnet", "resnet50", "efficientnetb2"), "Encoder."),
    flags.DEFINE_integer("width", 16, "ResNet-18 stem width (64 = the standard ResNet-18); other backbones "
                         "ignore it."),
    flags.DEFINE_string("weights", None, "keras.applications weights for resnet50 / efficientnetb2: 'imagenet' "
                        "or a weights file; default random initialisation."),
    flags.DEFINE_enum("dataset", "synthetic", DATASETS, "Training / evaluation data."),
    flags.DEFINE_string("data_root", None, "Dataset folder (input/<dataset>; see input/README.md). Required for "
                        "every dataset but synthetic."),
    flags.DEFINE_integer("fold", 0, "afew_va only: the cross-validation fold held out for evaluation."),
    flags.DEFINE_integer("image_size", 64, "Square input side in pixels."),
    flags.DEFINE_integer("batch_size", 64, "Mini-batch size."),
    flags.DEFINE_integer("epochs", 8, "Training epochs."),
    flags.DEFINE_integer("steps", None, "Steps per epoch (default: one pass over the training set)."),
    flags.DEFINE_float("lr", 2e-3, "Adam learning rate (cosine-decayed to 0 over the run)."),
    flags.DEFINE_enum("task", "both", ("va", "expression", "both"), "Outputs to train."),
    flags.DEFINE_enum("va_activation", "tanh", ("tanh", "linear"), "Valence-arousal output activation."),
    flags.DEFINE_enum("augment", "flip", AUGMENTATIONS, "Training augmentation: none, horizontal flip, or a "
                      "paper preset of ferkeras.augment.spatial.FaceAugment."),
    flags.DEFINE_integer("num_train", 4000, "synthetic only: training faces."),
    flags.DEFINE_integer("num_val", 500, "synthetic only: validation faces (own identities)."),
    flags.DEFINE_integer("num_test", 1000, "synthetic only: held-out test faces (own identities)."),
    flags.DEFINE_integer("train_identities", 100, "synthetic only: identities in the training set; validation "
                         "and test use 15 and 25 further identities."),
    flags.DEFINE_string("out_dir", "runs", "Parent folder of the run directory."),
    flags.DEFINE_string("resume", None, "An existing run directory to continue (BackupAndRestore)."),
    flags.DEFINE_integer("seed", 0, "Random seed (data order, initialisation, augmentation)."),
    flags.DEFINE_enum("strategy", "default", ("default", "mirrored", "multi_worker"), "tf.distribute strategy."),
    flags.DEFINE_bool("mixed_precision", False, "Train with the mixed_float16 policy."),
    flags.DEFINE_bool("smoke", False, "Shrink the run to seconds (tiny data, image 32 (alexnet: 64), width 8, "
                      "1 epoch of 2 steps) to check that everything runs."),
    flags.DEFINE_integer("verbose", 1, "Keras progress: 1 = progress bar, 2 = one line per epoch, 0 = silent."),
]
SYNTHETIC_VAL_IDENTITIES = 15
SYNTHETIC_TEST_IDENTITIES = 25


def _settings():
    """Flag values as a dict, with the --smoke overrides applied."""
    s = {holder.name: holder.value for holder in _FLAGS}
    if s["smoke"]:
        s.update(image_size=64 if s["backbone"] == "alexnet" else 32, width=min(s["width"], 8), epochs=1, steps=2,
                 batch_size=16, num_train=64, num_val=32, num_test=48, train_identities=10)
    return s


def _check(s):
    """Errors a user can make with flag combinations, reported before anything heavy is imported."""
    if s["dataset"] != "synthetic" and not s["data_root"]:
        raise app.UsageError(f"--data_root is required for --dataset={s['dataset']} (the folder holding the "
                             f"dataset, e.g. input/{s['dataset']}; see input/README.md)")
    if s["data_root"] and not os.path.isdir(s["data_root"]):
        raise app.UsageError(f"--data_root={s['data_root']} is not a folder")
    if s["weights"] and s["backbone"] in ("resnet18", "alexnet"):
        raise app.UsageError(f"--weights={s['weights']} is not available for --backbone={s['backbone']} "
                             "(trained from scratch)")
    for name in ("image_size", "batch_size", "epochs", "num_train", "num_val", "num_test", "train_identities"):
        if s[name] < 1:
            raise app.UsageError(f"--{name} must be >= 1, got {s[name]}")
    if s["steps"] is not None and s["steps"] < 1:
        raise app.UsageError(f"--steps must be >= 1, got {s['steps']}")
    if s["resume"] and not os.path.isdir(s["resume"]):
        raise app.UsageError(f"--resume={s['resume']} is not an existing run directory")


def _synthetic_data(s, pipeline, augment):
    """Train / validation / test pipelines of synthetic faces with disjoint identities."""
    from ferkeras.data.synthetic import EXPRESSIONS, synthetic_arrays

    first_val = s["train_identities"]
    first_test = first_val + SYNTHETIC_VAL_IDENTITIES
    parts = {"train": (s["num_train"], s["train_identities"], 0, s["seed"]),
             "val": (s["num_val"], SYNTHETIC_VAL_IDENTITIES, first_val, s["seed"] + 1),
             "test": (s["num_test"], SYNTHETIC_TEST_IDENTITIES, first_test, s["seed"] + 2)}
    out = {}
    for split, (n, ids, first, seed) in parts.items():
        start = time.perf_counter()
        a = synthetic_arrays(n, size=s["image_size"], seed=seed, num_identities=ids, first_identity=first)
        logging.info("synthetic %s: %d faces of identities %d..%d in %.1f s", split, n, first, first + ids - 1,
                     time.perf_counter() - start)
        training = split == "train"
        out[split] = pipeline.from_arrays(
            a["images"], a["valence"], a["arousal"], a["expression"], dataset="synthetic",
            batch_size=s["batch_size"], shuffle=training, seed=s["seed"], drop_remainder=training,
            augment=augment if training else None)
    return out["train"], out["val"], out["test"], EXPRESSIONS, s["num_train"]


def _real_data(s, pipeline, augment):
    """Train and held-out pipelines of a dataset read by ferkeras.data.readers (held-out = validation)."""
    from ferkeras.data.readers import make_reader

    name = READER_NAMES[s["dataset"]]
    options = {}
    if s["dataset"] == "afew_va":
        options["fold"] = s["fold"]
    elif s["dataset"] == "affwild2":
        options["task"] = {"va": "va", "expression": "expr", "both": "both"}[s["task"]]
    train_reader = make_reader(name, s["data_root"], split="train", **options)
    test_reader = make_reader(name, s["data_root"], split=EVAL_SPLITS[s["dataset"]], **options)
    train_records = train_reader.records()  # logs the reader's skip summary
    test_records = test_reader.records()
    common = dict(image_size=s["image_size"], batch_size=s["batch_size"], seed=s["seed"])
    train = pipeline.build_dataset(train_records, training=True, augment=augment, **common)
    test = pipeline.build_dataset(test_records, training=False, **common)
    classes = tuple(train_reader.classes) or None
    return train, test, test, classes, len(train_records)


def _augmentation(s):
    from ferkeras.augment.spatial import FaceAugment

    if s["augment"] == "none":
        return None
    if s["augment"] == "flip":
        return FaceAugment(flip=True, seed=s["seed"])
    return FaceAugment.preset(s["augment"], seed=s["seed"])


def run(s):
    """Trains and evaluates one baseline; returns ``(result dict, run directory path)``."""
    import keras
    import numpy as np

    from ferkeras import training
    from ferkeras.data import pipeline
    from ferkeras.models.baseline import build_baseline_model, check_task, compile_baseline

    t0 = time.perf_counter()
    keras.utils.set_random_seed(s["seed"])
    if s["mixed_precision"]:
        keras.mixed_precision.set_global_policy("mixed_float16")
    outputs = check_task(s["task"])
    run_dir = (training.RunDir.open(s["resume"]) if s["resume"] else
               training.RunDir.create(s["out_dir"], f"baseline-{s['backbone']}-{s['dataset']}-{s['task']}"))
    run_dir.save_flags({holder.name: holder.value for holder in _FLAGS})
    logging.info("run directory: %s", run_dir.path)

    augment = _augmentation(s)
    if s["dataset"] == "synthetic":
        train_ds, val_ds, test_ds, classes, num_train = _synthetic_data(s, pipeline, augment)
    else:
        train_ds, val_ds, test_ds, classes, num_train = _real_data(s, pipeline, augment)
    num_classes = len(classes) if classes else 8

    def select(images, targets):
        return images, {key: targets[key] for key in outputs}

    train_ds, val_ds, test_ds = (ds.map(select) for ds in (train_ds, val_ds, test_ds))
    steps = s["steps"] or num_train // s["batch_size"]
    if steps < 1:
        raise ValueError(f"the training set of --dataset={s['dataset']} ({num_train} faces) gives no full batch "
                         f"of --batch_size={s['batch_size']}")
    train_ds = train_ds.repeat()
    data_seconds = time.perf_counter() - t0

    strategy = training.get_strategy(s["strategy"])
    with strategy.scope():
        model = build_baseline_model(
            s["backbone"], (s["image_size"], s["image_size"], 3), task=s["task"], num_classes=num_classes,
            width=s["width"] if s["backbone"] == "resnet18" else 64, weights=s["weights"],
            va_activation=s["va_activation"])
        schedule = keras.optimizers.schedules.CosineDecay(s["lr"], decay_steps=steps * s["epochs"])
        compile_baseline(model, s["task"], optimizer=keras.optimizers.Adam(schedule), num_classes=num_classes)
    logging.info("model: %s, %s trainable parameters", s["backbone"],
                 f"{sum(int(np.prod(w.shape)) for w in model.trainable_weights):,}")

    # The checkpoint (what result.json describes and ferkeras.export ships) is the epoch with the best validation
    # loss when the validation set is its own (synthetic: separate identities); on real datasets the validation
    # set is the test split, so the choice goes by the training loss instead (no model selection on test data).
    monitor = "val_loss" if s["dataset"] == "synthetic" else "loss"
    _, train_seconds = training.fit(model, train_ds, run_dir, epochs=s["epochs"], steps_per_epoch=steps,
                                    validation_data=val_ds, monitor=monitor, verbose=s["verbose"])
    run_dir.restore_checkpoint(model)
    held_out = "identities" if s["dataset"] == "synthetic" else "split"
    title = f"baseline {s['backbone']} on {s['dataset']} (held-out {held_out})"
    result = training.evaluate_and_report(
        model, test_ds, run_dir, title=title, class_names=classes,
        extra={"flags": s, "data_seconds": data_seconds, "train_seconds": train_seconds,
               "total_seconds": time.perf_counter() - t0, "steps_per_epoch": steps,
               "evaluated_model": f"{os.path.relpath(run_dir.checkpoint_path, run_dir.path)} (best {monitor})"})
    return result, run_dir.path


def summary(result, path) -> str:
    """A few lines for the terminal."""
    m = result["metrics"]
    lines = ["", "=" * 72, "baseline result on the held-out set"]
    if "valence_ccc" in m:
        for axis in ("valence", "arousal"):
            lines.append(f"  {axis:8s} CCC {m[f'{axis}_ccc']:.3f}  PCC {m[f'{axis}_pcc']:.3f}  "
                         f"RMSE {m[f'{axis}_rmse']:.3f}  SAGR {m[f'{axis}_sagr']:.3f}   (N={m['va_count']})")
    if "expression_accuracy" in m:
        lines.append(f"  expression accuracy {m['expression_accuracy']:.3f}  average accuracy "
                     f"{m['expression_average_accuracy']:.3f}  macro-F1 {m['expression_macro_f1']:.3f}   "
                     f"(N={m['expression_count']})")
    lines.append(f"  time: {result['total_seconds']:.0f} s total, {result['train_seconds']:.0f} s training")
    lines.append(f"  run directory: {path}")
    lines.append("=" * 72)
    return "\n".join(lines)


def main(argv):
    # Keras warns at the end of every pass over a dataset of unknown length (the pipelines drop undecodable
    # images, so their length is unknown); the training set is repeated, so the warning carries no information.
    warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    s = _settings()
    _check(s)
    result, path = run(s)
    print(summary(result, path), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    app.run(main)
