"""NumPy versions of AVCE's equations (Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial
Emotion Recognition", ECCV 2022): the similarities f (Eq. 4), f1 (Sec. 3.4), f2 (Eq. 5), L_AVCE (Eq. 2), L_dis (Eq. 8)
and InfoNCE (Eq. 1), plus finite-difference gradient checks, shared by the tests of ferkeras.methods.avce."""

import numpy as np
from tests.helpers import numeric_grad, tape_grad

MU, EPS = 0.75, 1e-7
BATCHES = [1, 2, 16, 128]
NAMES = ["f", "f1", "f2"]


# ---------------------------------------------------------------- plain NumPy versions of the paper's equations
def np_norm(v, eps=EPS):
    return np.sqrt(np.maximum(np.sum(v * v, axis=-1), eps * eps))


def np_f(x, y, mu=MU, eps=EPS):
    """Eq. 4 with the documented conventions (cosine clipped to [-1+eps, 1-eps], norms floored at eps)."""
    nx, ny = np_norm(x, eps), np_norm(y, eps)
    cos = np.clip(np.sum(x * y, axis=-1) / (nx * ny), -1 + eps, 1 - eps)
    return (1 - np.arccos(cos) / np.pi) + mu * (1 - np.abs(nx - ny))


def np_f_textbook(x, y, mu=MU):
    """Eq. 4 for 2-D vectors with the angle from atan2 and no eps anywhere."""
    theta = np.arctan2(np.abs(x[..., 0] * y[..., 1] - x[..., 1] * y[..., 0]), np.sum(x * y, axis=-1))
    return (1 - theta / np.pi) + mu * (1 - np.abs(np.linalg.norm(x, axis=-1) - np.linalg.norm(y, axis=-1)))


def np_sim(x, y, name, mu=MU):
    if name == "f1":
        return np.sum(x * y, axis=-1)
    value = np_f(x, y, mu)
    if name == "f2":
        value = value + np.where(np.sign(x[..., 0]) != np.sign(y[..., 0]), -0.5, 0.0) * (x[..., 0] * y[..., 0] != 0)
    return value


def np_avce(x, ya, yn, name="f", alpha=0.5, beta=0.005, gamma=0.5):
    fa, fn = np_sim(x, ya, name), np_sim(x, yn, name)
    objective = fa.mean() - alpha * fn.mean() - beta / 2 * (fa**2).mean() - gamma / 2 * (fn**2).mean()
    return -objective


def np_dis(v, va, vn, delta1=1.0, delta2=0.8, reduce=np.sum):
    def unit(u):
        return u / np_norm(u)[:, None]

    push = np.maximum(delta1 - np.sum((va - vn) ** 2, axis=1), 0.0)
    hold = (np_norm(unit(va) - unit(v)) - delta2) + (np_norm(unit(vn) - unit(v)) - delta2)
    return reduce(push + hold)


def np_infonce(x, ya, yn, name="f", temperature=1.0):
    """Eq. 1 per anchor i: candidates y_a_i (the positive, first) then y_n_j for every j."""
    batch = len(x)
    candidates = np.concatenate([ya[:, None], np.broadcast_to(yn[None], (batch, batch, yn.shape[1]))], axis=1)
    s = np_sim(x[:, None], candidates, name) / temperature
    return -np.mean(np.log(np.exp(s[:, 0]) / np.mean(np.exp(s), axis=1)))


def rand(shape, scale=1.0):
    return np.random.normal(scale=scale, size=shape)


def assert_grads_match(tf_fun, np_fun, arrays, rtol=1e-5, atol=1e-6):
    value, grads = tape_grad(tf_fun, arrays)
    np.testing.assert_allclose(value.numpy(), np_fun(*arrays), rtol=1e-10, atol=1e-12)
    for got, want in zip(grads, numeric_grad(np_fun, arrays)):
        np.testing.assert_allclose(got.numpy(), want, rtol=rtol, atol=atol)
