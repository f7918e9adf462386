r"""SSL-FER self-supervised pre-training: SimCLR on face tracks with TimeAug, FaceSwap, HardNeg and MaskFN (Shu, Gu,
Yang, Lo, "Revisiting Self-Supervised Contrastive Learning for Facial Expression Recognition", BMVC 2022).

Quick start (no dataset needed; built-in synthetic videos, a few minutes on 2 CPU cores):

    python experiments/sslfer_pretrain.py --flagfile=experiments/configs/sslfer_synthetic.cfg

Then evaluate the encoder downstream (linear probe / fine-tuning, identity leakage):

    python experiments/linear_eval.py --encoder=runs/sslfer-...            # the run directory

Other runs:

    python experiments/sslfer_pretrain.py --flagfile=experiments/configs/sslfer_smoke.cfg     # under a minute
    python experiments/sslfer_pretrain.py --flagfile=experiments/configs/sslfer_voxceleb1_f.cfg \
        --data_root=input/voxceleb1                                  # the paper's full method (Table 1, row f)
    python experiments/sslfer_pretrain.py --notime_aug --face_swap=0 --hard_negatives=0 --nomaskfn ...  # SimCLR
    python experiments/sslfer_pretrain.py --flagfile=runs/<run>/flags.cfg --resume=runs/<run>  # continue a run
    python tools/compare_sslfer.py      # SimCLR vs each strategy vs all, linear probe + identity leakage, one table

What one step does (the paper's Sec. 3, Fig. 4-5; every strategy has its switch, all off = SimCLR):

* **TimeAug** (``--time_aug``, Sec. 3.2.1): the positive is a frame of the anchor's track ``t1`` seconds away,
  ``t1`` in ``(0, --t1]`` drawn with weights ``steps, ..., 1`` (nearer is likelier; ``--t1_steps``), random sign.
  Off: the positive is a second augmentation of the anchor frame.
* **FaceSwap** (``--face_swap`` = probability, Sec. 3.2.2; the paper 0.5, the authors' code 0.8): the positive's
  eyes, brows, nose and mouth pasted onto another person's face; faces without landmarks fall back (counted).
* **HardNeg** (``--hard_negatives`` = K, Sec. 3.3): K frames of the same track at least ``--t2`` seconds away are
  extra negatives.
* **MaskFN** (``--maskfn``, Sec. 3.4, Eq. 2): for each anchor the sample with the most similar eye + mouth features
  of a FROZEN part encoder (``--maskfn_encoder``: a ``.keras`` model or ``.weights.h5`` of the default ResNet-18, e.g.
  ImageNet weights you converted; default a random ResNet-18 - nothing is downloaded) becomes an extra positive;
  loss ``L1 + --maskfn_weight L2``.
* InfoNCE (Eq. 1) with ``--temperature`` 0.07 over the whole (global) batch; ``--denominator=simclr`` keeps the
  positive in the denominator (SimCLR and the authors' code), ``printed`` leaves it out (Eq. 1 as printed).

Model and optimiser (Sec. 4.1): ``--backbone=resnet50`` from scratch (``resnet18`` + ``--width`` for small runs), a
projection head 2048 -> 2048 -> 128 (``--projection_hidden``, ``--projection_dim``), batch 256, Adam 3e-4 with
weight decay 1e-4 and a cosine schedule from epoch 10 (``--cosine_from_epoch``). The decay is an L2 penalty added
to the gradient (``--weight_decay_mode=l2``): the authors' code uses ``torch.optim.Adam(weight_decay=1e-4)``, whose
decay is coupled, not AdamW's decoupled one (``decoupled``); see ferkeras.methods.sslfer.optimizer. An online
linear probe (``--probe``) on the stop-gradient anchor features reports expression accuracy / macro-F1 and
valence-arousal CCC while pre-training, when the data has labels (synthetic videos do, VoxCeleb1 does not); it never
changes the encoder.

Data: ``--dataset=synthetic`` (default) renders ``--train_identities`` people x ``--videos_per_identity`` videos of
``--video_seconds`` at ``--fps`` in memory (exact landmarks and labels); the validation videos are of the next
15 identities and the probe is scored on ``--num_test`` faces of 25 further identities (never seen).
``--dataset=voxceleb1 --data_root=input/voxceleb1`` reads the face-track frames (``<identity>/<video>/<clip>/
<frame>.jpg``, timestamps = frame / ``--voxceleb_fps``); there are no labels (no probe) and no landmarks unless the
records carry them (FaceSwap then runs dlib per image, MaskFN's parts and the landmark masking fall back, counted).
``--num_train`` and ``--num_val`` do not apply (the video flags size the data); ``--augment`` is ``sslfer`` (the
paper's spatial augmentation) or ``none``. ``--strategy=mirrored`` all-gathers the projections, so the negatives come
from the global batch.

The run directory (runs/sslfer-...): ``encoder.keras`` (the encoder of the checkpoint, for
``experiments/linear_eval.py --encoder=<run or encoder.keras>``), checkpoints/best.keras (the whole pre-training
model at the lowest contrastive loss on the validation videos - synthetic - or on the training stream; with
``--checkpoint=last`` the last epoch's), result.json (the last epoch's losses and instance-discrimination accuracy,
the probe's metrics on the held-out faces, counts of skipped tracks / frames, FaceSwap fallbacks and unreadable
files, timings), training_curves.png, saliency.png (Grad-CAM of the encoder over faces of every expression, the
paper's Figure 6), train_log.csv, TensorBoard logs and flags.cfg.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root: experiments.common
from experiments import common  # noqa: E402

DATASETS = ("synthetic", "voxceleb1")
ENCODER_FILE = "encoder.keras"
"""The pre-trained encoder in the run directory (``keras.saving.load_model`` gives images -> (B, F) features)."""
SALIENCY_FILE = "saliency.png"

_OWN_FLAGS = [
    # --- the four strategies ---
    flags.DEFINE_bool("time_aug", True, "TimeAug: the positive is another frame of the anchor's track, up to --t1 "
                      "seconds away (off: a second augmentation of the anchor frame, as SimCLR)."),
    flags.DEFINE_float("t1", 1.0, "TimeAug's largest positive offset T1 in seconds (paper: 1 s)."),
    flags.DEFINE_integer("t1_steps", 5, "TimeAug's offsets k T1 / steps (k = 1..steps), weighted steps+1-k "
                         "(5: the authors' 5:4:3:2:1, nearer is likelier)."),
    flags.DEFINE_float("face_swap", 0.5, "FaceSwap: probability that a positive is face-swapped onto another "
                       "identity (0 = off; paper 0.5, the authors' code 0.8)."),
    flags.DEFINE_bool("face_swap_detect", True, "FaceSwap: run dlib on faces without landmarks (else they fall "
                      "back to the unswapped image, counted)."),
    flags.DEFINE_integer("hard_negatives", 1, "HardNeg: K frames of the anchor's track at least --t2 seconds away "
                         "as extra negatives (0 = off)."),
    flags.DEFINE_float("t2", 3.0, "HardNeg's smallest offset T2 in seconds (paper: 3 s)."),
    flags.DEFINE_enum("hard_negatives_from", "track", ("track", "identity"), "HardNeg draws from the anchor's "
                      "track (the authors' code: same clip) or from every track of its identity."),
    flags.DEFINE_enum("hard_negatives_scope", "all", ("all", "own"), "Every anchor contrasts with all hard "
                      "negatives of the batch (all) or only its own (own)."),
    flags.DEFINE_bool("maskfn", True, "MaskFN: the sample with the most similar eye + mouth features becomes an "
                      "extra positive (false-negative cancellation, Eq. 2)."),
    flags.DEFINE_float("maskfn_weight", 0.5, "MaskFN: weight w of L2 in L1 + w L2 (paper 1/2; the authors' code "
                       "0.8)."),
    flags.DEFINE_integer("maskfn_num", 1, "MaskFN: N_FN, extra positives per anchor (paper 1; Table 4 tries 2)."),
    flags.DEFINE_string("maskfn_encoder", None, "MaskFN's frozen part encoder: a .keras model or a .weights.h5 of "
                        "the default ResNet-18 (e.g. ImageNet weights you converted); default a randomly initialised "
                        "ResNet-18 (nothing is downloaded)."),
    flags.DEFINE_integer("maskfn_encoder_width", 64, "Stem width of the default ResNet-18 part encoder."),
    flags.DEFINE_enum("maskfn_denominator", "printed", ("printed", "simclr"), "MaskFN's denominators: exclude the "
                      "positive and the picked sample (Eq. 2 as printed) or keep them (SimCLR form)."),
    flags.DEFINE_integer("part_size", 64, "Side of the eye / mouth crops MaskFN encodes (the authors' code: 64)."),
    # --- the loss ---
    flags.DEFINE_float("temperature", 0.07, "InfoNCE temperature tau (paper 0.07)."),
    flags.DEFINE_enum("denominator", "simclr", ("simclr", "printed"), "InfoNCE without MaskFN: keep the positive in "
                      "the denominator (simclr: SimCLR and the authors' code) or leave it out (Eq. 1 as printed)."),
    flags.DEFINE_bool("symmetric", False, "Also use the positives as anchors (SimCLR's symmetric NT-Xent)."),
    # --- the model ---
    flags.DEFINE_enum("backbone", "resnet50", ("resnet50", "resnet18"), "Encoder, from scratch (paper: "
                      "ResNet-50)."),
    flags.DEFINE_integer("width", 64, "ResNet-18 stem width (64 = the standard ResNet-18); resnet50 needs 64."),
    flags.DEFINE_list("projection_hidden", "2048", "Hidden widths of the projection head (paper: 2048)."),
    flags.DEFINE_integer("projection_dim", 128, "Projection (contrastive) dimension (paper: 128)."),
    # --- the optimiser ---
    flags.DEFINE_float("lr", 3e-4, "Adam learning rate (paper 3e-4)."),
    flags.DEFINE_float("weight_decay", 1e-4, "Weight decay (paper 1e-4)."),
    flags.DEFINE_enum("weight_decay_mode", "l2", ("l2", "decoupled"), "l2: penalty added to the gradient (the "
                      "authors' torch.optim.Adam); decoupled: Keras Adam(weight_decay) / AdamW."),
    flags.DEFINE_integer("cosine_from_epoch", 10, "Constant learning rate for this many epochs, then a cosine to 0 "
                         "at the end of the run (paper: 10)."),
    flags.DEFINE_bool("probe", True, "Online linear probe (expression, valence-arousal) on the stop-gradient anchor "
                      "features, when the data has labels."),
    flags.DEFINE_float("probe_lr", 1e-3, "Adam learning rate of the online probe."),
    # --- data ---
    flags.DEFINE_bool("mask_regions", True, "Landmark-based masking of the eyes or the mouth in the spatial "
                      "augmentation (Sec. 4.1)."),
    flags.DEFINE_integer("anchors_per_track", None, "Anchors per track and epoch (default: every frame that can "
                         "anchor)."),
    flags.DEFINE_integer("videos_per_identity", 2, "synthetic only: videos per identity."),
    flags.DEFINE_float("video_seconds", 8.0, "synthetic only: seconds per video."),
    flags.DEFINE_float("fps", 10.0, "synthetic only: frames per second."),
    flags.DEFINE_float("voxceleb_fps", 25.0, "voxceleb1 only: frame rate of the source videos (timestamp = frame "
                       "number / fps)."),
    flags.DEFINE_bool("validation", True, "synthetic only: the pre-training loss and probe on the validation "
                      "identities' videos after every epoch; the checkpoint is the epoch with the lowest validation "
                      "loss (without: the lowest training loss)."),
    flags.DEFINE_enum("checkpoint", "best", ("best", "last"), "The model kept (checkpoints/best.keras, "
                      "encoder.keras, the probe scores): best = the epoch with the lowest validation loss (synthetic "
                      "with --validation) or training loss; last = the last epoch's weights (equal budgets)."),
    flags.DEFINE_integer("val_steps", None, "Validation batches per epoch (default: one pass over the validation "
                         "videos' anchors); synthetic only."),
    flags.DEFINE_integer("saliency_images", 8, "Faces in the final Grad-CAM figure (one per expression on "
                         "synthetic data); 0 = no figure."),
]
_FLAGS = _OWN_FLAGS + common.define_shared_flags(DATASETS, image_size=112, batch_size=256, epochs=210,
                                                 augment="sslfer")

BOUNDS = dict(t1=common.POSITIVE, t1_steps=common.AT_LEAST_1, face_swap=common.PROBABILITY,
              hard_negatives=common.AT_LEAST_0, t2=common.POSITIVE, maskfn_weight=common.AT_LEAST_0,
              maskfn_num=common.AT_LEAST_1, maskfn_encoder_width=common.AT_LEAST_1, part_size=common.AT_LEAST_1,
              temperature=common.POSITIVE, width=common.AT_LEAST_1, projection_dim=common.AT_LEAST_1,
              lr=common.POSITIVE, weight_decay=common.AT_LEAST_0, cosine_from_epoch=common.AT_LEAST_0,
              probe_lr=common.POSITIVE, anchors_per_track=common.AT_LEAST_1, videos_per_identity=common.AT_LEAST_1,
              video_seconds=common.POSITIVE, fps=common.POSITIVE, voxceleb_fps=common.POSITIVE,
              val_steps=common.AT_LEAST_1, saliency_images=common.AT_LEAST_0)
"""The ranges of this binary's own numeric flags (the shared ones: :data:`experiments.common.SHARED_BOUNDS`)."""

