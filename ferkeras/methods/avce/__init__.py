"""AVCE: Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022.

The method's public API, one module per part of the paper:

* :mod:`~ferkeras.methods.avce.model`: the task model of Algorithm 1 (:class:`AVCEModel`, two-pass ``train_step``)
  and the learning-rate schedule of Sec. 4.2 (:class:`AVCEStepSchedule`);
* :mod:`~ferkeras.methods.avce.losses`: L_AVCE (Eq. 2), L_dis (Eq. 8) and the Table 4 ablation losses (InfoNCE with
  an AV-space similarity as its critic, Eq. 1; Barlow Twins) with :func:`make_contrastive_loss`;
* :mod:`~ferkeras.methods.avce.similarity`: the similarities f (Eq. 4), f1 (Sec. 3.4) and f2 (Eq. 5) (the
  dispatcher by the paper's name is ``ferkeras.methods.avce.similarity.similarity``: the package attribute
  ``similarity`` stays the module);
* :mod:`~ferkeras.methods.avce.views`: the feature views z_a = Sp(z) (Eq. 6) and z_n = Sm(z) (Eq. 7);
* :mod:`~ferkeras.methods.avce.cam`: the activation maps of Sec. 4.4 (CAM of R and of H, with Grad-CAM and
  Score-CAM side by side).

Generic pieces AVCE uses live outside: L_AV in :mod:`ferkeras.losses.affect`, sparsemax in
:mod:`ferkeras.ops.sparsemax` and :mod:`ferkeras.ops.sparsemax_ecos`, Barlow Twins in
:mod:`ferkeras.losses.barlow_twins`, backbones and heads in :mod:`ferkeras.models`. The binary is
``experiments/avce.py``.
"""

from ferkeras.methods.avce.cam import (
    HEADS,
    METHOD_TITLES,
    METHODS,
    activation_grid,
    activation_maps,
    inference_model,
    keras_vis_map,
    linear_cam,
    neural_activation_map,
)
from ferkeras.methods.avce.losses import (
    ALPHA,
    BETA,
    CONTRASTIVE_LOSSES,
    DELTA1,
    DELTA2,
    GAMMA,
    AVCELoss,
    DiscriminativeLoss,
    InfoNCELoss,
    avce_loss,
    discriminative_loss,
    info_nce_loss,
    make_contrastive_loss,
    unpack_views,
)
from ferkeras.methods.avce.model import (
    COMPRESSORS,
    CONTRASTIVE,
    FLATTEN_GRID,
    LATENT_DIM,
    METRIC_DIM,
    REGRESSION_LOSSES,
    SIMILARITIES,
    AVCEModel,
    AVCEStepSchedule,
)
from ferkeras.methods.avce.similarity import (
    MU,
    POLARITY_PENALTY,
    SIMILARITY_NAMES,
    angular_similarity,
    avce_similarity,
    check_similarity_name,
    clipped_cosine,
    dot_similarity,
    polarity_penalty,
    polarity_similarity,
    safe_norm,
)
from ferkeras.methods.avce.views import SPARSEMAX_METHODS, FeatureViews, feature_views

__all__ = [
    # model (Algorithm 1)
    "AVCEModel",
    "AVCEStepSchedule",
    "COMPRESSORS",
    "CONTRASTIVE",
    "FLATTEN_GRID",
    "LATENT_DIM",
    "METRIC_DIM",
    "REGRESSION_LOSSES",
    "SIMILARITIES",
    # losses (Eqs. 1, 2, 8; Table 4)
    "ALPHA",
    "BETA",
    "GAMMA",
    "DELTA1",
    "DELTA2",
    "AVCELoss",
    "DiscriminativeLoss",
    "InfoNCELoss",
    "CONTRASTIVE_LOSSES",
    "avce_loss",
    "discriminative_loss",
    "info_nce_loss",
    "make_contrastive_loss",
    "unpack_views",
    # similarities (Eqs. 4, 5)
    "MU",
    "POLARITY_PENALTY",
    "SIMILARITY_NAMES",
    "angular_similarity",
    "avce_similarity",
    "check_similarity_name",
    "clipped_cosine",
    "dot_similarity",
    "polarity_penalty",
    "polarity_similarity",
    "safe_norm",
    # feature views (Eqs. 6, 7)
    "SPARSEMAX_METHODS",
    "FeatureViews",
    "feature_views",
    # activation maps (Sec. 4.4)
    "HEADS",
    "METHODS",
    "METHOD_TITLES",
    "activation_grid",
    "activation_maps",
    "inference_model",
    "keras_vis_map",
    "linear_cam",
    "neural_activation_map",
]
