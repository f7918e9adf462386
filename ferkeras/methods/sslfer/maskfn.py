"""MaskFN: false-negative cancellation from eye and mouth features (Shu et al., BMVC 2022, Sec. 3.4, Eq. 2).

Shu, Gu, Yang, Lo, "Revisiting Self-Supervised Contrastive Learning for Facial Expression Recognition", BMVC 2022.
Faces of the same expression are false negatives of each other in instance discrimination. MaskFN guesses them
from the eyes and the mouth:

1. crop the eyes ``x^e`` and the mouth ``x^m`` of every anchor from its landmarks (the data pipeline does this:
   :func:`ferkeras.face.regions.crop_regions`; the batch carries them as ``"parts"``, ``(B, 2, P, P, 3)``, with
   ``"parts_valid"`` (B,) False for faces without landmarks);
2. ``z^e, z^m = h(x^e), h(x^m)`` with a FROZEN feature encoder ``h`` (ImageNet ResNet-18 in the paper), globally
   average-pooled (:func:`part_features`);
3. concatenate them into ``z^cat`` and take the cosine similarity of every pair of samples;
4. for each anchor the ``N_FN`` most similar samples (default 1) that are neither its positive nor one of its hard
   negatives become extra positives (:func:`pick_false_negatives`); no gradient flows through this selection.

The loss (:func:`maskfn_loss`) is ``L1 + w L2`` (Eq. 2; ``w = 1/2`` in the paper, 0.8 in the authors' code):

    L1 = E_i[ -log( e^{s(x_i, x_j)/tau} / sum_k 1[k != i, j, l] e^{s(x_i, x_k)/tau} ) ],
    L2 = E_i[ -log( e^{s(x_i, x_l)/tau} / sum_k 1[k != i, j, l] e^{s(x_i, x_k)/tau} ) ],

with ``x_j`` the positive and ``x_l`` the picked sample. Exactly which views take part, in the candidate layout of
:func:`ferkeras.losses.info_nce.view_candidates` (``[a_1..a_B, p_1..p_B, h_11..h_BK]``), for anchor ``a_i``:

* positive ``x_j`` = ``p_i``; extra positive ``x_l`` = ``a_l``, the ANCHOR view of the picked sample ``l`` (the
  parts, hence the similarity, are those of the unaugmented anchor images);
* both denominators (``denominator="printed"``, the default, Eq. 2 as printed) sum over every candidate except
  ``a_i`` itself, ``p_i`` and every picked ``a_l``: the other samples' anchor and positive views (``p_l``
  included), and the hard negatives (``hard_negatives_scope`` as in ``view_candidates``);
* ``denominator="simclr"`` keeps ``p_i`` and ``a_l`` in both denominators instead (the SimCLR / SupCon form);
* with ``N_FN > 1`` picks, ``L2`` of one anchor is the MEAN over its picks, so ``w`` is the total weight of the
  extra positives whatever ``N_FN`` is;
* the loss is the mean over anchors of ``l1_i + w * l2_i``; an anchor that picked nothing contributes ``l1_i``
  alone (its denominator then excludes only ``a_i`` and ``p_i``: Eq. 1 as printed).

Which samples can be picked: sample ``l`` is eligible for anchor ``i`` when ``l != i`` (the positive and the hard
negatives of ``i`` are views of sample ``i`` itself, so they are never candidates), both ``parts_valid[i]`` and
``parts_valid[l]`` hold (a face without landmarks is never picked and picks nothing), and ``exclude[i, l]`` is
False (optionally: samples of the same track, ``exclude_same_track=True``). An anchor with fewer than ``N_FN``
eligible samples picks only those. Ties go to the lower batch index.
"""

from __future__ import annotations

import os

import keras
from keras import ops

from ferkeras.losses.info_nce import (
    EPS,
    MASKED_LOGIT,
    TEMPERATURE,
    check_denominator,
    check_temperature,
    cosine_similarity_matrix,
    info_nce_from_logits,
    masked_mean,
    view_candidates,
)

MASKFN_WEIGHT = 0.5
"""Weight of L2 in SSL-FER's total loss L1 + 1/2 L2 (Sec. 3.4); the authors' code uses 0.8."""

NUM_FALSE_NEGATIVES = 1
"""N_FN, extra positives per anchor (Sec. 3.4: one by default; Table 4 also tries two)."""

PART_SIZE = 64
"""Side of the eye and mouth crops the part encoder sees (the authors' code: 64)."""


