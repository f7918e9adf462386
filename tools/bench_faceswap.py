"""FaceSwap throughput (Shu et al., BMVC 2022, Sec. 3.2.2): images per second, cached landmarks vs dlib detection.

    python tools/bench_faceswap.py                     # 128 px synthetic faces, 256 swaps per measurement
    python tools/bench_faceswap.py --size=224 --num=128

Measures, side by side, with the landmarks given (cached by the data layer) and with dlib finding them (HOG
detector + 68-point predictor on both images of every pair):

* one core:          a plain Python loop over the swaps, the process pinned to one CPU, OpenCV single-threaded;
* tf.data, 2 cores:  ``FaceSwap(probability=1)`` mapped over batches with ``num_parallel_calls=2``, the process on
                     two CPUs (the op runs in Python via ``tf.numpy_function``: parallel calls overlap only where
                     OpenCV and dlib release the GIL).

Faces are synthetic (ferkeras.data.synthetic: different people, expressions and head poses per pair).  With
detection, faces dlib's HOG detector misses (turned heads at small sizes) fall back unswapped - cheaper than a
swap - and the table says how many of the images were swapped.  Prints a table; not a test.  The machine is
shared: run it when it is quiet and read the numbers as rough.
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
flags.DEFINE_integer("num", 256, "Swaps per measurement.")
flags.DEFINE_integer("size", 128, "Side of the (square) face images.")
flags.DEFINE_integer("batch_size", 32, "Batch size in the tf.data measurement.")
flags.DEFINE_integer("cores", 2, "CPUs for the tf.data measurement (num_parallel_calls too).")


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


def main(argv):
    del argv
    all_cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count()))
    print(f"FaceSwap throughput: {FLAGS.num} swaps of {FLAGS.size}x{FLAGS.size} synthetic faces per measurement; "
          f"{len(all_cpus)} CPUs visible, load average {os.getloadavg()[0]:.1f}")
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
    print("(in brackets: the share of images actually swapped; the rest fell back unswapped, see FaceSwapCounter)")


if __name__ == "__main__":
    app.run(main)
