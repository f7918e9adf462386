"""Round-trip checks every ferkeras test of a layer, loss or model calls (``from tests import helpers``).

* :func:`assert_config_roundtrip` -- ``get_config`` -> ``from_config`` gives the same object again.
* :func:`assert_keras_roundtrip` -- ``model.save("*.keras")`` -> ``keras.saving.load_model`` gives the same weights
  and the same outputs.
* :func:`assert_savedmodel_roundtrip` -- ``model.export`` (TF SavedModel) -> ``tf.saved_model.load`` serves the same
  outputs.
* :func:`run_task_model_test` -- the one test every method's task model goes through: build, one training step on a
  batch as its dataset yields it, finite losses, changed weights, ``.keras`` and SavedModel round-trips.

Each helper raises ``AssertionError`` with a message naming what differs; each is shown to fail on a broken object
in ``tests/test_helpers.py``.
"""

import copy
import inspect
import json
import tempfile
from pathlib import Path

import numpy as np
import keras
import tensorflow as tf

__all__ = ["assert_config_roundtrip", "assert_keras_roundtrip", "assert_savedmodel_roundtrip",
           "run_task_model_test"]

# Types whose values a constructor argument may hold and that compare with ``==`` (see _plain).
_SCALARS = (bool, int, float, str, type(None), np.integer, np.floating, np.bool_)


# ------------------------------------------------------------------------------------------------ small utilities
def _describe(obj):
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _canonical(value):
    """A config value in a form that compares with ``==``: tuples as lists, NumPy values as Python values."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, np.ndarray):
        return _canonical(value.tolist())
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value


def _first_difference(a, b, path="config"):
    """The first place where two canonical configs differ, as ``"config['units']: 8 != 4"``; ``None`` if equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                side = "original" if key not in a else "clone"
                return f"{path}[{key!r}] missing in the {side}"
            diff = _first_difference(a[key], b[key], f"{path}[{key!r}]")
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            diff = _first_difference(x, y, f"{path}[{i}]")
            if diff:
                return diff
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def _plain(value):
    """True for values a constructor argument is stored as and that compare meaningfully with ``==``."""
    if isinstance(value, _SCALARS):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _constructor_attributes(obj):
    """``{name: value}`` for every constructor parameter that ``obj`` keeps as a public attribute of the same name
    holding a plain value (number, string, bool, None, or lists / tuples / dicts of them)."""
    try:
        params = inspect.signature(type(obj).__init__).parameters
    except (TypeError, ValueError):
        return {}
    found = {}
    for name, param in params.items():
        if name == "self" or name.startswith("_") or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        try:
            value = getattr(obj, name)
        except Exception:  # e.g. Keras properties that raise on models without a single input
            continue
        if _plain(value):
            found[name] = value
    return found


def _as_tensor_like(value):
    if isinstance(value, (tf.Tensor, tf.Variable)) or hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    return np.asarray(value)


def _assert_outputs_close(got, want, atol, what):
    """Same nested structure (lists and tuples alike), every leaf within ``atol`` (and rtol 1e-5)."""
    try:
        tf.nest.assert_same_structure(want, got, check_types=False)
    except (ValueError, TypeError) as err:
        raise AssertionError(f"{what}: output structure differs: expected {_structure(want)}, got "
                             f"{_structure(got)} ({err})") from None
    paths_want = _flatten_with_paths(want)
    paths_got = dict(_flatten_with_paths(got))
    for path, w in paths_want:
        g = paths_got[path]
        w, g = _as_tensor_like(w), _as_tensor_like(g)
        if w.shape != g.shape:
            raise AssertionError(f"{what}: output {path or '<root>'} has shape {g.shape}, expected {w.shape}")
        np.testing.assert_allclose(g.astype(np.float64) if g.dtype.kind == "f" else g,
                                   w.astype(np.float64) if w.dtype.kind == "f" else w,
                                   rtol=1e-5, atol=atol, err_msg=f"{what}: output {path or '<root>'}")


def _flatten_with_paths(structure):
    return [("/".join(str(k) for k in path), v) for path, v in keras.tree.flatten_with_path(structure)]


def _structure(value):
    return tf.nest.map_structure(lambda v: tuple(getattr(v, "shape", ())), value)


def _fresh_dir(tmp_path, stem):
    """A new directory under ``tmp_path`` (several round-trips may share one ``tmp_path``)."""
    Path(tmp_path).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{stem}_", dir=str(tmp_path)))


def _outputs(model, inputs):
    return model(inputs, training=False)


def _float32_numpy(inputs):
    """NumPy float64 leaves as float32 (what a Keras model computes in); everything else unchanged."""
    def cast(v):
        if isinstance(v, np.ndarray) and v.dtype == np.float64:
            return v.astype(np.float32)
        return v
    return tf.nest.map_structure(cast, inputs)


