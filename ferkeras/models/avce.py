"""Moved to ferkeras.methods.avce.model; kept so old imports work.

The AVCE task model (Algorithm 1 of Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion
Recognition", ECCV 2022) and its learning-rate schedule (Sec. 4.2).
"""

from ferkeras.methods.avce.model import (  # noqa: F401
    CONTRASTIVE,
    LATENT_DIM,
    METRIC_DIM,
    SIMILARITIES,
    AVCEModel,
    AVCEStepSchedule,
)
