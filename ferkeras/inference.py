"""Inference on faces in the wild: valence, arousal and expression of every face in photos, folders and videos,
with a ferkeras model or any Keras FER model, as Python records, a CSV and pictures.

Notebook use (:func:`analyze_images`)::

    from ferkeras.inference import analyze_images, ModelAdapter
    records = analyze_images(["group.jpg", frame_array], "runs/baseline")        # one FaceRecord per face
    records[0].expression, records[0].probabilities, records[0].valence, records[0].box
    import pandas as pd; pd.DataFrame([r.as_dict() for r in records])           # the CSV's columns
    # a third-party grayscale model (e.g. the fer package's mini-Xception, 64x64x1, inputs in [-1, 1])
    analyze_images("photo.jpg", "fer2013_mini_XCEPTION.hdf5", adapter=ModelAdapter(scaling="symmetric"))

Files (what ``tools/analyze.py`` runs): :func:`analyze` dispatches a photo or a folder of photos to
:func:`analyze_photos` (CSV + one annotated picture per photo) and a video or a folder of frames to
:func:`analyze_video` (CSV + valence-arousal and expression timelines, optionally annotated frames / video).

Models (:func:`load_predictor`): an in-memory Keras model; a ``.keras`` file, a legacy ``.h5`` / ``.hdf5`` file or a
ferkeras run directory; an export of :func:`ferkeras.export.export_for_serving` (``saved_models/<name>[/<version>]``,
called through its ``uint8_images`` signature); or any other SavedModel directory (its ``serving_default``
signature).  A :class:`ModelAdapter` says how to feed and read a model: input size and channels, pixel scaling,
which output is valence-arousal (B, 2) and which the expressions (B, C), logits or probabilities, class names.
Every field left ``None`` / ``"auto"`` is inferred from the model (see :class:`ModelAdapter`); when that is
ambiguous the error names the field to set.

The analysis streams: frames are decoded one at a time, faces are found (:class:`ferkeras.face.FaceDetector`, its
defaults unless a detector is given) and, in a video, given persistent ids (:class:`ferkeras.face.IoUTracker`);
each face is cut exactly as the training pipelines cut a record's face box
(:func:`ferkeras.data.image_ops.square_crop_box` with ``margin``, default :func:`default_margin`, then
:func:`ferkeras.data.image_ops.crop_and_resize_face` to the model's input side), or with ``crop="aligned"``
warped to the canonical face by its landmarks (:func:`ferkeras.face.align_face`); the crops of consecutive frames
are predicted together in batches.  At most ``batch_size`` frames wait for a batch, so memory does not grow with
the video.

Crops are quantised to uint8 (``round(255 x)``) before inference, whichever the model: an exported SavedModel's
``uint8_images`` signature takes uint8 images, and a Keras model then gets the very same pixels (scaled as its
adapter says), so the two paths agree to float rounding.

CSV columns: a video (or folder of frames) ``frame, time, face_id, x0, y0, x1, y1, score, valence, arousal``; photos
``file, face_id, x0, y0, x1, y1, score, valence, arousal``; then for a model with expressions ``expression`` (the
most probable class) and ``prob_<class>`` per class; with landmarks ``x_0 .. x_67, y_0 .. y_67`` (dlib's 68
points).  ``score`` is the detector's (HOG SVM score, CNN confidence or Haar level weight: not comparable across
detectors).  A frame / photo without a face is one row with only ``frame`` and ``time`` / ``file`` filled; one
with N faces is N rows.  ``time`` is empty when a folder of frames has no frame rate.  Boxes are the detector's
(x1, y1 exclusive, may reach past the image border).  Valence and arousal are empty for a model without them.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import logging
import math
import os
import time
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import cv2
import keras
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from ferkeras import export as fexport
from ferkeras.data.image_ops import crop_and_resize_face, square_crop_box
from ferkeras.data.readers.fer2013 import FER2013_CLASSES
from ferkeras.data.schema import EXPRESSIONS, NUM_LANDMARKS, SkipCounter
from ferkeras.face import ALIGN_MARGIN, FACE_MARGIN, FaceDetector, Frame, IoUTracker, LandmarkDetector, align_face, \
    draw_faces, iter_frames, video_info
from ferkeras.face.video import IMAGE_EXTENSIONS

logger = logging.getLogger("ferkeras.inference")

STAGES = ("decode", "detect", "landmarks", "crop", "infer", "write")
BASE_COLUMNS = ("frame", "time", "face_id", "x0", "y0", "x1", "y1", "score", "valence", "arousal")
PHOTO_COLUMNS = ("file", "face_id", "x0", "y0", "x1", "y1", "score", "valence", "arousal")
LANDMARK_COLUMNS = tuple(f"x_{i}" for i in range(NUM_LANDMARKS)) + tuple(f"y_{i}" for i in range(NUM_LANDMARKS))
PROB_PREFIX = "prob_"
CROPS = ("box", "aligned")
SCALINGS = ("unit", "symmetric", "byte", "imagenet")
OUTPUT_KINDS = ("auto", "logits", "probabilities")
NO_OUTPUT = "none"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_margin(crop: str = "box") -> float:
    """The crop margin ferkeras.face uses by default (:mod:`ferkeras.face.defaults`, measured there):
    :data:`ferkeras.face.FACE_MARGIN` for ``"box"`` (the training pipelines' square box crop) and
    :data:`ferkeras.face.ALIGN_MARGIN` for ``"aligned"`` (:func:`ferkeras.face.align_face`)."""
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    return float(FACE_MARGIN if crop == "box" else ALIGN_MARGIN)


# ---------------------------------------------------------------------------------------------
# Stage timing
# ---------------------------------------------------------------------------------------------

class StageTimer:
    """Wall-clock seconds spent in each stage of :data:`STAGES`, accumulated over a run."""

    def __init__(self):
        self.seconds = {stage: 0.0 for stage in STAGES}

    @contextlib.contextmanager
    def stage(self, name: str):
        """Adds the time spent inside the ``with`` block to stage ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def summary(self, frames: int, unit: str = "frame") -> str:
        """One line per stage: seconds, share of the total and milliseconds per frame (or photo)."""
        total = self.total or 1.0
        lines = [f"{frames} {unit}s in {self.total:.2f} s ({frames / total:.2f} {unit}s/s)"]
        for stage, seconds in self.seconds.items():
            lines.append(f"  {stage:9s} {seconds:8.2f} s {100 * seconds / total:5.1f} %  "
                         f"{1000 * seconds / max(frames, 1):8.2f} ms/{unit}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Model adapter
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ModelAdapter:
    """How to feed a FER model face crops and how to read its outputs; ``None`` / ``"auto"`` = infer from the model.

    Attributes:
      input_size: side S of the square input; from the model's input shape (B, S, S, C) when None (required for a
        model with an unknown input size).
      channels: 3 (RGB) or 1 (grayscale: the RGB crop is converted with ITU-R 601 weights, as OpenCV does); from
        the model's input shape when None.
      scaling: the pixel range the model expects: ``"unit"`` [0, 1] (ferkeras models; the default), ``"symmetric"``
        [-1, 1] (x / 127.5 - 1, e.g. the fer package's mini-Xception), ``"byte"`` [0, 255], ``"imagenet"``
        ([0, 1] - ImageNet mean) / std per channel.  A model's shapes do not tell its scaling: set it for
        third-party models.
      va_output: the (B, 2) valence-arousal output (a dict key / output name, or its index), or ``"none"`` to
        ignore it.  When None: the output named ``va``, else the only (B, 2) output, else none.
      expression_output: the (B, C) expression output, likewise (``"expression"``, else the only (B, C >= 3)
        output, else none).
      outputs: ``"logits"`` (softmax applied), ``"probabilities"`` (used as they are), or ``"auto"``: probabilities
        if the model's outputs on random crops are all non-negative and sum to 1 per row, else logits.
      class_names: names of the C expression classes; default a ferkeras run's ``result.json`` / an export's
        names, else ferkeras' 8 (:data:`ferkeras.data.schema.EXPRESSIONS`) for C = 8 and the FER2013 order
        (angry, disgust, fear, happy, sad, surprise, neutral; used by the fer and deepface packages) for C = 7,
        else ``class_0`` ...
    """

    input_size: Optional[int] = None
    channels: Optional[int] = None
    scaling: str = "unit"
    va_output: Optional[Union[str, int]] = None
    expression_output: Optional[Union[str, int]] = None
    outputs: str = "auto"
    class_names: Optional[Tuple[str, ...]] = None

    def __post_init__(self):
        if self.input_size is not None and int(self.input_size) < 1:
            raise ValueError(f"input_size must be >= 1, got {self.input_size}")
        if self.channels is not None and int(self.channels) not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {self.scaling!r}")
        if self.outputs not in OUTPUT_KINDS:
            raise ValueError(f"outputs must be one of {OUTPUT_KINDS}, got {self.outputs!r}")
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if (self.va_output is not None and self.expression_output is not None
                and str(self.va_output) == str(self.expression_output) and str(self.va_output) != NO_OUTPUT):
            raise ValueError(f"va_output and expression_output are both {self.va_output!r}")


def scale_pixels(x: tf.Tensor, scaling: str) -> tf.Tensor:
    """float32 pixels in [0, 255] (B, H, W, C) -> the range ``scaling`` names (see :class:`ModelAdapter`)."""
    if scaling == "unit":
        return x / 255.0
    if scaling == "symmetric":
        return x / 127.5 - 1.0
    if scaling == "byte":
        return x
    if scaling == "imagenet":
        mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
        if x.shape[-1] == 1:
            mean, std = mean.mean(keepdims=True), std.mean(keepdims=True)
        return (x / 255.0 - mean) / std
    raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def looks_like_probabilities(values: np.ndarray, atol: float = 1e-3) -> bool:
    """True when every row is non-negative and sums to 1 (within ``atol``): a softmax output, not logits."""
    values = np.asarray(values, np.float64)
    return bool(values.size and (values >= -1e-6).all() and np.abs(values.sum(-1) - 1.0).max() <= atol)


def default_class_names(num_classes: int, model_name: str = "model") -> List[str]:
    """ferkeras' 8 expressions for 8 classes, the FER2013 order for 7 (logged), else ``class_0`` ... (logged)."""
    if num_classes == len(EXPRESSIONS):
        return list(EXPRESSIONS)
    if num_classes == len(FER2013_CLASSES):
        logger.warning("%s: 7 expression classes, assumed in FER2013's order %s (the fer / deepface models'); set "
                       "class_names if they are not", model_name, ", ".join(FER2013_CLASSES))
        return list(FER2013_CLASSES)
    logger.warning("%s: no class names for its %d expression classes; using class_0 ... (set class_names)",
                   model_name, num_classes)
    return [f"class_{i}" for i in range(num_classes)]


def _class_names(class_names: Optional[Sequence[str]], num_classes: int, model_name: str) -> List[str]:
    if class_names is None:
        return default_class_names(num_classes, model_name)
    class_names = [str(c) for c in class_names]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names {class_names} for the {num_classes} expression outputs "
                         f"of model {model_name!r}: set class_names to {num_classes} names")
    return class_names


def _input_geometry(shape: Sequence[Optional[int]], adapter: ModelAdapter, name: str) -> Tuple[int, int]:
    """(side, channels) from the model's input shape (B, H, W, C) and the adapter; errors name the field to set."""
    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(f"model {name!r} takes inputs of shape {shape}; the analysis feeds images (B, H, W, C)")
    _, h, w, c = shape
    if c is not None and c not in (1, 3):
        hint = " (channels-first? convert the model to channels-last)" if h in (1, 3) else ""
        raise ValueError(f"model {name!r} takes {c}-channel images (input shape {shape}); the analysis feeds 1 "
                         f"(grayscale) or 3 (RGB) channels{hint}")
    channels = c if c is not None else adapter.channels
    if adapter.channels is not None and c is not None and int(adapter.channels) != c:
        raise ValueError(f"channels={adapter.channels} but model {name!r} takes {c}-channel images (input shape "
                         f"{shape}); leave channels unset or set it to {c}")
    if channels is None:
        raise ValueError(f"model {name!r} does not say how many channels it takes (input shape {shape}): set "
                         "channels to 1 or 3")
    if h is not None and w is not None and h != w:
        raise ValueError(f"model {name!r} takes {h}x{w} images; the analysis makes square face crops")
    side = h if h is not None else w
    if adapter.input_size is not None:
        if side is not None and int(adapter.input_size) != side:
            raise ValueError(f"input_size={adapter.input_size} but model {name!r} takes {side}x{side} images; "
                             f"leave input_size unset or set it to {side}")
        side = int(adapter.input_size)
    if side is None:
        raise ValueError(f"model {name!r} takes images of any size (input shape {shape}): set input_size")
    return int(side), int(channels)


def _flatten_outputs(outputs, output_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """A model's outputs as an ordered {name: tensor}: dict keys, list items by output name (or index), or one."""
    if isinstance(outputs, dict):
        return {str(k): v for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        names = list(output_names or [])
        return {(names[i] if i < len(names) else str(i)): v for i, v in enumerate(outputs)}
    return {(output_names[0] if output_names else "output"): outputs}


def _describe_outputs(shapes: Dict[str, tuple]) -> str:
    return ", ".join(f"{k!r} {tuple(s)}" for k, s in shapes.items())


def _pick_output(wanted, shapes: Dict[str, tuple], field: str, name: str) -> Optional[str]:
    """The output ``field`` (va_output / expression_output) names, by key or index; None for ``"none"``."""
    if wanted is None:
        return None
    if str(wanted) == NO_OUTPUT:
        return NO_OUTPUT
    keys = list(shapes)
    if str(wanted) in shapes:
        return str(wanted)
    if str(wanted).lstrip("-").isdigit() and -len(keys) <= int(wanted) < len(keys):
        return keys[int(wanted)]
    raise ValueError(f"{field}={wanted!r} is not an output of model {name!r}; its outputs are "
                     f"{_describe_outputs(shapes)} (name or index)")


def choose_outputs(shapes: Dict[str, tuple], adapter: ModelAdapter, name: str = "model"
                   ) -> Tuple[Optional[str], Optional[str]]:
    """(valence-arousal output, expression output) of a model with outputs ``{name: shape}`` (each may be None).

    Explicit ``adapter.va_output`` / ``adapter.expression_output`` win; otherwise the outputs named ``va`` and
    ``expression``, else the only (B, 2) output is valence-arousal and the only (B, C >= 3) output the expressions.
    Raises ValueError naming the adapter field to set when that is ambiguous or an output has the wrong shape.
    """
    va = _pick_output(adapter.va_output, shapes, "va_output", name)
    expression = _pick_output(adapter.expression_output, shapes, "expression_output", name)
    taken = {va, expression}
    width = {k: (s[-1] if len(s) == 2 else None) for k, s in shapes.items()}
    free = [k for k in shapes if k not in taken]
    if va is None:
        if "va" in free:
            va = "va"
        else:
            candidates = [k for k in free if width[k] == 2]
            if len(candidates) > 1:
                raise ValueError(f"model {name!r} has {len(candidates)} outputs of shape (B, 2): "
                                 f"{_describe_outputs(shapes)}; set va_output to the valence-arousal one (or "
                                 f"'{NO_OUTPUT}')")
            va = candidates[0] if candidates else NO_OUTPUT
        free = [k for k in free if k != va]
    if expression is None:
        if "expression" in free:
            expression = "expression"
        else:
            candidates = [k for k in free if width[k] is not None and width[k] >= 3]
            if len(candidates) > 1:
                raise ValueError(f"model {name!r} has {len(candidates)} outputs of shape (B, C >= 3): "
                                 f"{_describe_outputs(shapes)}; set expression_output to the expression one "
                                 f"(or '{NO_OUTPUT}')")
            expression = candidates[0] if candidates else NO_OUTPUT
    va = None if va == NO_OUTPUT else va
    expression = None if expression == NO_OUTPUT else expression
    if va is not None and (len(shapes[va]) != 2 or shapes[va][-1] != 2):
        raise ValueError(f"model {name!r}: output {va!r} has shape {tuple(shapes[va])}, not valence-arousal "
                         f"(B, 2); set va_output to the (B, 2) output or '{NO_OUTPUT}' (outputs: "
                         f"{_describe_outputs(shapes)})")
    if expression is not None and (len(shapes[expression]) != 2 or (shapes[expression][-1] or 0) < 2):
        raise ValueError(f"model {name!r}: output {expression!r} has shape {tuple(shapes[expression])}, not "
                         f"expression scores (B, C); set expression_output to the (B, C) output or "
                         f"'{NO_OUTPUT}' (outputs: {_describe_outputs(shapes)})")
    if va is None and expression is None:
        raise ValueError(f"model {name!r} has no valence-arousal (B, 2) or expression (B, C >= 3) output (outputs: "
                         f"{_describe_outputs(shapes)}); set va_output and / or expression_output")
    return va, expression


class AdaptedPredictor:
    """A model callable on float images, fed and read as a :class:`ModelAdapter` says; takes uint8 RGB crops.

    Args:
      call: float32 (B, S, S, C) scaled images -> the model's outputs (a tensor, list or dict of tensors).
      input_shape: the model's input shape (B, H, W, C), entries may be None.
      name: the model's name for messages.
      adapter: a :class:`ModelAdapter` (default: everything inferred).
      output_names: names of a list of outputs (a Keras model's ``output_names``).

    Attributes: ``input_size``, ``channels``, ``has_va``, ``class_names`` (None without expressions),
    ``va_output``, ``expression_output``, ``probabilities`` (whether the expression output is used as is).
    """

    def __init__(self, call, input_shape, name: str, adapter: Optional[ModelAdapter] = None,
                 output_names: Optional[Sequence[str]] = None):
        adapter = adapter or ModelAdapter()
        self.adapter, self.name = adapter, name
        self.input_size, self.channels = _input_geometry(input_shape, adapter, name)
        side, channels, scaling = self.input_size, self.channels, adapter.scaling

        def run(crops):
            x = tf.cast(crops, tf.float32)
            if channels == 1:
                x = tf.image.rgb_to_grayscale(x)
            return _flatten_outputs(call(scale_pixels(x, scaling)), output_names)

        self._call = tf.function(run, input_signature=[tf.TensorSpec((None, side, side, 3), tf.uint8)])
        probe_images = np.random.default_rng(0).integers(0, 256, (4, side, side, 3), dtype=np.uint8)
        try:
            probe = self._call(tf.convert_to_tensor(probe_images))
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
            raise ValueError(f"model {name!r} fails on {side}x{side}x{channels} images scaled {scaling!r}: {e}") from e
        shapes = {k: (None,) + tuple(v.shape[1:]) for k, v in probe.items()}  # (B, ...) as Keras shows it
        self.va_output, self.expression_output = choose_outputs(shapes, adapter, name)
        self.has_va = self.va_output is not None
        self.class_names = None
        self.probabilities = False
        if self.expression_output is not None:
            self.class_names = _class_names(adapter.class_names, int(shapes[self.expression_output][-1]), name)
            if adapter.outputs == "auto":
                self.probabilities = looks_like_probabilities(probe[self.expression_output].numpy())
            else:
                self.probabilities = adapter.outputs == "probabilities"
        elif adapter.class_names is not None:
            logger.warning("model %s has no expression output; class_names ignored", name)
        logger.info("model %s: input %dx%dx%d scaled %s, valence-arousal %s, expression %s (%s)", name, side, side,
                    channels, scaling, self.va_output, self.expression_output,
                    "probabilities" if self.probabilities else "logits")

    def __call__(self, crops: np.ndarray) -> Dict[str, np.ndarray]:
        """uint8 RGB crops (B, S, S, 3) -> ``valence``, ``arousal`` (B,) and / or ``expression_probabilities``
        (B, C)."""
        raw = self._call(tf.convert_to_tensor(crops, tf.uint8))
        out = {}
        if self.va_output is not None:
            va = raw[self.va_output].numpy().astype(np.float32)
            out["valence"], out["arousal"] = va[:, 0], va[:, 1]
        if self.expression_output is not None:
            scores = raw[self.expression_output].numpy().astype(np.float64)
            out["expression_probabilities"] = (scores if self.probabilities else _softmax(scores)).astype(np.float32)
        return out


def _keras_input_shape(model: keras.Model) -> tuple:
    inputs = getattr(model, "inputs", None)  # functional and built Sequential models
    if inputs:
        if len(inputs) != 1:
            raise ValueError(f"model {model.name!r} has {len(inputs)} inputs; the analysis feeds one image input")
        return tuple(inputs[0].shape)
    if getattr(model, "image_shape", None) is not None:  # AVCEModel
        return (None,) + tuple(model.image_shape)
    raise ValueError(f"cannot tell the input shape of model {model.name!r} (a subclassed model without inputs); "
                     "set input_size and channels")


class KerasPredictor(AdaptedPredictor):
    """A Keras model (ferkeras task model or any Keras FER model) on uint8 RGB face crops.

    Args:
      model: a Keras model with one image input; ferkeras task models return ``{"va": (B, 2), "expression":
        (B, C) logits}`` (one or both) or a (B, 2) valence-arousal tensor; others are read as ``adapter`` says.
      class_names: expression class names (shortcut for ``adapter.class_names``; see :class:`ModelAdapter`).
      adapter: a :class:`ModelAdapter`; inferred from the model when None.
    """

    def __init__(self, model: keras.Model, class_names: Optional[Sequence[str]] = None,
                 adapter: Optional[ModelAdapter] = None):
        adapter = adapter or ModelAdapter()
        if class_names is not None:
            adapter = dataclasses.replace(adapter, class_names=tuple(class_names))
        self.model = model
        shape = _keras_input_shape(model)
        names = list(getattr(model, "output_names", None) or [])
        super().__init__(lambda x: model(x, training=False), shape, model.name, adapter, names)


def _export_input_side(signature, path: str) -> int:
    """The model input side S of an export's ``uint8_images`` signature.

    The export resizes every image to (S, S) inside a ``tf.map_fn`` whose stacked element shape, (S, S, 3), is a
    constant of the signature's graph; it is the only place the export records S.
    """
    for function in signature.graph.as_graph_def().library.function:
        for node in function.node_def:
            if node.op == "Const" and node.name.endswith("TensorArrayV2Stack/TensorListStack/element_shape"):
                shape = tf.make_ndarray(node.attr["value"].tensor).tolist()
                if len(shape) == 3 and shape[0] == shape[1] and shape[2] == 3 and shape[0] > 0:
                    return int(shape[0])
    raise ValueError(f"cannot find the input size of the exported model {path}; pass input_size")


class SavedModelPredictor:
    """An export of :func:`ferkeras.export.export_for_serving`, called through its ``uint8_images`` signature.

    Args:
      path: the version folder ``<export_dir>/<name>/<version>``.
      input_size: the model's input side; read from the export when None.  Crops are made at this size, so the
        export's own pad-and-resize leaves them unchanged.
    """

    def __init__(self, path: str, input_size: Optional[int] = None):
        self.path = path
        loaded = tf.saved_model.load(path)
        if fexport.UINT8_SIGNATURE not in loaded.signatures:
            raise ValueError(f"SavedModel {path} has no {fexport.UINT8_SIGNATURE!r} signature (signatures: "
                             f"{sorted(loaded.signatures)}); export it with ferkeras.export.export_for_serving")
        self._loaded = loaded  # keeps the signature's variables alive
        self._signature = loaded.signatures[fexport.UINT8_SIGNATURE]
        self.input_size = int(input_size) if input_size else _export_input_side(self._signature, path)
        self.channels = 3
        outputs = self._signature.structured_outputs
        self.has_va = "valence" in outputs
        self.class_names = None
        if "expression_probabilities" in outputs:
            self.class_names = [c.decode() for c in loaded.class_names.numpy()]

    def __call__(self, crops: np.ndarray) -> Dict[str, np.ndarray]:
        """uint8 crops (B, S, S, 3) -> ``valence``, ``arousal`` (B,) and / or ``expression_probabilities`` (B, C)."""
        raw = self._signature(**{fexport.UINT8_INPUT: tf.convert_to_tensor(crops, tf.uint8)})
        return {k: v.numpy() for k, v in raw.items() if k != "expression"}


class SignaturePredictor(AdaptedPredictor):
    """Any SavedModel (e.g. ``keras.Model.export`` or a TF 2 ``model.save``) through one of its signatures.

    Args:
      path: the SavedModel folder.
      adapter: a :class:`ModelAdapter`.
      signature: the signature to call (default ``serving_default``, else the only one); it must take one image
        tensor (B, H, W, C).
    """

    def __init__(self, path: str, adapter: Optional[ModelAdapter] = None, signature: Optional[str] = None):
        self.path = path
        loaded = tf.saved_model.load(path)
        names = sorted(loaded.signatures)
        if signature is None:
            signature = "serving_default" if "serving_default" in names else (names[0] if len(names) == 1 else None)
        if signature not in names:
            raise ValueError(f"SavedModel {path} has signatures {names}; cannot choose one to call")
        self._loaded = loaded
        function = loaded.signatures[signature]
        specs = function.structured_input_signature[1]
        if len(specs) != 1:
            raise ValueError(f"signature {signature!r} of SavedModel {path} takes {len(specs)} inputs "
                             f"{sorted(specs)}; the analysis feeds one image input")
        (input_name, spec), = specs.items()
        shape = tuple(spec.shape.as_list())

        def call(x):
            return function(**{input_name: tf.cast(x, spec.dtype)})

        super().__init__(call, shape, os.path.basename(os.path.normpath(path)), adapter)


Predictor = Union[AdaptedPredictor, SavedModelPredictor]
KERAS_FILE_EXTENSIONS = (".keras", ".h5", ".hdf5")


def _saved_model_version(path: str) -> Optional[str]:
    """``path`` if it is a SavedModel folder, its newest version if it is ``<export_dir>/<name>``, else None."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = fexport.existing_versions(path)
    if versions and os.path.isfile(os.path.join(path, str(versions[-1]), "saved_model.pb")):
        return os.path.join(path, str(versions[-1]))
    return None


def _load_keras_file(path: str) -> keras.Model:
    try:
        return keras.saving.load_model(path, custom_objects=fexport.custom_objects(), compile=False)
    except Exception as e:  # Keras raises several types for a file that is not a loadable model
        raise ValueError(f"cannot load the Keras model {path}: {e}") from e


def load_predictor(model: Union[str, os.PathLike, keras.Model, Predictor],
                   class_names: Optional[Sequence[str]] = None, adapter: Optional[ModelAdapter] = None
                   ) -> Predictor:
    """A predictor from a Keras model, a ``.keras`` / ``.h5`` / ``.hdf5`` file, a run directory or a SavedModel.

    A ferkeras export (``uint8_images`` signature; in ``model`` or in its newest integer version folder) gives a
    :class:`SavedModelPredictor` whose class names are the export's; any other SavedModel a
    :class:`SignaturePredictor`; Keras models a :class:`KerasPredictor` (class names default to the run's
    ``result.json``).  ``class_names`` overrides ``adapter.class_names``.  A predictor is returned as it is.
    Raises FileNotFoundError / ValueError naming ``model`` when it is none of these.
    """
    if isinstance(model, (AdaptedPredictor, SavedModelPredictor)):
        return model
    adapter = adapter or ModelAdapter()
    if class_names is not None:
        adapter = dataclasses.replace(adapter, class_names=tuple(class_names))
    if isinstance(model, keras.Model):
        return KerasPredictor(model, adapter=adapter)
    path = os.fspath(model)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model {path} does not exist")
    saved = _saved_model_version(path) if os.path.isdir(path) else None
    if saved is not None:
        loaded_signatures = tf.saved_model.load(saved).signatures
        if fexport.UINT8_SIGNATURE in loaded_signatures:
            if adapter.class_names is not None:
                logger.warning("class names of the SavedModel %s are its own; class_names ignored", saved)
            if dataclasses.replace(adapter, class_names=None, input_size=None) != ModelAdapter():
                logger.warning("the ferkeras export %s feeds and reads its model itself; adapter %s ignored",
                               saved, adapter)
            logger.info("SavedModel %s", saved)
            return SavedModelPredictor(saved, adapter.input_size)
        logger.info("SavedModel %s (signature serving_default)", saved)
        return SignaturePredictor(saved, adapter)
    if os.path.isfile(path):
        if not path.lower().endswith(KERAS_FILE_EXTENSIONS):
            raise ValueError(f"model {path} is not a .keras, .h5 or .hdf5 file, a run directory or a SavedModel "
                             "folder")
        keras_model, model_file = _load_keras_file(path), path
    else:
        try:
            model_file = fexport.resolve_model_file(path)
        except (ValueError, FileNotFoundError) as e:
            raise ValueError(f"model {path} is neither an exported SavedModel (no saved_model.pb in it or in a "
                             f"version folder) nor a .keras file or run directory ({e})") from e
        keras_model = _load_keras_file(model_file)
    if adapter.class_names is None:
        names = fexport.class_names_from_run(model_file)
        if names:
            adapter = dataclasses.replace(adapter, class_names=tuple(names))
    logger.info("Keras model %s", model_file)
    try:
        return KerasPredictor(keras_model, adapter=adapter)
    except ValueError as e:
        raise ValueError(f"{model_file}: {e}") from e


# ---------------------------------------------------------------------------------------------
# Crops
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def _box_crop_function(size: int, margin: float):
    """The graph of the training pipelines' box crop at ``size`` / ``margin``, traced once per process (tracing
    costs seconds; every analysis call reuses it)."""

    def crop(image, boxes):
        shape = tf.shape(image)

        def one(box):
            face, _ = crop_and_resize_face(image, square_crop_box(box, shape[0], shape[1], margin), size)
            return tf.cast(tf.round(face * 255.0), tf.uint8)

        return tf.map_fn(one, boxes, fn_output_signature=tf.TensorSpec((size, size, 3), tf.uint8))

    return tf.function(crop, input_signature=[tf.TensorSpec((None, None, 3), tf.uint8),
                                              tf.TensorSpec((None, 4), tf.float32)])


class FaceCropper:
    """Square face crops quantised to uint8 (S, S, 3): the training pipelines' box crop, or aligned by landmarks.

    Args:
      size: the crop side S (the model's input side).
      margin: widening of the face on each side; :func:`default_margin` of ``crop`` when None.
      crop: ``"box"`` (:func:`ferkeras.data.image_ops.square_crop_box` + ``crop_and_resize_face``, exactly as the
        training pipelines cut a record's box) or ``"aligned"`` (:func:`ferkeras.face.align_face` from dlib's 68
        landmarks).
    """

    def __init__(self, size: int, margin: Optional[float] = None, crop: str = "box"):
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        self.size, self.crop = int(size), crop
        self.margin = default_margin(crop) if margin is None else float(margin)
        self._crop = _box_crop_function(self.size, self.margin)

    def __call__(self, image: np.ndarray, boxes: np.ndarray, landmarks: Optional[np.ndarray] = None) -> np.ndarray:
        """uint8 RGB image (H, W, 3), boxes (N, 4) (and landmarks (N, 68, 2) for ``"aligned"``) -> uint8 crops
        (N, S, S, 3)."""
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        if self.crop == "aligned":
            if landmarks is None:
                raise ValueError("crop='aligned' needs the faces' landmarks")
            crops = [align_face(image, points, self.size, self.margin).image for points in landmarks]
            return np.stack(crops) if crops else np.zeros((0, self.size, self.size, 3), np.uint8)
        return self._crop(tf.convert_to_tensor(image), tf.convert_to_tensor(boxes, tf.float32)).numpy()


# ---------------------------------------------------------------------------------------------
# The streaming analysis
# ---------------------------------------------------------------------------------------------

class FrameResult(NamedTuple):
    """One analysed frame or photo: ``index``, ``timestamp`` (s, NaN if unknown), ``boxes`` (N, 4), ``ids`` (N,)
    (track ids in a video, 0 .. N-1 in a photo), ``predictions`` (``valence``, ``arousal`` (N,) /
    ``expression_probabilities`` (N, C)), the ``image`` (None unless kept), detector ``scores`` (N,), ``landmarks``
    (N, 68, 2) or None, and ``name`` (the photo's file, or "")."""

    index: int
    timestamp: float
    boxes: np.ndarray
    ids: np.ndarray
    predictions: Dict[str, np.ndarray]
    image: Optional[np.ndarray]
    scores: Optional[np.ndarray] = None
    landmarks: Optional[np.ndarray] = None
    name: str = ""


class Photo(NamedTuple):
    """A still image to analyse: its position ``index``, ``timestamp`` (NaN), uint8 RGB ``image`` and ``name``."""

    index: int
    timestamp: float
    image: np.ndarray
    name: str


def _timed(items: Iterable, timer: StageTimer, stage: str) -> Iterator:
    iterator = iter(items)
    while True:
        with timer.stage(stage):
            item = next(iterator, None)
        if item is None:
            return
        yield item


def analyze_frames(frames: Iterable, predictor: Predictor, detector: Optional[FaceDetector] = None,
                   tracker: Optional[IoUTracker] = None, margin: Optional[float] = None, batch_size: int = 32,
                   keep_images: bool = False, timer: Optional[StageTimer] = None, *, track: bool = True,
                   crop: str = "box", landmarks: bool = False,
                   landmark_detector: Optional[LandmarkDetector] = None) -> Iterator[FrameResult]:
    """Detects, (tracks,) crops and predicts the faces of ``frames``; yields a :class:`FrameResult` per frame, in order.

    Args:
      frames: :class:`ferkeras.face.Frame` or :class:`Photo` items (e.g. :func:`ferkeras.face.iter_frames`).
      predictor: see :func:`load_predictor`.
      detector: default ``FaceDetector()`` (ferkeras.face's defaults).
      tracker: default ``IoUTracker()``; used when ``track`` (a video), else a frame's faces get ids 0 .. N-1.
      margin, crop: see :class:`FaceCropper` (``margin`` None: :func:`default_margin`).
      batch_size: crops are predicted in batches of up to this many; results of a frame are yielded once its
        batch has run, and at most ``batch_size`` frames wait at a time.
      keep_images: attach each frame's image to its result (for annotation).
      timer: accumulates the stages (decode is the time spent waiting on ``frames``).
      landmarks: find dlib's 68 landmarks of every face (always done for ``crop="aligned"``), with
        ``landmark_detector`` (default ``LandmarkDetector()``).
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    detector = detector or FaceDetector()
    tracker = tracker or IoUTracker()
    timer = timer or StageTimer()
    cropper = FaceCropper(predictor.input_size, margin, crop)
    find_landmarks = bool(landmarks) or crop == "aligned"
    if find_landmarks:
        landmark_detector = landmark_detector or LandmarkDetector()
    pending: List[FrameResult] = []
    crops: List[np.ndarray] = []

    def flush() -> List[FrameResult]:
        done = list(pending)
        pending.clear()
        if crops:
            with timer.stage("infer"):
                outputs = predictor(np.concatenate(crops))
            crops.clear()
            start = 0
            for result in done:
                n = len(result.ids)
                result.predictions.update({k: v[start:start + n] for k, v in outputs.items()})
                start += n
        return done

    for frame in _timed(frames, timer, "decode"):
        with timer.stage("detect"):
            boxes, scores = detector(frame.image)
            ids = tracker.update(boxes) if track else np.arange(len(boxes), dtype=np.int64)
        points = None
        if find_landmarks:
            with timer.stage("landmarks"):
                points = landmark_detector(frame.image, boxes)
        if len(boxes):
            with timer.stage("crop"):
                crops.append(cropper(frame.image, boxes, points))
        pending.append(FrameResult(frame.index, frame.timestamp, boxes, ids, {},
                                   frame.image if keep_images else None, scores, points,
                                   getattr(frame, "name", "")))
        if sum(len(c) for c in crops) >= batch_size or len(pending) >= batch_size:
            yield from flush()
    yield from flush()


# ---------------------------------------------------------------------------------------------
# Python API: per-face records
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class FaceRecord:
    """One face found by :func:`analyze_images`.

    Attributes:
      image: position of its image in the input; source: the image's path ("" for an array);
      face_id: index of the face in its image (largest first), or its track id with ``track=True``;
      box: float32 (4,) x0, y0, x1, y1 (x1, y1 exclusive); score: the detector's score;
      valence, arousal: None for a model without valence-arousal;
      expression: the most probable class (None without expressions); probabilities: {class: probability};
      landmarks: float32 (68, 2) or None.
    """

    image: int
    source: str
    face_id: int
    box: np.ndarray
    score: float
    valence: Optional[float] = None
    arousal: Optional[float] = None
    expression: Optional[str] = None
    probabilities: Dict[str, float] = dataclasses.field(default_factory=dict)
    landmarks: Optional[np.ndarray] = None

    def as_dict(self) -> Dict[str, Any]:
        """A flat dict with the CSV's column names (``x0`` ..., ``prob_<class>``, ``x_i`` / ``y_i``)."""
        out = {"image": self.image, "source": self.source, "face_id": self.face_id}
        out.update(zip(("x0", "y0", "x1", "y1"), (float(v) for v in self.box)))
        out.update(score=self.score, valence=self.valence, arousal=self.arousal, expression=self.expression)
        out.update({PROB_PREFIX + k: v for k, v in self.probabilities.items()})
        if self.landmarks is not None:
            out.update(zip(LANDMARK_COLUMNS, (float(v) for v in self.landmarks.T.reshape(-1))))
        return out


def read_image(path: Union[str, os.PathLike]) -> np.ndarray:
    """A photo as uint8 RGB (H, W, 3) (EXIF orientation applied, alpha dropped, grayscale expanded); raises
    FileNotFoundError / OSError naming the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path!r} does not exist")
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"OpenCV cannot read the image {path!r} (not an image, corrupt, or an unsupported format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _as_rgb(image: np.ndarray, where: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{where}: images must be uint8 (got {image.dtype}); convert [0, 1] floats with "
                         "np.clip(x * 255, 0, 255).astype(np.uint8)")
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{where}: expected an RGB (H, W, 3) or grayscale (H, W) image, got shape {image.shape}")
    return np.ascontiguousarray(image)


def _image_items(images) -> Iterator[Photo]:
    if isinstance(images, (str, os.PathLike)) and os.path.isdir(images):
        images = list_photos(images)
    elif isinstance(images, (str, os.PathLike, np.ndarray, Frame, Photo)):
        images = [images]
    for i, item in enumerate(images):
        if isinstance(item, Frame):
            yield Photo(item.index, item.timestamp, _as_rgb(item.image, f"frame {item.index}"), "")
        elif isinstance(item, Photo):
            yield item
        elif isinstance(item, (str, os.PathLike)):
            yield Photo(i, math.nan, read_image(item), os.fspath(item))
        else:
            yield Photo(i, math.nan, _as_rgb(item, f"images[{i}]"), "")


def records_of(result: FrameResult, class_names: Optional[Sequence[str]]) -> List[FaceRecord]:
    """The :class:`FaceRecord` of every face of one analysed frame."""
    p, records = result.predictions, []
    for i, face_id in enumerate(result.ids):
        record = FaceRecord(int(result.index), result.name, int(face_id), np.asarray(result.boxes[i], np.float32),
                            float(result.scores[i]) if result.scores is not None else math.nan)
        if "valence" in p:
            record.valence, record.arousal = float(p["valence"][i]), float(p["arousal"][i])
        if class_names is not None and "expression_probabilities" in p:
            probs = p["expression_probabilities"][i]
            record.expression = class_names[int(np.argmax(probs))]
            record.probabilities = {c: float(v) for c, v in zip(class_names, probs)}
        if result.landmarks is not None:
            record.landmarks = np.asarray(result.landmarks[i], np.float32)
        records.append(record)
    return records


def analyze_images(images, model, *, adapter: Optional[ModelAdapter] = None,
                   class_names: Optional[Sequence[str]] = None, detector: Optional[FaceDetector] = None,
                   margin: Optional[float] = None, crop: str = "box", landmarks: bool = False, track: bool = False,
                   batch_size: int = 32) -> List[FaceRecord]:
    """Faces, valence-arousal and expressions of images or frames: one :class:`FaceRecord` per face found.

    Args:
      images: a path, a uint8 RGB / grayscale array or a :class:`ferkeras.face.Frame`, or an iterable of them
        (a generator streams: only a batch is held at a time), or a folder (its photos, :func:`list_photos`).
        An image without a face gives no record.
      model: a predictor, a Keras model, or a model file / folder (see :func:`load_predictor`).
      adapter, class_names: how to feed and read the model (see :class:`ModelAdapter`).
      detector, margin, crop, landmarks, batch_size: see :func:`analyze_frames`.
      track: the images are consecutive video frames: face ids follow faces across them (IoU tracker).
    """
    predictor = load_predictor(model, class_names, adapter)
    records: List[FaceRecord] = []
    for result in analyze_frames(_image_items(images), predictor, detector, None, margin, batch_size, track=track,
                                 crop=crop, landmarks=landmarks):
        records.extend(records_of(result, predictor.class_names))
    return records


# ---------------------------------------------------------------------------------------------
# Outputs: CSV rows, annotation, plots
# ---------------------------------------------------------------------------------------------

def csv_columns(class_names: Optional[Sequence[str]], photos: bool = False, landmarks: bool = False) -> List[str]:
    """The CSV header for a model with these expression classes (None: valence-arousal only)."""
    columns = list(PHOTO_COLUMNS if photos else BASE_COLUMNS)
    if class_names is not None:
        columns += ["expression"] + [PROB_PREFIX + c for c in class_names]
    if landmarks:
        columns += list(LANDMARK_COLUMNS)
    return columns


def _fmt(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.9g}"


def frame_rows(result: FrameResult, class_names: Optional[Sequence[str]], photos: bool = False,
               landmarks: bool = False) -> List[list]:
    """The CSV rows of one frame / photo: one per face, or one with only frame and time / file when there is
    none."""
    width = len(csv_columns(class_names, photos, landmarks))
    head = [result.name] if photos else [result.index, _fmt(result.timestamp)]
    if not len(result.ids):
        return [head + [""] * (width - len(head))]
    rows = []
    for record in records_of(result, class_names):
        row = head + [record.face_id] + [_fmt(float(v)) for v in record.box] + [_fmt(record.score)]
        row += [_fmt(record.valence), _fmt(record.arousal)] if record.valence is not None else ["", ""]
        if class_names is not None:
            probs = [record.probabilities.get(c, math.nan) for c in class_names]
            row += [record.expression or ""] + [_fmt(v) for v in probs]
        if landmarks:
            points = record.landmarks if record.landmarks is not None else np.full((NUM_LANDMARKS, 2), np.nan)
            row += [_fmt(float(v)) for v in points.T.reshape(-1)]
        rows.append(row)
    return rows


def face_label(record: FaceRecord) -> str:
    """``0 happy 87% V +0.12 A -0.34``: a face's id, top expression and valence-arousal (one line)."""
    parts = [str(record.face_id)]
    if record.expression is not None:
        parts.append(f"{record.expression} {100 * record.probabilities[record.expression]:.0f}%")
    if record.valence is not None:
        parts.append(f"V {record.valence:+.2f} A {record.arousal:+.2f}")
    return " ".join(parts)


# Label colours by face id (RGB; matplotlib's tab10, light enough for black text).
LABEL_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                 (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def annotate(result: FrameResult, class_names: Optional[Sequence[str]] = None) -> np.ndarray:
    """The frame / photo with each face's box in its id's colour, its landmarks when found, and a label above the
    box (below when there is no room): ``<id> <expression> <p>%`` and ``V +0.12 A -0.34``.  RGB uint8; line widths
    and text grow with the image."""
    h, w = result.image.shape[:2]
    thickness, text_thickness = max(2, int(round(min(h, w) / 400))), max(1, int(round(min(h, w) / 800)))
    canvas = draw_faces(result.image, None, result.landmarks, thickness=max(1, thickness // 2))
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, min(h, w) / 1100)
    for record in records_of(result, class_names):
        colour = LABEL_COLOURS[record.face_id % len(LABEL_COLOURS)]
        x0, y0, x1, y1 = (int(round(float(v))) for v in record.box)
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), colour, thickness)
        lines = [str(record.face_id)]
        if record.expression is not None:
            lines[0] += f" {record.expression} {100 * record.probabilities[record.expression]:.0f}%"
        if record.valence is not None:
            lines.append(f"V {record.valence:+.2f} A {record.arousal:+.2f}")
        sizes = [cv2.getTextSize(line, font, font_scale, text_thickness) for line in lines]
        step = max(th + base for (_, th), base in sizes) + 2
        height, width = step * len(lines), max(tw for (tw, _), _ in sizes) + 4
        top = y0 - height if y0 - height >= 0 else min(y1, h - height)
        left = min(max(x0, 0), max(w - width, 0))
        cv2.rectangle(canvas, (left, top), (left + width, top + height), colour, -1)
        for k, line in enumerate(lines):
            baseline = top + (k + 1) * step - sizes[k][1] - 1
            cv2.putText(canvas, line, (left + 2, baseline), font, font_scale, (255, 255, 255), text_thickness,
                        cv2.LINE_AA)
    return canvas


def read_va_csv(csv_path: str) -> Dict[int, np.ndarray]:
    """The CSV's valence-arousal per face id: {id: float64 (n, 4) rows of frame, time, valence, arousal}."""
    series: Dict[int, list] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            if row["face_id"] == "" or row["valence"] == "":
                continue
            series.setdefault(int(row["face_id"]), []).append(
                [float(row["frame"]), float(row["time"] or "nan"), float(row["valence"]), float(row["arousal"])])
    return {k: np.asarray(v, np.float64) for k, v in sorted(series.items())}


def read_expression_csv(csv_path: str) -> Tuple[List[str], Dict[int, np.ndarray]]:
    """The CSV's class names and expression probabilities per face id: {id: float64 (n, 2 + C) rows of frame,
    time, probabilities}."""
    series: Dict[int, list] = {}
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        names = [c[len(PROB_PREFIX):] for c in reader.fieldnames or [] if c.startswith(PROB_PREFIX)]
        for row in reader:
            if row["face_id"] == "" or not names or row[PROB_PREFIX + names[0]] == "":
                continue
            series.setdefault(int(row["face_id"]), []).append(
                [float(row["frame"]), float(row["time"] or "nan")] + [float(row[PROB_PREFIX + c]) for c in names])
    return names, {k: np.asarray(v, np.float64) for k, v in sorted(series.items())}


def _frame_span(csv_path: str) -> Tuple[np.ndarray, bool]:
    """(frame, time) of every analysed frame, with or without a face, and whether all have times."""
    with open(csv_path, newline="") as f:
        span = np.array([[float(r["frame"]), float(r["time"] or "nan")] for r in csv.DictReader(f)]).reshape(-1, 2)
    return span, len(span) > 0 and bool(np.isfinite(span[:, 1]).all())


def _segments(frames: np.ndarray) -> List[slice]:
    """Runs of a face's rows without a gap of more than 3 analysed-frame steps."""
    step = np.median(np.diff(frames)) if len(frames) > 1 else 1.0
    cuts = [0] + list(np.flatnonzero(np.diff(frames) > 3 * step) + 1) + [len(frames)]
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def _set_span(ax, span: np.ndarray, use_time: bool):
    ax.set_xlabel("time (s)" if use_time else "frame")
    if len(span) > 1:
        x = span[:, 1] if use_time else span[:, 0]
        pad = 0.02 * (x.max() - x.min())
        ax.set_xlim(x.min() - pad, x.max() + pad)


def _save(fig: Figure, png_path: str) -> str:
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    fig.savefig(png_path)
    logger.info("wrote %s", png_path)
    return png_path


def plot_va_timeline(csv_path: str, png_path: str, title: str = "") -> str:
    """Valence and arousal over time (two panels, one line per face id) from an analysis CSV; saves a PNG.

    The x axis is the time in seconds, or the frame index when the CSV has no times, and spans every analysed
    frame (faces or not).  A face's line breaks where it was not seen for more than a few analysed frames.
    """
    series = read_va_csv(csv_path)
    span, use_time = _frame_span(csv_path)
    fig = Figure(figsize=(10, 5.5), dpi=100)
    axes = fig.subplots(2, 1, sharex=True)
    for face_id, s in series.items():
        x = s[:, 1] if use_time else s[:, 0]
        gaps = [seg.start for seg in _segments(s[:, 0])[1:]]
        for k, (ax, column) in enumerate(zip(axes, (2, 3))):
            xs, ys = np.insert(x, gaps, np.nan), np.insert(s[:, column], gaps, np.nan)
            ax.plot(xs, ys, "-", marker="." if len(span) < 60 else None, label=f"face {face_id}" if k == 0 else None,
                    color=f"C{face_id % 10}")
    for ax, name in zip(axes, ("valence", "arousal")):
        ax.set_ylabel(name)
        ax.set_ylim(-1.05, 1.05)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.grid(alpha=0.3)
    _set_span(axes[-1], span, use_time)
    if series:
        axes[0].legend(fontsize=8, loc="upper right")
    else:
        axes[0].text(0.5, 0.5, "no face with valence-arousal predictions", transform=axes[0].transAxes, ha="center")
    fig.suptitle(title or os.path.basename(csv_path))
    return _save(fig, png_path)


def plot_expression_timeline(csv_path: str, png_path: str, title: str = "", max_faces: int = 4) -> str:
    """Expression probabilities over time from an analysis CSV: one stacked-area panel per face id (the
    ``max_faces`` ids seen in most frames), one colour per class; saves a PNG.

    The x axis is as in :func:`plot_va_timeline`; a face's areas break where it was not seen for a while.
    """
    names, series = read_expression_csv(csv_path)
    span, use_time = _frame_span(csv_path)
    shown = sorted(sorted(series, key=lambda k: -len(series[k]))[:max_faces])
    fig = Figure(figsize=(10, 1.2 + 2.2 * max(len(shown), 1)), dpi=100)
    axes = np.atleast_1d(fig.subplots(max(len(shown), 1), 1, sharex=True, squeeze=False)[:, 0])
    colours = [f"C{i % 10}" for i in range(len(names))]
    for ax, face_id in zip(axes, shown):
        s = series[face_id]
        x = s[:, 1] if use_time else s[:, 0]
        half = 0.5 * (float(np.median(np.diff(x))) if len(x) > 1 else 1.0)
        for seg in _segments(s[:, 0]):
            xs, ps = x[seg], s[seg, 2:]
            if len(xs) == 1:  # a face seen in one frame only: a strip one frame step wide
                xs, ps = np.array([xs[0] - half, xs[0] + half]), np.repeat(ps, 2, axis=0)
            ax.stackplot(xs, ps.T, colors=colours, linewidth=0)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"face {face_id}")
    if shown:
        handles = [_legend_patch(colours[c]) for c in range(len(names))]
        fig.legend(handles, names, loc="upper right", ncol=min(len(names), 8), fontsize=8)
    else:
        axes[0].text(0.5, 0.5, "no face with expression predictions", transform=axes[0].transAxes, ha="center")
    _set_span(axes[-1], span, use_time)
    fig.suptitle(title or os.path.basename(csv_path), x=0.02, ha="left")
    return _save(fig, png_path)


def _legend_patch(colour: str):
    """A legend patch of ``colour`` (matplotlib's Patch)."""
    from matplotlib.patches import Patch

    return Patch(color=colour)


# ---------------------------------------------------------------------------------------------
# Files: videos and photos
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class VideoAnalysis:
    """What :func:`analyze_video` did: counts, face ids, output files and the stage timing."""

    frames: int
    rows: int
    faces: int
    face_ids: List[int]
    csv_path: str
    plot_path: Optional[str]
    timer: StageTimer
    expression_plot_path: Optional[str] = None

    @property
    def frames_per_second(self) -> float:
        return self.frames / max(self.timer.total, 1e-9)


def analyze_video(source: str, model, csv_path: str, *, plot_path: Optional[str] = None,
                  expression_plot_path: Optional[str] = None, detector: Optional[FaceDetector] = None,
                  tracker: Optional[IoUTracker] = None, every_n: int = 1, max_frames: Optional[int] = None,
                  fps: Optional[float] = None, margin: Optional[float] = None, crop: str = "box",
                  landmarks: bool = False, batch_size: int = 32, class_names: Optional[Sequence[str]] = None,
                  adapter: Optional[ModelAdapter] = None, annotated_video: Optional[str] = None,
                  annotated_frames: Optional[str] = None, progress: bool = True) -> VideoAnalysis:
    """Analyses a video file or a folder of frames; writes the CSV (and plots / annotated output); streams.

    Args:
      source: a video file, or a folder of frame images (see :func:`ferkeras.face.iter_frames`).
      model: see :func:`load_predictor`; class_names, adapter: how to feed and read it (:class:`ModelAdapter`).
      csv_path: the CSV to write (columns in the module docstring).
      plot_path: a PNG of valence and arousal over time per face id (:func:`plot_va_timeline`); written only for
        a model with valence-arousal.
      expression_plot_path: a PNG of the expression probabilities over time (:func:`plot_expression_timeline`);
        written only for a model with expressions.
      detector, tracker, margin, crop, landmarks, batch_size: see :func:`analyze_frames`.
      every_n: analyse every n-th frame; max_frames: stop after this many analysed frames.
      fps: frame rate for the times of a folder of frames (a video file's own rate when None).
      annotated_video: write the annotated frames as this video (mp4v codec; fps = source fps / every_n).
      annotated_frames: write the annotated frames as ``<index>.png`` PNGs into this folder.
      progress: show a tqdm progress bar.

    Raises FileNotFoundError / OSError naming ``source`` if it cannot be read, and the errors of
    :func:`load_predictor` for ``model``.
    """
    info = video_info(source, fps)  # fails early, naming the file
    predictor = load_predictor(model, class_names, adapter)
    names = predictor.class_names
    with_landmarks = bool(landmarks) or crop == "aligned"
    timer = StageTimer()
    keep = annotated_video is not None or annotated_frames is not None
    total = max(0, math.ceil(info.frame_count / max(int(every_n), 1)))
    if max_frames is not None:
        total = min(total, int(max_frames))
    frames = iter_frames(source, step=every_n, max_frames=max_frames, fps=fps)
    results = analyze_frames(frames, predictor, detector, tracker, margin, batch_size, keep, timer, crop=crop,
                             landmarks=with_landmarks)
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=total or None, unit="frame", desc=os.path.basename(os.fspath(source)))
    if annotated_frames:
        os.makedirs(annotated_frames, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
    writer_video = None
    n_frames = n_rows = n_faces = 0
    ids = set()
    try:
        with open(csv_path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(csv_columns(names, landmarks=with_landmarks))
            for result in results:
                with timer.stage("write"):
                    rows = frame_rows(result, names, landmarks=with_landmarks)
                    writer.writerows(rows)
                    n_frames += 1
                    n_rows += len(rows)
                    n_faces += len(result.ids)
                    ids.update(int(i) for i in result.ids)
                    if keep:
                        bgr = cv2.cvtColor(annotate(result, names), cv2.COLOR_RGB2BGR)
                        if annotated_frames:
                            cv2.imwrite(os.path.join(annotated_frames, f"{result.index:06d}.png"), bgr)
                        if annotated_video:
                            if writer_video is None:
                                rate = (info.fps if math.isfinite(info.fps) else 25.0) / max(int(every_n), 1)
                                writer_video = cv2.VideoWriter(annotated_video, cv2.VideoWriter_fourcc(*"mp4v"),
                                                               rate, (bgr.shape[1], bgr.shape[0]))
                                if not writer_video.isOpened():
                                    raise OSError(f"OpenCV cannot write the video {annotated_video!r}")
                            writer_video.write(bgr)
    finally:
        if writer_video is not None:
            writer_video.release()
    title = os.path.basename(os.fspath(source))
    with timer.stage("write"):
        plot_path = plot_va_timeline(csv_path, plot_path, title=title) if plot_path and predictor.has_va else None
        expression_plot_path = (plot_expression_timeline(csv_path, expression_plot_path, title=title)
                                if expression_plot_path and names is not None else None)
    logger.info("%s: %d frames, %d faces, face ids %s, %.1f frames/s", source, n_frames, n_faces, sorted(ids),
                n_frames / max(timer.total, 1e-9))
    return VideoAnalysis(n_frames, n_rows, n_faces, sorted(ids), csv_path, plot_path, timer, expression_plot_path)


def list_photos(source: Union[str, os.PathLike]) -> List[str]:
    """The photo itself, or a folder's images (:data:`ferkeras.face.video.IMAGE_EXTENSIONS`, not recursive,
    sorted by name); raises FileNotFoundError naming ``source`` when there is none."""
    source = os.fspath(source)
    if os.path.isfile(source):
        return [source]
    if not os.path.isdir(source):
        raise FileNotFoundError(f"{source!r} does not exist")
    found = sorted(n for n in os.listdir(source) if n.lower().endswith(IMAGE_EXTENSIONS))
    if not found:
        raise FileNotFoundError(f"folder {source!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return [os.path.join(source, n) for n in found]


def is_photo(path: Union[str, os.PathLike]) -> bool:
    """Whether a file's extension is an image's (:data:`ferkeras.face.video.IMAGE_EXTENSIONS`)."""
    return os.fspath(path).lower().endswith(IMAGE_EXTENSIONS)


@dataclasses.dataclass
class PhotoAnalysis:
    """What :func:`analyze_photos` did: photos read, faces found, skipped files, output files, stage timing."""

    photos: int
    rows: int
    faces: int
    skipped: SkipCounter
    csv_path: str
    annotated: List[str]
    timer: StageTimer

    @property
    def photos_per_second(self) -> float:
        return self.photos / max(self.timer.total, 1e-9)


def _read_photos(paths: Sequence[str], skipped: SkipCounter) -> Iterator[Photo]:
    for i, path in enumerate(paths):
        try:
            image = read_image(path)
        except OSError as e:
            skipped.skip("unreadable image", f"{path} ({e})")
            continue
        skipped.ok()
        yield Photo(i, math.nan, image, path)


def analyze_photos(source, model, csv_path: str, *, annotated_dir: Optional[str] = None,
                   detector: Optional[FaceDetector] = None, margin: Optional[float] = None, crop: str = "box",
                   landmarks: bool = False, batch_size: int = 32, class_names: Optional[Sequence[str]] = None,
                   adapter: Optional[ModelAdapter] = None, progress: bool = True) -> PhotoAnalysis:
    """Analyses a photo, a folder of photos or a list of photo paths: writes the CSV and annotated pictures.

    Args:
      source: a photo file, a folder (its images, :func:`list_photos`) or a sequence of paths.
      model, class_names, adapter: see :func:`load_predictor`.
      csv_path: the CSV (``file, face_id, ...``; module docstring); a photo without a face is one row with only
        ``file``.
      annotated_dir: write each photo with its boxes, ids, expression and valence-arousal drawn
        (:func:`annotate`) as ``<annotated_dir>/<photo name without extension>_annotated.jpg`` (with the
        extension when two photos share a name).
      detector, margin, crop, landmarks, batch_size: see :func:`analyze_frames` (no tracking: ids are 0 .. N-1
        per photo, largest face first).
      progress: show a tqdm progress bar.

    Unreadable images are skipped and counted (``result.skipped``, logged with the first one).
    """
    paths = list_photos(source) if isinstance(source, (str, os.PathLike)) else [os.fspath(p) for p in source]
    predictor = load_predictor(model, class_names, adapter)
    names = predictor.class_names
    with_landmarks = bool(landmarks) or crop == "aligned"
    timer, skipped = StageTimer(), SkipCounter("photos")
    results = analyze_frames(_read_photos(paths, skipped), predictor, detector, None, margin, batch_size,
                             annotated_dir is not None, timer, track=False, crop=crop, landmarks=with_landmarks)
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=len(paths), unit="photo")
    if annotated_dir:
        os.makedirs(annotated_dir, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
    n_photos = n_rows = n_faces = 0
    annotated: List[str] = []
    used_stems = set()
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(csv_columns(names, photos=True, landmarks=with_landmarks))
        for result in results:
            with timer.stage("write"):
                rows = frame_rows(result, names, photos=True, landmarks=with_landmarks)
                writer.writerows(rows)
                n_photos += 1
                n_rows += len(rows)
                n_faces += len(result.ids)
                if annotated_dir:
                    stem = os.path.splitext(os.path.basename(result.name))[0]
                    if stem in used_stems:  # a.jpg and a.png: a_annotated.jpg and a.png_annotated.jpg
                        stem = os.path.basename(result.name)
                    used_stems.add(stem)
                    out = os.path.join(annotated_dir, f"{stem}_annotated.jpg")
                    bgr = cv2.cvtColor(annotate(result, names), cv2.COLOR_RGB2BGR)
                    if not cv2.imwrite(out, bgr, [cv2.IMWRITE_JPEG_QUALITY, 92]):
                        raise OSError(f"OpenCV cannot write {out!r}")
                    annotated.append(out)
    if skipped.skipped:
        logger.warning(skipped.summary())
    logger.info("%d photos, %d faces, %.2f photos/s", n_photos, n_faces, n_photos / max(timer.total, 1e-9))
    return PhotoAnalysis(n_photos, n_rows, n_faces, skipped, csv_path, annotated, timer)


def analyze(source, model, out_dir: str, *, name: Optional[str] = None, as_video: Optional[bool] = None,
            detector: Optional[FaceDetector] = None, tracker: Optional[IoUTracker] = None,
            margin: Optional[float] = None, crop: str = "box", landmarks: bool = False, batch_size: int = 32,
            class_names: Optional[Sequence[str]] = None, adapter: Optional[ModelAdapter] = None,
            every_n: int = 1, max_frames: Optional[int] = None, fps: Optional[float] = None,
            annotate_video: bool = False, annotate_frames: bool = False, annotate_photos: bool = True,
            progress: bool = True) -> Union[PhotoAnalysis, VideoAnalysis]:
    """Analyses a photo, a folder of photos, a video or a folder of frames; every output goes under ``out_dir``.

    Outputs, ``<name>`` = ``name`` or the source's file / folder name without extension:

    * photos: ``<name>.csv`` and ``<photo name>_annotated.jpg`` per photo (unless ``annotate_photos`` is False);
    * video: ``<name>.csv``, ``<name>_va.png`` (model with valence-arousal), ``<name>_expression.png`` (model with
      expressions), ``<name>_annotated.mp4`` with ``annotate_video``, ``<name>_frames/<frame>.png`` with
      ``annotate_frames``.

    A file with an image extension is a photo, another file a video; a folder holds photos unless ``as_video``
    (or ``fps`` is given), then its images are the frames of a video in natural order.  The other arguments are
    those of :func:`analyze_photos` and :func:`analyze_video`.
    """
    path = os.fspath(source)
    if not os.path.exists(path):
        raise FileNotFoundError(f"input {path!r} does not exist")
    if as_video is None:
        as_video = (not is_photo(path)) if os.path.isfile(path) else fps is not None
    name = name or os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
    stem = os.path.join(out_dir, name)
    common = dict(detector=detector, margin=margin, crop=crop, landmarks=landmarks, batch_size=batch_size,
                  class_names=class_names, adapter=adapter, progress=progress)
    if not as_video:
        return analyze_photos(path, model, stem + ".csv", annotated_dir=out_dir if annotate_photos else None,
                              **common)
    return analyze_video(path, model, stem + ".csv", plot_path=stem + "_va.png",
                         expression_plot_path=stem + "_expression.png", tracker=tracker, every_n=every_n,
                         max_frames=max_frames, fps=fps,
                         annotated_video=stem + "_annotated.mp4" if annotate_video else None,
                         annotated_frames=stem + "_frames" if annotate_frames else None, **common)


__all__ = ("AdaptedPredictor", "BASE_COLUMNS", "CROPS", "FaceCropper", "FaceRecord", "FrameResult",
           "KerasPredictor", "LANDMARK_COLUMNS", "ModelAdapter", "OUTPUT_KINDS", "PHOTO_COLUMNS", "PROB_PREFIX",
           "Photo", "PhotoAnalysis", "Predictor", "SCALINGS", "STAGES", "SavedModelPredictor", "SignaturePredictor",
           "StageTimer", "VideoAnalysis", "analyze", "analyze_frames", "analyze_images", "analyze_photos",
           "analyze_video", "annotate", "choose_outputs", "csv_columns", "default_class_names", "default_margin",
           "LABEL_COLOURS", "face_label", "frame_rows", "is_photo", "list_photos", "load_predictor", "looks_like_probabilities",
           "plot_expression_timeline", "plot_va_timeline", "read_expression_csv", "read_image", "read_va_csv",
           "records_of", "scale_pixels")
