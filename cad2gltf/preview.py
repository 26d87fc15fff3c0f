"""A PNG thumbnail of a scene: the plan seen from above, for people who would rather look.

Filled triangles first (walls darker, being tall), then linework, drawn with OpenCV on a
white canvas. Deterministic for a given scene.
"""

from __future__ import annotations

import numpy as np

from cad2gltf.scene import Scene

__all__ = ["preview_png"]


def _bgr(color: tuple[float, float, float, float], darken: float = 1.0) -> tuple[int, int, int]:
    r, g, b, _ = color
    return (int(b * 255 * darken), int(g * 255 * darken), int(r * 255 * darken))


def preview_png(scene: Scene, size: int = 768, margin: int = 16) -> bytes:
    """Render the scene's plan (X/Y) into a PNG of at most ``size`` pixels a side.

    Returns:
        PNG bytes (a blank canvas for a scene without geometry).
    """
    import cv2

    bounds = scene.bounds()
    if bounds is None:
        canvas = np.full((size // 2, size, 3), 255, np.uint8)
        return bytes(cv2.imencode(".png", canvas)[1])
    lo, hi = bounds
    span = np.maximum(hi[:2] - lo[:2], 1e-9)
    scale = (size - 2 * margin) / float(span.max())
    w = int(max(32, np.ceil(span[0] * scale) + 2 * margin))
    h = int(max(32, np.ceil(span[1] * scale) + 2 * margin))
    canvas = np.full((h, w, 3), 255, np.uint8)

    def px(p: np.ndarray) -> np.ndarray:
        q = np.empty((p.shape[0], 2), dtype=np.float64)
        q[:, 0] = (p[:, 0] - lo[0]) * scale + margin
        q[:, 1] = h - ((p[:, 1] - lo[1]) * scale + margin)
        q = np.nan_to_num(q, nan=-1e6, posinf=1e6, neginf=-1e6)
        return np.clip(q, -1e6, 1e6).astype(np.int32)

    nodes = list(scene.iter_nodes())
    # tall things (walls, columns) last among the fills so they read as solid
    nodes.sort(key=lambda n: n.category in ("wall", "column"))
    for node in nodes:
        solid = node.category in ("wall", "column")
        for prim in node.primitives:
            if prim.kind != "triangles" or prim.vertex_count == 0:
                continue
            tri = prim.positions[prim.indices] if prim.indices is not None else prim.positions
            tri = tri[: tri.shape[0] - tri.shape[0] % 3]
            if solid:
                # only the plan footprint matters: keep triangles facing up
                a, b, c = tri[0::3], tri[1::3], tri[2::3]
                up = np.cross(b - a, c - a)[:, 2] > 0
                tri = np.stack([a[up], b[up], c[up]], axis=1).reshape(-1, 3)
            if tri.shape[0] == 0:
                continue
            polys = px(tri).reshape(-1, 3, 2)
            colour = _bgr(prim.color, 0.6 if solid else 1.0)
            if prim.color[3] < 1.0:
                colour = (230, 200, 150)
            cv2.fillPoly(canvas, list(polys), colour, lineType=cv2.LINE_AA)
    for node in scene.iter_nodes():
        for prim in node.primitives:
            if prim.kind == "lines" and prim.vertex_count:
                segs = px(prim.positions).reshape(-1, 2, 2)
                cv2.polylines(canvas, list(segs), False, _bgr(prim.color), 1, cv2.LINE_AA)
            elif prim.kind == "points" and prim.vertex_count:
                for x, y in px(prim.positions)[:100_000]:
                    canvas[max(0, min(h - 1, y)), max(0, min(w - 1, x))] = _bgr(prim.color)
    ok, png = cv2.imencode(".png", canvas, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    return bytes(png)
