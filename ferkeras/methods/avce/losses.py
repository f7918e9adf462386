"""AVCE's losses: the contrastive objective L_AVCE (Eq. 2), the discriminative loss L_dis (Eq. 8) and the Table 4
ablation losses (InfoNCE with an AV-space similarity as its critic, Eq. 1; Barlow Twins).

Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022, Sections 3.3
and 3.6, Algorithm 1. In Algorithm 1, with ``z = C(E(img))``:

* forward pass 1: ``x = R(z)``, ``y_a = H(Sp(z))``, ``y_n = H(Sm(z))`` (all ``(B, 2)`` in the AV space) and
  ``L_main = L_AV(x, GT) + L_AVCE(x, y_a, y_n)``  ->  :class:`AVCELoss`, called ``loss(x, (y_a, y_n))``;
* forward pass 2: ``v, v_a, v_n = H1(z), H1(z_a), H1(z_n)`` (``(B, 8)``) and ``L_dis``  ->
  :class:`DiscriminativeLoss`, called ``loss(v, (v_a, v_n))``.

The ``y_true`` slot of these Keras losses carries the anchor (``x`` or ``v``), not a label; gradients flow into it.
:func:`make_contrastive_loss` swaps L_AVCE for the ablation losses of Table 4: :class:`InfoNCELoss` (Eq. 1 with an
AVCE similarity as the critic, below) and the generic :class:`ferkeras.losses.barlow_twins.BarlowTwinsLoss`; all take
the same ``loss(x, (y_a, y_n))``.

Where the paper and the authors' published code differ, this module follows the paper: one negative pair per sample
(no ``B x B`` broadcast of the negatives), L_AVCE unweighted, and L_dis as printed in Eq. 8 (a sum over the batch,
hold terms not hinged).
"""

import keras
from keras import ops

from ferkeras.losses.barlow_twins import BarlowTwinsLoss
from ferkeras.methods.avce.similarity import EPS, MU, check_similarity_name, safe_norm, similarity

ALPHA = 0.5
"""Weight alpha of the negative-pair term of Eq. 2 (paper, Sec. 4.2)."""
BETA = 0.005
"""Weight beta of the squared positive-pair term of Eq. 2."""
GAMMA = 0.5
"""Weight gamma of the squared negative-pair term of Eq. 2."""
DELTA1 = 1.0
"""Margin delta_1 of the push term of Eq. 8."""
DELTA2 = 0.8
"""Holding factor delta_2 of the hold terms of Eq. 8."""


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


def avce_loss(x, y_a, y_n, similarity_name="f", alpha=ALPHA, beta=BETA, gamma=GAMMA, mu=MU, eps=EPS):
    """Per-sample AVCE loss: the negative of the objective inside the ``sup`` of Eq. 2 (Kim & Song).

    Eq. 2 is maximised over the similarity (the network that produces it), so the loss to *minimise* is its
    negative. The expectations of Eq. 2 are batch means over the ``B`` positive pairs ``(x_i, y_a_i)`` (from
    ``P_XY``) and the ``B`` negative pairs ``(x_i, y_n_i)`` (from ``P_X P_Y``) of Algorithm 1, so

        -L_AVCE = mean_i loss_i,
        loss_i  = -( f(x_i, y_a_i) - alpha f(x_i, y_n_i) - beta/2 f(x_i, y_a_i)^2 - gamma/2 f(x_i, y_n_i)^2 ).

    Minimising it raises ``f`` on positive pairs (up to ``1/beta``) and drives ``f`` on negative pairs towards
    ``-alpha/gamma``; Lemma 1 gives the optimum ``f* = (r - alpha) / (beta r + gamma)``.

    Args:
        x: ``(B, 2)`` regressor output ``R(z)``.
        y_a: ``(B, 2)`` positive view ``H(Sp(z))``.
        y_n: ``(B, 2)`` negative view ``H(Sm(z))``.
        similarity_name: ``"f"`` (Eq. 4, the paper's default), ``"f1"`` (dot product) or ``"f2"`` (Eq. 5).
        alpha, beta, gamma: weights of Eq. 2 (0.5, 0.005, 0.5 in the paper).
        mu, eps: passed to the similarity (see :mod:`ferkeras.methods.avce.similarity`).

    Returns:
        ``(B,)`` tensor of per-sample losses.
    """
    check_similarity_name(similarity_name)
    f_a = similarity(x, y_a, similarity_name, mu=mu, eps=eps)
    f_n = similarity(x, y_n, similarity_name, mu=mu, eps=eps)
    objective = f_a - alpha * f_n - 0.5 * beta * ops.square(f_a) - 0.5 * gamma * ops.square(f_n)
    return -objective


