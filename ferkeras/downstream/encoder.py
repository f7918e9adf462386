"""Loading a pre-trained encoder for downstream evaluation, from a ``.keras`` file or a run directory.

:func:`load_encoder` accepts

* a ``.keras`` file of a :class:`ferkeras.models.contrastive.ContrastivePretrainer` (its ``encoder``), of any model
  with an ``encoder`` attribute (e.g. AVCE's), of a supervised baseline (its backbone sub-model), or of a bare
  encoder (a model with one (B, F) output);
* a run directory (:class:`ferkeras.training.RunDir`): its best checkpoint (``RunDir.checkpoint_path``).

An encoder whose output is a feature map (B, h, w, C) is wrapped with global average pooling, so downstream heads
always get a pooled vector.  Custom classes must be registered (``@keras.saving.register_keras_serializable``) and
imported; every ``ferkeras.methods`` package is imported first so the methods' own classes (objectives, models) are
known, and ``custom_objects`` adds the caller's.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
from typing import Optional

logger = logging.getLogger("ferkeras.downstream.encoder")


def _import_methods() -> None:
    """Imports every ``ferkeras.methods`` package, so their registered Keras classes can be deserialised."""
    try:
        methods = importlib.import_module("ferkeras.methods")
    except ImportError:
        return
    for info in pkgutil.iter_modules(methods.__path__, "ferkeras.methods."):
        try:
            importlib.import_module(info.name)
        except Exception as err:  # a broken method package must not stop loading another method's encoder
            logger.warning("could not import %s (%s: %s); its classes cannot be loaded", info.name,
                           type(err).__name__, err)


def resolve_model_path(path: str) -> str:
    """The ``.keras`` file ``path`` names: the file itself, or a run directory's best checkpoint. Raises
    ``FileNotFoundError`` / ``ValueError`` naming the path and what was looked for."""
    from ferkeras.training import RunDir

    if os.path.isdir(path):
        run = RunDir.open(path)
        if not os.path.isfile(run.checkpoint_path):
            raise FileNotFoundError(f"run directory {path} has no checkpoint {run.checkpoint_path} (was the run "
                                    "finished? a run directory holds checkpoints/best.keras)")
        return run.checkpoint_path
    if not os.path.exists(path):
        raise FileNotFoundError(f"encoder {path} does not exist (expected a .keras file or a run directory)")
    if not path.endswith(".keras"):
        raise ValueError(f"encoder {path} is not a .keras file or a run directory")
    return path


def pooled(encoder):
    """``encoder`` itself when it outputs (B, F); with a feature map output (B, h, w, C), a functional model adding
    global average pooling; anything else raises ``ValueError``."""
    import keras

    shape = tuple(encoder.output.shape)
    if len(shape) == 2:
        return encoder
    if len(shape) == 4:
        image = keras.Input(tuple(encoder.inputs[0].shape[1:]), name="image")
        features = keras.layers.GlobalAveragePooling2D(name="avg_pool")(encoder(image))
        return keras.Model(image, features, name=f"{encoder.name}_pooled")
    raise ValueError(f"encoder {encoder.name!r} outputs shape {shape}; expected pooled features (B, F) or a "
                     "feature map (B, h, w, C)")


def _single_output_shape(model):
    try:
        output = model.output
    except (AttributeError, ValueError):
        return None
    return None if isinstance(output, (dict, list, tuple)) else tuple(output.shape)


def encoder_of(model):
    """The encoder inside a loaded model (see the module docstring for what is recognised)."""
    import keras

    inner = getattr(model, "encoder", None)
    if isinstance(inner, keras.Model):
        return pooled(inner)
    shape = _single_output_shape(model)
    if shape is not None and len(shape) in (2, 4):
        return pooled(model)
    # a multi-output model (the supervised baseline): its nested backbone, the sub-model fed by the image input
    nested = [layer for layer in getattr(model, "layers", []) if isinstance(layer, keras.Model)
              and _single_output_shape(layer) is not None and len(_single_output_shape(layer)) in (2, 4)
              and len(layer.inputs[0].shape) == 4]
    if nested:
        return pooled(nested[0])
    raise ValueError(f"cannot find an encoder in model {model.name!r} ({type(model).__name__}): expected a "
                     "ContrastivePretrainer, a model with an `encoder` attribute, a bare encoder (one (B, F) output) "
                     "or a model with a nested image backbone")


def load_encoder(path: str, custom_objects: Optional[dict] = None):
    """The pre-trained encoder (images in [0, 1] -> (B, F) features) stored at ``path``: a ``.keras`` file or a
    run directory (module docstring). The model is loaded without its training configuration."""
    import keras

    file = resolve_model_path(path)
    _import_methods()
    try:
        model = keras.saving.load_model(file, custom_objects=custom_objects, compile=False)
    except Exception as err:
        raise ValueError(f"could not load {file}: {type(err).__name__}: {err} (a custom class must be registered "
                         "with keras.saving.register_keras_serializable and imported, or passed in "
                         "custom_objects)") from err
    encoder = encoder_of(model)
    logger.info("encoder %s from %s: input %s, %d features", encoder.name, file, tuple(encoder.inputs[0].shape),
                encoder.output.shape[-1])
    return encoder