# ------------------------------------------------------------------------------------------------ get_config
def assert_config_roundtrip(obj):
    """``obj.get_config()`` -> ``type(obj).from_config`` rebuilds an equal object, also through JSON.

    Works for anything with ``get_config`` / ``from_config``: layers, losses, metrics, learning-rate schedules and
    models (functional, Sequential, or subclassed with a ``get_config``). Checks, in order:

    1. the clone's ``get_config()`` equals the original's (tuples and lists alike);
    2. every constructor argument that the original keeps as a public attribute of the same name (``self.units``
       for ``units=``) has the same value on the clone -- this catches a ``get_config`` that forgets an argument,
       which step 1 alone cannot see when the argument has a default;
    3. a built layer's clone, built from the original's ``get_build_config()``, has weights of the same shapes;
    4. ``keras.saving.serialize_keras_object`` -> JSON -> ``deserialize_keras_object`` gives the same config again
       (what a ``.keras`` file does: fails for a class that is not ``@keras.saving.register_keras_serializable``
       or whose config is not JSON-serialisable).

    Returns the clone made in step 1.
    """
    name = _describe(obj)
    if not hasattr(obj, "get_config") or not hasattr(type(obj), "from_config"):
        raise AssertionError(f"{name} has no get_config / from_config")
    config = obj.get_config()
    if not isinstance(config, dict):
        raise AssertionError(f"{name}.get_config() returned {type(config).__name__}, not a dict")
    try:
        clone = type(obj).from_config(copy.deepcopy(config))  # Functional.from_config consumes its argument
    except Exception as err:
        raise AssertionError(f"{name}.from_config(get_config()) failed: {type(err).__name__}: {err}") from err
    if type(clone) is not type(obj):
        raise AssertionError(f"{name}.from_config returned a {_describe(clone)}")
    diff = _first_difference(_canonical(config), _canonical(clone.get_config()))
    if diff:
        raise AssertionError(f"{name}: the clone's get_config() differs from the original's: {diff}")

    original_attrs, clone_attrs = _constructor_attributes(obj), _constructor_attributes(clone)
    for attr, value in original_attrs.items():
        if attr in clone_attrs and _canonical(clone_attrs[attr]) != _canonical(value):
            raise AssertionError(f"{name}: constructor argument {attr!r} is {value!r} on the original but "
                                 f"{clone_attrs[attr]!r} on the clone: get_config() does not record it")

    if isinstance(obj, keras.layers.Layer) and not isinstance(obj, keras.Model) and obj.built:
        build_config = obj.get_build_config()
        if build_config is not None and not clone.built:
            clone.build_from_config(build_config)
        want = [tuple(w.shape) for w in obj.weights]
        got = [tuple(w.shape) for w in clone.weights]
        if want != got:
            raise AssertionError(f"{name}: the rebuilt clone has weights {got}, the original {want}")

    try:
        serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(obj)))
    except TypeError as err:
        raise AssertionError(f"{name}: config is not JSON-serialisable: {err}") from err
    try:
        again = keras.saving.deserialize_keras_object(serialized)
    except Exception as err:
        raise AssertionError(f"{name}: keras.saving.deserialize_keras_object failed (is the class registered "
                             f"with @keras.saving.register_keras_serializable?): {type(err).__name__}: {err}") from err
    diff = _first_difference(_canonical(config), _canonical(again.get_config()))
    if diff:
        raise AssertionError(f"{name}: config differs after serialisation through JSON: {diff}")
    return clone


# ------------------------------------------------------------------------------------------------ .keras
def assert_keras_roundtrip(model, inputs, tmp_path, atol=1e-5):
    """``model.save(<dir>/model.keras)`` -> ``keras.saving.load_model``: same class, same weights (in order, by
    value) and the same inference outputs (``training=False``) on ``inputs`` within ``atol``. Outputs may be nested
    (dicts, lists, tuples). Returns the reloaded model."""
    inputs = _float32_numpy(inputs)
    want = _outputs(model, inputs)
    path = _fresh_dir(tmp_path, "keras_roundtrip") / "model.keras"
    model.save(str(path))
    try:
        loaded = keras.saving.load_model(str(path))
    except Exception as err:
        raise AssertionError(f"keras.saving.load_model({path}) failed for {_describe(model)}: "
                             f"{type(err).__name__}: {err}") from err
    if type(loaded) is not type(model):
        raise AssertionError(f"{path} reloads as {_describe(loaded)}, not {_describe(model)}")
    want_w, got_w = model.weights, loaded.weights
    if len(want_w) != len(got_w):
        raise AssertionError(f"{path}: {len(got_w)} weights after reload, {len(want_w)} before")
    for w, g in zip(want_w, got_w):
        if tuple(w.shape) != tuple(g.shape):
            raise AssertionError(f"{path}: weight {w.path} has shape {tuple(g.shape)} after reload, "
                                 f"{tuple(w.shape)} before")
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(g), keras.ops.convert_to_numpy(w),
                                   err_msg=f"{path}: weight {w.path} changed in the .keras round-trip")
    _assert_outputs_close(_outputs(loaded, inputs), want, atol, f".keras round-trip of {_describe(model)}")
    return loaded


