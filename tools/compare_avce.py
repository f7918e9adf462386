r"""Side-by-side comparison on synthetic faces: L_AV alone (the paper's baseline) vs AVCE with f, f1, f2 vs InfoNCE
(and Barlow Twins), with the same backbone, data, seed and iteration budget, as one markdown table.

Every variant is one call of experiments/avce.py's ``run`` in this process (one run directory each, under
``--out_dir``), so all of experiments/avce.py's flags apply; this tool changes some defaults to fit the whole
comparison into about 20 minutes on 2 CPU cores (ResNet-18 of width 16 at 64x64, 3000 training faces, batches of 64,
500 iterations, Adam 1e-3 / SGD 1e-2 decayed x0.8 at the paper's 10% / 50% / 90% of the run):

    python tools/compare_avce.py                              # one seed (about 15-20 minutes on 2 cores)
    python tools/compare_avce.py --seeds=0,1                  # two seeds: is a gap larger than the seed spread?
    python tools/compare_avce.py --variants=none,avce:f --iterations=2000 --backbone=alexnet
    python tools/compare_avce.py --variants=none,avce:f --contrastive_weights=1,0.01,1e-4 --compressors=gap,flatten

``--contrastive_weights`` and ``--compressors`` are grid axes: every contrastive variant runs at every weight, and
every variant (L_AV alone too) with every compressor.

The table (held-out identities: CCC, RMSE, SAGR and PCC per axis, mean CCC) goes to stdout and, updated after every
run, to ``<out_dir>/compare_avce.md`` (``--table``); per-run numbers also to ``compare_avce.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from absl import app, flags, logging  # noqa: E402

from experiments import avce, common  # noqa: E402  (defines experiments/avce.py's flags)

FLAGS = flags.FLAGS
flags.DEFINE_list("variants", "none,avce:f,avce:f1,avce:f2,infonce:f", "contrastive[:similarity] per run: none "
                  "(L_AV alone: no contrastive term and no L_dis, the paper's baseline), avce:f, avce:f1, avce:f2, "
                  "infonce:f, infonce:f1, infonce:f2, barlow_twins (these follow --use_dis).")
flags.DEFINE_list("seeds", "0", "Seeds; every variant runs once per seed (data, initialisation and order follow "
                  "the seed, identical across variants).")
flags.DEFINE_list("contrastive_weights", "1", "Weights w of the contrastive term (L_main = L_AV + w L_con); every "
                  "contrastive variant runs at each (1 = Algorithm 1; the authors' code uses 1e-4).")
flags.DEFINE_list("compressors", "gap", "Compressors C (gap = the paper, flatten = the authors' code); every "
                  "variant runs with each.")
flags.DEFINE_string("table", None, "Markdown output (default <out_dir>/compare_avce.md).")

COMPARISON_DEFAULTS = dict(backbone="resnet18", width=16, image_size=64, batch_size=64, num_train=3000, num_val=400,
                           num_test=1000, train_identities=75, steps=50, iterations=500, lr=1e-3, head_lr=1e-2,
                           lr_first=50, lr_every=200, augment="flip", cam_every=0, cam_images=4, verbose=2,
                           out_dir="runs/compare_avce")
"""This tool's defaults (the flags of experiments/avce.py otherwise keep theirs)."""

COLUMNS = (("CCC(V)", "valence_ccc"), ("CCC(A)", "arousal_ccc"), ("mean CCC", "mean_ccc"),
           ("RMSE(V)", "valence_rmse"), ("RMSE(A)", "arousal_rmse"), ("SAGR(V)", "valence_sagr"),
           ("SAGR(A)", "arousal_sagr"), ("PCC(V)", "valence_pcc"), ("PCC(A)", "arousal_pcc"))
LABELS = {"none": "L_AV alone (baseline)", "avce": "AVCE", "infonce": "InfoNCE", "barlow_twins": "Barlow Twins"}


def parse_variant(text):
    """``"avce:f1"`` -> ``("avce", "f1")``; ``"none"`` / ``"barlow_twins"`` take no similarity."""
    contrastive, _, similarity = text.partition(":")
    if contrastive not in LABELS:
        raise app.UsageError(f"--variants: {text!r} has unknown contrastive {contrastive!r}; choose from "
                             f"{', '.join(LABELS)}")
    if contrastive in ("none", "barlow_twins"):
        if similarity:
            raise app.UsageError(f"--variants: {text!r}: {contrastive} takes no similarity")
        return contrastive, "f"
    similarity = similarity or "f"
    if similarity not in ("f", "f1", "f2"):
        raise app.UsageError(f"--variants: {text!r} has unknown similarity {similarity!r}; choose f, f1 or f2")
    return contrastive, similarity


def variant_label(contrastive, similarity, weight=1.0, compressor="gap"):
    label = LABELS[contrastive] + (f", {similarity}" if contrastive in ("avce", "infonce") else "")
    if contrastive != "none" and weight != 1.0:
        label += f", w={weight:g}"
    return label + (", flatten C" if compressor == "flatten" else "")