SMOKE = dict(image_size=32, backbone="resnet18", width=16, projection_hidden=["64"], projection_dim=32,
             videos_per_identity=1, video_seconds=4.0, fps=5.0, part_size=32, maskfn_encoder_width=16,
             cosine_from_epoch=0, val_steps=1, saliency_images=2)
"""What ``--smoke`` sets besides :data:`experiments.common.SMOKE_DATA` (tiny model and videos)."""


def settings():
    """Flag values as a dict, with the --smoke overrides (:data:`SMOKE`; saliency faces capped at 2)."""
    smoke = dict(SMOKE, saliency_images=min(flags.FLAGS.saliency_images, SMOKE["saliency_images"]))
    return common.settings(_FLAGS, smoke)


def _widths(s):
    try:
        widths = [int(w) for w in s["projection_hidden"]]
    except ValueError:
        raise app.UsageError(f"--projection_hidden={','.join(s['projection_hidden'])}: give integer widths") from None
    return widths


def check(s):
    """Errors a user can make with the flags, reported before anything heavy is imported."""
    common.check(s, BOUNDS)
    if s["augment"] not in ("sslfer", "none"):
        raise app.UsageError(f"--augment={s['augment']}: SSL-FER pre-training takes --augment=sslfer (the paper's "
                             "spatial augmentation) or none")
    if s["hard_negatives"] and s["t2"] <= s["t1"]:
        raise app.UsageError(f"--t2={s['t2']} must exceed --t1={s['t1']}: hard negatives lie farther in time than "
                             "positives")
    if any(w < 1 for w in _widths(s)):
        raise app.UsageError(f"--projection_hidden widths must be >= 1, got {','.join(s['projection_hidden'])}")
    if s["batch_size"] < 2:
        raise app.UsageError(f"--batch_size={s['batch_size']}: a contrastive batch needs at least 2 samples")
    common.check_image_size(s, s["backbone"])
    common.check_image_size(s, "resnet18", flag="part_size")  # MaskFN's part encoder
    if s["backbone"] == "resnet50" and s["width"] != 64:
        raise app.UsageError(f"--width={s['width']} only applies to --backbone=resnet18")
    path = s["maskfn_encoder"]
    if path:
        if not (path.endswith(".keras") or path.endswith(".weights.h5")):
            raise app.UsageError(f"--maskfn_encoder={path}: give a .keras model or a .weights.h5 file of the default "
                                 "ResNet-18")
        if not os.path.isfile(path):
            raise app.UsageError(f"--maskfn_encoder={path} does not exist")
    if s["dataset"] == "synthetic":
        frames = s["video_seconds"] * s["fps"]
        if frames < 2:
            raise app.UsageError(f"--video_seconds={s['video_seconds']} at --fps={s['fps']} gives fewer than 2 "
                                 "frames per video")
        if s["hard_negatives"] and s["video_seconds"] <= s["t2"]:
            raise app.UsageError(f"--video_seconds={s['video_seconds']} leaves no frame --t2={s['t2']} s away from "
                                 "any anchor: make the videos longer or --hard_negatives=0")


