"""Whole-set evaluation of a trained model and its report (result.json and figures in the run directory).

Each metric is computed twice: with the model's streaming Keras metrics (``model.evaluate``) and with the NumPy
references of :mod:`ferkeras.metrics.numpy_ref` over the collected predictions of the *whole* held-out set (the
textbook definitions; PCC/CCC are not averaged per batch).  :func:`affect_scores` and :func:`jsonable` are also what
the evaluation callbacks of :mod:`ferkeras.callbacks` use.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import keras
import numpy as np

from ferkeras.data.schema import MISSING_INT
from ferkeras.metrics import numpy_ref
from ferkeras.viz import plots


def jsonable(value: Any) -> Any:
    """Python/NumPy values -> strict JSON values (mappings with str keys, lists, int, float; non-finite floats
    become None, i.e. null)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def class_names_to_ids(labels, class_names: Optional[Sequence[str]], owner: str = "labels") -> np.ndarray:
    """Expression labels given as class names -> int64 class ids; any other labels are returned unchanged.

    Labels that are ``str`` or ``bytes`` (a ``tf.string`` tensor gives ``bytes``, e.g. ``b"surprise"``) are looked
    up in ``class_names`` (exactly, else ignoring case and surrounding spaces); an empty name means "no label"
    (:data:`~ferkeras.data.schema.MISSING_INT`, -1).  Raises ValueError naming the first unknown names and the
    class names, or when names are given without ``class_names``.
    """
    array = np.asarray(labels)
    if array.dtype.kind not in "SUO" or array.size == 0:
        return array
    flat = array.reshape(-1)
    if array.dtype.kind == "O" and not all(isinstance(v, (str, bytes)) for v in flat):
        return array  # e.g. Python ints in an object array: numbers, not names
    names = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]
    if not class_names:
        raise ValueError(f"{owner}: the labels are class names ({names[:3]} ...) but no class_names were given to "
                         f"map them to the model's classes")
    class_names = [str(c) for c in class_names]
    exact = {c: i for i, c in enumerate(class_names)}
    folded: Dict[str, int] = {}
    for i, c in enumerate(class_names):
        folded.setdefault(c.strip().lower(), i)
    ids = np.empty(len(names), np.int64)
    unknown = []
    for j, name in enumerate(names):
        key = name.strip()
        if not key:
            ids[j] = MISSING_INT
        elif name in exact:
            ids[j] = exact[name]
        elif key.lower() in folded:
            ids[j] = folded[key.lower()]
        else:
            ids[j] = MISSING_INT
            if name not in unknown:
                unknown.append(name)
    if unknown:
        raise ValueError(f"{owner}: {len(unknown)} label name(s) not among class_names {class_names}: first "
                         f"{unknown[:5]}; pass the class names of the labels, in the order of the model's scores")
    return ids.reshape(array.shape)


