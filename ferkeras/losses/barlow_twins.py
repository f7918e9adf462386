"""Barlow Twins redundancy-reduction loss between the embeddings of two views of the same images.

Zbontar, Jing, Misra, LeCun, Deny, "Barlow Twins: Self-Supervised Learning via Redundancy Reduction", ICML 2021,
Eq. 1 (the loss) and Eq. 2 (the cross-correlation matrix of the batch-normalised embeddings). AVCE (Kim & Song,
"Emotion-aware Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022) uses it as an ablation of
L_AVCE in Table 4, between the anchor ``x = R(z)`` and the positive view ``y_a = H(Sp(z))``
(:func:`ferkeras.methods.avce.make_contrastive_loss`).
"""

import keras
from keras import ops

BARLOW_TWINS_LAMBDA = 5e-3
"""Off-diagonal weight lambda of Eq. 1 (Zbontar et al., ICML 2021)."""

BARLOW_TWINS_EPS = 1e-5
"""Variance floor of the batch normalisation in Barlow Twins (the BatchNorm default of its reference code)."""


def barlow_twins_loss(z1, z2, lambda_=BARLOW_TWINS_LAMBDA, eps=BARLOW_TWINS_EPS):
    """Barlow Twins loss, Eq. 1 of Zbontar et al. (ICML 2021), on one batch.

    Each embedding is normalised along the batch, ``zn = (z - mean_b z) / sqrt(var_b z + eps)`` (biased variance,
    like the BatchNorm of the reference code), the cross-correlation is ``C = zn1^T zn2 / B`` (``D x D``, Eq. 2), and

        loss = sum_i (1 - C_ii)^2 + lambda_ * sum_{i != j} C_ij^2.

    With ``eps -> 0`` ``C`` is the Pearson correlation matrix of the two views. For ``B = 1``, or a batch whose
    embeddings are all identical, ``z - mean = 0`` exactly, so ``C = 0``, the loss is ``D`` (the number of
    features) and its gradient is 0: a batch statistic carries no signal there.

    Args:
        z1, z2: ``(B, D)`` embeddings of the two views.
        lambda_: weight of the off-diagonal (redundancy) term, 5e-3 in Barlow Twins.
        eps: variance floor of the normalisation.

    Returns:
        Scalar tensor.
    """

    def standardise(z):
        centred = z - ops.mean(z, axis=0, keepdims=True)
        return centred / ops.sqrt(ops.mean(ops.square(centred), axis=0, keepdims=True) + eps)

    batch = ops.cast(ops.shape(z1)[0], z1.dtype)
    c = ops.matmul(ops.transpose(standardise(z1)), standardise(z2)) / batch
    diagonal = ops.diagonal(c)
    on_diagonal = ops.sum(ops.square(1.0 - diagonal))
    off_diagonal = ops.sum(ops.square(c)) - ops.sum(ops.square(diagonal))
    return on_diagonal + lambda_ * off_diagonal


@keras.saving.register_keras_serializable(package="ferkeras")
class BarlowTwinsLoss(keras.losses.Loss):
    """Keras loss for :func:`barlow_twins_loss` (Eq. 1 of Zbontar et al., ICML 2021), called ``loss(z1, z2)``.

    ``y_true`` carries the first view's embeddings (not a label) and ``y_pred`` the second's. ``y_pred`` may also be
    a pair ``(z2, anything)``: the view-pair interface of AVCE's contrastive losses, ``loss(x, (y_a, y_n))``, where
    Barlow Twins correlates the anchor with the positive view and has no use for the negative one. The loss is a
    batch statistic, so ``sample_weight`` is refused and ``reduction`` has no effect; under ``tf.distribute`` divide
    it by the replicas yourself (:func:`ferkeras.losses.reduction.scale_for_replicas`).
    """

    def __init__(
        self,
        lambda_=BARLOW_TWINS_LAMBDA,
        eps=BARLOW_TWINS_EPS,
        reduction="sum_over_batch_size",
        name="barlow_twins_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.lambda_ = float(lambda_)
        self.eps = float(eps)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError("BarlowTwinsLoss is a batch statistic and does not accept sample_weight.")
        return super().__call__(y_true, y_pred)

    def call(self, y_true, y_pred):
        if isinstance(y_pred, (tuple, list)):
            if len(y_pred) != 2:
                raise ValueError(
                    "BarlowTwinsLoss expects y_pred = z2, a (B, D) tensor, or a pair (y_a, y_n) of (B, D) tensors "
                    f"(positive and negative views); got a {type(y_pred).__name__} of length {len(y_pred)}."
                )
            y_pred = y_pred[0]
        return barlow_twins_loss(y_true, y_pred, self.lambda_, self.eps)

    def get_config(self):
        config = super().get_config()
        config.update(lambda_=self.lambda_, eps=self.eps)
        return config
