"""ferkeras.augment."""
