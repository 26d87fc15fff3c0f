"""Scanned pages: walls from a raster image with OpenCV.

:func:`find_walls` takes a grayscale render of the page and returns wall rectangles in
pixels of the deskewed image:

1. **binarise** (Otsu) so that ink is 255, then **denoise** (a 2x2 opening removes scan
   speckle; a median keeps edges);
2. **deskew**: the dominant direction of long straight strokes (probabilistic Hough) is
   folded into (-45°, 45°]; rotations up to ``max_skew_deg`` are undone;
3. **remove text blobs**: connected components smaller than ``text_max_m`` in both
   directions (letters, numbers, small symbols) are erased;
4. **walls**: a morphological opening with a long thin kernel (``min_wall_length_m``)
   keeps horizontal (then vertical) strokes only; each remaining component is measured
   by its mean thickness: thick ones (poché, filled walls) are walls as drawn, thin ones
   are the faces of walls drawn as parallel lines and are paired when they lie
   ``min_wall_thickness..max_wall_thickness`` apart and overlap along their length.

Pixels become metres with the page scale (:class:`cad2gltf.pdf.scale.PageScale`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cad2gltf.options import ConvertOptions

__all__ = ["ScanResult", "find_walls"]


@dataclass
class ScanResult:
    """Walls found on a scanned page.

    Attributes:
        walls: ``(k, 5)`` rows ``x0, y0, x1, y1, kind`` in pixels of the deskewed image
            (axis-aligned rectangles; kind 0 = thick stroke, 1 = line pair).
        skew_deg: how far the scan was turned (degrees, counter-clockwise as seen); undone.
        matrix: 2x3 affine map from original pixels to deskewed pixels.
        text_blobs: number of small components erased as text.
    """

    walls: np.ndarray
    skew_deg: float
    matrix: np.ndarray
    text_blobs: int = 0
    stats: dict[str, int] = field(default_factory=dict)


def find_walls(gray: np.ndarray, metres_per_pixel: float, options: ConvertOptions, *,
               max_skew_deg: float = 5.0, min_wall_length_m: float = 0.5,
               text_max_m: float = 0.35, close_max_m: float = 0.4) -> ScanResult:
    """Find wall rectangles in a grayscale page image (dark ink on light paper).

    Args:
        gray: ``(h, w)`` uint8 image.
        metres_per_pixel: drawing scale at the image's resolution.
        options: wall thickness bounds (``min_wall_thickness``, ``max_wall_thickness``).
        max_skew_deg: larger rotations are not undone (taken as drawn).
        min_wall_length_m: shorter straight strokes are not walls.
        text_max_m: components smaller than this in both directions are text.
        close_max_m: widest gap between two wall faces that is closed into one wall.

    Returns:
        The walls (pixels, deskewed frame), the skew and the pixel transform.
    """
    import cv2

    px = 1.0 / metres_per_pixel  # pixels per metre
    _, ink = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    ink = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    ink = cv2.medianBlur(ink, 3)
    h, w = ink.shape
    long_px = max(8, int(round(min_wall_length_m * px)))
    angle = _skew(ink, long_px, max_skew_deg)
    matrix = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    if abs(angle) > 0.05:
        matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
        ink = cv2.warpAffine(ink, matrix, (w, h), flags=cv2.INTER_NEAREST,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # text: small components
    n, labels, st, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    small = (st[:, cv2.CC_STAT_WIDTH] < text_max_m * px) & \
            (st[:, cv2.CC_STAT_HEIGHT] < text_max_m * px)
    small[0] = False
    blobs = int(small.sum())
    if blobs:
        ink[small[labels]] = 0
    t_min = options.min_wall_thickness * px
    t_max = options.max_wall_thickness * px
    thick = max(4.5, 0.06 * px, t_min)
    rows: list[tuple[float, float, float, float, float]] = []
    for axis in (0, 1):
        img = ink if axis == 0 else np.ascontiguousarray(ink.T)
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (long_px, 1))
        mask = cv2.morphologyEx(img, cv2.MORPH_OPEN, kernel)
        for x0, y0, x1, y1, kind in _runs(mask, thick, t_min, t_max, long_px,
                                              close_max_m * px):
            rows.append((x0, y0, x1, y1, kind) if axis == 0 else (y0, x0, y1, x1, kind))
    walls = np.asarray(sorted(rows), dtype=np.float64).reshape(-1, 5)
    walls, lone = _drop_isolated(walls, 0.15 * px, 3.0 * px, 1.2 * px)
    # ``angle`` is the image-frame (y down) direction of the strokes; the scan was turned
    # counter-clockwise (as seen) by -angle
    return ScanResult(walls=walls, skew_deg=round(-float(angle), 3) + 0.0, matrix=matrix,
                      text_blobs=blobs,
                      stats={"scan_walls": int(walls.shape[0]), "text_blobs": blobs,
                             "scan_isolated_dropped": lone})


def _drop_isolated(walls: np.ndarray, touch: float, short: float,
                   gap: float) -> tuple[np.ndarray, int]:
    """Drop short bands that join no other wall: furniture edges, rugs, hatching.

    A wall shorter than ``short`` pixels is kept when another wall is perpendicular to
    it within ``touch`` pixels or continues it on the same line within ``gap`` pixels
    (a door between them).
    """
    n = walls.shape[0]
    if n == 0:
        return walls, 0
    x0, y0, x1, y1 = walls[:, 0], walls[:, 1], walls[:, 2], walls[:, 3]
    horiz = (x1 - x0) >= (y1 - y0)
    length = np.where(horiz, x1 - x0, y1 - y0)
    # rectangle-to-rectangle gap (0 when touching or overlapping)
    dx = np.maximum(0.0, np.maximum(x0[:, None] - x1[None, :], x0[None, :] - x1[:, None]))
    dy = np.maximum(0.0, np.maximum(y0[:, None] - y1[None, :], y0[None, :] - y1[:, None]))
    perp = (horiz[:, None] != horiz[None, :]) & (np.hypot(dx, dy) <= touch)
    # same line: overlapping across the axis, within ``gap`` along it
    across = np.where(horiz[:, None], dy, dx)
    along = np.where(horiz[:, None], dx, dy)
    line = (horiz[:, None] == horiz[None, :]) & (across <= 0.0) & (along <= gap)
    joined = perp | line
    np.fill_diagonal(joined, False)
    keep = (length >= short) | joined.any(axis=1)
    return walls[keep], int((~keep).sum())


def _skew(ink: np.ndarray, long_px: int, max_deg: float) -> float:
    """Dominant small rotation (degrees, counter-clockwise) of long strokes."""
    import cv2

    f = 1.0
    img = ink
    if max(ink.shape) > 1000:  # Hough on a reduced image: _refine sharpens the angle
        f = 1000.0 / max(ink.shape)
        img = cv2.resize(ink, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        img = (img > 64).astype(np.uint8) * 255
    min_len = max(20, int(long_px * f * 2))
    lines = cv2.HoughLinesP(img, 1, np.pi / 1440, threshold=max(20, min_len // 2),
                            minLineLength=min_len, maxLineGap=3)
    if lines is None or len(lines) == 0:
        return 0.0
    seg = np.asarray(lines).reshape(-1, 4).astype(np.float64)
    dx, dy = seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]
    ang = np.degrees(np.arctan2(dy, dx))
    ang = (ang + 45.0) % 90.0 - 45.0  # fold: horizontal and vertical strokes agree
    length = np.hypot(dx, dy)
    ok = np.abs(ang) <= max_deg
    if not ok.any():
        return 0.0
    a, wgt = ang[ok], length[ok]
    order = np.argsort(a)
    cum = np.cumsum(wgt[order])
    med = float(a[order][np.searchsorted(cum, cum[-1] / 2.0)])
    near = np.abs(a - med) < 0.5
    est = float(np.average(a[near], weights=wgt[near]))
    # Hough on staircased strokes is biased towards 0: refine by projection profiles
    return round(_refine(img, est), 3)


def _refine(img: np.ndarray, est: float) -> float:
    """The angle near ``est`` whose rotation makes row and column ink sums sharpest
    (coarse: +-1.2 deg in 0.2 deg steps, then fine: +-0.2 deg in 0.05 deg steps)."""
    import cv2

    f = min(1.0, 1000.0 / max(img.shape))
    small = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else img
    small = small.astype(np.float32)
    h, w = small.shape

    def score(a: float) -> float:
        m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), a, 1.0)
        r = cv2.warpAffine(small, m, (w, h), flags=cv2.INTER_LINEAR)
        return float(np.square(r.sum(axis=1)).sum() + np.square(r.sum(axis=0)).sum())

    best = est
    for span, step in ((1.2, 0.2), (0.2, 0.05)):
        grid = [round(best + k * step, 4) for k in range(-round(span / step),
                                                          round(span / step) + 1)]
        best = max(grid, key=lambda a: (score(a), -abs(a - est)))
    return best


def _runs(mask: np.ndarray, thick: float, t_min: float, t_max: float, long_px: int,
          close_max: float):
    """Horizontal wall rectangles ``(x0, y0, x1, y1, kind)`` from a mask of long runs.

    The two faces of a wall drawn as parallel lines are joined into one band by a
    vertical closing no taller than the thickest wall; a poché wall already is one. Each
    band is then measured column by column: stretches at least ``long_px / 2`` long
    whose thickness lies within the wall range are walls. Bands that were closed (not
    solid ink) lose one stroke width: their thickness is face centre to face centre,
    like the vector and DXF pairs.
    """
    import cv2

    # stroke width of thin lines: mean ink per column of the thin components
    n0, lab0, st0, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    lw_all = st0[1:, cv2.CC_STAT_AREA] / np.maximum(st0[1:, cv2.CC_STAT_WIDTH], 1)
    thin = lw_all[lw_all < thick]
    stroke = float(np.median(thin)) if thin.size else 0.0
    close_px = int(round(min(t_max, close_max) + stroke)) + 1
    closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE,
                              cv2.getStructuringElement(cv2.MORPH_RECT, (1, max(3, close_px))))
    n, labels, st, _ = cv2.connectedComponentsWithStats(closed, connectivity=4)
    out: list[tuple[float, float, float, float, float]] = []
    lo_t = max(t_min + stroke, thick)
    hi_t = t_max + stroke
    for i in range(1, n):
        x, y, w, h, _area = (int(v) for v in st[i, :5])
        if w < long_px:
            continue
        sub = labels[y:y + h, x:x + w] == i
        counts = sub.sum(axis=0)
        top = sub.argmax(axis=0)
        bottom = h - sub[::-1].argmax(axis=0)
        span = bottom - top
        good = (counts >= lo_t) & (span <= hi_t * 1.2) & (counts >= 0.8 * span)
        if not good.any():
            continue
        edges = np.flatnonzero(np.diff(np.concatenate([[0], good.astype(np.int8), [0]])))
        for a, b in zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True):
            if b - a < long_px / 2:
                continue
            y0 = float(np.median(top[a:b])) + y
            y1 = float(np.median(bottom[a:b])) + y
            solid = mask[int(y0):int(np.ceil(y1)), x + a:x + b]
            fill = float(solid.mean()) / 255.0 if solid.size else 1.0
            kind = 0.0
            if fill < 0.85 and stroke > 0:  # closed between two faces
                y0 += stroke / 2.0
                y1 -= stroke / 2.0
                kind = 1.0
            if y1 - y0 >= max(t_min, 1.0):
                out.append((float(x + a), y0, float(x + b), y1, kind))
    return out
