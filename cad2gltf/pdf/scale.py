"""Drawing scale of a PDF page: from the options, a scale note, or the default.

A PDF is paper: 1 point is 1/72 inch on the sheet. At a drawing scale of ``1:N`` one
point stands for ``N * 0.0254 / 72`` metres of the building. The scale comes from

1. ``options.scale`` (``"1:100"``);
2. a scale note in the page text (``SCALE 1:50``, ``M 1:100``, ``Maßstab 1:200``); when
   several differ, the one written in the largest type wins, then the first one;
3. :data:`DEFAULT_SCALE` (1:100, the usual scale of building floor plans).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_SCALE", "PageScale", "find_scale_note", "parse_scale", "resolve_scale"]

DEFAULT_SCALE = 100.0
#: metres on the sheet per PDF point
METRES_PER_POINT = 0.0254 / 72.0

_RATIO = re.compile(r"(?<![\d.:])(\d+(?:[.,]\d+)?)\s*:\s*(\d+(?:[.,]\d+)?)(?![\d:])")
_NOTE = re.compile(r"(?i)(?:scale|ma(?:ss|ß)stab|[ée]chelle|\bm\b|\bsc\b)\.?\s*[:=]?\s*$")
_PLAUSIBLE = (1.0, 5000.0)


@dataclass(frozen=True)
class PageScale:
    """A page's scale: ``denominator`` N of 1:N and where it came from.

    Attributes:
        denominator: N of 1:N.
        source: ``option``, ``note`` or ``default``.
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


def resolve_scale(option: str | None, spans: list[tuple[str, float]]) -> PageScale:
    """The page scale from the option, else a scale note, else the default.

    Raises:
        ValueError: when ``option`` is not a ratio (options are validated earlier).
    """
    if option is not None:
        return PageScale(parse_scale(option), "option", option)
    note = find_scale_note(spans)
    if note is not None:
        return PageScale(note[0], "note", note[1])
    return PageScale(DEFAULT_SCALE, "default")
