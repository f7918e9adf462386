"""ferkeras.losses."""
