"""Vector PDF pages: paths and text from PyMuPDF into a page's scene.

Every path of ``page.get_drawings()`` (lines, Bézier curves flattened, rectangles, quads,
fills) becomes linework or a fill on a layer node. The layer is the path's optional
content group (CAD exporters such as ezdxf write one per CAD layer); paths outside any
group go to ``linework``. Layer names are matched against ``options.layer_rules`` like
DXF layers, and the matching geometry goes to the DXF floor-plan semantics
(:class:`cad2gltf.dxf.semantics.SemanticCollector`): wall pairs, wall outlines and
fills, door and window symbols hosted in their walls.

When no layer of the page names walls (a PDF without optional content), walls are
recognised from the drawing itself: strokes of the heaviest line weight (when it stands
out from the rest) and dark filled polygons shaped like wall pieces.

Text spans (``get_text("dict")``) become text placeholder nodes with the string in
``extras.text``; they also feed the scale note search (:mod:`cad2gltf.pdf.scale`).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cad2gltf.options import ConvertOptions
from cad2gltf.pdf.frame import PageFrame
from cad2gltf.scene import Color, SceneBuilder

__all__ = ["PageContent", "TextSpan", "emit_vector_page", "read_page_content",
           "straight_segments"]

_CURVE_STEPS = 16
_LINEWORK = "linework"


@dataclass
class TextSpan:
    """One text span: the string, its font size and box (points), its origin."""

    text: str
    size: float
    bbox: tuple[float, float, float, float]
    origin: tuple[float, float]
    angle_deg: float = 0.0


@dataclass
class PageContent:
    """What a page holds, read once (the page object can be freed afterwards).

    Attributes:
        paths: PyMuPDF drawings (dicts) of the page.
        texts: text spans.
        image_cover: fraction of the page area covered by raster images.
        width_pt / height_pt: page size.
    """

    paths: list[dict[str, Any]] = field(default_factory=list)
    texts: list[TextSpan] = field(default_factory=list)
    image_cover: float = 0.0
    width_pt: float = 0.0
    height_pt: float = 0.0

    @property
    def is_scanned(self) -> bool:
        """Little vector content and a big image: a scan (or a photo of a plan)."""
        strokes = sum(len(p.get("items") or ()) for p in self.paths if not _is_background(p, self))
        return self.image_cover >= 0.5 and strokes < 200 and len(self.texts) < 200


def read_page_content(page: Any) -> PageContent:
    """Read paths, text spans and image coverage of a PyMuPDF page."""
    rect = page.rect
    content = PageContent(width_pt=float(rect.width), height_pt=float(rect.height))
    content.paths = page.get_drawings()
    rotation = int(page.rotation or 0) % 360
    if rotation:
        # drawings and text come in the unrotated page space; rect and renders are rotated
        _rotate_paths(content.paths, page.rotation_matrix)
    area = max(float(rect.width * rect.height), 1e-9)
    cover = 0.0
    try:
        for info in page.get_image_info():
            b = info.get("bbox")
            if b:
                x0, y0, x1, y1 = (max(0.0, min(float(v), lim)) for v, lim in
                                  zip(b, (rect.width, rect.height, rect.width, rect.height), strict=False))
                cover += max(0.0, x1 - x0) * max(0.0, y1 - y0)
    except Exception:  # noqa: BLE001 - an unreadable image is not coverage
        pass
    content.image_cover = min(1.0, cover / area)
    import pymupdf

    try:
        # no image blocks: decoding a scan's image for them costs a second per page
        flags = pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES
        data = page.get_text("dict", sort=True, flags=flags)
    except Exception:  # noqa: BLE001
        data = {"blocks": []}
    for block in data.get("blocks", []):
        for line in block.get("lines", []):
            d = line.get("dir", (1.0, 0.0))
            angle = float(np.degrees(np.arctan2(-d[1], d[0])))
            for span in line.get("spans", []):
                text = (span.get("text") or "").strip()
                if text:
                    bbox, origin = tuple(span["bbox"]), tuple(span["origin"])
                    if rotation:
                        m = page.rotation_matrix
                        bbox = tuple(pymupdf.Rect(bbox) * m)
                        origin = tuple(pymupdf.Point(origin) * m)
                    content.texts.append(TextSpan(text, float(span.get("size", 0.0)),
                                                  bbox, origin,  # type: ignore[arg-type]
                                                  (angle - rotation) % 360.0))
    return content


def _rotate_paths(paths: list[dict[str, Any]], m: Any) -> None:
    """Map PyMuPDF drawings through ``m`` (the page's rotation matrix), in place."""
    for p in paths:
        items = []
        for it in p.get("items") or ():
            if it[0] == "re":
                items.append(("qu", it[1].quad * m, *it[2:]))
            elif it[0] == "qu":
                items.append(("qu", it[1] * m, *it[2:]))
            else:
                items.append((it[0], *(q * m if hasattr(q, "x") else q for q in it[1:])))
        p["items"] = items
        if p.get("rect") is not None:
            p["rect"] = p["rect"] * m


def straight_segments(paths: list[dict[str, Any]]) -> np.ndarray:
    """All stroked straight line items of the paths as ``(n, 4)`` ``x0, y0, x1, y1``."""
    rows = [(it[1].x, it[1].y, it[2].x, it[2].y) for p in paths if "s" in (p.get("type") or "")
            for it in p.get("items") or () if it[0] == "l"]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _is_background(path: dict[str, Any], content: PageContent) -> bool:
    """A white fill covering (nearly) the whole page: the paper."""
    if path.get("type") != "f":
        return False
    r = path.get("rect")
    fill = path.get("fill") or (0.0, 0.0, 0.0)
    return (r is not None and min(fill) > 0.97 and r.width >= 0.9 * content.width_pt
            and r.height >= 0.9 * content.height_pt)


@functools.cache
def _bernstein(steps: int) -> np.ndarray:
    """``(steps, 4)`` cubic Bézier weights at ``t = 1/steps .. 1``."""
    t = np.linspace(0.0, 1.0, steps + 1)[1:, None]
    return np.hstack([(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3])


def _chains(path: dict[str, Any]) -> list[tuple[np.ndarray, bool]]:
    """A path's items as vertex chains ``((n, 2) points, closed)`` in page points."""
    out: list[tuple[np.ndarray, bool]] = []
    cur: list[tuple[float, float]] = []

    def flush(closed: bool = False) -> None:
        nonlocal cur
        if len(cur) >= 2:
            out.append((np.asarray(cur, dtype=np.float64), closed))
        cur = []

    for item in path.get("items") or ():
        op = item[0]
        if op == "re":
            flush()
            r = item[1]
            out.append((np.array([[r.x0, r.y0], [r.x1, r.y0], [r.x1, r.y1], [r.x0, r.y1]]),
                        True))
            continue
        if op == "qu":
            flush()
            q = item[1]
            out.append((np.array([[q.ul.x, q.ul.y], [q.ur.x, q.ur.y], [q.lr.x, q.lr.y],
                                  [q.ll.x, q.ll.y]]), True))
            continue
        p0 = item[1]
        if cur and (abs(cur[-1][0] - p0.x) > 1e-3 or abs(cur[-1][1] - p0.y) > 1e-3):
            flush()
        if not cur:
            cur.append((p0.x, p0.y))
        if op == "l":
            cur.append((item[2].x, item[2].y))
        elif op == "c":
            c1, c2, p3 = item[2], item[3], item[4]
            # chord error of a flattened cubic falls with the square of the steps: a glyph's
            # 3-point curve needs 3 steps, a door swing at 1:100 (25 points) 8
            ctrl = (math.hypot(c1.x - p0.x, c1.y - p0.y) + math.hypot(c2.x - c1.x, c2.y - c1.y)
                    + math.hypot(p3.x - c2.x, p3.y - c2.y))
            steps = min(_CURVE_STEPS, max(1, math.ceil(math.sqrt(ctrl / 0.4))))
            if steps == 1:
                cur.append((p3.x, p3.y))
            else:
                pts = _bernstein(steps) @ np.array([[p0.x, p0.y], [c1.x, c1.y], [c2.x, c2.y],
                                                    [p3.x, p3.y]])
                cur.extend(map(tuple, pts.tolist()))
    closed = bool(path.get("closePath"))
    if cur and len(cur) >= 3 and abs(cur[0][0] - cur[-1][0]) < 1e-3 \
            and abs(cur[0][1] - cur[-1][1]) < 1e-3:
        closed = True
    flush(closed)
    return out


def fill_polygon(rings: list[np.ndarray], even_odd: bool) -> Any | None:
    """The area a PDF fill covers: even-odd, or non-zero winding (rings turning like the
    largest add, rings turning the other way cut holes)."""
    from cad2gltf.geometry.polygons import polygon_from_rings

    rings = [r for r in rings if r.shape[0] >= 3]
    if not rings:
        return None
    if even_odd or len(rings) == 1:
        return polygon_from_rings(rings)
    import shapely

    def signed(r: np.ndarray) -> float:
        x, y = r[:, 0], r[:, 1]
        return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))

    areas = [signed(r) for r in rings]
    main = np.sign(areas[int(np.argmax(np.abs(areas)))])
    polys = [(polygon_from_rings([r]), a) for r, a in zip(rings, areas, strict=True)]
    add = [p for p, a in polys if p is not None and np.sign(a) == main]
    cut = [p for p, a in polys if p is not None and np.sign(a) != main]
    if not add:
        return None
    result = shapely.union_all(add)
    if cut:
        result = result.difference(shapely.union_all(cut))
    return None if result.is_empty else result


