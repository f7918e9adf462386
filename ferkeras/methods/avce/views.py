"""AVCE's feature transformations: z -> (z_a, z_n) = (Sp(z), Sm(z)), the attentive and the inattentive view.

Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022, Sec. 3.5:
Sp is sparsemax (Eq. 6, the Euclidean projection onto the simplex) and Sm is softmax (Eq. 7). Both ops are generic
and live in :mod:`ferkeras.ops.sparsemax` (closed form) and :mod:`ferkeras.ops.sparsemax_ecos` (cvxpy + ECOS, the
authors' way); this module picks one and pairs them.
"""

import keras

from ferkeras.ops.sparsemax import softmax, sparsemax
from ferkeras.ops.sparsemax_ecos import sparsemax_ecos

#: How Sp (Eq. 6) is computed: the exact closed form (default) or the authors' cvxpy + ECOS solve (training only).
SPARSEMAX_METHODS = {"closed_form": sparsemax, "ecos": sparsemax_ecos}


def feature_views(z, method="closed_form"):
    """(z_a, z_n) = (Sp(z), Sm(z)), Eqs. 6 and 7 of Kim & Song (ECCV 2022, Sec. 3.5), over the last axis of `z`.

    Args:
      z: float tensor of shape (..., d).
      method: "closed_form" (:func:`ferkeras.ops.sparsemax.sparsemax`) or "ecos"
        (:func:`ferkeras.ops.sparsemax_ecos.sparsemax_ecos`, training only).

    Returns:
      The sparse attentive view z_a and the dense inattentive view z_n, each shaped and typed like `z`.
    """
    if method not in SPARSEMAX_METHODS:
        raise ValueError(f"unknown sparsemax method {method!r}; expected one of {sorted(SPARSEMAX_METHODS)}")
    return SPARSEMAX_METHODS[method](z), softmax(z)


@keras.saving.register_keras_serializable(package="ferkeras")
class FeatureViews(keras.layers.Layer):
    """Keras layer returning (z_a, z_n) = (Sp(z), Sm(z)), Eqs. 6 and 7 of Kim & Song (ECCV 2022, Sec. 3.5).

    Args:
      method: "closed_form" (default; exact, exportable) or "ecos" (cvxpy + ECOS through `tf.py_function`, as in
        the paper's implementation; it cannot run under XLA, so the layer sets `supports_jit = False`, and a
        SavedModel holding it cannot be loaded in a fresh process, so rebuild the model with "closed_form" before
        exporting).
      **kwargs: passed to `keras.layers.Layer`.
    """

    def __init__(self, method="closed_form", **kwargs):
        super().__init__(**kwargs)
        if method not in SPARSEMAX_METHODS:
            raise ValueError(f"unknown sparsemax method {method!r}; expected one of {sorted(SPARSEMAX_METHODS)}")
        self.method = method
        # tf.py_function cannot be compiled by XLA; Keras's jit_compile="auto" turns XLA on for GPU models otherwise.
        self.supports_jit = method != "ecos"

    def call(self, z):
        return feature_views(z, self.method)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape), tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config["method"] = self.method
        return config
