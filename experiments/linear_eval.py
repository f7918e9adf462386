r"""Downstream evaluation of any pre-trained encoder: linear evaluation (frozen) or fine-tuning with SSL-FER's MLP head,
on expressions (macro-F1, accuracy) and / or valence-arousal (CCC, RMSE), plus the encoder's identity leakage.

Shu, Gu, Yang, Lo, "Revisiting Self-Supervised Contrastive Learning for Facial Expression Recognition", BMVC 2022,
Sec. 4.1 / 4.3: the encoder, frozen ("Freeze") or trained ("FineTune"), with three MLP layers on top (-> 1024 -> 512
-> C, dropout 0.5); Adam 1e-4 with cosine annealing, weight decay 5e-4, batch 64; balanced softmax cross-entropy
for expressions, CCC loss for valence-arousal; and k-NN face recognition on held-out identities (Table 2's FR-KNN;
lower = less identity in the expression features).  The library code is :mod:`ferkeras.downstream`.

    python experiments/linear_eval.py --encoder=runs/sslfer-.../                 # a pre-training run directory
    python experiments/linear_eval.py --encoder=encoder.keras --mode=finetune --task=expression
    python experiments/linear_eval.py --flagfile=experiments/configs/linear_eval_smoke.cfg --encoder=PATH
    python experiments/linear_eval.py --flagfile=experiments/configs/linear_eval_affectnet.cfg --encoder=PATH

``--encoder`` is a ``.keras`` file (a ContrastivePretrainer, a bare encoder, a supervised baseline, ...) or a run
directory (its ``checkpoints/best.keras``); see :func:`ferkeras.downstream.load_encoder`.  The images are fed at the
encoder's input size (``--image_size`` may only repeat it).  Synthetic faces by default (train / validation / test
of disjoint identities; the epoch is selected on validation); on a real dataset the held-out split is the test set
and the last epoch is evaluated.  The run directory holds flags.cfg, result.json (``metrics``: macro-F1, accuracy,
CCC, RMSE, identity leakage) and the trained downstream model of each task (``<task>_<mode>.keras``).
"""

from __future__ import annotations

import importlib
import os
import sys
import time

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root: experiments.common
from experiments import common  # noqa: E402

DATASETS = ("synthetic", "affectnet", "fer2013", "ferplus")
DATASET_TASKS = {"synthetic": ("expression", "va"), "affectnet": ("expression", "va"), "fer2013": ("expression",),
                 "ferplus": ("expression",)}
"""The labels each dataset has."""

_OWN_FLAGS = [
    flags.DEFINE_string("encoder", None, "The pre-trained encoder: a .keras file or a run directory (required)."),
    flags.DEFINE_list("import_modules", [], "Python modules to import before loading the encoder: the modules that "
                      "register custom Keras classes the .keras file holds (e.g. your own objective); ferkeras' "
                      "methods are imported anyway."),
    flags.DEFINE_enum("mode", "linear", ("linear", "finetune"), "linear: frozen encoder (SSL-FER's Freeze); "
                      "finetune: the encoder trains with the head (FineTune)."),
    flags.DEFINE_enum("task", "both", ("expression", "va", "both"), "Downstream task(s); each trains its own head "
                      "(and, fine-tuning, its own copy of the encoder)."),
    flags.DEFINE_float("lr", 1e-4, "Adam learning rate, cosine-annealed to 0 over the run."),
    flags.DEFINE_float("weight_decay", 5e-4, "Adam weight decay (decoupled, as Keras applies it)."),
    flags.DEFINE_list("head_hidden", ["1024", "512"], "Hidden widths of the MLP head (empty: a linear head)."),
    flags.DEFINE_float("dropout", 0.5, "Dropout after each hidden layer of the head."),
    flags.DEFINE_bool("cache_features", True, "linear mode without augmentation: run the frozen encoder once over "
                      "each set and train the head on the stored features (the same model, much faster)."),
    flags.DEFINE_bool("identity_leakage", True, "Also measure identity leakage (k-NN identification and "
                      "verification) on synthetic faces of held-out identities."),
    flags.DEFINE_integer("identity_identities", 20, "Identities of the identity-leakage set."),
    flags.DEFINE_integer("identity_faces", 400, "Faces of the identity-leakage set."),
    flags.DEFINE_integer("identity_pairs", 3000, "Verification pairs (half same, half different identity)."),
]
_FLAGS = _OWN_FLAGS + common.define_shared_flags(DATASETS, batch_size=64, epochs=20, augment="none")
BOUNDS = dict(lr=common.POSITIVE, weight_decay=common.AT_LEAST_0, dropout=common.Bound(0, 1, high_open=True),
              identity_identities=common.Bound(2), identity_faces=common.Bound(2), identity_pairs=common.Bound(2))
