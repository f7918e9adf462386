"""ferkeras.ops: differentiable operations of the papers.

AVCE feature transformations (seed 000, Sec. 3.5): Sp(z) (Eq. 6, sparsemax) and Sm(z) (Eq. 7, softmax);
AVCE similarity functions f (Eq. 4), f1 and f2 (Eq. 5).
"""

from ferkeras.ops.feature_views import SPARSEMAX_METHODS, FeatureViews, feature_views
from ferkeras.ops.feature_transforms import (
    softmax,
    sparsemax,
    sparsemax_jacobian_numpy,
    sparsemax_numpy,
    sparsemax_vjp,
)
from ferkeras.ops.ecos_projection import (
    ECOS_SUPPORT_THRESHOLD,
    ECOS_TOLERANCE,
    SimplexProjectionError,
    project_simplex_ecos,
    sparsemax_ecos,
    support_threshold,
)
from ferkeras.ops.similarity import (
    SIMILARITY_NAMES,
    avce_similarity,
    dot_similarity,
    polarity_penalty,
    polarity_similarity,
    similarity,
)

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
