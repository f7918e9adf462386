"""Picture of FaceSwap (Shu et al., BMVC 2022, Sec. 3.2.2) for a person to look at: rows source / identity / swap.

    python tools/faceswap_grid.py --out_dir=/tmp                       # synthetic faces only
    python tools/faceswap_grid.py --out_dir=/tmp --photos=DIR          # and real photos in DIR (one face each)

Writes ``faceswap_synthetic.png`` (synthetic faces of different people, expressions and poses, exact landmarks)
and, with ``--photos``, ``faceswap_photos.png`` (every ordered pair of up to ``--max_photos`` photos, landmarks from
dlib).  Row 1: the expression source ``S_emo``; row 2: the identity image ``S_id``; row 3: the swap (``S_id`` with
``S_emo``'s eyes, brows, nose and mouth); row 4: the swap with the mask's edge drawn.  Keep real-photo grids out of
the repository (the photos' licences are their owners').
"""

import glob
import itertools
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", "/tmp", "Where the PNG files go.")
flags.DEFINE_integer("size", 160, "Side of the synthetic faces.")
flags.DEFINE_integer("cell", 192, "Side of one picture in the grid.")
flags.DEFINE_string("photos", None, "A folder of photos (jpg/png) with one face each; none: synthetic only.")
flags.DEFINE_integer("max_photos", 3, "Photos used from --photos (all ordered pairs of them are swapped).")


def _cell(image, size):
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if image.shape[0] > size else
                      cv2.INTER_LINEAR)


def _outlined(result):
    edge = cv2.Canny((result.mask > 0.5).astype(np.uint8) * 255, 50, 150) > 0
    edge = cv2.dilate(edge.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    out = result.image.copy()
    out[edge] = (255, 255, 0)
    return out


def write_grid(path, triples, cell):
    """triples: [(S_emo, S_id, SwapResult)] -> a 4-row PNG at ``path``."""
    rows = [[], [], [], []]
    for emo, ident, result in triples:
        rows[0].append(_cell(emo, cell))
        rows[1].append(_cell(ident, cell))
        rows[2].append(_cell(result.image, cell))
        rows[3].append(_cell(_outlined(result), cell))
    grid = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    cv2.imwrite(path, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"wrote {path} ({grid.shape[1]}x{grid.shape[0]})")


def synthetic_triples(size):
    from ferkeras.augment.faceswap import face_swap
    from ferkeras.data.synthetic import VA_CENTROIDS, Pose, expression_from_va, identity_pool, render_face

    pool = identity_pool(12)
    pairs = ((3, 6), (6, 3), (1, 2), (2, 1), (4, 0), (5, 3))  # (source category, identity category)
    out = []
    for k, (ce, ci) in enumerate(pairs):
        emo, lm_e, _ = render_face(pool[2 * k], expression_from_va(*VA_CENTROIDS[ce], ce), size,
                                   pose=Pose(yaw=8, roll=4))
        ident, lm_i, _ = render_face(pool[2 * k + 1], expression_from_va(*VA_CENTROIDS[ci], ci), size,
                                     pose=Pose(yaw=-6, scale=0.95, dx=0.03))
        out.append((emo, ident, face_swap(emo, lm_e, ident, lm_i)))
    return out


def photo_triples(folder, max_photos):
    from ferkeras.augment.faceswap import FaceSwap, face_swap

    finder = FaceSwap(probability=1.0)
    faces = []
    for path in sorted(glob.glob(os.path.join(folder, "*.jpg")) + glob.glob(os.path.join(folder, "*.png"))):
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None or min(image.shape[:2]) < 64:
            continue
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        side = min(image.shape[:2])  # centre square, 512 px
        y0, x0 = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        image = cv2.resize(image[y0:y0 + side, x0:x0 + side], (512, 512), interpolation=cv2.INTER_AREA)
        try:
            faces.append((image, finder.landmarks_of(image)))
        except ValueError as err:
            print(f"skipped {path}: {err}")
        if len(faces) == max_photos:
            break
    return [(faces[e][0], faces[i][0], face_swap(faces[e][0], faces[e][1], faces[i][0], faces[i][1]))
            for e, i in itertools.permutations(range(len(faces)), 2)]


def main(argv):
    del argv
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    write_grid(os.path.join(FLAGS.out_dir, "faceswap_synthetic.png"), synthetic_triples(FLAGS.size), FLAGS.cell)
    if FLAGS.photos:
        triples = photo_triples(FLAGS.photos, FLAGS.max_photos)
        if len(triples) < 2:
            raise SystemExit(f"fewer than two photos with exactly one face found in {FLAGS.photos}")
        write_grid(os.path.join(FLAGS.out_dir, "faceswap_photos.png"), triples, FLAGS.cell)


if __name__ == "__main__":
    app.run(main)
