"""InfoNCE over cosine similarities, with one or several positives per anchor (SimCLR, SSL-FER, SupCon, RMFER).

The equation (Shu, Gu, Yang, Lo, "Revisiting Self-Supervised Contrastive Learning for Facial Expression
Recognition", BMVC 2022, Eq. 1; Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations" (SimCLR), ICML 2020, Eq. 1; van den Oord et al., "Representation Learning with Contrastive
Predictive Coding", 2018):

    loss_i = -log( e^{s(x_i, x_j)/tau} / sum_k 1[k in D_i] e^{s(x_i, x_k)/tau} ),   s = cosine similarity,

for an anchor ``x_i`` with positive ``x_j`` and the candidate set ``D_i`` of its denominator. The two forms:

* ``denominator="simclr"`` (default): ``D_i`` = every candidate except the anchor itself, the positive INCLUDED
  (``1[k != i]``). This is SimCLR's NT-Xent and what the SSL-FER authors' code computes (cross-entropy over the
  logits with the positive as target class).
* ``denominator="printed"``: ``D_i`` leaves the positive(s) out as well, ``1[k != i, j]``, as SSL-FER's Eq. 1 (and
  Eq. 2 for MaskFN) is printed. The loss is then unbounded below (it falls as the positive's similarity grows past
  the negatives') and an anchor needs at least one negative.

Building blocks, from the most general:

* :func:`info_nce_from_logits`: any ``(A, C)`` logits, a positive weight matrix and an exclusion mask;
* :func:`info_nce_per_anchor` / :func:`info_nce`: the same on cosine similarities of ``(A, D)`` anchors and
  ``(C, D)`` candidates, divided by the temperature;
* :func:`view_candidates` / :func:`info_nce_views`: the SimCLR / SSL-FER batch layout of anchor, positive and hard
  negative views (:class:`InfoNCEObjective` is its :class:`~ferkeras.losses.objective.ContrastiveObjective`).

Several positives per anchor (SupCon: Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020; MaskFN's
extra positive; RMFER's positives from other faces) are weights ``w_ic >= 0`` in ``positive_weights``:

* ``positive_reduction="mean"`` (SupCon's L_out): ``loss_i = sum_c w_ic (lse_i - s_ic) / sum_c w_ic``;
* ``"sum"``: the same without the division (e.g. MaskFN's ``L1 + 1/2 L2``: weights 1 and 1/2);
* ``"logsumexp"`` (SupCon's L_in; RMFER's ACL): ``loss_i = lse_i - log sum_c w_ic e^{s_ic}``;

where ``lse_i = log sum_{k in D_i} e^{s_ik}`` and, in the printed form, ``D_i`` excludes every candidate with
``w_ic > 0``.

Conventions the papers leave open:

* Cosine similarity floors the norms at ``eps``: ``x / max(||x||, eps)``. A zero vector has cosine 0 with
  everything; its gradient there is finite but of order ``1/eps``.
* An anchor is *valid* when it has a positive of positive weight that is not excluded and (printed form) at least
  one candidate left in the denominator. Invalid anchors get loss 0 and no gradient and are left out of the mean;
  a batch without a valid anchor has loss 0 (e.g. ``B = 1`` without hard negatives in the printed form).
* All arithmetic is float32 whatever the inputs' dtype (mixed precision): masked logits are set to ``-1e9``,
  whose exponential is exactly 0, so masking never creates NaN or infinite values or gradients.
"""

from __future__ import annotations

import keras
from keras import ops

from ferkeras.losses.objective import ContrastiveObjective

TEMPERATURE = 0.07
"""tau of SSL-FER's InfoNCE (Shu et al., BMVC 2022, Sec. 4.1)."""

EPS = 1e-8
"""Norm floor of the cosine similarity."""

DENOMINATORS = ("simclr", "printed")
POSITIVE_REDUCTIONS = ("mean", "sum", "logsumexp")
HARD_NEGATIVE_SCOPES = ("all", "own")

MASKED_LOGIT = -1e9
"""Logit given to masked-out candidates (float32): ``exp(-1e9 - max) == 0`` exactly."""


def check_denominator(denominator):
    if denominator not in DENOMINATORS:
        raise ValueError(f"denominator must be one of {DENOMINATORS}, got {denominator!r}")
    return denominator


def check_positive_reduction(positive_reduction):
    if positive_reduction not in POSITIVE_REDUCTIONS:
        raise ValueError(f"positive_reduction must be one of {POSITIVE_REDUCTIONS}, got {positive_reduction!r}")
    return positive_reduction


