"""Moved to ferkeras.methods.avce.losses; kept so old imports work.

L_AVCE (Eq. 2) and L_dis (Eq. 8) of Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion
Recognition", ECCV 2022, and the factory of the Table 4 ablation losses.
"""

from ferkeras.losses.barlow_twins import BarlowTwinsLoss  # noqa: F401
from ferkeras.methods.avce.losses import (  # noqa: F401
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
    make_contrastive_loss,
    unpack_views,
)
from ferkeras.methods.avce.similarity import EPS, MU, check_similarity_name, safe_norm, similarity  # noqa: F401
