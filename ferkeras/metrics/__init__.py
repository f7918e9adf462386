"""ferkeras.metrics: streaming Keras metrics of the FER papers and their NumPy references.

Valence-arousal metrics take ``(B, 2)`` tensors, column 0 valence and column 1 arousal; NaN labels are masked.
Classification metrics take class ids (-1 = no label) or one-hot labels and ``(B, C)`` scores.
"""

from ferkeras.metrics import numpy_ref
from ferkeras.metrics.classification import AverageAccuracy, ConfusionMatrix, MacroF1, OverallAccuracy
from ferkeras.metrics.regression import CCC, PCC, RMSE, SAGR

__all__ = [
    "AverageAccuracy",
    "CCC",
    "ConfusionMatrix",
    "MacroF1",
    "OverallAccuracy",
    "PCC",
    "RMSE",
    "SAGR",
    "numpy_ref",
]