def strategies(s) -> str:
    """The strategies switched on, as the paper's Table 1 names them ("simclr" when none is)."""
    names = [name for name, on in (("timeaug", s["time_aug"]), ("hardneg", s["hard_negatives"] > 0),
                                   ("faceswap", s["face_swap"] > 0), ("maskfn", s["maskfn"])) if on]
    return "+".join(names) or "simclr"


def run_name(s) -> str:
    """``sslfer-<backbone>-<dataset>-<strategies>``: the run directory's prefix."""
    return f"sslfer-{s['backbone']}-{s['dataset']}-{strategies(s)}"


def load_size(s) -> int:
    """Side the frames are cut at before the random crop: the paper's 128 for 112 (same ratio), or the image size
    without augmentation."""
    if s["augment"] == "none":
        return s["image_size"]
    return int(round(s["image_size"] * 128 / 112))


@functools.lru_cache(maxsize=4)
def synthetic_tracks(split: str, train_identities: int, videos_per_identity: int, seconds: float, fps: float,
                     size: int, seed: int):
    """The synthetic videos of one identity split (``"train"`` or ``"val"``, :mod:`ferkeras.data.splits`' disjoint
    ranges) as a :class:`ferkeras.data.video_views.TrackTable`, rendered once per process (tools/compare_sslfer.py
    pre-trains several models on the same videos). Read-only."""
    from ferkeras.data import splits
    from ferkeras.data.video_views import synthetic_video_tracks

    first, count = splits.synthetic_identity_ranges(train_identities)[split]
    start = time.perf_counter()
    table = synthetic_video_tracks(num_identities=count, videos_per_identity=videos_per_identity, seconds=seconds,
                                   fps=fps, size=size, seed=splits.synthetic_split_seeds(seed)[split],
                                   first_identity=first, name=f"synthetic {split} videos")
    logging.info("%s (%.1f s)", table.summary(), time.perf_counter() - start)
    return table


