"""ferkeras.face."""
