"""The shared round-trip helpers (tests/helpers.py) pass on sound Keras objects and FAIL on broken ones."""

import numpy as np
import pytest

import keras
import tensorflow as tf

from tests import helpers

PACKAGE = "ferkeras_test_helpers"


# ---- objects under test -----------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package=PACKAGE)
class Scale(keras.layers.Layer):
    """A sound custom layer: every constructor argument is in its config."""

    def __init__(self, units=4, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.factor = factor

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform")

    def call(self, x):
        return self.factor * (x @ self.kernel)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "factor": self.factor}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ForgetfulScale(Scale):
    """Broken: ``get_config`` drops ``factor``; ``from_config`` silently falls back to the default 1.0."""

    def get_config(self):
        config = super().get_config()
        del config["factor"]
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class RenamingScale(Scale):
    """Broken: ``get_config`` records ``units`` under a name ``__init__`` does not take."""

    def get_config(self):
        config = super().get_config()
        config["num_units"] = config.pop("units")
        return config


class UnregisteredScale(Scale):
    """Sound config, but not registered: a ``.keras`` file of it cannot be loaded."""


@keras.saving.register_keras_serializable(package=PACKAGE)
class CountingScale(keras.layers.Layer):
    """Broken for export: a Python counter in ``call`` (a side effect the SavedModel trace bakes in)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def call(self, x):
        self.calls += 1
        return x * float(self.calls)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ScaledLoss(keras.losses.Loss):
    def __init__(self, weight=1.0, name="scaled_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.weight = weight

    def call(self, y_true, y_pred):
        return self.weight * keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TwoDense(keras.Model):
    """A subclassed model with a get_config; ``spare`` is built but never used in ``call``."""

    def __init__(self, units=3, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.used = keras.layers.Dense(units, name="used")
        self.spare = keras.layers.Dense(units, name="spare")

    def build(self, input_shape):
        self.used.build(input_shape)
        self.spare.build(input_shape)

    def call(self, x, training=False):
        return self.used(x)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SelfLoss(keras.Model):
    """A task model with its own loss in ``train_step`` and default optimiser in ``compile`` (like AVCEModel)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)

    def call(self, x, training=False):
        return self.dense(x)

    def compile(self, optimizer=None, **kwargs):
        super().compile(optimizer=optimizer or keras.optimizers.SGD(0.1), **kwargs)

    def compile_from_config(self, config):
        self.compile(optimizer=keras.saving.deserialize_keras_object(config["optimizer"]))

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = keras.ops.mean(keras.ops.square(self(x, training=True) - y))
        self.optimizer.apply(tape.gradient(loss, self.trainable_variables), self.trainable_variables)
        return {"my_loss": loss}


def tiny_model(extra=None):
    """A functional Dense model with a dict output (nested outputs); ``extra`` is inserted before the heads."""
    inp = keras.Input((5,), name="x")
    h = keras.layers.Dense(8, activation="relu", name="hidden")(inp)
    if extra is not None:
        h = extra(h)
    return keras.Model(inp, {"a": keras.layers.Dense(2, name="a")(h), "b": keras.layers.Dense(1, name="b")(h)},
                       name="tiny")


def batch(n=8, nan=False):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = {"a": rng.normal(size=(n, 2)).astype("float32"), "b": rng.normal(size=(n, 1)).astype("float32")}
    if nan:
        y["a"][0, 0] = np.nan
    return x, y


def compiled(model, lr=1e-2):
    model.compile(optimizer=keras.optimizers.SGD(lr), loss={"a": "mse", "b": ScaledLoss(2.0)})
    return model


# ---- assert_config_roundtrip ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: keras.layers.Dense(3, activation="tanh", name="d"),
    lambda: Scale(units=3, factor=2.5),
    lambda: ScaledLoss(weight=0.5),
    lambda: keras.optimizers.schedules.ExponentialDecay(0.1, 100, 0.5),
    lambda: tiny_model(),
    lambda: TwoDense(units=4),
])
def test_config_roundtrip_accepts_sound_objects(make):
    obj = make()
    clone = helpers.assert_config_roundtrip(obj)
    assert type(clone) is type(obj)


def test_config_roundtrip_checks_a_built_layer_rebuilds():
    layer = Scale(units=3)
    layer(np.ones((2, 7), np.float32))
    clone = helpers.assert_config_roundtrip(layer)
    assert [tuple(w.shape) for w in clone.weights] == [(7, 3)]


def test_config_roundtrip_rejects_a_forgotten_argument():
    # Plain config equality cannot see this bug: both configs lack "factor". The attribute check does.
    sound_default = ForgetfulScale(units=3)  # factor at its default: nothing is lost, the helper accepts it
    helpers.assert_config_roundtrip(sound_default)
    with pytest.raises(AssertionError, match="'factor' is 2.5 on the original but 1.0 on the clone"):
        helpers.assert_config_roundtrip(ForgetfulScale(units=3, factor=2.5))


def test_config_roundtrip_rejects_a_config_init_cannot_take():
    with pytest.raises(AssertionError, match="from_config.*num_units"):
        helpers.assert_config_roundtrip(RenamingScale(units=3))


