"""Inference with a trained ferkeras model on faces in the wild: valence, arousal and expression of every face in a
video or a folder of photos / frames, frame by frame, as a CSV, a plot and annotated frames.

The analysis streams: frames are decoded one at a time (:func:`ferkeras.face.iter_frames`), faces are found
(:class:`ferkeras.face.FaceDetector`) and given persistent ids (:class:`ferkeras.face.IoUTracker`), each face is
cut exactly as the training pipelines cut a record's face box (:func:`ferkeras.data.image_ops.square_crop_box`
with ``margin``, then :func:`ferkeras.data.image_ops.crop_and_resize_face` to the model's input side) and the crops
of consecutive frames are predicted together in batches.  At most ``batch_size`` frames (and their crops) wait for a
batch at any time, so memory does not grow with the video.

Crops are quantised to uint8 (``round(255 x)``) before inference, whichever the model: an exported SavedModel's
``uint8_images`` signature takes uint8 images, and a Keras model then gets the very same pixels (``/ 255``), so
the two paths agree to float rounding.  (The training pipelines feed the float crop; quantising moves a pixel by
at most 0.5 / 255.)

Models (:func:`load_predictor`): an export of :func:`ferkeras.export.export_for_serving`
(``saved_models/<name>/<version>`` or ``saved_models/<name>``, the newest version), a ``.keras`` file or run
directory (:func:`ferkeras.export.load_trained_model`), or an in-memory Keras model (:class:`KerasPredictor`).

CSV columns: ``frame, time, face_id, x0, y0, x1, y1, valence, arousal``, then for a model with an expression
head ``expression`` (the most probable class) and ``prob_<class>`` per class.  A frame without a face is one row
with only ``frame`` and ``time`` filled; a frame with N faces is N rows.  ``time`` is empty when a folder of frames
has no frame rate.  Boxes are the detector's (x1, y1 exclusive, may reach past the frame border).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import math
import os
import time
from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Union

import cv2
import keras
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from ferkeras import export as fexport
from ferkeras.data.image_ops import crop_and_resize_face, square_crop_box
from ferkeras.face import FaceDetector, IoUTracker, draw_faces, iter_frames, video_info

logger = logging.getLogger("ferkeras.inference")

STAGES = ("decode", "detect", "crop", "infer", "write")
BASE_COLUMNS = ("frame", "time", "face_id", "x0", "y0", "x1", "y1", "valence", "arousal")
PROB_PREFIX = "prob_"


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

    def summary(self, frames: int) -> str:
        """One line per stage: seconds, share of the total and milliseconds per frame."""
        total = self.total or 1.0
        lines = [f"{frames} frames in {self.total:.2f} s ({frames / total:.1f} frames/s)"]
        for stage, seconds in self.seconds.items():
            lines.append(f"  {stage:7s} {seconds:8.2f} s {100 * seconds / total:5.1f} %  "
                         f"{1000 * seconds / max(frames, 1):7.2f} ms/frame")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------

def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class KerasPredictor:
    """A ferkeras Keras task model (the outputs :mod:`ferkeras.export` understands) on uint8 face crops.

    Args:
      model: takes float32 (B, S, S, 3) in [0, 1]; returns ``{"va": (B, 2), "expression": (B, C) logits}`` (one
        or both) or a (B, 2) valence-arousal tensor.
      class_names: names of the expression logits; the 8 of :data:`ferkeras.data.schema.EXPRESSIONS` when
        None and the head has 8 classes, else ``class_0``, ``class_1``, ...
    """

    def __init__(self, model: keras.Model, class_names: Optional[Sequence[str]] = None):
        self.model = model
        self.input_size = fexport.square_side(fexport.model_image_size(model))
        spec = tf.TensorSpec((None, self.input_size, self.input_size, 3), tf.float32)
        self._call = tf.function(lambda x: fexport.split_outputs(model(x, training=False), model.name),
                                 input_signature=[spec])
        probe = self._call(tf.zeros((1, self.input_size, self.input_size, 3)))
        self.has_va = "va" in probe
        self.class_names = None
        if "expression" in probe:
            num_classes = int(probe["expression"].shape[-1])
            self.class_names = _class_names(class_names, num_classes, model.name)

    def __call__(self, crops: np.ndarray) -> Dict[str, np.ndarray]:
        """uint8 crops (B, S, S, 3) -> ``valence``, ``arousal`` (B,) and / or ``expression_probabilities`` (B, C)."""
        raw = self._call(tf.cast(tf.convert_to_tensor(crops), tf.float32) / 255.0)
        out = {}
        if "va" in raw:
            va = raw["va"].numpy().astype(np.float32)
            out["valence"], out["arousal"] = va[:, 0], va[:, 1]
        if "expression" in raw:
            out["expression_probabilities"] = _softmax(raw["expression"].numpy().astype(np.float64)).astype(
                np.float32)
        return out


def _class_names(class_names: Optional[Sequence[str]], num_classes: int, model_name: str) -> List[str]:
    if class_names is None:
        from ferkeras.data.schema import EXPRESSIONS

        if num_classes == len(EXPRESSIONS):
            return list(EXPRESSIONS)
        logger.warning("model %s: no class names for its %d expression classes; using class_0 ...",
                       model_name, num_classes)
        return [f"class_{i}" for i in range(num_classes)]
    class_names = [str(c) for c in class_names]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names {class_names} for the {num_classes} expression logits "
                         f"of model {model_name!r}")
    return class_names


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
        outputs = self._signature.structured_outputs
        self.has_va = "valence" in outputs
        self.class_names = None
        if "expression_probabilities" in outputs:
            self.class_names = [c.decode() for c in loaded.class_names.numpy()]

    def __call__(self, crops: np.ndarray) -> Dict[str, np.ndarray]:
        """uint8 crops (B, S, S, 3) -> ``valence``, ``arousal`` (B,) and / or ``expression_probabilities`` (B, C)."""
        raw = self._signature(**{fexport.UINT8_INPUT: tf.convert_to_tensor(crops, tf.uint8)})
        return {k: v.numpy() for k, v in raw.items() if k != "expression"}


Predictor = Union[KerasPredictor, SavedModelPredictor]


def _saved_model_version(path: str) -> Optional[str]:
    """``path`` if it is a SavedModel folder, its newest version if it is ``<export_dir>/<name>``, else None."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = fexport.existing_versions(path)
    if versions and os.path.isfile(os.path.join(path, str(versions[-1]), "saved_model.pb")):
        return os.path.join(path, str(versions[-1]))
    return None


