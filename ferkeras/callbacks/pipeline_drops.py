"""PipelineDropLogger: reports, at the end of every epoch, the images the input pipelines dropped, with their names."""

from __future__ import annotations

import logging
from typing import Dict, Mapping, Union

import keras

from ferkeras.data.elements import PipelineStats

logger = logging.getLogger("ferkeras.callbacks")


class PipelineDropLogger(keras.callbacks.Callback):
    """Logs, after every epoch, what each input pipeline dropped that epoch and in total, with the first file names.

    The pipelines of :mod:`ferkeras.data.pipeline` skip images that do not decode (a truncated JPEG) or whose face
    is smaller than :data:`ferkeras.data.image_ops.MIN_FACE_SIZE`, counting them in the
    :class:`~ferkeras.data.elements.PipelineStats` passed as their ``stats``.  This callback reads those counters
    (TensorFlow variables the pipeline updates in-graph, so it works with any ``model.fit``, repeated datasets and
    ``tf.distribute``): an epoch with drops logs a warning such as ``train: 2 dropped this epoch (1 undecodable
    image, 1 face smaller than 16 px); 640 kept, 4 dropped in total; first: a.jpg (undecodable image), ...``;
    an epoch without drops logs at INFO level; a pipeline that has read nothing yet is left out.  :meth:`as_dict`
    gives the totals for a result file.

    Args:
        stats: one :class:`PipelineStats`, or a mapping ``label -> PipelineStats`` (e.g. ``{"train": ...,
            "validation": ...}``).

    Example::

        train_stats, val_stats = PipelineStats("train"), PipelineStats("validation")
        train = build_dataset(train_records, training=True, stats=train_stats)
        val = build_dataset(val_records, stats=val_stats)
        model.fit(train, validation_data=val, epochs=10,
                  callbacks=[PipelineDropLogger({"train": train_stats, "validation": val_stats})])
    """

    def __init__(self, stats: Union[PipelineStats, Mapping[str, PipelineStats]]):
        super().__init__()
        if isinstance(stats, PipelineStats):
            stats = {stats.name: stats}
        bad = [k for k, v in dict(stats).items() if not isinstance(v, PipelineStats)]
        if bad:
            raise TypeError(f"PipelineDropLogger: stats must be PipelineStats objects; not for {bad}")
        self.stats: Dict[str, PipelineStats] = dict(stats)
        self._seen = {label: self._snapshot(s) for label, s in self.stats.items()}
        self.epoch_drops: Dict[str, list] = {label: [] for label in self.stats}
        """Per label, the number dropped in each epoch this object saw (in order)."""

    @staticmethod
    def _snapshot(stats: PipelineStats):
        return stats.dropped, stats.counts

    def epoch_message(self, label: str) -> str:
        """The line for ``label`` since the previous call (an epoch), updating the per-epoch record."""
        stats = self.stats[label]
        before, before_counts = self._seen[label]
        dropped, counts = self._snapshot(stats)
        self._seen[label] = (dropped, counts)
        new = dropped - before
        self.epoch_drops[label].append(new)
        text = f"{label}: {new} dropped this epoch"
        if new:
            reasons = ", ".join(f"{counts[r] - before_counts[r]} {r}" for r in counts if counts[r] - before_counts[r])
            text += f" ({reasons})"
        text += f"; {int(stats.decoded.numpy())} kept, {dropped} dropped in total"
        if dropped:
            text += f"; first: {', '.join(stats.first_dropped())}"
        return text

    def on_epoch_end(self, epoch, logs=None):
        for label, stats in self.stats.items():
            if not stats.attempted.numpy():  # a pipeline not read yet (or one that shares another's)
                continue
            message = self.epoch_message(label)
            (logger.warning if self.epoch_drops[label][-1] else logger.info)(
                "epoch %d input pipeline %s", epoch + 1, message)

    def as_dict(self) -> Dict[str, Dict]:
        """``{label: PipelineStats.as_dict()}``: totals over every pass so far, with the first dropped names."""
        return {label: stats.as_dict() for label, stats in self.stats.items()}


__all__ = ("PipelineDropLogger",)
