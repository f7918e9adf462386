"""ferkeras.viz: result figures (valence-arousal scatter plots, training curves in :mod:`ferkeras.viz.plots`);
activation maps live in :mod:`ferkeras.viz.cam`."""

from ferkeras.viz.plots import plot_training_curves, plot_va_scatter

__all__ = ["plot_training_curves", "plot_va_scatter"]
