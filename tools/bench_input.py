"""Input pipeline throughput on this machine: raw files vs TFRecord shards, next to the train step's appetite.

    python tools/bench_input.py                    # ~2000 synthetic AffectNet-format faces, 112^2 and 224^2
    python tools/bench_input.py --num=500 --image_sizes=112 --train_steps=0

Writes a temporary synthetic dataset in AffectNet's on-disk format (256 x 256 JPEG images, CSV lists with boxes
and landmarks), then measures images per second of one full epoch of

* raw files:  read + decode + face crop + resize + batch (+ the "avce" augmentation: random crop, jitter, flip)
* shards:     the same data prepared by ferkeras.data.tfrecord.prepare (crops stored at --crop_size), read back

and, when ``ferkeras.models.baseline`` is available, the images per second one train step of the supervised
baseline consumes at the same size (``model.train_on_batch`` on a fixed batch, i.e. pure compute).  The input
pipeline keeps up when its rate is above the train step's.  Prints a table; not a test.
"""

import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("num", 2000, "Synthetic training images to write.")
flags.DEFINE_integer("source_size", 256, "Side of the written synthetic images.")
flags.DEFINE_list("image_sizes", ["112", "224"], "Pipeline output sizes to measure.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_string("augment", "avce", "FaceAugment preset for the training pipelines ('none' for none).")
flags.DEFINE_integer("shards", 8, "Shards to prepare.")
flags.DEFINE_integer("workers", 2, "Processes preparing shards.")
flags.DEFINE_integer("crop_size", 256, "Stored crop side in the shards.")
flags.DEFINE_integer("train_steps", 3, "Timed baseline train steps per size (0 skips the model).")
flags.DEFINE_string("backbone", "resnet18", "Baseline backbone for the train-step rate.")
flags.DEFINE_string("work_dir", None, "Where to write the dataset and shards (a temporary folder if unset).")
flags.DEFINE_bool("keep", False, "Keep the work folder.")


def _rate(ds):
    """Images per second over one full pass (after a warm-up batch that pays for tracing)."""
    it = iter(ds)
    next(it)
    start, n = time.perf_counter(), 0
    for images, _ in it:
        n += int(images.shape[0])
    return n / max(time.perf_counter() - start, 1e-9), n


def _train_rate(size, batch_size, steps):
    """Images/s of the baseline's train step, or None (with the reason) when no baseline model exists yet."""
    try:
        from ferkeras.models.baseline import build_baseline_model, compile_baseline
    except ImportError as e:  # hook: the models package is written separately
        return None, f"no baseline model ({e})"
    import numpy as np

    model = compile_baseline(build_baseline_model(FLAGS.backbone, (size, size, 3), task="both"), "both")
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, size, size, 3), np.float32)
    y = {"va": rng.uniform(-1, 1, (batch_size, 2)).astype(np.float32),
         "expression": rng.integers(0, 8, batch_size).astype(np.int32)}
    model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return batch_size * steps / (time.perf_counter() - start), f"{FLAGS.backbone}, batch {batch_size}"


def main(argv):
    del argv
    from ferkeras.augment.spatial import FaceAugment
    from ferkeras.data import pipeline, tfrecord
    from ferkeras.data.readers import make_reader
    from ferkeras.data.synthetic_datasets import write_affectnet

    work = FLAGS.work_dir or tempfile.mkdtemp(prefix="ferkeras-bench-")
    root, shards = os.path.join(work, "affectnet"), os.path.join(work, "shards")
    print(f"machine: {os.cpu_count()} CPUs; work folder {work}")
    start = time.perf_counter()
    write_affectnet(root, num=FLAGS.num, seed=0, size=FLAGS.source_size, num_val=2)
    print(f"wrote {FLAGS.num} synthetic AffectNet images ({FLAGS.source_size}^2 JPEG) "
          f"in {time.perf_counter() - start:.1f} s")
    records = list(make_reader("affectnet", root, split="train"))

    start = time.perf_counter()
    summary = tfrecord.prepare(records, shards, num_shards=FLAGS.shards, workers=FLAGS.workers,
                               settings=tfrecord.CropSettings(crop_size=FLAGS.crop_size), progress=False)
    prep = time.perf_counter() - start
    print(f"prepared {summary['records_written']} crops into {FLAGS.shards} shards with {FLAGS.workers} workers "
          f"in {prep:.1f} s ({summary['records_written'] / prep:.0f} images/s, incl. worker start-up)")

    rows = []
    for size in map(int, FLAGS.image_sizes):
        for source_name, source in (("raw files", records), ("shards", shards)):
            for aug_name in ("none", FLAGS.augment):
                augment = None if aug_name == "none" else FaceAugment.preset(aug_name, seed=0)
                ds = pipeline.build_dataset(source, image_size=size, batch_size=FLAGS.batch_size, training=True,
                                            augment=augment, seed=0)
                rate, n = _rate(ds)
                rows.append((size, source_name, aug_name, f"{rate:8.0f}", n))
                print(f"{size:4d}^2  {source_name:10s} augment={aug_name:6s} {rate:8.0f} images/s  ({n} images)")
        if FLAGS.train_steps > 0:
            rate, what = _train_rate(size, FLAGS.batch_size, FLAGS.train_steps)
            text = "n/a" if rate is None else f"{rate:8.0f}"
            rows.append((size, "train step", what, text, FLAGS.batch_size * FLAGS.train_steps))
            print(f"{size:4d}^2  train step ({what}): {text} images/s")

    print("\nsize   source      augment/model          images/s")
    for size, source_name, what, rate, _ in rows:
        print(f"{size:4d}   {source_name:10s}  {what:22s} {rate}")
    if not FLAGS.keep and FLAGS.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        logging.info("kept %s", work)


if __name__ == "__main__":
    app.run(main)
