"""SSL-FER's spatial augmentation steps, each tested against its definition (and the Keras layers behind them)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ferkeras.augment import ssl
from ferkeras.augment.spatial import PRESETS, FaceAugment, flip_landmarks
from ferkeras.data.synthetic import synthetic_arrays
from ferkeras.face.regions import region_boxes

N = 2000  # draws for the probability checks: 4 binomial standard deviations are ~0.045 at p = 0.5


def _within(frac, p, n=N):
    return abs(frac - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-9


@pytest.fixture(scope="module")
def faces():
    data = synthetic_arrays(8, size=64, seed=1)
    return data["images"].astype(np.float32) / 255, data["landmarks"]


def _noise(n, size=8, seed=(1, 2)):
    return tf.random.stateless_uniform((n, size, size, 3), seed)


def _changed(out, images):
    return np.abs(out.numpy() - images.numpy()).reshape(len(images), -1).max(1) > 1e-6


# --- masking ----------------------------------------------------------------------------------------------------
def test_mask_fills_the_region_box_and_nothing_else(faces):
    images, landmarks = faces
    for region in ("eyes", "mouth"):
        out, lm = ssl.MaskRegion(region, p=1.0, fill=0.25, seed=0)(images, landmarks)
        np.testing.assert_array_equal(lm.numpy(), landmarks)
        boxes, _ = region_boxes(landmarks, 64, regions=(region,))
        for i in range(len(images)):
            y0, x0, y1, x1 = boxes.numpy()[i, 0] * 63
            rows = (np.arange(64) >= y0 - 0.5) & (np.arange(64) < y1 + 0.5)
            cols = (np.arange(64) >= x0 - 0.5) & (np.arange(64) < x1 + 0.5)
            inside = rows[:, None] & cols[None, :]
            assert inside.sum() > 30
            np.testing.assert_array_equal(out.numpy()[i][inside], 0.25)
            np.testing.assert_array_equal(out.numpy()[i][~inside], images[i][~inside])
            # the region's landmarks are all under the mask
            xy = np.round(landmarks[i, 48:68] if region == "mouth" else landmarks[i, 36:48]).astype(int)
            assert inside[xy[:, 1], xy[:, 0]].all()


def test_mask_probability_region_choice_and_missing_landmarks():
    rng = np.random.default_rng(0)
    landmarks = np.zeros((N, 68, 2), np.float32)
    landmarks[:, 17:48] = rng.uniform(2, 6, (N, 31, 2))   # eyes + brows in the top-left corner
    landmarks[:, 48:68] = rng.uniform(10, 14, (N, 20, 2))  # mouth lower right
    images = tf.ones((N, 16, 16, 3))
    step = ssl.MaskRegion(("eyes", "mouth"), p=0.5, seed=1)
    out = step(images, landmarks)[0].numpy()
    eyes, mouth = out[:, 4, 4, 0] == 0, out[:, 12, 12, 0] == 0
    assert not (eyes & mouth).any()
    assert _within((eyes | mouth).mean(), 0.5)
    assert _within(eyes.sum() / max((eyes | mouth).sum(), 1), 0.5, (eyes | mouth).sum())
    # Without landmarks (NaN) nothing is masked, and the skipped draws are counted.
    nan = np.full((N, 68, 2), np.nan, np.float32)
    out = step(images, nan)[0].numpy()
    assert (out == 1).all() and _within(int(step.skipped_no_landmarks.numpy()) / N, 0.5)
    with pytest.raises(ValueError, match="landmarks"):
        step(images)
    with pytest.raises(ValueError, match="regions"):
        ssl.MaskRegion("nose")


# --- geometry ---------------------------------------------------------------------------------------------------
def _dot_images(landmarks, size, index=30):
    images = np.zeros((len(landmarks), size, size, 3), np.float32)
    for i, (x, y) in enumerate(np.round(landmarks[:, index]).astype(int)):
        images[i, y - 1:y + 2, x - 1:x + 2] = 1.0
    return images


def _centroid(image):
    w = image[..., 0] / image[..., 0].sum()
    return np.array([(w.sum(0) * np.arange(w.shape[1])).sum(), (w.sum(1) * np.arange(w.shape[0])).sum()])


def test_resize_matches_tf_image_resize_and_moves_landmarks(faces):
    images, landmarks = faces
    for size, antialias in ((128, True), (40, True), (40, False)):
        out, lm = ssl.Resize(size, antialias=antialias)(images, landmarks)
        expected = tf.image.resize(images, (size, size), "bilinear", antialias=antialias)
        np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-5)
        np.testing.assert_allclose(lm.numpy(), (landmarks + 0.5) * size / 64 - 0.5, atol=1e-5)
    # The landmark lands on its pixels: a dot at point 30 ends up where the moved point says.
    whole = np.round(landmarks)  # the dot is centred on the rounded point
    dots = _dot_images(whole, 64)
    out, lm = ssl.Resize(128)(dots, whole)
    for i in range(len(dots)):
        np.testing.assert_allclose(_centroid(out.numpy()[i]), lm.numpy()[i, 30], atol=0.3)


def test_random_crop_is_per_image_exact_and_uniform(faces):
    images, landmarks = faces
    step = ssl.RandomCrop(48, seed=2)
    out, lm = step(images, landmarks)
    assert out.shape == (8, 48, 48, 3)
    offsets = []
    for i in range(len(images)):
        # Find the offset: the crop is an exact window of the input.
        found = [(y, x) for y in range(17) for x in range(17) if np.array_equal(images[i, y:y + 48, x:x + 48],
                                                                                 out.numpy()[i])]
        assert found, i
        y, x = found[0]
        offsets.append((y, x))
        np.testing.assert_allclose(lm.numpy()[i], landmarks[i] - [x, y], atol=1e-5)
    assert len(set(offsets)) > 4  # one offset per image (keras.layers.RandomCrop uses one per batch)
    # Offsets are uniform over 0 .. H - size, both ends included.
    probe = np.broadcast_to(np.arange(20, dtype=np.float32)[None, :, None, None], (N, 20, 20, 3))
    first = ssl.RandomCrop(16, seed=3)(probe)[0].numpy()[:, 0, 0, 0]  # = the row offset
    counts = np.bincount(first.astype(int), minlength=5)
    assert counts.size == 5 and (np.abs(counts / N - 0.2) < 0.04).all(), counts
    with pytest.raises(tf.errors.InvalidArgumentError, match="smaller"):
        ssl.RandomCrop(80)(images)


def test_random_flip_mirrors_half_the_images_and_relabels_landmarks(faces):
    images, landmarks = faces
    step = ssl.RandomFlip(seed=4)
    images_many = tf.concat([tf.convert_to_tensor(images)] * 50, 0)
    lm_many = np.concatenate([landmarks] * 50)
    out, lm = step(images_many, lm_many)
    out, lm = out.numpy(), lm.numpy()
    flipped = np.array([np.array_equal(o, x[:, ::-1]) for o, x in zip(out, images_many.numpy())])
    same = np.array([np.array_equal(o, x) for o, x in zip(out, images_many.numpy())])
    assert (flipped | same).all() and _within(flipped.mean(), 0.5, len(flipped))
    np.testing.assert_allclose(lm[flipped], flip_landmarks(lm_many[flipped], 64).numpy(), atol=1e-5)
    np.testing.assert_array_equal(lm[~flipped], lm_many[~flipped])
    # Point 36 is still the outer corner of the eye on the image's left after a mirror.
    assert (lm[flipped][:, 36, 0] < lm[flipped][:, 45, 0]).all()


# --- photometric ------------------------------------------------------------------------------------------------
def _numpy_blur(image, sigma, kernel):
    r = kernel // 2
    taps = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    taps /= taps.sum()
    pad = np.pad(image, ((r, r), (r, r), (0, 0)), mode="reflect")
    rows = sum(taps[k] * pad[:, k:k + image.shape[1]] for k in range(kernel))
    return sum(taps[k] * rows[k:k + image.shape[0]] for k in range(kernel))


def test_gaussian_blur_matches_the_definition_and_probability():
    images = _noise(6, 12)
    for sigma, kernel in ((0.7, 3), (1.5, 5)):
        out, _ = ssl.GaussianBlur(kernel, (sigma, sigma), p=1.0, seed=0)(images)
        for i in range(6):
            np.testing.assert_allclose(out.numpy()[i], _numpy_blur(images.numpy()[i], sigma, kernel), atol=1e-5)
    many = _noise(N)
    changed = _changed(ssl.GaussianBlur(3, p=0.5, seed=1)(many)[0], many)
    assert _within(changed.mean(), 0.5)
    with pytest.raises(ValueError, match="odd"):
        ssl.GaussianBlur(4)


def _grey(x):
    return x @ np.array([0.299, 0.587, 0.114])


def test_color_jitter_matches_torchvision_definitions():
    images = _noise(64, 8).numpy() * 0.5 + 0.2  # [0.2, 0.7]: never clipped by a factor in [0.6, 1.4]
    # brightness: one factor per image in [0.6, 1.4]
    out = ssl.ColorJitter(0.4, 0, 0, 0, p=1.0, seed=0)(images)[0].numpy()
    ratio = out / images
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio.reshape(64, -1)[:, :1, None, None], ratio.shape),
                               rtol=1e-4)
    f = ratio.reshape(64, -1)[:, 0]
    assert f.min() >= 0.6 - 1e-6 and f.max() <= 1.4 + 1e-6 and f.std() > 0.1
    # contrast: x f + mean(grey(x)) (1 - f), one f per image
    out = ssl.ColorJitter(0, 0.4, 0, 0, p=1.0, seed=0)(images)[0].numpy()
    for x, y in zip(images, out):
        m = _grey(x).mean()
        f = np.polyfit((x - m).ravel(), (y - m).ravel(), 1)[0]
        np.testing.assert_allclose(y, np.clip(x * f + m * (1 - f), 0, 1), atol=1e-5)
        assert 0.6 - 1e-6 <= f <= 1.4 + 1e-6
    # saturation: x f + grey(x) (1 - f): the grey level is kept
    out = ssl.ColorJitter(0, 0, 0.4, 0, p=1.0, seed=0)(images)[0].numpy()
    np.testing.assert_allclose(_grey(out), _grey(images), atol=1e-5)
    for x, y in zip(images, out):
        g = _grey(x)[..., None]
        f = np.polyfit((x - g).ravel(), (y - g).ravel(), 1)[0]
        np.testing.assert_allclose(y, np.clip(x * f + g * (1 - f), 0, 1), atol=1e-5)
    # hue: HSV value and saturation are kept, the hue turns by one shift in [-0.2, 0.2] per image
    out = ssl.ColorJitter(0, 0, 0, 0.2, p=1.0, seed=0)(images)[0]
    hsv_in, hsv_out = tf.image.rgb_to_hsv(images).numpy(), tf.image.rgb_to_hsv(out).numpy()
    np.testing.assert_allclose(hsv_out[..., 1:], hsv_in[..., 1:], atol=1e-4)
    shift = (hsv_out[..., 0] - hsv_in[..., 0] + 0.5) % 1.0 - 0.5
    np.testing.assert_allclose(shift, np.broadcast_to(shift.reshape(64, -1)[:, :1, None], shift.shape), atol=1e-3)
    assert np.abs(shift).max() <= 0.2 + 1e-3 and np.abs(shift).max() > 0.1
    # applied with probability p
    many = _noise(N)
    changed = _changed(ssl.ColorJitter(p=0.8, seed=1)(many)[0], many)
    assert _within(changed.mean(), 0.8)


def test_random_grayscale_is_luma_in_three_channels_with_probability_p():
    many = _noise(N)
    out = ssl.RandomGrayscale(p=0.2, seed=0)(many)[0].numpy()
    grey = np.ptp(out, axis=-1).reshape(N, -1).max(1) < 1e-6
    assert _within(grey.mean(), 0.2)
    # tf.image's luma weights (0.2989, 0.587, 0.114), torchvision's too: ITU-R 601 to 1e-4
    np.testing.assert_allclose(out[grey][..., 0], _grey(many.numpy()[grey]), atol=2e-4)
    np.testing.assert_array_equal(out[~grey], many.numpy()[~grey])


def test_keras_layers_not_used_differ_from_the_papers_definitions():
    """Why RandomCrop / GaussianBlur are not keras.layers' (see the ferkeras.augment.ssl docstring)."""
    images = _noise(8, 12)
    crops = keras.layers.RandomCrop(6, 6, seed=0)(images, training=True).numpy()
    offsets = {next((y, x) for y in range(7) for x in range(7) if np.allclose(images.numpy()[i, y:y + 6, x:x + 6],
                                                                              crops[i])) for i in range(8)}
    assert len(offsets) == 1  # one crop for the whole batch
    flat = tf.fill((4, 12, 12, 3), 0.5)
    blurred = keras.layers.RandomGaussianBlur(factor=(1.0, 1.0), kernel_size=3, sigma=1.0, seed=0)(
        flat, training=True).numpy()
    assert blurred[:, 0, 0].max() < 0.45  # zero padding darkens a flat image's border
    ours = ssl.GaussianBlur(3, (1.0, 1.0), p=1.0)(flat)[0].numpy()
    np.testing.assert_allclose(ours, 0.5, atol=1e-6)  # reflected borders keep it flat


