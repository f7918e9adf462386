"""ferkeras.viz.plots: the run directory's figures."""

import numpy as np
import pytest

from ferkeras.viz import plots


def test_plots_write_pngs(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.uniform(-1, 1, (300, 2))
    y[0] = np.nan
    path = plots.plot_va_scatter(y, 0.8 * y, str(tmp_path / "s.png"), scores={"valence_ccc": 0.9}, title="t")
    curves = plots.plot_training_curves({"epoch": [0, 1, 2], "loss": [3, 2, 1], "val_loss": [3.5, 2.5, 2],
                                         "learning_rate": [1, 1, 1], "va_ccc": [0.1, 0.4, 0.6]},
                                        str(tmp_path / "c.png"))
    for p in (path, curves):
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="differ"):
        plots.plot_va_scatter(y, y[:10], str(tmp_path / "bad.png"))
    with pytest.raises(ValueError, match="no metric"):
        plots.plot_training_curves({"epoch": [0]}, str(tmp_path / "bad2.png"))