def track_tables(s):
    """``(train table, validation table or None, {reason: frames the reader skipped}})`` for ``--dataset`` (or
    ``--shards``: the prepared shards' frames with their cached landmarks, held in memory; the validation table from
    ``val/`` when the shards have their own)."""
    if s.get("shards"):
        from ferkeras.data import splits
        from ferkeras.data.video_views import TrackTable

        dirs = splits.shard_split_dirs(s["shards"], s["dataset"])
        table = TrackTable.from_records(splits.shard_records(dirs["train"]), name=f"{s['dataset']} shards")
        val = (TrackTable.from_records(splits.shard_records(dirs["val"]), name=f"{s['dataset']} validation shards")
               if s["validation"] and splits.shards_have_own_validation(s["shards"], s["dataset"]) else None)
        logging.info(table.summary())
        return table, val, {}
    if s["dataset"] == "synthetic":
        args = (s["train_identities"], s["videos_per_identity"], s["video_seconds"], s["fps"], load_size(s),
                s["seed"])
        return synthetic_tracks("train", *args), (synthetic_tracks("val", *args) if s["validation"] else None), {}
    from ferkeras.data.readers import VoxCeleb1Reader
    from ferkeras.data.video_views import TrackTable

    reader = VoxCeleb1Reader(s["data_root"], split="train", fps=s["voxceleb_fps"])
    table = TrackTable.from_reader(reader, name="voxceleb1")
    logging.info(table.summary())
    return table, None, {k: int(v) for k, v in reader.skips.counts.items()}


