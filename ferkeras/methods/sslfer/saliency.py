"""SSL-FER's saliency figure: Grad-CAM of pre-trained encoders over faces of several expressions (Figure 6).

Shu, Gu, Yang, Lo, "Revisiting Self-Supervised Contrastive Learning for Facial Expression Recognition", BMVC 2022,
Sec. 4.5 and Figure 6: Grad-CAM maps of encoders pre-trained with SimCLR and with the SSL-FER strategies, one row
per face (persons showing different emotions), one column per model; the paper reads them as "SimCLR attends to
emotion-irrelevant areas, FaceSwap and MaskFN focus more on eyes and mouths".

A self-supervised encoder has no class head, so the score Grad-CAM explains is chosen
(:func:`ferkeras.viz.cam.encoder_saliency`): the online linear probe's logit of the predicted expression when the
run trained one (``"head"``), or the projection of the features onto the image's own features (``"self"``).

* :func:`expression_faces` - one held-out synthetic face per expression (identities never seen in training);
* :func:`saliency_figure` - the PNG grid for one or several encoders (columns), rows labelled.
"""

from __future__ import annotations

import logging
from typing import Mapping, Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger("ferkeras.methods.sslfer")


def expression_faces(image_size: int, num_faces: Optional[int] = None, *, pool: int = 160, seed: int = 0,
                     first_identity: int = 100_000, num_identities: int = 25) -> Tuple[np.ndarray, np.ndarray]:
    """Synthetic faces, one per expression class in class order (then further ones, cycling over the classes,
    up to ``num_faces``; default one per class): ``(images float32 (N, S, S, 3) in [0, 1], expression (N,))``.

    Drawn from ``pool`` faces of ``num_identities`` identities from ``first_identity`` on (default far beyond every
    training range, as :func:`ferkeras.downstream.synthetic_identity_set`); a class missing from the pool is left
    out.
    """
    from ferkeras.data.splits import synthetic_faces
    from ferkeras.data.schema import EXPRESSIONS

    a = synthetic_faces(pool, image_size, seed, num_identities, first_identity)
    num_faces = len(EXPRESSIONS) if num_faces is None else int(num_faces)
    if num_faces < 1:
        raise ValueError(f"expression_faces: num_faces must be >= 1, got {num_faces}")
    by_class = [list(np.flatnonzero(a["expression"] == c)) for c in range(len(EXPRESSIONS))]
    picked = []
    while len(picked) < num_faces and any(by_class):
        for rows in by_class:
            if rows and len(picked) < num_faces:
                picked.append(rows.pop(0))
    picked = np.asarray(picked, np.int64)
    return a["images"][picked].astype(np.float32) / 255.0, a["expression"][picked].astype(np.int32)


def saliency_figure(encoders: Mapping[str, object], images, path: str, *, heads: Optional[Mapping] = None,
                    score: str = "auto", row_labels: Optional[Sequence[str]] = None, method: str = "gradcam",
                    title: str = "", label_scores: bool = True) -> dict:
    """Saves the Figure-6 grid: one row per image, the input then one Grad-CAM overlay per encoder.

    Args:
        encoders: column title -> encoder (images -> (B, F) features, a flat functional model).
        images: (B, S, S, 3) floats in [0, 1].
        path: the PNG to write.
        heads: column title -> head model (B, F) -> (B, C) for ``score="head"`` (e.g. the online probe).
        score: ``"head"``, ``"self"`` (see :func:`ferkeras.viz.cam.encoder_saliency`) or ``"auto"``: ``"head"`` for
            the columns with a head, ``"self"`` for the others.
        row_labels: one label per image (e.g. the true expression).
        method: ``"gradcam"`` or ``"scorecam"``.
        title: a figure title.  label_scores: add the score used under each column title.
    Returns:
        ``{"path": path, "scores": {column: score used}, "maps": {column: (B, S, S) maps}}``.
    """
    from ferkeras.viz import cam

    heads = dict(heads or {})
    maps, used = {}, {}
    for name, encoder in encoders.items():
        column_score = ("head" if name in heads else "self") if score == "auto" else score
        maps[name] = cam.encoder_saliency(encoder, images, score=column_score, head=heads.get(name), method=method)
        used[name] = column_score
    score_names = {"head": "probe logit", "self": "self-similarity"}
    titles = {name: f"{name}\n({score_names[used[name]]})" if label_scores else name for name in maps}
    grid = cam.overlay_grid(images, maps, titles=titles, row_labels=row_labels, title=title)
    cam.save_png(path, grid)
    logger.info("saliency figure %s (%d faces x %d encoders)", path, len(images), len(maps))
    return {"path": path, "scores": used, "maps": maps}


__all__ = ("expression_faces", "saliency_figure")
