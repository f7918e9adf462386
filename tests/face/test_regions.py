"""ferkeras.face.regions (TF eye / mouth boxes and crops) against the NumPy crops of ferkeras.face.align."""

import numpy as np
import pytest
import tensorflow as tf

from ferkeras.data.synthetic import synthetic_arrays
from ferkeras.face import crop_eyes, crop_mouth, crop_square, points_box
from ferkeras.face.regions import REGION_POINTS, crop_regions, region_boxes


def _expected_box(landmarks, region, margin, height, width):
    """The NumPy box of ferkeras.face.points_box in crop_and_resize's [y0, x0, y1, x1] pixel-centre normalisation."""
    x0, y0, x1, y1 = points_box(landmarks[list(REGION_POINTS[region])], margin).astype(np.float64)
    # points_box covers pixels x0 .. x1 - 1 (pixel-edge box): first / last pixel centres over (size - 1).
    return np.array([y0 / (height - 1), x0 / (width - 1), (y1 - 1) / (height - 1), (x1 - 1) / (width - 1)])


@pytest.fixture(scope="module")
def faces():
    return synthetic_arrays(6, size=96, seed=3)


def test_region_points():
    assert REGION_POINTS["eyes"] == tuple(range(17, 27)) + tuple(range(36, 48))
    assert REGION_POINTS["mouth"] == tuple(range(48, 68))
    assert REGION_POINTS["eyes_only"] == tuple(range(36, 48))


@pytest.mark.parametrize("margin", [0.0, 0.15, 0.4])
def test_boxes_match_numpy_points_box(faces, margin):
    lms = faces["landmarks"]
    boxes, valid = region_boxes(lms, (96, 96), regions=("eyes", "mouth", "eyes_only"), margin=margin)
    assert boxes.shape == (6, 3, 4) and valid.shape == (6,)
    assert bool(tf.reduce_all(valid))
    for i in range(len(lms)):
        for r, region in enumerate(("eyes", "mouth", "eyes_only")):
            np.testing.assert_allclose(boxes[i, r].numpy(), _expected_box(lms[i], region, margin, 96, 96),
                                       atol=1e-5, err_msg=f"face {i} region {region}")
    # Square in pixels, and the eyes + brows box contains the eyes-only box.
    side_y = (boxes[..., 2] - boxes[..., 0]).numpy()
    side_x = (boxes[..., 3] - boxes[..., 1]).numpy()
    np.testing.assert_allclose(side_y, side_x, atol=1e-5)
    assert np.all(side_x[:, 0] >= side_x[:, 2] - 1e-6)


def test_boxes_non_square_image():
    rng = np.random.default_rng(0)
    lms = rng.uniform([10, 20], [50, 40], size=(2, 68, 2)).astype(np.float32)
    boxes, valid = region_boxes(lms, (61, 81), margin=0.2)
    for i in range(2):
        for r, region in enumerate(("eyes", "mouth")):
            np.testing.assert_allclose(boxes[i, r].numpy(), _expected_box(lms[i], region, 0.2, 61, 81), atol=1e-5)


def _integer_landmarks(rng, x_range, y_range):
    """68 points whose eye (36-47) and mouth (48-67) sets each span exactly the given integer ranges."""
    lms = np.zeros((68, 2), np.float32)
    for pts, (xr, yr) in zip((REGION_POINTS["eyes_only"], REGION_POINTS["mouth"]), zip(x_range, y_range)):
        pts = list(pts)
        lms[pts, 0] = rng.integers(xr[0], xr[1] + 1, len(pts))
        lms[pts, 1] = rng.integers(yr[0], yr[1] + 1, len(pts))
        lms[pts[0]] = (xr[0], yr[0])
        lms[pts[1]] = (xr[1], yr[1])
    lms[:36] = lms[36]
    return lms