# ------------------------------------------------------------------------------------------------ SavedModel
def _serve_inputs(function, inputs):
    """``inputs`` cast to the dtypes of the restored function's input signature (when it has exactly one)."""
    concrete = getattr(function, "concrete_functions", None) or []
    if len(concrete) == 1:
        args, _ = concrete[0].structured_input_signature
        if len(args) == 1:
            try:
                return tf.nest.map_structure(lambda spec, v: tf.convert_to_tensor(v, dtype=spec.dtype),
                                             args[0], inputs, check_types=False)
            except (ValueError, TypeError):
                pass
    return tf.nest.map_structure(tf.convert_to_tensor, inputs)


def assert_savedmodel_roundtrip(model, inputs, tmp_path, atol=1e-5):
    """A Keras model: ``model.export(dir)`` (TF SavedModel with the ``serve`` endpoint); any other ``tf.Module``:
    ``tf.saved_model.save``. Then ``tf.saved_model.load`` in this process and compare ``serve(inputs)`` (or the
    module's ``__call__``) with the model's inference outputs on ``inputs`` within ``atol``. Returns the loaded
    object (keep a reference while using its outputs: its variables die with it)."""
    inputs = _float32_numpy(inputs)
    want = _outputs(model, inputs) if isinstance(model, keras.Model) else model(inputs)
    export_dir = _fresh_dir(tmp_path, "saved_model") / "export"
    if isinstance(model, keras.Model):
        model.export(str(export_dir), format="tf_saved_model", verbose=False)
    else:
        tf.saved_model.save(model, str(export_dir))
    loaded = tf.saved_model.load(str(export_dir))
    function = getattr(loaded, "serve", None) if isinstance(model, keras.Model) else loaded
    if function is None:
        raise AssertionError(f"{export_dir}: the SavedModel of {_describe(model)} has no 'serve' endpoint")
    got = function(_serve_inputs(function, inputs))
    _assert_outputs_close(got, want, atol, f"SavedModel round-trip of {_describe(model)}")
    return loaded


# ------------------------------------------------------------------------------------------------ task models
def _split_batch(batch):
    """The model inputs of a dataset element: ``x`` of ``(x, y[, sample_weight])``; the element itself otherwise."""
    if isinstance(batch, tuple) and 1 <= len(batch) <= 3:
        return batch[0]
    return batch


def _snapshot(variables):
    return [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in variables]


