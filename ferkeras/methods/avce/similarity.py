"""Similarity functions of AVCE in the arousal-valence (AV) space.

Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022,
Sections 3.3-3.4 and 4.2:

* ``f``  (Eq. 4): ``(1 - theta/pi) + mu * (1 - | ||x|| - ||y|| |)``, the paper's default, ``mu = 0.75``;
* ``f1`` (Sec. 3.4): ``||x|| ||y|| cos(theta)``, i.e. the dot product;
* ``f2`` (Eq. 5): ``f + 1_pol``, with ``1_pol = 0`` when the valence signs agree and ``-0.5`` otherwise,

where ``theta = arccos(x . y / (||x|| ||y||))``. Every function reduces the last axis and broadcasts the others,
so ``f(x[:, None], y[None])`` gives the full ``(B, B)`` similarity matrix.

Numerical conventions (the paper leaves them open):

* The cosine is clipped to ``[-1 + eps, 1 - eps]`` before ``arccos``. The derivative of ``arccos`` is infinite at
  +-1; with the clip, (anti-)parallel pairs get a zero angular gradient and a finite one everywhere else. The
  clip also keeps the angular term ``1 - theta/pi`` strictly inside ``(0, 1)``, which is the paper's "angular
  similarity clipped to (0, 1]" (Sec. 4.2). The price is a value error of at most ``sqrt(2 eps)/pi``
  (about 1.5e-4 with the float32 default ``eps = 1e-7``) for exactly (anti-)parallel pairs.
* Norms are floored at ``eps``: ``||v|| := sqrt(max(sum v^2, eps^2))``. A zero vector therefore has norm ``eps``
  and cosine 0 with anything, so its angular term is exactly 1/2 (theta = pi/2), and the gradient of the norm at
  the zero vector is 0 instead of NaN. The angle itself is discontinuous at the zero vector: its gradient there
  is finite but of order ``1/eps``.
* Valence is component 0. A zero valence agrees with either sign (no polarity penalty). ``1_pol`` is piecewise
  constant, so it adds nothing to the gradient.
"""

import math

from keras import ops

MU = 0.75
"""Balance factor mu of Eq. 4 (paper, Sec. 4.2)."""

POLARITY_PENALTY = -0.5
"""Value of 1_pol in Eq. 5 when the valence signs of the two inputs differ."""

EPS = 1e-7
"""Default cosine clip margin and norm floor; 1 - 1e-7 is still below 1 in float32."""

SIMILARITY_NAMES = ("f", "f1", "f2")
"""The paper's names: ``f`` (Eq. 4, the default), ``f1`` (Sec. 3.4) and ``f2`` (Eq. 5)."""


def safe_norm(v, eps=EPS):
    """L2 norm over the last axis, floored at ``eps``: ``sqrt(max(sum v^2, eps^2))``.

    The floor makes the norm of a zero vector ``eps`` with a zero (not NaN) gradient.
    """
    return ops.sqrt(ops.maximum(ops.sum(ops.square(v), axis=-1), eps * eps))


def clipped_cosine(x, y, eps=EPS):
    """Cosine of the angle between ``x`` and ``y`` (last axis), clipped to ``[-1 + eps, 1 - eps]``.

    With the norm floor of :func:`safe_norm`, the cosine with a zero vector is 0.
    """
    cosine = ops.sum(x * y, axis=-1) / (safe_norm(x, eps) * safe_norm(y, eps))
    return ops.clip(cosine, -1.0 + eps, 1.0 - eps)


def angular_similarity(x, y, eps=EPS):
    """Angular term ``1 - theta(x, y)/pi`` of Eqs. 2 and 4, in ``(0, 1)`` thanks to the cosine clip."""
    return 1.0 - ops.arccos(clipped_cosine(x, y, eps)) / math.pi


def avce_similarity(x, y, mu=MU, eps=EPS):
    """Similarity ``f`` of AVCE, Eq. 4 (Kim & Song, ECCV 2022): angle plus intensity.

    ``f(x, y) = (1 - theta/pi) + mu * (1 - | ||x|| - ||y|| |)``.

    Args:
        x, y: tensors of the same shape up to broadcasting, ``(..., D)``; ``D = 2`` (valence, arousal) in AVCE.
        mu: balance factor of the intensity term (0.75 in the paper).
        eps: cosine clip margin and norm floor (see the module docstring).

    Returns:
        Tensor of shape ``(...)``. Values lie in ``(-inf, 1 + mu)``.
    """
    intensity = 1.0 - ops.abs(safe_norm(x, eps) - safe_norm(y, eps))
    return angular_similarity(x, y, eps) + mu * intensity


def dot_similarity(x, y):
    """Similarity ``f1 = ||x|| ||y|| cos(theta) = x . y`` (Kim & Song, Sec. 3.4), the dot product over the last axis."""
    return ops.sum(x * y, axis=-1)


def polarity_penalty(x, y, penalty=POLARITY_PENALTY):
    """Indicator ``1_pol`` of Eq. 5: ``penalty`` where the valences (component 0) have opposite signs, else 0.

    A valence of exactly 0 counts as agreeing with both signs.
    """
    opposite = ops.sign(x[..., 0]) * ops.sign(y[..., 0]) < 0
    return ops.where(opposite, ops.cast(penalty, x.dtype), ops.cast(0.0, x.dtype))


def polarity_similarity(x, y, mu=MU, eps=EPS, penalty=POLARITY_PENALTY):
    """Similarity ``f2 = f + 1_pol`` of Eq. 5 (Kim & Song): :func:`avce_similarity` plus :func:`polarity_penalty`."""
    return avce_similarity(x, y, mu=mu, eps=eps) + polarity_penalty(x, y, penalty)


def check_similarity_name(name):
    """Return ``name`` if it is one of ``"f"``, ``"f1"``, ``"f2"``; raise a ``ValueError`` naming it otherwise."""
    if name not in SIMILARITY_NAMES:
        raise ValueError(f"Unknown AVCE similarity {name!r}; expected one of {', '.join(SIMILARITY_NAMES)}.")
    return name


def similarity(x, y, name="f", mu=MU, eps=EPS):
    """Evaluate the AVCE similarity called ``name`` in the paper: ``"f"`` (Eq. 4), ``"f1"`` (dot) or ``"f2"`` (Eq. 5).

    ``mu`` and ``eps`` are ignored by ``"f1"``.
    """
    check_similarity_name(name)
    if name == "f1":
        return dot_similarity(x, y)
    if name == "f2":
        return polarity_similarity(x, y, mu=mu, eps=eps)
    return avce_similarity(x, y, mu=mu, eps=eps)