def _category(layer: str, rules: list[tuple[str, re.Pattern[str]]]) -> str | None:
    if not layer:
        return None
    up = layer.upper()
    for cat, rx in rules:
        if rx.search(up):
            return cat
    return None


def _color(rgb: Any, alpha: Any = None) -> Color:
    if not rgb:
        return (0.0, 0.0, 0.0, 1.0)
    a = 1.0 if alpha is None else max(0.0, min(1.0, float(alpha)))
    r, g, b = (round(max(0.0, min(1.0, float(v))), 4) for v in list(rgb)[:3])
    return (r, g, b, a)


def _heuristic_walls(paths: list[dict[str, Any]], frame: PageFrame,
                     options: ConvertOptions) -> set[int]:
    """Indices of paths taken as walls on a page whose layers name none.

    Strokes: the heaviest line weight when it is at least 1.4 times the length-weighted
    median of all strokes. Fills: dark polygons at most ``max_wall_thickness`` thick and
    at least 0.5 m long (wall poché; glyphs and symbols are smaller).
    """
    widths: list[float] = []
    lengths: list[float] = []
    idx: list[int] = []
    chosen: set[int] = set()
    s = frame.metres_per_point
    for i, p in enumerate(paths):
        t = p.get("type") or ""
        r = p.get("rect")
        if r is None:
            continue
        if "s" in t and p.get("width"):
            widths.append(float(p["width"]))
            lengths.append(max(float(r.width), float(r.height)) + 1e-6)
            idx.append(i)
        if "f" in t and p.get("fill") is not None and max(p["fill"]) < 0.5 \
                and max(float(r.width), float(r.height)) * s >= 0.5 \
                and all(item[0] in ("l", "re", "qu") for item in p.get("items") or ()):
            # straight-edged dark fills whose mean width (2 * area / perimeter) is a
            # wall's: poché; glyphs (curved) and thin rules are not
            from cad2gltf.geometry.polygons import iter_polygons

            rings = [frame.to_m(c)[:, :2] for c, _ in _chains(p) if c.shape[0] >= 3]
            poly = fill_polygon(rings, bool(p.get("even_odd")))
            holed = any(len(g.interiors) for g in iter_polygons(poly))  # type: ignore[attr-defined]
            long_side = max(float(r.width), float(r.height)) * s
            if poly is not None and poly.length > 0 and (  # type: ignore[attr-defined]
                    not holed or long_side >= 2.5):
                # (a ring smaller than a room is a symbol: a rug, a frame)
                mean_w = 2.0 * poly.area / poly.length  # type: ignore[attr-defined]
                if max(options.min_wall_thickness, 0.06) <= mean_w <= options.max_wall_thickness:
                    chosen.add(i)
    if widths:
        w = np.asarray(widths)
        ln = np.asarray(lengths)
        order = np.argsort(w)
        cum = np.cumsum(ln[order])
        median = float(w[order][np.searchsorted(cum, cum[-1] / 2.0)])
        top = float(w.max())
        if top >= 1.4 * median:
            chosen.update(i for i, wi in zip(idx, widths, strict=False) if wi >= 0.9 * top)
    return chosen