def check_temperature(temperature):
    temperature = float(temperature)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    return temperature


def l2_normalize(x, eps=EPS):
    """``x / max(||x||, eps)`` over the last axis (a zero vector stays zero)."""
    x = ops.cast(x, "float32")
    norm = ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), eps * eps))
    return x / norm


def cosine_similarity_matrix(a, b, eps=EPS):
    """``(A, D)`` x ``(C, D)`` -> ``(A, C)`` float32 cosine similarities (0 with a zero vector)."""
    return ops.matmul(l2_normalize(a, eps), ops.transpose(l2_normalize(b, eps)))


def info_nce_from_logits(logits, positive_weights, exclude_mask=None, denominator="simclr",
                         positive_reduction="mean"):
    """Per-anchor InfoNCE from ``(A, C)`` logits (similarities already divided by the temperature).

    Args:
        logits: ``(A, C)``.
        positive_weights: ``(A, C)`` bool or non-negative float: which candidates are each anchor's positives
            and with what weight.
        exclude_mask: ``(A, C)`` bool or None: candidates that take no part at all for that anchor (neither
            positive nor in the denominator), e.g. the anchor itself.
        denominator: ``"simclr"`` or ``"printed"`` (see the module docstring).
        positive_reduction: ``"mean"``, ``"sum"`` or ``"logsumexp"`` (see the module docstring).

    Returns:
        ``(loss, valid)``: float32 ``(A,)`` per-anchor losses (0 where invalid) and bool ``(A,)``.
    """
    check_denominator(denominator)
    check_positive_reduction(positive_reduction)
    logits = ops.cast(logits, "float32")
    weights = ops.cast(positive_weights, "float32")
    keep = ops.ones_like(logits, dtype="bool") if exclude_mask is None else ops.logical_not(
        ops.cast(exclude_mask, "bool"))
    weights = ops.where(keep, weights, ops.zeros_like(weights))
    is_positive = weights > 0
    in_denominator = keep
    if denominator == "printed":
        in_denominator = ops.logical_and(keep, ops.logical_not(is_positive))
    masked = ops.full_like(logits, MASKED_LOGIT)
    log_denominator = ops.logsumexp(ops.where(in_denominator, logits, masked), axis=1)  # (A,)
    total_weight = ops.sum(weights, axis=1)
    valid = total_weight > 0
    if denominator == "printed":
        valid = ops.logical_and(valid, ops.any(in_denominator, axis=1))
    if positive_reduction == "logsumexp":
        log_weights = ops.log(ops.where(is_positive, weights, ops.ones_like(weights)))
        numerator = ops.logsumexp(ops.where(is_positive, logits + log_weights, masked), axis=1)
        loss = log_denominator - numerator
    else:
        terms = ops.where(is_positive, weights * (log_denominator[:, None] - logits), ops.zeros_like(logits))
        loss = ops.sum(terms, axis=1)
        if positive_reduction == "mean":
            loss = loss / ops.maximum(total_weight, 1e-12)
    loss = ops.where(valid, loss, ops.zeros_like(loss))
    return loss, valid


def info_nce_per_anchor(anchors, candidates, positive_weights, exclude_mask=None, temperature=TEMPERATURE,
                        denominator="simclr", positive_reduction="mean", eps=EPS):
    """:func:`info_nce_from_logits` on ``cosine(anchors, candidates) / temperature``.

    Args:
        anchors: ``(A, D)``; candidates: ``(C, D)``; the rest as in :func:`info_nce_from_logits`.
        temperature: tau (0.07 in SSL-FER).

    Returns:
        ``(loss, valid)``, float32 ``(A,)`` and bool ``(A,)``.
    """
    temperature = check_temperature(temperature)
    logits = cosine_similarity_matrix(anchors, candidates, eps) / temperature
    return info_nce_from_logits(logits, positive_weights, exclude_mask, denominator, positive_reduction)


def masked_mean(values, valid):
    """Mean of ``values`` over the entries where ``valid`` (0 when none is)."""
    valid = ops.cast(valid, "float32")
    return ops.sum(ops.cast(values, "float32") * valid) / ops.maximum(ops.sum(valid), 1.0)


def info_nce(anchors, candidates, positive_weights, exclude_mask=None, temperature=TEMPERATURE,
             denominator="simclr", positive_reduction="mean", eps=EPS):
    """Scalar InfoNCE: :func:`info_nce_per_anchor` averaged over the valid anchors (0 if there is none)."""
    loss, valid = info_nce_per_anchor(anchors, candidates, positive_weights, exclude_mask, temperature,
                                      denominator, positive_reduction, eps)
    return masked_mean(loss, valid)


