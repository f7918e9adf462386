"""ferkeras.augment: face augmentation inside tf.data.

spatial: FaceAugment (geometry + photometric, landmarks kept consistent) and the shared jitter / blur ops;
ssl: SSL-FER's spatial augmentation as named steps (sslfer_steps, Compose); faceswap: FaceSwap;
views: MultiViewAugment (one stack per view of a contrastive batch, two-image steps through Paired).
"""

from ferkeras.augment.faceswap import FaceSwap, FaceSwapCounter, face_swap  # noqa: F401
from ferkeras.augment.spatial import (  # noqa: F401
    DLIB_FLIP_PERMUTATION,
    PRESETS,
    FaceAugment,
    color_jitter,
    flip_landmarks,
    gaussian_blur,
)
from ferkeras.augment.ssl import Compose, sslfer_steps  # noqa: F401
from ferkeras.augment.views import MultiViewAugment, Paired  # noqa: F401
