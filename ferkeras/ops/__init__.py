"""ferkeras.ops: differentiable operations any method can use.

* :mod:`ferkeras.ops.sparsemax`: closed-form sparsemax (Martins & Astudillo, ICML 2016) with its exact Jacobian,
  softmax, and NumPy references;
* :mod:`ferkeras.ops.sparsemax_ecos`: the same projection solved by cvxpy + ECOS inside the graph (training only).

AVCE (Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022) uses
them as its feature views Sp (Eq. 6) and Sm (Eq. 7). AVCE's own similarities f (Eq. 4), f1, f2 (Eq. 5) and feature-view
layer moved to :mod:`ferkeras.methods.avce`; their names (``FeatureViews``, ``feature_views``, ``SPARSEMAX_METHODS``,
``SIMILARITY_NAMES``, ``avce_similarity``, ``dot_similarity``, ``polarity_penalty``, ``polarity_similarity``,
``similarity``) are kept here so old imports work, resolved on first use (this package imports no method).

Note that ``ferkeras.ops.sparsemax`` and ``ferkeras.ops.sparsemax_ecos`` are the functions, as before; import the
modules' other names with ``from ferkeras.ops.sparsemax import ...``.
"""

import importlib

from ferkeras.ops.sparsemax import (
    softmax,
    sparsemax,
    sparsemax_jacobian_numpy,
    sparsemax_numpy,
    sparsemax_vjp,
)
from ferkeras.ops.sparsemax_ecos import (
    ECOS_SUPPORT_THRESHOLD,
    ECOS_TOLERANCE,
    SimplexProjectionError,
    project_simplex_ecos,
    sparsemax_ecos,
    support_threshold,
)

_MOVED = {
    "SPARSEMAX_METHODS": "ferkeras.methods.avce.views",
    "FeatureViews": "ferkeras.methods.avce.views",
    "feature_views": "ferkeras.methods.avce.views",
    "SIMILARITY_NAMES": "ferkeras.methods.avce.similarity",
    "avce_similarity": "ferkeras.methods.avce.similarity",
    "dot_similarity": "ferkeras.methods.avce.similarity",
    "polarity_penalty": "ferkeras.methods.avce.similarity",
    "polarity_similarity": "ferkeras.methods.avce.similarity",
    "similarity": "ferkeras.methods.avce.similarity",
}
"""Names this package exported before they moved to :mod:`ferkeras.methods.avce` -> their new module."""


def __getattr__(name):
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SIMILARITY_NAMES",
    "avce_similarity",
    "dot_similarity",
    "polarity_penalty",
    "polarity_similarity",
    "similarity",
    "ECOS_SUPPORT_THRESHOLD",
    "ECOS_TOLERANCE",
    "SPARSEMAX_METHODS",
    "FeatureViews",
    "SimplexProjectionError",
    "feature_views",
    "project_simplex_ecos",
    "softmax",
    "sparsemax",
    "sparsemax_ecos",
    "sparsemax_jacobian_numpy",
    "sparsemax_numpy",
    "sparsemax_vjp",
    "support_threshold",
]