def view_sampler(s, table, seed):
    """The epoch-wise view sampler of the flags' TimeAug / HardNeg / FaceSwap settings over ``table``."""
    from ferkeras.data.video_views import OffsetDistribution, SameFrame, TemporalPositive, ViewSampler

    positive = (TemporalPositive(OffsetDistribution.linear_decay(s["t1"], s["t1_steps"]), max_offset=s["t1"])
                if s["time_aug"] else SameFrame())
    return ViewSampler(table, positive, hard_negatives=s["hard_negatives"], negative_min_offset=s["t2"],
                       negatives_from=s["hard_negatives_from"], num_others=1 if s["face_swap"] > 0 else 0,
                       anchors_per_track=s["anchors_per_track"], seed=seed)


def split_labels(batch):
    """A pre-training batch dict -> ``(views, labels)``, the ``(inputs, targets)`` form Keras' fit and
    ferkeras.training's strategy build take (the model merges the two dicts again)."""
    label_keys = ("identity", "track", "expression", "va")
    return ({k: v for k, v in batch.items() if k not in label_keys},
            {k: v for k, v in batch.items() if k in label_keys})


def pretraining_data(s, sampler, *, epochs, first_epoch=0, stats=None):
    """:func:`ferkeras.methods.sslfer.data.sslfer_dataset` of ``sampler`` with the flags' settings, as
    ``(views, labels)`` batches."""
    from ferkeras.methods.sslfer.data import sslfer_dataset

    ds = sslfer_dataset(sampler, batch_size=s["batch_size"], image_size=s["image_size"], load_size=load_size(s),
                        face_swap=s["face_swap"], face_swap_detect=s["face_swap_detect"], maskfn=s["maskfn"],
                        part_size=s["part_size"], augment="sslfer" if s["augment"] == "sslfer" else None,
                        mask_regions=s["mask_regions"], epochs=epochs, first_epoch=first_epoch, seed=sampler.seed,
                        stats=stats)
    return ds.map(split_labels)


