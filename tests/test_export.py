"""SavedModel export for TF Serving (ferkeras.export, experiments/export.py): signatures, fresh-process reload,
warm-up records, versions, corrupt inputs."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import prediction_log_pb2  # noqa: E402  (a declared dependency: warm-up records)

from ferkeras import export as fe  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 32
CLASSES = ("calm", "joy", "grief", "awe", "dread", "scorn", "rage", "sneer")  # not the default names on purpose


def _tiny_model():
    """A small functional model with the baseline's output dict, compiled and fitted for one step (so it has
    optimizer slots and moved BatchNorm statistics, which an inference export must ignore / use)."""
    image = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Conv2D(6, 3, strides=2, name="conv")(image)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = {"va": keras.layers.Dense(2, activation="tanh", name="va")(x),
           "expression": keras.layers.Dense(len(CLASSES), name="expression")(x)}
    model = keras.Model(image, out, name="tiny")
    model.compile(keras.optimizers.Adam(0.1),
                  loss={"va": "mse", "expression": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
    rng = np.random.default_rng(1)
    model.fit(rng.uniform(size=(8, SIZE, SIZE, 3)).astype("float32"),
              {"va": rng.uniform(-1, 1, (8, 2)).astype("float32"), "expression": rng.integers(0, 8, 8)},
              epochs=1, batch_size=8, verbose=0)
    return model


def _images(n, h=SIZE, w=SIZE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _png(image):
    return tf.io.encode_png(image).numpy()


def _expected(model, pixels):
    """The Keras model's outputs on float pixels, in the export's output names."""
    out = model(tf.convert_to_tensor(pixels, tf.float32), training=False)
    va, logits = out["va"].numpy(), out["expression"].numpy()
    e = np.exp(logits - logits.max(-1, keepdims=True))
    probs = e / e.sum(-1, keepdims=True)
    return {"valence": va[:, 0], "arousal": va[:, 1], "expression_probabilities": probs,
            "expression": np.array([CLASSES[i].encode() for i in probs.argmax(-1)], dtype=object)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _tiny_model()
    base = str(tmp_path_factory.mktemp("saved_models"))
    path = fe.export_for_serving(model, base, "fer", class_names=CLASSES)
    return model, base, path


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported[2])


def _check_outputs(got, want, atol=1e-5):
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        if key == "expression":
            assert list(got[key]) == list(value)
        else:
            np.testing.assert_allclose(got[key], value, atol=atol, rtol=0, err_msg=key)


def test_layout_and_only_inference_variables(exported):
    model, base, path = exported
    assert path == os.path.join(base, "fer", "1")
    assert sorted(os.listdir(os.path.join(base, "fer"))) == ["1"]  # no staging folder left behind
    with open(os.path.join(path, "assets", fe.CLASS_NAMES_ASSET)) as f:
        assert f.read().split("\n")[:-1] == list(CLASSES)
    saved = [name for name, _ in tf.train.list_variables(os.path.join(path, "variables", "variables"))
             if name.endswith("VARIABLE_VALUE")]
    assert len(saved) == len(model.variables) + 1  # the model's weights once each + class_names; no Adam slots
    assert not any("optimizer" in name for name in saved)


@pytest.mark.slow
def test_fresh_process_matches_keras_and_saved_model_cli(exported, tmp_path):
    """In a new Python process (plain TensorFlow, no ferkeras import): ``saved_model_cli show --all`` lists both
    signatures with their named outputs, and the reloaded signatures give the Keras model's outputs."""
    model, _, path = exported
    square = _images(3, seed=2)
    odd = _images(1, h=24, w=40, seed=3)[0]  # not the model size: padded and resized in-graph
    odd_jpeg = tf.io.encode_jpeg(odd, quality=90).numpy()
    np.savez(tmp_path / "inputs.npz", png=np.array([_png(i) for i in square], dtype=object), uint8=square,
             odd=np.array([odd_jpeg], dtype=object))
    script = textwrap.dedent(f"""
        import runpy, sys, numpy as np, tensorflow as tf
        assert "ferkeras" not in sys.modules
        sys.argv = ["saved_model_cli", "show", "--dir", {path!r}, "--all"]
        try:  # what the saved_model_cli console script runs
            runpy.run_module("tensorflow.python.tools.saved_model_cli", run_name="__main__")
        except SystemExit as e:
            assert not e.code, e.code
        inputs = np.load({str(tmp_path / "inputs.npz")!r}, allow_pickle=True)
        m = tf.saved_model.load({path!r})
        out = {{}}
        for tag, sig, kw in (("png", "serving_default", dict(image_bytes=tf.constant(list(inputs["png"])))),
                             ("uint8", "uint8_images", dict(images=tf.constant(inputs["uint8"]))),
                             ("odd", "serving_default", dict(image_bytes=tf.constant(list(inputs["odd"]))))):
            for key, value in m.signatures[sig](**kw).items():
                out[tag + "/" + key] = value.numpy()
        out["class_names"] = m.class_names.numpy()
        np.savez({str(tmp_path / "outputs.npz")!r}, **out)
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]

    text = proc.stdout
    blocks = {name: text.split(f"signature_def['{name}']")[1].split("signature_def[")[0]
              for name in ("serving_default", "uint8_images")}
    assert "inputs['image_bytes']" in blocks["serving_default"] and "DT_STRING" in blocks["serving_default"]
    assert "inputs['images']" in blocks["uint8_images"] and "DT_UINT8" in blocks["uint8_images"]
    for block in blocks.values():
        for output in ("valence", "arousal", "expression_probabilities", "expression"):
            assert f"outputs['{output}']" in block
        assert "shape: (-1, 8)" in block

    out = np.load(tmp_path / "outputs.npz", allow_pickle=True)

    def group(tag):
        return {k.split("/", 1)[1]: out[k] for k in out.files if k.startswith(tag + "/")}

    want = _expected(model, square / 255.0)
    _check_outputs(group("png"), want)  # PNG is lossless and 32x32 needs no resize: the very same pixels
    _check_outputs(group("uint8"), want)
    odd_pixels = fe.preprocess_encoded([odd_jpeg], (SIZE, SIZE)).numpy()
    _check_outputs(group("odd"), _expected(model, odd_pixels))
    assert [c.decode() for c in out["class_names"]] == list(CLASSES)


def test_preprocessing_pads_to_square_like_training():
    """A 20x32 image at size 32: centred, 6 black rows above and below, pixels unchanged (scale 1)."""
    image = _images(1, h=20, w=SIZE, seed=4)[0]
    want = np.zeros((SIZE, SIZE, 3), np.float32)
    want[6:26] = image / 255.0
    for got in (fe.preprocess_uint8(image[None], (SIZE, SIZE)), fe.preprocess_encoded([_png(image)], (SIZE, SIZE))):
        np.testing.assert_allclose(got.numpy()[0], want, atol=1e-6)
    gray = image[..., :1]
    rgba = np.concatenate([image, np.full_like(image[..., :1], 7)], -1)
    got = fe.preprocess_encoded([_png(gray), _png(rgba)], (SIZE, SIZE)).numpy()
    np.testing.assert_allclose(got[0][6:26], np.repeat(gray, 3, -1) / 255.0, atol=1e-6)  # grey replicated
    np.testing.assert_allclose(got[1], want, atol=1e-6)  # alpha dropped


def test_warmup_records_are_valid_requests(exported, loaded):
    path = os.path.join(exported[2], fe.WARMUP_FILE)
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    assert len(logs) == 2
    requests = {log.predict_log.request.model_spec.signature_name: log.predict_log.request for log in logs}
    assert sorted(requests) == ["serving_default", "uint8_images"]
    for signature, request in requests.items():
        assert request.model_spec.name == "fer"
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        assert sorted(inputs) == [fe.BYTES_INPUT if signature == "serving_default" else fe.UINT8_INPUT]
        out = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        assert out["expression_probabilities"].shape == (1, len(CLASSES))
        assert out["expression"].numpy()[0].decode() in CLASSES
    jpeg = tf.make_ndarray(requests["serving_default"].inputs[fe.BYTES_INPUT])[0]
    assert jpeg[:3] == b"\xff\xd8\xff" and tf.io.decode_jpeg(jpeg).shape == (SIZE, SIZE, 3)


def test_corrupt_bytes_fail_that_request_only(exported, loaded):
    model = exported[0]
    good = _images(2, seed=5)
    request = [_png(good[0]), b"garbage", _png(good[1])]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[1\] is not a JPEG or PNG image"):
        loaded.signatures["serving_default"](image_bytes=tf.constant(request))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[0\] is not a JPEG or PNG image"):
        loaded.signatures["serving_default"](image_bytes=tf.constant([b""]))
    with pytest.raises(tf.errors.InvalidArgumentError):  # a truncated file: TF's decoder error (no item index)
        loaded.signatures["serving_default"](image_bytes=tf.constant([request[0][:60]]))
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([request[0], request[2]]))  # still serves
    _check_outputs({k: v.numpy() for k, v in out.items()}, _expected(model, good / 255.0))


def test_versions_auto_increment(exported, tmp_path):
    model, base, _ = exported
    assert fe.existing_versions(os.path.join(base, "fer")) == [1]  # the fixture's first export got version 1
    model_dir = tmp_path / "m"
    for folder in ("1", "7", "notes", ".tmp-9-x"):  # only integer folders are versions
        (model_dir / folder).mkdir(parents=True)
    assert fe.existing_versions(str(model_dir)) == [1, 7]
    with pytest.raises(FileExistsError, match="already exists"):
        fe.export_for_serving(model, str(tmp_path), "m", version=7, class_names=CLASSES, warmup=False)
    with pytest.raises(ValueError, match="2 class_names"):
        fe.export_for_serving(model, str(tmp_path), "m", class_names=CLASSES[:2], warmup=False)
    with pytest.raises(ValueError, match=r"square inputs; got input size \(32, 24\)"):
        fe.export_for_serving(model, str(tmp_path), "m", image_size=(32, 24), warmup=False)
    with pytest.raises(ValueError, match="plain folder name"):
        fe.export_for_serving(model, str(tmp_path), "../m", warmup=False)
    path = fe.export_for_serving(model, str(tmp_path), "m", class_names=CLASSES, warmup=False)
    assert path == str(model_dir / "8")
    assert fe.existing_versions(str(model_dir)) == [1, 7, 8]
    assert not os.path.exists(os.path.join(path, "assets.extra"))  # warmup=False


def test_avce_model_export(tmp_path):
    from ferkeras.methods.avce import AVCEModel

    model = AVCEModel("resnet18", (SIZE, SIZE, 3), width=8)
    images = _images(2, seed=6)
    want = model(images / 255.0, training=False).numpy()
    path = fe.export_for_serving(model, str(tmp_path), "avce")
    m = tf.saved_model.load(path)
    for out in (m.signatures["uint8_images"](images=tf.constant(images)),
                m.signatures["serving_default"](image_bytes=tf.constant([_png(i) for i in images]))):
        assert sorted(out) == ["arousal", "valence"]  # no expression head
        np.testing.assert_allclose(np.stack([out["valence"], out["arousal"]], -1), want, atol=1e-5)
    inference = model.encoder.variables + model.compressor.variables + model.regressor.variables
    saved = [n for n, _ in tf.train.list_variables(os.path.join(path, "variables", "variables"))
             if n.endswith("VARIABLE_VALUE")]
    assert len(saved) == len(inference)  # the training-only heads H, H1 are not exported


@pytest.mark.slow
def test_binary_exports_a_run_directory(exported, tmp_path):
    """experiments/export.py on a run directory: checkpoint found, class names from result.json, summary printed."""
    model = exported[0]
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    model.save(run / "checkpoints" / "best.keras")
    (run / "result.json").write_text(json.dumps({"class_names": list(CLASSES)}))
    cmd = [sys.executable, os.path.join(REPO, "experiments", "export.py"), f"--model={run}", "--name=fer",
           f"--export_dir={tmp_path / 'sm'}", "--version=3", "--nowarmup"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                          timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "signature 'serving_default':" in proc.stdout and "signature 'uint8_images':" in proc.stdout
    assert "class names (8, assets/class_names.txt): " + ", ".join(CLASSES) in proc.stdout
    assert os.path.isdir(tmp_path / "sm" / "fer" / "3")
    assert not os.path.exists(tmp_path / "sm" / "fer" / "3" / "assets.extra")


def test_model_file_resolution(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no checkpoints/best.keras and 0 .keras files"):
        fe.resolve_model_file(str(run))
    (run / "final.keras").write_bytes(b"")
    assert fe.resolve_model_file(str(run)) == str(run / "final.keras")
    (run / "checkpoints" / "best.keras").write_bytes(b"")
    assert fe.resolve_model_file(str(run)) == str(run / "checkpoints" / "best.keras")
    (run / "weights.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="weights.h5 is not a .keras file"):
        fe.resolve_model_file(str(run / "weights.h5"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        fe.resolve_model_file(str(tmp_path / "nowhere"))
    assert fe.class_names_from_run(str(run / "checkpoints" / "best.keras")) is None
    (run / "result.json").write_text(json.dumps({"class_names": ["x", "y"]}))
    assert fe.class_names_from_run(str(run / "checkpoints" / "best.keras")) == ["x", "y"]
    assert fe.class_names_from_run(str(run / "final.keras")) == ["x", "y"]  # a model file beside result.json
    with pytest.raises(ValueError, match="cannot load the Keras model"):
        fe.load_trained_model(str(run))


def test_load_trained_model_rebuilds_an_avce_run(tmp_path):
    """A run directory of experiments/avce.py: the AVCE class comes from fe.custom_objects, the weights from the
    checkpoint; no class names (no expression head) and the same predictions."""
    from ferkeras.methods.avce import AVCEModel
    from ferkeras.training import RunDir

    assert fe.custom_objects()["ferkeras>AVCEModel"] is AVCEModel
    model = AVCEModel("resnet18", (SIZE, SIZE, 3), width=8)
    images = _images(2, seed=7) / 255.0
    want = model(images, training=False).numpy()
    run = RunDir(str(tmp_path / "avce-run"))
    os.makedirs(os.path.dirname(run.checkpoint_path))
    model.save(run.checkpoint_path)
    run.write_result({"metrics": {}})
    loaded, class_names, model_file = fe.load_trained_model(run.path)
    assert isinstance(loaded, AVCEModel) and class_names is None and model_file == run.checkpoint_path
    np.testing.assert_allclose(loaded(images, training=False).numpy(), want, atol=1e-5)


def test_bad_requests_get_a_clear_invalid_argument(exported, loaded):
    """Through the reloaded SavedModel's signatures: a uint8 batch with 1 or 4 channels or without the batch
    dimension, a scalar image_bytes and images below MIN_FACE_SIZE fail with INVALID_ARGUMENT naming what is wrong
    (before: the signature's internal shape mismatch, or a confident prediction for a 1-pixel image)."""
    from ferkeras.data.image_ops import MIN_FACE_SIZE

    uint8, encoded = loaded.signatures["uint8_images"], loaded.signatures["serving_default"]
    image = _images(1, seed=6)
    for bad, match in ((image[..., :1], r"must have 3 channels \(RGB\); got shape \[1 32 32 1\] with 1 channel"),
                       (np.concatenate([image, image[..., :1]], -1), r"got shape \[1 32 32 4\] with 4 channel"),
                       (image[0], r"must be a batch of RGB images, shape \(B, H, W, 3\); got shape \[32 32 3\]"),
                       (_images(2, h=1, w=1), r"images is 1x1 pixels .*smaller than .*16x16"),
                       (_images(2, h=MIN_FACE_SIZE - 1, w=40), r"images is 15x40 pixels")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=match):
            uint8(images=tf.constant(bad))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[1\] is 1x1 pixels .*smaller"):
        encoded(image_bytes=tf.constant([_png(image[0]), _png(_images(1, h=1, w=1)[0])]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes must be a 1-D batch .*got shape \[\]"):
        encoded(image_bytes=tf.constant(_png(image[0])))
    # the smallest accepted size still serves
    out = uint8(images=tf.constant(_images(2, h=MIN_FACE_SIZE, w=MIN_FACE_SIZE)))
    assert out["expression"].shape == (2,)
    # a TF Serving PredictRequest (as in the warm-up records) of a grayscale batch: the same message
    from tensorflow_serving.apis import model_pb2, predict_pb2

    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="fer", signature_name="uint8_images"))
    request.inputs[fe.UINT8_INPUT].CopyFrom(tf.make_tensor_proto(image[..., :1], dtype=tf.uint8))
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    with pytest.raises(tf.errors.InvalidArgumentError, match="must have 3 channels"):
        loaded.signatures[request.model_spec.signature_name](**inputs)


def test_empty_batch_returns_empty_outputs(loaded):
    for signature, request in (("uint8_images", dict(images=tf.zeros((0, SIZE, SIZE, 3), tf.uint8))),
                               ("uint8_images", dict(images=tf.zeros((0, 0, 0, 3), tf.uint8))),
                               ("serving_default", dict(image_bytes=tf.constant([], tf.string)))):
        out = loaded.signatures[signature](**request)
        assert out["valence"].shape == (0,) and out["arousal"].shape == (0,), signature
        assert out["expression_probabilities"].shape == (0, len(CLASSES)) and out["expression"].shape == (0,)