# --- the stack --------------------------------------------------------------------------------------------------
def test_sslfer_steps_follow_the_paper(faces):
    images, landmarks = faces
    stack = ssl.sslfer_steps(resize=72, crop=56, seed=0)
    assert stack.names == ("mask", "resize", "crop", "flip", "blur", "jitter", "grayscale")
    preset = PRESETS["sslfer"]
    assert stack["blur"].kernel == 3 and stack["blur"].p == preset["blur_p"] == 0.5
    jitter = stack["jitter"]
    assert (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue, jitter.p) == (0.4, 0.4, 0.4, 0.2, 0.8)
    assert stack["grayscale"].p == 0.2 and stack["resize"].size == 72 and stack["crop"].size == 56
    out, lm = stack(images, landmarks)
    assert out.shape == (8, 56, 56, 3) and lm.shape == (8, 68, 2)
    assert 0 <= out.numpy().min() and out.numpy().max() <= 1
    # Landmarks followed resize, crop and flip: the inter-ocular distance scaled by 72 / 64.
    iod_in = np.linalg.norm(landmarks[:, 36:42].mean(1) - landmarks[:, 42:48].mean(1), axis=1)
    iod_out = np.linalg.norm(lm.numpy()[:, 36:42].mean(1) - lm.numpy()[:, 42:48].mean(1), axis=1)
    np.testing.assert_allclose(iod_out, iod_in * 72 / 64, rtol=1e-4)
    # Seeded stacks repeat; successive calls draw anew.
    again = ssl.sslfer_steps(resize=72, crop=56, seed=0)(images, landmarks)[0]
    np.testing.assert_array_equal(out.numpy(), again.numpy())
    assert not np.array_equal(stack(images, landmarks)[0].numpy(), out.numpy())
    # Paper sizes by default; sizes and numbers are arguments.
    default = ssl.sslfer_steps()
    assert default["resize"].size == 128 and default["crop"].size == 112
    assert ssl.sslfer_steps(grayscale_p=0.5)["grayscale"].p == 0.5
    with pytest.raises(ValueError, match="photometric"):
        ssl.sslfer_steps(sharpness=0.3)
    with pytest.raises(ValueError, match="crop"):
        ssl.sslfer_steps(resize=64, crop=72)