def load_predictor(model: Union[str, os.PathLike, keras.Model], class_names: Optional[Sequence[str]] = None
                   ) -> Predictor:
    """A predictor from an in-memory Keras model, a ``.keras`` file / run directory, or an exported SavedModel.

    A SavedModel is recognised by its ``saved_model.pb`` (in ``model`` or in its newest integer version folder);
    ``class_names`` then come from the export.  For Keras models they default to the run's ``result.json``.
    Raises FileNotFoundError / ValueError naming ``model`` when it is none of these.
    """
    if isinstance(model, keras.Model):
        return KerasPredictor(model, class_names)
    path = os.fspath(model)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model {path} does not exist")
    saved = _saved_model_version(path) if os.path.isdir(path) else None
    if saved is not None:
        if class_names is not None:
            logger.warning("class names of the SavedModel %s are its own; class_names ignored", saved)
        logger.info("SavedModel %s", saved)
        return SavedModelPredictor(saved)
    try:
        model_file = fexport.resolve_model_file(path)
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"model {path} is neither an exported SavedModel (no saved_model.pb in it or in a "
                         f"version folder) nor a .keras file or run directory ({e})") from e
    keras_model, run_names, model_file = fexport.load_trained_model(model_file)
    logger.info("Keras model %s", model_file)
    return KerasPredictor(keras_model, class_names if class_names is not None else run_names)