def emit_vector_page(content: PageContent, frame: PageFrame, options: ConvertOptions,
                     builder: SceneBuilder, collector: Any, stats: dict[str, int],
                     texts_before: int = 0) -> None:
    """Put a vector page's paths and texts into ``builder`` (semantics into ``collector``).

    Args:
        content: the page's paths and texts.
        frame: page -> scene mapping.
        options: conversion options (layer rules, text limits, semantics).
        builder: the page's scene builder.
        collector: a ``SemanticCollector`` or None (no semantics).
        stats: counters updated in place (``paths``, ``texts``, ``heuristic_walls``).
        texts_before: texts on earlier pages (``max_text_nodes`` is per document).
    """
    rules = [(cat, re.compile(rx)) for cat, rx in options.layer_rules]
    paths = [p for p in content.paths if not _is_background(p, content)]
    cats = [_category(p.get("layer") or "", rules) for p in paths]
    heuristic: set[int] = set()
    if collector is not None and "wall" not in cats:
        heuristic = _heuristic_walls(paths, frame, options)
        stats["heuristic_walls"] = stats.get("heuristic_walls", 0) + len(heuristic)
    for i, (path, cat) in enumerate(zip(paths, cats, strict=False)):
        stats["paths"] = stats.get("paths", 0) + 1
        layer = path.get("layer") or _LINEWORK
        if i in heuristic:
            cat = "wall"
        if collector is None:
            cat = None
        handle = f"p{frame.number}#{path.get('seqno', i)}"
        kind = path.get("type") or "s"
        chains = _chains(path)
        if not chains:
            continue
        key = "layer:" + layer
        if not builder.has_node(key):
            builder.node(key, name=layer, category="layer", layer=layer)
        if "f" in kind and path.get("fill") is not None:
            color = _color(path.get("fill"), path.get("fill_opacity"))
            if cat == "wall" and len(chains) > 1 and not path.get("even_odd") and all(
                    c.shape[0] == 4 or (c.shape[0] == 5 and np.allclose(c[0], c[-1]))
                    for c, _ in chains):
                # poché drawn as many quadrilaterals (one per wall piece): each is a wall
                ekey = collector.element_key(cat, layer, handle, builder)
                for c, _ in chains:
                    collector.take_polyline(cat, ekey, frame.to_m(c[:4]), True, handle, color)
                continue
            rings = [frame.to_m(c)[:, :2] for c, _ in chains if c.shape[0] >= 3]
            _emit_fill(builder, collector, cat, layer, key, handle, color, rings,
                       bool(path.get("even_odd")))
        if "s" in kind and path.get("color") is not None:
            color = _color(path.get("color"), path.get("stroke_opacity"))
            for pts, closed in chains:
                p3 = frame.to_m(pts)
                if cat is not None:
                    ekey = collector.element_key(cat, layer, handle, builder)
                    if collector.take_polyline(cat, ekey, p3, closed, handle, color):
                        continue
                builder.add_polyline(key, color, p3, closed=closed)
    _emit_texts(content, frame, options, builder, stats, texts_before)