def discriminative_loss(v, v_a, v_n, delta1=DELTA1, delta2=DELTA2, eps=EPS):
    """Per-sample term of the discriminative loss L_dis, Eq. 8 (Kim & Song), as printed.

        loss_i = [delta1 - ||v_a - v_n||^2]_+ + (||vbar_a|| - delta2) + (||vbar_n|| - delta2),
        vbar_* = v_* / ||v_*|| - v / ||v||.

    Only the push term is hinged; the hold terms are linear as in the paper, so each lies in
    ``[-delta2, 2 - delta2]`` and ``delta2`` shifts the value without changing the gradient: minimising them pulls
    the directions of ``v_a`` and ``v_n`` towards that of ``v``. At exactly ``||v_a - v_n||^2 = delta1`` the push
    term is 0 with gradient 0. Norms are floored at ``eps`` (:func:`ferkeras.methods.avce.similarity.safe_norm`),
    so zero vectors and ``vbar = 0`` (parallel ``v_*`` and ``v``) give finite values and gradients.

    Args:
        v, v_a, v_n: ``(B, D)`` outputs of ``H1`` for ``z``, ``z_a = Sp(z)`` and ``z_n = Sm(z)`` (``D = 8``).
        delta1: margin of the push term (1.0 in the paper).
        delta2: holding factor (0.8 in the paper).
        eps: norm floor.

    Returns:
        ``(B,)`` tensor; Eq. 8 is its sum over the batch.
    """

    def direction(u):
        return u / safe_norm(u, eps)[..., None]

    push = ops.relu(delta1 - ops.sum(ops.square(v_a - v_n), axis=-1))
    hold_a = safe_norm(direction(v_a) - direction(v), eps) - delta2
    hold_n = safe_norm(direction(v_n) - direction(v), eps) - delta2
    return push + hold_a + hold_n