def top1_accuracy(logits, positive_weights, exclude_mask=None):
    """Instance-discrimination accuracy: the fraction of anchors whose most similar non-excluded candidate is a
    positive (SSL-FER, Sec. 4.1, keeps checkpoints once this reaches 60 %). Anchors without a positive are left out.
    """
    logits = ops.cast(logits, "float32")
    is_positive = ops.cast(positive_weights, "float32") > 0
    if exclude_mask is not None:
        keep = ops.logical_not(ops.cast(exclude_mask, "bool"))
        is_positive = ops.logical_and(is_positive, keep)
        logits = ops.where(keep, logits, ops.full_like(logits, MASKED_LOGIT))
    best = ops.argmax(logits, axis=1)
    hit = ops.take_along_axis(ops.cast(is_positive, "float32"), ops.expand_dims(best, 1), axis=1)[:, 0]
    return masked_mean(hit, ops.any(is_positive, axis=1))


def view_candidates(anchor, positive, hard_negatives=None, symmetric=False, hard_negatives_scope="all"):
    """The SimCLR / SSL-FER batch layout as anchors, candidates, positive mask and exclusion mask.

    With ``B`` samples, each with an anchor view ``a_b``, a positive view ``p_b`` and ``K`` hard negatives
    ``h_b1 .. h_bK`` (same identity, far away in time: SSL-FER's HardNeg, Sec. 3.3), the candidates are every view
    of the batch, in this order::

        [a_1 .. a_B, p_1 .. p_B, h_11 .. h_1K, h_21 .. h_BK]        (C = 2B + BK)

    * anchors: ``a_1 .. a_B``, as SSL-FER's Eq. 1 writes its anchors ``x_i`` (default); with ``symmetric=True``
      the positives are anchors too, ``[a_1 .. a_B, p_1 .. p_B]`` (2B anchors, SimCLR's symmetric NT-Xent);
    * positive of ``a_b`` is ``p_b`` (and of ``p_b``, ``a_b``);
    * excluded: the anchor itself; with ``hard_negatives_scope="own"`` also the hard negatives of the OTHER
      samples (by default, ``"all"``, every view of the batch other than the anchor and its positive is a
      negative: its own hard negatives and all other samples' views, hard negatives included).

    Args:
        anchor, positive: ``(B, D)``; hard_negatives: ``(B, K, D)`` or None (``K = 0``).

    Returns:
        ``(anchors (A, D), candidates (C, D), positive_mask (A, C) bool, exclude_mask (A, C) bool)``.
    """
    if hard_negatives_scope not in HARD_NEGATIVE_SCOPES:
        raise ValueError(f"hard_negatives_scope must be one of {HARD_NEGATIVE_SCOPES}, got {hard_negatives_scope!r}")
    anchor = ops.cast(anchor, "float32")
    positive = ops.cast(positive, "float32")
    batch = ops.shape(anchor)[0]
    eye = ops.eye(batch, dtype="bool")
    zeros = ops.zeros((batch, batch), dtype="bool")
    parts = [anchor, positive]
    num_hard = 0
    if hard_negatives is not None:
        hard_negatives = ops.cast(hard_negatives, "float32")
        num_hard = hard_negatives.shape[1]
        if num_hard is None:
            raise ValueError("hard_negatives needs a static K axis: (B, K, D)")
    if num_hard:
        parts.append(ops.reshape(hard_negatives, (-1, ops.shape(hard_negatives)[-1])))
    candidates = ops.concatenate(parts, axis=0)
    # Per-sample block masks over the candidates of one anchor row.
    positive_rows = [ops.concatenate([zeros, eye], axis=1)]  # anchor a_b: positive p_b
    exclude_rows = [ops.concatenate([eye, zeros], axis=1)]  # anchor a_b: itself
    if symmetric:
        positive_rows.append(ops.concatenate([eye, zeros], axis=1))  # anchor p_b: positive a_b
        exclude_rows.append(ops.concatenate([zeros, eye], axis=1))  # anchor p_b: itself
    if num_hard:
        own_hard = ops.repeat(eye, num_hard, axis=1)  # (B, B*K): True on sample b's own hard negatives
        hard_excluded = ops.logical_not(own_hard) if hard_negatives_scope == "own" else ops.zeros_like(own_hard)
        positive_rows = [ops.concatenate([r, ops.zeros_like(own_hard)], axis=1) for r in positive_rows]
        exclude_rows = [ops.concatenate([r, hard_excluded], axis=1) for r in exclude_rows]
    anchors = ops.concatenate([anchor, positive], axis=0) if symmetric else anchor
    positive_mask = ops.concatenate(positive_rows, axis=0)
    exclude_mask = ops.concatenate(exclude_rows, axis=0)
    return anchors, candidates, positive_mask, exclude_mask


