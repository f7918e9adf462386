"""Contrastive losses of AVCE's ablation (Kim & Song, ECCV 2022, seed 000, Table 4): InfoNCE and Barlow Twins.

Both take the same three AV-space tensors as :class:`ferkeras.losses.avce.AVCELoss`, so they can replace L_AVCE
in Algorithm 1 (see :func:`ferkeras.losses.avce.make_contrastive_loss`): the anchor ``x = R(z)`` and the two views
``y_a = H(Sp(z))`` (positive) and ``y_n = H(Sm(z))`` (negative), each ``(B, D)``. As Keras losses they are called
``loss(x, (y_a, y_n))``: the ``y_true`` slot carries the anchor, not a label.
"""

import keras
from keras import ops

from ferkeras.ops.similarity import EPS, MU, check_similarity_name, similarity

BARLOW_TWINS_LAMBDA = 5e-3
"""Off-diagonal weight lambda of Barlow Twins (Zbontar et al., ICML 2021)."""

BARLOW_TWINS_EPS = 1e-5
"""Variance floor of the batch normalisation in Barlow Twins (the BatchNorm default of its reference code)."""


def unpack_views(y_pred, loss_name):
    """Split ``y_pred = (y_a, y_n)``; raise a ``ValueError`` naming ``loss_name`` for anything else."""
    if not isinstance(y_pred, (tuple, list)) or len(y_pred) != 2:
        raise ValueError(
            f"{loss_name} expects y_pred = (y_a, y_n), a pair of (B, D) tensors (positive and negative views); "
            f"got {type(y_pred).__name__}"
            + (f" of length {len(y_pred)}" if isinstance(y_pred, (tuple, list)) else "")
            + "."
        )
    return y_pred[0], y_pred[1]


def info_nce_loss(x, y_a, y_n, similarity_name="f", temperature=1.0, mu=MU, eps=EPS):
    """Per-anchor InfoNCE loss, the negative of Eq. 1 (seed 000) with an AVCE similarity as the critic.

    For anchor ``x_i`` the ``N = B + 1`` candidates of Eq. 1 are the positive ``y_1 = y_a_i`` and the negatives
    ``y_n_j`` of every sample ``j = 1..B`` of the batch (its own negative view included). With
    ``s(x, y) = f(x, y) / temperature``:

        loss_i = -log( e^{s(x_i, y_a_i)} / ( (1/N) * sum_{y in candidates} e^{s(x_i, y)} ) )
               = logsumexp_{y in candidates} s(x_i, y) - log N - s(x_i, y_a_i).

    The ``1/N`` of Eq. 1 only shifts the value by ``-log N`` (gradients are unchanged); it is kept so the batch
    mean is exactly minus the estimator of Eq. 1.

    Args:
        x, y_a, y_n: ``(B, D)`` anchor, positive view, negative view.
        similarity_name: ``"f"`` (Eq. 4, default), ``"f1"`` or ``"f2"`` (Eq. 5); see :mod:`ferkeras.ops.similarity`.
        temperature: divides the similarity (Eq. 1 has none: 1.0).
        mu, eps: passed to the similarity.

    Returns:
        ``(B,)`` tensor; its mean is the loss to minimise.
    """
    check_similarity_name(similarity_name)
    positive = similarity(x, y_a, similarity_name, mu=mu, eps=eps) / temperature
    negatives = similarity(x[:, None, :], y_n[None, :, :], similarity_name, mu=mu, eps=eps) / temperature
    logits = ops.concatenate([positive[:, None], negatives], axis=1)
    log_n = ops.log(ops.cast(ops.shape(logits)[1], logits.dtype))
    return ops.logsumexp(logits, axis=1) - log_n - positive


def barlow_twins_loss(z1, z2, lambda_=BARLOW_TWINS_LAMBDA, eps=BARLOW_TWINS_EPS):
    """Barlow Twins redundancy-reduction loss (Zbontar et al., ICML 2021), as in AVCE's Table 4 (seed 000).

    Each embedding is normalised along the batch, ``zn = (z - mean_b z) / sqrt(var_b z + eps)`` (biased variance,
    like the BatchNorm of the reference code), the cross-correlation is ``C = zn1^T zn2 / B`` (``D x D``), and

        loss = sum_i (1 - C_ii)^2 + lambda_ * sum_{i != j} C_ij^2.

    With ``eps -> 0`` ``C`` is the Pearson correlation matrix of the two views. For ``B = 1``, or a batch whose
    predictions are all identical, ``z - mean = 0`` exactly, so ``C = 0``, the loss is ``D`` (the number of
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
class InfoNCELoss(keras.losses.Loss):
    """Keras loss for :func:`info_nce_loss` (Eq. 1 of seed 000, negated), called ``loss(x, (y_a, y_n))``.

    The default reduction averages the per-anchor losses, i.e. the Monte-Carlo estimate of ``-Eq. 1``.
    """

    def __init__(
        self,
        similarity="f",
        temperature=1.0,
        mu=MU,
        eps=EPS,
        reduction="sum_over_batch_size",
        name="info_nce_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if temperature <= 0:
            raise ValueError(f"InfoNCELoss temperature must be positive, got {temperature}.")
        self.similarity = check_similarity_name(similarity)
        self.temperature = float(temperature)
        self.mu = float(mu)
        self.eps = float(eps)

    def call(self, y_true, y_pred):
        y_a, y_n = unpack_views(y_pred, type(self).__name__)
        return info_nce_loss(y_true, y_a, y_n, self.similarity, self.temperature, self.mu, self.eps)

    def get_config(self):
        config = super().get_config()
        config.update(similarity=self.similarity, temperature=self.temperature, mu=self.mu, eps=self.eps)
        return config


@keras.saving.register_keras_serializable(package="ferkeras")
class BarlowTwinsLoss(keras.losses.Loss):
    """Keras loss for :func:`barlow_twins_loss` between the anchor and the positive view, ``loss(x, (y_a, y_n))``.

    Barlow Twins has no negatives: it correlates the two views of the same images, here ``x = R(z)`` and
    ``y_a = H(Sp(z))`` (the positive pair of Eq. 2); ``y_n`` is accepted for a uniform interface and ignored.
    The loss is a batch statistic, so ``sample_weight`` is refused and ``reduction`` has no effect.
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
        y_a, _ = unpack_views(y_pred, type(self).__name__)
        return barlow_twins_loss(y_true, y_a, self.lambda_, self.eps)

    def get_config(self):
        config = super().get_config()
        config.update(lambda_=self.lambda_, eps=self.eps)
        return config