def test_crops_equal_numpy_crops_on_the_pixel_grid():
    """Integer box corners and size = box side: crop_and_resize samples exactly the pixels crop_square copies."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (48, 56, 3)).astype(np.uint8)
    # eyes: x 10..29, y 5..14 -> 20 px square; mouth: x 40..55 (to the right edge), y 36..47 -> 16 px, leaves image.
    lms = _integer_landmarks(rng, [(10, 29), (44, 59)], [(5, 14), (36, 47)])
    eyes_side, mouth_side = 20, 16
    crops, valid = crop_regions(image[None], lms[None], size=eyes_side, regions=("eyes_only",), margin=0.0)
    assert bool(valid[0])
    np.testing.assert_allclose(crops[0, 0].numpy(), crop_eyes(image, lms, size=eyes_side, margin=0.0), atol=1e-3)
    crops, _ = crop_regions(image[None], lms[None], size=mouth_side, regions=("mouth",), margin=0.0)
    expected = crop_mouth(image, lms, size=mouth_side, margin=0.0)
    assert (expected == 0).all(axis=-1).any(), "the mouth box was meant to leave the image (zero padding)"
    np.testing.assert_allclose(crops[0, 0].numpy(), expected, atol=1e-3)  # float round-off of the normalisation


def test_crops_close_to_numpy_crops_on_synthetic_faces(faces):
    images, lms = faces["images"], faces["landmarks"]
    crops, valid = crop_regions(images.astype(np.float32) / 255.0, lms, size=64, regions=("eyes_only", "mouth"))
    assert crops.shape == (6, 2, 64, 64, 3) and crops.dtype == tf.float32
    assert bool(tf.reduce_all(valid))
    crops = crops.numpy()
    for i in range(len(images)):
        eyes = crop_eyes(images[i], lms[i], size=64).astype(np.float32) / 255.0
        mouth = crop_mouth(images[i], lms[i], size=64).astype(np.float32) / 255.0
        # Sub-pixel differences only (NumPy rounds the box to whole pixels and shrinks with area averaging) ...
        assert np.abs(crops[i, 0] - eyes).mean() < 0.04, i
        assert np.abs(crops[i, 1] - mouth).mean() < 0.04, i
        # ... far below the difference between the two regions.
        assert np.abs(crops[i, 0] - mouth).mean() > 2 * np.abs(crops[i, 0] - eyes).mean(), i
    # eyes + brows ("eyes") against the NumPy crop of the same point set.
    crops, _ = crop_regions(images.astype(np.float32), lms, size=64, regions=("eyes",))
    for i in range(len(images)):
        box = points_box(lms[i][list(REGION_POINTS["eyes"])], 0.15)
        expected = crop_square(images[i], box, 64)[0].astype(np.float32)
        assert np.abs(crops[i, 0].numpy() - expected).mean() < 0.04 * 255, i


def test_nan_landmarks_give_whole_image_and_invalid(faces):
    images = faces["images"][:3].astype(np.float32) / 255.0
    lms = faces["landmarks"][:3].copy()
    lms[1] = np.nan
    lms[2, 50] = np.nan  # one mouth point missing: the face is invalid for ("eyes", "mouth") ...
    boxes, valid = region_boxes(lms, (96, 96))
    np.testing.assert_array_equal(valid.numpy(), [True, False, False])
    np.testing.assert_array_equal(boxes[1].numpy(), [[0, 0, 1, 1]] * 2)
    np.testing.assert_array_equal(boxes[2].numpy(), [[0, 0, 1, 1]] * 2)
    assert np.all(np.isfinite(boxes.numpy()))
    _, valid_eyes = region_boxes(lms, (96, 96), regions=("eyes",))  # ... but fine for the eyes alone
    np.testing.assert_array_equal(valid_eyes.numpy(), [True, False, True])
    crops, valid = crop_regions(images, lms, size=32)
    whole = tf.image.resize(images[1:2], (32, 32), method="bilinear", antialias=False)
    assert np.all(np.isfinite(crops.numpy()))
    # crop_and_resize over [0, 0, 1, 1] samples the corners exactly (align-corners), close to a resize.
    np.testing.assert_allclose(crops[1, 0].numpy()[[0, -1]][:, [0, -1]], images[1][[0, -1]][:, [0, -1]], atol=1e-6)
    assert np.abs(crops[1, 0].numpy() - whole[0].numpy()).mean() < 0.03


def test_all_invalid_and_unbatched(faces):
    lms = np.full((2, 68, 2), np.nan, np.float32)
    crops, valid = crop_regions(faces["images"][:2], lms, size=16)
    assert crops.shape == (2, 2, 16, 16, 3) and not bool(tf.reduce_any(valid))
    crop, valid1 = crop_regions(faces["images"][0], faces["landmarks"][0], size=16)
    assert crop.shape == (2, 16, 16, 3) and valid1.shape == () and bool(valid1)
    batched, _ = crop_regions(faces["images"][:1], faces["landmarks"][:1], size=16)
    np.testing.assert_allclose(crop.numpy(), batched[0].numpy())
    box, v = region_boxes(faces["landmarks"][0], 96)
    assert box.shape == (2, 4) and v.shape == ()


def test_in_tf_data(faces):
    ds = tf.data.Dataset.from_tensor_slices((faces["images"], faces["landmarks"])).map(
        lambda image, lm: crop_regions(tf.image.convert_image_dtype(image, tf.float32), lm, size=24)
    ).batch(3)
    crops, valid = next(iter(ds))
    assert crops.shape == (3, 2, 24, 24, 3) and valid.shape == (3,)
    direct, _ = crop_regions(faces["images"][:3].astype(np.float32) / 255.0, faces["landmarks"][:3], size=24)
    np.testing.assert_allclose(crops.numpy(), direct.numpy(), atol=1e-6)


def test_errors():
    lms = np.zeros((1, 68, 2), np.float32)
    with pytest.raises(ValueError, match="unknown region"):
        region_boxes(lms, 32, regions=("nose",))
    with pytest.raises(ValueError, match="68, 2"):
        region_boxes(np.zeros((1, 5, 2)), 32)
    with pytest.raises(ValueError, match="margin"):
        region_boxes(lms, 32, margin=-0.1)
    with pytest.raises(ValueError, match="size"):
        crop_regions(np.zeros((1, 32, 32, 3)), lms, size=0)
