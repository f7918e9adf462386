"""Contact sheet of ferkeras' synthetic faces: a grid of faces labelled with category and valence/arousal, a row
with the 68 landmarks and face boxes drawn, and one reaction-mashup frame with its people's boxes.

    python tools/preview_synthetic.py --out=/tmp/synthetic_preview.png
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from ferkeras.data import synthetic  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "synthetic_preview.png", "PNG file to write.")
flags.DEFINE_integer("rows", 4, "Rows of labelled faces (each row shows every category once).")
flags.DEFINE_integer("size", 112, "Rendered face size in pixels.")
flags.DEFINE_integer("zoom", 2, "Nearest-neighbour zoom of each face in the sheet.")
flags.DEFINE_integer("seed", 0, "Random seed.")


def _label(img: np.ndarray, text: str, scale: float = 0.4) -> None:
    cv2.putText(img, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _with_landmarks(img: np.ndarray, lm: np.ndarray, box: np.ndarray, zoom: int) -> np.ndarray:
    out = img.copy()
    for k, (x, y) in enumerate(lm * zoom):
        colour = (0, 255, 0) if k < 17 else (255, 255, 0) if k < 36 else (0, 200, 255) if k < 48 else (255, 0, 255)
        cv2.circle(out, (int(round(x)), int(round(y))), 2, colour, -1, cv2.LINE_AA)
    x0, y0, x1, y1 = (int(round(v * zoom)) for v in box)
    cv2.rectangle(out, (x0, y0), (x1, y1), (255, 0, 0), 1)
    return out


def contact_sheet(rows: int, size: int, zoom: int, seed: int) -> np.ndarray:
    """The sheet as an RGB array: ``rows`` rows of all 8 categories, a landmark row, a mashup frame."""
    rng = np.random.default_rng(seed)
    pool = synthetic.identity_pool(rows * 8 + 8, first_identity=seed * 1000)
    ncat = len(synthetic.EXPRESSIONS)
    tiles = []
    for r in range(rows + 1):
        for c in range(ncat):
            ident = pool[(r * ncat + c * 3) % len(pool)]
            ex = synthetic.sample_expression(rng, c)
            img, lm, box = synthetic.render_face(ident, ex, size=size, rng=rng)
            big = cv2.resize(img, (size * zoom, size * zoom), interpolation=cv2.INTER_NEAREST)
            if r == rows:
                big = _with_landmarks(big, lm, box, zoom)
            _label(big, f"{ex.name} v{ex.valence:+.2f} a{ex.arousal:+.2f}")
            tiles.append(big)
    grid = np.concatenate([np.concatenate(tiles[i * ncat:(i + 1) * ncat], 1) for i in range(rows + 1)], 0)

    mash = synthetic.render_mashup(num_people=4, num_frames=20, seed=seed)
    t = 19
    frame = mash.frames[t].copy()
    for person in mash.people:
        x0, y0, x1, y1 = (int(round(v)) for v in person.boxes[t])
        cv2.rectangle(frame, (x0, y0), (x1, y1), (255, 0, 0), 1)
        name = synthetic.EXPRESSIONS[person.expression[t]]
        cv2.putText(frame, f"{name} lag{person.lag}", (x0, max(10, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.3,
                    (255, 255, 255), 1, cv2.LINE_AA)
    scale = grid.shape[1] / frame.shape[1]
    frame = cv2.resize(frame, (grid.shape[1], int(round(frame.shape[0] * scale))), interpolation=cv2.INTER_NEAREST)
    _label(frame, f"reaction mashup frame {t}: shared v{mash.shared_valence[t]:+.2f} a{mash.shared_arousal[t]:+.2f}",
           0.8)
    return np.concatenate([grid, frame], 0)


def main(argv):
    del argv
    sheet = contact_sheet(FLAGS.rows, FLAGS.size, FLAGS.zoom, FLAGS.seed)
    out_dir = os.path.dirname(os.path.abspath(FLAGS.out))
    os.makedirs(out_dir, exist_ok=True)
    if not cv2.imwrite(FLAGS.out, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {FLAGS.out}")
    logging.info("wrote %s (%dx%d)", FLAGS.out, sheet.shape[1], sheet.shape[0])


if __name__ == "__main__":
    app.run(main)
