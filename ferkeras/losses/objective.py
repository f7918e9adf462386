"""The protocol every contrastive pre-training objective follows (SSL-FER, ContraWarping, RMFER, SimCLR, ...).

A pre-training batch is a dict of views (``"anchor"`` (B, S, S, 3), ``"positive"``, ``"hard_negatives"``
(B, K, S, S, 3) when K > 0, ``"parts"`` / ``"parts_valid"`` for MaskFN, ``"identity"``, ``"track"``, ...). The
task model (:mod:`ferkeras.models.contrastive`) encodes and projects the image views and hands the objective

* ``projections``: ``{"anchor": (B, D), "positive": (B, D), "hard_negatives": (B, K, D) when present}``;
* ``extras``: whatever :meth:`ContrastiveObjective.precompute` returned for the same batch (per-sample tensors with
  a leading batch axis, computed without gradient, e.g. the frozen eye / mouth features of MaskFN).

Under ``tf.distribute.MirroredStrategy`` the model all-gathers ``projections`` and ``extras`` across replicas,
calls the objective once on the global batch (SimCLR takes its negatives from the whole global batch) and scales
the returned loss for the replicas with :func:`ferkeras.losses.reduction.scale_for_replicas`. An objective
therefore computes a plain mean over the batch it is given and never scales for replicas itself.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="ferkeras")
class ContrastiveObjective(keras.layers.Layer):
    """Base class of contrastive pre-training objectives (a Keras layer, so it serialises and can own weights).

    Subclasses implement :meth:`call` and, when they need per-sample quantities computed from the raw views
    without gradient, :meth:`precompute`. Their constructor arguments go through ``get_config`` like any layer.
    The layer's dtype defaults to ``"float32"`` (not the global policy): under ``mixed_float16`` Keras would
    otherwise cast the projections to float16 before :meth:`call`, and losses are computed in float32.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    loss_terms = ()
    """Names of the extra outputs of :meth:`call` that are averages over the batch (logged as epoch means by
    :class:`ferkeras.models.contrastive.ContrastivePretrainer`; other outputs are logged per step)."""

    def precompute(self, views, training=False) -> dict:
        """Per-sample tensors (leading batch axis) computed from the ``views`` dict WITHOUT gradient; default ``{}``.

        Called by the task model on each replica's local batch before the projections are all-gathered; the
        returned tensors are gathered with them and passed to :meth:`call` as ``extras``.
        """
        del views, training
        return {}

    def call(self, projections, extras, training=False) -> dict:
        """The loss over one (global) batch: a dict with ``"loss"`` (scalar, mean over the batch) and named terms.

        Args:
            projections: ``{"anchor": (B, D), "positive": (B, D), "hard_negatives": (B, K, D) when present}``.
            extras: the dict :meth:`precompute` returned for the same batch (possibly all-gathered).
            training: Keras training flag.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement call(projections, extras, training)")
