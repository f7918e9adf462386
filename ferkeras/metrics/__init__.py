"""ferkeras.metrics."""
