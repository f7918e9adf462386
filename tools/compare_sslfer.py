r"""SSL-FER's strategies side by side on synthetic videos: SimCLR, + TimeAug, + FaceSwap, + HardNeg, + MaskFN and all
four together, pre-trained with the same encoder, videos, step budget and seeds, then each encoder measured the same
way - a linear probe on its frozen features (expression macro-F1 / accuracy, valence-arousal CCC) and its identity
leakage (k-NN identification and verification of unseen people; lower = less identity in the features, the paper's
FR-KNN) - as one markdown table (Shu, Gu, Yang, Lo, BMVC 2022, Tables 1 and 2).

Every variant is one call of experiments/sslfer_pretrain.py's ``run`` in this process (one run directory each, under
``--out_dir``), so all of that binary's flags apply; the downstream measures are :func:`ferkeras.downstream.evaluate`
and :func:`ferkeras.downstream.identity_leakage`. This tool changes some defaults to fit the whole comparison (6
variants x 2 seeds) into about 25 minutes on 2 CPU cores: ResNet-18 of width 16 at 48x48 (frames cut at 55), a
256 -> 64 projection head, 40 training identities x 2 videos of 8 s at 8 fps, batches of 64, 180 steps (3 epochs of
60), Adam 1e-3 (the paper's 3e-4 barely moves the loss in 180 steps) with the L2 decay, constant for one epoch then
cosine; MaskFN's part encoder a random ResNet-18 of width 16 on 32x32 crops; no validation pass and no per-run
saliency figure (the encoder is the last epoch's: every variant gets the same budget).

    python tools/compare_sslfer.py                                # 6 variants x seeds 0,1 (about 25 min on 2 cores)
    python tools/compare_sslfer.py --seeds=0,1,2 --variants=simclr,all
    python tools/compare_sslfer.py --steps=120 --epochs=5 --image_size=64     # a bigger budget

A variant switches on ONE strategy on top of SimCLR (``timeaug``, ``faceswap``, ``hardneg``, ``maskfn``), none
(``simclr``) or all four (``all``), with the binary's settings for each (``--t1``, ``--face_swap`` probability,
``--hard_negatives`` K, ``--maskfn_weight`` ...). Probe: a linear head (``--eval_hidden`` empty) on the frozen
encoder's features of ``--num_train`` synthetic faces of the training identities, the epoch chosen on ``--num_val``
faces of the validation identities, scored on ``--num_test`` faces of 25 identities no model saw; identity leakage on
``--identity_faces`` faces of ``--identity_identities`` further unseen identities.

The table (mean +- half the range over the seeds, then every run) goes to stdout and, updated after every run, to
``<out_dir>/compare_sslfer.md`` (``--table``); per-run numbers to ``compare_sslfer.json``; the Grad-CAM of every
variant's encoder (first seed) over faces of each expression to ``compare_sslfer_saliency.png`` (the paper's
Figure 6a).
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from absl import app, flags, logging  # noqa: E402

from experiments import common, sslfer_pretrain  # noqa: E402  (defines experiments/sslfer_pretrain.py's flags)

FLAGS = flags.FLAGS
VARIANTS = {  # name -> (label, time_aug, face_swap on, hard negatives on, maskfn)
    "simclr": ("SimCLR", False, False, False, False),
    "timeaug": ("+ TimeAug", True, False, False, False),
    "faceswap": ("+ FaceSwap", False, True, False, False),
    "hardneg": ("+ HardNeg", False, False, True, False),
    "maskfn": ("+ MaskFN", False, False, False, True),
    "all": ("all four", True, True, True, True),
}
flags.DEFINE_list("variants", ",".join(VARIANTS), f"Variants to pre-train, from {', '.join(VARIANTS)}.")
flags.DEFINE_list("seeds", "0,1", "Seeds (at least 2); every variant runs once per seed (videos, initialisation, "
                  "sampling and augmentation follow the seed, identical across variants).")
flags.DEFINE_string("table", None, "Markdown output (default <out_dir>/compare_sslfer.md).")
flags.DEFINE_integer("eval_epochs", 15, "Epochs of the probe's training (on cached features).")
flags.DEFINE_float("eval_lr", 1e-3, "Adam learning rate of the probe (cosine-decayed).")
flags.DEFINE_list("eval_hidden", [], "Hidden widths of the probe head (empty: a linear probe; SSL-FER's MLP head: "
                  "1024,512).")
flags.DEFINE_integer("identity_identities", 20, "Identities of the identity-leakage set (never seen).")
flags.DEFINE_integer("identity_faces", 400, "Faces of the identity-leakage set.")
flags.DEFINE_integer("identity_pairs", 3000, "Verification pairs of the identity leakage.")

COMPARISON_DEFAULTS = dict(backbone="resnet18", width=16, image_size=48, projection_hidden=["256"],
                           projection_dim=64, batch_size=64, epochs=3, steps=60, cosine_from_epoch=1,
                           train_identities=40, videos_per_identity=2, video_seconds=8.0, fps=8.0, part_size=32,
                           maskfn_encoder_width=16, validation=False, num_train=2000, num_val=300, num_test=1000,
                           lr=1e-3, checkpoint="last", saliency_images=0, verbose=2, out_dir="runs/compare_sslfer")
"""This tool's defaults (the flags of experiments/sslfer_pretrain.py otherwise keep theirs)."""

