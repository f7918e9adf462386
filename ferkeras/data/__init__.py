"""Data layer: one record schema, dataset readers, synthetic faces, split policy and tf.data pipelines."""

from ferkeras.data.schema import EXPRESSIONS, MISSING_INT, NUM_LANDMARKS, FaceRecord, SkipCounter  # noqa: F401
