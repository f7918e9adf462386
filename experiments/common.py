"""What the ferkeras experiment binaries share: the data / run flags, their checks, the train / validation / test
pipelines (built-in synthetic faces with held-out identities, or a dataset read by :mod:`ferkeras.data.readers`), the
run directory and the terminal summary.

A binary calls :func:`define_shared_flags` once at import time (absl flags are process-global, so two binaries cannot
be imported into one process), adds its own flags, and defines public ``settings()``, ``check(s)``, ``run(s)`` and
``summary_title(s)``, which tests and tools call too; its ``main`` is :func:`main`. Inside them::

    s = common.settings(shared_holders + own_holders, smoke_overrides)   # flag values, --smoke applied
    common.check(s)                                                      # user errors, before heavy imports
    data = common.load_data(s, augment, task="va")                        # train / val / test pipelines

Nothing heavy (TensorFlow, Keras) is imported at module level, so flag errors are reported in a fraction of a second.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings

from absl import app, flags

from ferkeras.data import splits

# The dataset split policy (``--dataset`` -> reader, evaluation split, synthetic held-out identities) is the
# library's (ferkeras.data.splits); these names stay here for the binaries and tools that use them.
READER_NAMES = splits.READER_NAMES
EVAL_SPLITS = splits.EVAL_SPLITS
SYNTHETIC_VAL_IDENTITIES = splits.SYNTHETIC_VAL_IDENTITIES
SYNTHETIC_TEST_IDENTITIES = splits.SYNTHETIC_TEST_IDENTITIES
AUGMENTATIONS = ("none", "flip", "avce", "sslfer", "srp", "rmfer")

Data = splits.DataSplits
"""Pipelines of ``(images, {"va", "expression"})`` batches; ``val`` is ``test`` on real datasets (see
:func:`load_data`); ``classes`` the expression names (or None) and ``num_train`` the training faces."""

SMOKE_DATA = dict(epochs=1, steps=2, batch_size=16, num_train=64, num_val=32, num_test=48, train_identities=10)
"""What ``--smoke`` sets in every binary (binaries add their own overrides, e.g. image size)."""


def define_shared_flags(datasets, image_size=64, batch_size=64, epochs=8, augment="flip"):
    """Defines the data / run flags every binary has; returns their flag holders. ``datasets``: the ``--dataset``
    choices ("synthetic" first, the default; the rest keys of :data:`READER_NAMES`)."""
    unknown = [d for d in datasets[1:] if d not in READER_NAMES]
    if datasets[0] != "synthetic" or unknown:
        raise ValueError(f"define_shared_flags: datasets must start with 'synthetic' and name readers of "
                         f"{sorted(READER_NAMES)}; got {datasets}")
    return [
        flags.DEFINE_enum("dataset", "synthetic", datasets, "Training / evaluation data."),
        flags.DEFINE_string("data_root", None, "Dataset folder (input/<dataset>; see input/README.md). Required for "
                            "every dataset but synthetic."),
        flags.DEFINE_integer("fold", 0, "afew_va only: the cross-validation fold held out for evaluation."),
        flags.DEFINE_integer("image_size", image_size, "Square input side in pixels."),
        flags.DEFINE_integer("batch_size", batch_size, "Mini-batch size."),
        flags.DEFINE_integer("epochs", epochs, "Training epochs."),
        flags.DEFINE_integer("steps", None, "Steps per epoch (default: one pass over the training set)."),
        flags.DEFINE_enum("augment", augment, AUGMENTATIONS, "Training augmentation: none, horizontal flip, or a "
                          "paper preset of ferkeras.augment.spatial.FaceAugment."),
        flags.DEFINE_integer("num_train", 4000, "synthetic only: training faces."),
        flags.DEFINE_integer("num_val", 500, "synthetic only: validation faces (own identities)."),
        flags.DEFINE_integer("num_test", 1000, "synthetic only: held-out test faces (own identities)."),
        flags.DEFINE_integer("train_identities", 100, "synthetic only: identities in the training set; validation "
                             f"and test use {SYNTHETIC_VAL_IDENTITIES} and {SYNTHETIC_TEST_IDENTITIES} further "
                             "identities."),
        flags.DEFINE_string("out_dir", "runs", "Parent folder of the run directory."),
        flags.DEFINE_string("resume", None, "An existing run directory to continue: training restarts at the step "
                            "after the last backup, with the same optimiser state and data order."),
        flags.DEFINE_integer("backup_every", None, "Back up the training state every this many steps (default: at "
                             "every epoch end only), so a killed run loses at most these steps."),
        flags.DEFINE_integer("seed", 0, "Random seed (data order, initialisation, augmentation)."),
        flags.DEFINE_enum("strategy", "default", ("default", "mirrored", "multi_worker"), "tf.distribute strategy."),
        flags.DEFINE_bool("mixed_precision", False, "Train with the mixed_float16 policy."),
        flags.DEFINE_bool("smoke", False, "Shrink the run to seconds (tiny data and model, 1 epoch of 2 steps) to "
                          "check that everything runs."),
        flags.DEFINE_integer("verbose", 1, "Keras progress: 1 = progress bar, 2 = one line per epoch, 0 = silent."),
    ]


def settings(holders, smoke_overrides=None):
    """Flag values of ``holders`` as a dict, with :data:`SMOKE_DATA` and ``smoke_overrides`` applied under --smoke."""
    s = {holder.name: holder.value for holder in holders}
    if s.get("smoke"):
        s.update(SMOKE_DATA)
        s.update(smoke_overrides or {})
    return s


def check(s):
    """Errors a user can make with the shared flags, as ``app.UsageError`` naming the flag and value."""
    if s["dataset"] != "synthetic" and not s["data_root"]:
        raise app.UsageError(f"--data_root is required for --dataset={s['dataset']} (the folder holding the "
                             f"dataset, e.g. input/{s['dataset']}; see input/README.md)")
    if s["data_root"] and not os.path.isdir(s["data_root"]):
        raise app.UsageError(f"--data_root={s['data_root']} is not a folder")
    for name in ("image_size", "batch_size", "epochs", "num_train", "num_val", "num_test", "train_identities"):
        if s[name] < 1:
            raise app.UsageError(f"--{name} must be >= 1, got {s[name]}")
    if s["steps"] is not None and s["steps"] < 1:
        raise app.UsageError(f"--steps must be >= 1, got {s['steps']}")
    if s["fold"] < 0:
        raise app.UsageError(f"--fold must be >= 0, got {s['fold']}")
    if s["resume"] and not os.path.isdir(s["resume"]):
        raise app.UsageError(f"--resume={s['resume']} is not an existing run directory")
    if s["backup_every"] is not None and s["backup_every"] < 1:
        raise app.UsageError(f"--backup_every must be a positive number of steps, got {s['backup_every']}")
    if s["resume"] and s["strategy"] == "multi_worker":
        raise app.UsageError("--resume is not supported with --strategy=multi_worker yet: only the chief writes "
                             "backups, the other workers could not restore them")


def is_chief() -> bool:
    """Whether this process writes the run directory: always, except the non-chief workers of a multi-worker run
    (TF_CONFIG's task is not the chief, nor worker 0 of a cluster without a chief)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task") or {}
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and "chief" not in config.get("cluster", {})


def run_directory(s, name):
    """The run directory: ``--resume``'s, a new one under ``--out_dir``, or - on a non-chief worker of a
    multi-worker run, whose checkpoints, logs and backups must not collide with the chief's - a temporary one."""
    from ferkeras import training

    if not is_chief():
        return training.RunDir.create(tempfile.mkdtemp(prefix="ferkeras-worker-"), name)
    if s["resume"]:
        return training.RunDir.open(s["resume"])
    return training.RunDir.create(s["out_dir"], name)


def training_stream(s, select, task="both"):
    """The training stream as ``ferkeras.training.fit`` wants it for exact resumes: a callable ``start_step ->``
    the repeated training pipeline from batch ``start_step`` on, rebuilt with a fresh augmentation each call (a
    reused augmentation's random state would have moved on). ``select`` maps ``(images, targets)`` batches."""

    def stream(start_step):
        return load_data(s, augmentation(s), task=task).train.map(select).repeat().skip(start_step)

    return stream


def main(argv, settings, check, run, title):
    """Every binary's ``main``: read and check the flags (user errors before any heavy import), train and evaluate
    with ``run(s) -> (result, run directory)``, print :func:`summary` headed ``title(s)``."""
    quiet_keras_warnings()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    s = settings()
    check(s)
    result, path = run(s)
    print(summary(result, path, title(s)), flush=True)


def summary(result, path, title) -> str:
    """A few lines for the terminal from a binary's result.json dict: ``title``, the held-out valence-arousal metrics
    per axis and their mean, the expression metrics (each when evaluated), the iterations (if the result has them),
    the timings and the run directory ``path``."""
    m = result["metrics"]
    lines = ["", "=" * 72, title]
    tail = []
    if "valence_ccc" in m:
        for axis in ("valence", "arousal", "mean"):
            lines.append(f"  {axis:8s} CCC {m[f'{axis}_ccc']:.3f}  PCC {m[f'{axis}_pcc']:.3f}  "
                         f"RMSE {m[f'{axis}_rmse']:.3f}  SAGR {m[f'{axis}_sagr']:.3f}")
        tail.append(f"N={m['va_count']}")
    if "expression_accuracy" in m:
        lines.append(f"  expression accuracy {m['expression_accuracy']:.3f}  average accuracy "
                     f"{m['expression_average_accuracy']:.3f}  macro-F1 {m['expression_macro_f1']:.3f}   "
                     f"(N={m['expression_count']})")
    if "iterations" in result:
        tail.append(f"{result['iterations']} iterations")
    tail.append(f"time: {result['total_seconds']:.0f} s total, {result['train_seconds']:.0f} s training")
    lines.append("  " + "; ".join(tail))
    lines.append(f"  run directory: {path}")
    lines.append("=" * 72)
    return "\n".join(lines)


def quiet_keras_warnings():
    """Keras warns at the end of every pass over a dataset of unknown length (the pipelines drop undecodable images,
    so their length is unknown); the binaries repeat the training set, so the warning carries no information."""
    warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)