COLUMNS = (("macro-F1", "expression_macro_f1"), ("accuracy", "expression_accuracy"), ("CCC(V)", "valence_ccc"),
           ("CCC(A)", "arousal_ccc"), ("mean CCC", "mean_ccc"), ("identity 1-NN", "identity_knn1_accuracy"),
           ("identity verif.", "identity_verification_accuracy"),
           ("top-1 inst. disc. (last batch)", "pretrain_accuracy"))
"""Table columns: label, key of a run's metrics (identity: lower is better)."""


def variant_settings(base, name, seed):
    """The settings of one variant: ``base`` with the strategies of ``name`` switched on or off."""
    _, time_aug, face_swap, hard_negatives, maskfn = VARIANTS[name]
    return dict(base, seed=seed, time_aug=time_aug, face_swap=base["face_swap"] if face_swap else 0.0,
                hard_negatives=base["hard_negatives"] if hard_negatives else 0, maskfn=maskfn)


def downstream_metrics(s, encoder_path):
    """Linear probe (expression, valence-arousal) and identity leakage of the encoder saved at ``encoder_path``."""
    import numpy as np

    from ferkeras import downstream
    from ferkeras.data import splits

    encoder = downstream.load_encoder(encoder_path)
    data = splits.synthetic_data(num_train=s["num_train"], num_val=s["num_val"], num_test=s["num_test"],
                                 train_identities=s["train_identities"], image_size=s["image_size"],
                                 batch_size=s["batch_size"], seed=s["seed"])
    labels = splits.synthetic_split_arrays("train", s["num_train"], train_identities=s["train_identities"],
                                           image_size=s["image_size"], seed=s["seed"])["expression"]
    counts = np.bincount(labels[labels >= 0], minlength=len(data.classes))
    metrics = {}
    for task in ("expression", "va"):
        result = downstream.evaluate(encoder, data.train, data.test, task=task, mode="linear",
                                     num_classes=len(data.classes), epochs=FLAGS.eval_epochs,
                                     learning_rate=FLAGS.eval_lr, batch_size=s["batch_size"],
                                     hidden=tuple(int(w) for w in FLAGS.eval_hidden), dropout=0.0,
                                     class_counts=counts if task == "expression" else None, val_data=data.val,
                                     seed=s["seed"])
        for key in ("best_epoch", "train_seconds"):
            metrics[f"{task}_probe_{key}"] = result.pop(key)
        metrics.update({k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                        and k not in ("epochs_trained", "steps_per_epoch")})
    images, identities = downstream.synthetic_identity_set(FLAGS.identity_identities, FLAGS.identity_faces,
                                                           image_size=s["image_size"], seed=s["seed"])
    metrics.update(downstream.identity_leakage(encoder, images, identities, num_pairs=FLAGS.identity_pairs,
                                               seed=s["seed"]))
    return metrics


