"""Sparsemax and softmax over the last axis; sparsemax in closed form with its exact Jacobian.

Sparsemax is the Euclidean projection onto the probability simplex (Martins & Astudillo, "From Softmax to Sparsemax:
A Sparse Model of Attention and Multi-Label Classification", ICML 2016):

    sparsemax(z) = argmin_{p in simplex} ||p - z||^2,        softmax(z) = exp(z) / sum_i exp(z_i).

Closed form (Martins & Astudillo, Prop. 1): sort z in decreasing order z_(1) >= ... >= z_(d), let
k(z) = max{k : 1 + k z_(k) > sum_{j<=k} z_(j)}, tau = (sum_{j<=k(z)} z_(j) - 1) / k(z) and sparsemax(z) =
max(z - tau, 0). Its Jacobian is diag(s) - s s^T / |S|, with s the indicator of the support S = {i : p_i > 0}.

AVCE (Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022,
Sec. 3.5) uses the pair as its two feature views: Sp(z) = sparsemax(z) (Eq. 6) and Sm(z) = softmax(z) (Eq. 7), see
:mod:`ferkeras.methods.avce.views`. :mod:`ferkeras.ops.sparsemax_ecos` computes the same projection with a convex
solver.

Do not use ``keras.ops.sparsemax`` on the TensorFlow backend of Keras 3.15.1: it takes tau from the sum of all the
support's cumulative sums instead of the k-th one and is wrong whenever the support has more than one element
(keras-team/keras#23425); tests/ops/test_sparsemax.py watches for the fix.

All functions here work on the last axis and accept any number of leading dimensions. Half-precision inputs
(float16, bfloat16) are computed in float32 and cast back, so the ops are safe under mixed precision.

Note: ``ferkeras.ops`` exports the function :func:`sparsemax` under the same name as this module, so
``from ferkeras.ops import sparsemax`` is the function; import other names with
``from ferkeras.ops.sparsemax import ...``.
"""

import numpy as np
import tensorflow as tf

#: Dtypes computed in float32 and cast back to the input dtype.
_HALF_DTYPES = (tf.float16, tf.bfloat16)


def compute_dtype(dtype):
    """The dtype the ops compute in for inputs of `dtype`: float32 for half precision, else `dtype` itself."""
    dtype = tf.as_dtype(dtype)
    if dtype in _HALF_DTYPES:
        return tf.float32
    if not dtype.is_floating:
        raise TypeError(f"sparsemax/softmax need a floating-point input, got dtype {dtype.name}")
    return dtype


def sparsemax_vjp(p, upstream, support):
    """Vector-Jacobian product of sparsemax: (diag(s) - s s^T / |S|) g, row-wise over the last axis.

    Args:
      p: the sparsemax output (only its dtype is used; shape (..., d)).
      upstream: the incoming gradient g, shape (..., d).
      support: boolean mask s of the support S, shape (..., d); every row has at least one True.

    Returns:
      The gradient with respect to z, shape (..., d), dtype of `p`.
    """
    s = tf.cast(support, p.dtype)
    g = tf.cast(upstream, p.dtype)
    size = tf.reduce_sum(s, axis=-1, keepdims=True)
    mean_on_support = tf.reduce_sum(s * g, axis=-1, keepdims=True) / size
    return s * (g - mean_on_support)


def _sparsemax_forward(z):
    """Closed-form sparsemax of `z` (float32/float64) over the last axis."""
    d = tf.shape(z)[-1]
    z_sorted = tf.sort(z, axis=-1, direction="DESCENDING")
    cumsum = tf.cumsum(z_sorted, axis=-1)
    k = tf.cast(tf.range(1, d + 1), z.dtype)
    # The sorted prefix that satisfies 1 + k z_(k) > cumsum_k is the support (it is a prefix, Martins & Astudillo).
    in_support = 1.0 + k * z_sorted > cumsum
    support_size = tf.reduce_sum(tf.cast(in_support, z.dtype), axis=-1, keepdims=True)
    support_sum = tf.reduce_sum(tf.where(in_support, z_sorted, tf.zeros_like(z_sorted)), axis=-1, keepdims=True)
    tau = (support_sum - 1.0) / support_size
    return tf.maximum(z - tau, 0.0)


@tf.custom_gradient
def _sparsemax_with_grad(z):
    p = _sparsemax_forward(z)

    def grad(upstream):
        return sparsemax_vjp(p, upstream, p > 0)

    return p, grad


def sparsemax(z):
    """Closed-form sparsemax of `z` over the last axis: the Euclidean projection onto the simplex.

    Sort-based algorithm of Martins & Astudillo (ICML 2016, Prop. 1) with a custom gradient equal to the sparsemax
    Jacobian diag(s) - s s^T / |S| (s the support indicator). Exact up to floating-point rounding (tested against
    the float64 NumPy projection `sparsemax_numpy`). AVCE's Sp(z), Eq. 6 of Kim & Song (ECCV 2022).

    Args:
      z: float tensor of shape (..., d); the projection is over the last axis. float16/bfloat16 are computed in
        float32 and the result cast back.

    Returns:
      Tensor of the shape and dtype of `z`; every row is non-negative, sums to 1 and is usually sparse.
      Entries equal to -inf map to 0; rows holding +inf or NaN give non-finite values (not checked).
    """
    z = tf.convert_to_tensor(z)
    work_dtype = compute_dtype(z.dtype)
    p = _sparsemax_with_grad(tf.cast(z, work_dtype))
    return tf.cast(p, z.dtype)


def softmax(z):
    """Softmax exp(z) / sum_i exp(z_i) over the last axis (AVCE's dense view Sm(z), Eq. 7 of Kim & Song, ECCV 2022).

    Half-precision inputs are computed in float32 and cast back (like `sparsemax`).
    """
    z = tf.convert_to_tensor(z)
    work_dtype = compute_dtype(z.dtype)
    return tf.cast(tf.nn.softmax(tf.cast(z, work_dtype), axis=-1), z.dtype)


def sparsemax_numpy(z):
    """Exact NumPy reference of sparsemax: sort-based projection onto the simplex, in float64.

    For tests and benchmarks. Works on the last axis of an array of shape (..., d); returns float64.
    """
    z = np.asarray(z, dtype=np.float64)
    z_sorted = -np.sort(-z, axis=-1)
    cumsum = np.cumsum(z_sorted, axis=-1)
    k = np.arange(1, z.shape[-1] + 1, dtype=np.float64)
    support_size = np.sum(1.0 + k * z_sorted > cumsum, axis=-1, keepdims=True)
    tau = (np.take_along_axis(cumsum, support_size - 1, axis=-1) - 1.0) / support_size
    return np.maximum(z - tau, 0.0)


def sparsemax_jacobian_numpy(z):
    """Exact NumPy Jacobian d sparsemax(z) / d z = diag(s) - s s^T / |S| for an array of shape (..., d).

    Returns float64 of shape (..., d, d) with J[..., i, j] = d sparsemax(z)_i / d z_j (symmetric).
    """
    s = (sparsemax_numpy(z) > 0).astype(np.float64)
    size = s.sum(axis=-1)[..., None, None]
    eye = np.eye(s.shape[-1])
    return eye * s[..., None, :] - s[..., :, None] * s[..., None, :] / size
