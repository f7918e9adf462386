"""AVCE's activation maps (ferkeras.methods.avce.cam; Kim & Song, "Emotion-aware Multi-view Contrastive Learning for
Facial Emotion Recognition", ECCV 2022, Sec. 4.4): the linearised CAM of R and of H against the layers' own weights,
Grad-CAM / Score-CAM of the inference path, and the ActivationMapLogger callback. Generic Grad-CAM and overlays:
tests/viz/test_cam.py."""

import glob
import os
import types

import numpy as np
import pytest

import keras
import tensorflow as tf
from keras import layers

from ferkeras.callbacks import ActivationMapLogger
from ferkeras.methods.avce import AVCEModel, cam
from ferkeras.models.heads import va_regressor


@pytest.fixture(scope="module")
def avce():
    model = AVCEModel("resnet18", (64, 64, 3), width=16)  # 2 x 2 feature map
    images = np.random.default_rng(0).uniform(0, 1, (3, 64, 64, 3)).astype("float32")
    return model, images


def np_sparsemax_support(z):
    s = np.sort(z)[::-1]
    k = np.arange(1, len(z) + 1)
    kz = k[1 + k * s > np.cumsum(s)][-1]
    tau = (np.cumsum(s)[kz - 1] - 1) / kz
    return (z - tau > 0).astype(np.float64)


def test_cam_is_the_hand_linearised_last_layer_weights(avce):
    """w_o = W_c diag(g_c) W_1 diag(g_1) W_2 (R) and W_c diag(g_c) J_Sp W_h1 diag(g_h) W_h2 (H), from the layers'
    own kernels and the gates at the pooled features; CAM_o = F w_o; the final map is (B, H, W) in [0, 1]."""
    model, images = avce
    feats = model.encoder(images).numpy().astype(np.float64)
    pooled = feats.mean(axis=(1, 2))
    wc, bc = (w.numpy() for w in model.compressor.get_layer("fc").weights)
    pre_z = pooled @ wc + bc
    z = np.maximum(pre_z, 0)
    r1, rb1 = (w.numpy() for w in model.regressor.get_layer("fc1").weights)
    r2 = model.regressor.get_layer("fc_out").weights[0].numpy()
    h1, hb1 = (w.numpy() for w in model.head.get_layer("fc1").weights)
    h2 = model.head.get_layer("fc2").weights[0].numpy()
    for head in ("regressor", "head"):
        cams, _, weights = cam.linear_cam(model, images, head)
        for b in range(len(images)):
            gate_c = np.diag((pre_z[b] > 0).astype(np.float64))
            if head == "regressor":
                gate = np.diag((z[b] @ r1 + rb1 > 0).astype(np.float64))
                w = wc @ gate_c @ r1 @ gate @ r2
            else:
                s = np_sparsemax_support(z[b])
                jac = np.diag(s) - np.outer(s, s) / s.sum()
                z_a = np.maximum(z[b] - (np.sort(z[b])[::-1][:int(s.sum())].sum() - 1) / s.sum(), 0)
                gate = np.diag((z_a @ h1 + hb1 > 0).astype(np.float64))
                w = wc @ gate_c @ jac @ h1 @ gate @ h2
            np.testing.assert_allclose(weights[b].numpy(), w, rtol=2e-3, atol=1e-6)
            np.testing.assert_allclose(cams[b].numpy(), feats[b] @ w, rtol=2e-3, atol=1e-5)
    maps = cam.neural_activation_map(model, images)
    assert maps.shape == (3, 64, 64) and maps.dtype == np.float32
    assert np.allclose(maps.min(axis=(1, 2)), 0) and np.allclose(maps.max(axis=(1, 2)), 1)
    raw = cam.neural_activation_map(model, images, normalize=False)  # upsampled mean of the two signed maps
    lo, hi = raw.min(axis=(1, 2), keepdims=True), raw.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(maps, (raw - lo) / (hi - lo), atol=1e-5)
    mean_cam = cam.linear_cam(model, images)[0].numpy().mean(-1)  # (B, 2, 2): valence and arousal averaged
    np.testing.assert_allclose(raw.mean(axis=(1, 2)), mean_cam.mean(axis=(1, 2)), rtol=0.05, atol=1e-4)