def test_compose_lookup_replace_without_and_tf_data(faces):
    images, landmarks = faces
    stack = ssl.sslfer_steps(resize=64, crop=48, seed=1)
    no_mask = stack.without("mask")
    assert "mask" not in no_mask and no_mask["crop"] is stack["crop"]
    smaller = stack.replace("crop", ssl.RandomCrop(32))
    assert smaller(images, landmarks)[0].shape == (8, 32, 32, 3)
    with pytest.raises(KeyError, match="sharpen"):
        stack["sharpen"]
    with pytest.raises(ValueError, match="unique"):
        ssl.Compose([ssl.RandomFlip(), ssl.RandomFlip()])
    # Inside tf.data, with static shapes; also as a data pipeline's augment(images, landmarks).
    ds = tf.data.Dataset.from_tensor_slices((images, landmarks)).batch(4).map(lambda x, lm: stack(x, lm))
    assert ds.element_spec[0].shape.as_list() == [None, 48, 48, 3]
    assert ds.element_spec[1].shape.as_list() == [None, 68, 2]
    assert sum(int(x.shape[0]) for x, _ in ds) == 8
    # A Keras layer in a stack: image-only, and landmarks are dropped after a step that may move pixels.
    wrapped = ssl.Compose([ssl.Resize(32), keras.layers.RandomRotation(0.1, seed=0)])
    out, lm = wrapped(images, landmarks)
    assert out.shape == (8, 32, 32, 3) and lm is None


def test_face_augment_shares_the_photometric_code():
    """FaceAugment's jitter / blur are the same functions as the steps': equal outputs for equal seeds."""
    images = _noise(16, 10)
    aug = FaceAugment(flip=False, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2, jitter_p=0.8, seed=5)
    step = ssl.ColorJitter(0.4, 0.4, 0.4, 0.2, p=0.8, seed=5)
    np.testing.assert_allclose(aug(images)[0].numpy(), np.clip(step(images)[0].numpy(), 0, 1), atol=1e-6)
    aug = FaceAugment(flip=False, blur_p=0.5, seed=6)
    step = ssl.GaussianBlur(3, (0.1, 2.0), p=0.5, seed=6)
    np.testing.assert_allclose(aug(images)[0].numpy(), np.clip(step(images)[0].numpy(), 0, 1), atol=1e-6)
