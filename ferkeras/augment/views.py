"""Per-view augmentation of a multi-view batch (anchor / positive / hard negatives ...) inside ``tf.data``.

Contrastive pre-training batches are dicts of views (SSL-FER: Shu et al., BMVC 2022, Sec. 3; the same layout
serves ContraWarping and RMFER), e.g.::

    "anchor" (B, S, S, 3), "positive" (B, S, S, 3), "hard_negatives" (B, K, S, S, 3),
    optional "<view>_landmarks" (B, 68, 2) / (B, K, 68, 2), "identity_image" (B, S, S, 3) ...

:class:`MultiViewAugment` maps a dict ``view name -> augmentation stack`` over such a batch: each view gets its own
stack (a :class:`ferkeras.augment.ssl.Compose` or a list of steps), with its own random draws; a view with an
extra axis (``(B, K, ...)``, hard negatives) is folded to ``(B * K, ...)`` for the stack and unfolded after.  Steps
that need a second image - :class:`ferkeras.augment.faceswap.FaceSwap` takes the positive and an identity image -
are wrapped in :class:`Paired`, which reads the partner (and its landmarks) from the batch.  Keys that are not
views pass through unchanged.
"""

from __future__ import annotations

from typing import Dict, Iterator, Mapping, Optional, Set

import tensorflow as tf

from ferkeras.augment.ssl import Compose, Step, as_step


class ViewContext(Mapping):
    """Read-only view of the (unaugmented) batch as a step sees it.

    For a folded view (``B * K`` images) every tensor is repeated ``K`` times along its first axis on access, so
    image ``b * K + k`` meets batch element ``b``'s partner.
    """

    def __init__(self, batch: Mapping[str, tf.Tensor], repeats=None):
        self._batch, self._repeats = batch, repeats

    def __getitem__(self, key):
        value = self._batch[key]
        if self._repeats is None:
            return value
        return tf.repeat(value, self._repeats, axis=0)

    def __iter__(self) -> Iterator[str]:
        return iter(self._batch)

    def __len__(self) -> int:
        return len(self._batch)


class Paired(Step):
    """A two-image operation as a step: ``op(images, partner, landmarks, partner_landmarks) -> (images, landmarks)``.

    The partner images (and, when the batch has them, their landmarks) are read from the batch under ``partner``
    and ``partner_landmarks``.  ``Paired(FaceSwap(0.5))`` pastes each positive's expression onto the face in
    ``batch["identity_image"]``.
    """

    def __init__(self, op, partner: str = "identity_image", partner_landmarks: Optional[str] = "{partner}_landmarks",
                 name: Optional[str] = None):
        self.op = op
        self.partner = partner
        self.partner_landmarks = None if partner_landmarks is None else partner_landmarks.format(partner=partner)
        self.name = name or getattr(op, "name", None) or type(op).__name__.lower()

    @property
    def consumes(self) -> tuple:
        return tuple(k for k in (self.partner, self.partner_landmarks) if k)

    def get_config(self):
        return dict(op=self.op, partner=self.partner, partner_landmarks=self.partner_landmarks, name=self.name)

    def __call__(self, images, landmarks=None, context=None):
        if context is None or self.partner not in context:
            have = sorted(context) if context is not None else []
            raise KeyError(f"step {self.name!r} needs the partner images {self.partner!r} in the batch; "
                           f"the batch has {have}")
        partner_landmarks = (context[self.partner_landmarks]
                             if self.partner_landmarks and self.partner_landmarks in context else None)
        return self.op(images, context[self.partner], landmarks, partner_landmarks)


def _consumed(step) -> Set[str]:
    keys = set(getattr(step, "consumes", ()))
    for inner in getattr(step, "steps", ()):
        keys |= _consumed(inner)
    return keys


class MultiViewAugment:
    """Applies one augmentation stack per view to a batch dict (see the module docstring).

    Args:
      stacks: ``view name -> Compose | Step | list of steps`` (a list becomes a :class:`Compose`).  Views are
        augmented in this order, each from the unaugmented batch.
      landmarks_key: the key of a view's landmarks (``"{view}_landmarks"``); used when present in the batch, and
        replaced by the augmented landmarks (which follow the views' geometric steps).
      drop_consumed: remove from the output what the stacks consumed: the views' landmark keys and the partner
        images of :class:`Paired` steps (the model sees only the views and the labels).

    Call it on a batch dict (e.g. ``dataset.map(augment)``); returns a new dict.
    """

    def __init__(self, stacks: Mapping[str, object], landmarks_key: str = "{view}_landmarks",
                 drop_consumed: bool = True):
        if not stacks:
            raise ValueError("MultiViewAugment needs at least one view -> stack entry")
        self.stacks: Dict[str, Step] = {}
        for view, stack in stacks.items():
            if isinstance(stack, (list, tuple)):
                stack = Compose(stack, name=view)
            self.stacks[view] = as_step(stack)
        self.landmarks_key = landmarks_key
        self.drop_consumed = bool(drop_consumed)

    def _lm_key(self, view: str) -> str:
        return self.landmarks_key.format(view=view)

    def __repr__(self):
        return f"MultiViewAugment({self.stacks!r})"

    def __call__(self, batch: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        if not isinstance(batch, Mapping):
            raise TypeError(f"MultiViewAugment takes a dict batch, got {type(batch).__name__}")
        out = dict(batch)
        consumed: Set[str] = set()
        for view, stack in self.stacks.items():
            if view not in batch:
                raise KeyError(f"view {view!r} is not in the batch; the batch has {sorted(batch)}")
            images = tf.convert_to_tensor(batch[view])
            lm_key = self._lm_key(view)
            landmarks = batch.get(lm_key)
            rank = images.shape.rank
            if rank == 4:
                new_images, new_landmarks = stack(images, landmarks, ViewContext(batch))
            elif rank == 5:  # (B, K, H, W, C): fold the view axis into the batch
                shape = tf.shape(images)
                b, k = shape[0], shape[1]
                flat = tf.reshape(images, tf.concat([[b * k], shape[2:]], 0))
                flat_lm = None if landmarks is None else tf.reshape(landmarks, tf.stack([b * k, -1, 2]))
                new_images, new_landmarks = stack(flat, flat_lm, ViewContext(batch, repeats=k))
                out_shape = tf.shape(new_images)
                new_images = tf.reshape(new_images, tf.concat([[b, k], out_shape[1:]], 0))
                new_images.set_shape(images.shape[:2].concatenate(new_images.shape[2:]))
                if new_landmarks is not None:
                    new_landmarks = tf.reshape(new_landmarks, tf.stack([b, k, -1, 2]))
                    if landmarks is not None:
                        new_landmarks.set_shape(tf.convert_to_tensor(landmarks).shape)
            else:
                raise ValueError(f"view {view!r} must be (B, H, W, C) or (B, K, H, W, C) images, "
                                 f"got shape {images.shape}")
            out[view] = new_images
            if lm_key in batch:
                consumed.add(lm_key)
                if new_landmarks is None:
                    out.pop(lm_key, None)  # a step moved the pixels without the points: stale, never passed on
                else:
                    out[lm_key] = new_landmarks
            consumed |= _consumed(stack)
        if self.drop_consumed:
            for key in consumed - set(self.stacks):
                out.pop(key, None)
        return out


__all__ = ["MultiViewAugment", "Paired", "ViewContext"]
