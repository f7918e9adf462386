"""Data layer: one record schema, dataset readers, synthetic faces and tf.data pipelines."""

from ferkeras.data.schema import MISSING_INT, NUM_LANDMARKS, FaceRecord, SkipCounter  # noqa: F401
