"""ferkeras.viz."""
