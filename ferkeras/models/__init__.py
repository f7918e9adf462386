"""ferkeras.models."""
