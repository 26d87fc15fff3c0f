"""2D polygons: building them from boundary rings, triangulating, extruding.

Triangulation uses mapbox-earcut (holes respected); polygon booleans use shapely.
Everything here is pure numpy/shapely and deterministic.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

__all__ = [
    "extrude_bands",
    "iter_polygons",
    "polygon_from_rings",
    "triangulate_polygon",
]


def iter_polygons(geom: object) -> Iterable[object]:
    """Yield the non-empty shapely Polygons inside any geometry."""
    if geom is None or getattr(geom, "is_empty", True):
        return
    gtype = geom.geom_type  # type: ignore[attr-defined]
    if gtype == "Polygon":
        yield geom
    elif hasattr(geom, "geoms"):
        for g in geom.geoms:  # type: ignore[attr-defined]
            yield from iter_polygons(g)


def polygon_from_rings(rings: list[np.ndarray]) -> object | None:
    """Even-odd combination of boundary rings (how HATCH 'normal' style fills).

    Args:
        rings: ``(n, 2)`` arrays, each a closed or open boundary loop.

    Returns:
        A shapely (Multi)Polygon or None when nothing remains.
    """
    import shapely
    from shapely.geometry import Polygon

    result = None
    for ring in rings:
        if ring.shape[0] < 3:
            continue
        poly = Polygon(ring)
        if not poly.is_valid:
            poly = shapely.make_valid(poly)
            poly = shapely.union_all([p for p in iter_polygons(poly)]) if poly else None
        if poly is None or poly.is_empty or poly.area <= 0:
            continue
        result = poly if result is None else result.symmetric_difference(poly)
    if result is None or result.is_empty:
        return None
    return result


def triangulate_polygon(geom: object) -> tuple[np.ndarray, np.ndarray]:
    """Triangulate a shapely (Multi)Polygon with holes.

    Returns:
        ``(positions (n, 2) float64, indices (3k,) int64)``; triangles wound
        counter-clockwise (normal +Z).
    """
    import mapbox_earcut as earcut

    all_pos: list[np.ndarray] = []
    all_idx: list[np.ndarray] = []
    base = 0
    for poly in iter_polygons(geom):
        rings = [np.asarray(poly.exterior.coords, dtype=np.float64)[:-1, :2]]  # type: ignore
        rings += [np.asarray(r.coords, dtype=np.float64)[:-1, :2]
                  for r in poly.interiors]  # type: ignore[attr-defined]
        rings = [r for r in rings if r.shape[0] >= 3]
        if not rings:
            continue
        verts = np.vstack(rings)
        ends = np.cumsum([r.shape[0] for r in rings]).astype(np.uint32)
        idx = np.asarray(earcut.triangulate_float64(verts, ends), dtype=np.int64)
        if idx.size == 0:
            continue
        tri = idx.reshape(-1, 3)
        a, b, c = verts[tri[:, 0]], verts[tri[:, 1]], verts[tri[:, 2]]
        area2 = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        flip = area2 < 0
        tri[flip] = tri[flip][:, [0, 2, 1]]
        tri = tri[area2 != 0]
        all_pos.append(verts)
        all_idx.append(tri.reshape(-1) + base)
        base += verts.shape[0]
    if not all_pos:
        return np.zeros((0, 2)), np.zeros((0,), dtype=np.int64)
    return np.vstack(all_pos), np.concatenate(all_idx)


def _cap(geom: object, z: float, up: bool) -> tuple[np.ndarray, np.ndarray]:
    pos2, idx = triangulate_polygon(geom)
    if idx.size == 0:
        return np.zeros((0, 3)), idx
    pos = np.column_stack([pos2, np.full(pos2.shape[0], z)])
    if not up:
        idx = idx.reshape(-1, 3)[:, [0, 2, 1]].reshape(-1)
    return pos, idx


def _sides(geom: object, z0: float, z1: float) -> np.ndarray:
    """Side quads of all rings, outward-facing, as triangle soup ``(6k, 3)``."""
    from shapely.geometry.polygon import orient

    quads = []
    for poly in iter_polygons(geom):
        poly = orient(poly, 1.0)  # exterior CCW, holes CW: right-hand side is outside
        for ring in [poly.exterior, *poly.interiors]:
            r = np.asarray(ring.coords, dtype=np.float64)[:, :2]
            p, q = r[:-1], r[1:]
            keep = np.any(p != q, axis=1)
            p, q = p[keep], q[keep]
            if p.shape[0] == 0:
                continue
            n = p.shape[0]
            pa = np.column_stack([p, np.full(n, z0)])
            qa = np.column_stack([q, np.full(n, z0)])
            qb = np.column_stack([q, np.full(n, z1)])
            pb = np.column_stack([p, np.full(n, z1)])
            tri = np.stack([pa, qa, qb, pa, qb, pb], axis=1).reshape(-1, 3)
            quads.append(tri)
    return np.vstack(quads) if quads else np.zeros((0, 3))


def extrude_bands(footprint: object, z0: float, z1: float,
                  cutouts: list[tuple[object, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Extrude a footprint from ``z0`` to ``z1`` minus box-shaped cut-outs.

    The height is split into bands at every cut-out level; each band's footprint is the
    footprint minus the cut-outs active in that band. Side faces are emitted per band;
    horizontal faces only where material is exposed (band bottom minus the band below,
    band top minus the band above), so the result is a closed, outward-facing surface.

    Args:
        footprint: shapely polygon (plan) of the solid.
        z0, z1: bottom and top.
        cutouts: ``(plan polygon, bottom, top)`` boxes removed from the solid.

    Returns:
        ``(positions (n, 3), indices (3k,))`` triangle mesh.
    """
    levels = {z0, z1}
    active = []
    for poly, a, b in cutouts:
        a, b = max(a, z0), min(b, z1)
        if b > a and poly is not None and not poly.is_empty and poly.intersects(footprint):
            active.append((poly, a, b))
            levels.update((a, b))
    zs = sorted(levels)
    bands = []
    for a, b in zip(zs[:-1], zs[1:]):
        mid = 0.5 * (a + b)
        geom = footprint
        for poly, ca, cb in active:
            if ca <= mid <= cb:
                geom = geom.difference(poly)
        bands.append((a, b, geom))
    pos_parts: list[np.ndarray] = []
    idx_parts: list[np.ndarray] = []
    base = 0

    def add(pos: np.ndarray, idx: np.ndarray) -> None:
        nonlocal base
        if idx.size == 0:
            return
        pos_parts.append(pos)
        idx_parts.append(idx + base)
        base += pos.shape[0]

    for k, (a, b, geom) in enumerate(bands):
        if geom.is_empty:
            continue
        side = _sides(geom, a, b)
        add(side, np.arange(side.shape[0], dtype=np.int64))
        below = bands[k - 1][2] if k > 0 else None
        above = bands[k + 1][2] if k + 1 < len(bands) else None
        add(*_cap(geom if below is None or below.is_empty else geom.difference(below), a, False))
        add(*_cap(geom if above is None or above.is_empty else geom.difference(above), b, True))
    if not pos_parts:
        return np.zeros((0, 3)), np.zeros((0,), dtype=np.int64)
    return np.vstack(pos_parts), np.concatenate(idx_parts)
