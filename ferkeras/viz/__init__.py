"""ferkeras.viz: result figures (valence-arousal scatter plots, training curves in :mod:`ferkeras.viz.plots`);
generic activation maps (Grad-CAM, Score-CAM, overlays) live in :mod:`ferkeras.viz.cam`, the CAM of AVCE's R and H
(Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022, Sec. 4.4) in
:mod:`ferkeras.methods.avce.cam`."""

from ferkeras.viz.plots import plot_training_curves, plot_va_scatter

__all__ = ["plot_training_curves", "plot_va_scatter"]
