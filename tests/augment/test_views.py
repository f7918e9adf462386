"""MultiViewAugment: one augmentation stack per view of a contrastive batch, including two-image steps."""

import numpy as np
import pytest
import tensorflow as tf

from ferkeras.augment import ssl
from ferkeras.augment.faceswap import FaceSwap, face_swap
from ferkeras.augment.views import MultiViewAugment, Paired
from ferkeras.data.synthetic import synthetic_arrays

B, K, S = 4, 2, 96


@pytest.fixture(scope="module")
def batch():
    """A pre-training batch as the SSL pipeline yields it, plus landmarks and the identity images FaceSwap needs."""
    data = synthetic_arrays(B * (3 + K), size=S, seed=2)
    images = data["images"].astype(np.float32) / 255
    lms = data["landmarks"]
    take = lambda k: slice(k * B, (k + 1) * B)  # noqa: E731
    return {
        "anchor": images[take(0)], "anchor_landmarks": lms[take(0)],
        "positive": images[take(1)], "positive_landmarks": lms[take(1)],
        "identity_image": images[take(2)], "identity_image_landmarks": lms[take(2)],
        "hard_negatives": images[3 * B:].reshape(B, K, S, S, 3),
        "hard_negatives_landmarks": lms[3 * B:].reshape(B, K, 68, 2),
        "identity": np.arange(B, dtype=np.int32), "track": np.arange(B, dtype=np.int32) + 10,
    }


def _tensors(batch):
    return {k: tf.convert_to_tensor(v) for k, v in batch.items()}


class _AddIndex(ssl.Step):
    """Adds each image's position in the (folded) batch: shows how views are folded and unfolded."""

    name = "index"

    def __call__(self, images, landmarks=None, context=None):
        n = tf.shape(images)[0]
        return images + tf.cast(tf.range(n), images.dtype)[:, None, None, None], landmarks


def test_views_get_their_stacks_and_other_keys_pass_through(batch):
    swap = FaceSwap(probability=1.0, seed=0)
    augment = MultiViewAugment({
        "anchor": ssl.sslfer_steps(resize=80, crop=64, seed=1),
        "positive": [Paired(swap)],
        "hard_negatives": [ssl.Resize(80), ssl.RandomCrop(64, seed=2)],
    })
    out = augment(_tensors(batch))
    assert out["anchor"].shape == (B, 64, 64, 3) and out["hard_negatives"].shape == (B, K, 64, 64, 3)
    assert out["positive"].shape == (B, S, S, 3)
    np.testing.assert_array_equal(out["identity"].numpy(), batch["identity"])
    np.testing.assert_array_equal(out["track"].numpy(), batch["track"])
    # The positive is each positive's expression on the identity image's face (FaceSwap's core result).
    for i in range(B):
        expected = face_swap(batch["positive"][i], batch["positive_landmarks"][i], batch["identity_image"][i],
                             batch["identity_image_landmarks"][i])
        np.testing.assert_allclose(out["positive"].numpy()[i], expected.image, atol=1e-6)
    assert swap.counter.swapped == B
    # What the stacks consumed is gone: partner images and the views' landmarks.
    assert set(out) == {"anchor", "positive", "hard_negatives", "identity", "track"}
    kept = MultiViewAugment({"positive": [Paired(FaceSwap(probability=1.0))]}, drop_consumed=False)(_tensors(batch))
    assert {"identity_image", "identity_image_landmarks", "positive_landmarks", "anchor_landmarks"} <= set(kept)
    # Kept landmarks are the composite's.
    np.testing.assert_allclose(kept["positive_landmarks"].numpy()[0], face_swap(
        batch["positive"][0], batch["positive_landmarks"][0], batch["identity_image"][0],
        batch["identity_image_landmarks"][0]).landmarks, atol=1e-5)


def test_folded_views_unfold_in_order_and_meet_their_partner(batch):
    out = MultiViewAugment({"hard_negatives": _AddIndex()})(_tensors(batch))["hard_negatives"].numpy()  # no clip
    delta = (out - batch["hard_negatives"])[:, :, 0, 0, 0]
    np.testing.assert_allclose(delta, np.arange(B * K).reshape(B, K), atol=1e-5)  # image (b, k) is b * K + k
    # A two-image step on a folded view: every one of element b's K images meets element b's partner.
    take_partner = Paired(lambda images, partner, lm, plm: (partner, lm), partner="anchor", name="take")
    out = MultiViewAugment({"hard_negatives": [take_partner]}, drop_consumed=False)(_tensors(batch))
    for k in range(K):
        np.testing.assert_array_equal(out["hard_negatives"].numpy()[:, k], batch["anchor"])
    # Landmarks of a folded view follow its geometry.
    out = MultiViewAugment({"hard_negatives": [ssl.Resize(48)]}, drop_consumed=False)(_tensors(batch))
    np.testing.assert_allclose(out["hard_negatives_landmarks"].numpy(),
                               (batch["hard_negatives_landmarks"] + 0.5) * 0.5 - 0.5, atol=1e-5)


def test_each_view_draws_its_own_augmentation(batch):
    same = _tensors(batch)
    same["positive"] = same["anchor"]
    augment = MultiViewAugment({"anchor": ssl.sslfer_steps(None, 64, mask=False),
                                "positive": ssl.sslfer_steps(None, 64, mask=False)})
    out = augment(same)
    assert not np.allclose(out["anchor"].numpy(), out["positive"].numpy())
    # A shared stack object still draws anew for every view.
    shared = ssl.sslfer_steps(None, 64, mask=False)
    out = MultiViewAugment({"anchor": shared, "positive": shared})(same)
    assert not np.allclose(out["anchor"].numpy(), out["positive"].numpy())


def test_in_tf_data_with_static_shapes(batch):
    swap = FaceSwap(probability=0.5, seed=3)
    augment = MultiViewAugment({
        "anchor": ssl.sslfer_steps(resize=80, crop=64, seed=4),
        "positive": [Paired(swap), ssl.MaskRegion(p=1.0), ssl.Resize(80), ssl.RandomCrop(64)],
        "hard_negatives": ssl.sslfer_steps(resize=80, crop=64, mask=False, seed=5),
    })
    ds = tf.data.Dataset.from_tensor_slices(batch).batch(2).map(augment, num_parallel_calls=2)
    spec = ds.element_spec
    assert spec["anchor"].shape.as_list() == [None, 64, 64, 3]
    assert spec["positive"].shape.as_list() == [None, 64, 64, 3]
    assert spec["hard_negatives"].shape.as_list() == [None, K, 64, 64, 3]
    assert spec["identity"].dtype == tf.int32 and "identity_image" not in spec
    for epoch in range(3):
        for element in ds:
            assert 0 <= float(tf.reduce_min(element["positive"])) and float(tf.reduce_max(element["anchor"])) <= 1
    assert swap.counter.examined == 3 * B and swap.counter.swapped + swap.counter.fallen_back == swap.counter.drawn


def test_clear_errors(batch):
    with pytest.raises(KeyError, match="'negatives'.*anchor"):
        MultiViewAugment({"negatives": [ssl.RandomFlip()]})(_tensors(batch))
    partnerless = {k: v for k, v in _tensors(batch).items() if k != "identity_image"}
    with pytest.raises(KeyError, match="identity_image"):
        MultiViewAugment({"positive": [Paired(FaceSwap())]})(partnerless)
    with pytest.raises(ValueError, match="at least one view"):
        MultiViewAugment({})
    with pytest.raises(ValueError, match="'identity'"):
        MultiViewAugment({"identity": [ssl.RandomFlip()]})(_tensors(batch))
