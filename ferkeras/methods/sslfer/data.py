"""SSL-FER's pre-training input pipeline: views from face tracks -> FaceSwap -> eye / mouth parts -> per-view
spatial augmentation -> batch, all inside ``tf.data``.

Shu, Gu, Yang, Lo, "Revisiting Self-Supervised Contrastive Learning for Facial Expression Recognition", BMVC 2022,
Fig. 4 and Secs. 3.2-3.4, 4.1.  Per anchor frame of a face track:

1. **TimeAug** (Sec. 3.2.1): the positive is a frame of the same track at an offset ``t1`` drawn from a decreasing
   distribution over ``[0, T1]``, random sign (:class:`~ferkeras.data.video_views.TemporalPositive`; T1 = 1 s,
   5:4:3:2:1 by default).  Off: the positive is the anchor frame itself (SimCLR: a second augmentation of one
   image).
2. **HardNeg** (Sec. 3.3): ``K`` frames of the same track (or identity) at least ``T2`` = 3 s away.
3. **FaceSwap** (Sec. 3.2.2): with probability ``face_swap`` the positive's eyes, brows, nose and mouth are pasted
   onto the face of another person (a frame of another identity drawn from the whole table)
   (:class:`~ferkeras.augment.faceswap.FaceSwap`; faces without usable landmarks keep the unswapped positive, counted).
4. **MaskFN parts** (Sec. 3.4, step 1): eye and mouth crops of the *unaugmented* anchor from its landmarks
   (:func:`~ferkeras.face.regions.crop_regions`), for the frozen part encoder of the objective.
5. **Spatial augmentation** (Sec. 4.1), every view on its own draws (:class:`~ferkeras.augment.views.
   MultiViewAugment` over :func:`~ferkeras.augment.ssl.sslfer_steps`): landmark masking of eyes or mouth, the
   frames are cut at ``load_size`` (the paper's "resize 128"), random crop ``image_size`` (112), flip, blur,
   colour jitter, grayscale.

Every strategy has its switch, so the plain SimCLR baseline is the same pipeline with ``time_aug=False,
face_swap=0, hard_negatives=0, maskfn=False``.  One batch (a dict; no labels tuple)::

    "anchor", "positive"  float32 (B, S, S, 3) in [0, 1]
    "hard_negatives"      float32 (B, K, S, S, 3)      when K > 0
    "parts"               float32 (B, 2, P, P, 3)      eyes, mouth of the unaugmented anchor, when MaskFN is on
    "parts_valid"         bool    (B,)                 False: the anchor has no landmarks (parts = whole image)
    "identity", "track"   int32   (B,)                 identity -1 = unknown
    "expression" int32 (B,), "va" float32 (B, 2)       probe labels, when the source has them (-1 / NaN unknown)

with ``metadata=True`` also ``"timestamp"``, ``"positive_offset"`` (s), ``"hard_negatives_offset"`` and
``"face_swapped"`` (B,) bool, for inspection.

Labelled frames for the downstream evaluation of synthetic runs come from :mod:`ferkeras.data.splits`
(:func:`~ferkeras.data.splits.synthetic_split_arrays`: disjoint train / validation / test identities); pre-train on
:func:`~ferkeras.data.video_views.synthetic_video_tracks` of the training identities (``first_identity=0``,
``num_identities`` = the training identities) so the test identities stay unseen.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Dict, Mapping, Optional, Union

import tensorflow as tf

from ferkeras.augment.faceswap import FaceSwap, FaceSwapCounter
from ferkeras.augment.ssl import MaskRegion, Step, sslfer_steps
from ferkeras.augment.views import MultiViewAugment
from ferkeras.data.elements import AUTOTUNE, PipelineStats
from ferkeras.data.video_views import (OffsetsLike, SameFrame, TemporalPositive, TrackTable, ViewSampler, ViewStats)
from ferkeras.face.defaults import FACE_MARGIN
from ferkeras.face.regions import crop_regions

logger = logging.getLogger("ferkeras.methods.sslfer")

PAPER_LOAD_SIZE, PAPER_IMAGE_SIZE = 128, 112
"""The paper's "resize (128, 128), random crop (112, 112)" (Sec. 4.1)."""
PART_SIZE = 64
"""Side of the MaskFN eye / mouth crops (the authors' code)."""
BATCH_KEYS = ("anchor", "positive", "hard_negatives", "parts", "parts_valid", "identity", "track", "expression",
              "va")
"""Keys a batch may hold (see the module docstring); everything else is metadata."""
METADATA_KEYS = ("timestamp", "positive_offset", "hard_negatives_offset", "face_swapped")