def hand_set_model(size=32):
    """Encoder: channel 0 = red, channel 1 = green (1x1 conv), 4x4 average pooling -> 8x8 map. C and R read channel
    0 only, through positive weights, so valence and arousal grow with the red area and ignore the green one."""
    image = keras.Input((size, size, 3))
    conv = layers.Conv2D(2, 1, use_bias=False, name="colour")
    x = layers.AveragePooling2D(4)(conv(image))
    x = layers.Activation("linear", name="features")(x)
    encoder = keras.Model(image, x, name="encoder")
    conv.set_weights([np.array([[[[1, 0], [0, 1], [0, 0]]]], np.float32)])
    f_in = keras.Input((size // 4, size // 4, 2))
    fc = layers.Dense(32, name="fc")
    compressor = keras.Model(f_in, layers.ReLU()(fc(layers.GlobalAveragePooling2D()(f_in))), name="compressor")
    rng = np.random.default_rng(1)
    fc.set_weights([np.stack([rng.uniform(0.5, 1.5, 32), np.zeros(32)]).astype(np.float32), np.zeros(32, "f4")])
    regressor = va_regressor(32, 16, activation="linear", name="regressor")
    regressor.set_weights([rng.uniform(0.1, 1, w.shape).astype(np.float32) for w in regressor.get_weights()])
    return types.SimpleNamespace(encoder=encoder, compressor=compressor, regressor=regressor)


def two_patch_image(size=32):
    img = np.zeros((1, size, size, 3), np.float32)
    img[0, 4:12, 4:12, 0] = 1.0  # red patch, top left: drives the outputs
    img[0, 20:28, 20:28, 1] = 1.0  # green patch, bottom right: ignored by the model
    return img


def test_cam_peaks_where_the_driving_region_is():
    model, img = hand_set_model(), two_patch_image()
    for maps in (cam.neural_activation_map(model, img)[0], cam.keras_vis_map(model, img, "gradcam")[0]):
        peak = np.unravel_index(np.argmax(maps), maps.shape)
        assert 2 <= peak[0] <= 13 and 2 <= peak[1] <= 13, peak
        assert maps[4:12, 4:12].mean() > 0.7 and maps[20:28, 20:28].max() < 0.05


def test_keras_vis_maps_on_the_avce_model(avce):
    model, images = avce
    maps = cam.activation_maps(model, images, ("gradcam", "scorecam"), max_n=4)
    for name, m in maps.items():
        assert m.shape == (3, 64, 64) and np.isfinite(m).all(), name
        assert m.min() >= 0 and m.max() <= 1 and m.max() > 0.5, name
    # Without its ReLU and normalisation, tf-keras-vis' Grad-CAM of output o is CAM_o / (h w): C starts with GAP.
    from tf_keras_vis.gradcam import Gradcam

    cams, _, _ = cam.linear_cam(model, images)
    flat = cam.inference_model(model)
    for o in range(2):
        raw = Gradcam(flat, clone=False)(lambda out, o=o: out[:, o], images, penultimate_layer=flat.get_layer(
            "features"), seek_penultimate_conv_layer=False, activation_modifier=None, expand_cam=False,
            normalize_cam=False)
        np.testing.assert_allclose(raw, cams[..., o].numpy() / 4, rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="method"):
        cam.keras_vis_map(model, images, "lime")


def test_grid_has_a_column_per_method_with_avce_titles(avce, tmp_path):
    model, images = avce
    path = tmp_path / "grid.png"
    grid = cam.activation_grid(model, images[:2], ("cam", "cam_head"), path=path)
    two = cam.activation_grid(model, images[:2], ("cam",))
    assert grid.dtype == np.uint8 and grid.shape[0] == two.shape[0] and grid.shape[1] > two.shape[1]
    assert path.is_file()
    assert cam.METHOD_TITLES["cam"] == "CAM (R)" and cam.METHOD_TITLES["gradcam"] == "Grad-CAM"
    with pytest.raises(ValueError, match="unknown method"):
        cam.activation_maps(model, images, ("occlusion",))


def read_image_summaries(log_dir):
    found = []
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    found.append((value.tag, event.step, value.tensor.string_val))
    return found


def test_activation_map_logger_writes_tensorboard_image_and_png(avce, tmp_path):
    model, images = avce
    model.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=False, run_eagerly=True)
    logger = ActivationMapLogger(images[:2], every_n_epochs=2, out_dir=str(tmp_path / "maps"),
                                 method=("cam", "cam_head"))
    va = np.zeros((2, 2), np.float32)
    model.fit(images[:2], va, epochs=3, batch_size=2, verbose=0, callbacks=[logger])
    pngs = sorted(p for p in os.listdir(tmp_path / "maps") if p.endswith(".png"))
    assert pngs == ["activation_maps_epoch0002.png"]  # epochs 2 only of 1-3
    summaries = read_image_summaries(str(tmp_path / "maps" / "tensorboard"))
    assert [(tag, step) for tag, step, _ in summaries] == [("activation_maps", 2)]
    width, height, png = summaries[0][2]
    decoded = tf.io.decode_png(png).numpy()
    assert decoded.shape == (int(height), int(width), 3) and decoded.std() > 10
    from matplotlib import image as mpimg
    saved = mpimg.imread(str(tmp_path / "maps" / pngs[-1]))
    assert saved.shape[:2] == decoded.shape[:2]
    with pytest.raises(ValueError, match="unknown method"):
        ActivationMapLogger(images, method="occlusion")


@pytest.mark.parametrize("compressor", ["gap", "flatten"])
def test_cam_sums_to_the_output_without_biases(compressor):
    """With every bias of C and R at 0 the path E-map -> C -> R is piecewise linear AND positively homogeneous, so
    (Euler) y_o = sum_ijk F_ijk dy_o/dF_ijk: the mean of CAM_o over the h x w positions is exactly R's output, for
    the paper's global pooling and for the authors' 6 x 6 flatten compressor (per-position weights)."""
    model = AVCEModel("resnet18", (64, 64, 3), width=16, compressor=compressor)
    for sub in (model.compressor, model.regressor):
        for layer in sub.layers:
            if getattr(layer, "bias", None) is not None:
                layer.bias.assign(np.zeros(layer.bias.shape, "float32"))
    images = np.random.default_rng(1).uniform(0, 1, (2, 64, 64, 3)).astype("float32")
    cams, outputs, _ = cam.linear_cam(model, images, "regressor")
    np.testing.assert_allclose(cams.numpy().mean(axis=(1, 2)), model(images).numpy(), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(outputs.numpy(), model(images).numpy(), rtol=1e-5, atol=1e-7)
    assert np.abs(outputs.numpy()).max() > 1e-4  # not a vacuous 0 == 0
