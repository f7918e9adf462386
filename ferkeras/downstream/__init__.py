"""ferkeras.downstream: evaluation of any pre-trained encoder on the downstream FER tasks.

* :mod:`ferkeras.downstream.linear`: linear evaluation (frozen encoder) and fine-tuning with SSL-FER's MLP head
  (Shu, Gu, Yang, Lo, BMVC 2022, Sec. 4.1 / 4.3): expressions with the balanced softmax cross-entropy (macro-F1,
  accuracy), valence-arousal with the CCC loss (CCC, RMSE) -- :func:`evaluate`, :func:`evaluate_tasks`;
* :mod:`ferkeras.downstream.identity`: identity leakage, k-NN identification and verification on held-out
  identities (the paper's FR-KNN, Table 2; lower is better) -- :func:`identity_leakage`;
* :mod:`ferkeras.downstream.encoder`: :func:`load_encoder` from a ``.keras`` file or a run directory.

A user script::

    from ferkeras import downstream
    encoder = downstream.load_encoder("runs/sslfer-.../")            # or a .keras file
    metrics = downstream.evaluate(encoder, train_ds, test_ds, task="expression", mode="linear", num_classes=8)
    metrics.update(downstream.identity_leakage(encoder))             # synthetic held-out identities
"""

from ferkeras.downstream.encoder import encoder_of, load_encoder, pooled, resolve_model_path
from ferkeras.downstream.identity import (
    extract_features,
    identification_chance,
    identity_leakage,
    knn_identification_accuracy,
    leakage_scores,
    synthetic_identity_set,
    verification_accuracy,
)
from ferkeras.downstream.linear import (
    MODES,
    TASKS,
    build_downstream_model,
    copy_encoder,
    evaluate,
    evaluate_tasks,
    make_head,
    scores,
)

__all__ = ["MODES", "TASKS", "build_downstream_model", "copy_encoder", "encoder_of", "evaluate", "evaluate_tasks",
           "extract_features", "identification_chance", "identity_leakage", "knn_identification_accuracy",
           "leakage_scores", "load_encoder", "make_head", "pooled", "resolve_model_path", "scores",
           "synthetic_identity_set", "verification_accuracy"]
