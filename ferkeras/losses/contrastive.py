"""Moved to ferkeras.losses.barlow_twins (Barlow Twins) and ferkeras.methods.avce.losses (AVCE's InfoNCE); kept so old
imports work.

The contrastive losses of the Table 4 ablation of Kim & Song, "Emotion-aware Multi-view Contrastive Learning for
Facial Emotion Recognition", ECCV 2022: InfoNCE (Eq. 1) with an AVCE similarity as its critic, and Barlow Twins.
"""

from ferkeras.losses.barlow_twins import (  # noqa: F401
    BARLOW_TWINS_EPS,
    BARLOW_TWINS_LAMBDA,
    BarlowTwinsLoss,
    barlow_twins_loss,
)
from ferkeras.methods.avce.losses import InfoNCELoss, info_nce_loss, unpack_views  # noqa: F401
from ferkeras.methods.avce.similarity import EPS, MU, check_similarity_name, similarity  # noqa: F401