def build_model(s, has_labels: bool):
    """The :class:`ferkeras.models.contrastive.ContrastivePretrainer` of the flags (encoder, SSL-FER objective,
    projection head, online probe when ``has_labels``); compile it separately."""
    from ferkeras.data.schema import EXPRESSIONS
    from ferkeras.methods.sslfer import MaskFN, SSLFERObjective
    from ferkeras.models.backbones import make_backbone
    from ferkeras.models.contrastive import ContrastivePretrainer

    shape = (s["image_size"], s["image_size"], 3)
    encoder = make_backbone(s["backbone"], shape, pooling="avg",
                            width=s["width"] if s["backbone"] == "resnet18" else 64)
    maskfn = None
    if s["maskfn"]:
        maskfn = MaskFN(s["maskfn_encoder"] or None, part_size=s["part_size"],
                        encoder_width=s["maskfn_encoder_width"], num_false_negatives=s["maskfn_num"],
                        weight=s["maskfn_weight"], denominator=s["maskfn_denominator"])
    objective = SSLFERObjective(temperature=s["temperature"], denominator=s["denominator"], symmetric=s["symmetric"],
                                hard_negatives_scope=s["hard_negatives_scope"], maskfn=maskfn)
    probe = s["probe"] and has_labels
    return ContrastivePretrainer(encoder, objective, projection_hidden=tuple(_widths(s)),
                                 projection_dim=s["projection_dim"],
                                 probe_classes=len(EXPRESSIONS) if probe else 0, probe_va=probe,
                                 name="sslfer_pretrainer")


def compile_model(s, model, steps_per_epoch: int, epochs: int):
    """Compiles ``model`` with SSL-FER's optimiser (:mod:`ferkeras.methods.sslfer.optimizer`) and the probe's Adam."""
    import keras

    from ferkeras.methods.sslfer.optimizer import pretraining_optimizer, pretraining_schedule

    schedule = pretraining_schedule(s["lr"], total_steps=steps_per_epoch * epochs,
                                    hold_steps=steps_per_epoch * s["cosine_from_epoch"])
    model.compile(optimizer=pretraining_optimizer(schedule, s["weight_decay"], s["weight_decay_mode"]),
                  probe_optimizer=keras.optimizers.Adam(s["probe_lr"]), jit_compile=False)


def probe_scores(s, model):
    """The online probe scored on ``--num_test`` synthetic faces of the held-out test identities (NumPy reference
    metrics, :func:`ferkeras.training.affect_scores`): ``(metrics, description)``; ``({}, reason)`` without a probe."""
    import numpy as np

    from ferkeras import training
    from ferkeras.data import splits

    if model.expression_probe is None and model.va_probe is None:
        return {}, "no probe (no labels in the pre-training data, or --noprobe)"
    if s["dataset"] != "synthetic":
        return {}, f"no held-out labelled faces for --dataset={s['dataset']}: see the training logs' probe metrics"
    a = splits.synthetic_split_arrays("test", s["num_test"], train_identities=s["train_identities"],
                                      image_size=s["image_size"], seed=s["seed"])
    images = a["images"].astype(np.float32) / 255.0
    features = np.concatenate([np.asarray(model.encoder(images[i:i + 256], training=False))
                               for i in range(0, len(images), 256)])
    labels, preds = {}, {}
    if model.expression_probe is not None:
        labels["expression"] = a["expression"]
        preds["expression"] = np.asarray(model.expression_probe(features, training=False))
    if model.va_probe is not None:
        labels["va"] = np.stack([a["valence"], a["arousal"]], 1)
        preds["va"] = np.asarray(model.va_probe(features, training=False))
    scores = training.affect_scores(labels, preds, num_classes=model.probe_classes or None)
    return scores, (f"online linear probe (trained during pre-training on stop-gradient anchor features) on "
                    f"{len(images)} synthetic faces of {splits.SYNTHETIC_TEST_IDENTITIES} test identities never seen")


