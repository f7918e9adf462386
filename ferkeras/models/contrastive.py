"""The shared contrastive pre-training task model: encoder, projection head, a pluggable objective, an online probe.

One ``keras.Model`` serves every self-supervised method of ferkeras: SSL-FER (Shu, Gu, Yang, Lo, "Revisiting
Self-Supervised Contrastive Learning for Facial Expression Recognition", BMVC 2022: SimCLR's InfoNCE, Eq. 1, over
anchor, positive and hard negatives, with MaskFN's extra positive, Eq. 2), ContraWarping (Xue, Sun, Yang, CVPRW 2023:
BYOL with locally warped negatives, by subclassing, see "Hooks" below) and RMFER (Cho et al. 2024: multi-positive
contrastive learning, through its objective and extra view keys). The method-specific part is the objective
(:class:`ferkeras.losses.objective.ContrastiveObjective`); the model does the rest the same way for all of them.

``train_step`` reads like SimCLR's algorithm (Chen, Kornblith, Norouzi, Hinton, ICML 2020, Algorithm 1):

1. ``extras = objective.precompute(batch)`` -- per-sample quantities computed without gradient (MaskFN's frozen
   eye / mouth features; an objective that needs batch metadata such as ``"track"`` returns it here);
2. ``features = encoder(all views)`` in ONE forward pass (the views are concatenated along the batch axis, so batch
   normalisation sees them together, as in SimCLR's 2N-sample batch), split back per view;
3. ``projections = projection_head(features)``, again in one pass;
4. under ``tf.distribute`` the projections and extras are ALL-GATHERED across replicas, so the objective sees the
   global batch and SimCLR's negatives come from all of it; ``tf.distribute``'s ``all_gather`` gradient sums the
   replicas' gradients of the (identical) global loss and hands each replica its slice, so dividing the loss by the
   number of replicas (:func:`ferkeras.losses.reduction.scale_for_replicas`) before the optimiser's SUM all-reduce
   gives exactly the one-device gradient of the global batch (``tests/models/test_contrastive.py`` checks this on
   two logical CPUs);
5. ``loss = objective(projections, extras)["loss"]``; the optimiser updates the encoder, the projection head and the
   objective's own trainable weights (:meth:`ContrastivePretrainer.pretrain_variables`);
6. :meth:`ContrastivePretrainer.after_train_step` (no-op here; BYOL's EMA update of its target network);
7. the optional ONLINE PROBE: a linear expression classifier and / or valence-arousal regressor on the
   stop-gradient anchor features, trained by its own optimiser (``compile(probe_optimizer=...)``) on the batch's
   ``"expression"`` (-1 = unknown, masked) and ``"va"`` (NaN = unknown, masked) labels when the batch carries them.
   It reports downstream quality while pre-training (``probe_accuracy``, ``probe_macro_f1``, ``probe_ccc`` and the
   probe losses) and never changes the encoder.

Batches are dicts (:mod:`ferkeras.data.video_views`): ``"anchor"`` (B, S, S, 3), ``"positive"`` (B, S, S, 3),
``"hard_negatives"`` (B, K, S, S, 3), further keys as the method needs (``"parts"``, ``"identity"``, ``"track"``,
probe labels). Which keys are image views is the constructor's ``view_keys``: a view of rank 4 is projected to
(B, D), one of rank 5 (several images per sample, e.g. RMFER's positive sets) to (B, K, D). A ``(batch, labels)``
tuple of two dicts is merged into one.

``call(images)`` is the encoder: ``predict``, the ``.keras`` file's inference and the SavedModel export give the
pooled representation that downstream evaluation (:mod:`ferkeras.downstream`) trains on.

Hooks for subclasses (each a public method with a docstring; override only what differs):

* :meth:`encode_views` / :meth:`project_features` -- views -> features -> projections, one pass each;
* :meth:`forward` -- both of the above; BYOL overrides it to return the online network's predictions for the views
  that learn and its EMA target network's projections (under ``tf.stop_gradient``) for the others;
* :meth:`pretrain_variables` -- what the main optimiser updates (BYOL adds its predictor);
* :meth:`gather` -- the cross-replica all-gather of the objective's inputs;
* :meth:`after_train_step` -- runs after every optimiser step (BYOL's EMA ``target <- m target + (1 - m) online``);
* :meth:`probe_features` -- the features the online probe reads (default: the anchor's);
* :meth:`one_pass` -- any network (e.g. BYOL's target encoder) on a dict of (B, ...) / (B, K, ...) views at once.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from ferkeras.losses.affect import AffectLoss
from ferkeras.losses.objective import ContrastiveObjective
from ferkeras.losses.reduction import scale_for_replicas
from ferkeras.metrics.classification import MacroF1, OverallAccuracy
from ferkeras.metrics.regression import CCC
from ferkeras.models.heads import expression_classifier, va_regressor
from ferkeras.models.heads import projection_head as make_projection_head

VIEW_KEYS = ("anchor", "positive", "hard_negatives")
"""The image views of an SSL-FER pre-training batch (:mod:`ferkeras.data.video_views`)."""

DEFAULT_LEARNING_RATE = 3e-4
"""SSL-FER's pre-training optimiser: Adam, learning rate 3e-4, weight decay 1e-4 (Sec. 4.1)."""
DEFAULT_WEIGHT_DECAY = 1e-4
DEFAULT_PROBE_LEARNING_RATE = 1e-3