def augmentation(s):
    """The ``--augment`` :class:`~ferkeras.augment.spatial.FaceAugment` (None for "none")."""
    from ferkeras.augment.spatial import FaceAugment

    if s["augment"] == "none":
        return None
    if s["augment"] == "flip":
        return FaceAugment(flip=True, seed=s["seed"])
    return FaceAugment.preset(s["augment"], seed=s["seed"])


def synthetic_data(s, augment=None) -> Data:
    """Train / validation / test pipelines of synthetic faces with disjoint identities (test: never seen): the
    flags' :func:`ferkeras.data.splits.synthetic_data`."""
    return splits.synthetic_data(num_train=s["num_train"], num_val=s["num_val"], num_test=s["num_test"],
                                 train_identities=s["train_identities"], image_size=s["image_size"],
                                 batch_size=s["batch_size"], seed=s["seed"], augment=augment)


def real_data(s, augment=None, task="both") -> Data:
    """Train and held-out pipelines of ``--dataset`` read from ``--data_root``: the flags'
    :func:`ferkeras.data.splits.real_data` (the held-out split, :data:`EVAL_SPLITS`, is both ``val`` and ``test``;
    ``task`` selects Aff-Wild2's annotation set)."""
    return splits.real_data(s["dataset"], s["data_root"], image_size=s["image_size"], batch_size=s["batch_size"],
                            seed=s["seed"], fold=s["fold"], task=task, augment=augment)


def load_data(s, augment=None, task="both") -> Data:
    """:func:`synthetic_data` or :func:`real_data` as ``--dataset`` says."""
    if s["dataset"] == "synthetic":
        return synthetic_data(s, augment)
    return real_data(s, augment, task)


def steps_per_epoch(s, num_train):
    """``--steps``, or one pass over the training set; a clear error when the set gives no full batch."""
    steps = s["steps"] or num_train // s["batch_size"]
    if steps < 1:
        raise ValueError(f"the training set of --dataset={s['dataset']} ({num_train} faces) gives no full batch "
                         f"of --batch_size={s['batch_size']}")
    return steps


def checkpoint_monitor(s):
    """The checkpoint (what result.json describes and ferkeras.export ships) is the epoch with the best validation
    loss when the validation set is its own (synthetic: separate identities); on real datasets the validation set is
    the test split, so the choice goes by the training loss instead (no model selection on test data)."""
    return "val_loss" if s["dataset"] == "synthetic" else "loss"
