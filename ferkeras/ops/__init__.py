"""ferkeras.ops."""
