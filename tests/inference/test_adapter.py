"""ferkeras.inference.ModelAdapter and the predictors on crops (no face detector): how any Keras FER model is fed
and read, what is inferred from its shapes, and the errors that name the field to set."""

import numpy as np
import pytest

import keras  # noqa: E402

from ferkeras import inference as fi  # noqa: E402
from ferkeras.data.readers.fer2013 import FER2013_CLASSES  # noqa: E402
from ferkeras.data.schema import EXPRESSIONS  # noqa: E402


def _init(seed):
    return keras.initializers.GlorotUniform(seed=seed)


def _gray_softmax_model(size=64):
    """A third-party-style FER model: 64x64x1 grayscale in, 7-way softmax out (like the fer package's)."""
    image = keras.Input((size, size, 1))
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", kernel_initializer=_init(1))(image)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, keras.layers.Dense(7, activation="softmax", kernel_initializer=_init(2))(x),
                       name="mini_gray")


def _heads(size, channels, widths, names=None, dict_out=False):
    """A model with one Dense head per width (list / dict / single output)."""
    image = keras.Input((size, size, channels))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(16, 3, kernel_initializer=_init(1))(image))
    heads = [keras.layers.Dense(w, kernel_initializer=_init(3 + i), name=(names or [None] * 9)[i])(x)
             for i, w in enumerate(widths)]
    if dict_out:
        return keras.Model(image, dict(zip(names, heads)), name="dict_heads")
    return keras.Model(image, heads if len(heads) > 1 else heads[0], name="heads")


