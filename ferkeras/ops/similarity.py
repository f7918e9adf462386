"""Moved to ferkeras.methods.avce.similarity; kept so old imports work.

AVCE's similarities f (Eq. 4), f1 (Sec. 3.4) and f2 (Eq. 5) of Kim & Song, "Emotion-aware Multi-view Contrastive
Learning for Facial Emotion Recognition", ECCV 2022.
"""

from ferkeras.methods.avce.similarity import (  # noqa: F401
    EPS,
    MU,
    POLARITY_PENALTY,
    SIMILARITY_NAMES,
    angular_similarity,
    avce_similarity,
    check_similarity_name,
    clipped_cosine,
    dot_similarity,
    polarity_penalty,
    polarity_similarity,
    safe_norm,
    similarity,
)
