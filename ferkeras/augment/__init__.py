"""ferkeras.augment: face augmentation (in-graph spatial/photometric; more modules join as they are written)."""

from ferkeras.augment.spatial import DLIB_FLIP_PERMUTATION, FaceAugment, flip_landmarks  # noqa: F401
