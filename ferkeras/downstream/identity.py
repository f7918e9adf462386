"""Identity leakage of an encoder: how well its features recognise WHO a face is (lower is better for FER).

Shu, Gu, Yang, Lo, "Revisiting Self-Supervised Contrastive Learning for Facial Expression Recognition", BMVC 2022,
Sec. 4.4 and Table 2 ("FR-KNN"): the pre-trained encoder's features are used for k-NN face recognition on LFW;
a LOWER score means the representation carries less identity, the goal of their FaceSwap and hard-negative
strategies (expression features should not shortcut through identity).  Here the same measurement runs on any
identity-labelled set of faces whose identities the encoder never saw (by default built-in synthetic faces of
held-out identities, :func:`synthetic_identity_set`):

* **k-NN identification** (:func:`knn_identification_accuracy`): leave-one-out; each face takes the majority
  identity of its ``k`` most cosine-similar other faces (ties go to the identity with the larger summed
  similarity).  Its chance level for features that know nothing of identity, ``sum_i n_i (n_i - 1) / (N (N - 1))``
  for 1-NN (:func:`identification_chance`), is reported next to it.
* **verification** (:func:`verification_accuracy`): balanced same / different identity pairs scored by cosine
  similarity; accuracy at a threshold chosen on the other folds (LFW's 10-fold protocol) and the threshold-free ROC
  AUC.  Chance is 0.5 for both.

Features are L2-normalised, so cosine similarity is a dot product.  Everything after feature extraction is NumPy.
"""

from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence

import numpy as np

logger = logging.getLogger("ferkeras.downstream.identity")

HELD_OUT_FIRST_IDENTITY = 100_000
"""First synthetic identity of :func:`synthetic_identity_set`: far beyond every training / validation / test range of
:mod:`ferkeras.data.splits`, so the encoder never saw these people."""


def _unit(features) -> np.ndarray:
    f = np.asarray(features, np.float64)
    if f.ndim != 2:
        raise ValueError(f"identity leakage: features must be (N, D), got shape {f.shape}")
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    return f / np.maximum(norm, 1e-12)


def _labels(identities, n) -> np.ndarray:
    ids = np.asarray(identities).reshape(-1)
    if len(ids) != n:
        raise ValueError(f"identity leakage: {len(ids)} identities for {n} feature vectors")
    _, codes = np.unique(ids.astype(str), return_inverse=True)
    return codes


def cosine_similarity_matrix(features) -> np.ndarray:
    """(N, N) cosine similarities of the rows of ``features`` (a zero row has similarity 0 to everything)."""
    f = _unit(features)
    return f @ f.T


def knn_identification_accuracy(features, identities, k: int = 1) -> float:
    """Leave-one-out k-NN identification accuracy with cosine similarity (module docstring).

    Args:
        features: (N, D) features.  identities: N identity labels (any type; compared as strings).
        k: neighbours (>= 1, < N).
    """
    f = _unit(features)
    n = len(f)
    codes = _labels(identities, n)
    if not 1 <= int(k) < n:
        raise ValueError(f"knn_identification_accuracy: k must be in [1, {n - 1}] for {n} faces, got {k}")
    k = int(k)
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    neighbours = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    num_ids = codes.max() + 1
    votes = np.zeros((n, num_ids))
    weight = np.zeros((n, num_ids))
    rows = np.repeat(np.arange(n), k)
    np.add.at(votes, (rows, codes[neighbours].ravel()), 1.0)
    np.add.at(weight, (rows, codes[neighbours].ravel()), sim[rows, neighbours.ravel()])
    # majority vote; a tie goes to the identity with the larger summed similarity (< 1e-6 of a vote per unit)
    score = votes + 1e-6 * weight / k
    return float(np.mean(np.argmax(score, axis=1) == codes))


def identification_chance(identities) -> float:
    """Expected leave-one-out 1-NN accuracy of features independent of identity: ``sum n_i (n_i - 1) / (N (N-1))``."""
    codes = _labels(identities, len(np.asarray(identities).reshape(-1)))
    counts = np.bincount(codes).astype(np.float64)
    n = counts.sum()
    return float((counts * (counts - 1)).sum() / (n * (n - 1))) if n > 1 else float("nan")


