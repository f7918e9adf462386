"""Face records as sharded TFRecords of face crops: write (resumably, in parallel), parse, read back.

One ``tf.train.Example`` per face holds (all coordinates in pixels of the stored crop)::

    image/encoded    bytes   JPEG of the square face crop (box widened by ``margin``), ``crop_size`` px
                             (0 keeps the crop's own resolution)
    image/size       int64   side of the stored crop
    face/box         float x4   the face box in crop coordinates (NaN if the record had none)
    face/landmarks   float x136 68 dlib points x0, y0, x1, y1, ... in crop coordinates (NaN if absent)
    face/source_box  float x4   the cut square in the source image (maps crop points back)
    label/valence, label/arousal  float (NaN if absent);  label/expression  int64 (-1 if absent)
    meta/identity, meta/video, meta/dataset, meta/source (original path)  bytes
    meta/frame  int64 (-1);  meta/timestamp  float (NaN);  meta/classes  bytes list (the class names)

:func:`prepare` turns records into shards: shard ``i`` of ``n`` gets the
``i``-th contiguous slice of the records (so a video's frames stay together),
is written under a temporary name, renamed atomically when complete, and then
gets a ``.done.json`` marker with its counts.  A rerun with the same records
and settings (checked against ``plan.json``) skips every shard whose marker
exists, so an interrupted preparation resumes where it stopped.  Worker
processes (forked from a clean ``forkserver`` that imported this module once)
create their OpenCV/dlib objects lazily.  The summary
(records written, skips per reason - reader skips, undecodable images, no face
found, face smaller than :data:`~ferkeras.data.image_ops.MIN_FACE_SIZE` pixels, with the first
file of each reason) goes to ``summary.json`` next to the shards, with the class list.

:func:`tfrecord_dataset` reads shards into exactly the element
:mod:`ferkeras.data.pipeline` produces from raw files (:mod:`ferkeras.data.elements`).
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import hashlib
import json
import logging
import multiprocessing
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from ferkeras.data.elements import (AUTOTUNE, FACE_TOO_SMALL, REJECT_KEY, PipelineStats, check_extras,
                                    finish_pipeline, make_element, shuffled)
from ferkeras.data.image_ops import MIN_FACE_SIZE
from ferkeras.data.schema import NUM_LANDMARKS, FaceRecord
from ferkeras.face.defaults import FACE_MARGIN

logger = logging.getLogger("ferkeras.data.tfrecord")

SHARD_SUFFIX = ".tfrecord"
DONE_SUFFIX = ".done.json"
PLAN_FILE = "plan.json"
SUMMARY_FILE = "summary.json"
LANDMARK_MODES = ("keep", "dlib", "none")

# Skip reasons added by preparation (reader skips keep the reader's own reasons); FACE_TOO_SMALL (a face whose part
# inside the image is smaller than MIN_FACE_SIZE pixels) is the pipelines' reason too.
UNDECODABLE_IMAGE = "undecodable image"
NO_FACE_FOUND = "no face found"

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/size": tf.io.FixedLenFeature([], tf.int64),
    "face/box": tf.io.FixedLenFeature([4], tf.float32),
    "face/landmarks": tf.io.FixedLenFeature([NUM_LANDMARKS * 2], tf.float32),
    "face/source_box": tf.io.FixedLenFeature([4], tf.float32),
    "label/valence": tf.io.FixedLenFeature([], tf.float32),
    "label/arousal": tf.io.FixedLenFeature([], tf.float32),
    "label/expression": tf.io.FixedLenFeature([], tf.int64),
    "meta/identity": tf.io.FixedLenFeature([], tf.string),
    "meta/video": tf.io.FixedLenFeature([], tf.string),
    "meta/frame": tf.io.FixedLenFeature([], tf.int64),
    "meta/timestamp": tf.io.FixedLenFeature([], tf.float32),
    "meta/dataset": tf.io.FixedLenFeature([], tf.string),
    "meta/source": tf.io.FixedLenFeature([], tf.string),
    "meta/classes": tf.io.VarLenFeature(tf.string),
}


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------

def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() if isinstance(v, str) else v
                                                                  for v in values]))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values, np.float32).reshape(-1)))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def make_example(crop_jpeg: bytes, crop_size: int, record: FaceRecord, box, landmarks, source_box,
                 classes: Sequence[str]) -> tf.train.Example:
    """The Example for one face; ``box``/``landmarks`` already in crop coordinates."""
    feature = {
        "image/encoded": _bytes([crop_jpeg]), "image/size": _ints([crop_size]),
        "face/box": _floats(box), "face/landmarks": _floats(landmarks), "face/source_box": _floats(source_box),
        "label/valence": _floats([record.valence]), "label/arousal": _floats([record.arousal]),
        "label/expression": _ints([record.expression]),
        "meta/identity": _bytes([record.identity]), "meta/video": _bytes([record.video]),
        "meta/frame": _ints([record.frame]), "meta/timestamp": _floats([record.timestamp]),
        "meta/dataset": _bytes([record.dataset]), "meta/source": _bytes([record.image_path]),
        "meta/classes": _bytes(classes),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def parse_example(serialized) -> Dict[str, tf.Tensor]:
    """Parses one serialized Example into its features (``meta/classes`` dense, landmarks (68, 2))."""
    f = tf.io.parse_single_example(serialized, FEATURES)
    f["meta/classes"] = tf.sparse.to_dense(f["meta/classes"], default_value="")
    f["face/landmarks"] = tf.reshape(f["face/landmarks"], [NUM_LANDMARKS, 2])
    return f


@dataclasses.dataclass
class CropSettings:
    """How :func:`prepare` turns a record into a stored crop."""

    crop_size: int = 256
    margin: float = FACE_MARGIN
    quality: int = 95
    landmarks: str = "keep"
    detect: bool = False
    detector: str = "auto"

    def __post_init__(self):
        if self.landmarks not in LANDMARK_MODES:
            raise ValueError(f"landmarks must be one of {LANDMARK_MODES}, got {self.landmarks!r}")
        if self.crop_size < 0:
            raise ValueError(f"crop_size must be >= 0 (0 = keep resolution), got {self.crop_size}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {self.quality}")


class _FaceTools:
    """dlib/OpenCV objects of one process, created on first use (never pickled into workers)."""

    def __init__(self, settings: CropSettings):
        self.settings = settings
        self._detector = None
        self._landmarks = None

    def detector(self):
        if self._detector is None:
            from ferkeras.face.detection import FaceDetector

            self._detector = FaceDetector(method=self.settings.detector)
        return self._detector

    def landmark_detector(self):
        if self._landmarks is None:
            from ferkeras.face.detection import LandmarkDetector

            self._landmarks = LandmarkDetector()
        return self._landmarks


def _load_rgb(record: FaceRecord) -> Optional[np.ndarray]:
    import cv2

    try:
        data = (np.fromfile(record.image_path, np.uint8) if record.image_path
                else np.frombuffer(record.image_bytes, np.uint8))
    except OSError:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def visible_face_side(box, height: int, width: int) -> float:
    """The shorter side, in pixels, of the part of ``box`` inside a ``height`` x ``width`` image (the whole image
    for ``box`` None); 0 for a box outside the image.  NumPy twin of :func:`ferkeras.data.image_ops.visible_face_size`
    for the shard writer."""
    if box is None:
        return float(min(height, width))
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box).reshape(4))
    return max(0.0, min(min(x1, width) - max(x0, 0.0), min(y1, height) - max(y0, 0.0)))


def encode_record(record: FaceRecord, settings: CropSettings, tools: _FaceTools,
                  classes: Sequence[str]) -> Tuple[Optional[tf.train.Example], Optional[str]]:
    """One record -> (Example, None), or (None, skip reason)."""
    import cv2

    from ferkeras.face.align import crop_square, square_box

    image = _load_rgb(record)
    if image is None:
        return None, UNDECODABLE_IMAGE
    h, w = image.shape[:2]
    box, landmarks = record.box, record.landmarks
    if settings.landmarks == "none":
        landmarks = np.full((NUM_LANDMARKS, 2), np.nan, np.float32)
    if not record.has_box and settings.detect:
        boxes = tools.detector()(image).boxes
        if len(boxes) == 0:
            return None, NO_FACE_FOUND
        box = boxes[0]
    has_box = bool(np.all(np.isfinite(box)) and box[2] > box[0] and box[3] > box[1])
    if visible_face_side(box if has_box else None, h, w) < MIN_FACE_SIZE:
        return None, FACE_TOO_SMALL
    if settings.landmarks == "dlib" and not np.all(np.isfinite(landmarks)):
        landmarks = tools.landmark_detector()(image, box if has_box else [0, 0, w, h])[0]
    # No box: the whole image, centred in a square (never stretched).
    cut = square_box(box, settings.margin) if has_box else square_box([0, 0, w, h], 0.0)
    crop, transform = crop_square(image, cut, settings.crop_size or None)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, settings.quality])
    if not ok:
        return None, UNDECODABLE_IMAGE

    def to_crop(points):
        points = np.asarray(points, np.float32).reshape(-1, 2)
        return points @ transform[:, :2].T + transform[:, 2]

    crop_box = to_crop(np.reshape(box, (2, 2))).reshape(4) if has_box else np.full(4, np.nan, np.float32)
    example = make_example(jpeg.tobytes(), crop.shape[0], record, crop_box, to_crop(landmarks), cut, classes)
    return example, None


# ---------------------------------------------------------------------------------------------
# Sharded, resumable writing
# ---------------------------------------------------------------------------------------------

def shard_path(out_dir: str, index: int, num_shards: int, prefix: str = "faces") -> str:
    return os.path.join(out_dir, f"{prefix}-{index:05d}-of-{num_shards:05d}{SHARD_SUFFIX}")


def _write_json_atomic(path: str, payload) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _write_shard(task) -> Dict:
    """Worker: writes one shard to a temporary file, renames it, then writes its done marker."""
    index, path, records, settings, classes = task
    tools = _FaceTools(settings)
    skipped: Dict[str, int] = collections.Counter()
    examples: Dict[str, str] = {}
    written = 0
    tmp = path + ".incomplete"
    with tf.io.TFRecordWriter(tmp) as writer:
        for record in records:
            example, reason = encode_record(record, settings, tools, classes)
            if reason is not None:
                skipped[reason] += 1
                examples.setdefault(reason, record.image_path or "<bytes>")
                continue
            writer.write(example.SerializeToString())
            written += 1
    os.replace(tmp, path)
    result = {"shard": index, "path": os.path.basename(path), "written": written, "skipped": dict(skipped),
              "first_skipped": examples}
    _write_json_atomic(path + DONE_SUFFIX, result)
    return result


def _fingerprint(records: Sequence[FaceRecord]) -> str:
    h = hashlib.sha1()
    for r in records:
        source = r.image_path or hashlib.sha1(r.image_bytes).hexdigest()
        h.update(repr((source, r.box.tolist(), r.expression, r.valence, r.arousal, r.identity, r.video,
                       r.frame)).encode())
    return h.hexdigest()


def prepare(records: Iterable[FaceRecord], out_dir: str, *, num_shards: int = 16, workers: int = 1,
            settings: Optional[CropSettings] = None, classes: Sequence[str] = (), dataset: str = "",
            split: str = "", reader_skips: Optional[Dict[str, int]] = None, prefix: str = "faces",
            progress: bool = True) -> Dict:
    """Writes records as ``num_shards`` TFRecord shards in ``out_dir``, resuming an interrupted run.

    Args:
      records: the reader's records (its order must be reproducible for resuming).
      settings: crop, JPEG, landmark and detection settings (:class:`CropSettings`).
      classes, dataset, split: stored in every Example / the summary.
      reader_skips: the reader's skip counts by reason, merged into the summary.
      workers: processes writing shards in parallel (1 = in this process).
    Returns:
      the summary dict also written to ``out_dir/summary.json``; ``"shards_written_now"`` lists the shards
      this call wrote (the others were already done).
    """
    from tqdm import tqdm

    settings = settings or CropSettings()
    records = list(records)
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    num_shards = min(num_shards, max(1, len(records)))
    os.makedirs(out_dir, exist_ok=True)
    plan = {"num_records": len(records), "num_shards": num_shards, "fingerprint": _fingerprint(records),
            "settings": dataclasses.asdict(settings), "classes": list(classes), "prefix": prefix}
    plan_path = os.path.join(out_dir, PLAN_FILE)
    if os.path.exists(plan_path):
        with open(plan_path) as f:
            previous = json.load(f)
        if previous != plan:
            changed = sorted(k for k in plan if previous.get(k) != plan[k])
            raise ValueError(f"{out_dir} holds shards of a different preparation ({', '.join(changed)} differ; "
                             f"see {plan_path}); choose another output folder or delete it")
    else:
        _write_json_atomic(plan_path, plan)

    bounds = np.linspace(0, len(records), num_shards + 1).round().astype(int)
    tasks, results = [], []
    for i in range(num_shards):
        path = shard_path(out_dir, i, num_shards, prefix)
        done = path + DONE_SUFFIX
        if os.path.exists(done) and os.path.exists(path):
            with open(done) as f:
                results.append(json.load(f))
            continue
        tasks.append((i, path, records[bounds[i]:bounds[i + 1]], settings, tuple(classes)))
    if results:
        logger.info("%s: %d of %d shards already done, writing %d", out_dir, len(results), num_shards, len(tasks))

    written_now = []
    bar = tqdm(total=len(tasks), unit="shard", desc=f"prepare {dataset or out_dir}", disable=not progress)
    if workers > 1 and len(tasks) > 1:
        # forkserver: one clean server process imports TensorFlow once (preload) and workers fork from it -
        # never from this process, whose TF runtime threads may already run (fork would be unsafe).
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        with ctx.Pool(min(workers, len(tasks))) as pool:
            for result in pool.imap_unordered(_write_shard, tasks):
                results.append(result)
                written_now.append(result["shard"])
                bar.update(1)
    else:
        for task in tasks:
            result = _write_shard(task)
            results.append(result)
            written_now.append(result["shard"])
            bar.update(1)
    bar.close()

    skipped: Dict[str, int] = collections.Counter(reader_skips or {})
    first_skipped: Dict[str, str] = {}
    for r in sorted(results, key=lambda r: r["shard"]):
        skipped.update(r["skipped"])
        for reason, path in r.get("first_skipped", {}).items():
            first_skipped.setdefault(reason, path)
    summary = {"dataset": dataset, "split": split, "classes": list(classes), "num_shards": num_shards,
               "records_in": len(records), "records_written": int(sum(r["written"] for r in results)),
               "skipped": dict(sorted(skipped.items())), "skipped_total": int(sum(skipped.values())),
               "first_skipped": dict(sorted(first_skipped.items())),
               "settings": dataclasses.asdict(settings),
               "shards": sorted(({"path": r["path"], "written": r["written"]} for r in results),
                                key=lambda r: r["path"])}
    _write_json_atomic(os.path.join(out_dir, SUMMARY_FILE), summary)
    return dict(summary, shards_written_now=sorted(written_now))


def write_shards(records: Iterable[FaceRecord], out_dir: str, num_shards: int = 16, **kwargs) -> Dict:
    """Alias of :func:`prepare` for callers that already hold records."""
    return prepare(records, out_dir, num_shards=num_shards, **kwargs)


def read_summary(source: str) -> Dict:
    """The ``summary.json`` of a shard folder (or of the folder of a shard glob): classes, counts, settings."""
    folder = source if os.path.isdir(source) else os.path.dirname(source)
    path = os.path.join(folder, SUMMARY_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no {SUMMARY_FILE} in {folder!r}: was it written by ferkeras prepare?")
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------

def shard_files(source: str) -> List[str]:
    """The shard files of a folder (``*.tfrecord``) or a glob pattern, sorted; an error if there are none.  A list
    of files is returned as given (e.g. one worker's files, :func:`ferkeras.data.splits.worker_shard_files`)."""
    if isinstance(source, (list, tuple)):
        return [os.fspath(f) for f in source]
    source = os.fspath(source)
    pattern = os.path.join(source, "*" + SHARD_SUFFIX) if os.path.isdir(source) else source
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no TFRecord shards match {pattern!r}")
    return files


def stored_face_too_small(crop_box, source_box, crop_side):
    """Bool scalar: a stored face was smaller than :data:`~ferkeras.data.image_ops.MIN_FACE_SIZE` pixels of its
    source image (its box, or the whole image for a record without a box, scaled back by the cut square
    ``source_box``).  :func:`prepare` writes no such record; shards written before it checked may hold some."""
    crop_box, source_box = tf.cast(crop_box, tf.float32), tf.cast(source_box, tf.float32)
    source_side = source_box[2] - source_box[0]
    scale = source_side / tf.maximum(tf.cast(crop_side, tf.float32), 1.0)
    valid = tf.reduce_all(tf.math.is_finite(crop_box)) & (crop_box[2] > crop_box[0]) & (crop_box[3] > crop_box[1])
    face = tf.where(valid, tf.minimum(crop_box[2] - crop_box[0], crop_box[3] - crop_box[1]) * scale, source_side)
    return face < float(MIN_FACE_SIZE)


def tfrecord_dataset(source: str, *, image_size: int = 112, batch_size: int = 32, augment=None,
                     shuffle: bool = False, seed: Optional[int] = None, extras: Sequence[str] = (),
                     deterministic: bool = True, drop_remainder: bool = False,
                     num_parallel_calls=AUTOTUNE, stats: Optional[PipelineStats] = None,
                     shuffle_buffer: int = 4096) -> tf.data.Dataset:
    """Shards (folder or glob) -> the element of :mod:`ferkeras.data.pipeline` (crop resized to ``image_size``).

    Shuffling shuffles the shard order, interleaves up to 8 shards and shuffles examples in a
    ``shuffle_buffer``; without shuffling, examples come in the order they were prepared.  ``stats`` counts the
    records dropped (undecodable, or a face below :data:`~ferkeras.data.image_ops.MIN_FACE_SIZE` written by an
    older preparation), naming each as ``<shard file>#<record number in the shard>``.
    """
    files = shard_files(source)
    extras = check_extras(extras)

    def numbered(file):
        # (shard file, record number, serialized Example): a dropped record is named "<shard>#<number>" without
        # parsing it (a corrupt record cannot be parsed; a good one need not be, for every record, to be named).
        return tf.data.TFRecordDataset(file).enumerate().map(lambda number, record: (file, number, record))

    if shuffle:
        ds = shuffled(tf.data.Dataset.from_tensor_slices(files), len(files), shuffle, seed)
        cycle = min(len(files), 8)
        ds = ds.interleave(numbered, cycle_length=cycle, num_parallel_calls=cycle, deterministic=deterministic)
        ds = shuffled(ds, shuffle_buffer, shuffle, None if seed is None else seed + 1)
    else:
        # Unshuffled (evaluation): the records' original order, shard after shard; decoding is still parallel.
        ds = tf.data.Dataset.from_tensor_slices(files).flat_map(numbered)

    def load(file, number, serialized):
        f = parse_example(serialized)
        image = tf.io.decode_jpeg(f["image/encoded"], channels=3)
        side = tf.cast(tf.shape(image)[0], tf.float32)
        resized = tf.image.resize(tf.cast(image, tf.float32) / 255.0, [image_size, image_size], antialias=True)
        # tf.image.resize uses half-pixel centres: o = (p + 0.5) * S / side - 0.5.
        landmarks = (f["face/landmarks"] + 0.5) * (float(image_size) / side) - 0.5
        fields = {"valence": f["label/valence"], "arousal": f["label/arousal"], "expression": f["label/expression"],
                  "identity": f["meta/identity"], "video": f["meta/video"], "frame": f["meta/frame"],
                  "timestamp": f["meta/timestamp"], "dataset": f["meta/dataset"]}
        return dict(make_element(tf.clip_by_value(resized, 0.0, 1.0), landmarks, fields, extras),
                    **{REJECT_KEY: stored_face_too_small(f["face/box"], f["face/source_box"], side)})

    def name(element):
        file, number, _ = element
        return tf.strings.join([file, tf.strings.as_string(number)], separator="#")

    return finish_pipeline(ds, load, batch_size=batch_size, augment=augment, deterministic=deterministic,
                           drop_remainder=drop_remainder, num_parallel_calls=num_parallel_calls, stats=stats,
                           name=name)


__all__ = ("FACE_TOO_SMALL", "CropSettings", "FEATURES", "LANDMARK_MODES", "NO_FACE_FOUND", "UNDECODABLE_IMAGE",
           "encode_record", "make_example", "parse_example", "prepare", "read_summary", "shard_files", "shard_path",
           "stored_face_too_small", "tfrecord_dataset", "visible_face_side", "write_shards")
