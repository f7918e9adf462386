"""FaceSwap throughput, and SSL-FER's input pipeline against its pre-training step (Shu, Gu, Yang, Lo, "Revisiting
Self-Supervised Contrastive Learning for Facial Expression Recognition", BMVC 2022, Secs. 3.2-3.4 and 4.1).

    python tools/bench_faceswap.py                        # both parts (--what=all)
    python tools/bench_faceswap.py --what=faceswap        # 128 px synthetic faces, 256 swaps per measurement
    python tools/bench_faceswap.py --what=faceswap --size=224 --num=128
    python tools/bench_faceswap.py --what=pipeline        # input pipeline vs train step (a few minutes on 2 cores)
    python tools/bench_faceswap.py --what=pipeline --settings=small --batch_size=64

``--what=faceswap``: FaceSwap (Sec. 3.2.2) images per second, side by side with the landmarks given (cached by the
data layer) and with dlib finding them (HOG detector + 68-point predictor on both images of every pair):

* one core:          a plain Python loop over the swaps, the process pinned to one CPU, OpenCV single-threaded;
* tf.data, 2 cores:  ``FaceSwap(probability=1)`` mapped over batches with ``num_parallel_calls=2``, the process on
                     two CPUs (the op runs in Python via ``tf.numpy_function``: parallel calls overlap only where
                     OpenCV and dlib release the GIL).

Faces are synthetic (ferkeras.data.synthetic: different people, expressions and head poses per pair).  With
detection, faces dlib's HOG detector misses (turned heads at small sizes) fall back unswapped - cheaper than a
swap - and the table says how many of the images were swapped.

``--what=pipeline``: whether the input keeps up with the training, in samples (anchors) per second, the process on
``--cores`` CPUs, per setting (``--settings``) and strategy variant (``--variants``):

* settings:  ``small`` - 48 px crops of frames cut at 55 px (as tools/compare_sslfer.py), encoder ResNet-18 of
             width 16, projection 256 -> 64, MaskFN parts 32 px through a width-16 ResNet-18;
             ``paper`` - the paper's resize 128 / crop 112, ResNet-50 from scratch (``weights=None``), projection
             2048 -> 128, MaskFN parts 64 px through a standard ResNet-18.
* variants:  ``all`` - every strategy on: TimeAug (T1 = 1 s), FaceSwap p = 0.5 with the cached landmarks (no dlib),
             K = 1 hard negative (T2 = 3 s), MaskFN parts; ``simclr`` - every strategy off (positive = a second
             augmentation of the anchor frame, no hard negatives, no parts).
* pipeline:  :func:`ferkeras.methods.sslfer.data.sslfer_dataset` with its defaults (deterministic, the paper's
             augmentation) over in-memory synthetic videos (:func:`ferkeras.data.video_views.synthetic_video_tracks`,
             rendered at the load size), an endless stream; the rate over ``--pipeline_batches`` batches after a
             warm-up batch (tracing, sampler plan).
* step:      ``ContrastivePretrainer.train_on_batch`` with :class:`ferkeras.methods.sslfer.objective.SSLFERObjective`
             (MaskFN on for ``all``, plain InfoNCE for ``simclr``), on one batch of that pipeline held in memory, so
             the step alone is measured; the rate over ``--step_batches`` steps (``--paper_step_batches`` for
             ResNet-50) after a warm-up step (tracing).  No online probe.

The table gives both rates and their ratio (> 1: the input keeps up), and a line per row names the bottleneck.
The two are measured one after the other, each with the cores to itself; in training they share the cores, so a
ratio near 1 means the input already slows the training down.

Prints tables; not a test.  The machine is shared: run it when it is quiet and read the numbers as rough.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from tqdm import tqdm  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("what", "all", ("faceswap", "pipeline", "all"), "FaceSwap throughput, SSL-FER input pipeline vs "
                  "train step, or both.")
flags.DEFINE_integer("num", 256, "FaceSwap: swaps per measurement.")
flags.DEFINE_integer("size", 128, "FaceSwap: side of the (square) face images.")
flags.DEFINE_integer("batch_size", 32, "Batch size of the tf.data measurements, the input pipeline and the train step.")
flags.DEFINE_integer("cores", 2, "CPUs for the tf.data, pipeline and step measurements (FaceSwap's "
                     "num_parallel_calls too).")
flags.DEFINE_list("settings", "small,paper", "Pipeline: settings to measure, from small (48 px, ResNet-18 width 16) "
                  "and paper (112 px, ResNet-50).")
flags.DEFINE_list("variants", "all,simclr", "Pipeline: strategy variants, from all (every strategy on) and simclr "
                  "(every strategy off).")
flags.DEFINE_integer("pipeline_batches", 8, "Pipeline: batches timed after the warm-up batch.")
flags.DEFINE_integer("step_batches", 10, "Pipeline: train steps timed after the warm-up step (ResNet-18).")
flags.DEFINE_integer("paper_step_batches", 3, "Pipeline: train steps timed after the warm-up step (ResNet-50).")

SETTINGS = {  # name -> label, crop, load size, encoder, ResNet-18 width, projection hidden, dim, part size, width
    "small": dict(label="small 48/55", image_size=48, load_size=55, backbone="resnet18", width=16,
                  projection_hidden=(256,), projection_dim=64, part_size=32, part_width=16),
    "paper": dict(label="paper 112/128", image_size=112, load_size=128, backbone="resnet50", width=64,
                  projection_hidden=(2048,), projection_dim=128, part_size=64, part_width=64),
}
"""The settings of ``--what=pipeline``: tools/compare_sslfer.py's small one and the paper's (Sec. 4.1)."""
VARIANTS = {  # name -> label, TimeAug, FaceSwap probability, hard negatives K, MaskFN
    "all": dict(label="all on", time_aug=True, face_swap=0.5, hard_negatives=1, maskfn=True),
    "simclr": dict(label="SimCLR", time_aug=False, face_swap=0.0, hard_negatives=0, maskfn=False),
}


def _faces(num, size):
    from ferkeras.data.synthetic import synthetic_arrays

    data = synthetic_arrays(2 * num, size=size, seed=11, num_identities=40)
    images, landmarks = data["images"], data["landmarks"]
    return images[:num], landmarks[:num], images[num:], landmarks[num:]


def _pin(cpus):
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cpus))


def one_core(emo, lm_e, ident, lm_i, detect):
    """Images/s of a Python loop on one CPU."""
    import cv2

    from ferkeras.augment.faceswap import FaceSwap

    swap = FaceSwap(probability=1.0)
    swap.swap_numpy(emo[0], ident[0], None if detect else lm_e[0], None if detect else lm_i[0])  # load dlib
    cv2.setNumThreads(1)
    start = time.perf_counter()
    for i in tqdm(range(len(emo)), desc=f"1 core, {'dlib' if detect else 'cached'}", leave=False):
        swap.swap_numpy(emo[i], ident[i], None if detect else lm_e[i], None if detect else lm_i[i])
    elapsed = time.perf_counter() - start
    return len(emo) / elapsed, swap.counter


def in_tf_data(emo, lm_e, ident, lm_i, detect, batch_size, cores):
    """Images/s of FaceSwap mapped over batches in tf.data with ``cores`` parallel calls."""
    import cv2
    import tensorflow as tf

    from ferkeras.augment.faceswap import FaceSwap

    cv2.setNumThreads(0)
    swap = FaceSwap(probability=1.0)
    columns = {"positive": emo.astype(np.float32) / 255, "identity_image": ident.astype(np.float32) / 255}
    if not detect:
        columns.update(positive_landmarks=lm_e, identity_image_landmarks=lm_i)

    def op(b):
        return swap(b["positive"], b["identity_image"], b.get("positive_landmarks"),
                    b.get("identity_image_landmarks"))[0]

    ds = tf.data.Dataset.from_tensor_slices(columns).cache().batch(batch_size).map(op, num_parallel_calls=cores)
    options = tf.data.Options()
    options.threading.private_threadpool_size = cores
    ds = ds.with_options(options).prefetch(2)
    for _ in ds.take(1):  # warm-up: tracing, dlib loaded
        pass
    start, n = time.perf_counter(), 0
    with tqdm(total=len(emo), desc=f"tf.data {cores} cores, {'dlib' if detect else 'cached'}", leave=False) as bar:
        for images in ds:
            n += int(images.shape[0])
            bar.update(int(images.shape[0]))
    return n / (time.perf_counter() - start), swap.counter


def faceswap_table(all_cpus):
    """``--what=faceswap``: FaceSwap images/s, cached landmarks vs dlib, one core and tf.data."""
    print(f"FaceSwap throughput: {FLAGS.num} swaps of {FLAGS.size}x{FLAGS.size} synthetic faces per measurement; "
          f"{len(all_cpus)} CPUs visible, load average {os.getloadavg()[0]:.1f}", flush=True)
    faces = _faces(FLAGS.num, FLAGS.size)
    rows = {}
    _pin(all_cpus[:1])
    rows["1 core, NumPy loop"] = [one_core(*faces, detect=d) for d in (False, True)]
    _pin(all_cpus[:FLAGS.cores])
    rows[f"tf.data, {FLAGS.cores} cores"] = [in_tf_data(*faces, detect=d, batch_size=FLAGS.batch_size,
                                                        cores=FLAGS.cores) for d in (False, True)]
    _pin(all_cpus)
    print(f"\n{'images/s (swapped)':<24}{'cached landmarks':>22}{'dlib detection':>22}")
    for name, results in rows.items():
        cells = [f"{rate:.1f} ({counter.swapped / max(counter.examined, 1):.0%})" for rate, counter in results]
        print(f"{name:<24}{cells[0]:>22}{cells[1]:>22}")
    print("(in brackets: the share of images actually swapped; the rest fell back unswapped, see FaceSwapCounter)",
          flush=True)


def _tracks(load_size):
    """In-memory synthetic videos rendered at ``load_size``: 8 people x 2 videos of 8 s at 10 fps (long enough for
    TimeAug's 1 s and HardNeg's 3 s; the stream is endless, so the size of the table does not matter)."""
    from ferkeras.data.video_views import synthetic_video_tracks

    return synthetic_video_tracks(num_identities=8, videos_per_identity=2, seconds=8.0, fps=10.0, size=load_size,
                                  seed=0, name=f"synthetic videos {load_size} px")


def pipeline_rate(table, setting, variant, batch_size, num_batches, desc):
    """Samples/s of :func:`sslfer_dataset` over ``num_batches`` after a warm-up batch; returns ``(rate, a batch)``.

    The clock runs from the warm-up batch's arrival to the last batch's: the prefetch buffer is empty when the
    warm-up batch arrives (the loop was waiting for it), so the rate is the steady-state rate of the pipeline."""
    from ferkeras.methods.sslfer.data import sslfer_dataset

    ds = sslfer_dataset(table, batch_size=batch_size, image_size=setting["image_size"],
                        load_size=setting["load_size"], time_aug=variant["time_aug"], face_swap=variant["face_swap"],
                        face_swap_detect=False, hard_negatives=variant["hard_negatives"], maskfn=variant["maskfn"],
                        part_size=setting["part_size"], epochs=None, seed=0)
    it = iter(ds)
    batch = next(it)  # warm-up: tracing, the sampler's plan
    start = time.perf_counter()
    for _ in tqdm(range(num_batches), desc=desc, leave=False):
        batch = next(it)
    rate = num_batches * batch_size / (time.perf_counter() - start)
    del it
    return rate, batch


def step_rate(setting, variant, batch, num_steps, desc):
    """Samples/s of ``ContrastivePretrainer.train_on_batch`` on ``batch`` (held in memory) over ``num_steps`` after
    a warm-up step (tracing).  ``train_on_batch`` returns NumPy logs, so every step has finished when it returns."""
    import keras

    from ferkeras.methods.sslfer import MaskFN, SSLFERObjective
    from ferkeras.models.backbones import make_backbone
    from ferkeras.models.contrastive import ContrastivePretrainer

    keras.backend.clear_session()
    size = setting["image_size"]
    encoder = make_backbone(setting["backbone"], (size, size, 3), pooling="avg", weights=None,
                            **({"width": setting["width"]} if setting["backbone"] == "resnet18" else {}))
    maskfn = (MaskFN(None, part_size=setting["part_size"], encoder_width=setting["part_width"])
              if variant["maskfn"] else None)
    model = ContrastivePretrainer(encoder, SSLFERObjective(maskfn=maskfn),
                                  projection_hidden=setting["projection_hidden"],
                                  projection_dim=setting["projection_dim"], name="sslfer_pretrainer")
    model.compile(jit_compile=False)
    label_keys = ("identity", "track", "expression", "va")
    views = {k: v for k, v in batch.items() if k not in label_keys}
    labels = {k: v for k, v in batch.items() if k in label_keys}
    batch_size = int(batch["anchor"].shape[0])
    model.train_on_batch(views, labels)  # warm-up: tracing
    start = time.perf_counter()
    for _ in tqdm(range(num_steps), desc=desc, leave=False):
        model.train_on_batch(views, labels)
    rate = num_steps * batch_size / (time.perf_counter() - start)
    del model
    keras.backend.clear_session()
    return rate


def pipeline_table(all_cpus):
    """``--what=pipeline``: SSL-FER's input pipeline vs its train step, samples/s per setting and variant."""
    for name, choices, flag in ((FLAGS.settings, SETTINGS, "--settings"), (FLAGS.variants, VARIANTS, "--variants")):
        unknown = [n for n in name if n not in choices]
        if unknown or not name:
            raise app.UsageError(f"{flag}: unknown {unknown or 'empty'}; choose from {', '.join(choices)}")
    for flag, least in (("batch_size", 2), ("pipeline_batches", 1), ("step_batches", 1), ("paper_step_batches", 1)):
        if FLAGS[flag].value < least:
            raise app.UsageError(f"--{flag}={FLAGS[flag].value}: must be >= {least}"
                                 + (" (a contrastive batch needs 2 samples)" if flag == "batch_size" else ""))
    import tensorflow as tf

    cpus = all_cpus[:FLAGS.cores]
    _pin(cpus)
    print(f"\nSSL-FER input pipeline vs pre-training step: batch {FLAGS.batch_size}, {len(cpus)} of {len(all_cpus)} "
          f"CPUs, TensorFlow {tf.__version__}, load average {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    for s_name in FLAGS.settings:
        setting = SETTINGS[s_name]
        table = _tracks(setting["load_size"])
        steps = FLAGS.paper_step_batches if setting["backbone"] == "resnet50" else FLAGS.step_batches
        for v_name in FLAGS.variants:
            variant = VARIANTS[v_name]
            label = f"{setting['label']}, {variant['label']}"
            started = time.perf_counter()
            pipe, batch = pipeline_rate(table, setting, variant, FLAGS.batch_size, FLAGS.pipeline_batches,
                                        f"pipeline {label}")
            print(f"  pipeline  {label:<28} {pipe:9.1f} samples/s  ({FLAGS.pipeline_batches} batches, "
                  f"{time.perf_counter() - started:.0f} s with the warm-up)", flush=True)
            started = time.perf_counter()
            step = step_rate(setting, variant, batch, steps, f"step {label}")
            print(f"  step      {label:<28} {step:9.1f} samples/s  ({steps} steps, "
                  f"{time.perf_counter() - started:.0f} s with build and warm-up)", flush=True)
            rows.append((label, setting, variant, pipe, step))
    _pin(all_cpus)

    print(f"\n{'setting':<28}{'pipeline samples/s':>20}{'step samples/s':>16}{'pipeline/step':>15}")
    for label, _, _, pipe, step in rows:
        print(f"{label:<28}{pipe:>20.1f}{step:>16.1f}{pipe / step:>15.2f}")
    print()
    for label, setting, variant, pipe, step in rows:
        encoder = (f"ResNet-18 width {setting['width']}" if setting["backbone"] == "resnet18" else "ResNet-50")
        if pipe >= step:
            print(f"{label}: bottleneck = the train step ({encoder}); the input pipeline is {pipe / step:.1f}x "
                  "faster")
        else:
            print(f"{label}: bottleneck = the input pipeline; it delivers {pipe / step:.2f}x what the train step "
                  f"({encoder}) consumes")
    print("(anchors per second; each side measured alone on the same cores - in training they share them)",
          flush=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    all_cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count()))
    if FLAGS.what in ("faceswap", "all"):
        faceswap_table(all_cpus)
    if FLAGS.what in ("pipeline", "all"):
        pipeline_table(all_cpus)


if __name__ == "__main__":
    app.run(main)
