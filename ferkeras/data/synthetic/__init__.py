"""Procedural synthetic faces with exact labels: the default data of every ferkeras binary.

Real facial-expression datasets are licence-gated, so ferkeras draws its own faces with NumPy and OpenCV.
Each picture is built **geometry first**:

1. An :class:`Identity` (face width/length, jaw shape, skin tone, hair style and colour, eye spacing and size,
   nose length and width, mouth width, glasses, clothing and background) is sampled independently of
   everything else (:mod:`~ferkeras.data.synthetic.identities`).
2. An :class:`Expression` holds continuous valence and arousal in [-1, 1], one of the 8 AffectNet categories
   (:data:`EXPRESSIONS`, defined by the record schema) and action-unit-like intensities (brow raise / lower /
   inner raise, lid opening, cheek raise, lip-corner pull and depress, jaw drop, nose wrinkle, upper-lip raise,
   lip stretch, one-sided lip corner).  The action units are a deterministic function of (category, valence,
   arousal) (:func:`expression_from_va`): lip-corner pull grows with positive valence, lip-corner depress with
   negative valence, lid opening and jaw drop with arousal, and each category adds its own signature (raised
   brows for surprise, lowered brows for anger, nose wrinkle for disgust, a one-sided corner for contempt, ...)
   (:mod:`~ferkeras.data.synthetic.expressions`).
3. The 68 landmarks, in dlib's order, plus denser rendering curves, are placed on a 3-D face surface, rotated by
   the head :class:`Pose` (yaw, pitch, roll) and projected orthographically to pixels
   (:mod:`~ferkeras.data.synthetic.geometry`).
4. The face is rasterised *from those projected points* (anti-aliased ``fillPoly`` / ``polylines`` with
   sub-pixel coordinates), so the returned landmarks are exactly where the features are drawn; then
   :class:`Lighting` (brightness, contrast, a directional gradient, sensor noise) is applied
   (:mod:`~ferkeras.data.synthetic.raster`).

:mod:`~ferkeras.data.synthetic.faces` renders one face (:func:`render_face`) and data sets of still faces
(:func:`generate_faces`, :func:`synthetic_arrays`); :mod:`~ferkeras.data.synthetic.videos` renders videos with
smooth valence-arousal trajectories (:func:`render_video`) and reaction-mashup clips (:func:`render_mashup`);
:mod:`~ferkeras.data.synthetic.formats` writes synthetic copies of the real datasets in their on-disk formats.

Everything is deterministic given the seed.  An identity's appearance depends only on its index
(``"id0007"`` looks the same in every dataset), so train/test splits by identity are easy (see the
``first_identity`` argument of :func:`generate_faces` and :mod:`ferkeras.data.splits`).
"""

from ferkeras.data.synthetic.expressions import (EXPRESSIONS, VA_CENTROIDS, VA_SPREAD, Expression,
                                                 expression_from_va, nearest_category, sample_expression)
from ferkeras.data.synthetic.faces import SyntheticFace, generate_faces, render_face, synthetic_arrays
from ferkeras.data.synthetic.geometry import Pose, sample_pose
from ferkeras.data.synthetic.identities import Identity, identity_pool, sample_identity
from ferkeras.data.synthetic.raster import Lighting, sample_lighting
from ferkeras.data.synthetic.videos import Mashup, MashupPerson, render_mashup, render_video

__all__ = ("EXPRESSIONS", "VA_CENTROIDS", "VA_SPREAD", "Expression", "Identity", "Lighting", "Mashup",
           "MashupPerson", "Pose", "SyntheticFace", "expression_from_va", "generate_faces", "identity_pool",
           "nearest_category", "render_face", "render_mashup", "render_video", "sample_expression",
           "sample_identity", "sample_lighting", "sample_pose", "synthetic_arrays")
