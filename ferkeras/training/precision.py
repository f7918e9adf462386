"""Mixed precision: the one place that maps a precision name to the Keras dtype policy a run trains under.

==============  ===================  ===============================================================================
precision       Keras policy         what it does
==============  ===================  ===============================================================================
``"none"``      ``float32``          everything in float32 (the default)
``"bfloat16"``  ``mixed_bfloat16``   layers compute in bfloat16, variables stay float32; no loss scaling (bfloat16
                                     has float32's exponent range). Fast where the hardware has bfloat16 arithmetic
                                     (CPUs with AVX-512 BF16 / AMX, recent GPUs and TPUs); elsewhere it is emulated
                                     and usually slower than float32.
``"float16"``   ``mixed_float16``    layers compute in float16, variables stay float32; ``keras.Model.compile``
                                     wraps the optimiser in a ``LossScaleOptimizer`` (the ferkeras models wrap their
                                     extra optimisers alike). Fast on GPUs with float16 tensor cores.
==============  ===================  ===============================================================================

The ferkeras models keep their losses in float32 under both mixed policies: every head ends in a float32 layer
(:mod:`ferkeras.models.heads`) and the task models cast the loss inputs (AVCE's L_AV, L_AVCE and L_dis, the
contrastive objectives and the online probe).

The policy is process-global and is read when a layer is created (a layer keeps the policy it was built with, also
through ``.keras`` save and load), and when ``compile`` decides on loss scaling: set it before building the model.
"""

from __future__ import annotations

import contextlib

PRECISIONS = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
"""Precision name (the binaries' ``--mixed_precision`` values) -> Keras dtype policy name."""


def precision_policy(precision: str) -> str:
    """The Keras dtype policy name of ``precision`` (a key of :data:`PRECISIONS`); ValueError naming the value."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def set_precision(precision: str) -> str:
    """Sets the global Keras dtype policy of ``precision`` (:data:`PRECISIONS`; ``"none"`` sets float32, so a
    process that trains several models in turn gets each one's own); returns the policy name."""
    import keras

    policy = precision_policy(precision)
    keras.mixed_precision.set_global_policy(policy)
    return policy


@contextlib.contextmanager
def precision_scope(precision: str):
    """``with precision_scope("bfloat16"): build and compile a model`` -- the global policy of ``precision`` inside
    the block, the previous one restored after it (the model keeps the policy it was built with)."""
    import keras

    previous = keras.mixed_precision.global_policy()
    try:
        yield set_precision(precision)
    finally:
        keras.mixed_precision.set_global_policy(previous)
