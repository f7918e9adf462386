"""Prepares a dataset as sharded TFRecords of face crops with cached 68 landmarks and every label.

    python tools/prepare_dataset.py --dataset=affectnet --root=input/affectnet --split=train \
        --out=input/shards/affectnet/train --shards=64 --workers=2 --crop_size=256 --landmarks=dlib

Any reader of ferkeras.data.readers works (``--dataset`` is its name; ``--reader_option key=value`` passes
reader options such as ``num_classes=7``).  Resumable: rerun the same command after an interruption and only
the unfinished shards are written.  A summary (records written, skips by reason) is printed and saved as
``summary.json`` next to the shards.  All logic lives in :func:`ferkeras.data.tfrecord.prepare`.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

from ferkeras.face.defaults import FACE_MARGIN  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", None, "Dataset (reader) name, see ferkeras.data.readers.READERS; aliases such as "
                    "rafdb, affwild2 are accepted (ferkeras.data.readers.canonical_name).", required=True)
flags.DEFINE_string("root", None, "Dataset folder (input/<dataset>/ by convention).", required=True)
flags.DEFINE_string("split", "train", "Split to prepare.")
flags.DEFINE_string("out", None, "Output folder for the shards.", required=True)
flags.DEFINE_integer("shards", 16, "Number of shards.")
flags.DEFINE_integer("workers", 1, "Worker processes writing shards.")
flags.DEFINE_integer("crop_size", 256, "Side of the stored square face crop in pixels (0 keeps the resolution).")
flags.DEFINE_float("margin", FACE_MARGIN, "Face box widening on each side, as a fraction of its longer side "
                   "(ferkeras.face.FACE_MARGIN: the crop inference cuts).")
flags.DEFINE_integer("quality", 95, "JPEG quality of the stored crops.")
flags.DEFINE_enum("landmarks", "keep", ["keep", "dlib", "none"],
                  "keep: the dataset's landmarks (NaN if none); dlib: the dataset's, else dlib's 68 points; "
                  "none: store no landmarks.")
flags.DEFINE_bool("detect", False, "Detect the face in records that have no box (skipped if none is found).")
flags.DEFINE_enum("detector", "auto", ["auto", "hog", "haar", "cnn"], "Face detector for --detect.")
flags.DEFINE_multi_string("reader_option", [], "Reader option key=value (value parsed as JSON when it can be).")


def _reader_options(pairs):
    options = {}
    for pair in pairs:
        if "=" not in pair:
            raise app.UsageError(f"--reader_option must be key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def main(argv):
    del argv
    from ferkeras.data.readers import canonical_name, make_reader

    try:
        dataset = canonical_name(FLAGS.dataset)
    except ValueError as e:
        raise app.UsageError(f"--dataset={FLAGS.dataset}: {e}") from None
    from ferkeras.data import tfrecord

    reader = make_reader(dataset, FLAGS.root, split=FLAGS.split, **_reader_options(FLAGS.reader_option))
    records = list(reader)
    reader.skips.report()
    logging.info("%s/%s: %d records to prepare", dataset, FLAGS.split, len(records))
    settings = tfrecord.CropSettings(crop_size=FLAGS.crop_size, margin=FLAGS.margin, quality=FLAGS.quality,
                                     landmarks=FLAGS.landmarks, detect=FLAGS.detect, detector=FLAGS.detector)
    summary = tfrecord.prepare(records, FLAGS.out, num_shards=FLAGS.shards, workers=FLAGS.workers,
                               settings=settings, classes=reader.classes, dataset=reader.name, split=FLAGS.split,
                               reader_skips=dict(reader.skips.counts))
    print(f"{summary['dataset']}/{summary['split']}: {summary['records_written']} records written to "
          f"{summary['num_shards']} shards in {FLAGS.out} ({len(summary['shards_written_now'])} shards this run)")
    print(f"skipped {summary['skipped_total']}:")
    for reason, count in summary["skipped"].items():
        first = summary.get("first_skipped", {}).get(reason)
        print(f"  {count:8d}  {reason}" + (f"  (first: {first})" if first else ""))
    print(f"summary: {os.path.join(FLAGS.out, tfrecord.SUMMARY_FILE)}")


if __name__ == "__main__":
    app.run(main)
