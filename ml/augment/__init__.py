"""Training augmentation: named transforms with weights, aimed at the failure causes QA tags.

Each named transform maps to a cause of the bad-case taxonomy (MISSION row 10):

=================  ===================================================================
name               what it does
=================  ===================================================================
occlusion          random erasing: 1-3 rectangles filled with noise or a flat colour
lighting           exposure: brightness, contrast and gamma, alike on every channel (no cast)
colour             colour cast: saturation and white balance (off unless QA asks: a colour
                   variant is another SKU)
angle              perspective warp and rotation
background         background replacement through a foreground mask
compression_blur   JPEG re-encoding at low quality and Gaussian blur
scribble           strokes and text drawn over the image
crop               random resized crop (the "wrong crop" cause)
=================  ===================================================================

Reseller artefacts (seed 001: compression, crops, scribbles) are always in the mix: ``crop``
runs on every image and ``compression_blur`` / ``scribble`` never drop below
:data:`ARTEFACT_FLOOR`, whatever the weights say.

:mod:`.policy` holds :class:`AugmentPolicy` and the cause names, :mod:`.transforms` the
transforms, :mod:`.background` the background transform and :func:`heuristic_mask`; every name
is importable from here.
"""

from __future__ import annotations

from ml.augment.background import background, heuristic_mask
from ml.augment.policy import (
    ARTEFACT_FLOOR,
    CAUSE_ALIASES,
    DEFAULT_PROBS,
    IGNORED_CAUSES,
    TRANSFORM_NAMES,
    AugmentPolicy,
)
from ml.augment.transforms import (
    TRANSFORMS,
    Transform,
    angle,
    colour,
    compression_blur,
    lighting,
    occlusion,
    random_resized_crop,
    scribble,
)

__all__ = [
    "ARTEFACT_FLOOR",
    "CAUSE_ALIASES",
    "DEFAULT_PROBS",
    "IGNORED_CAUSES",
    "TRANSFORMS",
    "TRANSFORM_NAMES",
    "Transform",
    "AugmentPolicy",
    "angle",
    "background",
    "colour",
    "compression_blur",
    "heuristic_mask",
    "lighting",
    "occlusion",
    "random_resized_crop",
    "scribble",
]
