"""Drawing scale of a PDF page: from the options, a scale note, or the default.

A PDF is paper: 1 point is 1/72 inch on the sheet. At a drawing scale of ``1:N`` one
point stands for ``N * 0.0254 / 72`` metres of the building. The scale comes from

1. ``options.scale`` (``"1:100"``);
2. a scale note in the page text (``SCALE 1:50``, ``M 1:100``, ``Maßstab 1:200``); when
   several differ, the one written in the largest type wins, then the first one;
3. dimensions: a number written along a straight line (``4000`` in millimetres, ``4.00``
   in metres) gives the scale of that line; at least two dimensions must agree on the
   same standard scale (1:20, 1:50, 1:100 ...) within 3 %;
4. :data:`DEFAULT_SCALE` (1:100, the usual scale of building floor plans).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_SCALE", "PageScale", "find_scale_note", "parse_scale", "resolve_scale",
           "scale_from_dimensions"]

DEFAULT_SCALE = 100.0
#: metres on the sheet per PDF point
METRES_PER_POINT = 0.0254 / 72.0

_RATIO = re.compile(r"(?<![\d.:])(\d+(?:[.,]\d+)?)\s*:\s*(\d+(?:[.,]\d+)?)(?![\d:])")
_NOTE = re.compile(r"(?i)(?:scale|ma(?:ss|ß)stab|[ée]chelle|\bm\b|\bsc\b)\.?\s*[:=]?\s*$")
_PLAUSIBLE = (1.0, 5000.0)
_STANDARD = (1, 2, 5, 10, 20, 25, 50, 75, 100, 125, 200, 250, 500, 1000, 1250, 2000, 2500,
             5000)
_DIM_MM = re.compile(r"\d{3,6}")
_DIM_M = re.compile(r"\d{1,3}[.,]\d{1,3}")


@dataclass(frozen=True)
class PageScale:
    """A page's scale: ``denominator`` N of 1:N and where it came from.

    Attributes:
        denominator: N of 1:N.
        source: ``option``, ``note``, ``dimensions`` or ``default``.
        text: the note it was read from (``note`` only).
    """

    denominator: float
    source: str
    text: str = ""

    @property
    def metres_per_point(self) -> float:
        return METRES_PER_POINT * self.denominator

    def metres_per_pixel(self, dpi: float) -> float:
        return 0.0254 / dpi * self.denominator

    @property
    def label(self) -> str:
        n = self.denominator
        return f"1:{int(n)}" if float(n).is_integer() else f"1:{n:g}"


def parse_scale(text: str) -> float:
    """``"1:100"`` -> 100.0 (``"2:1"`` -> 0.5).

    Raises:
        ValueError: when the text is not a ratio of positive numbers.
    """
    m = _RATIO.search(text)
    if not m:
        raise ValueError(f"not a scale: {text!r}")
    a, b = (float(g.replace(",", ".")) for g in m.groups())
    if a <= 0 or b <= 0:
        raise ValueError(f"not a scale: {text!r}")
    return b / a


def find_scale_note(spans: list[tuple[str, float]]) -> tuple[float, str] | None:
    """Find a scale note among text spans ``(text, font size)``.

    A ratio counts when the span (or the words just before it) names it a scale, or when
    the span is nothing but the ratio (``1:50`` under a title block). Ratios outside
    1:1..1:5000 are ignored (times of day, aspect ratios).

    Returns:
        ``(denominator, text)`` or None.
    """
    best: tuple[float, int, float, str] | None = None  # (-size, order, denom, text)
    for order, (text, size) in enumerate(spans):
        for m in _RATIO.finditer(text):
            before = text[: m.start()]
            alone = not before.strip() and not text[m.end():].strip()
            if not (alone or _NOTE.search(before)):
                continue
            try:
                denom = parse_scale(m.group(0))
            except ValueError:
                continue
            if not (_PLAUSIBLE[0] <= denom <= _PLAUSIBLE[1]):
                continue
            key = (-round(size, 1), order, denom, text.strip())
            if best is None or key[:2] < best[:2]:
                best = key
    return None if best is None else (best[2], best[3])


def scale_from_dimensions(spans: list[tuple[str, float, tuple[float, float, float, float],
                                          float]],
                          segments: np.ndarray) -> tuple[float, str] | None:
    """The scale that dimension texts and the lines they label agree on.

    Args:
        spans: ``(text, size, bbox, angle_deg)`` of the page's text spans (points).
        segments: ``(n, 4)`` straight segments ``x0, y0, x1, y1`` in points.

    Returns:
        ``(denominator, description)`` or None when fewer than two dimensions agree.
    """
    if segments.size == 0:
        return None
    seg = np.asarray(segments, dtype=np.float64).reshape(-1, 4)
    dx, dy = seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]
    length = np.hypot(dx, dy)
    mid = (seg[:, :2] + seg[:, 2:]) / 2.0
    horizontal = np.abs(dy) <= 0.02 * length
    vertical = np.abs(dx) <= 0.02 * length
    votes: dict[float, list[str]] = {}
    for text, size, bbox, angle in spans:
        t = text.strip()
        if _DIM_MM.fullmatch(t):
            metres = int(t) / 1000.0
        elif _DIM_M.fullmatch(t):
            metres = float(t.replace(",", "."))
        else:
            continue
        if metres <= 0:
            continue
        cx, cy = (bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0
        a = angle % 180.0
        if a < 10 or a > 170:
            along, across, mask = 0, 1, horizontal
        elif 80 < a < 100:
            along, across, mask = 1, 0, vertical
        else:
            continue
        centre = (cx, cy)
        extent = (bbox[2] - bbox[0]) if along == 0 else (bbox[3] - bbox[1])
        near = mask & (np.abs(mid[:, across] - centre[across]) <= 1.5 * max(size, 1.0)) \
            & (np.abs(mid[:, along] - centre[along]) <= 0.25 * length) & (length > extent)
        if not near.any():
            continue
        k = np.flatnonzero(near)
        best = k[np.argmin(np.abs(mid[k, across] - centre[across]))]
        denom = metres / (float(length[best]) * METRES_PER_POINT)
        snap = min(_STANDARD, key=lambda s: abs(s - denom) / s)
        if abs(snap - denom) / snap <= 0.03:
            votes.setdefault(float(snap), []).append(t)
    if not votes:
        return None
    denom, texts = max(votes.items(), key=lambda kv: (len(kv[1]), -kv[0]))
    if len(texts) < 2:
        return None
    return denom, f"{len(texts)} dimensions ({', '.join(texts[:4])})"


def resolve_scale(option: str | None, spans: list[tuple[str, float]],
                  dimensions: Callable[[], tuple[float, str] | None] | None = None) -> PageScale:
    """The page scale from the option, else a scale note, else dimensions, else the
    default.

    Args:
        option: ``options.scale``.
        spans: ``(text, font size)`` of the page's text.
        dimensions: called (only when needed) for :func:`scale_from_dimensions`.

    Raises:
        ValueError: when ``option`` is not a ratio (options are validated earlier).
    """
    if option is not None:
        return PageScale(parse_scale(option), "option", option)
    note = find_scale_note(spans)
    if note is not None:
        return PageScale(note[0], "note", note[1])
    if dimensions is not None:
        found = dimensions()
        if found is not None:
            return PageScale(found[0], "dimensions", found[1])
    return PageScale(DEFAULT_SCALE, "default")