def part_features(encoder, parts):
    """Concatenated, globally average-pooled features of every part: ``(B, R, P, P, 3)`` -> ``(B, R * F)``.

    ``encoder`` is any Keras model taking ``(N, P, P, 3)`` images (ferkeras backbones take RGB in [0, 1]) and
    returning ``(N, F)`` features or an ``(N, h, w, F)`` map (then averaged over ``h, w``). It runs in inference
    mode (``training=False``: frozen batch-norm statistics) and the result carries no gradient.
    """
    parts = ops.convert_to_tensor(parts)
    if len(parts.shape) != 5:
        raise ValueError(f"parts must be (B, R, P, P, C) crops, got shape {parts.shape}")
    shape = ops.shape(parts)
    flat = ops.reshape(parts, (-1, shape[2], shape[3], shape[4]))
    features = encoder(flat, training=False)
    if len(features.shape) == 4:
        features = ops.mean(features, axis=(1, 2))
    elif len(features.shape) != 2:
        raise ValueError(f"the part encoder must return (N, F) or (N, h, w, F) features, got shape {features.shape}")
    features = ops.cast(features, "float32")
    return ops.stop_gradient(ops.reshape(features, (shape[0], -1)))


def pick_false_negatives(features, valid=None, num_false_negatives=NUM_FALSE_NEGATIVES, exclude=None, eps=EPS):
    """The ``(B, B)`` bool matrix ``picked[i, l]``: sample ``l`` is one of anchor ``i``'s false negatives.

    Args:
        features: ``(B, F)`` concatenated part features ``z^cat``.
        valid: ``(B,)`` bool or None (all valid): samples with usable parts.
        num_false_negatives: ``N_FN`` >= 1.
        exclude: ``(B, B)`` bool or None: pairs that must not be picked besides ``l == i``.
        eps: norm floor of the cosine similarity.

    Returns:
        bool ``(B, B)`` (never ``i == l``, never an invalid row or column), computed without gradient.
    """
    num = int(num_false_negatives)
    if num < 1:
        raise ValueError(f"num_false_negatives must be >= 1, got {num_false_negatives!r}")
    features = ops.stop_gradient(ops.cast(features, "float32"))
    batch = ops.shape(features)[0]
    similarity = cosine_similarity_matrix(features, features, eps)
    eligible = ops.logical_not(ops.eye(batch, dtype="bool"))
    if valid is not None:
        valid = ops.reshape(ops.cast(valid, "bool"), (-1,))
        eligible = ops.logical_and(eligible, ops.logical_and(valid[:, None], valid[None, :]))
    if exclude is not None:
        eligible = ops.logical_and(eligible, ops.logical_not(ops.cast(exclude, "bool")))
    scores = ops.where(eligible, similarity, ops.full_like(similarity, MASKED_LOGIT))
    if isinstance(batch, int):
        _, indices = ops.top_k(scores, k=min(num, batch), sorted=True)
    else:
        indices = _top_k_dynamic(scores, num)
    chosen = ops.sum(ops.one_hot(indices, batch, dtype="float32"), axis=1) > 0  # (B, B)
    return ops.stop_gradient(ops.logical_and(chosen, eligible))


def _top_k_dynamic(scores, num):
    """Top-``num`` column indices when B is only known at run time: the columns are padded so ``num`` always fits,
    and indices into the padding become -1 (one-hot to nothing)."""
    batch = ops.shape(scores)[0]
    padded = ops.pad(scores, [[0, 0], [0, num]], constant_values=2 * MASKED_LOGIT)
    _, indices = ops.top_k(padded, k=num, sorted=True)
    return ops.where(indices < batch, indices, ops.full_like(indices, -1))


