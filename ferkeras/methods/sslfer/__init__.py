"""SSL-FER: Shu, Gu, Yang, Lo, "Revisiting Self-Supervised Contrastive Learning for Facial Expression Recognition",
BMVC 2022.

The method's public API, one module per part of the paper:

* :mod:`~ferkeras.methods.sslfer.maskfn`: MaskFN, false-negative cancellation from frozen eye / mouth features
  (Sec. 3.4, Eq. 2);
* :mod:`~ferkeras.methods.sslfer.objective`: :class:`SSLFERObjective`, InfoNCE with hard negatives (Eq. 1) plus
  optional MaskFN, the loss of the shared contrastive pre-training model;
* :mod:`~ferkeras.methods.sslfer.data`: :func:`sslfer_dataset`, the pre-training input pipeline (TimeAug,
  HardNeg, FaceSwap, MaskFN parts, spatial augmentation; every strategy has its switch);
* :mod:`~ferkeras.methods.sslfer.optimizer`: :class:`AdamL2` (Adam with the authors' coupled L2 weight decay) and
  :func:`pretraining_schedule` (constant, then cosine from epoch 10), Sec. 4.1;
* :mod:`~ferkeras.methods.sslfer.saliency`: Figure 6, Grad-CAM of pre-trained encoders over faces of several
  expressions (imported on use).

Generic pieces SSL-FER uses live outside: InfoNCE in :mod:`ferkeras.losses.info_nce`, balanced softmax in
:mod:`ferkeras.losses.balanced_softmax`, eye / mouth crops in :mod:`ferkeras.face.regions`, views from face tracks in
:mod:`ferkeras.data.video_views`.
"""

from ferkeras.methods.sslfer.data import (
    PAPER_IMAGE_SIZE,
    PAPER_LOAD_SIZE,
    SSLFERDataStats,
    sslfer_dataset,
)
from ferkeras.methods.sslfer.maskfn import (
    MASKFN_WEIGHT,
    NUM_FALSE_NEGATIVES,
    MaskFN,
    default_part_encoder,
    load_part_encoder,
    maskfn_loss,
    part_features,
    pick_false_negatives,
)
from ferkeras.methods.sslfer.objective import SSLFERObjective
from ferkeras.methods.sslfer.optimizer import AdamL2, pretraining_optimizer, pretraining_schedule
