"""Old name of :mod:`ferkeras.inference` (video and photo inference), kept so that existing scripts keep working."""

from ferkeras.inference import (BASE_COLUMNS, PROB_PREFIX, STAGES, FaceCropper, FrameResult, KerasPredictor,
                                Predictor, SavedModelPredictor, StageTimer, VideoAnalysis, analyze_frames,
                                analyze_video, annotate, csv_columns, frame_rows, load_predictor, plot_va_timeline,
                                read_va_csv)

__all__ = ("BASE_COLUMNS", "FaceCropper", "FrameResult", "KerasPredictor", "PROB_PREFIX", "Predictor", "STAGES",
           "SavedModelPredictor", "StageTimer", "VideoAnalysis", "analyze_frames", "analyze_video", "annotate",
           "csv_columns", "frame_rows", "load_predictor", "plot_va_timeline", "read_va_csv")
