"""The AVCE task model: Algorithm 1 of Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial
Emotion Recognition", ECCV 2022, as a ``keras.Model`` with a two-pass ``train_step``.

Modules (Fig. 2 of the paper; ``d = 32`` and ``dim v = 8`` from Sec. 4.2, the hidden widths of R, H and H1 from the
authors' published code, which the paper does not state):

* E, the encoder: the AlexNet-style stack or ResNet-18, from scratch
  (:func:`ferkeras.models.backbones.make_backbone`);
* C, the compressor: average pooling + FC to ``d = 32`` + ReLU, giving ``z`` (``compressor="gap"``, the paper's
  Sec. 3.2); the authors' code instead pools to 6 x 6 and flattens (9216 values for AlexNet at 224) into the FC
  (``compressor="flatten"``);
* R, the regressor: FC 32 -> 256, ReLU, FC 256 -> 2 (valence, arousal);
* H, the projection head to the AV plane: FC 32 -> 256, ReLU, FC 256 -> 2, then ``0.5 tanh``;
* H1, the projection head to the metric space of Eq. 8: FC 32 -> 64, ReLU, FC 64 -> 8, ReLU.

``train_step`` follows Algorithm 1 line by line:

1. forward pass 1: ``z = C(E(img))``, ``x = R(z)``, ``z_a, z_n = Sp(z), Sm(z)`` (Eqs. 6, 7),
   ``y_a, y_n = H(z_a), H(z_n)`` and ``L_main = L_AV(x, GT) + w L_AVCE(x, y_a, y_n)`` (Eq. 2; Algorithm 1 has
   ``w = 1``, the default ``contrastive_weight``; the authors' code uses 1e-4);
2. backward pass 1 updates E, C, R, H;
3. forward pass 2 (with the updated E, C): ``L_dis`` of Eq. 8 on ``H1(z), H1(z_a), H1(z_n)``;
4. backward pass 2 updates E, C, H1.

Optimisers (Sec. 4.2): Adam (lr 1e-4) for E, C, R and SGD (lr 1e-2) for H, H1, each with the paper's step schedule
(:class:`AVCEStepSchedule`). Algorithm 1 gives each pass its own step (epsilon_1, epsilon_2), so the Adam of pass 2
(``dis_optimizer``, on E and C) is a separate instance of the same configuration. This also keeps every optimiser at
exactly one ``apply`` per training iteration, so ``optimizer.iterations`` counts Algorithm 1's iterations and the
schedule decays at the paper's 5K / 25K / 45K ... iterations (one optimiser applied in both passes would count two
steps per iteration and decay twice as early). H and H1 are disjoint and pass 2 does not read H, so the SGD applies
H's pass-1 gradient and H1's pass-2 gradient in one call after pass 2: the same update as applying H's after pass 1.

``call`` (and so ``predict``, ``evaluate`` and the SavedModel export) is the inference path E -> C -> R only, the
green arrow of Fig. 2: the export holds no sparsemax and no ``py_function``, whatever ``sparsemax_method`` trained it.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers, ops

from ferkeras.losses.affect import AUTHORS_MSE, AffectLoss
from ferkeras.losses.reduction import scale_for_replicas
from ferkeras.methods.avce.losses import DiscriminativeLoss, make_contrastive_loss
from ferkeras.methods.avce.views import FeatureViews
from ferkeras.models.backbones import make_backbone
from ferkeras.models.layers import AdaptiveAveragePooling
from ferkeras.models.heads import va_regressor

LATENT_DIM = 32
"""dim z, Sec. 4.2."""
METRIC_DIM = 8
"""dim v, Sec. 4.2."""
CONTRASTIVE = ("avce", "infonce", "barlow_twins", "none")
"""``contrastive`` choices: Eq. 2, the Table 4 ablations, or L_AV alone (the baseline)."""
SIMILARITIES = ("f", "f1", "f2")
"""``similarity`` choices: Eq. 4 (``f``) and the two alternatives of Eq. 5."""
COMPRESSORS = ("gap", "flatten")
"""``compressor`` choices: global average pooling + FC (the paper), or 6 x 6 adaptive average pooling, flatten + FC
(the authors' code)."""
FLATTEN_GRID = (6, 6)
"""The authors' compressor pools the feature map to this grid before flattening (AlexNet at 224: 6 x 6 x 256)."""
REGRESSION_LOSSES = ("rmse", "mse")
"""``regression_loss`` choices: L_RMSE as in the paper's L_AV, or the authors' code's MSE_v + MSE_a."""


@keras.saving.register_keras_serializable(package="ferkeras")
class AVCEStepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The learning-rate schedule of Kim & Song, Sec. 4.2: ``x 0.8`` after the first 5K iterations, then every 20K.

    ``lr(step) = initial * factor ** n(step)`` with ``n = 0`` for ``step < first`` and
    ``n = 1 + floor((step - first) / every)`` afterwards (``step`` counts from 0: the first decayed step is 5000).
    """

    def __init__(self, initial_learning_rate, first=5000, every=20000, factor=0.8, name="avce_step_schedule"):
        super().__init__()
        if first < 0 or every < 1 or factor <= 0:
            raise ValueError(f"AVCEStepSchedule: need first >= 0, every >= 1, factor > 0; got first={first}, "
                             f"every={every}, factor={factor}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.first = int(first)
        self.every = int(every)
        self.factor = float(factor)
        self.name = name

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        n = tf.where(step < self.first, 0.0, 1.0 + tf.floor((step - self.first) / float(self.every)))
        return self.initial_learning_rate * tf.pow(self.factor, n)

    def get_config(self):
        return dict(initial_learning_rate=self.initial_learning_rate, first=self.first, every=self.every,
                    factor=self.factor, name=self.name)


def _mlp(input_dim, hidden, output_dim, batch_norm, final_activation, name):
    """FC ``input_dim -> hidden``, (BN), ReLU, FC ``hidden -> output_dim`` (layer ``fc2``), then ``final_activation``
    (``"half_tanh"`` = ``0.5 tanh``), float32 out."""
    inputs = keras.Input((int(input_dim),), name="z")
    x = layers.Dense(int(hidden), use_bias=not batch_norm, name="fc1")(inputs)
    if batch_norm:
        x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.Dense(int(output_dim), name="fc2")(x)
    if final_activation == "half_tanh":
        x = layers.Activation("tanh", name="tanh")(x)
        x = layers.Rescaling(0.5, dtype="float32", name="half")(x)
    else:
        x = layers.Activation(final_activation, dtype="float32", name=final_activation)(x)
    return keras.Model(inputs, x, name=name)


def _reduce(loss_fn, values):
    """Reduces the unreduced output of ``loss_fn.call`` as ``loss_fn.reduction`` says, WITHOUT replica scaling
    (``train_step`` divides the mean-type losses by the number of replicas; ``"sum"`` needs no division).

    Batch-statistic losses (Barlow Twins) already return a scalar; ``"sum"`` sums over the batch (Eq. 8 as printed),
    the mean reductions average over it (the expectations of Eq. 2).
    """
    if len(values.shape) == 0:
        return values
    if loss_fn.reduction == "sum":
        return ops.sum(values)
    if loss_fn.reduction in ("sum_over_batch_size", "mean"):
        return ops.mean(values)
    raise ValueError(f"AVCEModel: loss {loss_fn.name!r} has reduction {loss_fn.reduction!r}; "
                     "expected 'sum', 'sum_over_batch_size' or 'mean'")


def _f32(*tensors):
    return tuple(ops.cast(t, "float32") for t in tensors)


@keras.saving.register_keras_serializable(package="ferkeras")
class AVCEModel(keras.Model):
    """AVCE (Kim & Song, ECCV 2022, Algorithm 1): valence-arousal regression with the AVCE contrastive regulariser.

    Args:
        backbone: encoder E, ``"alexnet"`` or ``"resnet18"`` as in the paper (any name of
            :data:`ferkeras.models.backbones.BACKBONES` works).
        input_shape: image shape (H, W, 3); images in [0, 1] as the ferkeras pipelines give them.
        latent_dim: ``d``, the size of ``z`` (32).
        metric_dim: the size of ``v = H1(z)`` (8).
        sparsemax_method: ``"closed_form"`` (default) or ``"ecos"`` (cvxpy + ECOS through ``tf.py_function``,
            training only), see :class:`ferkeras.methods.avce.views.FeatureViews`. Inference never uses it.
        contrastive: ``"avce"`` (Eq. 2), or the Table 4 ablations ``"infonce"`` / ``"barlow_twins"``;
            ``"none"`` trains with L_AV alone (the paper's baseline) through the same two-pass step.
        similarity: ``"f"`` (Eq. 4), ``"f1"`` or ``"f2"`` (Eq. 5); ignored by ``"barlow_twins"`` (which compares
            embeddings and has no similarity function) and ``"none"``.
        use_dis: run pass 2 with L_dis (Eq. 8); ``False`` is the "w/o L_dis" row of Table 4.
        head_batch_norm: batch normalisation in R, H and H1 (the paper says so; the authors' code has none).
        compressor: ``"gap"`` (the paper: average pooling + FC) or ``"flatten"`` (the authors' code: adaptive
            average pooling to 6 x 6 (:data:`FLATTEN_GRID`, bins as PyTorch's ``AdaptiveAvgPool2d``:
            :class:`ferkeras.models.layers.AdaptiveAveragePooling`), flatten + FC).
        contrastive_weight: ``w`` in ``L_main = L_AV + w L_contrastive``; 1 in Algorithm 1 (the default), 1e-4 in
            the authors' code. ``0`` keeps the heads and the logged ``l_contrastive`` but trains as L_AV alone.
        regression_loss: ``"rmse"`` (the paper's L_AV) or ``"mse"`` (L_RMSE replaced by MSE_v + MSE_a, the
            authors' code; :data:`ferkeras.losses.affect.AUTHORS_MSE`). PCC and CCC terms are the same.
        width: ResNet-18 stem width (64 = standard); only for ``backbone="resnet18"``.
        **kwargs: passed to ``keras.Model``.

    Training data: ``(images, {"va": (B, 2), ...})`` or ``(images, va)``; NaN marks a missing label and is masked
    by L_AV (:class:`ferkeras.losses.affect.AffectLoss`). The logged ``loss`` is ``L_main = L_AV + w L_contrastive``;
    ``l_av``, ``l_contrastive`` (unweighted) and ``l_dis`` are logged separately. All losses are computed in float32, also under a
    ``mixed_float16`` or ``mixed_bfloat16`` policy (every head ends in a float32 layer and the loss inputs are cast;
    only ``mixed_float16`` needs, and gets, loss scaling on all three optimisers).
    """

    def __init__(self, backbone="alexnet", input_shape=(224, 224, 3), latent_dim=LATENT_DIM,
                 metric_dim=METRIC_DIM, sparsemax_method="closed_form", contrastive="avce", similarity="f",
                 use_dis=True, head_batch_norm=False, width=64, compressor="gap", contrastive_weight=1.0,
                 regression_loss="rmse", **kwargs):
        super().__init__(**kwargs)
        if compressor not in COMPRESSORS:
            raise ValueError(f"AVCEModel: compressor={compressor!r}; expected one of {COMPRESSORS}")
        if regression_loss not in REGRESSION_LOSSES:
            raise ValueError(f"AVCEModel: regression_loss={regression_loss!r}; expected one of {REGRESSION_LOSSES}")
        if not contrastive_weight >= 0:
            raise ValueError(f"AVCEModel: contrastive_weight={contrastive_weight!r} must be >= 0")
        if contrastive not in CONTRASTIVE:
            raise ValueError(f"AVCEModel: contrastive={contrastive!r}; expected one of {CONTRASTIVE}")
        if similarity not in SIMILARITIES:
            raise ValueError(f"AVCEModel: similarity={similarity!r}; expected one of {SIMILARITIES}")
        self.backbone = backbone
        self.image_shape = tuple(int(s) for s in input_shape)
        self.latent_dim = int(latent_dim)
        self.metric_dim = int(metric_dim)
        self.sparsemax_method = sparsemax_method
        self.contrastive = contrastive
        self.similarity = similarity
        self.use_dis = bool(use_dis)
        self.head_batch_norm = bool(head_batch_norm)
        self.width = int(width)
        self.compressor_kind = compressor
        self.contrastive_weight = float(contrastive_weight)
        self.regression_loss = regression_loss

        backbone_kwargs = {"width": self.width} if backbone == "resnet18" else {}
        self.encoder = make_backbone(backbone, self.image_shape, pooling=None, **backbone_kwargs)
        feature_shape = self.encoder.output.shape[1:]
        c_in = keras.Input(feature_shape, name="feature_map")
        if compressor == "gap":
            c = layers.GlobalAveragePooling2D(name="avg_pool")(c_in)
        else:
            c = AdaptiveAveragePooling(FLATTEN_GRID, name="adaptive_pool")(c_in)
            c = layers.Flatten(name="flatten")(c)
        c = layers.Dense(self.latent_dim, name="fc")(c)
        c = layers.ReLU(dtype="float32", name="z")(c)
        self.compressor = keras.Model(c_in, c, name="compressor")
        self.regressor = va_regressor(self.latent_dim, 256, activation="linear", batch_norm=self.head_batch_norm,
                                      name="regressor")
        self.head = _mlp(self.latent_dim, 256, 2, self.head_batch_norm, "half_tanh", "head")
        self.head1 = _mlp(self.latent_dim, 64, self.metric_dim, self.head_batch_norm, "relu", "head1")
        self.views = FeatureViews(method=sparsemax_method, name="feature_views")

        self.av_loss = AffectLoss(**(AUTHORS_MSE if regression_loss == "mse" else {}))
        if contrastive == "none":
            self.contrastive_loss = None
        elif contrastive == "barlow_twins":
            self.contrastive_loss = make_contrastive_loss(contrastive)
        else:
            self.contrastive_loss = make_contrastive_loss(contrastive, similarity=similarity)
        self.dis_loss = DiscriminativeLoss()
        self.head_optimizer = None
        self.dis_optimizer = None
        self.loss_trackers = [keras.metrics.Mean(name=n) for n in ("loss", "l_av", "l_contrastive", "l_dis")]
        self.build((None,) + self.image_shape)

    def build(self, input_shape):
        """Nothing to create (every sub-model is functional and built); records the input shape for ``export``."""
        if tuple(input_shape[1:]) != self.image_shape:
            raise ValueError(f"AVCEModel: built for images {self.image_shape}, got input shape {tuple(input_shape)}")

    # ---- inference path (green arrow of Fig. 2) -------------------------------------------------------------
    def call(self, images, training=False):
        return self.regressor(self.encode(images, training=training), training=training)

    def encode(self, images, training=False):
        """``z = C(E(images))``."""
        return self.compressor(self.encoder(images, training=training), training=training)

    # ---- training ------------------------------------------------------------------------------------------
    def compile(self, optimizer=None, head_optimizer=None, dis_optimizer=None, **kwargs):
        """Sets the three optimisers (see the module docstring), then ``keras.Model.compile(**kwargs)``.

        Args:
            optimizer: E, C, R in pass 1; default ``Adam(AVCEStepSchedule(1e-4))`` (Keras' default betas; the
                authors' code uses (0.5, 0.9)).
            head_optimizer: H (pass 1) and H1 (pass 2); default ``SGD(AVCEStepSchedule(1e-2))`` (no momentum; the
                authors' code uses 0.9).
            dis_optimizer: E, C in pass 2; default a fresh copy of ``optimizer``'s configuration.
            **kwargs: ``metrics`` (valence-arousal metrics on ``(B, 2)``), ``jit_compile``, ... No ``loss``: the
                losses are fixed by the constructor.
        """
        if kwargs.get("loss") is not None:
            raise ValueError("AVCEModel.compile: the losses are set by the constructor (contrastive=, use_dis=); "
                             "do not pass loss=")
        if optimizer is None:
            optimizer = keras.optimizers.Adam(AVCEStepSchedule(1e-4))
        if head_optimizer is None:
            head_optimizer = keras.optimizers.SGD(AVCEStepSchedule(1e-2))
        optimizer = keras.optimizers.get(optimizer)
        if dis_optimizer is None:
            dis_optimizer = optimizer.__class__.from_config(optimizer.get_config())
        if self.sparsemax_method == "ecos":
            kwargs.setdefault("jit_compile", False)  # tf.py_function cannot be compiled by XLA
        super().compile(optimizer=optimizer, **kwargs)
        # keras.Model.compile wraps `optimizer` in a LossScaleOptimizer under "mixed_float16"; do the same here.
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            head_optimizer, dis_optimizer = (
                o if isinstance(o, keras.optimizers.LossScaleOptimizer) else keras.optimizers.LossScaleOptimizer(o)
                for o in (keras.optimizers.get(head_optimizer), keras.optimizers.get(dis_optimizer)))
        self.head_optimizer = keras.optimizers.get(head_optimizer)
        self.dis_optimizer = keras.optimizers.get(dis_optimizer)
        # Build the slots now, outside any tf.function (the sub-models are functional, so their variables exist).
        self.build_optimizers()

    def get_compile_config(self):
        """``keras.Model``'s compile config plus the head and pass-2 optimisers, so ``.keras`` files recompile."""
        config = super().get_compile_config()
        if config is not None and self.head_optimizer is not None:
            config["head_optimizer"] = keras.saving.serialize_keras_object(self.head_optimizer)
            config["dis_optimizer"] = keras.saving.serialize_keras_object(self.dis_optimizer)
        return config

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))

    @property
    def metrics(self):
        # Our trackers, then the compiled metrics; Keras' own "loss" tracker stays out (train_step logs L_main).
        ours = list(self.loss_trackers)
        return ours + [m for m in super().metrics if m.name != "loss" and all(m is not t for t in ours)]

    def main_variables(self):
        """Variables of E, C and R (the Adam of pass 1)."""
        return (self.encoder.trainable_variables + self.compressor.trainable_variables
                + self.regressor.trainable_variables)

    def dis_variables(self):
        """Variables of E and C (the Adam of pass 2)."""
        return self.encoder.trainable_variables + self.compressor.trainable_variables

    def head_variables(self):
        """Variables of H and H1 (the SGD)."""
        return self.head.trainable_variables + self.head1.trainable_variables

    def build_optimizers(self):
        """Builds the three optimisers on their variable lists (``compile`` calls it; compile inside the strategy
        scope). Unbuilt ones only."""
        if self.head_optimizer is None:
            raise RuntimeError("AVCEModel.build_optimizers: compile the model first")
        for opt, variables in ((self.optimizer, self.main_variables()), (self.dis_optimizer, self.dis_variables()),
                               (self.head_optimizer, self.head_variables())):
            if not opt.built:
                opt.build(variables)

    @staticmethod
    def _split_targets(data):
        images, targets = data[0], data[1]
        va = targets["va"] if isinstance(targets, dict) else targets
        return images, ops.cast(va, "float32")

    def main_losses(self, images, va_true, training=True):
        """Forward pass 1 of Algorithm 1: ``(x, l_av, l_contrastive)``, losses per replica, NOT replica-scaled and
        ``l_contrastive`` not weighted (``train_step`` applies ``contrastive_weight``)."""
        z = self.encode(images, training=training)
        x = self.regressor(z, training=training)
        (x_32,) = _f32(x)
        l_av = self.av_loss.call(va_true, x_32)  # .call: L_AV without AffectLoss' own replica scaling
        if self.contrastive_loss is None:
            return x, l_av, ops.zeros_like(l_av)
        z_a, z_n = self.views(z)
        y_a, y_n = _f32(self.head(z_a, training=training), self.head(z_n, training=training))
        l_con = _reduce(self.contrastive_loss, self.contrastive_loss.call(x_32, (y_a, y_n)))
        return x, l_av, l_con

    def dis_loss_value(self, images, training=True):
        """Forward pass 2 of Algorithm 1: ``L_dis`` (Eq. 8) per replica, NOT replica-scaled."""
        z = self.encode(images, training=training)
        z_a, z_n = self.views(z)
        v, v_a, v_n = _f32(*(self.head1(t, training=training) for t in (z, z_a, z_n)))
        return _reduce(self.dis_loss, self.dis_loss.call(v, (v_a, v_n)))

    def train_step(self, data):
        images, va_true = self._split_targets(data)
        ecr, ec = self.main_variables(), self.dis_variables()
        h_vars, h1_vars = self.head.trainable_variables, self.head1.trainable_variables

        # Replica scaling (ferkeras.losses.reduction.scale_for_replicas), once per term. Under tf.distribute every
        # replica computes its losses on its own slice of the batch and the optimisers all-reduce the replicas'
        # gradients by SUM. A mean (L_AVCE, InfoNCE) or a batch
        # statistic (L_AV, Barlow Twins) must therefore be divided by the number of replicas, so that the sum is the
        # gradient of the replicas' average; a sum over the batch (Eq. 8 as printed) must NOT be, since the sum of the
        # replicas' sums already is Eq. 8 over the global batch. That is Keras' own convention (reduce_values scales
        # the mean reductions only), but the loss objects apply it unevenly (AffectLoss.__call__ divides itself;
        # Keras' mean-reduced losses divide in their reduction; Barlow Twins returns a scalar and is not divided), so
        # train_step calls their unscaled `.call`, reduces the values itself (`_reduce`) and applies the division
        # here, once. The logged values are the unscaled per-replica losses.
        dis_is_sum = self.dis_loss.reduction == "sum"

        # Forward pass 1 and backward pass 1: E, C, R, H <- L_main = L_AV + L_AVCE.
        with tf.GradientTape(persistent=True) as tape:
            x, l_av, l_con = self.main_losses(images, va_true, training=True)
            l_main = scale_for_replicas(l_av + self.contrastive_weight * l_con)
            scaled_main = self.optimizer.scale_loss(l_main)
            scaled_head = self.head_optimizer.scale_loss(l_main)
        self.optimizer.apply(tape.gradient(scaled_main, ecr), ecr)
        head_grads, head_vars = [], []
        if self.contrastive_loss is not None:
            head_grads += tape.gradient(scaled_head, h_vars)
            head_vars += h_vars
        del tape

        # Forward pass 2 and backward pass 2 (with the updated E, C): E, C, H1 <- L_dis (Eq. 8).
        l_dis = ops.zeros_like(l_av)
        if self.use_dis:
            with tf.GradientTape(persistent=True) as tape:
                l_dis = self.dis_loss_value(images, training=True)
                l_dis_global = l_dis if dis_is_sum else scale_for_replicas(l_dis)
                scaled_dis = self.dis_optimizer.scale_loss(l_dis_global)
                scaled_head = self.head_optimizer.scale_loss(l_dis_global)
            self.dis_optimizer.apply(tape.gradient(scaled_dis, ec), ec)
            head_grads += tape.gradient(scaled_head, h1_vars)
            head_vars += h1_vars
            del tape
        if head_vars:  # H's pass-1 and H1's pass-2 gradients: disjoint variables, pass 2 never reads H.
            self.head_optimizer.apply(head_grads, head_vars)

        for tracker, value in zip(self.loss_trackers, (l_av + self.contrastive_weight * l_con, l_av, l_con, l_dis)):
            tracker.update_state(value)
        return self.compute_metrics(images, va_true, x)

    def test_step(self, data):
        images, va_true = self._split_targets(data)
        va_pred = self(images, training=False)
        l_av = self.av_loss.call(va_true, ops.cast(va_pred, "float32"))
        self.loss_trackers[0].update_state(l_av)
        self.loss_trackers[1].update_state(l_av)
        logs = self.compute_metrics(images, va_true, va_pred)
        # Only L_AV is defined at test time (E, C, R only): report it as "loss" and "l_av", plus compiled metrics.
        return {k: v for k, v in logs.items() if k not in ("l_contrastive", "l_dis")}

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """The compiled metrics on the valence-arousal targets (``y["va"]`` when ``y`` is the pipelines' dict)."""
        if isinstance(y, dict):
            y = y["va"]
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """``keras.Model.export`` of the inference path E -> C -> R; the input signature defaults to float32 images
        ``(None,) + input_shape`` in [0, 1] (so a model that was only trained, never called, exports too)."""
        if input_signature is None:
            input_signature = [keras.InputSpec(shape=(None,) + self.image_shape, dtype="float32")]
        return super().export(filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(backbone=self.backbone, input_shape=self.image_shape, latent_dim=self.latent_dim,
                      metric_dim=self.metric_dim, sparsemax_method=self.sparsemax_method,
                      contrastive=self.contrastive, similarity=self.similarity, use_dis=self.use_dis,
                      head_batch_norm=self.head_batch_norm, width=self.width, compressor=self.compressor_kind,
                      contrastive_weight=self.contrastive_weight, regression_loss=self.regression_loss)
        return config
