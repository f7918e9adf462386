"""Throughput of the TF Serving export (ferkeras.export) next to the in-process Keras model, measured in one run.

    python tools/bench_export.py                                   # baseline ResNet-18 (width 32) at 64 x 64
    python tools/bench_export.py --model=runs/<run> --source_size=224

For batch sizes 1 and 64 it prints images per second of

* keras:            ``model.predict_on_batch`` on float32 pixels already at the model size (no decoding);
* export / bytes:   the reloaded ``serving_default`` signature on JPEG bytes (decode + pad + resize in-graph);
* export / uint8:   the reloaded ``uint8_images`` signature on uint8 images (pad + resize in-graph).

The images are synthetic faces (ferkeras.data.synthetic) rendered at --source_size and JPEG-encoded (quality 90),
so the export paths include a resize whenever --source_size differs from the model size.  The three contenders
are timed in interleaved rounds (median and range reported), so a load change on a shared machine affects all of
them alike.  This measures the graph in-process (no TF Serving, no network); not a test.
"""

import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

_MODEL = flags.DEFINE_string("model", None, "A .keras file or a run directory; default a fresh (untrained) "
                             "baseline model built from --backbone / --width / --image_size.")
_BACKBONE = flags.DEFINE_string("backbone", "resnet18", "Baseline backbone when --model is unset.")
_WIDTH = flags.DEFINE_integer("width", 32, "ResNet-18 stem width when --model is unset.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Model input side when --model is unset.")
_SOURCE_SIZE = flags.DEFINE_integer("source_size", 112, "Side of the encoded / uint8 images sent to the export.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "64"], "Batch sizes to measure.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds per batch size (the median is reported).")
_SLICE_SECONDS = flags.DEFINE_float("slice_seconds", 1.0, "Time of each contender in each round.")


def _rate(fn, batch: int, seconds: float) -> float:
    """Images per second of ``fn()`` on a batch of ``batch``: at least 2 calls and ``seconds``."""
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls * batch / (time.perf_counter() - start)


def _compare(contenders, batch: int, rounds: int, seconds: float):
    """Median and spread (min, max) of each contender's images/s over ``rounds`` interleaved rounds, so that a load
    change on a shared machine hits all contenders alike."""
    for fn in contenders:
        fn()  # warm-up: tracing, first allocations
    rates = np.array([[_rate(fn, batch, seconds) for fn in contenders] for _ in range(rounds)])
    return [(float(np.median(r)), float(r.min()), float(r.max())) for r in rates.T]


def _load_or_build():
    if _MODEL.value:
        from ferkeras.export import load_trained_model

        try:
            return load_trained_model(_MODEL.value)
        except (FileNotFoundError, ValueError) as e:
            raise app.UsageError(str(e)) from e
    from ferkeras.models.baseline import build_baseline_model

    size = _IMAGE_SIZE.value
    model = build_baseline_model(_BACKBONE.value, (size, size, 3), task="both",
                                 width=_WIDTH.value if _BACKBONE.value == "resnet18" else 64)
    return model, None, f"untrained {_BACKBONE.value} baseline (width {_WIDTH.value})"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import tensorflow as tf

    from ferkeras.data.synthetic import synthetic_arrays
    from ferkeras.export import export_for_serving, model_image_size, preprocess_encoded

    load = os.getloadavg()
    model, class_names, what = _load_or_build()
    size = model_image_size(model)
    batches = [int(b) for b in _BATCH_SIZES.value]
    faces = synthetic_arrays(max(batches), size=_SOURCE_SIZE.value, seed=0)["images"]
    jpegs = [tf.io.encode_jpeg(f, quality=90).numpy() for f in faces]
    pixels = preprocess_encoded(jpegs, size).numpy()  # the model-size float input the Keras row gets

    work = tempfile.mkdtemp(prefix="bench_export_")
    try:
        start = time.perf_counter()
        path = export_for_serving(model, work, "bench", class_names=class_names)
        export_seconds = time.perf_counter() - start
        loaded = tf.saved_model.load(path)
        by_bytes, by_uint8 = loaded.signatures["serving_default"], loaded.signatures["uint8_images"]
        rows = []
        for b in batches:
            x, jb, u8 = pixels[:b], tf.constant(jpegs[:b]), tf.constant(faces[:b])
            contenders = (lambda: model.predict_on_batch(x), lambda: by_bytes(image_bytes=jb),
                          lambda: by_uint8(images=u8))
            rows.append((b, _compare(contenders, b, _ROUNDS.value, _SLICE_SECONDS.value)))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nmodel: {what}, input {size[0]}x{size[1]}, "
          f"{sum(int(np.prod(w.shape)) for w in model.weights):,} weights; export written in {export_seconds:.1f} s")
    print(f"sent images: synthetic faces {_SOURCE_SIZE.value}x{_SOURCE_SIZE.value}, JPEG q90 "
          f"(mean {np.mean([len(j) for j in jpegs]) / 1024:.1f} KiB); {os.cpu_count()} CPU cores visible")
    print(f"images/s, median of {_ROUNDS.value} interleaved rounds [min - max]; "
          f"load average before: {load[0]:.1f}, after: {os.getloadavg()[0]:.1f}")
    print(f"{'batch':>5}  {'keras predict (float)':>24}  {'export bytes (JPEG)':>24}  {'export uint8':>24}")
    for b, stats in rows:
        print(f"{b:5d}  " + "  ".join(f"{f'{m:.0f} [{lo:.0f} - {hi:.0f}]':>24}" for m, lo, hi in stats))


if __name__ == "__main__":
    app.run(main)
