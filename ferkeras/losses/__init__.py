"""ferkeras.losses: the papers' losses as functions and Keras ``Loss`` classes."""

from ferkeras.losses.affect import AffectLoss, affect_loss, ccc_loss, pcc_loss, rmse_loss
