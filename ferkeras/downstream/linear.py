"""Downstream evaluation of a pre-trained encoder: linear evaluation (frozen) and fine-tuning with an MLP head.

Shu, Gu, Yang, Lo, "Revisiting Self-Supervised Contrastive Learning for Facial Expression Recognition", BMVC 2022,
Sec. 4.1 "Downstream evaluation" and Sec. 4.3: the encoder, frozen ("Freeze", ``mode="linear"``) or trained with
the head ("FineTune", ``mode="finetune"``), with "three MLP layers on top"
(:func:`ferkeras.models.heads.mlp_head`: 2048 -> 1024 -> 512 -> C, ReLU, dropout 0.5); Adam, learning rate 1e-4
with cosine annealing, weight decay 5e-4, batch 64 (the authors' code; docs/papers.md).  Keras' Adam applies the weight
decay decoupled (as AdamW); the paper does not say which form it used.

* expressions (``task="expression"``): balanced softmax cross-entropy (Ren et al., NeurIPS 2020, Eq. 4:
  cross-entropy on logits + log class prior, :class:`ferkeras.losses.balanced_softmax.BalancedSoftmaxLoss`) with
  the training set's class counts; reported: macro-F1 (the paper's metric), accuracy and average accuracy over the
  whole test set (:mod:`ferkeras.metrics.numpy_ref`); label -1 (unknown) is masked everywhere;
* valence-arousal (``task="va"``): the CCC loss ``1 - (CCC_v + CCC_a) / 2``
  (``AffectLoss(rmse_weight=0, pcc_weight=0, ccc_weight=1)``); the head ends in tanh (labels are in [-1, 1]);
  reported: CCC and RMSE (and PCC, SAGR) of valence, arousal and their mean; NaN labels are masked.

Data: ``tf.data`` pipelines of ``(images, targets)`` batches as :mod:`ferkeras.data` builds them (``targets`` a
dict with ``"expression"`` (B,) and / or ``"va"`` (B, 2)).  The training pipeline gives one pass per epoch unless
``steps_per_epoch`` is set (then it is repeated).

Linear evaluation caches features by default (``cache_features``): the frozen encoder (inference mode, so batch
normalisation uses its moving statistics) runs once over the training and test sets and the head trains on the
stored features, which gives the same model as running the encoder every step when the training pipeline has no
random augmentation, at a fraction of the cost.  With a random augmentation in the training pipeline, caching
draws it once; pass ``cache_features=False`` to draw it afresh every epoch.

``val_data`` selects the epoch (best macro-F1 / mean CCC on it, FER2013's protocol in the paper); without it the
last epoch is evaluated.  The caller's encoder is never modified: each evaluation trains a copy.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Dict, Optional, Sequence

import numpy as np

logger = logging.getLogger("ferkeras.downstream.linear")

TASKS = ("expression", "va")
MODES = ("linear", "finetune")
DEFAULT_HIDDEN = (1024, 512)
DEFAULT_DROPOUT = 0.5
DEFAULT_LEARNING_RATE = 1e-4
DEFAULT_WEIGHT_DECAY = 5e-4
DEFAULT_BATCH_SIZE = 64


def _check(task, mode, num_classes):
    if task not in TASKS:
        raise ValueError(f"downstream evaluation: task must be one of {TASKS}, got {task!r}")
    if mode not in MODES:
        raise ValueError(f"downstream evaluation: mode must be one of {MODES}, got {mode!r}")
    if task == "expression" and (num_classes is None or int(num_classes) < 2):
        raise ValueError(f"downstream evaluation: task='expression' needs num_classes >= 2, got {num_classes!r}")


def copy_encoder(encoder):
    """An independent copy of ``encoder`` with the same weights (``keras.models.clone_model``, or the class's
    ``from_config`` for a subclassed model)."""
    import keras

    try:
        clone = keras.models.clone_model(encoder)
    except Exception:  # subclassed models clone_model cannot handle
        clone = type(encoder).from_config(encoder.get_config())
        if not clone.built:
            clone.build((None,) + tuple(encoder.inputs[0].shape[1:]))
    clone.set_weights(encoder.get_weights())
    return clone


def _feature_dim(encoder) -> int:
    shape = tuple(encoder.output.shape)
    if len(shape) != 2 or shape[-1] is None:
        raise ValueError(f"downstream evaluation: the encoder {encoder.name!r} must output pooled features (B, F); "
                         f"it outputs {shape} (ferkeras.downstream.load_encoder pools a feature map)")
    return int(shape[-1])


def make_head(feature_dim: int, task: str, num_classes: Optional[int] = None, hidden=DEFAULT_HIDDEN,
              dropout: float = DEFAULT_DROPOUT):
    """The downstream head of ``task``: :func:`ferkeras.models.heads.mlp_head` to ``num_classes`` logits
    (expression) or to tanh valence-arousal (va)."""
    from ferkeras.models.heads import mlp_head

    if task == "expression":
        return mlp_head(feature_dim, int(num_classes), hidden=hidden, dropout=dropout, activation="linear",
                        name="expression_head")
    return mlp_head(feature_dim, 2, hidden=hidden, dropout=dropout, activation="tanh", name="va_head")


def build_downstream_model(encoder, task: str, mode: str = "linear", num_classes: Optional[int] = None,
                           hidden=DEFAULT_HIDDEN, dropout: float = DEFAULT_DROPOUT, head=None):
    """Images -> ``head(encoder(images))`` as one functional model, on a COPY of ``encoder`` (the caller's is left
    alone); ``mode="linear"`` freezes the copy and runs it in inference mode (batch normalisation on its moving
    statistics), ``"finetune"`` trains it with the head."""
    import keras

    _check(task, mode, num_classes)
    trunk = copy_encoder(encoder)
    head = head or make_head(_feature_dim(trunk), task, num_classes, hidden, dropout)
    image = keras.Input(tuple(trunk.inputs[0].shape[1:]), name="image")
    if mode == "linear":
        trunk.trainable = False
        features = trunk(image, training=False)
    else:
        features = trunk(image)
    return keras.Model(image, head(features), name=f"{task}_{mode}")


def _loss(task, class_counts):
    from ferkeras.losses.affect import AffectLoss
    from ferkeras.losses.balanced_softmax import BalancedSoftmaxLoss

    if task == "expression":
        return BalancedSoftmaxLoss(class_counts)
    return AffectLoss(rmse_weight=0.0, pcc_weight=0.0, ccc_weight=1.0, name="ccc_loss")


def _select(targets, task):
    """The ``task``'s labels from a pipeline's targets (a dict, or the labels themselves)."""
    if isinstance(targets, dict):
        if task not in targets:
            raise ValueError(f"downstream evaluation: the data has no {task!r} labels (target keys {sorted(targets)})")
        return targets[task]
    return targets


def _scan(data, task, num_classes):
    """One pass over the labels of ``data``: (number of batches, class counts or None)."""
    batches, counts = 0, np.zeros(int(num_classes or 0), np.int64)
    for element in data:
        batches += 1
        if task == "expression":
            labels = np.asarray(_select(element[1], task)).reshape(-1)
            labels = labels[labels >= 0]
            if labels.size and labels.max() >= num_classes:
                raise ValueError(f"downstream evaluation: expression label {labels.max()} >= num_classes={num_classes}")
            counts += np.bincount(labels, minlength=num_classes)[:num_classes]
    return batches, (counts if task == "expression" else None)


def scores(task: str, labels, predictions, num_classes: Optional[int] = None) -> Dict[str, float]:
    """Whole-set metrics of one task, as every ferkeras evaluation reports them
    (:func:`ferkeras.training.affect_scores`, the NumPy references of :mod:`ferkeras.metrics`): expression ->
    ``expression_{macro_f1,accuracy,average_accuracy,count,confusion}``; va -> ``{valence,arousal,mean}_{ccc,rmse,
    pcc,sagr}`` (``mean_*``: of the two axes) and ``va_count``."""
    from ferkeras.training import affect_scores

    return affect_scores({task: np.asarray(labels)}, {task: np.asarray(predictions)}, num_classes)


def _selection_score(task, metrics):
    value = metrics["expression_macro_f1"] if task == "expression" else metrics["mean_ccc"]
    return -math.inf if value is None or not np.isfinite(value) else float(value)


def _predict(model, data, task):
    """Predictions and labels of a whole ``(inputs, targets)`` dataset."""
    preds, labels = [], []
    for element in data:
        preds.append(np.asarray(model(element[0], training=False)))
        labels.append(np.asarray(_select(element[1], task)))
    if not preds:
        raise ValueError("downstream evaluation: an evaluation dataset is empty")
    return np.concatenate(labels, 0), np.concatenate(preds, 0)


def _feature_dataset(encoder, data, task, batch_size):
    """``(features, labels)`` of ``data`` through the (frozen, inference-mode) encoder, as NumPy arrays."""
    feats, labels = [], []
    for element in data:
        feats.append(np.asarray(encoder(element[0], training=False)))
        labels.append(np.asarray(_select(element[1], task)))
    if not feats:
        raise ValueError("downstream evaluation: a dataset to cache features from is empty")
    return np.concatenate(feats, 0), np.concatenate(labels, 0)


def evaluate(encoder, train_data, test_data, *, task: str = "expression", mode: str = "linear",
             num_classes: Optional[int] = None, epochs: int = 20, steps_per_epoch: Optional[int] = None,
             learning_rate: float = DEFAULT_LEARNING_RATE, weight_decay: float = DEFAULT_WEIGHT_DECAY,
             batch_size: int = DEFAULT_BATCH_SIZE, hidden: Sequence[int] = DEFAULT_HIDDEN,
             dropout: float = DEFAULT_DROPOUT, class_counts=None, val_data=None,
             cache_features: Optional[bool] = None, seed: int = 0, verbose=0, jit_compile=False,
             return_model: bool = False):
    """Trains a head (and, fine-tuning, a copy of the encoder) for one task and scores it on ``test_data``.

    Args:
        encoder: images -> (B, F) features (:func:`ferkeras.downstream.load_encoder`). Not modified.
        train_data, test_data: ``(images, targets)`` pipelines (module docstring); ``val_data`` optional.
        task: ``"expression"`` or ``"va"``.  mode: ``"linear"`` (frozen encoder) or ``"finetune"``.
        num_classes: expression classes (expression only).
        epochs: training epochs (SSL-FER: 20 on AffectNet, 300 on FER2013).
        steps_per_epoch: steps per epoch (repeats ``train_data``); default one pass of it.
        learning_rate, weight_decay: Adam with cosine decay to 0 over the run (SSL-FER: 1e-4, 5e-4).
        batch_size: of the head's training on cached features (the pipelines set their own otherwise).
        hidden, dropout: the MLP head (SSL-FER: (1024, 512), 0.5); ``hidden=()`` is a linear probe.
        class_counts: the training set's expression class counts (balanced softmax); default one pass over
            ``train_data``'s labels.
        cache_features: train the head on features computed once (default: True in linear mode).
        seed: Keras seed for the head's initialisation, dropout and the cached features' shuffling.
        verbose: Keras progress output.  jit_compile: XLA for the training step (``keras.Model.compile``; off by
            default: compiling costs more than a short evaluation gains on CPU).
        return_model: also return the trained model (encoder copy + head).
    Returns:
        a flat metrics dict (:func:`scores`, plus ``epochs_trained``, ``best_epoch``, ``train_seconds``,
        ``mode``, ``task``), or ``(metrics, model)`` with ``return_model``.
    """
    import keras
    import tensorflow as tf

    from ferkeras.metrics.classification import MacroF1
    from ferkeras.metrics.regression import CCC

    _check(task, mode, num_classes)
    if epochs < 1:
        raise ValueError(f"downstream evaluation: epochs must be >= 1, got {epochs}")
    cache = (mode == "linear") if cache_features is None else bool(cache_features)
    if cache and mode != "linear":
        raise ValueError("downstream evaluation: cache_features needs mode='linear' (a fine-tuned encoder changes)")
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    model = build_downstream_model(encoder, task, mode, num_classes, tuple(hidden), dropout)
    trunk, head = model.layers[1], model.layers[2]

    if cache:
        x_train, y_train = _feature_dataset(trunk, train_data, task, batch_size)
        if task == "expression" and class_counts is None:
            y = y_train.reshape(-1)
            class_counts = np.bincount(y[y >= 0], minlength=num_classes)[:num_classes]
        steps = steps_per_epoch or max(1, len(x_train) // batch_size)
        fit_data = (tf.data.Dataset.from_tensor_slices((x_train.astype(np.float32), y_train))
                    .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
                    .batch(batch_size, drop_remainder=len(x_train) >= batch_size).repeat())
        trained = head
        evaluate_on = {name: _feature_dataset(trunk, d, task, batch_size) for name, d in
                       (("test", test_data), ("val", val_data)) if d is not None}
    else:
        if steps_per_epoch is None or (task == "expression" and class_counts is None):
            batches, counts = _scan(train_data, task, num_classes)
            class_counts = counts if class_counts is None else class_counts
            steps = steps_per_epoch or batches
        else:
            steps = steps_per_epoch
        fit_data = train_data.map(lambda x, y: (x, _select(y, task))).repeat()
        trained = model
    if steps < 1:
        raise ValueError("downstream evaluation: the training data gives no batch")

    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, epochs * steps))
    metrics = ([MacroF1(num_classes, name="macro_f1")] if task == "expression" else [CCC(name="ccc")])
    trained.compile(optimizer=keras.optimizers.Adam(schedule, weight_decay=weight_decay),
                    loss=_loss(task, class_counts), metrics=metrics, jit_compile=jit_compile)

    def scored(split):
        if cache:
            features, labels = evaluate_on[split]
            preds = np.concatenate([np.asarray(head(features[s:s + 4096], training=False))
                                    for s in range(0, len(features), 4096)], 0)
            return scores(task, labels, preds, num_classes)
        return scores(task, *_predict(model, test_data if split == "test" else val_data, task), num_classes)

    best_score, best_weights, best_epoch = -math.inf, None, int(epochs)
    if val_data is None:
        trained.fit(fit_data, epochs=epochs, steps_per_epoch=steps, verbose=verbose, shuffle=False)
    else:
        for epoch in range(epochs):
            trained.fit(fit_data, initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=steps, verbose=verbose,
                        shuffle=False)
            value = _selection_score(task, scored("val"))
            if best_weights is None or value > best_score:
                best_score, best_epoch = value, epoch + 1
                best_weights = [np.array(w) for w in trained.get_weights()]
        trained.set_weights(best_weights)
    result = scored("test")
    result.update(task=task, mode=mode, epochs_trained=int(epochs), steps_per_epoch=int(steps),
                  best_epoch=best_epoch,
                  train_seconds=time.perf_counter() - start, cached_features=cache)
    if task == "expression":
        result["class_counts"] = [int(c) for c in np.asarray(class_counts).reshape(-1)]
    logger.info("%s %s evaluation: %s", mode, task,
                {k: v for k, v in result.items() if isinstance(v, float)})
    return (result, model) if return_model else result


def evaluate_tasks(encoder, train_data, test_data, tasks: Sequence[str] = ("expression", "va"), **kwargs) -> Dict:
    """:func:`evaluate` for each of ``tasks`` (each on its own copy of the encoder), the metrics merged into one
    dict (the per-task bookkeeping under ``"<task>_details"``)."""
    out = {}
    for task in tasks:
        result = evaluate(encoder, train_data, test_data, task=task, **kwargs)
        details = {k: result.pop(k) for k in ("task", "mode", "epochs_trained", "steps_per_epoch", "best_epoch",
                                               "train_seconds", "cached_features", "class_counts") if k in result}
        out.update(result)
        out[f"{task}_details"] = details
    return out