def verification_pairs(identities, num_pairs: int = 3000, seed: int = 0):
    """Balanced pairs ``(i, j, same)``: ``num_pairs // 2`` same-identity pairs and as many different-identity pairs,
    drawn uniformly without repeats where possible. Raises ``ValueError`` if no identity has two faces."""
    codes = _labels(identities, len(np.asarray(identities).reshape(-1)))
    n = len(codes)
    rng = np.random.default_rng(seed)
    i_all, j_all = np.triu_indices(n, 1)
    same_mask = codes[i_all] == codes[j_all]
    same_idx, diff_idx = np.flatnonzero(same_mask), np.flatnonzero(~same_mask)
    if len(same_idx) == 0 or len(diff_idx) == 0:
        raise ValueError(f"verification needs faces of at least two identities, one of them with >= 2 faces; got "
                         f"{n} faces of {codes.max() + 1} identities")
    half = max(1, int(num_pairs) // 2)
    take_same = rng.choice(same_idx, min(half, len(same_idx)), replace=False)
    take_diff = rng.choice(diff_idx, min(half, len(diff_idx)), replace=False)
    idx = np.concatenate([take_same, take_diff])
    return i_all[idx], j_all[idx], np.concatenate([np.ones(len(take_same), bool), np.zeros(len(take_diff), bool)])


def roc_auc(scores, positive) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties counting 1/2."""
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks of ties (1-based)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _best_threshold(scores, same):
    """The threshold (a midpoint between sorted scores, or beyond them) with the best accuracy of
    ``score > threshold <=> same``."""
    s = np.sort(np.unique(scores))
    candidates = np.concatenate([[s[0] - 1.0], (s[:-1] + s[1:]) / 2.0, [s[-1] + 1.0]])
    acc = [(np.mean((scores > t) == same), -abs(t)) for t in candidates]
    return float(candidates[max(range(len(candidates)), key=lambda i: acc[i])])


def verification_accuracy(features, identities, num_pairs: int = 3000, folds: int = 10,
                          seed: int = 0) -> Dict[str, float]:
    """Face verification on balanced pairs with cosine similarity (module docstring).

    Returns ``{"accuracy": mean over folds of the accuracy at the threshold chosen on the other folds,
    "auc": ROC AUC of all pairs, "threshold": the threshold chosen on all pairs, "pairs": number of pairs}``.
    """
    f = _unit(features)
    i, j, same = verification_pairs(identities, num_pairs, seed)
    scores = np.sum(f[i] * f[j], axis=1)
    folds = max(2, min(int(folds), len(scores)))
    order = np.random.default_rng(seed + 1).permutation(len(scores))
    parts = np.array_split(order, folds)
    accs = []
    for k, test in enumerate(parts):
        train = np.concatenate([p for m, p in enumerate(parts) if m != k])
        t = _best_threshold(scores[train], same[train])
        accs.append(np.mean((scores[test] > t) == same[test]))
    return {"accuracy": float(np.mean(accs)), "auc": roc_auc(scores, same),
            "threshold": _best_threshold(scores, same), "pairs": int(len(scores))}


def leakage_scores(features, identities, k: Sequence[int] = (1, 5), num_pairs: int = 3000, folds: int = 10,
                   seed: int = 0) -> Dict[str, float]:
    """Every identity-leakage number of ``features`` as a flat dict (keys prefixed ``identity_``)."""
    f = np.asarray(features)
    codes = _labels(identities, len(f))
    out = {"identity_faces": int(len(f)), "identity_count": int(codes.max() + 1),
           "identity_knn_chance": identification_chance(identities)}
    for kk in k:
        if kk < len(f):
            out[f"identity_knn{kk}_accuracy"] = knn_identification_accuracy(f, identities, kk)
    ver = verification_accuracy(f, identities, num_pairs=num_pairs, folds=folds, seed=seed)
    out.update(identity_verification_accuracy=ver["accuracy"], identity_verification_auc=ver["auc"],
               identity_verification_pairs=ver["pairs"])
    return out


def extract_features(encoder, data, batch_size: int = 64):
    """Encoder features (float32 NumPy, (N, F)) of ``data``: an image array (N, S, S, 3) in [0, 1], or a
    ``tf.data.Dataset`` of image batches or of ``(images, targets)`` batches (then also returns the targets, each
    key concatenated: ``(features, targets)``)."""
    import tensorflow as tf

    if not isinstance(data, tf.data.Dataset):
        images = np.asarray(data)
        if images.ndim != 4:
            raise ValueError(f"extract_features: images must be (N, S, S, 3), got shape {images.shape}")
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
        out = [np.asarray(encoder(images[s:s + batch_size], training=False)) for s in range(0, len(images),
                                                                                                   batch_size)]
        return np.concatenate(out, 0) if out else np.zeros((0, encoder.output.shape[-1]), np.float32)
    feats, targets = [], {}
    with_targets = None
    for element in data:
        if isinstance(element, (tuple, list)):
            images, y = element[0], element[1]
            with_targets = True
            for key, value in (y.items() if isinstance(y, dict) else (("y", y),)):
                targets.setdefault(key, []).append(np.asarray(value))
        else:
            images, with_targets = element, False
        feats.append(np.asarray(encoder(images, training=False)))
    if not feats:
        raise ValueError("extract_features: the dataset is empty")
    features = np.concatenate(feats, 0)
    if not with_targets:
        return features
    return features, {k: np.concatenate(v, 0) for k, v in targets.items()}


def synthetic_identity_set(num_identities: int = 20, num_faces: int = 400, image_size: int = 64, seed: int = 0,
                           first_identity: int = HELD_OUT_FIRST_IDENTITY):
    """Synthetic faces of ``num_identities`` held-out identities (expressions, pose and lighting drawn
    independently of identity, :func:`ferkeras.data.synthetic.synthetic_arrays`): ``(images float32 in [0, 1],
    identities str)``."""
    from ferkeras.data.synthetic import synthetic_arrays

    if num_identities < 2 or num_faces < 2 * num_identities:
        raise ValueError(f"synthetic_identity_set: need >= 2 identities and >= 2 faces per identity on average; got "
                         f"num_identities={num_identities}, num_faces={num_faces}")
    a = synthetic_arrays(num_faces, size=image_size, seed=seed, num_identities=num_identities,
                         first_identity=first_identity)
    return a["images"].astype(np.float32) / 255.0, a["identity"]


def identity_leakage(encoder, data=None, identities=None, *, k: Sequence[int] = (1, 5), num_pairs: int = 3000,
                     folds: int = 10, seed: int = 0, batch_size: int = 64,
                     image_size: Optional[int] = None) -> Dict[str, float]:
    """Identity leakage of ``encoder`` (module docstring): k-NN identification and verification on faces of
    identities it never saw.  Lower = less identity in the features.

    Args:
        encoder: a Keras model images -> (B, F) features (:func:`ferkeras.downstream.load_encoder`).
        data: face images (N, S, S, 3) in [0, 1] (or uint8) with ``identities``; or a ``tf.data.Dataset`` of
            ``(images, {"identity": ...})`` batches (the pipelines' ``extras=("identity",)``); default
            :func:`synthetic_identity_set` at the encoder's input size (or ``image_size``).
        identities: N identity labels when ``data`` is an array.
        k: the k of each k-NN identification score.  num_pairs, folds: verification pairs and CV folds.
        seed: pair sampling (and the synthetic faces).
    Returns:
        the flat dict of :func:`leakage_scores` (``identity_knn1_accuracy``, ``identity_knn_chance``,
        ``identity_verification_accuracy``, ``identity_verification_auc``, counts).
    """
    import tensorflow as tf

    if data is None:
        size = image_size or encoder.inputs[0].shape[1]
        if size is None:
            raise ValueError("identity_leakage: the encoder accepts any image size; pass image_size")
        data, identities = synthetic_identity_set(image_size=int(size), seed=seed)
    if isinstance(data, tf.data.Dataset):
        features, targets = extract_features(encoder, data, batch_size)
        if "identity" not in targets:
            raise ValueError(f"identity_leakage: the dataset's targets have no 'identity' (keys {sorted(targets)}); "
                             "build it with extras=('identity',)")
        identities = targets["identity"]
    else:
        if identities is None:
            raise ValueError("identity_leakage: pass the identities of the images")
        features = extract_features(encoder, data, batch_size)
    ids = np.asarray(identities).reshape(-1)
    ids = np.array([i.decode() if isinstance(i, bytes) else str(i) for i in ids])
    known = ids != ""
    if not np.all(known):
        logger.warning("identity leakage: %d of %d faces have no identity and are left out", (~known).sum(), len(ids))
    return leakage_scores(features[known], ids[known], k=k, num_pairs=num_pairs, folds=folds, seed=seed)