def saliency(s, model, table, run_dir):
    """Grad-CAM of the encoder (the paper's Figure 6) into ``saliency.png``: one row per face, columns for the
    probe's predicted-class logit (when there is a probe) and the self-similarity score. Synthetic: one held-out face
    per expression; VoxCeleb1: the first frame of the first tracks. Returns the result.json entry."""
    import numpy as np

    from ferkeras.data import splits
    from ferkeras.data.schema import EXPRESSIONS
    from ferkeras.methods.sslfer.saliency import expression_faces, saliency_figure

    n = s["saliency_images"]
    if s["dataset"] == "synthetic":
        first, count = splits.synthetic_identity_ranges(s["train_identities"])["test"]
        images, expression = expression_faces(s["image_size"], n, seed=s["seed"] + 2, first_identity=first,
                                               num_identities=count)
        labels = [EXPRESSIONS[int(c)] for c in expression]
    else:
        from ferkeras.data.video_views import SameFrame, ViewSampler

        sampler = ViewSampler(table, SameFrame(), anchors_per_track=1, seed=s["seed"])
        batch = next(iter(sampler.dataset(min(n, sampler.num_anchors), image_size=s["image_size"],
                                          drop_remainder=False)))
        images = np.asarray(batch["anchor"])
        labels = [table.identity_names[int(i)] if i >= 0 else "?" for i in np.asarray(batch["identity"])]
    encoders, heads = {}, {}
    if model.expression_probe is not None:
        encoders["Grad-CAM: probe logit\nof the predicted class"] = model.encoder
        heads["Grad-CAM: probe logit\nof the predicted class"] = model.expression_probe
        predicted = np.argmax(np.asarray(model.expression_probe(model.encoder(images, training=False))), axis=1)
        labels = [f"{t}\n(probe: {EXPRESSIONS[int(p)]})" for t, p in zip(labels, predicted)]
    encoders["Grad-CAM: projection on\nthe image's own features"] = model.encoder
    out = saliency_figure(encoders, images, run_dir.file(SALIENCY_FILE), heads=heads, row_labels=labels,
                          title=f"SSL-FER encoder ({strategies(s)})", label_scores=False)
    return {"file": SALIENCY_FILE, "faces": len(images), "scores": sorted(set(out["scores"].values()))}


def data_counts(stats) -> dict:
    """The headline counts of an :class:`~ferkeras.methods.sslfer.data.SSLFERDataStats` for result.json."""
    d = stats.as_dict()
    return {"tracks_used": d.get("tracks used", 0), "anchors_per_epoch": d.get("anchors per epoch", 0),
            "tracks_skipped": sum(v for k, v in d.items() if k.startswith("tracks skipped")),
            "frames_not_anchoring": sum(v for k, v in d.items() if k.startswith("frames not anchoring")),
            "frames_dropped": sum(v for k, v in d.items() if k.startswith("frames dropped")),
            "face_swap_swapped": d.get("face swap swapped", 0),
            "face_swap_fallbacks": sum(v for k, v in d.items() if k.startswith("face swap fallback")),
            "masking_without_landmarks": d.get("masking skipped: no landmarks", 0)}