def info_nce_views(anchor, positive, hard_negatives=None, temperature=TEMPERATURE, denominator="simclr",
                   symmetric=False, hard_negatives_scope="all", eps=EPS):
    """InfoNCE of SSL-FER's Eq. 1 over one batch of views (:func:`view_candidates`), mean over the anchors.

    For anchor ``a_i`` with positive ``p_i`` the negatives are its hard negatives and every other view of the
    batch. ``denominator="simclr"`` (default) keeps ``p_i`` in the denominator, as SimCLR and the SSL-FER
    authors' code do; ``"printed"`` leaves it out, ``1[k != i, j]``, as Eq. 1 of Shu et al. (BMVC 2022) is printed.
    """
    anchors, candidates, positive_mask, exclude_mask = view_candidates(
        anchor, positive, hard_negatives, symmetric, hard_negatives_scope)
    return info_nce(anchors, candidates, positive_mask, exclude_mask, temperature, denominator, "mean", eps)


@keras.saving.register_keras_serializable(package="ferkeras")
class InfoNCEObjective(ContrastiveObjective):
    """SimCLR / SSL-FER InfoNCE (Shu et al., BMVC 2022, Eq. 1) as a pre-training objective.

    Uses ``projections["anchor"]``, ``["positive"]`` and ``["hard_negatives"]`` (when present) as laid out by
    :func:`view_candidates`; the batch it is given is the global batch (all replicas' views are negatives).

    Args:
        temperature: tau, 0.07 (SSL-FER, Sec. 4.1).
        denominator: ``"simclr"`` (default: the positive stays in the denominator, SimCLR and the authors' code)
            or ``"printed"`` (Eq. 1 as printed, ``1[k != i, j]``).
        symmetric: False (default): the anchors are the anchor views, as Eq. 1 writes ``x_i``; True: the positive
            views are anchors too (SimCLR's symmetric NT-Xent over 2B anchors).
        hard_negatives_scope: ``"all"`` (default: every other sample's hard negatives are negatives too) or
            ``"own"`` (an anchor sees only its own hard negatives).

    Returns (``call``): ``{"loss", "info_nce", "accuracy"}``; ``accuracy`` is the top-1 instance-discrimination
    accuracy (the positive is the most similar non-excluded candidate).
    """

    def __init__(self, temperature=TEMPERATURE, denominator="simclr", symmetric=False, hard_negatives_scope="all",
                 eps=EPS, **kwargs):
        super().__init__(**kwargs)
        self.temperature = check_temperature(temperature)
        self.denominator = check_denominator(denominator)
        self.symmetric = bool(symmetric)
        if hard_negatives_scope not in HARD_NEGATIVE_SCOPES:
            raise ValueError(
                f"hard_negatives_scope must be one of {HARD_NEGATIVE_SCOPES}, got {hard_negatives_scope!r}")
        self.hard_negatives_scope = hard_negatives_scope
        self.eps = float(eps)

    loss_terms = ("info_nce", "accuracy")

    def logits(self, projections):
        """``(logits, positive_mask, exclude_mask)`` of the views (:func:`view_candidates`), logits = cos / tau."""
        anchors, candidates, positive_mask, exclude_mask = view_candidates(
            projections["anchor"], projections["positive"], projections.get("hard_negatives"),
            self.symmetric, self.hard_negatives_scope)
        return cosine_similarity_matrix(anchors, candidates, self.eps) / self.temperature, positive_mask, exclude_mask

    def accuracy(self, projections):
        """Top-1 instance discrimination: the share of anchors whose positive is their most similar candidate."""
        return top1_accuracy(*self.logits(projections))

    def call(self, projections, extras=None, training=False):
        logits, positive_mask, exclude_mask = self.logits(projections)
        loss, valid = info_nce_from_logits(logits, positive_mask, exclude_mask, self.denominator, "mean")
        loss = masked_mean(loss, valid)
        return {"loss": loss, "info_nce": loss, "accuracy": top1_accuracy(logits, positive_mask, exclude_mask)}

    def get_config(self):
        config = super().get_config()
        config.update({
            "temperature": self.temperature, "denominator": self.denominator, "symmetric": self.symmetric,
            "hard_negatives_scope": self.hard_negatives_scope, "eps": self.eps,
        })
        return config