def parse_grid(weights, compressors):
    """``--contrastive_weights`` and ``--compressors`` as checked lists."""
    try:
        weights = [float(w) for w in weights]
    except ValueError as err:
        raise app.UsageError(f"--contrastive_weights={','.join(weights)}: not numbers") from err
    if not weights or any(not w >= 0 for w in weights):
        raise app.UsageError(f"--contrastive_weights={','.join(map(str, weights))}: need weights >= 0")
    bad = [c for c in compressors if c not in ("gap", "flatten")]
    if bad or not compressors:
        raise app.UsageError(f"--compressors={','.join(compressors)}: choose from gap, flatten")
    return weights, list(compressors)


def markdown(rows, setting):
    """Per-run table, and (several seeds) the mean and range per variant."""
    head = "| variant | seed | " + " | ".join(c for c, _ in COLUMNS) + " | train s |"
    rule = "|" + "---|" * (len(COLUMNS) + 3)
    lines = [setting, "", head, rule]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['seed']} | " + " | ".join(f"{r['metrics'][k]:.3f}" for _, k in COLUMNS)
                     + f" | {r['train_seconds']:.0f} |")
    seeds = sorted({r["seed"] for r in rows})
    if len(seeds) > 1:
        lines += ["", f"Mean over seeds {', '.join(map(str, seeds))} (range max - min in brackets):", "",
                  "| variant | runs | " + " | ".join(c for c, _ in COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 2)]
        for variant in dict.fromkeys(r["variant"] for r in rows):
            group = [r["metrics"] for r in rows if r["variant"] == variant]
            cells = []
            for _, key in COLUMNS:
                values = [m[key] for m in group]
                cells.append(f"{statistics.fmean(values):.3f} ({max(values) - min(values):.3f})")
            lines.append(f"| {variant} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv):
    common.quiet_keras_warnings()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    variants = [parse_variant(v) for v in FLAGS.variants]
    weights, compressors = parse_grid(FLAGS.contrastive_weights, FLAGS.compressors)
    runs = [(contrastive, similarity, weight, compressor) for compressor in compressors
            for contrastive, similarity in variants for weight in (weights if contrastive != "none" else [1.0])]
    seeds = [int(x) for x in FLAGS.seeds]
    base = avce.settings()
    if base["dataset"] != "synthetic":
        raise app.UsageError(f"--dataset={base['dataset']}: the comparison runs on synthetic faces only")
    avce.check(base)
    os.makedirs(base["out_dir"], exist_ok=True)
    table_path = FLAGS.table or os.path.join(base["out_dir"], "compare_avce.md")
    setting = (f"Held-out identities ({base['num_test']} synthetic faces of {common.SYNTHETIC_TEST_IDENTITIES} "
               f"identities never seen in training). {base['backbone']}"
               + (f" width {base['width']}" if base["backbone"] == "resnet18" else "")
               + f", {base['image_size']}x{base['image_size']}, {base['num_train']} training faces of "
               f"{base['train_identities']} identities, batch {base['batch_size']}, {base['iterations'] or '-'} "
               f"iterations, Adam {base['lr']:g} / SGD {base['head_lr']:g} x{base['lr_factor']:g} at "
               f"{base['lr_first']} then every {base['lr_every']}, sparsemax {base['sparsemax']}, L_AV with "
               f"{base['regression_loss']}, L_dis "
               f"{'on' if base['use_dis'] else 'off'}, augmentation {base['augment']}; checkpoint = best validation "
               f"L_AV (own identities).")
    rows = []
    import keras

    for seed in seeds:
        for contrastive, similarity, weight, compressor in runs:
            s = dict(base, contrastive=contrastive, similarity=similarity, seed=seed, contrastive_weight=weight,
                     compressor=compressor, use_dis=base["use_dis"] and contrastive != "none")
            label = variant_label(contrastive, similarity, weight, compressor)
            logging.info("=== %s, seed %d", label, seed)
            keras.backend.clear_session()
            result, path = avce.run(s)
            rows.append({"variant": label, "seed": seed, "metrics": result["metrics"], "run_dir": path,
                         "train_seconds": result["train_seconds"], "iterations": result["iterations"]})
            text = markdown(rows, setting)
            with open(table_path, "w") as f:
                f.write(text)
            with open(os.path.splitext(table_path)[0] + ".json", "w") as f:
                json.dump(rows, f, indent=1)
            print(f"{label} seed {seed}: mean CCC {result['metrics']['mean_ccc']:.3f} ({path})", flush=True)
    print("\n" + markdown(rows, setting), flush=True)
    print(f"table written to {table_path}")


if __name__ == "__main__":
    for _name, _value in COMPARISON_DEFAULTS.items():
        FLAGS.set_default(_name, _value)
    app.run(main)
