"""ferkeras.losses: losses any method can use, as functions and Keras ``Loss`` classes.

* :mod:`ferkeras.losses.affect`: L_AV (RMSE + (PCC + CCC) / 2) and its parts, of Kim & Song, "Emotion-aware
  Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022, Sec. 4.2;
* :mod:`ferkeras.losses.barlow_twins`: Barlow Twins (Zbontar et al., ICML 2021, Eq. 1);
* :mod:`ferkeras.losses.info_nce`: InfoNCE / NT-Xent over cosine similarities with one or several positives and
  hard negatives (SimCLR; Shu et al., BMVC 2022, Eq. 1), :class:`~ferkeras.losses.info_nce.InfoNCEObjective`;
* :mod:`ferkeras.losses.balanced_softmax`: balanced softmax cross-entropy (Ren et al., NeurIPS 2020);
* :mod:`ferkeras.losses.objective`: :class:`~ferkeras.losses.objective.ContrastiveObjective`, the protocol of
  contrastive pre-training objectives;
* :mod:`ferkeras.losses.reduction`: :func:`~ferkeras.losses.reduction.scale_for_replicas`, the replica scaling of
  mean-type losses under ``tf.distribute``.

AVCE's own losses (L_AVCE, Eq. 2; L_dis, Eq. 8; the InfoNCE of its Table 4 ablation) moved to
:mod:`ferkeras.methods.avce.losses`; their names (``AVCELoss``, ``DiscriminativeLoss``, ``InfoNCELoss``,
``avce_loss``, ``discriminative_loss``, ``info_nce_loss``, ``make_contrastive_loss``, ``CONTRASTIVE_LOSSES``) are
kept here so old imports work, resolved on first use (this package imports no method).
"""

import importlib

from ferkeras.losses.affect import AUTHORS_MSE, AffectLoss, affect_loss, ccc_loss, mse_loss, pcc_loss, rmse_loss
from ferkeras.losses.barlow_twins import BarlowTwinsLoss, barlow_twins_loss
from ferkeras.losses.balanced_softmax import BalancedSoftmaxLoss, balanced_softmax_cross_entropy
from ferkeras.losses.info_nce import InfoNCEObjective, info_nce, info_nce_per_anchor, info_nce_views
from ferkeras.losses.objective import ContrastiveObjective
from ferkeras.losses.reduction import scale_for_replicas

_MOVED = {
    name: "ferkeras.methods.avce.losses"
    for name in ("CONTRASTIVE_LOSSES", "AVCELoss", "DiscriminativeLoss", "InfoNCELoss", "avce_loss",
                 "discriminative_loss", "info_nce_loss", "make_contrastive_loss")
}
"""Names this package exported before they moved to :mod:`ferkeras.methods.avce` -> their new module."""


def __getattr__(name):
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AUTHORS_MSE",
    "AffectLoss",
    "affect_loss",
    "ccc_loss",
    "mse_loss",
    "pcc_loss",
    "rmse_loss",
    "BarlowTwinsLoss",
    "barlow_twins_loss",
    "scale_for_replicas",
    "BalancedSoftmaxLoss",
    "balanced_softmax_cross_entropy",
    "ContrastiveObjective",
    "InfoNCEObjective",
    "info_nce",
    "info_nce_per_anchor",
    "info_nce_views",
    *_MOVED,
]
