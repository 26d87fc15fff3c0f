"""Where a PDF page sits in the scene: points (or pixels) on the sheet -> metres.

PyMuPDF gives page coordinates in points with the origin at the top-left corner and y
growing downwards. The scene frame is the drawing's own: x right, y up the sheet (north),
in metres of the building. Page ``k`` is laid out to the right of page ``k-1`` with a gap,
so that a multi-page set opens in a viewer as a row of plans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PageFrame"]


@dataclass(frozen=True)
class PageFrame:
    """The mapping of one page into the scene.

    Attributes:
        number: 1-based page number.
        width_pt / height_pt: page size in points.
        metres_per_point: drawing scale times the size of a point.
        offset_m: where the page's bottom-left corner lies in the scene (metres).
    """

    number: int
    width_pt: float
    height_pt: float
    metres_per_point: float
    offset_m: tuple[float, float] = (0.0, 0.0)

    @property
    def size_m(self) -> tuple[float, float]:
        return self.width_pt * self.metres_per_point, self.height_pt * self.metres_per_point

    def to_m(self, pts: np.ndarray) -> np.ndarray:
        """``(n, 2)`` page points -> ``(n, 3)`` scene metres (z = 0)."""
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        out = np.zeros((pts.shape[0], 3))
        s = self.metres_per_point
        out[:, 0] = pts[:, 0] * s + self.offset_m[0]
        out[:, 1] = (self.height_pt - pts[:, 1]) * s + self.offset_m[1]
        return out

    def px_to_m(self, pts: np.ndarray, dpi: float) -> np.ndarray:
        """``(n, 2)`` pixels of a render at ``dpi`` -> ``(n, 3)`` scene metres."""
        return self.to_m(np.asarray(pts, dtype=np.float64).reshape(-1, 2) * (72.0 / dpi))

    def m_to_pt(self, pts: np.ndarray) -> np.ndarray:
        """``(n, 2+)`` scene metres -> ``(n, 2)`` page points (top-left origin)."""
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, pts.shape[-1])
        s = self.metres_per_point
        out = np.empty((pts.shape[0], 2))
        out[:, 0] = (pts[:, 0] - self.offset_m[0]) / s
        out[:, 1] = self.height_pt - (pts[:, 1] - self.offset_m[1]) / s
        return out

    def bbox_pt(self, pts_m: np.ndarray) -> list[float]:
        """Bounding box ``[x0, y0, x1, y1]`` in page points of scene points (metres)."""
        p = self.m_to_pt(pts_m)
        return [round(float(v), 2) for v in (*p.min(axis=0), *p.max(axis=0))]