def _crops(n=4, size=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _gray(crops):
    """ITU-R 601 luma, what the adapter feeds a 1-channel model (cv2.COLOR_RGB2GRAY up to rounding)."""
    return crops.astype(np.float32) @ np.array([0.2989, 0.587, 0.114], np.float32)


def test_grayscale_softmax_model_is_inferred_and_not_softmaxed_twice():
    model = _gray_softmax_model()
    predictor = fi.KerasPredictor(model)
    assert (predictor.input_size, predictor.channels) == (64, 1)
    assert predictor.probabilities and not predictor.has_va
    assert predictor.class_names == list(FER2013_CLASSES)  # 7 classes: FER2013's order
    crops = _crops()
    want = model(_gray(crops)[..., None] / 255.0).numpy()
    got = predictor(crops)["expression_probabilities"]
    np.testing.assert_allclose(got, want, atol=1e-5)  # a second softmax would flatten these towards 1/7
    assert np.ptp(want) > 1e-3
    assert set(predictor(crops)) == {"expression_probabilities"}


def test_logits_are_softmaxed_and_outputs_flag_overrides():
    model = _heads(16, 3, [8])  # a single (B, 8) logits output: the expression head, ferkeras' 8 classes
    crops = _crops(size=16)
    logits = model(crops / 255.0).numpy().astype(np.float64)
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    auto = fi.KerasPredictor(model)
    assert not auto.probabilities and auto.class_names == list(EXPRESSIONS)
    np.testing.assert_allclose(auto(crops)["expression_probabilities"], softmax, atol=1e-5)
    raw = fi.KerasPredictor(model, adapter=fi.ModelAdapter(outputs="probabilities"))
    np.testing.assert_allclose(raw(crops)["expression_probabilities"], logits, atol=1e-5)
    probs_model = _gray_softmax_model(16)
    forced = fi.KerasPredictor(probs_model, adapter=fi.ModelAdapter(outputs="logits"))
    p = probs_model(_gray(crops)[..., None] / 255.0).numpy()
    np.testing.assert_allclose(forced(crops)["expression_probabilities"],
                               np.exp(p) / np.exp(p).sum(-1, keepdims=True), atol=1e-5)


@pytest.mark.parametrize("scaling,lo,hi", [("unit", 0.0, 1.0), ("symmetric", -1.0, 1.0), ("byte", 0.0, 255.0),
                                           ("imagenet", (0 - 0.449) / 0.226, (1 - 0.449) / 0.226)])
def test_scaling_and_grayscale_conversion(scaling, lo, hi):
    """A 1-channel model whose 'valence-arousal' is the pixel mean twice: black and white crops give the range."""
    image = keras.Input((8, 8, 1))
    mean = keras.layers.GlobalAveragePooling2D()(image)
    predictor = fi.KerasPredictor(keras.Model(image, keras.layers.Concatenate()([mean, mean])),
                                  adapter=fi.ModelAdapter(scaling=scaling))
    crops = np.zeros((4, 8, 8, 3), np.uint8)
    crops[1] = 255
    crops[2, ..., 1] = 255  # pure green: luma 0.587
    crops[3, :4] = 255  # half white
    out = predictor(crops)
    np.testing.assert_allclose(out["valence"], out["arousal"])
    green = lo + 0.587 * (hi - lo)
    np.testing.assert_allclose(out["valence"], [lo, hi, green, (lo + hi) / 2], rtol=1e-3, atol=1e-4)


def test_va_and_expression_outputs_by_shape_name_and_index():
    model = _heads(16, 3, [7, 2], names=["emotions", "affect"])  # list outputs, no ferkeras names
    predictor = fi.KerasPredictor(model)
    assert (predictor.va_output, predictor.expression_output) == ("affect", "emotions")
    crops = _crops(size=16)
    emotions, affect = model(crops / 255.0)
    out = predictor(crops)
    np.testing.assert_allclose(np.stack([out["valence"], out["arousal"]], 1), affect.numpy(), atol=1e-5)
    by_index = fi.KerasPredictor(model, adapter=fi.ModelAdapter(va_output=1, expression_output="0"))
    assert (by_index.va_output, by_index.expression_output) == ("affect", "emotions")
    only_expression = fi.KerasPredictor(model, adapter=fi.ModelAdapter(va_output="none"))
    assert not only_expression.has_va and set(only_expression(crops)) == {"expression_probabilities"}
    ferkeras_style = fi.KerasPredictor(_heads(16, 3, [5, 2], names=["expression", "va"], dict_out=True),
                                       ["a", "b", "c", "d", "e"])
    assert (ferkeras_style.va_output, ferkeras_style.expression_output) == ("va", "expression")
    assert ferkeras_style.class_names == ["a", "b", "c", "d", "e"]


def test_a_seven_way_output_is_expressions_not_valence_arousal():
    """This morning a (B, 7) output failed with 'valence-arousal output has shape (None, 7), expected (B, 2)'."""
    predictor = fi.KerasPredictor(_heads(16, 3, [7]))
    assert predictor.expression_output is not None and not predictor.has_va


@pytest.mark.parametrize("build,adapter,message", [
    (lambda: _heads(16, 3, [7, 7]), {}, r"2 outputs of shape \(B, C >= 3\).*set expression_output"),
    (lambda: _heads(16, 3, [2, 2]), {}, r"2 outputs of shape \(B, 2\).*set va_output"),
    (lambda: _heads(16, 3, [1]), {}, r"no valence-arousal \(B, 2\) or expression.*set va_output and / or "
                                     "expression_output"),
    (lambda: _heads(16, 3, [7, 2]), {"va_output": "nope"}, r"va_output='nope' is not an output.*outputs are"),
    (lambda: _heads(16, 3, [7, 2]), {"va_output": 0}, r"has shape \(None, 7\), not valence-arousal.*set va_output"),
    (lambda: _heads(16, 3, [7, 2]), {"class_names": ("a", "b")}, r"2 class names .* 7 expression outputs.*set "
                                                                  "class_names"),
    (lambda: _gray_softmax_model(16), {"channels": 3}, r"channels=3 but model .* takes 1-channel"),
    (lambda: _gray_softmax_model(16), {"input_size": 32}, r"input_size=32 but model .* takes 16x16"),
    (lambda: _heads(None, 3, [7]), {}, r"takes images of any size .* set input_size"),
    (lambda: _heads(16, 2, [7]), {}, r"takes 2-channel images"),
])
def test_errors_name_the_field_to_set(build, adapter, message):
    with pytest.raises(ValueError, match=message):
        fi.KerasPredictor(build(), adapter=fi.ModelAdapter(**adapter))


def test_any_size_model_runs_with_input_size():
    predictor = fi.KerasPredictor(_heads(None, 3, [7]), adapter=fi.ModelAdapter(input_size=24))
    assert predictor.input_size == 24 and predictor(_crops(2, 24))["expression_probabilities"].shape == (2, 7)


def test_adapter_checks_its_fields():
    for field, value in [("scaling", "0-1"), ("outputs", "softmax"), ("channels", 2), ("input_size", 0)]:
        with pytest.raises(ValueError, match=field):
            fi.ModelAdapter(**{field: value})
    with pytest.raises(ValueError, match="va_output and expression_output are both 'x'"):
        fi.ModelAdapter(va_output="x", expression_output="x")
    assert fi.ModelAdapter(class_names=["a", "b"]).class_names == ("a", "b")  # hashable, frozen
    assert fi.looks_like_probabilities([[0.2, 0.8], [1.0, 0.0]])
    assert not fi.looks_like_probabilities([[0.2, 0.7]]) and not fi.looks_like_probabilities([[-0.5, 1.5]])


def test_keras_legacy_h5_and_savedmodel_files_give_the_same_predictions(tmp_path):
    """.keras, legacy .h5 / .hdf5 (refused as 'not a .keras file' this morning) and a plain SavedModel."""
    model = _gray_softmax_model(16)
    crops = _crops(size=16)
    want = fi.KerasPredictor(model)(crops)["expression_probabilities"]
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    (tmp_path / "m.h5").rename(tmp_path / "m.hdf5")
    model.export(str(tmp_path / "saved"), verbose=False)
    for path in ("m.keras", "m.hdf5", "saved"):
        predictor = fi.load_predictor(tmp_path / path, adapter=fi.ModelAdapter(class_names=tuple("abcdefg")))
        assert predictor.class_names == list("abcdefg") and predictor.channels == 1, path
        np.testing.assert_allclose(predictor(crops)["expression_probabilities"], want, atol=1e-5, err_msg=path)
    assert isinstance(fi.load_predictor(tmp_path / "saved"), fi.SignaturePredictor)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"notes.txt is not a .keras, .h5 or .hdf5 file"):
        fi.load_predictor(tmp_path / "notes.txt")


def test_face_record_dict_has_the_csv_columns():
    result = fi.FrameResult(3, float("nan"), np.array([[1, 2, 30, 40]], np.float32), np.array([0]),
                            {"valence": np.array([0.5]), "arousal": np.array([-0.25]),
                             "expression_probabilities": np.array([[0.1, 0.9]])}, None, np.array([1.5]),
                            np.arange(136, dtype=np.float32).reshape(1, 68, 2), "a.jpg")
    record, = fi.records_of(result, ["calm", "joy"])
    assert (record.expression, record.valence, record.arousal, record.score) == ("joy", 0.5, -0.25, 1.5)
    row = record.as_dict()
    assert [k for k in fi.csv_columns(["calm", "joy"], photos=True, landmarks=True) if k not in row] == ["file"]
    assert row["x_1"] == 2.0 and row["y_1"] == 3.0 and row["prob_joy"] == 0.9
    csv_row, = fi.frame_rows(result, ["calm", "joy"], photos=True)
    assert csv_row[:9] == ["a.jpg", 0, "1", "2", "30", "40", "1.5", "0.5", "-0.25"] and csv_row[9] == "joy"
    assert fi.face_label(record) == "0 joy 90% V +0.50 A -0.25"
