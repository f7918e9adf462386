"""ferkeras.models: backbones, task heads and task models.

Backbones (:mod:`ferkeras.models.backbones`) take RGB images in [0, 1] and return a feature map or a pooled
vector; heads (:mod:`ferkeras.models.heads`) map pooled features to predictions; the supervised baseline
(:mod:`ferkeras.models.baseline`) joins them into a model with ``{"va", "expression"}`` outputs; the shared
contrastive pre-training task model (:mod:`ferkeras.models.contrastive`) trains an encoder self-supervised.
"""

from ferkeras.models.backbones import BACKBONES, alexnet, efficientnetb2, make_backbone, resnet18, resnet50
from ferkeras.models.baseline import baseline_losses, baseline_metrics, build_baseline_model, compile_baseline
from ferkeras.models.contrastive import ContrastivePretrainer
from ferkeras.models.heads import expression_classifier, mlp_head, projection_head, va_regressor
from ferkeras.models.layers import CaffePreprocessing

__all__ = ["BACKBONES", "CaffePreprocessing", "ContrastivePretrainer", "alexnet", "baseline_losses", "baseline_metrics",
           "build_baseline_model", "compile_baseline", "efficientnetb2", "expression_classifier", "make_backbone",
           "mlp_head", "projection_head", "resnet18", "resnet50", "va_regressor"]
