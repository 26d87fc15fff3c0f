"""The plan-symbol detector: a small YOLO trained on synthetic plans, run on tiles.

:func:`load_detector` returns a :class:`Detector` whose :meth:`Detector.detect` finds
doors, windows, stairs and plumbing fixtures (:data:`CLASSES`) on page renders made at
:attr:`Detector.dpi`. The weights ship with the package (:data:`DEFAULT_WEIGHTS`, see
``weights/MODEL_CARD.md``); nothing is ever downloaded. torch and ultralytics are
imported only when a detector is loaded.

Training data and training live in :mod:`cad2gltf.detect.dataset` and
:mod:`cad2gltf.detect.train` (the ``train_detector`` flow wraps them).
"""

from __future__ import annotations

from cad2gltf.detect.classes import CLASSES, OPENING_CLASSES
from cad2gltf.detect.detector import DEFAULT_WEIGHTS, Detection, Detector, load_detector

__all__ = [
    "CLASSES",
    "DEFAULT_WEIGHTS",
    "OPENING_CLASSES",
    "Detection",
    "Detector",
    "load_detector",
]