def _serialize(obj):
    return keras.saving.serialize_keras_object(obj)


def _deserialize(config):
    """A serialised Keras object (a config dict) rebuilt; anything else returned as is."""
    return keras.saving.deserialize_keras_object(config) if isinstance(config, dict) else config


def _split_batch(data) -> dict:
    """The pre-training batch as one dict: a dict as is; ``(views,)`` or ``(views, labels[, weights])`` merged."""
    if isinstance(data, dict):
        return dict(data)
    if isinstance(data, (tuple, list)) and data and isinstance(data[0], dict):
        batch = dict(data[0])
        if len(data) > 1 and isinstance(data[1], dict):
            batch.update(data[1])
        return batch
    raise ValueError("ContrastivePretrainer: a pre-training batch must be a dict of views (\"anchor\", \"positive\", "
                     f"...) or a (views, labels) tuple of dicts; got {type(data).__name__}")


@keras.saving.register_keras_serializable(package="ferkeras")
class ContrastivePretrainer(keras.Model):
    """Contrastive pre-training of an image encoder with a pluggable objective (see the module docstring).

    Args:
        encoder: a Keras model mapping images (B, S, S, 3) in [0, 1] to pooled features (B, F), e.g.
            ``ferkeras.models.backbones.make_backbone("resnet50", (112, 112, 3), pooling="avg")`` (SSL-FER's
            ResNet-50 from scratch) or ``"resnet18"`` for small runs.
        objective: a :class:`ferkeras.losses.objective.ContrastiveObjective` (SSL-FER's InfoNCE + MaskFN, ...).
        projection_head: a Keras model (B, F) -> (B, D); default ``projection_head(F, hidden, projection_dim)``
            (:func:`ferkeras.models.heads.projection_head`; SimCLR's FC-ReLU-FC).
        projection_hidden: hidden widths of the default head (SSL-FER: ``(2048,)``).
        projection_dim: output width of the default head (SSL-FER / SimCLR: 128).
        view_keys: the batch keys that are image views (rank 4 (B, S, S, 3) or rank 5 (B, K, S, S, 3)); keys
            missing from a batch are skipped (e.g. no ``"hard_negatives"`` when K = 0).
        probe_classes: number of expression classes of the online linear probe (0: no expression probe).
        probe_va: an online linear valence-arousal probe (CCC loss, SSL-FER Sec. 4.3).
        loss_terms: names of the objective's extra outputs (besides ``"loss"``) to log as epoch means; default the
            objective's ``loss_terms`` attribute when it has one. Other outputs are logged per step.
        **kwargs: ``keras.Model`` arguments (``name``, ...).
    """

    def __init__(self, encoder, objective, projection_head=None, projection_hidden=(2048,), projection_dim=128,
                 view_keys: Sequence[str] = VIEW_KEYS, probe_classes: int = 0, probe_va: bool = False,
                 loss_terms: Optional[Sequence[str]] = None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = _deserialize(encoder)
        self.objective = _deserialize(objective)
        if not isinstance(self.encoder, keras.Model):
            raise TypeError(f"ContrastivePretrainer: encoder must be a keras.Model, got {type(self.encoder).__name__}")
        if not isinstance(self.objective, ContrastiveObjective):
            raise TypeError("ContrastivePretrainer: objective must be a ferkeras.losses.objective.ContrastiveObjective"
                            f", got {type(self.objective).__name__}")
        out_shape = tuple(self.encoder.output.shape) if hasattr(self.encoder, "output") else ()
        if len(out_shape) != 2 or out_shape[-1] is None:
            raise ValueError(f"ContrastivePretrainer: the encoder {self.encoder.name!r} must output pooled features "
                             f"(B, F); it outputs {out_shape} (build the backbone with pooling='avg')")
        self.feature_dim = int(out_shape[-1])
        self.image_shape = tuple(self.encoder.inputs[0].shape[1:])
        self.projection_hidden = tuple(int(w) for w in (projection_hidden or ()))
        self.projection_dim = int(projection_dim)
        self.projector = (make_projection_head(self.feature_dim, self.projection_hidden, self.projection_dim,
                                               name="projection_head")
                          if projection_head is None else _deserialize(projection_head))
        self._custom_head = projection_head is not None
        self.view_keys = tuple(view_keys)
        if not self.view_keys:
            raise ValueError("ContrastivePretrainer: view_keys must name at least one image view")
        self.probe_classes = int(probe_classes)
        if self.probe_classes == 1 or self.probe_classes < 0:
            raise ValueError(f"ContrastivePretrainer: probe_classes must be 0 (no probe) or >= 2, got {probe_classes}")
        self.probe_va = bool(probe_va)
        if loss_terms is None:
            loss_terms = getattr(self.objective, "loss_terms", ())
        self.loss_terms = tuple(t for t in loss_terms if t != "loss")

        self.expression_probe = (expression_classifier(self.feature_dim, self.probe_classes, name="expression_probe")
                                 if self.probe_classes else None)
        self.va_probe = (va_regressor(self.feature_dim, hidden=0, activation="linear", name="va_probe")
                         if self.probe_va else None)
        self.probe_va_loss = AffectLoss(rmse_weight=0.0, pcc_weight=0.0, ccc_weight=1.0, name="probe_ccc_loss")
        self.probe_optimizer = None

        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.term_trackers = {t: keras.metrics.Mean(name=t) for t in self.loss_terms}
        self.probe_trackers = {}
        if self.expression_probe is not None:
            self.probe_trackers["expression"] = [
                keras.metrics.Mean(name="probe_expression_loss"),
                OverallAccuracy(self.probe_classes, name="probe_accuracy"),
                MacroF1(self.probe_classes, name="probe_macro_f1")]
        if self.va_probe is not None:
            self.probe_trackers["va"] = [keras.metrics.Mean(name="probe_va_loss"), CCC(name="probe_ccc")]
        self.built = True

    # ---- inference: the encoder --------------------------------------------------------------------------
    def call(self, images, training=False):
        """The encoder's pooled features of ``images`` (B, S, S, 3) in [0, 1]: the pre-trained representation.
        Given a pre-training batch (a dict), the features of its first view (the anchor), so ``predict`` and Keras'
        symbolic build under a strategy accept the pre-training dataset too."""
        if isinstance(images, dict):
            images = images[self.view_keys[0]]
        return self.encoder(images, training=training)

    # ---- hooks ---------------------------------------------------------------------------------------------
    def encode_views(self, views: Dict[str, tf.Tensor], training=False) -> Dict[str, tf.Tensor]:
        """Encodes every view in ONE forward pass of the encoder: ``{key: (B, S, S, 3)}`` -> ``{key: (B, F)}`` and
        ``{key: (B, K, S, S, 3)}`` -> ``{key: (B, K, F)}`` (the views are concatenated along the batch axis, so
        batch normalisation sees all of them, and split back)."""
        return self.one_pass(self.encoder, views, training, item_rank=3)

    def project_features(self, features: Dict[str, tf.Tensor], training=False) -> Dict[str, tf.Tensor]:
        """The projection head on every view's features, in one pass: ``(B, F)`` -> ``(B, D)``,
        ``(B, K, F)`` -> ``(B, K, D)``."""
        return self.one_pass(self.projector, features, training, item_rank=1)

    def forward(self, views: Dict[str, tf.Tensor], training=False) -> Tuple[dict, dict]:
        """``(features, projections)`` of the views: :meth:`encode_views` then :meth:`project_features`.

        The objective receives ``projections``; the probe reads ``features`` (:meth:`probe_features`). A BYOL-style
        subclass returns here its online predictions and its target network's projections (stop-gradient), under
        whatever keys its objective expects."""
        features = self.encode_views(views, training=training)
        return features, self.project_features(features, training=training)

    def pretrain_variables(self) -> list:
        """The variables the main optimiser updates: encoder, projection head and the objective's trainable
        weights (e.g. a learnable temperature). The probe heads are excluded (their own optimiser)."""
        return (self.encoder.trainable_variables + self.projector.trainable_variables
                + self.objective.trainable_variables)

    def probe_variables(self) -> list:
        """The online probe's variables (its own optimiser)."""
        return [v for head in (self.expression_probe, self.va_probe) if head is not None
                for v in head.trainable_variables]

    def gather(self, tensors: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """All-gathers a dict of per-sample tensors (leading batch axis) across the replicas of the current
        ``tf.distribute`` strategy (replica order, so replica r's samples follow replica r-1's); unchanged with one
        replica. Differentiable: the gradient of a gathered tensor is the replicas' summed gradient, sliced
        (``tf.distribute.ReplicaContext.all_gather``). Booleans travel as int32."""
        context = tf.distribute.get_replica_context()
        if not tensors or context is None or context.num_replicas_in_sync == 1:
            return dict(tensors)
        gathered = {}
        for key in sorted(tensors):
            value = tf.convert_to_tensor(tensors[key])
            is_bool = value.dtype == tf.bool
            # One all_gather per tensor: the gradient of a multi-tensor all_gather packs the tensors' gradients
            # into one (TF 2.21), which fails for tensors of different ranks ((B, D) and (B, K, D)).
            out = context.all_gather(tf.cast(value, tf.int32) if is_bool else value, axis=0)
            # MultiWorkerMirroredStrategy's all_gather loses the static shape; the objectives need (B, K, D)'s K.
            out = tf.ensure_shape(out, [None] + value.shape.as_list()[1:])
            gathered[key] = tf.cast(out, tf.bool) if is_bool else out
        return gathered

    def after_train_step(self, batch: dict, features: dict, projections: dict) -> None:
        """Runs after every optimiser step of :meth:`train_step` (no-op). BYOL's EMA update of its target network
        goes here (under a strategy, assign the mirrored target variables with the same value on every replica,
        e.g. from ``tf.distribute.get_replica_context().merge_call`` or with ``aggregation="only_first_replica"``)."""
        del batch, features, projections

    def probe_features(self, features: dict) -> tf.Tensor:
        """The features the online probe is trained on (stop-gradient is applied by the caller): the anchor's."""
        return features[self.view_keys[0]]

    # ---- compile -------------------------------------------------------------------------------------------
    def compile(self, optimizer=None, probe_optimizer=None, **kwargs):
        """Sets the pre-training and the probe optimisers, then ``keras.Model.compile(**kwargs)``.

        Args:
            optimizer: encoder, projection head, objective; default Adam(3e-4, weight decay 1e-4), SSL-FER
                Sec. 4.1 (Keras applies the weight decay decoupled, as AdamW; the paper does not say which).
            probe_optimizer: the online probe's; default Adam(1e-3). Ignored without a probe.
            **kwargs: ``jit_compile``, ``steps_per_execution``... No ``loss`` (the objective is the loss) and no
                ``metrics`` (the probe's metrics are fixed by the constructor).
        """
        for forbidden in ("loss", "metrics"):
            if kwargs.get(forbidden) is not None:
                raise ValueError(f"ContrastivePretrainer.compile: do not pass {forbidden}=; the objective and the "
                                 "probe (constructor arguments) define the losses and metrics")
        if optimizer is None:
            optimizer = keras.optimizers.Adam(DEFAULT_LEARNING_RATE, weight_decay=DEFAULT_WEIGHT_DECAY)
        if probe_optimizer is None:
            probe_optimizer = keras.optimizers.Adam(DEFAULT_PROBE_LEARNING_RATE)
        super().compile(optimizer=optimizer, **kwargs)
        probe_optimizer = keras.optimizers.get(probe_optimizer)
        if (isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
                and not isinstance(probe_optimizer, keras.optimizers.LossScaleOptimizer)):
            probe_optimizer = keras.optimizers.LossScaleOptimizer(probe_optimizer)
        self.probe_optimizer = probe_optimizer
        self.build_optimizers()

    def build_optimizers(self):
        """Builds the unbuilt optimisers on their variable lists (``compile`` calls it, and
        :func:`ferkeras.training.build_for_strategy` inside the strategy's scope)."""
        if self.probe_optimizer is None:
            raise RuntimeError("ContrastivePretrainer.build_optimizers: compile the model first")
        if not self.optimizer.built:
            self.optimizer.build(self.pretrain_variables())
        probe_vars = self.probe_variables()
        if probe_vars and not self.probe_optimizer.built:
            self.probe_optimizer.build(probe_vars)

    def get_compile_config(self):
        """``keras.Model``'s compile config plus the probe optimiser, so a ``.keras`` file recompiles with both."""
        config = super().get_compile_config()
        if config is not None and self.probe_optimizer is not None:
            config["probe_optimizer"] = _serialize(self.probe_optimizer)
        return config

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        config = {k: v for k, v in config.items() if k not in ("loss", "metrics", "weighted_metrics",
                                                                 "loss_weights") or v}
        self.compile(**config)

    @property
    def metrics(self):
        ours = [self.loss_tracker] + list(self.term_trackers.values())
        ours += [m for group in self.probe_trackers.values() for m in group]
        # Keras' own "loss" tracker stays out: train_step logs the objective's loss under that name.
        return ours + [m for m in super().metrics if m.name != "loss" and all(m is not t for t in ours)]

    # ---- steps ---------------------------------------------------------------------------------------------
    def views_of(self, batch: dict) -> Dict[str, tf.Tensor]:
        """The image views of a batch (the ``view_keys`` it has), float32; a clear error when none is present."""
        views = {k: tf.cast(batch[k], tf.float32) for k in self.view_keys if k in batch}
        if self.view_keys[0] not in views:
            raise ValueError(f"ContrastivePretrainer: the batch has no {self.view_keys[0]!r} view; its keys are "
                             f"{sorted(batch)} and view_keys={self.view_keys}")
        return views

    def objective_terms(self, batch: dict, projections: dict, extras: dict, training=False) -> dict:
        """All-gathers ``projections`` and ``extras`` (:meth:`gather`) and evaluates the objective on the global
        batch; the terms are float32 and NOT scaled for replicas."""
        gathered = self.gather({k: tf.cast(v, tf.float32) for k, v in projections.items()})
        gathered_extras = self.gather({k: tf.stop_gradient(v) for k, v in extras.items()})
        terms = self.objective(gathered, gathered_extras, training=training)
        if not isinstance(terms, dict) or "loss" not in terms:
            raise ValueError(f"ContrastivePretrainer: objective {self.objective.name!r} must return a dict with "
                             f"\"loss\"; got {type(terms).__name__} {sorted(terms) if isinstance(terms, dict) else ''}")
        return {k: tf.cast(v, tf.float32) for k, v in terms.items()}

    def train_step(self, data):
        batch = _split_batch(data)
        views = self.views_of(batch)
        extras = dict(self.objective.precompute(batch, training=True) or {})
        variables = self.pretrain_variables()
        with tf.GradientTape() as tape:
            features, projections = self.forward(views, training=True)
            terms = self.objective_terms(batch, projections, extras, training=True)
            scaled = self.optimizer.scale_loss(scale_for_replicas(terms["loss"]))
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        self.after_train_step(batch, features, projections)
        logs = self._log_terms(terms)
        logs.update(self._probe(batch, features, train=True))
        return logs

    def test_step(self, data):
        batch = _split_batch(data)
        views = self.views_of(batch)
        extras = dict(self.objective.precompute(batch, training=False) or {})
        features, projections = self.forward(views, training=False)
        terms = self.objective_terms(batch, projections, extras, training=False)
        logs = self._log_terms(terms)
        logs.update(self._probe(batch, features, train=False))
        return logs

    def _log_terms(self, terms: dict) -> dict:
        self.loss_tracker.update_state(terms["loss"])
        logs = {"loss": self.loss_tracker.result()}
        for name, value in terms.items():
            if name == "loss":
                continue
            if name in self.term_trackers:
                self.term_trackers[name].update_state(value)
                logs[name] = self.term_trackers[name].result()
            elif value.shape.rank == 0:
                logs[name] = value
        return logs

    def probe_losses(self, features: tf.Tensor, batch: dict, training=False) -> dict:
        """The online probe on ``features`` (already stop-gradient): ``{task: (loss, labels, predictions)}`` for
        each probe whose labels the batch carries. Losses are per-replica means, NOT scaled for replicas.

        Expression: softmax cross-entropy over the labelled samples (label -1 masked; 0 when none is labelled).
        Valence-arousal: the CCC loss ``1 - (CCC_v + CCC_a) / 2`` (SSL-FER Sec. 4.3), NaN labels masked.
        """
        out = {}
        if self.expression_probe is not None and "expression" in batch:
            labels = tf.reshape(tf.cast(batch["expression"], tf.int32), (-1,))
            logits = self.expression_probe(features, training=training)
            labelled = labels >= 0
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.where(labelled, labels, 0), logits=logits)
            weight = tf.cast(labelled, tf.float32)
            loss = tf.reduce_sum(ce * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)
            out["expression"] = (loss, labels, logits)
        if self.va_probe is not None and "va" in batch:
            va = tf.cast(batch["va"], tf.float32)
            pred = self.va_probe(features, training=training)
            out["va"] = (self.probe_va_loss.call(va, pred), va, pred)
        return out

    def _probe(self, batch: dict, features: dict, train: bool) -> dict:
        if not self.probe_trackers:
            return {}
        probe_in = tf.stop_gradient(self.probe_features(features))
        with tf.GradientTape() as tape:
            results = self.probe_losses(probe_in, batch, training=train)
            total = tf.add_n([r[0] for r in results.values()]) if results else None
            if total is not None and train:
                scaled = self.probe_optimizer.scale_loss(scale_for_replicas(total))
        if total is not None and train:
            variables = [v for task in results for v in self._probe_head(task).trainable_variables]
            self.probe_optimizer.apply(tape.gradient(scaled, variables), variables)
        logs = {}
        for task, (loss, labels, preds) in results.items():
            trackers = self.probe_trackers[task]
            trackers[0].update_state(loss)
            for metric in trackers[1:]:
                metric.update_state(labels, preds)
            logs.update({m.name: m.result() for m in trackers})
        return logs

    def _probe_head(self, task):
        return self.expression_probe if task == "expression" else self.va_probe

    @staticmethod
    def one_pass(network, tensors: Dict[str, tf.Tensor], training, item_rank: int) -> Dict[str, tf.Tensor]:
        """``network`` on every tensor of the dict in one call. Items have rank ``item_rank`` (3 for images, 1 for
        feature vectors); (B, *item) and (B, K, *item) inputs are flattened to rows, concatenated, run once, split
        and reshaped back to (B, *out) / (B, K, *out)."""
        keys = list(tensors)
        rows, sizes, leading = [], [], []
        for k in keys:
            t = tensors[k]
            lead_rank = t.shape.rank - item_rank
            if lead_rank not in (1, 2):
                raise ValueError(f"ContrastivePretrainer: view {k!r} has shape {t.shape}; expected (B, ...) or "
                                 f"(B, K, ...) around items of rank {item_rank}")
            rows.append(tf.reshape(t, tf.concat([[-1], tf.shape(t)[lead_rank:]], 0)))
            sizes.append(tf.shape(rows[-1])[0])
            leading.append((tf.shape(t)[:lead_rank], t.shape[:lead_rank]))
        outputs = network(tf.concat(rows, 0) if len(rows) > 1 else rows[0], training=training)
        parts = tf.split(outputs, tf.stack(sizes), axis=0) if len(rows) > 1 else [outputs]
        result = {}
        for k, part, (lead, static_lead) in zip(keys, parts, leading):
            out = tf.reshape(part, tf.concat([lead, tf.shape(part)[1:]], 0))
            out.set_shape(static_lead.concatenate(part.shape[1:]))
            result[k] = out
        return result

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """``keras.Model.export`` of the encoder; the input signature defaults to float32 images
        ``(None,) + encoder input shape`` in [0, 1]."""
        if input_signature is None:
            input_signature = [keras.InputSpec(shape=(None,) + self.image_shape, dtype="float32")]
        return super().export(filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(encoder=_serialize(self.encoder), objective=_serialize(self.objective),
                      projection_head=_serialize(self.projector) if self._custom_head else None,
                      projection_hidden=list(self.projection_hidden), projection_dim=self.projection_dim,
                      view_keys=list(self.view_keys), probe_classes=self.probe_classes, probe_va=self.probe_va,
                      loss_terms=list(self.loss_terms))
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "objective", "projection_head"):
            if config.get(key) is not None:
                config[key] = _deserialize(config[key])
        return cls(**config)

