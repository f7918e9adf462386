"""Moved to ferkeras.ops.sparsemax_ecos; kept so old imports work.

Sparsemax (AVCE's Sp, Eq. 6 of Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion
Recognition", ECCV 2022) solved by cvxpy + ECOS through ``tf.py_function``.
"""

from ferkeras.ops.sparsemax import compute_dtype, sparsemax_vjp  # noqa: F401
from ferkeras.ops.sparsemax_ecos import (  # noqa: F401
    ECOS_SUPPORT_THRESHOLD,
    ECOS_TOLERANCE,
    MAX_CACHED_PROBLEMS,
    SimplexProjectionError,
    condition_rows,
    project_simplex_ecos,
    sparsemax_ecos,
    support_threshold,
)
