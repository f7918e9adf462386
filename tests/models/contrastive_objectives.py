"""Small contrastive objectives and encoders for the tests of the shared pre-training model (not library code).

``SimCLRObjective`` is SimCLR's NT-Xent from the anchor's side (Chen et al., ICML 2020, Eq. 1): for anchor i the
logits are its cosine similarities / tau to every positive of the batch (its own is the target) and to its own hard
negatives; the loss is the mean cross-entropy, optionally weighted per sample by ``extras["weight"]`` (taken from
the batch by ``precompute``, so the tests can see extras travel with the projections). ``numpy_loss`` is the same
equation in NumPy.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from ferkeras.losses.objective import ContrastiveObjective


@keras.saving.register_keras_serializable(package="ferkeras_tests")
class SimCLRObjective(ContrastiveObjective):
    loss_terms = ("top1",)

    def __init__(self, temperature=0.5, use_weight=False, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)
        self.use_weight = bool(use_weight)

    def precompute(self, views, training=False):
        if self.use_weight:
            return {"weight": tf.cast(views["weight"], tf.float32)}
        return {}

    def call(self, projections, extras, training=False):
        a = tf.math.l2_normalize(projections["anchor"], -1)
        p = tf.math.l2_normalize(projections["positive"], -1)
        logits = tf.matmul(a, p, transpose_b=True) / self.temperature
        if "hard_negatives" in projections:
            h = tf.math.l2_normalize(projections["hard_negatives"], -1)
            logits = tf.concat([logits, tf.einsum("bd,bkd->bk", a, h) / self.temperature], 1)
        labels = tf.range(tf.shape(a)[0])
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        if self.use_weight:
            w = extras["weight"]
            loss = tf.reduce_sum(ce * w) / tf.reduce_sum(w)
        else:
            loss = tf.reduce_mean(ce)
        top1 = tf.reduce_mean(tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == labels, tf.float32))
        return {"loss": loss, "top1": top1, "per_step_extra": 2.0 * loss}

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "use_weight": self.use_weight}


def numpy_loss(anchor, positive, hard_negatives=None, temperature=0.5, weight=None):
    """``SimCLRObjective``'s loss in float64 NumPy."""
    def unit(x):
        x = np.asarray(x, np.float64)
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    a, p = unit(anchor), unit(positive)
    logits = a @ p.T / temperature
    if hard_negatives is not None:
        logits = np.concatenate([logits, np.einsum("bd,bkd->bk", a, unit(hard_negatives)) / temperature], 1)
    m = logits.max(1, keepdims=True)
    log_softmax = logits - m - np.log(np.exp(logits - m).sum(1, keepdims=True))
    ce = -log_softmax[np.arange(len(a)), np.arange(len(a))]
    w = np.ones(len(a)) if weight is None else np.asarray(weight, np.float64)
    return float((ce * w).sum() / w.sum())


def conv_encoder(size=16, width=16, name="conv_encoder"):
    """A BatchNorm-free conv encoder (images -> pooled features): each sample's features depend on that sample
    alone, in training and inference alike."""
    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Conv2D(width, 3, strides=2, activation="relu", name="conv1")(inputs)
    x = layers.Conv2D(width, 3, activation="relu", name="conv2")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name=name)


def pretraining_batch(batch=4, size=16, hard_negatives=2, seed=0, labels=True):
    """A pre-training batch as the SSL-FER pipeline yields it (random pixels), with probe labels (one unknown)."""
    rng = np.random.default_rng(seed)
    out = {"anchor": rng.random((batch, size, size, 3), dtype="float32"),
           "positive": rng.random((batch, size, size, 3), dtype="float32"),
           "identity": np.arange(batch, dtype="int32"), "track": np.arange(batch, dtype="int32"),
           "weight": rng.uniform(0.5, 2.0, batch).astype("float32")}
    if hard_negatives:
        out["hard_negatives"] = rng.random((batch, hard_negatives, size, size, 3), dtype="float32")
    if labels:
        expression = rng.integers(0, 3, batch).astype("int32")
        expression[-1] = -1
        va = rng.uniform(-1, 1, (batch, 2)).astype("float32")
        va[0] = np.nan
        out.update(expression=expression, va=va)
    return out