@dataclasses.dataclass
class SSLFERDataStats:
    """What one :func:`sslfer_dataset` counted: the sampler's skipped tracks and frames (fixed when built), the
    decode statistics, FaceSwap's swaps and fallbacks and the masking step's faces without landmarks (both grow
    while the dataset is iterated)."""

    views: Optional[ViewStats] = None
    decode: Optional[PipelineStats] = None
    face_swap: Optional[FaceSwapCounter] = None
    mask_no_landmarks: Optional[tf.Variable] = None

    def as_dict(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        if self.views is not None:
            out.update(self.views.as_dict())
        if self.decode is not None:
            out["elements attempted"] = int(self.decode.attempted.numpy())
            out["elements decoded"] = int(self.decode.decoded.numpy())
        if self.face_swap is not None:
            out.update({f"face swap {k}": v for k, v in self.face_swap.as_dict().items()})
        if self.mask_no_landmarks is not None:
            out["masking skipped: no landmarks"] = int(self.mask_no_landmarks.numpy())
        return out

    def summary(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self.as_dict().items())

    def report(self) -> None:
        logger.info("SSL-FER data:\n%s", self.summary())


def _masking_step(stack) -> Optional[MaskRegion]:
    for step in getattr(stack, "steps", ()):
        if isinstance(step, MaskRegion):
            return step
    return None


def sslfer_dataset(source: Union[TrackTable, ViewSampler], *, batch_size: int = 256,
                   image_size: int = PAPER_IMAGE_SIZE, load_size: Optional[int] = None, time_aug: bool = True,
                   offsets: Optional[OffsetsLike] = None, face_swap: Union[float, FaceSwap] = 0.5,
                   face_swap_detect: bool = True, hard_negatives: int = 1, negative_min_offset: float = 3.0,
                   negatives_from: str = "track", maskfn: bool = True, part_size: int = PART_SIZE,
                   part_margin: float = 0.15, augment: Union[str, None, Step, Mapping] = "sslfer",
                   mask_regions: bool = True, anchors_per_track: Optional[int] = None, epochs: Optional[int] = 1,
                   first_epoch: int = 0, seed: Optional[int] = 0, margin: float = FACE_MARGIN,
                   deterministic: bool = True, drop_remainder: bool = True, metadata: bool = False, num_parallel_calls=AUTOTUNE,
                   stats: Optional[SSLFERDataStats] = None) -> tf.data.Dataset:
    """SSL-FER's pre-training batches (see the module docstring for the steps and the batch).

    Args:
      source: a :class:`~ferkeras.data.video_views.TrackTable` (the sampler is built from the arguments below) or a
        ready :class:`~ferkeras.data.video_views.ViewSampler` (its positive rule, ``hard_negatives`` and
        ``anchors_per_track`` are used; ``time_aug`` / ``offsets`` / ``hard_negatives`` are then ignored; it needs
        ``num_others >= 1`` for FaceSwap).
      batch_size: B (256 in the paper).
      image_size: side S of the views the model sees (112).
      load_size: side the frames are cut at before the random crop (default ``image_size`` x 128 / 112; with
        ``augment=None`` it is ``image_size``).
      time_aug: TimeAug on (positive at a drawn offset) or off (positive = the anchor frame).
      offsets: TimeAug's ``P(t1)`` (default :meth:`~ferkeras.data.video_views.OffsetDistribution.linear_decay`).
      face_swap: probability that a positive is face-swapped (0 = off; the paper 0.5, the authors' code 0.8), or a
        ready :class:`~ferkeras.augment.faceswap.FaceSwap`.
      face_swap_detect: run dlib where a face has no landmarks (else such faces fall back, counted).
      hard_negatives: K (0 = HardNeg off).  negative_min_offset: T2 (3 s).  negatives_from: "track" / "identity".
      maskfn: emit the anchor's eye / mouth crops ``"parts"`` (``part_size``, ``part_margin``) for MaskFN.
      augment: ``"sslfer"`` (the paper's stack, :func:`~ferkeras.augment.ssl.sslfer_steps`, seeded from ``seed``),
        None (no augmentation), one step / :class:`~ferkeras.augment.ssl.Compose` for every view, or a mapping
        ``view -> stack`` for :class:`~ferkeras.augment.views.MultiViewAugment`.
      mask_regions: include the landmark masking step in the ``"sslfer"`` stack.
      anchors_per_track: anchors per track and epoch (None: every frame that can anchor).
      epochs, first_epoch: see :meth:`~ferkeras.data.video_views.ViewSampler.elements` (every pass over a finite
        dataset draws new pairs; None = endless stream keyed by epoch index).
      seed: seeds the sampler, FaceSwap's draws and the augmentation.
      margin: face box widening when frames are cut from larger images.
      deterministic: keep the order through the parallel decode and run the random steps sequentially, so a
        seeded pipeline is reproducible.
      drop_remainder: drop the last partial batch (contrastive batches should be full).
      metadata: keep ``"timestamp"``, the views' offsets and ``"face_swapped"`` in the batch.
      stats: a :class:`SSLFERDataStats` filled with this pipeline's counters.
    Returns:
      ``tf.data.Dataset`` of batch dicts, prefetched.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(face_swap, FaceSwap):
        swapper: Optional[FaceSwap] = face_swap
    elif not 0.0 <= float(face_swap) <= 1.0:
        raise ValueError(f"face_swap must be a probability in [0, 1] or a FaceSwap, got {face_swap}")
    else:
        swapper = FaceSwap(float(face_swap), detect=face_swap_detect, seed=seed) if float(face_swap) > 0 else None
    if isinstance(source, ViewSampler):
        sampler = source
        if swapper is not None and sampler.num_others < 1:
            raise ValueError("FaceSwap needs the sampler to draw identity images: build it with num_others=1")
    elif isinstance(source, TrackTable):
        positive = TemporalPositive(offsets) if time_aug else SameFrame()
        sampler = ViewSampler(source, positive, hard_negatives=hard_negatives, negative_min_offset=negative_min_offset,
                              negatives_from=negatives_from, num_others=1 if swapper is not None else 0,
                              anchors_per_track=anchors_per_track, seed=seed)
    else:
        raise TypeError(f"source must be a TrackTable or a ViewSampler, got {type(source).__name__}")
    if sampler.num_positives != 1:
        raise ValueError("SSL-FER uses one positive per anchor; the sampler draws "
                         f"{sampler.num_positives}")

    if load_size is None:
        load_size = (image_size if augment is None
                     else int(round(image_size * PAPER_LOAD_SIZE / PAPER_IMAGE_SIZE)))
    if load_size < image_size:
        raise ValueError(f"load_size ({load_size}) must be >= image_size ({image_size})")
    if augment is None and load_size != image_size:
        raise ValueError(f"without augmentation nothing crops load_size ({load_size}) to image_size ({image_size})")
    views = ["anchor", "positive"] + (["hard_negatives"] if sampler.hard_negatives else [])
    if isinstance(augment, str):
        if augment != "sslfer":
            raise ValueError(f"augment must be 'sslfer', None, a step or a view -> stack mapping; got {augment!r}")
        augment = sslfer_steps(resize=None if load_size == image_size else load_size, crop=image_size,
                               mask=mask_regions, seed=seed)
    if augment is None:
        augmenter = None
    elif isinstance(augment, Mapping):
        augmenter = MultiViewAugment(augment)
    else:
        augmenter = MultiViewAugment({view: augment for view in views})

    decode = PipelineStats("sslfer views")
    if stats is not None:
        stats.views, stats.decode = sampler.stats, decode
        stats.face_swap = None if swapper is None else swapper.counter
        mask = None if augmenter is None else _masking_step(next(iter(augmenter.stacks.values())))
        stats.mask_no_landmarks = None if mask is None else mask.skipped_no_landmarks
    ds = sampler.elements(image_size=load_size, margin=margin, epochs=epochs, first_epoch=first_epoch,
                          deterministic=deterministic, num_parallel_calls=num_parallel_calls, stats=decode,
                          metadata=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    keep = set(BATCH_KEYS) | (set(METADATA_KEYS) if metadata else set())

    def assemble(batch):
        batch = dict(batch)
        if swapper is not None:
            positive, landmarks, swapped = swapper(batch["positive"], batch["others"][:, 0],
                                                   batch["positive_landmarks"], batch["others_landmarks"][:, 0],
                                                   return_swapped=True)
            batch["positive"], batch["positive_landmarks"], batch["face_swapped"] = positive, landmarks, swapped
        else:
            batch["face_swapped"] = tf.zeros_like(batch["track"], tf.bool)
        if maskfn:
            batch["parts"], batch["parts_valid"] = crop_regions(batch["anchor"], batch["anchor_landmarks"],
                                                                size=part_size, margin=part_margin)
        if augmenter is not None:
            batch = augmenter(batch)
        return {k: v for k, v in batch.items() if k in keep}

    # Random draws (FaceSwap, augmentation) in a reproducible order when deterministic.
    if deterministic:
        ds = ds.map(assemble)
    else:
        ds = ds.map(assemble, num_parallel_calls=num_parallel_calls, deterministic=False)
    return ds.prefetch(AUTOTUNE)


__all__ = ("BATCH_KEYS", "METADATA_KEYS", "PAPER_IMAGE_SIZE", "PAPER_LOAD_SIZE", "PART_SIZE", "SSLFERDataStats",
           "sslfer_dataset")