"""The ranges of this binary's own numeric flags (the shared ones: :data:`experiments.common.SHARED_BOUNDS`)."""


def settings():
    """Flag values as a dict, with the --smoke overrides applied (tiny data, a small identity set and head)."""
    s = common.settings(_FLAGS, dict(identity_identities=6, identity_faces=60, identity_pairs=200,
                                     head_hidden=["32"]))
    s["image_size_given"] = flags.FLAGS["image_size"].present > 0
    return s


def check(s):
    """Errors a user can make with the flags, reported before the encoder or any data is loaded."""
    common.check(s, BOUNDS)
    if not s["encoder"]:
        raise app.UsageError("--encoder is required: a .keras file or a run directory holding checkpoints/best.keras")
    if not os.path.exists(s["encoder"]):
        raise app.UsageError(f"--encoder={s['encoder']} does not exist (expected a .keras file or a run directory)")
    if os.path.isfile(s["encoder"]) and not s["encoder"].endswith(".keras"):
        raise app.UsageError(f"--encoder={s['encoder']} is not a .keras file")
    wanted = tasks(s)
    missing = [t for t in wanted if t not in DATASET_TASKS[s["dataset"]]]
    if missing:
        raise app.UsageError(f"--task={s['task']} needs {missing[0]} labels, which --dataset={s['dataset']} does not "
                             f"have (it has: {', '.join(DATASET_TASKS[s['dataset']])})")
    try:
        hidden = [int(w) for w in s["head_hidden"]]
    except ValueError:
        raise app.UsageError(f"--head_hidden={','.join(s['head_hidden'])} must be comma-separated integers") from None
    if any(w < 1 for w in hidden):
        raise app.UsageError(f"--head_hidden widths must be >= 1, got {hidden}")
    if s["identity_leakage"] and (s["identity_identities"] < 2 or s["identity_faces"] < 2 * s["identity_identities"]
                                  or s["identity_pairs"] < 2):
        raise app.UsageError("identity leakage needs --identity_identities >= 2, --identity_faces >= 2 per identity "
                             f"and --identity_pairs >= 2; got {s['identity_identities']}, {s['identity_faces']}, "
                             f"{s['identity_pairs']}")
    if s["resume"]:
        raise app.UsageError("--resume is not supported by linear_eval: an evaluation is short, run it again")
    if s["strategy"] != "default":
        raise app.UsageError(f"--strategy={s['strategy']} is not supported by linear_eval (one device)")


def tasks(s):
    return ("expression", "va") if s["task"] == "both" else (s["task"],)


def _class_counts(s, num_classes):
    """Training-set expression counts for the balanced softmax, from the labels alone (no image decoding)."""
    import numpy as np

    from ferkeras.data import splits

    if s["dataset"] == "synthetic":
        labels = splits.synthetic_split_arrays("train", s["num_train"], train_identities=s["train_identities"],
                                               image_size=s["image_size"], seed=s["seed"])["expression"]
    else:
        records, _ = splits.read_split(splits.READER_NAMES[s["dataset"]], s["data_root"], "train",
                                       **splits.reader_options(s["dataset"], fold=s["fold"], task=s["task"]))
        labels = np.array([r.expression for r in records])
    labels = np.asarray(labels).reshape(-1)
    return np.bincount(labels[labels >= 0], minlength=num_classes)[:num_classes]


def _encoder_image_size(s, encoder):
    """The encoder's square input side; ``--image_size`` may only repeat it (a UsageError otherwise)."""
    shape = tuple(encoder.inputs[0].shape[1:])
    if shape[0] is None or shape[0] != shape[1]:
        if not s["image_size_given"]:
            raise app.UsageError(f"the encoder {s['encoder']} takes images of shape {shape}; give --image_size")
        return s["image_size"]
    if s["image_size_given"] and s["image_size"] != shape[0]:
        raise app.UsageError(f"--image_size={s['image_size']} but the encoder {s['encoder']} takes {shape[0]}x"
                             f"{shape[1]} images; leave --image_size out to use the encoder's")
    return int(shape[0])


