"""Valence, arousal and expression of every face in a video: tools/analyze.py with its older flag names.

    python tools/analyze_video.py --video=clip.mp4 --model=saved_models/baseline --out=out/clip
    python tools/analyze_video.py --video=frames/ --fps=30 --model=runs/baseline_affectnet --every_n=2 \
        --annotate_video

Every flag of tools/analyze.py is accepted; --video, --every_n and --annotate_video are aliases of --input, --every
and --annotate.  Here --out is a file prefix (default ``analysis/<video name>``): writes ``<out>.csv``,
``<out>_va.png``, ``<out>_expression.png`` and, on request, ``<out>_annotated.mp4`` or ``<out>_frames/*.png``; a
folder is always the frames of a video.
"""

import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import analyze  # noqa: E402  (tools/analyze.py: defines the flags)
from absl import app  # noqa: E402

if __name__ == "__main__":
    app.run(functools.partial(analyze.main, out_is_prefix=True))