@keras.saving.register_keras_serializable(package="ferkeras")
class AVCELoss(keras.losses.Loss):
    """Keras loss for :func:`avce_loss` (minus Eq. 2 of Kim & Song), called ``loss(x, (y_a, y_n))``.

    The default reduction ``"sum_over_batch_size"`` turns the per-sample terms into the batch means (the
    expectations) of Eq. 2, so the result is exactly ``-L_AVCE``; ``sample_weight`` weights the pairs.
    """

    def __init__(
        self,
        similarity="f",
        alpha=ALPHA,
        beta=BETA,
        gamma=GAMMA,
        mu=MU,
        eps=EPS,
        reduction="sum_over_batch_size",
        name="avce_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.similarity = check_similarity_name(similarity)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.mu = float(mu)
        self.eps = float(eps)

    def call(self, y_true, y_pred):
        y_a, y_n = unpack_views(y_pred, type(self).__name__)
        return avce_loss(
            y_true, y_a, y_n, self.similarity, self.alpha, self.beta, self.gamma, self.mu, self.eps
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            similarity=self.similarity,
            alpha=self.alpha,
            beta=self.beta,
            gamma=self.gamma,
            mu=self.mu,
            eps=self.eps,
        )
        return config


@keras.saving.register_keras_serializable(package="ferkeras")
class DiscriminativeLoss(keras.losses.Loss):
    """Keras loss for :func:`discriminative_loss` (Eq. 8 of Kim & Song), called ``loss(v, (v_a, v_n))``.

    ``reduction="sum"`` (the default) is Eq. 8 as printed: a sum over the triplets of the batch, kept so that the
    paper's settings reproduce. Adam (the paper's optimiser for E and C) is invariant to the factor ``B``; the
    paper's SGD on H1 is not: its step grows with the batch size. Pass ``reduction="sum_over_batch_size"`` for a
    batch-size-independent mean.
    """

    def __init__(
        self,
        delta1=DELTA1,
        delta2=DELTA2,
        eps=EPS,
        reduction="sum",
        name="discriminative_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.delta1 = float(delta1)
        self.delta2 = float(delta2)
        self.eps = float(eps)

    def call(self, y_true, y_pred):
        v_a, v_n = unpack_views(y_pred, type(self).__name__)
        return discriminative_loss(y_true, v_a, v_n, self.delta1, self.delta2, self.eps)

    def get_config(self):
        config = super().get_config()
        config.update(delta1=self.delta1, delta2=self.delta2, eps=self.eps)
        return config


def info_nce_loss(x, y_a, y_n, similarity_name="f", temperature=1.0, mu=MU, eps=EPS):
    """Per-anchor InfoNCE loss, the negative of Eq. 1 (Kim & Song) with an AVCE similarity as the critic.

    For anchor ``x_i`` the ``N = B + 1`` candidates of Eq. 1 are the positive ``y_1 = y_a_i`` and the negatives
    ``y_n_j`` of every sample ``j = 1..B`` of the batch (its own negative view included). With
    ``s(x, y) = f(x, y) / temperature``:

        loss_i = -log( e^{s(x_i, y_a_i)} / ( (1/N) * sum_{y in candidates} e^{s(x_i, y)} ) )
               = logsumexp_{y in candidates} s(x_i, y) - log N - s(x_i, y_a_i).

    The ``1/N`` of Eq. 1 only shifts the value by ``-log N`` (gradients are unchanged); it is kept so the batch
    mean is exactly minus the estimator of Eq. 1.

    Args:
        x, y_a, y_n: ``(B, D)`` anchor, positive view, negative view.
        similarity_name: ``"f"`` (Eq. 4, default), ``"f1"`` or ``"f2"`` (Eq. 5); see
            :mod:`ferkeras.methods.avce.similarity`.
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


@keras.saving.register_keras_serializable(package="ferkeras")
class InfoNCELoss(keras.losses.Loss):
    """Keras loss for :func:`info_nce_loss` (Eq. 1 of Kim & Song, negated), called ``loss(x, (y_a, y_n))``.

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


CONTRASTIVE_LOSSES = {"avce": AVCELoss, "infonce": InfoNCELoss, "barlow_twins": BarlowTwinsLoss}
"""The contrastive losses of Table 4 (Kim & Song), all called ``loss(x, (y_a, y_n))``."""


def make_contrastive_loss(name="avce", **kwargs):
    """Build the contrastive loss of Algorithm 1 by name, for the ablation of Table 4 (Kim & Song).

    Args:
        name: ``"avce"`` (:class:`AVCELoss`, Eq. 2), ``"infonce"`` (:class:`InfoNCELoss`, Eq. 1) or
            ``"barlow_twins"`` (:class:`ferkeras.losses.barlow_twins.BarlowTwinsLoss`).
        **kwargs: constructor arguments of that class.

    Returns:
        A ``keras.losses.Loss`` called ``loss(x, (y_a, y_n))``.
    """
    if name not in CONTRASTIVE_LOSSES:
        raise ValueError(f"Unknown contrastive loss {name!r}; expected one of {', '.join(CONTRASTIVE_LOSSES)}.")
    return CONTRASTIVE_LOSSES[name](**kwargs)
