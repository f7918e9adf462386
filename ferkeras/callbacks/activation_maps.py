"""ActivationMapLogger: activation-map overlays of a fixed set of faces written to TensorBoard and as PNG files
while training (the maps of Sec. 4.4 of Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion
Recognition", ECCV 2022)."""

from __future__ import annotations

import logging
import os
from typing import Optional, Sequence, Union

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger("ferkeras.callbacks")


class ActivationMapLogger(keras.callbacks.Callback):
    """Logs activation-map overlays of fixed images every ``every_n_epochs`` epochs (see :mod:`ferkeras.methods.avce.cam`).

    Each logged picture is the grid of :func:`ferkeras.methods.avce.cam.activation_grid`: one row per image, the input and
    one overlay per method. It goes to TensorBoard as the image summary ``"activation_maps"`` (step = epoch
    number, 1-based) in ``log_dir``, and to ``out_dir/activation_maps_epoch{NNNN}.png`` when ``out_dir`` is set.

    Args:
        images: (B, H, W, 3) floats in [0, 1] (a few faces: every logged epoch runs the maps on all of them).
        every_n_epochs: log after epochs ``n, 2n, ...`` (1 = every epoch).
        out_dir: folder for the PNG files (created); ``None`` = no PNG.
        method: one name or a sequence of :data:`ferkeras.methods.avce.cam.METHODS` (``"cam"``: AVCE's map through R,
            ``"cam_head"``: through H, ``"gradcam"``, ``"scorecam"``), or ``"all"`` for the four.
        log_dir: TensorBoard folder; default ``<out_dir>/tensorboard`` (the ``tensorboard`` folder of a
            :class:`ferkeras.training.RunDir` is a good choice: the images appear beside the scalars).
            ``None`` with no ``out_dir`` = no TensorBoard summary.
        max_n: Score-CAM's number of channels (``max_N`` of tf-keras-vis).
    """

    def __init__(self, images, every_n_epochs: int = 1, out_dir: Optional[str] = None,
                 method: Union[str, Sequence[str]] = "cam", log_dir: Optional[str] = None, max_n: int = 16):
        super().__init__()
        from ferkeras.methods.avce.cam import METHODS

        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
            raise ValueError(f"ActivationMapLogger: images must be a non-empty (B, H, W, 3) array in [0, 1], "
                             f"got shape {images.shape}")
        if int(every_n_epochs) < 1:
            raise ValueError(f"ActivationMapLogger: every_n_epochs must be >= 1, got {every_n_epochs!r}")
        methods = METHODS if method == "all" else ((method,) if isinstance(method, str) else tuple(method))
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise ValueError(f"ActivationMapLogger: unknown method(s) {unknown or method!r}; expected some of "
                             f"{METHODS} or 'all'")
        self.images = images
        self.every_n_epochs = int(every_n_epochs)
        self.out_dir = out_dir
        self.methods = methods
        self.log_dir = log_dir if log_dir is not None else (
            os.path.join(out_dir, "tensorboard") if out_dir is not None else None)
        self.max_n = max_n
        self._writer = None
        self.last_png = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        self.log(epoch + 1)

    def log(self, step: int):
        """Computes the grid for the current weights and writes it (TensorBoard and/or PNG) at ``step``."""
        from ferkeras.methods.avce.cam import activation_grid
        from ferkeras.viz.cam import save_png

        grid = activation_grid(self.model, self.images, self.methods, max_n=self.max_n)
        if self.out_dir is not None:
            os.makedirs(self.out_dir, exist_ok=True)
            self.last_png = save_png(os.path.join(self.out_dir, f"activation_maps_epoch{step:04d}.png"), grid)
        if self.log_dir is not None:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(self.log_dir)
            with self._writer.as_default():
                tf.summary.image("activation_maps", grid[None], step=step,
                                 description="input | " + " | ".join(self.methods))
            self._writer.flush()
        return grid

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
