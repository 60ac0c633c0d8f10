"""Images in, detections out, through any runner: the one Predictor loop.

:func:`~maskrt.inference.predictor.prepare` puts an image on the model's canvas, a runner (any backend, see
:mod:`maskrt.backends`) runs the batch, :func:`~maskrt.inference.predictor.postprocess` turns the outputs into
:class:`Detections` in the image's own pixels. Evaluation, verification, profiling, serving and the demo reuse
these steps rather than writing their own.
"""

from maskrt.inference.detections import Detections
from maskrt.inference.predictor import Predictor, prepare

__all__ = ["Detections", "Predictor", "prepare"]