def collect_predictions(model: keras.Model, dataset: Iterable, steps: Optional[int] = None
                        ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """Runs ``model`` over ``(inputs, labels)`` batches of ``dataset`` once; returns ``(labels, predictions)``.

    Both are dicts of stacked NumPy arrays keyed like the model's outputs
    (``"va"``, ``"expression"``); label keys without a matching output are kept
    too.  The dataset must be finite (or ``steps`` given) and not shuffled
    between this and any other pass.
    """
    labels: Dict[str, list] = {}
    preds: Dict[str, list] = {}
    replicas = getattr(getattr(model, "distribute_strategy", None), "num_replicas_in_sync", 1)
    for step, (x, y) in enumerate(dataset):
        if steps is not None and step >= steps:
            break
        # Under a strategy of several replicas predict_on_batch hands every replica the whole batch and
        # concatenates their outputs (N copies); the model's weights are the same on every replica, so call it.
        out = model(x, training=False) if replicas > 1 else model.predict_on_batch(x)
        if not isinstance(out, Mapping):
            out = {model.output_names[0]: out}
        for key, value in out.items():
            preds.setdefault(key, []).append(np.asarray(value))
        for key, value in (y.items() if isinstance(y, Mapping) else [(model.output_names[0], y)]):
            labels.setdefault(key, []).append(np.asarray(value))
    if not preds:
        raise ValueError("collect_predictions: the evaluation dataset yielded no batch")
    return ({k: np.concatenate(v) for k, v in labels.items()}, {k: np.concatenate(v) for k, v in preds.items()})


def affect_scores(labels: Mapping[str, np.ndarray], preds: Mapping[str, np.ndarray],
                  num_classes: Optional[int] = None, class_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Whole-set metrics from the NumPy references of :mod:`ferkeras.metrics.numpy_ref`.

    For a ``"va"`` prediction: ``{valence,arousal,mean}_{rmse,sagr,pcc,ccc}``
    (``mean_*`` = mean of the two axes) and ``va_count`` (labelled rows).  For
    an ``"expression"`` prediction (logits): ``expression_{accuracy,
    average_accuracy, macro_f1}``, ``expression_count`` and the confusion
    matrix (rows true, columns predicted).  Unlabelled entries (NaN VA, -1
    class) are left out; a set without labels gives NaN (null in JSON).  Expression labels may be class
    names (``str`` / ``bytes``), mapped through ``class_names`` (:func:`class_names_to_ids`).
    """
    scores: Dict[str, Any] = {}
    if "va" in preds and "va" in labels:
        y_true = np.asarray(labels["va"], np.float64).reshape(-1, 2)
        y_pred = np.asarray(preds["va"], np.float64).reshape(-1, 2)
        for metric in ("rmse", "sagr", "pcc", "ccc"):
            fn = getattr(numpy_ref, metric)
            for index, axis in ((0, "valence"), (1, "arousal"), (None, "mean")):
                scores[f"{axis}_{metric}"] = fn(y_true, y_pred, index=index)
        scores["va_count"] = int(np.all(np.isfinite(y_true), axis=1).sum())
    if "expression" in preds and "expression" in labels:
        logits = np.asarray(preds["expression"])
        y_true = class_names_to_ids(labels["expression"], class_names, "expression labels").reshape(-1)
        classes = num_classes or (len(class_names) if class_names else logits.shape[-1])
        m = numpy_ref.confusion_matrix(y_true, logits, classes)
        scores["expression_accuracy"] = numpy_ref.accuracy_from_confusion(m)
        scores["expression_average_accuracy"] = numpy_ref.average_accuracy_from_confusion(m)
        scores["expression_macro_f1"] = numpy_ref.macro_f1_from_confusion(m)
        scores["expression_count"] = int(m.sum())
        scores["expression_confusion"] = m.tolist()
    return scores


def evaluate_and_report(model: keras.Model, dataset, run_dir, extra: Optional[Mapping[str, Any]] = None,
                        title: str = "", class_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Evaluates ``model`` on the whole held-out ``dataset`` and writes result.json and the figures into
    ``run_dir`` (a :class:`ferkeras.training.RunDir`, which names the files).

    result.json holds ``metrics`` (NumPy references over the collected
    predictions, :func:`affect_scores`), ``keras_metrics`` (``model.evaluate``
    with the compiled streaming metrics), the figure file names (in the run
    directory), ``class_names`` (if given) and ``extra``
    (flags, timings ... from the caller).  Returns the same dict.
    """
    keras_scores = model.evaluate(dataset, return_dict=True, verbose=0)
    labels, preds = collect_predictions(model, dataset)
    scores = affect_scores(labels, preds, num_classes=len(class_names) if class_names else None,
                           class_names=class_names)
    result: Dict[str, Any] = {"metrics": scores, "keras_metrics": {k: float(v) for k, v in keras_scores.items()},
                              "figures": {}}
    if class_names:
        result["class_names"] = list(class_names)
    if "valence_ccc" in scores:
        plots.plot_va_scatter(labels["va"], preds["va"], run_dir.file(run_dir.VA_SCATTER), scores=scores,
                              title=title)
        result["figures"]["va_scatter"] = run_dir.VA_SCATTER
    history = run_dir.read_history()
    if history:
        plots.plot_training_curves(history, run_dir.file(run_dir.CURVES), title=title)
        result["figures"]["training_curves"] = run_dir.CURVES
    result.update(dict(extra or {}))
    run_dir.write_result(result)
    return result


__all__ = ("affect_scores", "class_names_to_ids", "collect_predictions", "evaluate_and_report", "jsonable")
