"""The symbol classes of the detector, in label-index order (no heavy imports)."""

from __future__ import annotations

__all__ = ["CLASSES", "OPENING_CLASSES"]

#: detector classes; the index is the YOLO label and model output index
CLASSES: tuple[str, ...] = ("door", "window", "stairs", "toilet", "sink", "bathtub")
#: classes that are openings in walls
OPENING_CLASSES: frozenset[str] = frozenset({"door", "window"})
