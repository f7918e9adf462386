"""ferkeras.losses: the papers' losses as functions and Keras ``Loss`` classes."""

from ferkeras.losses.affect import AffectLoss, affect_loss, ccc_loss, pcc_loss, rmse_loss
from ferkeras.losses.avce import (
    CONTRASTIVE_LOSSES,
    AVCELoss,
    DiscriminativeLoss,
    avce_loss,
    discriminative_loss,
    make_contrastive_loss,
)
from ferkeras.losses.contrastive import BarlowTwinsLoss, InfoNCELoss, barlow_twins_loss, info_nce_loss