def _fmt(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {(max(values) - min(values)) / 2:.3f}"


def markdown(rows, setting, command):
    """Mean +- half-range per variant over the seeds, then every run."""
    head = " | ".join(c for c, _ in COLUMNS)
    seeds = sorted({r["seed"] for r in rows})
    lines = [setting, "", f"Command: `{command}`", "",
             f"Mean ± half the range over seeds {', '.join(map(str, seeds))} (identity columns: lower = less identity "
             "in the features):", "", f"| variant | runs | {head} | pre-train s |", "|" + "---|" * (len(COLUMNS) + 3)]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        group = [r for r in rows if r["variant"] == variant]
        cells = [_fmt([r["metrics"].get(key) for r in group]) for _, key in COLUMNS]
        lines.append(f"| {variant} | {len(group)} | " + " | ".join(cells)
                     + f" | {statistics.fmean(r['train_seconds'] for r in group):.0f} |")
    lines += ["", "Every run:", "", f"| variant | seed | {head} | run directory |", "|" + "---|" * (len(COLUMNS) + 3)]
    for r in rows:
        cells = [_fmt([r["metrics"].get(key)]) for _, key in COLUMNS]
        lines.append(f"| {r['variant']} | {r['seed']} | " + " | ".join(cells)
                     + f" | {os.path.basename(r['run_dir'])} |")
    return "\n".join(lines) + "\n"


def describe(base):
    return (f"Synthetic videos: {base['train_identities']} training identities x {base['videos_per_identity']} "
            f"videos of {base['video_seconds']:g} s at {base['fps']:g} fps. {base['backbone']}"
            + (f" width {base['width']}" if base["backbone"] == "resnet18" else "")
            + f" at {base['image_size']}x{base['image_size']}, projection {','.join(base['projection_hidden'])} -> "
            f"{base['projection_dim']}, batch {base['batch_size']}, {base['epochs']} epochs x {base['steps']} steps "
            f"(equal for every variant), Adam {base['lr']:g} ({base['weight_decay_mode']} decay "
            f"{base['weight_decay']:g}), cosine from epoch {base['cosine_from_epoch']}, tau {base['temperature']:g}. "
            f"Strategies when on: TimeAug T1 {base['t1']:g} s, FaceSwap p {base['face_swap']:g}, HardNeg K "
            f"{base['hard_negatives']} at >= {base['t2']:g} s, MaskFN w {base['maskfn_weight']:g} (random part "
            f"encoder{'' if not base['maskfn_encoder'] else ': ' + base['maskfn_encoder']}). Probe: "
            f"{'linear' if not FLAGS.eval_hidden else 'MLP ' + ','.join(FLAGS.eval_hidden)} head on frozen features, "
            f"{FLAGS.eval_epochs} epochs on {base['num_train']} faces of the training identities, epoch chosen on "
            f"{base['num_val']} faces of {common.SYNTHETIC_VAL_IDENTITIES} validation identities, scored on "
            f"{base['num_test']} faces of {common.SYNTHETIC_TEST_IDENTITIES} unseen identities; identity leakage on "
            f"{FLAGS.identity_faces} faces of {FLAGS.identity_identities} further unseen identities (1-NN chance "
            f"~{1 / FLAGS.identity_identities:.2f}, verification chance 0.5).")


def main(argv):
    common.quiet_keras_warnings()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    unknown = [v for v in FLAGS.variants if v not in VARIANTS]
    if unknown or not FLAGS.variants:
        raise app.UsageError(f"--variants: unknown {unknown or 'empty'}; choose from {', '.join(VARIANTS)}")
    try:
        seeds = [int(x) for x in FLAGS.seeds]
    except ValueError:
        raise app.UsageError(f"--seeds={','.join(FLAGS.seeds)}: give integers") from None
    if len(set(seeds)) < 2:
        raise app.UsageError(f"--seeds={','.join(FLAGS.seeds)}: give at least two different seeds (is a gap larger "
                             "than the seed spread?)")
    if FLAGS.eval_epochs < 1 or not FLAGS.eval_lr > 0:
        raise app.UsageError("--eval_epochs must be >= 1 and --eval_lr > 0")
    base = sslfer_pretrain.settings()
    if base["dataset"] != "synthetic":
        raise app.UsageError(f"--dataset={base['dataset']}: the comparison runs on synthetic videos only (their "
                             "labels drive the probe)")
    for name in VARIANTS:
        sslfer_pretrain.check(variant_settings(base, name, seeds[0]))
    needs = [v for v, off in (("faceswap", not base["face_swap"]), ("hardneg", not base["hard_negatives"]),
                              ("all", not base["face_swap"] or not base["hard_negatives"])) if off]
    if any(v in FLAGS.variants for v in needs):
        raise app.UsageError("--face_swap and --hard_negatives give the strength of those strategies when a variant "
                             "switches them on: they must be > 0 here")
    os.makedirs(base["out_dir"], exist_ok=True)
    table_path = FLAGS.table or os.path.join(base["out_dir"], "compare_sslfer.md")
    command = "python tools/compare_sslfer.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    setting = describe(base)
    rows = []
    import keras

    from ferkeras.downstream import load_encoder
    from ferkeras.methods.sslfer.saliency import expression_faces, saliency_figure

    started = time.perf_counter()
    for seed in seeds:
        for name in FLAGS.variants:
            label = VARIANTS[name][0]
            logging.info("=== %s, seed %d", label, seed)
            keras.backend.clear_session()
            s = variant_settings(base, name, seed)
            result, path = sslfer_pretrain.run(s)
            metrics = downstream_metrics(s, os.path.join(path, sslfer_pretrain.ENCODER_FILE))
            metrics["pretrain_accuracy"] = result["final_epoch"].get("accuracy")
            rows.append({"variant": label, "name": name, "seed": seed, "metrics": metrics, "run_dir": path,
                         "train_seconds": result["train_seconds"], "total_seconds": result["total_seconds"],
                         "data": result["data"]})
            text = markdown(rows, setting, command)
            with open(table_path, "w") as f:
                f.write(text)
            with open(os.path.splitext(table_path)[0] + ".json", "w") as f:
                json.dump(rows, f, indent=1, default=float)
            print(f"{label} seed {seed}: macro-F1 {metrics['expression_macro_f1']:.3f}, CCC {metrics['mean_ccc']:.3f}, "
                  f"identity 1-NN {metrics['identity_knn1_accuracy']:.3f} ({path}; "
                  f"{time.perf_counter() - started:.0f} s so far)", flush=True)

    first = [r for r in rows if r["seed"] == seeds[0]]
    images, expression = expression_faces(base["image_size"], base["saliency_images"] or 8, seed=seeds[0])
    logging.info("Grad-CAM of every variant's encoder (seed %d)", seeds[0])
    from ferkeras.data.schema import EXPRESSIONS

    figure = os.path.splitext(table_path)[0] + "_saliency.png"
    saliency_figure({r["variant"]: load_encoder(os.path.join(r["run_dir"], sslfer_pretrain.ENCODER_FILE))
                     for r in first}, images, figure, score="self",
                    row_labels=[EXPRESSIONS[int(c)] for c in expression],
                    title=f"Grad-CAM (self-similarity score), seed {seeds[0]}")
    print("\n" + markdown(rows, setting, command), flush=True)
    print(f"table written to {table_path}; Grad-CAM of every variant: {figure}")


if __name__ == "__main__":
    for _name, _value in COMPARISON_DEFAULTS.items():
        FLAGS.set_default(_name, _value)
    app.run(main)