def _emit_fill(builder: SceneBuilder, collector: Any, cat: str | None, layer: str, key: str,
               handle: str, color: Color, rings: list[np.ndarray], even_odd: bool) -> None:
    from cad2gltf.geometry.polygons import triangulate_polygon

    if not rings:
        return
    poly = fill_polygon(rings, even_odd)
    if poly is None:
        return
    pos2, idx = triangulate_polygon(poly)
    if pos2.shape[0] < 3 or idx.size == 0:
        return
    pos3 = np.zeros((pos2.shape[0], 3))
    pos3[:, :2] = pos2[:, :2]
    if cat is not None and collector is not None:
        ekey = collector.element_key(cat, layer, handle, builder)
        if collector.take_polygon(cat, ekey, poly, pos3, idx, None, handle, color):
            return
    builder.add_triangles(key, color, pos3, idx)


def _emit_texts(content: PageContent, frame: PageFrame, options: ConvertOptions,
                builder: SceneBuilder, stats: dict[str, int], texts_before: int) -> None:
    if not options.include_text or not content.texts:
        return
    key = "layer:text"
    for span in content.texts:
        stats["texts"] = stats.get("texts", 0) + 1
        n = texts_before + stats["texts"]  # max_text_nodes holds for the whole document
        if n > options.max_text_nodes:
            continue
        if not builder.has_node(key):
            builder.node(key, name="text", category="layer", layer="text")
        p = frame.to_m(np.asarray([span.origin]))[0]
        node = builder.node(f"text:{n}", name=f"TEXT {span.text[:40]}".strip(),
                            category="text", parent=key, text=span.text,
                            height_m=round(span.size * frame.metres_per_point, 4),
                            rotation_deg=round(span.angle_deg % 360.0, 4),
                            bbox_pt=[round(float(v), 2) for v in span.bbox])
        node.translation = (float(p[0]), float(p[1]), 0.0)
        node.rotation_z = float(np.radians(span.angle_deg))
