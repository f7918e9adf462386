"""Moved to ferkeras.methods.avce.views; kept so old imports work.

AVCE's feature views (z_a, z_n) = (Sp(z), Sm(z)), Eqs. 6 and 7 of Kim & Song, "Emotion-aware Multi-view Contrastive
Learning for Facial Emotion Recognition", ECCV 2022.
"""

from ferkeras.methods.avce.views import SPARSEMAX_METHODS, FeatureViews, feature_views  # noqa: F401