# ---------------------------------------------------------------------------------------------
# Crops
# ---------------------------------------------------------------------------------------------

class FaceCropper:
    """Square face crops as the training pipelines make them, quantised to uint8 (S, S, 3)."""

    def __init__(self, size: int, margin: float = 0.2):
        self.size, self.margin = int(size), float(margin)
        self._crop = tf.function(self._crop_graph, input_signature=[
            tf.TensorSpec((None, None, 3), tf.uint8), tf.TensorSpec((None, 4), tf.float32)])

    def _crop_graph(self, image, boxes):
        shape = tf.shape(image)

        def one(box):
            face, _ = crop_and_resize_face(image, square_crop_box(box, shape[0], shape[1], self.margin), self.size)
            return tf.cast(tf.round(face * 255.0), tf.uint8)

        return tf.map_fn(one, boxes, fn_output_signature=tf.TensorSpec((self.size, self.size, 3), tf.uint8))

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """uint8 RGB image (H, W, 3) and boxes (N, 4) -> uint8 crops (N, S, S, 3)."""
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        return self._crop(tf.convert_to_tensor(image), tf.convert_to_tensor(boxes, tf.float32)).numpy()


# ---------------------------------------------------------------------------------------------
# The streaming analysis
# ---------------------------------------------------------------------------------------------

class FrameResult(NamedTuple):
    """One analysed frame: ``index``, ``timestamp`` (s, NaN if unknown), ``boxes`` (N, 4), track ``ids`` (N,),
    ``predictions`` (``valence``, ``arousal`` (N,) / ``expression_probabilities`` (N, C)) and the ``image``
    (None unless kept)."""

    index: int
    timestamp: float
    boxes: np.ndarray
    ids: np.ndarray
    predictions: Dict[str, np.ndarray]
    image: Optional[np.ndarray]


def _timed(items: Iterable, timer: StageTimer, stage: str) -> Iterator:
    iterator = iter(items)
    while True:
        with timer.stage(stage):
            item = next(iterator, None)
        if item is None:
            return
        yield item


