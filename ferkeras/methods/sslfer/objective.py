"""SSL-FER's pre-training objective: InfoNCE with hard negatives (Eq. 1) and optional MaskFN (Eq. 2).

Shu, Gu, Yang, Lo, "Revisiting Self-Supervised Contrastive Learning for Facial Expression Recognition", BMVC 2022,
Secs. 3.1, 3.3 and 3.4. The plain SimCLR baseline is this objective without hard negatives in the batch and
without MaskFN.
"""

from __future__ import annotations

import keras
from keras import ops

from ferkeras.losses.info_nce import EPS, TEMPERATURE, InfoNCEObjective
from ferkeras.methods.sslfer.maskfn import MaskFN


@keras.saving.register_keras_serializable(package="ferkeras")
class SSLFERObjective(InfoNCEObjective):
    """InfoNCE over anchor, positive, hard negatives and the rest of the batch, plus MaskFN when given.

    Without MaskFN the loss is :func:`ferkeras.losses.info_nce.info_nce_views` (Eq. 1; ``denominator`` chooses the
    SimCLR form, the default, or the printed one). With MaskFN it is MaskFN's ``L1 + w L2`` (Eq. 2), whose
    denominators follow MaskFN's own ``denominator`` (default ``"printed"``: both exclude the positive and the
    picked sample, as Eq. 2 is printed), so switching MaskFN on with its default also drops the positive from L1's
    denominator; build ``MaskFN(denominator="simclr")`` to keep the base term identical to the SimCLR form.

    Args:
        temperature: tau (0.07, Sec. 4.1).
        denominator: ``"simclr"`` (default) or ``"printed"``, for the InfoNCE without MaskFN.
        symmetric: also use the positive views as anchors (SimCLR's symmetric NT-Xent); default False (Eq. 1's
            anchors ``x_i``).
        hard_negatives_scope: ``"all"`` (default: every view of the batch but the anchor's positive is a
            negative) or ``"own"`` (only the anchor's own hard negatives among the hard negatives).
        maskfn: None (off) or a :class:`~ferkeras.methods.sslfer.maskfn.MaskFN` layer (its frozen encoder, N_FN,
            weight and denominator).

    ``precompute(views)`` returns ``{"part_features": (B, R * F), "parts_valid": (B,)}`` (plus ``"track"`` when
    MaskFN excludes same-track samples) when MaskFN is on, else ``{}``. ``call`` returns ``"loss"``,
    ``"info_nce"`` (the InfoNCE term; L1 with MaskFN), ``"accuracy"`` (top-1 instance discrimination of the
    positive) and, with MaskFN, ``"maskfn_l2"`` and ``"maskfn_picked"`` (fraction of anchors that got an extra
    positive).
    """

    def __init__(self, temperature=TEMPERATURE, denominator="simclr", symmetric=False, hard_negatives_scope="all",
                 maskfn=None, eps=EPS, **kwargs):
        super().__init__(temperature=temperature, denominator=denominator, symmetric=symmetric,
                         hard_negatives_scope=hard_negatives_scope, eps=eps, **kwargs)
        if isinstance(maskfn, dict):
            maskfn = keras.saving.deserialize_keras_object(maskfn)
        if maskfn is not None and not isinstance(maskfn, MaskFN):
            raise TypeError(f"maskfn must be None or a MaskFN layer, got {type(maskfn).__name__}")
        self.maskfn = maskfn

    @property
    def loss_terms(self):
        terms = ("info_nce", "accuracy")
        return terms if self.maskfn is None else terms + ("maskfn_l2", "maskfn_picked")

    def precompute(self, views, training=False):
        if self.maskfn is None:
            return {}
        if "parts" not in views:
            raise ValueError("SSLFERObjective with MaskFN needs the eye and mouth crops 'parts' (B, 2, P, P, 3) in "
                             f"the batch; it has {sorted(views)}")
        parts = views["parts"]
        features = ops.stop_gradient(self.maskfn(parts))
        valid = views.get("parts_valid")
        if valid is None:
            valid = ops.ones((ops.shape(parts)[0],), dtype="bool")
        extras = {"part_features": features, "parts_valid": ops.cast(valid, "bool")}
        if self.maskfn.exclude_same_track:
            if "track" not in views:
                raise ValueError("MaskFN(exclude_same_track=True) needs 'track' in the batch")
            extras["track"] = views["track"]
        return extras

    def call(self, projections, extras=None, training=False):
        if self.maskfn is None:
            return super().call(projections, extras, training)
        extras = extras or {}
        if "part_features" not in extras:
            raise ValueError("SSLFERObjective with MaskFN needs extras['part_features'] from precompute()")
        out = self.maskfn.loss(projections, extras["part_features"], extras.get("parts_valid"),
                               extras.get("track"), self.temperature, self.symmetric, self.hard_negatives_scope,
                               self.eps)
        return {"loss": out["loss"], "info_nce": out["l1"], "accuracy": self.accuracy(projections),
                "maskfn_l2": out["l2"], "maskfn_picked": out["picked_fraction"]}

    def get_config(self):
        config = super().get_config()
        config["maskfn"] = None if self.maskfn is None else keras.saving.serialize_keras_object(self.maskfn)
        return config
