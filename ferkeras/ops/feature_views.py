"""The AVCE feature-transformation layer: z -> (z_a, z_n) = (Sp(z), Sm(z)), Eqs. 6 and 7 of seed 000 (Sec. 3.5)."""

import keras

from ferkeras.ops.feature_transforms import softmax, sparsemax
from ferkeras.ops.ecos_projection import sparsemax_ecos

#: How Sp (Eq. 6) is computed: the exact closed form (default) or the authors' cvxpy + ECOS solve (training only).
SPARSEMAX_METHODS = {"closed_form": sparsemax, "ecos": sparsemax_ecos}


def feature_views(z, method="closed_form"):
    """(z_a, z_n) = (Sp(z), Sm(z)), AVCE Eqs. 6 and 7 (seed 000, Sec. 3.5), over the last axis of `z`.

    Args:
      z: float tensor of shape (..., d).
      method: "closed_form" (`ferkeras.ops.sparsemax`) or "ecos" (`ferkeras.ops.sparsemax_ecos`, training only).

    Returns:
      The sparse attentive view z_a and the dense inattentive view z_n, each shaped and typed like `z`.
    """
    if method not in SPARSEMAX_METHODS:
        raise ValueError(f"unknown sparsemax method {method!r}; expected one of {sorted(SPARSEMAX_METHODS)}")
    return SPARSEMAX_METHODS[method](z), softmax(z)


@keras.saving.register_keras_serializable(package="ferkeras")
class FeatureViews(keras.layers.Layer):
    """Keras layer returning (z_a, z_n) = (Sp(z), Sm(z)), AVCE Eqs. 6 and 7 (seed 000, Sec. 3.5).

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