def analyze_frames(frames: Iterable, predictor: Predictor, detector: Optional[FaceDetector] = None,
                   tracker: Optional[IoUTracker] = None, margin: float = 0.2, batch_size: int = 32,
                   keep_images: bool = False, timer: Optional[StageTimer] = None) -> Iterator[FrameResult]:
    """Detects, tracks, crops and predicts the faces of ``frames``; yields a :class:`FrameResult` per frame, in order.

    Args:
      frames: :class:`ferkeras.face.Frame` items (e.g. :func:`ferkeras.face.iter_frames`).
      predictor: a :class:`KerasPredictor` or :class:`SavedModelPredictor` (see :func:`load_predictor`).
      detector, tracker: default ``FaceDetector("hog", upsample=0)`` and ``IoUTracker()``.
      margin: face box widening on each side, as in training (:func:`ferkeras.data.pipeline.build_dataset`).
      batch_size: crops are predicted in batches of up to this many; results of a frame are yielded once its
        batch has run, and at most ``batch_size`` frames wait at a time.
      keep_images: attach each frame's image to its result (for annotation).
      timer: accumulates the detect, crop and infer stages (and decode, as the time spent waiting on ``frames``).
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    detector = detector or FaceDetector("hog", upsample=0)
    tracker = tracker or IoUTracker()
    timer = timer or StageTimer()
    cropper = FaceCropper(predictor.input_size, margin)
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
            boxes, _ = detector(frame.image)
            ids = tracker.update(boxes)
        if len(boxes):
            with timer.stage("crop"):
                crops.append(cropper(frame.image, boxes))
        pending.append(FrameResult(frame.index, frame.timestamp, boxes, ids, {},
                                   frame.image if keep_images else None))
        if sum(len(c) for c in crops) >= batch_size or len(pending) >= batch_size:
            yield from flush()
    yield from flush()


# ---------------------------------------------------------------------------------------------
# Outputs: CSV rows, annotation, plot
# ---------------------------------------------------------------------------------------------

def csv_columns(class_names: Optional[Sequence[str]]) -> List[str]:
    """The CSV header for a model with these expression classes (None: valence-arousal only)."""
    columns = list(BASE_COLUMNS)
    if class_names is not None:
        columns += ["expression"] + [PROB_PREFIX + c for c in class_names]
    return columns


def _fmt(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.9g}"


def frame_rows(result: FrameResult, class_names: Optional[Sequence[str]]) -> List[list]:
    """The CSV rows of one frame: one per face, or one with only frame and time when there is none."""
    width = len(csv_columns(class_names))
    head = [result.index, _fmt(result.timestamp)]
    if not len(result.ids):
        return [head + [""] * (width - 2)]
    rows = []
    p = result.predictions
    for i, face_id in enumerate(result.ids):
        row = head + [int(face_id)] + [_fmt(float(v)) for v in result.boxes[i]]
        row += [_fmt(float(p["valence"][i])), _fmt(float(p["arousal"][i]))] if "valence" in p else ["", ""]
        if class_names is not None:
            probs = p["expression_probabilities"][i]
            row += [class_names[int(np.argmax(probs))]] + [_fmt(float(v)) for v in probs]
        rows.append(row)
    return rows


def annotate(result: FrameResult, class_names: Optional[Sequence[str]] = None) -> np.ndarray:
    """The frame with boxes, face ids and ``V +0.12 A -0.34`` (and the top expression) drawn; RGB uint8."""
    canvas = draw_faces(result.image, result.boxes, ids=result.ids)
    p = result.predictions
    for i, box in enumerate(result.boxes):
        parts = []
        if "valence" in p:
            parts.append(f"V {p['valence'][i]:+.2f} A {p['arousal'][i]:+.2f}")
        if class_names is not None:
            parts.append(class_names[int(np.argmax(p["expression_probabilities"][i]))])
        x0, y1 = int(round(box[0])), int(round(box[3]))
        y = min(y1 + 16, canvas.shape[0] - 4)
        cv2.putText(canvas, " ".join(parts), (max(x0, 0), y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3)
        cv2.putText(canvas, " ".join(parts), (max(x0, 0), y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
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


def plot_va_timeline(csv_path: str, png_path: str, title: str = "") -> str:
    """Valence and arousal over time (two panels, one line per face id) from an analysis CSV; saves a PNG.

    The x axis is the time in seconds, or the frame index when the CSV has no times, and spans every analysed
    frame (faces or not).  A face's line breaks where it was not seen for more than a few analysed frames.
    """
    series = read_va_csv(csv_path)
    with open(csv_path, newline="") as f:  # every analysed frame, with or without a face: the x range
        span = np.array([[float(r["frame"]), float(r["time"] or "nan")] for r in csv.DictReader(f)]).reshape(-1, 2)
    use_time = len(span) > 0 and bool(np.isfinite(span[:, 1]).all())
    fig = Figure(figsize=(10, 5.5), dpi=100)
    axes = fig.subplots(2, 1, sharex=True)
    for face_id, s in series.items():
        x = s[:, 1] if use_time else s[:, 0]
        frames = s[:, 0]
        step = np.median(np.diff(frames)) if len(frames) > 1 else 1.0
        gaps = np.flatnonzero(np.diff(frames) > 3 * step) + 1
        for k, (ax, column) in enumerate(zip(axes, (2, 3))):
            xs, ys = np.insert(x, gaps, np.nan), np.insert(s[:, column], gaps, np.nan)
            ax.plot(xs, ys, "-", marker="." if len(span) < 60 else None, label=f"face {face_id}" if k == 0 else None,
                    color=f"C{face_id % 10}")
    for ax, name in zip(axes, ("valence", "arousal")):
        ax.set_ylabel(name)
        ax.set_ylim(-1.05, 1.05)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)" if use_time else "frame")
    if len(span) > 1:
        x = span[:, 1] if use_time else span[:, 0]
        pad = 0.02 * (x.max() - x.min())
        axes[-1].set_xlim(x.min() - pad, x.max() + pad)
    if series:
        axes[0].legend(fontsize=8, loc="upper right")
    else:
        axes[0].text(0.5, 0.5, "no face with valence-arousal predictions", transform=axes[0].transAxes, ha="center")
    fig.suptitle(title or os.path.basename(csv_path))
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    fig.savefig(png_path)
    logger.info("wrote %s", png_path)
    return png_path


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

    @property
    def frames_per_second(self) -> float:
        return self.frames / max(self.timer.total, 1e-9)


def analyze_video(source: str, model, csv_path: str, *, plot_path: Optional[str] = None,
                  detector: Optional[FaceDetector] = None, tracker: Optional[IoUTracker] = None,
                  every_n: int = 1, max_frames: Optional[int] = None, fps: Optional[float] = None,
                  margin: float = 0.2, batch_size: int = 32, class_names: Optional[Sequence[str]] = None,
                  annotated_video: Optional[str] = None, annotated_frames: Optional[str] = None,
                  progress: bool = True) -> VideoAnalysis:
    """Analyses a video file or a folder of frames; writes the CSV (and plot / annotated output); streams.

    Args:
      source: a video file, or a folder of frame images (see :func:`ferkeras.face.iter_frames`).
      model: a predictor, a Keras model, a ``.keras`` file / run directory, or an exported SavedModel folder
        (see :func:`load_predictor`).
      csv_path: the CSV to write (columns in the module docstring).
      plot_path: a PNG of valence and arousal over time per face id (:func:`plot_va_timeline`).
      detector, tracker, margin, batch_size: see :func:`analyze_frames`.
      every_n: analyse every n-th frame; max_frames: stop after this many analysed frames.
      fps: frame rate for the times of a folder of frames (a video file's own rate when None).
      class_names: expression class names of a Keras model (see :func:`load_predictor`).
      annotated_video: write the annotated frames as this video (mp4v codec; fps = source fps / every_n).
      annotated_frames: write the annotated frames as ``<index>.png`` PNGs into this folder.
      progress: show a tqdm progress bar.

    Raises FileNotFoundError / OSError naming ``source`` if it cannot be read, and the errors of
    :func:`load_predictor` for ``model``.
    """
    info = video_info(source, fps)  # fails early, naming the file
    predictor = model if isinstance(model, (KerasPredictor, SavedModelPredictor)) else load_predictor(
        model, class_names)
    names = predictor.class_names
    timer = StageTimer()
    keep = annotated_video is not None or annotated_frames is not None
    total = max(0, math.ceil(info.frame_count / max(int(every_n), 1)))
    if max_frames is not None:
        total = min(total, int(max_frames))
    frames = iter_frames(source, step=every_n, max_frames=max_frames, fps=fps)
    results = analyze_frames(frames, predictor, detector, tracker, margin, batch_size, keep, timer)
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
            writer.writerow(csv_columns(names))
            for result in results:
                with timer.stage("write"):
                    rows = frame_rows(result, names)
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
    if plot_path:
        with timer.stage("write"):
            plot_va_timeline(csv_path, plot_path, title=os.path.basename(os.fspath(source)))
    logger.info("%s: %d frames, %d faces, face ids %s, %.1f frames/s", source, n_frames, n_faces, sorted(ids),
                n_frames / max(timer.total, 1e-9))
    return VideoAnalysis(n_frames, n_rows, n_faces, sorted(ids), csv_path, plot_path, timer)


__all__ = ("BASE_COLUMNS", "FaceCropper", "FrameResult", "KerasPredictor", "PROB_PREFIX", "Predictor", "STAGES",
           "SavedModelPredictor", "StageTimer", "VideoAnalysis", "analyze_frames", "analyze_video", "annotate",
           "csv_columns", "frame_rows", "load_predictor", "plot_va_timeline", "read_va_csv")
