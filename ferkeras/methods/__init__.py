"""ferkeras.methods: one package per paper method, holding everything that is that method's alone.

* :mod:`ferkeras.methods.avce`: AVCE, Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion
  Recognition", ECCV 2022 (valence-arousal regression with the AVCE contrastive regulariser).

Pieces any method can use stay generic: backbones and heads in :mod:`ferkeras.models`, losses in
:mod:`ferkeras.losses`, ops in :mod:`ferkeras.ops`. Import a method's public API from its package, e.g.
``from ferkeras.methods.avce import AVCEModel``; this package imports no method by itself.
"""
