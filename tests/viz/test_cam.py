"""Generic activation maps (ferkeras.viz.cam): Grad-CAM / Score-CAM through tf-keras-vis on a flat functional model,
map resizing and normalisation, overlays and figure grids. AVCE's CAM of R and H: tests/methods/avce/test_cam.py."""

import numpy as np
import pytest

import keras
from keras import layers

from ferkeras.viz import cam


def red_area_model(size=32):
    """Flat functional model: channel 0 = red, channel 1 = green (1x1 conv, no bias), 4x4 average pooling to an 8x8
    map named "features", global average pooling, then positive weights on the red channel only for both outputs.
    The outputs grow with the red area and ignore the green one."""
    image = keras.Input((size, size, 3))
    conv = layers.Conv2D(2, 1, use_bias=False, name="colour")
    x = layers.Activation("linear", name="features")(layers.AveragePooling2D(4)(conv(image)))
    dense = layers.Dense(2, name="out")
    model = keras.Model(image, dense(layers.GlobalAveragePooling2D()(x)), name="red_area")
    conv.set_weights([np.array([[[[1, 0], [0, 1], [0, 0]]]], np.float32)])
    dense.set_weights([np.array([[1.0, 0.5], [0.0, 0.0]], np.float32), np.zeros(2, np.float32)])
    return model


def two_patch_image(size=32):
    img = np.zeros((1, size, size, 3), np.float32)
    img[0, 4:12, 4:12, 0] = 1.0  # red patch, top left: drives the outputs
    img[0, 20:28, 20:28, 1] = 1.0  # green patch, bottom right: ignored by the model
    return img


@pytest.mark.parametrize("outputs", [(0, 1), (1,)])
def test_grad_cam_peaks_on_the_driving_region(outputs):
    maps = cam.keras_vis_map(red_area_model(), two_patch_image(), "gradcam", outputs=outputs)
    assert maps.shape == (1, 32, 32) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() == pytest.approx(1.0)
    peak = np.unravel_index(np.argmax(maps[0]), maps[0].shape)
    assert 2 <= peak[0] <= 13 and 2 <= peak[1] <= 13, peak
    assert maps[0, 4:12, 4:12].mean() > 0.7 and maps[0, 20:28, 20:28].max() < 0.05


def test_score_cam_gives_normalised_maps():
    images = np.concatenate([two_patch_image(), np.random.default_rng(0).uniform(0, 1, (1, 32, 32, 3))])
    maps = cam.keras_vis_map(red_area_model(), images.astype(np.float32), "scorecam", max_n=2)
    assert maps.shape == (2, 32, 32) and np.isfinite(maps).all()
    np.testing.assert_allclose(maps.min(axis=(1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(maps.max(axis=(1, 2)), 1.0, atol=1e-6)


def test_keras_vis_map_errors_name_the_value_at_fault():
    model, img = red_area_model(), two_patch_image()
    with pytest.raises(ValueError, match="'lime'"):
        cam.keras_vis_map(model, img, "lime")
    with pytest.raises(ValueError, match="no top-level layer 'conv5'"):
        cam.keras_vis_map(model, img, layer_name="conv5")
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        cam.check_images(np.zeros((2, 8, 8)))


def test_resize_and_normalise():
    maps = np.array([[[0.0, 1.0], [2.0, 3.0]], [[5.0, 5.0], [5.0, 5.0]]], np.float32)
    out = cam.resize_and_normalise(maps, (4, 4))
    assert out.shape == (2, 4, 4)
    np.testing.assert_allclose([out[0].min(), out[0].max()], [0.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(out[1], 0.0)  # a constant map becomes 0
    raw = cam.resize_and_normalise(maps, (2, 2), normalize=False)
    np.testing.assert_allclose(raw, maps, atol=1e-6)


def test_overlay_and_grid():
    image = np.zeros((8, 8, 3), np.float32)
    heat = np.zeros((8, 8), np.float32)
    heat[0, 0] = 1.0
    out = cam.overlay(image, heat, alpha=0.5, cmap="jet")
    assert out.shape == (8, 8, 3) and out[0, 0, 0] > 0.2 and out[0, 0, 2] < 0.1  # jet(1) is dark red
    assert np.allclose(out[5, 5], 0.5 * np.array([0, 0, 0.5], np.float32), atol=0.01)  # jet(0) is dark blue
    with pytest.raises(ValueError, match="does not match"):
        cam.overlay(image, np.zeros((4, 4)))
    maps = {"mine": np.zeros((2, 8, 8)), "gradcam": np.ones((2, 8, 8))}
    grid = cam.overlay_grid(np.zeros((2, 8, 8, 3)), maps)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3 and grid.shape[1] > grid.shape[0]
    one = cam.overlay_grid(np.zeros((2, 8, 8, 3)), {"gradcam": np.ones((2, 8, 8))}, titles={"gradcam": "G"})
    assert one.shape[0] == grid.shape[0] and one.shape[1] < grid.shape[1]


def test_moved_avce_names_still_resolve():
    """The AVCE names ferkeras.viz.cam held before the restructure resolve to ferkeras.methods.avce.cam."""
    from ferkeras.methods.avce import cam as avce_cam
    from ferkeras.viz.cam import activation_grid, neural_activation_map

    assert activation_grid is avce_cam.activation_grid and neural_activation_map is avce_cam.neural_activation_map
    assert cam.METHODS == ("cam", "cam_head", "gradcam", "scorecam")
    with pytest.raises(AttributeError, match="occlusion_map"):
        cam.occlusion_map


def test_grad_cam_runs_on_even_batches_only(monkeypatch):
    """TF 2.20 / 2.21's oneDNN aborts in the filter gradient of a 1x1 stride-2 conv with an odd batch on AVX-512 CPUs
    (see tests/test_onednn_fault.py): every Grad-CAM tape runs on an even batch, and an odd batch's padding image
    changes none of the maps (inference mode: each map depends on its own image only)."""
    from tf_keras_vis.gradcam import Gradcam

    seen = []
    call = Gradcam.__call__

    def recording(self, score, seed_input, *args, **kwargs):
        seen.append(int(seed_input.shape[0]))
        return call(self, score, seed_input, *args, **kwargs)

    monkeypatch.setattr(Gradcam, "__call__", recording)
    rng = np.random.default_rng(1)
    images = np.concatenate([two_patch_image(), rng.uniform(0, 1, (3, 32, 32, 3))]).astype(np.float32)
    model = red_area_model()
    four = cam.keras_vis_map(model, images, "gradcam")
    three = cam.keras_vis_map(model, images[:3], "gradcam")
    one = cam.keras_vis_map(model, images[:1], "gradcam", outputs=(0,))
    assert three.shape == (3, 32, 32) and one.shape == (1, 32, 32)
    np.testing.assert_allclose(three, four[:3], atol=1e-6)
    np.testing.assert_allclose(one, cam.keras_vis_map(model, images[:2], "gradcam", outputs=(0,))[:1], atol=1e-6)
    encoder = keras.Model(model.inputs, model.get_layer("out").output)
    saliency = cam.encoder_saliency(encoder, images[:3], layer_name="features", batch_size=3)
    assert saliency.shape == (3, 32, 32)
    np.testing.assert_allclose(saliency, cam.encoder_saliency(encoder, images, layer_name="features")[:3], atol=1e-6)
    assert seen and all(n % 2 == 0 for n in seen), seen
    assert cam.even_batch(np.zeros((0, 4, 4, 3), np.float32)).shape[0] == 0