def run(s):
    """Evaluates the encoder; returns ``(result dict, run directory path)``."""
    import keras

    from ferkeras import downstream, training

    t0 = time.perf_counter()
    keras.utils.set_random_seed(s["seed"])
    training.set_precision(s["mixed_precision"])  # the new head's; the encoder keeps the policy it was saved with
    for module in s["import_modules"]:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise app.UsageError(f"--import_modules: cannot import {module}: {err}") from None
    try:
        encoder = downstream.load_encoder(s["encoder"])
    except (FileNotFoundError, ValueError) as err:
        raise app.UsageError(f"--encoder={s['encoder']}: {err}") from None
    s = dict(s, image_size=_encoder_image_size(s, encoder))
    run_dir = common.run_directory(s, f"linear_eval-{s['mode']}-{s['task']}-{s['dataset']}")
    run_dir.save_flags({holder.name: s[holder.name] for holder in _FLAGS})  # the settings that ran
    logging.info("run directory: %s; encoder %s (%s features)", run_dir.path, encoder.name, encoder.output.shape[-1])

    augment = common.augmentation(s)
    data = common.load_data(s, augment, task=s["task"])
    num_classes = len(data.classes) if data.classes else 8
    steps = common.steps_per_epoch(s, data.num_train)
    cache = s["mode"] == "linear" and s["cache_features"] and augment is None
    val = data.val if s["dataset"] == "synthetic" else None  # real datasets: val is the test split, no selection
    data_seconds = time.perf_counter() - t0

    metrics, details = {}, {}
    for task in tasks(s):
        result, model = downstream.evaluate(
            encoder, data.train, data.test, task=task, mode=s["mode"], num_classes=num_classes, epochs=s["epochs"],
            steps_per_epoch=steps, learning_rate=s["lr"], weight_decay=s["weight_decay"],
            batch_size=s["batch_size"], hidden=tuple(int(w) for w in s["head_hidden"]), dropout=s["dropout"],
            class_counts=_class_counts(s, num_classes) if task == "expression" else None, val_data=val,
            cache_features=cache, seed=s["seed"], verbose=s["verbose"], return_model=True)
        details[task] = {k: result.pop(k) for k in ("task", "mode", "epochs_trained", "steps_per_epoch",
                                                    "best_epoch", "train_seconds", "cached_features",
                                                    "class_counts") if k in result}
        metrics.update(result)
        model.save(run_dir.file(f"{task}_{s['mode']}.keras"))
    train_seconds = sum(d["train_seconds"] for d in details.values())

    if s["identity_leakage"]:
        images, identities = downstream.synthetic_identity_set(s["identity_identities"], s["identity_faces"],
                                                               image_size=s["image_size"], seed=s["seed"])
        metrics.update(downstream.identity_leakage(encoder, images, identities, num_pairs=s["identity_pairs"],
                                                   seed=s["seed"]))

    result = {"metrics": metrics, "details": details, "encoder": os.path.abspath(s["encoder"]),
              "class_names": list(data.classes) if data.classes else None, "flags": s,
              "data_seconds": data_seconds, "train_seconds": train_seconds,
              "total_seconds": time.perf_counter() - t0, "steps_per_epoch": steps}
    run_dir.write_result(result)
    common.record_drops(s, result, run_dir)
    return result, run_dir.path


def summary_title(s) -> str:
    return (f"linear_eval ({'frozen encoder' if s['mode'] == 'linear' else 'fine-tuned'}) of {s['encoder']} on "
            f"{s['dataset']}")


def summary(result, path, title) -> str:
    """:func:`experiments.common.summary` plus the identity-leakage line."""
    text = common.summary(result, path, title)
    m = result["metrics"]
    if "identity_knn1_accuracy" in m:
        lines = text.split("\n")
        lines.insert(-3, f"  identity leakage (lower = less identity): 1-NN {m['identity_knn1_accuracy']:.3f} "
                         f"(chance {m['identity_knn_chance']:.3f})  verification accuracy "
                         f"{m['identity_verification_accuracy']:.3f}  AUC {m['identity_verification_auc']:.3f}   "
                         f"({m['identity_count']} held-out identities)")
        text = "\n".join(lines)
    return text


def main(argv):
    common.quiet_keras_warnings()
    if len(argv) > 1:
        raise app.UsageError(common.unexpected_arguments(argv[1:]))
    s = settings()
    check(s)
    with common.discard_unstarted_run_directory():
        result, path = run(s)
    print(summary(result, path, summary_title(s)), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(main)
