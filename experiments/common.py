"""What the ferkeras experiment binaries share: the data / run flags, their checks, the train / validation / test
pipelines (built-in synthetic faces with held-out identities, or a dataset read by :mod:`ferkeras.data.readers`), the
run directory and the terminal summary.

A binary calls :func:`define_shared_flags` once at import time (absl flags are process-global, so two binaries cannot
be imported into one process), adds its own flags, and defines public ``BOUNDS`` (the :class:`Bound` of each of its
own numeric flags), ``settings()``, ``check(s)``, ``run(s)`` and ``summary_title(s)``, which tests and tools call too;
its ``main`` is :func:`main`. Inside them::

    s = common.settings(shared_holders + own_holders, smoke_overrides)   # what runs: explicit flags, else --smoke's
    common.check(s, BOUNDS)                                              # user errors, before heavy imports
    data = common.load_data(s, augment, task="va")                        # train / val / test pipelines

Nothing heavy (TensorFlow, Keras) is imported at module level, so flag errors are reported in a fraction of a second.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import shutil
import tempfile
import warnings

from absl import app, flags, logging

from ferkeras.data import splits

# The dataset split policy (``--dataset`` -> reader, evaluation split, synthetic held-out identities) is the
# library's (ferkeras.data.splits); these names stay here for the binaries and tools that use them.
READER_NAMES = splits.READER_NAMES
EVAL_SPLITS = splits.EVAL_SPLITS
SYNTHETIC_VAL_IDENTITIES = splits.SYNTHETIC_VAL_IDENTITIES
SYNTHETIC_TEST_IDENTITIES = splits.SYNTHETIC_TEST_IDENTITIES
AUGMENTATIONS = ("none", "flip", "avce", "sslfer", "srp", "rmfer")

Data = splits.DataSplits
"""Pipelines of ``(images, {"va", "expression"})`` batches; ``val`` is ``test`` on real datasets (see
:func:`load_data`); ``classes`` the expression names (or None) and ``num_train`` the training faces."""

SMOKE_DATA = dict(epochs=1, steps=2, batch_size=16, num_train=64, num_val=32, num_test=48, train_identities=10)
"""What ``--smoke`` sets in every binary (binaries add their own overrides, e.g. image size) - for the flags the user
did not set: explicit flags win (:func:`settings`)."""


class Bound(collections.namedtuple("Bound", "low high low_open high_open")):
    """The values a numeric flag accepts: ``low <= value <= high`` (``<`` on a side marked open); None leaves a side
    unbounded.  An optional flag left unset (None) is always accepted."""

    __slots__ = ()

    def __new__(cls, low=None, high=None, low_open=False, high_open=False):
        return super().__new__(cls, low, high, low_open, high_open)

    def accepts(self, value) -> bool:
        """Whether ``value`` is inside the bound (None: yes; NaN and infinities: never)."""
        if value is None:
            return True
        if not math.isfinite(value):
            return False
        if self.low is not None and not (value > self.low if self.low_open else value >= self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        """``">= 1"``, ``"> 0"``, ``"in [0, 1)"`` ..."""
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"{'<' if self.high_open else '<='} {self.high}"


AT_LEAST_0 = Bound(0)
AT_LEAST_1 = Bound(1)
POSITIVE = Bound(0, low_open=True)
PROBABILITY = Bound(0, 1)

SHARED_BOUNDS = dict(fold=AT_LEAST_0, image_size=AT_LEAST_1, batch_size=AT_LEAST_1, epochs=AT_LEAST_1,
                     steps=AT_LEAST_1, num_train=AT_LEAST_1, num_val=AT_LEAST_1, num_test=AT_LEAST_1,
                     train_identities=AT_LEAST_1, backup_every=AT_LEAST_1, seed=AT_LEAST_0, verbose=Bound(0, 2),
                     cpu_replicas=AT_LEAST_1)
"""The :class:`Bound` of every numeric flag of :func:`define_shared_flags`; each binary has a ``BOUNDS`` dict of its
own numeric flags, and :func:`check` (``check_bounds``) refuses a value outside them before anything is loaded."""

MIN_IMAGE_SIZES = {"resnet18": 32, "alexnet": 63, "resnet50": 32, "efficientnetb2": 32}
"""= :func:`ferkeras.models.backbones.min_input_size` of each backbone (not imported: Keras-heavy; a test pins the
two together): the smallest ``--image_size`` each ``--backbone`` takes."""


def check_bounds(s, bounds):
    """``app.UsageError`` naming the first flag of ``bounds`` (name -> :class:`Bound`) whose value in ``s`` is
    outside its bound."""
    for name, bound in bounds.items():
        value = s.get(name)
        if not bound.accepts(value):
            raise app.UsageError(f"--{name} must be {bound.describe()}, got {value}")


def check_image_size(s, backbone, flag="image_size"):
    """``app.UsageError`` when ``--<flag>`` is below the smallest input of ``backbone`` (:data:`MIN_IMAGE_SIZES`):
    refused before any data is read instead of failing when the model is built."""
    smallest = MIN_IMAGE_SIZES[backbone]
    if s[flag] < smallest:
        raise app.UsageError(f"--{flag}={s[flag]} is too small for --backbone={backbone}: its smallest input is "
                             f"{smallest}x{smallest}")


class DatasetParser(flags.EnumParser):
    """``--dataset``: one of a binary's datasets by its name or an alias (:func:`ferkeras.data.splits.dataset_name`:
    ``affwild2``, ``rafdb`` ..., any case); the flag's value is the dataset's one name (``aff_wild2``, ``raf_db``)."""

    def parse(self, argument):
        try:
            name = splits.dataset_name(argument)
        except ValueError:
            name = argument
        if name not in self.enum_values:
            known = f" (= {name})" if name != argument else ""
            raise ValueError(f"dataset {argument!r}{known} is not one of this binary's: choose from "
                             f"{', '.join(self.enum_values)} (aliases: {dataset_aliases(self.enum_values)})")
        return name


def dataset_aliases(datasets) -> str:
    """The old spellings accepted for ``datasets``, e.g. ``"affwild2 = aff_wild2, rafdb = raf_db"``."""
    return ", ".join(f"{d.replace('_', '')} = {d}" for d in datasets if "_" in d) + "; any case, '-' for '_'"


def define_dataset_flag(datasets, flag_values=flags.FLAGS):
    """``--dataset`` with choices ``datasets`` (``"synthetic"`` first, the default; the rest keys of
    :data:`READER_NAMES`), accepting aliases (:class:`DatasetParser`); returns its flag holder."""
    unknown = [d for d in datasets[1:] if d not in READER_NAMES]
    if datasets[0] != "synthetic" or unknown:
        raise ValueError(f"define_shared_flags: datasets must start with 'synthetic' and name readers of "
                         f"{sorted(READER_NAMES)}; got {datasets}")
    return flags.DEFINE(DatasetParser(datasets), "dataset", "synthetic",
                        f"Training / evaluation data: {', '.join(datasets)} (also accepted: "
                        f"{dataset_aliases(datasets)}).", flag_values, serializer=flags.ArgumentSerializer())


PRECISIONS = ("none", "bfloat16", "float16")
"""``--mixed_precision`` values = the keys of :data:`ferkeras.training.precision.PRECISIONS` (not imported:
Keras-heavy; a test pins the two together), which maps them to the Keras dtype policy."""

LEGACY_PRECISIONS = {"true": "float16", "t": "float16", "1": "float16", "false": "none", "f": "none", "0": "none"}
"""The old boolean ``--mixed_precision`` (mixed_float16 or not): ``--mixed_precision`` / ``--nomixed_precision`` (and
``=true`` / ``=false``, as old flagfiles hold them) keep their meaning."""


class PrecisionParser(flags.ArgumentParser):
    """``--mixed_precision``: ``none``, ``bfloat16`` or ``float16`` (any case), or an old boolean spelling
    (:data:`LEGACY_PRECISIONS`, with a warning naming the new one)."""

    def parse(self, argument):
        if isinstance(argument, bool):
            argument = str(argument)
        value = str(argument).strip().lower()
        if value in PRECISIONS:
            return value
        if value in LEGACY_PRECISIONS:
            new = LEGACY_PRECISIONS[value]
            logging.warning("--mixed_precision is no longer a boolean: its old boolean form (%s, here %r) is read "
                            "as --mixed_precision=%s; write that instead",
                            "--mixed_precision" if new == "float16" else "--nomixed_precision", argument, new)
            return new
        raise ValueError(f"--mixed_precision takes {' | '.join(PRECISIONS)} (write --mixed_precision=VALUE), got "
                         f"{argument!r}; the old --mixed_precision / --nomixed_precision mean float16 / none")

    def flag_type(self):
        return "precision"


class PrecisionFlag(flags.Flag):
    """``--mixed_precision=none|bfloat16|float16`` that still takes the old boolean forms ``--mixed_precision`` and
    ``--nomixed_precision`` (absl treats it as a boolean flag for those), and writes itself as
    ``--mixed_precision=VALUE``."""

    def __init__(self, default="none"):
        super().__init__(PrecisionParser(), None, "mixed_precision", default,
                         "Training precision: none (float32), bfloat16 (Keras mixed_bfloat16: fast on CPUs with "
                         "AVX-512 BF16 / AMX and recent GPUs, emulated and slower elsewhere) or float16 "
                         "(mixed_float16 with loss scaling: GPUs). Losses stay float32. Write "
                         "--mixed_precision=VALUE; the old --mixed_precision / --nomixed_precision mean float16 / "
                         "none.", boolean=True)

    def _serialize(self, value):
        return "" if value is None else f"--{self.name}={value}"


def unexpected_arguments(args) -> str:
    """The usage error for positional arguments left after the flags: ``--mixed_precision bfloat16`` (with a space)
    leaves ``bfloat16`` over, since a bare ``--mixed_precision`` is the old boolean spelling."""
    message = f"unexpected arguments: {' '.join(args)}"
    if args and str(args[0]).lower() in PRECISIONS:
        message += f" (write --mixed_precision={str(args[0]).lower()}, with '=')"
    return message


def define_shared_flags(datasets, image_size=64, batch_size=64, epochs=8, augment="flip"):
    """Defines the data / run flags every binary has; returns their flag holders. ``datasets``: the ``--dataset``
    choices ("synthetic" first, the default; the rest keys of :data:`READER_NAMES`)."""
    return [
        define_dataset_flag(datasets),
        flags.DEFINE_string("data_root", None, "Dataset folder (input/<dataset>; see input/README.md). Required for "
                            "every dataset but synthetic."),
        flags.DEFINE_integer("fold", 0, "afew_va only: the cross-validation fold held out for evaluation."),
        flags.DEFINE_integer("image_size", image_size, "Square input side in pixels."),
        flags.DEFINE_integer("batch_size", batch_size, "Mini-batch size."),
        flags.DEFINE_integer("epochs", epochs, "Training epochs."),
        flags.DEFINE_integer("steps", None, "Steps per epoch (default: one pass over the training set)."),
        flags.DEFINE_enum("augment", augment, AUGMENTATIONS, "Training augmentation: none, horizontal flip, or a "
                          "paper preset of ferkeras.augment.spatial.FaceAugment."),
        flags.DEFINE_integer("num_train", 4000, "synthetic only: training faces."),
        flags.DEFINE_integer("num_val", 500, "synthetic only: validation faces (own identities)."),
        flags.DEFINE_integer("num_test", 1000, "synthetic only: held-out test faces (own identities)."),
        flags.DEFINE_integer("train_identities", 100, "synthetic only: identities in the training set; validation "
                             f"and test use {SYNTHETIC_VAL_IDENTITIES} and {SYNTHETIC_TEST_IDENTITIES} further "
                             "identities."),
        flags.DEFINE_string("out_dir", "runs", "Parent folder of the run directory."),
        flags.DEFINE_string("resume", None, "An existing run directory to continue: training restarts at the step "
                            "after the last backup, with the same optimiser state, best-checkpoint score and data "
                            "order. A finished run is left unchanged, unless --epochs asks for more."),
        flags.DEFINE_integer("backup_every", None, "Back up the training state every this many steps (default: at "
                             "every epoch end only), so a killed run loses at most these steps."),
        flags.DEFINE_integer("seed", 0, "Random seed (data order, initialisation, augmentation)."),
        flags.DEFINE_enum("strategy", "default", ("default", "mirrored", "multi_worker"), "tf.distribute strategy: "
                          "one device; MirroredStrategy over this machine's GPUs (without GPUs: one CPU replica, "
                          "unless --cpu_replicas); MultiWorkerMirroredStrategy over the TF_CONFIG cluster (one "
                          "process per worker, same command; see README 'Training on several machines')."),
        flags.DEFINE_integer("cpu_replicas", None, "--strategy=mirrored without GPUs: split the CPU into this many "
                             "logical devices, one replica each (to test data-parallel training on a laptop; the "
                             "replicas share the cores). Default: one replica."),
        flags.DEFINE_string("shards", None, "Train and evaluate from prepared TFRecord shards "
                            "(tools/prepare_dataset.py) instead of raw files: a folder with train/ and test/ "
                            "(and/or val/) sub-folders of shards; with both val/ and test/, val/ selects the "
                            "checkpoint. Replaces --data_root."),
        flags.DEFINE_flag(PrecisionFlag()),
        flags.DEFINE_bool("smoke", False, "Shrink the run to seconds (tiny data and model, 1 epoch of 2 steps) to "
                          "check that everything runs; flags given explicitly keep their values."),
        flags.DEFINE_integer("verbose", 1, "Keras progress: 1 = progress bar, 2 = one line per epoch, 0 = silent."),
    ]


def settings(holders, smoke_overrides=None):
    """Flag values of ``holders`` as a dict: the settings the run uses (flags.cfg records them).  Under --smoke,
    :data:`SMOKE_DATA` and ``smoke_overrides`` replace the values of the flags the user did not set: a flag given
    on the command line or in a flagfile wins (``--smoke --batch_size=32`` runs batches of 32)."""
    s = {holder.name: holder.value for holder in holders}
    if s.get("smoke"):
        given = {holder.name for holder in holders if holder.present}
        s.update({name: value for name, value in {**SMOKE_DATA, **(smoke_overrides or {})}.items()
                  if name not in given})
    return s


def check(s, bounds=None):
    """Errors a user can make with the shared flags, as ``app.UsageError`` naming the flag and value: every numeric
    flag outside its :class:`Bound` (:data:`SHARED_BOUNDS` and the binary's own ``bounds``) first."""
    check_bounds(s, {**SHARED_BOUNDS, **(bounds or {})})
    if s["dataset"] != "synthetic" and not s["data_root"] and not s.get("shards"):
        raise app.UsageError(f"--data_root is required for --dataset={s['dataset']} (the folder holding the "
                             f"dataset, e.g. input/{s['dataset']}; see input/README.md)")
    if s["data_root"] and not os.path.isdir(s["data_root"]):
        raise app.UsageError(f"--data_root={s['data_root']} is not a folder")
    if s["resume"] and not os.path.isdir(s["resume"]):
        shared = (" (under --strategy=multi_worker every worker resumes from the chief's run directory: it must be "
                  "readable at this path on every machine, e.g. on a shared filesystem)"
                  if s["strategy"] == "multi_worker" else "")
        raise app.UsageError(f"--resume={s['resume']} is not an existing run directory{shared}")
    check_distribution(s)


def check_distribution(s):
    """The user errors of ``--strategy``, ``--cpu_replicas`` and ``--shards`` (part of :func:`check`)."""
    if s.get("cpu_replicas") is not None:
        if s["strategy"] != "mirrored":
            raise app.UsageError(f"--cpu_replicas={s['cpu_replicas']} splits the CPU for --strategy=mirrored only "
                                 f"(got --strategy={s['strategy']}; a multi-worker run has one replica per worker)")
        if s["cpu_replicas"] < 1:
            raise app.UsageError(f"--cpu_replicas must be >= 1, got {s['cpu_replicas']}")
    if s["strategy"] == "multi_worker" and os.environ.get("TF_CONFIG"):
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise app.UsageError(f"TF_CONFIG is not valid JSON ({e}): {os.environ['TF_CONFIG']!r}") from None
    if s.get("shards"):
        if s["data_root"]:
            raise app.UsageError(f"--shards={s['shards']} and --data_root={s['data_root']}: give one (shards are "
                                 "read instead of the raw files)")
        try:
            train_dir = splits.shard_split_dirs(s["shards"], s["dataset"])["train"]
        except FileNotFoundError as e:
            raise app.UsageError(f"--shards={s['shards']}: {e}") from None
        if sharded_by_file(s):  # each worker reads its own training files: at least one each
            files = sorted(os.path.join(train_dir, f) for f in os.listdir(train_dir) if f.endswith(".tfrecord"))
            try:
                splits.worker_shard_files(files, num_workers(), worker_index(), train_dir)
            except ValueError as e:
                raise app.UsageError(f"--shards={s['shards']} under --strategy=multi_worker: {e}") from None


def is_chief() -> bool:
    """Whether this process writes the run directory: always, except the non-chief workers of a multi-worker run
    (TF_CONFIG's task is not the chief, nor worker 0 of a cluster without a chief)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task") or {}
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and "chief" not in config.get("cluster", {})


def run_directory(s, name):
    """The run directory: ``--resume``'s, a new one under ``--out_dir``, or - on a non-chief worker of a
    multi-worker run, whose checkpoints, logs and backups must not collide with the chief's - a temporary one."""
    from ferkeras import training

    if not is_chief():
        run_dir = training.RunDir.create(tempfile.mkdtemp(prefix="ferkeras-worker-"), name)
        _WORKER_DIRECTORIES.append(os.path.dirname(run_dir.path))  # removed by main when the run is done
        if s["resume"]:
            copy_backup(training.RunDir.open(s["resume"]), run_dir)
        return run_dir
    if s["resume"]:
        return training.RunDir.open(s["resume"])
    run_dir = training.RunDir.create(s["out_dir"], name)
    _NEW_RUN_DIRECTORIES.append(run_dir.path)  # removed again if the run fails before training (discard_...)
    return run_dir


_NEW_RUN_DIRECTORIES = []
_WORKER_DIRECTORIES = []


@contextlib.contextmanager
def discard_unstarted_run_directory():
    """Runs the block (a binary's ``run``); if it raises, removes the run directories :func:`run_directory` created
    in it that hold no file but flags.cfg: a run that fails before training starts (unreadable data, a model the
    flags cannot build) leaves no empty run directory behind.  A run that failed later keeps its logs."""
    first = len(_NEW_RUN_DIRECTORIES)
    try:
        yield
    except BaseException:
        for path in _NEW_RUN_DIRECTORIES[first:]:
            files = [f for _, _, names in os.walk(path) for f in names]
            if os.path.isdir(path) and set(files) <= {"flags.cfg"}:
                shutil.rmtree(path, ignore_errors=True)
                logging.info("removed the run directory %s: the run failed before training started", path)
        raise
    finally:
        del _NEW_RUN_DIRECTORIES[first:]


def copy_backup(source, target):
    """Copies the training backup (state and weights) of the run directory ``source`` into ``target``'s backup
    folder: how a non-chief worker resumes a multi-worker run from the chief's backup (as Keras's BackupAndRestore
    does, every worker restores the chief's; their weights are identical).  Safe while the chief starts up: it
    writes no backup before a training step, and no step runs before every worker joins.  Nothing to copy (no
    backup yet) leaves ``target`` without one: training then starts at step 0 on every worker alike."""
    state = source.backup().read_state()
    if state is None:
        logging.warning("resume: the chief's run directory %s has no backup (%s): starting at step 0",
                        source.path, source.backup_dir)
        return
    os.makedirs(target.backup_dir, exist_ok=True)
    shutil.copy2(os.path.join(source.backup_dir, state["weights"]), os.path.join(target.backup_dir, state["weights"]))
    shutil.copy2(os.path.join(source.backup_dir, os.path.basename(source.backup().state_path)),
                 target.backup().state_path)
    logging.info("resume: this worker restores the chief's backup %s (step %s)", source.backup_dir,
                 state["global_step"])


def num_workers() -> int:
    """The worker processes of the ``TF_CONFIG`` cluster (chief and workers; 1 without TF_CONFIG)."""
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster") or {}
    return max(1, sum(len(cluster.get(job) or ()) for job in ("chief", "worker")))


def worker_index() -> int:
    """This process's place among :func:`num_workers` (the ``TF_CONFIG`` task; 0 the chief, then the workers, as
    MultiWorkerMirroredStrategy numbers them; 0 without TF_CONFIG)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task") or {}
    if task.get("type") == "chief":
        return 0
    return len((config.get("cluster") or {}).get("chief") or ()) + int(task.get("index", 0))


def sharded_by_file(s) -> bool:
    """Whether each worker reads only its own training shard files (``--shards`` under multi_worker with 2+
    workers, :func:`ferkeras.data.splits.shard_data`)."""
    return bool(s.get("shards")) and s["strategy"] == "multi_worker" and num_workers() > 1


def make_strategy(s):
    """The ``--strategy`` (and ``--cpu_replicas``) tf.distribute strategy.  Every binary calls it FIRST in ``run``,
    before any TensorFlow op (data loading, synthetic rendering, model building): MultiWorkerMirroredStrategy and
    the CPU split must be configured at program start (:func:`ferkeras.training.get_strategy`)."""
    from ferkeras import training

    return training.get_strategy(s["strategy"], cpu_replicas=s.get("cpu_replicas"))


def training_stream(s, select, task="both"):
    """The training stream as ``ferkeras.training.fit`` wants it for exact resumes: a callable ``start_step ->``
    the repeated training pipeline from batch ``start_step`` on, rebuilt with a fresh augmentation each call (a
    reused augmentation's random state would have moved on). ``select`` maps ``(images, targets)`` batches."""

    def stream(start_step):
        train = load_data(s, augmentation(s), task=task).train.map(select).repeat()
        if not sharded_by_file(s):
            return train.skip(start_step)
        # Each worker's own files: a step trains on the first batch_size / num_workers faces of each worker's
        # batch (the batch is the global one, splits.shard_data), so resume after the faces this worker used.
        return train.unbatch().skip(start_step * s["batch_size"] // num_workers()).batch(
            s["batch_size"], drop_remainder=True)

    return stream


def main(argv, settings, check, run, title):
    """Every binary's ``main``: read and check the flags (user errors before any heavy import), train and evaluate
    with ``run(s) -> (result, run directory)``, print :func:`summary` headed ``title(s)``."""
    quiet_keras_warnings()
    if len(argv) > 1:
        raise app.UsageError(unexpected_arguments(argv[1:]))
    s = settings()
    check(s)
    if s.get("resume") and resume_is_complete(s):
        return
    with discard_unstarted_run_directory():
        result, path = run(s)
    print(summary(result, path, title(s)), flush=True)
    for folder in _WORKER_DIRECTORIES:  # a non-chief worker's run directory: temporary, the chief wrote the run's
        shutil.rmtree(folder, ignore_errors=True)
        print(f"(non-chief worker of a multi-worker run: its temporary run directory {path} is removed; the chief "
              "(worker 0) wrote the run directory)", flush=True)
    del _WORKER_DIRECTORIES[:]


def resume_is_complete(s) -> bool:
    """``--resume`` of a run with nothing left to do (:meth:`ferkeras.training.RunDir.check_resume`: trained,
    evaluated, and the flags ask for no more epochs / iterations): prints so and returns True, the run directory
    untouched.  A damaged backup, or more epochs asked of a run that cannot continue, is a usage error."""
    from ferkeras import training

    try:
        training.RunDir.open(s["resume"]).check_resume(epochs=None if s.get("iterations") else s["epochs"],
                                                       steps=s.get("iterations"))
    except training.RunComplete as e:
        print(e, flush=True)
        return True
    except ValueError as e:
        raise app.UsageError(f"--resume={s['resume']}: {e}") from None
    return False


def summary(result, path, title) -> str:
    """A few lines for the terminal from a binary's result.json dict: ``title``, the held-out valence-arousal metrics
    per axis and their mean, the expression metrics (each when evaluated), the iterations (if the result has them),
    the timings and the run directory ``path``."""
    m = result["metrics"]
    lines = ["", "=" * 72, title]
    tail = []
    if "valence_ccc" in m:
        for axis in ("valence", "arousal", "mean"):
            lines.append(f"  {axis:8s} CCC {m[f'{axis}_ccc']:.3f}  PCC {m[f'{axis}_pcc']:.3f}  "
                         f"RMSE {m[f'{axis}_rmse']:.3f}  SAGR {m[f'{axis}_sagr']:.3f}")
        tail.append(f"N={m['va_count']}")
    if "expression_accuracy" in m:
        lines.append(f"  expression accuracy {m['expression_accuracy']:.3f}  average accuracy "
                     f"{m['expression_average_accuracy']:.3f}  macro-F1 {m['expression_macro_f1']:.3f}   "
                     f"(N={m['expression_count']})")
    if "iterations" in result:
        tail.append(f"{result['iterations']} iterations")
    dropped = {split: d["dropped"] for split, d in (result.get("input_drops") or {}).items() if d["dropped"]}
    if dropped:
        lines.append(f"  input: images dropped ({', '.join(f'{k} {v}' for k, v in dropped.items())}, over all "
                     "passes): see input_drops in result.json")
    tail.append(f"time: {result['total_seconds']:.0f} s total, {result['train_seconds']:.0f} s training")
    lines.append("  " + "; ".join(tail))
    lines.append(f"  run directory: {path}")
    lines.append("=" * 72)
    return "\n".join(lines)


def quiet_keras_warnings():
    """Keras warns at the end of every pass over a dataset of unknown length (the pipelines drop undecodable images,
    so their length is unknown); the binaries repeat the training set, so the warning carries no information."""
    warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)


def augmentation(s):
    """The ``--augment`` :class:`~ferkeras.augment.spatial.FaceAugment` (None for "none")."""
    from ferkeras.augment.spatial import FaceAugment

    if s["augment"] == "none":
        return None
    if s["augment"] == "flip":
        return FaceAugment(flip=True, seed=s["seed"])
    return FaceAugment.preset(s["augment"], seed=s["seed"])


def synthetic_data(s, augment=None) -> Data:
    """Train / validation / test pipelines of synthetic faces with disjoint identities (test: never seen): the
    flags' :func:`ferkeras.data.splits.synthetic_data`."""
    return splits.synthetic_data(num_train=s["num_train"], num_val=s["num_val"], num_test=s["num_test"],
                                 train_identities=s["train_identities"], image_size=s["image_size"],
                                 batch_size=s["batch_size"], seed=s["seed"], augment=augment)


def real_data(s, augment=None, task="both") -> Data:
    """Train and held-out pipelines of ``--dataset`` read from ``--data_root``: the flags'
    :func:`ferkeras.data.splits.real_data` (the held-out split, :data:`EVAL_SPLITS`, is both ``val`` and ``test``;
    ``task`` selects Aff-Wild2's annotation set)."""
    return splits.real_data(s["dataset"], s["data_root"], image_size=s["image_size"], batch_size=s["batch_size"],
                            seed=s["seed"], fold=s["fold"], task=task, augment=augment, stats=pipeline_stats())


def shard_data(s, augment=None) -> Data:
    """The pipelines of ``--shards``: :func:`ferkeras.data.splits.shard_data` (under --strategy=multi_worker the
    training shards split across the workers by file, the held-out ones by data)."""
    workers = num_workers() if s["strategy"] == "multi_worker" else 1
    return splits.shard_data(s["shards"], image_size=s["image_size"], batch_size=s["batch_size"], seed=s["seed"],
                             augment=augment, dataset=s["dataset"], num_workers=workers,
                             worker_index=worker_index() if workers > 1 else 0, stats=pipeline_stats())


_PIPELINE_STATS = {}


def pipeline_stats():
    """The process's ``{"train", "val", "test": PipelineStats}`` (:class:`ferkeras.data.elements.PipelineStats`),
    created once: every rebuild of the training stream (resumes) counts into the same variables.  The pipelines of
    real datasets and shards count the images they drop (undecodable, face too small), with the first names."""
    if not _PIPELINE_STATS:
        from ferkeras.data.elements import PipelineStats

        _PIPELINE_STATS.update((split, PipelineStats(split)) for split in ("train", "val", "test"))
    return _PIPELINE_STATS


def drop_callbacks(s):
    """``[PipelineDropLogger]`` reporting every epoch what the training and held-out pipelines (those read so far)
    dropped; none for synthetic faces, which are arrays."""
    if s["dataset"] == "synthetic" and not s.get("shards"):
        return []
    from ferkeras.callbacks import PipelineDropLogger

    return [PipelineDropLogger(pipeline_stats())]


def drop_report(s):
    """result.json's ``input_drops``: per pipeline the images it loaded, kept and dropped (by reason, with the first
    names), over every pass of the run (the training stream repeats; the held-out split is read at every
    validation and by the final evaluation).  Empty for synthetic faces."""
    if s["dataset"] == "synthetic" and not s.get("shards"):
        return {}
    return {split: stats.as_dict() for split, stats in pipeline_stats().items() if stats.attempted.numpy()}


def record_drops(s, result, run_dir):
    """Adds :func:`drop_report` (counted after the final evaluation) to ``result`` as ``input_drops``, and on a real
    dataset what its readers skipped (:func:`ferkeras.data.splits.reader_skips`) as ``reader_skipped``, and rewrites
    the run directory's result.json; logs a warning naming the first dropped files when any was dropped."""
    drops = drop_report(s)
    skips = splits.reader_skips() if s["dataset"] != "synthetic" and not s.get("shards") else {}
    if skips:
        result["reader_skipped"] = skips
    if drops:
        result["input_drops"] = drops
    if drops or skips:
        run_dir.write_result(result)
        for stats in pipeline_stats().values():
            if stats.attempted.numpy():
                stats.report()
    return result


def load_data(s, augment=None, task="both") -> Data:
    """:func:`shard_data` with ``--shards``, else :func:`synthetic_data` or :func:`real_data` as ``--dataset``
    says."""
    if s.get("shards"):
        return shard_data(s, augment)
    if s["dataset"] == "synthetic":
        return synthetic_data(s, augment)
    return real_data(s, augment, task)


def steps_per_epoch(s, num_train):
    """``--steps``, or one pass over the training set; a clear error when the set gives no full batch."""
    steps = s["steps"] or num_train // s["batch_size"]
    if steps < 1:
        raise ValueError(f"the training set of --dataset={s['dataset']} ({num_train} faces) gives no full batch "
                         f"of --batch_size={s['batch_size']}")
    return steps


def checkpoint_monitor(s):
    """The checkpoint (what result.json describes and ferkeras.export ships) is the epoch with the best validation
    loss when the validation set is its own (synthetic: separate identities); on real datasets the validation set is
    the test split, so the choice goes by the training loss instead (no model selection on test data)."""
    if s.get("shards"):  # a val/ folder of their own besides test/ (splits.shard_split_dirs)
        return "val_loss" if splits.shards_have_own_validation(s["shards"], s["dataset"]) else "loss"
    return "val_loss" if s["dataset"] == "synthetic" else "loss"