def maskfn_loss(anchor, positive, hard_negatives, picked, temperature=TEMPERATURE, weight=MASKFN_WEIGHT,
                denominator="printed", symmetric=False, hard_negatives_scope="all", eps=EPS):
    """SSL-FER's ``L1 + w L2`` (Eq. 2) with the false negatives ``picked`` (see the module docstring).

    Args:
        anchor, positive: ``(B, D)`` projections; hard_negatives: ``(B, K, D)`` or None.
        picked: ``(B, B)`` bool from :func:`pick_false_negatives`.
        temperature: tau (0.07).
        weight: ``w`` of L2 (1/2 in the paper).
        denominator: ``"printed"`` (Eq. 2: both denominators exclude ``p_i`` and the picked ``a_l``) or
            ``"simclr"`` (both keep them).
        symmetric: also use the positive views as anchors (their extra positives are the same picked ``a_l``).
        hard_negatives_scope: as in :func:`ferkeras.losses.info_nce.view_candidates`.

    Returns:
        dict: ``"loss"`` (mean over anchors of ``l1 + w l2``), ``"l1"`` (mean of ``l1`` over the anchors),
        ``"l2"`` (mean of ``l2`` over the anchors that picked something; 0 if none did), ``"picked_fraction"``
        (fraction of anchors with a pick), ``"per_anchor"`` ``(A,)`` and ``"valid"`` ``(A,)``.
    """
    check_denominator(denominator)
    temperature = check_temperature(temperature)
    anchors, candidates, positive_mask, exclude_mask = view_candidates(
        anchor, positive, hard_negatives, symmetric, hard_negatives_scope)
    picked = ops.cast(ops.stop_gradient(ops.cast(picked, "float32")) > 0, "bool")
    if symmetric:
        picked = ops.concatenate([picked, picked], axis=0)
    extra_columns = ops.shape(candidates)[0] - ops.shape(picked)[1]
    picked = ops.pad(picked, [[0, 0], [0, extra_columns]], constant_values=False)  # picks are anchor views a_l
    picked = ops.logical_and(picked, ops.logical_not(exclude_mask))
    logits = cosine_similarity_matrix(anchors, candidates, eps) / temperature
    # One denominator for both terms: in the printed form each term's positive is left out by being its positive
    # and the other term's positive by being excluded; in the SimCLR form both stay in.
    printed = denominator == "printed"
    exclude_1 = ops.logical_or(exclude_mask, picked) if printed else exclude_mask
    exclude_2 = ops.logical_or(exclude_mask, positive_mask) if printed else exclude_mask
    l1, valid_1 = info_nce_from_logits(logits, positive_mask, exclude_1, denominator, "mean")
    l2, has_pick = info_nce_from_logits(logits, picked, exclude_2, denominator, "mean")
    per_anchor = l1 + float(weight) * l2
    return {
        "loss": masked_mean(per_anchor, valid_1),
        "l1": masked_mean(l1, valid_1),
        "l2": masked_mean(l2, has_pick),
        "picked_fraction": ops.mean(ops.cast(ops.any(picked, axis=1), "float32")),
        "per_anchor": per_anchor,
        "valid": valid_1,
    }


def default_part_encoder(part_size=PART_SIZE, width=64, weights=None):
    """The paper's part encoder: a ferkeras ResNet-18 (:func:`ferkeras.models.backbones.resnet18`), average-pooled.

    ``weights`` is None (random initialisation: the default, nothing is downloaded) or the path of a
    ``.weights.h5`` file for this exact architecture (e.g. ImageNet weights the user converted).
    """
    from ferkeras.models.backbones import resnet18

    encoder = resnet18((part_size, part_size, 3), pooling="avg", width=width, name="maskfn_part_encoder")
    if weights is not None:
        if not os.path.exists(weights):
            raise FileNotFoundError(f"MaskFN part-encoder weights file {weights!r} does not exist")
        encoder.load_weights(weights)
    return encoder


def load_part_encoder(encoder=None, part_size=PART_SIZE, width=64):
    """A frozen part encoder from: a Keras model; a ``.keras`` file; a ``.weights.h5`` file of the default
    ResNet-18; a serialised Keras config (dict, as ``get_config`` stores it); or None (a random ResNet-18)."""
    if encoder is None:
        model = default_part_encoder(part_size, width)
    elif isinstance(encoder, keras.Model):
        model = encoder
    elif isinstance(encoder, dict):
        model = keras.saving.deserialize_keras_object(encoder)
    elif isinstance(encoder, (str, os.PathLike)):
        path = os.fspath(encoder)
        if not os.path.exists(path):
            raise FileNotFoundError(f"MaskFN part encoder file {path!r} does not exist")
        if path.endswith(".weights.h5"):
            model = default_part_encoder(part_size, width, weights=path)
        elif path.endswith(".keras"):
            model = keras.saving.load_model(path, compile=False)
        else:
            raise ValueError(f"MaskFN part encoder file {path!r} must be a .keras model or a .weights.h5 file of "
                             "the default ResNet-18")
    else:
        raise TypeError(f"MaskFN encoder must be a keras.Model, a file path, a config dict or None, got "
                        f"{type(encoder).__name__}")
    model.trainable = False
    return model