def test_config_roundtrip_rejects_an_unregistered_class():
    with pytest.raises(AssertionError, match="register_keras_serializable"):
        helpers.assert_config_roundtrip(UnregisteredScale(units=3))


def test_config_roundtrip_rejects_a_config_that_changes():
    class Drifting(Scale):  # every clone reports one more unit than it was given
        def get_config(self):
            return {**super().get_config(), "units": self.units + 1}

    with pytest.raises(AssertionError, match=r"config\['units'\]: 4 != 5"):
        helpers.assert_config_roundtrip(Drifting(units=3))


# ---- assert_keras_roundtrip -------------------------------------------------------------------------------------
def test_keras_roundtrip_nested_outputs(tmp_path):
    model = tiny_model(Scale(units=4, factor=0.5))
    x, _ = batch()
    loaded = helpers.assert_keras_roundtrip(model, x, tmp_path)
    assert isinstance(loaded.get_layer(index=2), Scale)
    helpers.assert_keras_roundtrip(model, x.astype(np.float64), tmp_path)  # second call, same tmp_path: fine


def test_keras_roundtrip_rejects_a_lost_setting(tmp_path):
    model = tiny_model(ForgetfulScale(units=4, factor=3.0))
    with pytest.raises(AssertionError, match=".keras round-trip.*output"):
        helpers.assert_keras_roundtrip(model, batch()[0], tmp_path)


def test_keras_roundtrip_rejects_a_wrong_reload(tmp_path, monkeypatch):
    """A reload that yields the same architecture with other weights is caught (by the weight comparison)."""
    model = tiny_model()
    real_load = keras.saving.load_model

    def load_and_perturb(path, *args, **kwargs):
        loaded = real_load(path, *args, **kwargs)
        kernel = loaded.get_layer("hidden").kernel
        kernel.assign(kernel + 1e-3)
        return loaded

    monkeypatch.setattr(keras.saving, "load_model", load_and_perturb)
    with pytest.raises(AssertionError, match="hidden/kernel changed"):
        helpers.assert_keras_roundtrip(model, batch()[0], tmp_path)


# ---- assert_savedmodel_roundtrip --------------------------------------------------------------------------------
def test_savedmodel_roundtrip_nested_outputs(tmp_path):
    model = tiny_model(Scale(units=4, factor=0.5))
    x, _ = batch()
    loaded = helpers.assert_savedmodel_roundtrip(model, x, tmp_path)
    served = loaded.serve(tf.constant(x))
    assert sorted(served) == ["a", "b"]


def test_savedmodel_roundtrip_rejects_trace_time_side_effects(tmp_path):
    model = tiny_model(CountingScale())
    with pytest.raises(AssertionError, match="SavedModel round-trip"):
        helpers.assert_savedmodel_roundtrip(model, batch()[0], tmp_path)


def test_savedmodel_roundtrip_of_a_plain_module(tmp_path):
    class Linear(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable([[2.0], [3.0]])

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        def __call__(self, x):
            return x @ self.w

    loaded = helpers.assert_savedmodel_roundtrip(Linear(), np.ones((3, 2)), tmp_path)  # float64 in: cast
    np.testing.assert_allclose(loaded(tf.ones((1, 2))).numpy(), [[5.0]])


# ---- run_task_model_test ----------------------------------------------------------------------------------------
def test_task_model_test_passes_on_a_sound_model(tmp_path):
    result = helpers.run_task_model_test(compiled(tiny_model()), batch(), tmp_path)
    assert {"loss", "a_loss", "b_loss"} <= set(result["logs"])
    assert result["saved_model"] is not None
    assert np.isfinite(result["logs"]["loss"])


def test_task_model_test_compiles_with_the_model_defaults(tmp_path):
    model = SelfLoss()
    x = np.ones((4, 3), np.float32)
    result = helpers.run_task_model_test(model, (x, np.zeros((4, 2), np.float32)), tmp_path, export=False)
    assert model.built and model.compiled and isinstance(model.optimizer, keras.optimizers.SGD)
    assert set(result["logs"]) == {"my_loss"} and result["saved_model"] is None


def test_task_model_test_rejects_non_finite_losses(tmp_path):
    with pytest.raises(AssertionError, match="non-finite values logged.*a_loss"):
        helpers.run_task_model_test(compiled(tiny_model()), batch(nan=True), tmp_path, export=False)


def test_task_model_test_rejects_a_model_that_does_not_learn(tmp_path):
    with pytest.raises(AssertionError, match="no trainable weight changed"):
        helpers.run_task_model_test(compiled(tiny_model(), lr=0.0), batch(), tmp_path, export=False)


@pytest.mark.filterwarnings("ignore:Gradients do not exist")  # the unused layer, on purpose
def test_task_model_test_rejects_untrained_weights_unless_allowed(tmp_path):
    x, y = batch()
    model = TwoDense(units=2)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    with pytest.raises(AssertionError, match=r"2 trainable weights did not change.*spare/kernel"):
        helpers.run_task_model_test(model, (x, y["a"]), tmp_path, export=False)
    model = TwoDense(units=2)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    result = helpers.run_task_model_test(model, (x, y["a"]), tmp_path, allow_unchanged=("spare/",))
    assert isinstance(result["reloaded"], TwoDense) and result["reloaded"].units == 2
