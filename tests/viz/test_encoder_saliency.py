"""Grad-CAM of an encoder without a class head (ferkeras.viz.cam.encoder_saliency) on a model whose answer is known,
the feature-map choice, and SSL-FER's Figure-6 grid (ferkeras.methods.sslfer.saliency)."""

import numpy as np
import pytest

import keras
from keras import layers

from ferkeras.viz import cam

RED, GREEN = (slice(4, 12), slice(4, 12)), (slice(20, 28), slice(20, 28))   # the patches
RED_IN, GREEN_IN = (slice(6, 10), slice(6, 10)), (slice(22, 26), slice(22, 26))  # their centres (the 8x8 map is
# upsampled bilinearly, so the patch edges are smeared)


def colour_encoder(size=32):
    """Flat functional encoder: a 1x1 conv copies red to channel 0 and green to channel 1, 4x4 average pooling gives
    the 8x8 map "features_map", global average pooling the (B, 2) features (mean red, mean green)."""
    image = keras.Input((size, size, 3))
    conv = layers.Conv2D(2, 1, use_bias=False, name="colour")
    x = layers.Activation("linear", name="features_map")(layers.AveragePooling2D(4)(conv(image)))
    model = keras.Model(image, layers.GlobalAveragePooling2D(name="features")(x), name="colour_encoder")
    conv.set_weights([np.array([[[[1, 0], [0, 1], [0, 0]]]], np.float32)])
    return model


def patches(red=1.0, green=0.5, size=32):
    img = np.zeros((1, size, size, 3), np.float32)
    img[0, RED[0], RED[1], 0] = red
    img[0, GREEN[0], GREEN[1], 1] = green
    return img


def test_self_score_weights_regions_by_their_share_of_the_features():
    """Score <f(x'), f(x)/|f(x)|>: Grad-CAM's channel weights are f(x)'s components (1 : 0.5 here), so the map is
    ReLU(A_red + 0.5 A_green): red patch 1, green patch 0.5 x 0.5 = 0.25, background 0."""
    maps = cam.encoder_saliency(colour_encoder(), patches(), score="self")
    assert maps.shape == (1, 32, 32) and maps.dtype == np.float32
    assert maps[0][RED_IN].mean() > 0.8
    assert 0.1 < maps[0][GREEN_IN].mean() < 0.4
    assert maps[0, 14:18, :].max() < 0.3 and maps[0, 0:2, 20:32].max() < 0.05
    only_green = cam.encoder_saliency(colour_encoder(), patches(red=0.0), score="self")
    assert only_green[0][GREEN_IN].mean() > 0.8 and only_green[0][RED].max() < 0.05


def test_head_score_explains_the_predicted_class():
    """A head whose class 0 reads green only and class 1 red weakly: class 0 wins, and its map is on the green
    patch although red dominates the features."""
    head_in = keras.Input((2,))
    dense = layers.Dense(2, use_bias=False)
    head = keras.Model(head_in, dense(head_in))
    dense.set_weights([np.array([[0.0, 0.1], [1.0, 0.0]], np.float32)])
    encoder = colour_encoder()
    assert np.argmax(np.asarray(head(encoder(patches())))) == 0
    maps = cam.encoder_saliency(encoder, patches(), score="head", head=head)
    assert maps[0][GREEN_IN].mean() > 0.8 and maps[0][RED].max() < 0.05
    batch = np.concatenate([patches(), patches(red=0.0)])
    both = cam.encoder_saliency(encoder, batch, score="head", head=head, batch_size=1)
    np.testing.assert_allclose(both[0], maps[0], atol=1e-5)


def test_score_cam_and_errors():
    maps = cam.encoder_saliency(colour_encoder(), patches(), score="self", method="scorecam", max_n=2)
    assert maps.shape == (1, 32, 32) and maps[0][RED].mean() > maps[0][GREEN].mean()
    with pytest.raises(ValueError, match="'lime'"):
        cam.encoder_saliency(colour_encoder(), patches(), method="lime")
    with pytest.raises(ValueError, match="'logit'"):
        cam.encoder_saliency(colour_encoder(), patches(), score="logit")
    with pytest.raises(ValueError, match="needs the head"):
        cam.encoder_saliency(colour_encoder(), patches(), score="head")
    with pytest.raises(ValueError, match="no top-level layer 'conv9'"):
        cam.encoder_saliency(colour_encoder(), patches(), layer_name="conv9")


def test_feature_map_layer_keeps_at_least_four_by_four():
    from ferkeras.models.backbones import resnet18

    assert cam.feature_map_layer(colour_encoder()) == "features_map"
    assert cam.feature_map_layer(resnet18((128, 128, 3), pooling="avg", width=16)) == "stage4_block2_out"
    assert cam.feature_map_layer(resnet18((64, 64, 3), pooling="avg", width=16)) == "stage3_block2_out"
    assert cam.feature_map_layer(resnet18((64, 64, 3), pooling="avg", width=16), min_side=1) == "stage4_block2_out"
    inputs = keras.Input((4,))
    with pytest.raises(ValueError, match="no top-level layer with a"):
        cam.feature_map_layer(keras.Model(inputs, layers.Dense(2)(inputs)))


def test_sslfer_figure_grid(tmp_path):
    from matplotlib import image as mpimg

    from ferkeras.data.schema import EXPRESSIONS
    from ferkeras.methods.sslfer.saliency import expression_faces, saliency_figure
    from ferkeras.models.backbones import resnet18

    images, expression = expression_faces(32, 10, pool=120)
    assert images.shape == (10, 32, 32, 3) and images.dtype == np.float32 and 0 <= images.min() <= images.max() <= 1
    assert list(expression[:8]) == list(range(8)) and list(expression[8:]) == [0, 1]  # one per class, then cycle
    encoder = resnet18((32, 32, 3), pooling="avg", width=16)
    head_in = keras.Input((encoder.output.shape[-1],))
    head = keras.Model(head_in, layers.Dense(len(EXPRESSIONS))(head_in))
    out = saliency_figure({"SimCLR": encoder, "all": encoder}, images[:3], str(tmp_path / "fig.png"),
                          heads={"all": head}, row_labels=[EXPRESSIONS[c] for c in expression[:3]], title="t")
    assert out["scores"] == {"SimCLR": "self", "all": "head"}
    assert set(out["maps"]) == {"SimCLR", "all"} and out["maps"]["all"].shape == (3, 32, 32)
    grid = mpimg.imread(out["path"])
    assert grid.shape[0] > grid.shape[1] * 0.7 and grid.std() > 0.05  # 3 rows x 3 columns, not blank
    with pytest.raises(ValueError, match="2 row labels for 3 images"):
        saliency_figure({"a": encoder}, images[:3], str(tmp_path / "x.png"), row_labels=["a", "b"])