def run_task_model_test(model, batch, tmp_path, *, export=True, atol=1e-5, inputs=None, allow_unchanged=()):
    """The test every method's task model goes through, on one ``batch`` exactly as the model's dataset yields it
    (e.g. ``(images, {"va": va, "expression": labels})``).

    1. Build: calls the model once on the inputs if it is not built; compiles it with its own defaults
       (``model.compile()``) if the caller did not compile it.
    2. One training step through ``model.fit`` on ``tf.data.Dataset.from_tensors(batch)`` (so ``train_step`` sees
       the element as in real training): every logged value must be finite.
    3. Every trainable weight must have changed, except those whose ``path`` contains one of ``allow_unchanged``
       (for a part the method deliberately leaves alone, e.g. a head an ablation switches off); at least one must
       have changed in any case.
    4. ``.keras`` save / reload: same weights and inference outputs (:func:`assert_keras_roundtrip`).
    5. With ``export=True``: SavedModel export and reload serve the same outputs (:func:`assert_savedmodel_roundtrip`).

    Args:
        model: a ``keras.Model`` (compiled or not).
        batch: one dataset element (already batched).
        tmp_path: pytest's ``tmp_path``.
        export: also check the SavedModel export.
        atol: absolute tolerance of the output comparisons.
        inputs: the inference inputs of steps 4-5; default the ``x`` of ``batch`` (its first item when it is a
            tuple of 1-3 items, else the whole element).
        allow_unchanged: substrings of weight paths allowed to stay unchanged in step 3.

    Returns: ``{"logs": {name: float}, "reloaded": the .keras-reloaded model, "saved_model": the loaded SavedModel
    or None}``.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"run_task_model_test: expected a keras.Model, got {_describe(model)}")
    x = _float32_numpy(_split_batch(batch) if inputs is None else inputs)
    if not model.built:
        model(x, training=False)
    if not model.compiled:
        model.compile()
    trainable = list(model.trainable_weights)
    if not trainable:
        raise AssertionError(f"{_describe(model)} has no trainable weights")
    before = _snapshot(trainable)

    history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, steps_per_epoch=1, verbose=0,
                        shuffle=False)
    logs = {}
    for key, values in history.history.items():
        value = np.asarray(values[-1])
        if value.size == 1:
            logs[key] = float(value)
    if not logs:
        raise AssertionError(f"{_describe(model)}: the training step logged no scalar value")
    bad = {k: v for k, v in logs.items() if not np.isfinite(v)}
    if bad:
        raise AssertionError(f"{_describe(model)}: non-finite values logged by the training step: {bad}")

    after = _snapshot(trainable)
    unchanged = [v.path for v, b, a in zip(trainable, before, after) if np.array_equal(b, a)]
    if len(unchanged) == len(trainable):
        raise AssertionError(f"{_describe(model)}: no trainable weight changed in the training step")
    not_allowed = [p for p in unchanged if not any(s in p for s in allow_unchanged)]
    if not_allowed:
        raise AssertionError(f"{_describe(model)}: {len(not_allowed)} trainable weights did not change in the "
                             f"training step: {not_allowed[:10]}{' ...' if len(not_allowed) > 10 else ''}")
    bad_weights = [v.path for v, a in zip(trainable, after) if a.dtype.kind == "f" and not np.all(np.isfinite(a))]
    if bad_weights:
        raise AssertionError(f"{_describe(model)}: non-finite weights after the training step: {bad_weights[:10]}")

    reloaded = assert_keras_roundtrip(model, x, tmp_path, atol=atol)
    saved = assert_savedmodel_roundtrip(model, x, tmp_path, atol=atol) if export else None
    return {"logs": logs, "reloaded": reloaded, "saved_model": saved}


# ---------------------------------------------------------------------------------------- gradients and views
def numeric_grad(fun, arrays, h=1e-6):
    """Central finite differences of the scalar NumPy function ``fun(*arrays)`` with respect to every array
    (computed in float64); the reference the losses' ``tf.GradientTape`` gradients are checked against."""
    arrays = [np.asarray(a, np.float64) for a in arrays]
    grads = []
    for k, a in enumerate(arrays):
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            plus = [b.copy() for b in arrays]
            minus = [b.copy() for b in arrays]
            plus[k][idx] += h
            minus[k][idx] -= h
            g[idx] = (fun(*plus) - fun(*minus)) / (2 * h)
        grads.append(g)
    return grads


def numeric_grad_at(fun, x, h=1e-5):
    """:func:`numeric_grad` of a function of one array: the gradient of the scalar ``fun(x)`` at ``x``."""
    return numeric_grad(fun, [x], h)[0]


def tape_grad(fun, arrays):
    """``(fun(*tensors), gradients)`` of a TensorFlow function of the arrays, through ``tf.GradientTape``."""
    tensors = [tf.constant(a) for a in arrays]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        value = fun(*tensors)
    return value, tape.gradient(value, tensors)


def contrastive_views(rng, B, K, D):
    """Random float32 anchor (B, D), positive (B, D) near it, and K hard negatives (B, K, D) (None when K = 0)."""
    a = rng.normal(size=(B, D)).astype(np.float32)
    p = (a + 0.7 * rng.normal(size=(B, D))).astype(np.float32)
    h = rng.normal(size=(B, K, D)).astype(np.float32) if K else None
    return a, p, h


# ------------------------------------------------------------------------------------------- subprocesses
REPO = str(Path(__file__).resolve().parent.parent)
"""The repository root (the experiment binaries and tools run with it as working directory and on PYTHONPATH)."""


def script_env(**extra):
    """The environment of a binary or tool run as a user runs it: quiet TensorFlow, a non-interactive matplotlib,
    the repository on PYTHONPATH; ``extra`` variables on top."""
    import os

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_script(script, *args, timeout=600):
    """Runs ``python script args...`` from the repository root; returns the ``subprocess.CompletedProcess``."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout,
                          env=script_env(), cwd=REPO)


def file_tree(path):
    """Every file under ``path``: relative name -> (size, mtime_ns, sha256), to show that a run directory was left
    untouched (no file added, removed, rewritten or re-saved)."""
    import hashlib
    import os

    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            stat = os.stat(full)
            out[os.path.relpath(full, path)] = (stat.st_size, stat.st_mtime_ns, digest)
    return out


def free_ports(n):
    """``n`` distinct free TCP ports on localhost (bound to port 0 and released), for worker processes."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
