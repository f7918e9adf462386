"""Moved to ferkeras.ops.sparsemax; kept so old imports work.

Closed-form sparsemax and softmax: AVCE's Sp (Eq. 6) and Sm (Eq. 7) of Kim & Song, "Emotion-aware Multi-view
Contrastive Learning for Facial Emotion Recognition", ECCV 2022.
"""

from ferkeras.ops.sparsemax import (  # noqa: F401
    compute_dtype,
    softmax,
    sparsemax,
    sparsemax_jacobian_numpy,
    sparsemax_numpy,
    sparsemax_vjp,
)
