"""ferkeras.downstream.identity: k-NN identification and verification against brute-force NumPy, and identity
leakage of encoders whose features are known to hold (or not) the identity."""

import itertools

import numpy as np
import pytest

from ferkeras import downstream
from ferkeras.data import pipeline
from ferkeras.data.synthetic import synthetic_arrays
from ferkeras.downstream import identity
from tests.downstream.stamps import blind_encoder, class_grey, code_reader, stamp


def _brute_knn(features, ids, k):
    f = np.asarray(features, np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    right = 0
    for i in range(len(f)):
        sims = [(float(f[i] @ f[j]), j) for j in range(len(f)) if j != i]
        sims.sort(key=lambda t: -t[0])  # stable: equal similarities keep index order
        top = sims[:k]
        votes = {}
        for s, j in top:
            n, total = votes.get(ids[j], (0, 0.0))
            votes[ids[j]] = (n + 1, total + s)
        best = max(votes.items(), key=lambda kv: (kv[1][0], kv[1][1]))[0]
        right += best == ids[i]
    return right / len(f)


@pytest.mark.parametrize("n, d, num_ids, k", [(30, 4, 5, 1), (40, 8, 4, 3), (25, 2, 6, 5), (12, 3, 2, 4)])
def test_knn_identification_matches_brute_force(n, d, num_ids, k):
    rng = np.random.default_rng(n + k)
    ids = np.array([f"p{i}" for i in rng.integers(0, num_ids, n)])
    features = rng.normal(size=(n, d)) + 0.8 * np.eye(num_ids, d)[np.unique(ids, return_inverse=True)[1] % d]
    assert identity.knn_identification_accuracy(features, ids, k) == pytest.approx(_brute_knn(features, ids, k))


def test_knn_edge_cases():
    ids = np.array(["a", "a", "b", "b"])
    perfect = np.array([[1, 0], [2, 0], [0, 1], [0, 3]], float)
    assert identity.knn_identification_accuracy(perfect, ids, 1) == 1.0
    # +-1 cosines: exact opposites are the least similar
    opposite = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], float)
    assert identity.knn_identification_accuracy(opposite, ids, 1) == 0.0
    # zero vectors do not crash (similarity 0 to everything)
    assert 0.0 <= identity.knn_identification_accuracy(np.zeros((4, 3)), ids, 1) <= 1.0
    with pytest.raises(ValueError, match="k must be"):
        identity.knn_identification_accuracy(perfect, ids, 4)
    with pytest.raises(ValueError, match="identities for"):
        identity.knn_identification_accuracy(perfect, ids[:3], 1)


def test_identification_chance_is_the_expected_accuracy_of_uninformative_features():
    ids = np.array(["a"] * 6 + ["b"] * 3 + ["c"])
    want = (6 * 5 + 3 * 2) / (10 * 9)
    assert identity.identification_chance(ids) == pytest.approx(want)
    rng = np.random.default_rng(0)  # random features: 1-NN accuracy averages to the chance level
    accs = [identity.knn_identification_accuracy(rng.normal(size=(10, 8)), ids, 1) for _ in range(400)]
    assert np.mean(accs) == pytest.approx(want, abs=0.03)


def test_roc_auc_matches_pair_counting_with_ties():
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=60), 1)  # many ties
    positive = rng.random(60) < 0.4
    pos, neg = scores[positive], scores[~positive]
    want = np.mean([(p > q) + 0.5 * (p == q) for p, q in itertools.product(pos, neg)])
    assert identity.roc_auc(scores, positive) == pytest.approx(want)


def test_verification_on_perfect_and_random_features():
    rng = np.random.default_rng(2)
    ids = np.repeat(np.arange(10), 8).astype(str)
    perfect = np.eye(10)[ids.astype(int)] + 0.01 * rng.normal(size=(80, 10))
    ver = identity.verification_accuracy(perfect, ids, num_pairs=400, folds=10)
    assert ver["accuracy"] == 1.0 and ver["auc"] == 1.0 and ver["pairs"] == 400
    noise = identity.verification_accuracy(rng.normal(size=(80, 10)), ids, num_pairs=400)
    assert abs(noise["accuracy"] - 0.5) < 0.1 and abs(noise["auc"] - 0.5) < 0.1
    i, j, same = identity.verification_pairs(ids, 400)
    assert same.sum() == 200 and np.all((ids[i] == ids[j]) == same) and np.all(i != j)
    with pytest.raises(ValueError, match="at least two identities"):
        identity.verification_pairs(np.arange(5).astype(str))


def _stamped_identity_faces(size=32, num_identities=10, n=300):
    a = synthetic_arrays(n, size=size, seed=5, num_identities=num_identities, first_identity=1000)
    codes = np.unique(a["identity"], return_inverse=True)[1]
    images = stamp(a["images"] / 255.0, class_grey(codes, num_identities), "top_left")
    images = stamp(images, class_grey(a["expression"], 8), "top_right")
    return images, a["identity"], a


def test_identity_leakage_separates_identity_features_from_expression_features():
    """Same faces; one encoder's features are the identity (top-left stamp), the other's the expression (top-right):
    the first leaks identity completely, the second about as much as chance."""
    images, ids, _ = _stamped_identity_faces()
    leaky = downstream.identity_leakage(code_reader(32, "top_left", 10), images, ids, num_pairs=1000)
    clean = downstream.identity_leakage(code_reader(32, "top_right", 8), images, ids, num_pairs=1000)
    assert leaky["identity_knn1_accuracy"] > 0.95 and leaky["identity_verification_accuracy"] > 0.95, leaky
    assert clean["identity_knn1_accuracy"] < leaky["identity_knn_chance"] + 0.15, clean
    assert clean["identity_verification_accuracy"] < 0.7 and clean["identity_verification_auc"] < 0.7, clean
    assert leaky["identity_count"] == 10 and leaky["identity_faces"] == 300
    assert {"identity_knn5_accuracy", "identity_verification_pairs"} <= set(leaky)


def test_identity_leakage_from_a_dataset_and_by_default():
    images, ids, a = _stamped_identity_faces(n=120)
    encoder = code_reader(32, "top_left", 10)
    ds = pipeline.from_arrays(images, identity=ids, extras=("identity",), batch_size=32)
    from_ds = downstream.identity_leakage(encoder, ds, num_pairs=500)
    from_arrays = downstream.identity_leakage(encoder, images, ids, num_pairs=500)
    assert from_ds == from_arrays
    default = downstream.identity_leakage(blind_encoder(32), num_pairs=500)  # held-out synthetic identities
    assert default["identity_count"] == 20 and default["identity_faces"] == 400
    # raw synthetic faces carry identity (skin, hair, background): even random features beat chance
    assert default["identity_knn1_accuracy"] > default["identity_knn_chance"]
    with pytest.raises(ValueError, match="no 'identity'"):
        downstream.identity_leakage(encoder, pipeline.from_arrays(images, batch_size=32))
