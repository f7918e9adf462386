"""Run directories and the fit / evaluate steps every ferkeras experiment binary shares.

* :mod:`ferkeras.training.strategy`: :func:`get_strategy` (default, mirrored, multi-worker; call it before any
  TensorFlow op), :func:`strategy_info` (workers and replicas, for result.json) and
  :func:`build_for_strategy` (creates every variable before ``fit``; the Keras work-arounds under tf.distribute);
* :mod:`ferkeras.training.rundir`: :class:`RunDir`, the run directory and the only owner of its layout (flags,
  logs, checkpoints, backup, result.json, class names);
* :mod:`ferkeras.training.fit`: :func:`fit` (``model.fit`` with the run directory's callbacks, exact resume of a
  killed run) and :class:`ResumableBackup`;
* :mod:`ferkeras.training.evaluation`: :func:`evaluate_and_report` (result.json and figures), :func:`affect_scores`
  (whole-set NumPy reference metrics), :func:`collect_predictions` and :func:`jsonable`.
* :mod:`ferkeras.training.precision`: :func:`set_precision` (``"none"`` / ``"bfloat16"`` / ``"float16"`` -> the
  global Keras dtype policy, :data:`PRECISIONS`), :func:`precision_policy` and :func:`precision_scope`.

Every name is importable from ``ferkeras.training`` itself (``from ferkeras import training; training.fit(...)``).
"""

from ferkeras.training.evaluation import affect_scores, collect_predictions, evaluate_and_report, jsonable
from ferkeras.training.fit import ResumableBackup, fit
from ferkeras.training.precision import PRECISIONS, precision_policy, precision_scope, set_precision
from ferkeras.training.rundir import RunComplete, RunDir
from ferkeras.training.strategy import (STRATEGIES, StrategyTooLateError, build_for_strategy, configure_cpu_replicas,
                                       get_strategy, strategy_info)

__all__ = ["PRECISIONS", "RunComplete", "RunDir", "ResumableBackup", "STRATEGIES", "StrategyTooLateError",
           "affect_scores", "build_for_strategy", "collect_predictions", "configure_cpu_replicas",
           "evaluate_and_report", "fit", "get_strategy", "jsonable", "precision_policy", "precision_scope",
           "set_precision", "strategy_info"]
