"""ferkeras.analysis, the old name of ferkeras.inference, still gives every public name (for existing scripts)."""

from ferkeras import analysis, inference


def test_analysis_reexports_the_inference_module():
    assert "Predictor" in inference.__all__ and "analyze_video" in inference.__all__
    assert set(analysis.__all__) == set(inference.__all__)
    for name in inference.__all__:
        assert getattr(analysis, name) is getattr(inference, name), name