def run(s):
    """Pre-trains as the settings dict ``s`` (flag names -> values) says; returns ``(result dict, run directory
    path)``. Synthetic videos are rendered once per process (tools/compare_sslfer.py trains several models)."""
    from ferkeras import training

    strategy = common.make_strategy(s)  # first: a strategy must exist before any TensorFlow op (data, model)
    import keras
    import numpy as np

    from ferkeras.methods.sslfer.data import SSLFERDataStats
    from ferkeras.viz import plots

    t0 = time.perf_counter()
    keras.utils.set_random_seed(s["seed"])
    training.set_precision(s["mixed_precision"])  # before any layer is built
    run_dir = common.run_directory(s, run_name(s))
    run_dir.save_flags({holder.name: s[holder.name] for holder in _FLAGS})
    logging.info("run directory: %s", run_dir.path)

    train_table, val_table, reader_skips = track_tables(s)
    sampler = view_sampler(s, train_table, s["seed"])
    steps = s["steps"] or sampler.num_anchors // s["batch_size"]
    if steps < 1:
        raise ValueError(f"{sampler.num_anchors} anchors per epoch give no full batch of --batch_size="
                         f"{s['batch_size']}")
    train_stats, built = [], {}

    def train_stream(start_step):
        """The endless training stream from batch ``start_step`` on (epochs of the sampler keyed by their index,
        so a resumed run sees the same batches). Built once per start step: ferkeras.training.fit asks for it
        twice (its element spec, then the stream), and tracing the augmentation graph takes seconds."""
        if start_step not in built:
            stats = SSLFERDataStats()
            train_stats.append(stats)
            built[start_step] = pretraining_data(s, sampler, epochs=None, stats=stats).skip(start_step)
        return built[start_step]

    val_ds, val_stats = None, None
    if val_table is not None:
        val_sampler = view_sampler(s, val_table, s["seed"] + 1)
        val_stats = SSLFERDataStats()
        val_ds = pretraining_data(s, val_sampler, epochs=None, stats=val_stats).take(
            s["val_steps"] or max(1, val_sampler.num_anchors // s["batch_size"]))
    sampler.stats.report()
    data_seconds = time.perf_counter() - t0

    with strategy.scope():
        model = build_model(s, has_labels=train_table.has_labels)
        compile_model(s, model, steps, s["epochs"])
    logging.info("model: SSL-FER %s (%s), %s trainable parameters", s["backbone"], strategies(s),
                 f"{sum(int(np.prod(w.shape)) for w in model.pretrain_variables()):,}")

    monitor = "val_loss" if val_ds is not None else "loss"
    history, train_seconds = training.fit(model, train_stream, run_dir, epochs=s["epochs"], steps_per_epoch=steps,
                                          validation_data=val_ds, monitor=monitor, verbose=s["verbose"],
                                          backup_freq=s["backup_every"] or "epoch")
    final_logs = {k: float(v[-1]) for k, v in history.history.items() if v}
    iterations = int(model.optimizer.iterations.numpy())
    if s["checkpoint"] == "best":
        run_dir.restore_checkpoint(model)
        kept = f"{run_dir.CHECKPOINT} (lowest {monitor})"
    else:  # the last weights become the run's checkpoint, so every reader of the run gets them
        model.save(run_dir.checkpoint_path)
        kept = f"{run_dir.CHECKPOINT} (the last epoch's weights)"
        with open(run_dir.file(run_dir.CHECKPOINT_RECORD), "w") as f:  # best.json describes what best.keras holds
            json.dump({"monitor": None, "kept": "last", "epoch": s["epochs"], "logs": final_logs}, f, indent=1)
    model.encoder.save(run_dir.file(ENCODER_FILE))

    metrics, probe_description = probe_scores(s, model)
    figures = {}
    curves = run_dir.read_history()
    if curves:
        plots.plot_training_curves(curves, run_dir.file(run_dir.CURVES), title=run_name(s))
        figures["training_curves"] = run_dir.CURVES
    if s["saliency_images"]:
        figures["saliency"] = saliency(s, model, train_table, run_dir)
    counts = {"train": data_counts(train_stats[-1]) if train_stats else {}, "reader_skipped": reader_skips}
    if val_stats is not None:
        counts["val"] = data_counts(val_stats)
    result = {
        "metrics": metrics, "probe": probe_description, "final_epoch": final_logs,
        "strategies": {"name": strategies(s), "time_aug": s["time_aug"], "face_swap": s["face_swap"],
                       "hard_negatives": s["hard_negatives"], "maskfn": s["maskfn"]},
        "data": counts, "data_details": {"train": train_stats[-1].as_dict() if train_stats else {},
                                         "val": val_stats.as_dict() if val_stats is not None else {}},
        "encoder": ENCODER_FILE, "encoder_features": int(model.feature_dim),
        "evaluated_model": f"{kept}; {ENCODER_FILE} is its encoder",
        "checkpoint_iterations": int(model.optimizer.iterations.numpy()),
        "figures": figures, "flags": s, "data_seconds": data_seconds, "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - t0, "steps_per_epoch": steps, "epochs": s["epochs"],
        "iterations": iterations, "distribution": training.strategy_info(strategy),
    }
    run_dir.write_result(result)
    logging.info("pre-training: %s", ", ".join(f"{k} {v:.4g}" for k, v in sorted(final_logs.items())
                                                if math.isfinite(v)))
    return result, run_dir.path


def summary_title(s) -> str:
    """The heading of the terminal summary (:func:`experiments.common.summary`)."""
    if s["dataset"] == "synthetic" and s["probe"]:
        return f"SSL-FER pre-training ({strategies(s)}): online linear probe on held-out faces"
    return f"SSL-FER pre-training ({strategies(s)}) on {s['dataset']}"


def main(argv):
    common.main(argv, settings, check, run, summary_title)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(main)
