"""SavedModel export of a ferkeras task model for TensorFlow Serving, preprocessing included.

:func:`export_for_serving` writes the TF Serving layout ``<export_dir>/<name>/<version>/`` (``version`` an
integer folder, the next free one by default) with two signatures:

* ``serving_default``: input ``image_bytes``, tf.string ``(B,)``, a batch of encoded JPEG / PNG images (TF
  Serving's REST API base64-decodes ``{"b64": "..."}`` values);
* ``uint8_images``: input ``images``, tf.uint8 ``(B, H, W, 3)``, a batch of RGB images of one size.

(The signatures declare inputs of any shape, so that a request of the wrong shape gets the checks' messages
below rather than TensorFlow's signature shape mismatch.)

Both run the preprocessing of the ferkeras training pipelines for a record without a face box
(:func:`ferkeras.data.pipeline.build_dataset`): decode to RGB (grayscale replicated, alpha dropped), pad to a
centred square (never stretched), antialiased resize to the model's input size, scale to [0, 1]; so an image
cropped the way the training data was gives the same input at serving time.  Their outputs are

* ``valence``, ``arousal``: float32 ``(B,)``, when the model predicts valence-arousal;
* ``expression_probabilities``: float32 ``(B, C)`` (softmax of the logits) and ``expression``: tf.string ``(B,)``,
  the most probable class name, when the model has an expression head.

The class names are also written as the asset ``assets/class_names.txt`` (one a line, in logit order) and kept
on the loaded object as ``class_names``.  ``assets.extra/tf_serving_warmup_requests`` holds one warm-up
``PredictionLog`` per signature (a small JPEG, a small uint8 image), which TF Serving replays when it loads the
version.  A bad request fails with ``INVALID_ARGUMENT`` (``InvalidArgumentError``) and a message naming what is
wrong: bytes that are not a JPEG or PNG image (``image_bytes[i] is not a JPEG or PNG image ...``); an image
smaller than :data:`~ferkeras.data.image_ops.MIN_FACE_SIZE` pixels in height or width (``image_bytes[i] is 1x1
pixels ...``, ``images is 1x1 pixels ...``: the pipelines skip such faces in training, so the model has no
answer for them); a uint8 batch without the batch dimension, or with 1 or 4 channels (the message gives the
shape); a ``image_bytes`` that is not 1-D.  A truncated JPEG / PNG fails with the decoder's own
``InvalidArgumentError`` (which does not name the item).  An empty batch returns empty outputs.  The served
model itself is unaffected.

Supported models: a Keras model whose ``call(images)`` on float32 (B, H, W, 3) in [0, 1] returns either the
baseline's dict ``{"va": (B, 2), "expression": (B, C) logits}`` (or one of the two keys), or a (B, 2) valence-
arousal tensor (:class:`ferkeras.methods.avce.AVCEModel`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

from ferkeras.data.image_ops import MIN_FACE_SIZE, crop_and_resize_face, decode_image, square_crop_box
from ferkeras.methods.avce import AVCEModel
from ferkeras.models.layers import CaffePreprocessing
from ferkeras.training.rundir import RunDir

logger = logging.getLogger("ferkeras.export")

BYTES_SIGNATURE = "serving_default"
UINT8_SIGNATURE = "uint8_images"
BYTES_INPUT = "image_bytes"
UINT8_INPUT = "images"
CLASS_NAMES_ASSET = "class_names.txt"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# Preprocessing (graph functions, shared by the export and by tests / benchmarks)
# ---------------------------------------------------------------------------------------------

def square_side(size) -> int:
    """The side of a square input size given as a side or (H, W)."""
    h, w = (size, size) if np.ndim(size) == 0 else tuple(size)
    if int(h) != int(w) or int(h) < 1:
        raise ValueError(f"the ferkeras pipelines (and so the export) make square inputs; got input size {size}")
    return int(h)


def _square_to_size(image, side: int):
    """uint8 (h, w, 3) -> float32 (side, side, 3) in [0, 1]: centred square pad, antialiased resize, as the
    training pipelines treat a record without a face box."""
    shape = tf.shape(image)
    box = square_crop_box(tf.fill([4], float("nan")), shape[0], shape[1], 0.0)
    face, _ = crop_and_resize_face(image, box, side)
    return face


def _size_message(what, values):
    """``what`` (a format with ``{}`` for the leading ``values``) followed by ``is HxW pixels ...``; ``values`` end
    with the height and width."""
    return tf.strings.format(what + " is {}x{} pixels (height x width): smaller than the smallest face the model "
                             f"accepts, {MIN_FACE_SIZE}x{MIN_FACE_SIZE} pixels (ferkeras.data.image_ops."
                             "MIN_FACE_SIZE)", values)


def _checked_decode(data, index):
    """One encoded image -> uint8 (h, w, 3), after asserting it starts like a JPEG or PNG file, and then that it is
    at least :data:`~ferkeras.data.image_ops.MIN_FACE_SIZE` pixels high and wide."""
    is_image = tf.logical_or(tf.equal(tf.strings.substr(data, 0, len(_JPEG_MAGIC)), _JPEG_MAGIC),
                             tf.equal(tf.strings.substr(data, 0, len(_PNG_MAGIC)), _PNG_MAGIC))
    message = tf.strings.format(BYTES_INPUT + "[{}] is not a JPEG or PNG image ({} bytes, no JPEG/PNG signature)",
                                [index, tf.strings.length(data)])
    check = tf.debugging.Assert(is_image, [message])
    with tf.control_dependencies([check]):
        image = decode_image(tf.identity(data))
    shape = tf.shape(image)
    big_enough = tf.reduce_all(shape[:2] >= MIN_FACE_SIZE)
    check = tf.debugging.Assert(big_enough, [_size_message(BYTES_INPUT + "[{}]", [index, shape[0], shape[1]])])
    with tf.control_dependencies([check]):
        return tf.identity(image)


def check_encoded_batch(image_bytes):
    """``image_bytes`` as a tf.string tensor, after asserting (``InvalidArgumentError`` naming the shape) that it
    is a 1-D batch (a single image must come as a batch of one)."""
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    message = tf.strings.format(BYTES_INPUT + " must be a 1-D batch of encoded images, shape (B,); got shape {} "
                                "(send one image as a batch of one)", [tf.shape(image_bytes)])
    with tf.control_dependencies([tf.debugging.Assert(tf.equal(tf.rank(image_bytes), 1), [message])]):
        return tf.identity(image_bytes)


def check_uint8_batch(images):
    """``images`` as a uint8 tensor, after asserting (``InvalidArgumentError`` naming the shape) that it is a batch
    (B, H, W, 3) of RGB images (rank 4, 3 channels) of at least :data:`~ferkeras.data.image_ops.MIN_FACE_SIZE`
    pixels high and wide; an empty batch (B = 0) passes whatever its H and W."""
    images = tf.convert_to_tensor(images, tf.uint8)
    shape = tf.shape(images)
    rank_ok = tf.debugging.Assert(tf.equal(tf.size(shape), 4), [tf.strings.format(
        UINT8_INPUT + " must be a batch of RGB images, shape (B, H, W, 3); got shape {} of rank {} (send one image "
        "as a batch of one)", [shape, tf.size(shape)])])
    with tf.control_dependencies([rank_ok]):
        dims = tf.identity(shape)
        channels_ok = tf.debugging.Assert(tf.equal(dims[3], 3), [tf.strings.format(
            UINT8_INPUT + " must have 3 channels (RGB); got shape {} with {} channel(s) (convert grayscale or RGBA "
            "images to RGB, or send them encoded to " + BYTES_SIGNATURE + ")", [dims, dims[3]])])
        size_ok = tf.debugging.Assert(tf.logical_or(tf.equal(dims[0], 0), tf.reduce_all(dims[1:3] >= MIN_FACE_SIZE)),
                                      [_size_message(UINT8_INPUT, [dims[1], dims[2]])])
    with tf.control_dependencies([channels_ok, size_ok]):
        return tf.identity(images)


def preprocess_encoded(image_bytes, size):
    """Encoded JPEG / PNG images, tf.string (B,) -> float32 (B, S, S, 3) in [0, 1] (the export's preprocessing).

    ``size`` is the side S or (S, S).  Raises ``InvalidArgumentError`` naming what is wrong for a batch that is not
    1-D, an item that does not start like a JPEG or PNG file (``image_bytes[i] is not a JPEG or PNG image ...``)
    and an image smaller than :data:`~ferkeras.data.image_ops.MIN_FACE_SIZE` (``image_bytes[i] is 1x1 pixels ...``).
    """
    side = square_side(size)
    image_bytes = check_encoded_batch(image_bytes)
    indices = tf.range(tf.shape(image_bytes, out_type=tf.int64)[0])
    return tf.map_fn(lambda item: _square_to_size(_checked_decode(item[0], item[1]), side),
                     (image_bytes, indices), fn_output_signature=tf.TensorSpec((side, side, 3), tf.float32))


def preprocess_uint8(images, size):
    """uint8 RGB images (B, h, w, 3) -> float32 (B, S, S, 3) in [0, 1] (the export's preprocessing); checked by
    :func:`check_uint8_batch` (``InvalidArgumentError`` naming the shape otherwise)."""
    side = square_side(size)
    images = check_uint8_batch(images)
    return tf.map_fn(lambda image: _square_to_size(image, side), images,
                     fn_output_signature=tf.TensorSpec((side, side, 3), tf.float32))


# ---------------------------------------------------------------------------------------------
# The exported module
# ---------------------------------------------------------------------------------------------

def model_image_size(model: keras.Model) -> Tuple[int, int]:
    """(H, W) of the images ``model`` takes: its functional input shape, or ``model.image_shape`` (AVCEModel)."""
    shape = None
    inputs = getattr(model, "inputs", None)  # functional models only
    if inputs:
        shape = tuple(inputs[0].shape[1:])
    elif getattr(model, "image_shape", None) is not None:
        shape = tuple(model.image_shape)
    if shape is None or len(shape) != 3 or None in shape[:2]:
        raise ValueError(f"cannot tell the input image size of model {model.name!r} (input shape {shape}); "
                         "pass image_size")
    if shape[2] != 3:
        raise ValueError(f"model {model.name!r} takes {shape[2]}-channel images; the export feeds RGB (3 channels)")
    return int(shape[0]), int(shape[1])


def split_outputs(outputs, model_name: str) -> Dict[str, tf.Tensor]:
    """The model's raw outputs -> {"va": (B, 2)} and / or {"expression": (B, C) logits}."""
    if isinstance(outputs, dict):
        unknown = sorted(set(outputs) - {"va", "expression"})
        if unknown or not outputs:
            raise ValueError(f"model {model_name!r} returns outputs {sorted(outputs)}; the export understands "
                             "'va' (B, 2) and 'expression' (B, C) logits")
        out = dict(outputs)
    elif tf.is_tensor(outputs):
        out = {"va": outputs}
    else:
        raise ValueError(f"model {model_name!r} returns a {type(outputs).__name__}; the export understands a (B, 2) "
                         "valence-arousal tensor or a dict with 'va' and / or 'expression'")
    if "va" in out and (len(out["va"].shape) != 2 or out["va"].shape[-1] != 2):
        raise ValueError(f"model {model_name!r}: valence-arousal output has shape {out['va'].shape}, expected (B, 2)")
    return out


class ServingModule(tf.Module):
    """The exported object: two preprocessing signatures around the Keras model's inference ``call``.

    Only the variables the signatures read are tracked (once each, as ``model_variables``): not the optimizer
    slots of a compiled model, nor the training-only heads of a model like AVCE.
    """

    def __init__(self, model: keras.Model, image_size: Tuple[int, int], class_names: Optional[Sequence[str]],
                 class_names_file: str):
        """``class_names_file``: a text file of the class names (one a line), attached as an asset; unused when
        ``class_names`` is None (a model without an expression head)."""
        super().__init__(name="ferkeras_serving")
        size = tuple(int(s) for s in image_size)
        names = None if class_names is None else tf.constant(list(class_names), tf.string)

        def predict(images):
            # An empty batch gives empty outputs: the model runs on one black stand-in image, cut away below
            # (Keras layers such as BatchNormalization cannot take a batch of 0).
            n = tf.shape(images)[0]
            images = tf.cond(n > 0, lambda: images, lambda: tf.zeros((1,) + size + (3,), images.dtype))
            return {key: value[:n] for key, value in _predict(images).items()}

        def _predict(images):
            raw = split_outputs(model(images, training=False), model.name)
            out = {}
            if "va" in raw:
                va = tf.cast(raw["va"], tf.float32)
                out["valence"], out["arousal"] = va[:, 0], va[:, 1]
            if "expression" in raw:
                probabilities = tf.nn.softmax(tf.cast(raw["expression"], tf.float32), axis=-1)
                out["expression_probabilities"] = probabilities
                out["expression"] = tf.gather(names, tf.argmax(probabilities, axis=-1, output_type=tf.int32))
            return out

        def serve_bytes(image_bytes):
            return predict(preprocess_encoded(image_bytes, size))

        def serve_uint8(images):
            return predict(preprocess_uint8(images, size))

        # Inputs of any shape: a request of the wrong rank or channel count reaches the checks of preprocess_*,
        # which name what is wrong, instead of failing the signature's shape match with an internal message.
        self.serve_bytes = tf.function(serve_bytes, input_signature=[
            tf.TensorSpec(None, tf.string, name=BYTES_INPUT)])
        self.serve_uint8 = tf.function(serve_uint8, input_signature=[
            tf.TensorSpec(None, tf.uint8, name=UINT8_INPUT)])
        used = {}
        for fn in (self.serve_bytes, self.serve_uint8):
            used.update((id(v), v) for v in fn.get_concrete_function().variables)
        self.model_variables = list(used.values())
        if class_names is not None:
            self.class_names = tf.Variable(list(class_names), dtype=tf.string, trainable=False, name="class_names")
            self.class_names_file = tf.saved_model.Asset(class_names_file)


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------

def existing_versions(model_dir: str) -> List[int]:
    """The integer version folders in ``model_dir`` (TF Serving's model base path), ascending."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(d) for d in os.listdir(model_dir)
                  if re.fullmatch(r"\d+", d) and os.path.isdir(os.path.join(model_dir, d)))


def _warmup_images(size: Tuple[int, int]) -> np.ndarray:
    """A small deterministic RGB test card (1, H, W, 3) uint8: colour gradients, so every decoder path runs."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    card = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 255 * (x + y) / max(h + w - 2, 1)], -1)
    return card.astype(np.uint8)[None]


def _write_warmup(path: str, model_name: str, size: Tuple[int, int]):
    """Writes one PredictionLog per signature to ``path`` (a TFRecord file)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    card = _warmup_images(size)
    jpeg = tf.io.encode_jpeg(card[0], quality=95).numpy()
    requests = [(BYTES_SIGNATURE, BYTES_INPUT, tf.make_tensor_proto([jpeg], dtype=tf.string)),
                (UINT8_SIGNATURE, UINT8_INPUT, tf.make_tensor_proto(card, dtype=tf.uint8))]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for signature, input_name, tensor in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            request.inputs[input_name].CopyFrom(tensor)
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def _resolve_class_names(model: keras.Model, image_size: Tuple[int, int],
                         class_names: Optional[Sequence[str]]) -> Optional[List[str]]:
    """The class names of the expression head (None without one), checked against its width."""
    probe = model(tf.zeros((1,) + tuple(image_size) + (3,)), training=False)
    raw = split_outputs(probe, model.name)
    if "expression" not in raw:
        if class_names is not None:
            logger.warning("model %s has no expression head: class_names ignored", model.name)
        return None
    num_classes = int(raw["expression"].shape[-1])
    if class_names is None:
        from ferkeras.data.schema import EXPRESSIONS

        if num_classes != len(EXPRESSIONS):
            raise ValueError(f"model {model.name!r} has {num_classes} expression classes: pass class_names "
                             f"(the default {EXPRESSIONS} has {len(EXPRESSIONS)})")
        class_names = EXPRESSIONS
    class_names = [str(c) for c in class_names]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class_names {class_names} for the {num_classes} expression logits "
                         f"of model {model.name!r}")
    if any(not c or "\n" in c for c in class_names):
        raise ValueError(f"class names must be non-empty single-line strings, got {class_names}")
    return class_names


def export_for_serving(model: keras.Model, export_dir: str, name: str, version: Optional[int] = None,
                       image_size: Optional[Union[int, Tuple[int, int]]] = None,
                       class_names: Optional[Sequence[str]] = None, warmup: bool = True) -> str:
    """Exports ``model`` as ``<export_dir>/<name>/<version>/`` for TF Serving; returns that path.

    Args:
        model: a ferkeras task model (see the module docstring), already built.
        export_dir: the folder of served models, e.g. ``saved_models`` (``<export_dir>/<name>`` is TF Serving's
            ``--model_base_path``).
        name: the model name (TF Serving's ``--model_name``), a folder name.
        version: the integer version; default one more than the largest existing one (1 for the first).
        image_size: the model's (square) input side, or (S, S); default read from the model.
        class_names: names of the expression logits; default :data:`ferkeras.data.schema.EXPRESSIONS`
            when the head has 8 classes.  Ignored for a model without an expression head.
        warmup: write ``assets.extra/tf_serving_warmup_requests`` (needs ``tensorflow-serving-api``).

    The version is written in a hidden temporary folder next to it and renamed when complete, so a running
    TF Serving never loads a half-written version.  An existing version is never overwritten.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name or ""):
        raise ValueError(f"model name {name!r} must be a plain folder name (letters, digits, '_', '-', '.')")
    side = square_side(model_image_size(model) if image_size is None else image_size)
    size = (side, side)
    class_names = _resolve_class_names(model, size, class_names)

    model_dir = os.path.join(export_dir, name)
    if version is None:
        version = (existing_versions(model_dir) or [0])[-1] + 1
    version = int(version)
    if version < 0:
        raise ValueError(f"version must be a non-negative integer, got {version}")
    target = os.path.join(model_dir, str(version))
    if os.path.exists(target):
        raise FileExistsError(f"{target} already exists: pick another version or leave version=None")
    os.makedirs(model_dir, exist_ok=True)

    staging = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir)
    try:
        names_file = os.path.join(staging, CLASS_NAMES_ASSET)
        if class_names is not None:
            with open(names_file, "w") as f:
                f.write("\n".join(class_names) + "\n")
        module = ServingModule(model, size, class_names, names_file)
        out = os.path.join(staging, "saved_model")
        signatures = {BYTES_SIGNATURE: module.serve_bytes.get_concrete_function(),
                      UINT8_SIGNATURE: module.serve_uint8.get_concrete_function()}
        tf.saved_model.save(module, out, signatures=signatures)
        if warmup:
            _write_warmup(os.path.join(out, WARMUP_FILE), name, size)
        os.rename(out, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("exported %s (input %dx%d, classes %s) to %s", model.name, size[0], size[1], class_names, target)
    return target


RUN_CHECKPOINT = RunDir.CHECKPOINT
"""Where the experiment binaries' run directories keep the model (:attr:`ferkeras.training.RunDir.CHECKPOINT`)."""


def resolve_model_file(path: str) -> str:
    """``path`` itself if it is a .keras file, else the run directory's checkpoint (or its only .keras file)."""
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise ValueError(f"{path} is not a .keras file")
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"model {path} does not exist")
    run = RunDir.open(path)
    if run.has_checkpoint():
        return run.checkpoint_path
    found = sorted(f for f in os.listdir(path) if f.endswith(".keras"))
    if len(found) != 1:
        raise FileNotFoundError(f"{path} holds no {RunDir.CHECKPOINT} and {len(found)} .keras files {found}: "
                                "pass the .keras file")
    return os.path.join(path, found[0])


def class_names_from_run(model_file: str) -> Optional[List[str]]:
    """The class names of the run that saved ``model_file`` (:meth:`ferkeras.training.RunDir.read_class_names` of
    the folder holding it, else of that folder's parent: a run's checkpoint sits one level down), else None."""
    folder = os.path.dirname(os.path.abspath(model_file))
    for candidate in (folder, os.path.dirname(folder)):
        run = RunDir.open(candidate)
        names = run.read_class_names()
        if names:
            logger.info("class names from %s", run.result_path)
            return names
    return None


def custom_objects() -> Dict[str, type]:
    """The ferkeras classes a saved task model may contain, by their registered names: what
    ``keras.saving.load_model`` needs to rebuild a baseline or an AVCE model."""
    return {keras.saving.get_registered_name(c): c for c in (AVCEModel, CaffePreprocessing)}


def load_trained_model(path: str) -> Tuple[keras.Model, Optional[List[str]], str]:
    """A .keras file or run directory -> ``(model, class names from its result.json or None, model file)``.

    The model is loaded uncompiled, with the ferkeras classes of :func:`custom_objects`.
    """
    model_file = resolve_model_file(path)
    try:
        model = keras.saving.load_model(model_file, custom_objects=custom_objects(), compile=False)
    except Exception as e:  # Keras raises several types for a file that is not a loadable model
        raise ValueError(f"cannot load the Keras model {model_file}: {e}") from e
    return model, class_names_from_run(model_file), model_file


def describe_export(path: str) -> str:
    """A ``saved_model_cli show --all``-like summary of an exported version: signatures, inputs, outputs, assets."""
    loaded = tf.saved_model.load(path)
    lines = [f"SavedModel {os.path.abspath(path)}"]
    for sig_name in sorted(loaded.signatures):
        fn = loaded.signatures[sig_name]
        lines.append(f"signature '{sig_name}':")
        for key, spec in sorted(fn.structured_input_signature[1].items()):
            shape = "any shape (checked when called)" if spec.shape.rank is None else tuple(spec.shape.as_list())
            lines.append(f"    input  {key:26s} {spec.dtype.name:8s} {shape}")
        for key, spec in sorted(fn.structured_outputs.items()):
            lines.append(f"    output {key:26s} {spec.dtype.name:8s} {tuple(spec.shape.as_list())}")
    if hasattr(loaded, "class_names"):
        names = [c.decode() for c in loaded.class_names.numpy()]
        lines.append(f"class names ({len(names)}, assets/{CLASS_NAMES_ASSET}): {', '.join(names)}")
    warmup_path = os.path.join(path, WARMUP_FILE)
    if os.path.exists(warmup_path):
        count = sum(1 for _ in tf.data.TFRecordDataset(warmup_path))
        lines.append(f"warm-up requests: {count} ({WARMUP_FILE})")
    return "\n".join(lines)


__all__ = ("BYTES_INPUT", "BYTES_SIGNATURE", "CLASS_NAMES_ASSET", "RUN_CHECKPOINT", "ServingModule", "UINT8_INPUT",
           "UINT8_SIGNATURE", "WARMUP_FILE", "check_encoded_batch", "check_uint8_batch", "class_names_from_run",
           "custom_objects", "describe_export", "existing_versions", "export_for_serving", "load_trained_model",
           "model_image_size", "preprocess_encoded", "preprocess_uint8", "resolve_model_file")
