"""AVCE's feature views (z_a, z_n) = (Sp(z), Sm(z)), Eqs. 6 and 7 of Kim & Song, "Emotion-aware Multi-view
Contrastive Learning for Facial Emotion Recognition", ECCV 2022 (ferkeras.methods.avce.views): the function and the
Keras layer, closed form and ECOS. The ops themselves are tested in tests/ops/test_sparsemax.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ferkeras.methods.avce.views import FeatureViews, feature_views
from ferkeras.ops.sparsemax import sparsemax_numpy
from tests import helpers

#: Accuracy the ECOS path promises against the exact projection (ferkeras.ops.sparsemax_ecos).
ECOS_ATOL = 1e-5


def _inputs(shape, seed):
    return np.random.default_rng(seed).normal(size=shape)


def test_ecos_inside_tf_function_with_unknown_batch():
    @tf.function(input_signature=[tf.TensorSpec([None, 32], tf.float32)])
    def views(z):
        z_a, z_n = feature_views(z, method="ecos")
        assert z_a.shape.as_list() == [None, 32]
        return z_a, z_n

    z = _inputs((7, 32), 13)
    z_a, z_n = views(tf.constant(z, tf.float32))
    np.testing.assert_allclose(z_a.numpy(), sparsemax_numpy(z), atol=ECOS_ATOL)
    np.testing.assert_allclose(z_n.numpy(), tf.nn.softmax(z).numpy(), atol=1e-6)


def _tiny_model(method):
    inputs = keras.Input((6,))
    z = keras.layers.Dense(32, name="compressor")(inputs)
    z_a, z_n = FeatureViews(method=method, name="views")(z)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.Concatenate()([z_a, z_n]))
    return keras.Model(inputs, outputs)


def test_ecos_model_fit_step_matches_closed_form_gradients():
    x = _inputs((16, 6), 14).astype(np.float32)
    y = _inputs((16, 2), 15).astype(np.float32)
    models = {}
    for method in ("closed_form", "ecos"):
        keras.utils.set_random_seed(0)
        models[method] = _tiny_model(method)
    gradients = {}
    for method, model in models.items():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x) - y))
        gradients[method] = tape.gradient(loss, model.trainable_variables)
    for g_closed, g_ecos in zip(gradients["closed_form"], gradients["ecos"]):
        np.testing.assert_allclose(g_ecos.numpy(), g_closed.numpy(), atol=1e-4)

    model = models["ecos"]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = model.get_layer("compressor").kernel.numpy().copy()
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.allclose(model.get_layer("compressor").kernel.numpy(), before)


def test_ecos_layer_opts_out_of_xla():
    assert FeatureViews(method="closed_form").supports_jit
    assert not FeatureViews(method="ecos").supports_jit


def test_feature_views_rejects_unknown_method():
    with pytest.raises(ValueError, match="'cvx'"):
        FeatureViews(method="cvx")
    with pytest.raises(ValueError, match="'cvx'"):
        feature_views(tf.zeros((1, 3)), method="cvx")


@pytest.mark.parametrize("method", ["closed_form", "ecos"])
def test_layer_outputs_and_config_round_trip(method):
    layer = FeatureViews(method=method, name="views")
    z = _inputs((3, 4, 32), 17).astype(np.float32)
    z_a, z_n = layer(z)
    np.testing.assert_allclose(z_a.numpy(), sparsemax_numpy(z), atol=ECOS_ATOL)
    np.testing.assert_allclose(z_n.numpy(), tf.nn.softmax(z).numpy(), atol=1e-6)
    clone = helpers.assert_config_roundtrip(layer)
    assert clone.method == method


def test_layer_under_mixed_precision():
    layer = FeatureViews(dtype="mixed_float16")
    z = _inputs((4, 32), 18).astype(np.float32)
    z_a, z_n = layer(z)
    assert z_a.dtype == tf.float16 and z_n.dtype == tf.float16
    np.testing.assert_allclose(z_a.numpy().astype(np.float64), sparsemax_numpy(z), atol=2e-3)


def test_model_keras_save_and_saved_model_export(tmp_path):
    model = _tiny_model("closed_form")
    x = _inputs((5, 6), 19).astype(np.float32)
    reloaded = helpers.assert_keras_roundtrip(model, x, tmp_path, atol=1e-6)
    assert reloaded.get_layer("views").method == "closed_form"
    helpers.assert_savedmodel_roundtrip(model, x, tmp_path, atol=1e-6)