@keras.saving.register_keras_serializable(package="ferkeras")
class MaskFN(keras.layers.Layer):
    """SSL-FER's MaskFN (Sec. 3.4): a frozen part encoder plus the false-negative selection and Eq. 2.

    Calling the layer on ``parts`` ``(B, R, P, P, 3)`` returns their frozen features ``(B, R * F)``
    (:func:`part_features`); :meth:`loss` picks the false negatives and computes ``L1 + w L2``.

    Args:
        encoder: the frozen feature encoder ``h``: a Keras model (any: ImageNet ResNet-18 loaded by the user, one
            the user trained, ...), the path of a ``.keras`` model or of a ``.weights.h5`` file of the default
            ResNet-18, or None (default): a randomly initialised ferkeras ResNet-18. Nothing is ever downloaded.
            It is frozen (``trainable = False``) and run in inference mode; its weights are saved with the layer.
        part_size: crop side ``P`` the default encoder is built for (64).
        encoder_width: stem width of the default ResNet-18 (64 = the standard network).
        num_false_negatives: ``N_FN`` (1).
        weight: ``w`` in ``L1 + w L2`` (1/2; the authors' code 0.8).
        denominator: ``"printed"`` (Eq. 2 as printed, default) or ``"simclr"``.
        exclude_same_track: also never pick samples of the anchor's own track (needs ``"track"`` in the batch).
    """

    def __init__(self, encoder=None, part_size=PART_SIZE, encoder_width=64,
                 num_false_negatives=NUM_FALSE_NEGATIVES, weight=MASKFN_WEIGHT, denominator="printed",
                 exclude_same_track=False, **kwargs):
        super().__init__(**kwargs)
        self.part_size = int(part_size)
        self.encoder_width = int(encoder_width)
        self.num_false_negatives = int(num_false_negatives)
        if self.num_false_negatives < 1:
            raise ValueError(f"num_false_negatives must be >= 1, got {num_false_negatives!r}")
        self.weight = float(weight)
        if not self.weight >= 0:
            raise ValueError(f"MaskFN weight must be >= 0, got {weight!r}")
        self.denominator = check_denominator(denominator)
        self.exclude_same_track = bool(exclude_same_track)
        self.encoder = load_part_encoder(encoder, self.part_size, self.encoder_width)
        # The encoder arrives built; marking the layer built keeps Keras from tracing an objective that owns it.
        self.built = True

    def call(self, parts):
        return part_features(self.encoder, parts)

    def compute_output_spec(self, parts):
        features = self.encoder.compute_output_spec(
            keras.KerasTensor((None,) + tuple(parts.shape[2:]), dtype=parts.dtype))
        width = features.shape[-1] if features.shape[-1] is None else features.shape[-1] * parts.shape[1]
        return keras.KerasTensor((parts.shape[0], width), dtype="float32")

    def pick(self, part_features_, parts_valid=None, track=None):
        """:func:`pick_false_negatives` with this layer's ``N_FN`` (and same-track exclusion when enabled)."""
        exclude = None
        if self.exclude_same_track:
            if track is None:
                raise ValueError("MaskFN(exclude_same_track=True) needs the batch's 'track' ids")
            track = ops.reshape(track, (-1,))
            exclude = ops.equal(track[:, None], track[None, :])
        return pick_false_negatives(part_features_, parts_valid, self.num_false_negatives, exclude)

    def loss(self, projections, part_features_, parts_valid=None, track=None, temperature=TEMPERATURE,
             symmetric=False, hard_negatives_scope="all", eps=EPS):
        """Picks the false negatives and returns :func:`maskfn_loss`'s dict (plus ``"picked"``, ``(B, B)``)."""
        picked = self.pick(part_features_, parts_valid, track)
        out = maskfn_loss(projections["anchor"], projections["positive"], projections.get("hard_negatives"),
                          picked, temperature, self.weight, self.denominator, symmetric, hard_negatives_scope, eps)
        out["picked"] = picked
        return out

    def get_config(self):
        config = super().get_config()
        config.update({
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "part_size": self.part_size, "encoder_width": self.encoder_width,
            "num_false_negatives": self.num_false_negatives, "weight": self.weight,
            "denominator": self.denominator, "exclude_same_track": self.exclude_same_track,
        })
        return config
