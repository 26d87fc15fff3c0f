"""Floor-plan semantics: walls, doors, windows and columns from layers and geometry.

The reader hands geometry found on layers whose names match a category rule
(:data:`cad2gltf.options.DEFAULT_LAYER_RULES`) to a :class:`SemanticCollector`:

* **walls**: closed outlines (polylines, hatches, solids) are wall footprints as drawn;
  open lines are paired when two are parallel, overlap along their length and lie
  ``min_wall_thickness..max_wall_thickness`` apart (the two faces of one wall); short
  uncovered pieces next to a pair (corners, T-junctions) are bridged with that pair's
  thickness; remaining single lines become walls of the default thickness.
* **doors / windows**: the geometry of each top-level entity (usually a block
  reference) is one element; touching elements on the same layer are merged. Each
  element is projected onto the axis of its nearest wall, which gives the opening's
  extent along the wall; the opening is cut through the full wall thickness (doors from
  the floor to the head height, windows from sill to head). Where the wall was drawn
  with a gap, the lintel (and the sill under a window) fill the gap instead.
* **columns**: closed outlines extruded to the wall height.
* **stairs** and everything else recognised: their own element node with linework.

All geometry is produced in drawing units (the reader scales the whole scene to metres
afterwards); option values in metres are converted with the drawing scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cad2gltf.geometry.boxes import boxes_to_triangles, strip_boxes, subtract_intervals
from cad2gltf.geometry.polygons import extrude_bands, iter_polygons
from cad2gltf.options import ConvertOptions
from cad2gltf.scene import Color, SceneBuilder

__all__ = ["SemanticCollector"]

_GLASS: Color = (0.55, 0.75, 0.9, 0.35)
_EXTRUDED = {"wall", "column"}
_OPENINGS = {"door", "window"}


@dataclass
class _Wall:
    """A wall element. Straight walls are *strips* (axis, ``s`` offsets across it and a
    ``t`` range along it) and are meshed as boxes; other footprints go through polygon
    booleans (:func:`extrude_bands`)."""

    footprint: Any                      # shapely polygon, drawing units (None until needed)
    handles: list[str]
    layer: str
    color: Color
    style: str                          # pair | single | outline | column
    axis: tuple[float, float] | None = None   # unit direction of a strip wall
    strip: tuple[float, float] | None = None  # normal offsets (lo, hi) of a strip wall
    trange: tuple[float, float] | None = None  # extent along the axis of a strip wall
    cutouts: list[tuple[Any, float, float]] = field(default_factory=list)
    strip_cuts: list[tuple[float, float, float, float]] = field(default_factory=list)
    openings: list[str] = field(default_factory=list)

    @property
    def is_strip(self) -> bool:
        return self.axis is not None and self.strip is not None and self.trange is not None

    def rect(self) -> np.ndarray:
        u = np.asarray(self.axis)
        n = np.array([-u[1], u[0]])
        (t0, t1), (s0, s1) = self.trange, self.strip  # type: ignore[misc]
        return np.array([u * t0 + n * s0, u * t1 + n * s0, u * t1 + n * s1, u * t0 + n * s1])


@dataclass
class _Element:
    category: str
    layer: str
    handles: list[str]
    color: Color
    lines: list[tuple[np.ndarray, bool, Color]] = field(default_factory=list)
    tris: list[tuple[np.ndarray, np.ndarray | None, Color]] = field(default_factory=list)


class SemanticCollector:
    """Collects geometry of semantic layers during the walk; emits 3D elements after it."""

    def __init__(self, options: ConvertOptions) -> None:
        self.opt = options
        self.segments: list[tuple[np.ndarray, np.ndarray, str, str, Color]] = []
        self.rects: list[tuple[np.ndarray, str, str, Color]] = []
        self.polygons: list[tuple[Any, str, str, Color, str]] = []  # poly, handle, layer, color, cat
        self.elements: dict[str, _Element] = {}
        self.layer_color: dict[str, Color] = {}

    # -- collection (called by the reader) ---------------------------------------------

    def element_key(self, category: str, layer: str, handle: str, builder: SceneBuilder) -> str:
        """Key under which geometry of one top-level entity on a semantic layer is kept."""
        return f"{category}|{layer}|{handle}"

    @staticmethod
    def _split(key: str) -> tuple[str, str, str]:
        cat, layer, handle = key.split("|", 2)
        return cat, layer, handle

    def _element(self, key: str, color: Color) -> _Element:
        el = self.elements.get(key)
        if el is None:
            cat, layer, handle = self._split(key)
            el = self.elements[key] = _Element(cat, layer, [handle] if handle else [], color)
        return el

    def take_polyline(self, category: str, key: str, pts: np.ndarray, closed: bool,
                      handle: str, color: Color) -> bool:
        """Offer a vertex chain; True when it was consumed (not to be drawn as linework)."""
        if category in _EXTRUDED:
            _, layer, _ = self._split(key)
            if closed or (pts.shape[0] >= 4 and np.allclose(pts[0, :2], pts[-1, :2])):
                q = pts[:4, :2]
                if category == "wall" and (pts.shape[0] == 4 or (
                        pts.shape[0] == 5 and np.allclose(pts[0, :2], pts[4, :2]))):
                    if _is_rectangle(q.tolist()):
                        # a rectangle: kept raw, turned into strip walls in bulk later
                        self.rects.append((q.copy(), handle, layer, color))
                        return True
                poly = _polygon(pts[:, :2])
                if poly is not None:
                    self.polygons.append((poly, handle, layer, color, category))
                    return True
            if category == "wall":
                xy = pts[:, :2].tolist()  # plain floats: one array is made of them all later
                add = self.segments.append
                for k in range(len(xy) - 1):
                    add((xy[k], xy[k + 1], handle, layer, color))
                return True
            return False
        self._element(key, color).lines.append((pts, closed, color))
        return True

    @staticmethod
    def keeps_linework(category: str) -> bool:
        """Whether vertex chains of ``category`` become element linework as they are
        (doors, windows, stairs ...; not walls and columns): :meth:`take_chains` applies."""
        return category not in _EXTRUDED

    def take_chains(self, key: str, chains: list[tuple[np.ndarray, bool, Color]]) -> None:
        """The vertex chains ``(points, closed, colour)`` of one element at once: what
        :meth:`take_polyline` does with each in turn for a :meth:`keeps_linework` category.
        """
        if chains:
            self._element(key, chains[0][2]).lines.extend(chains)

    def take_triangles(self, category: str, key: str, pts: np.ndarray, idx: np.ndarray | None,
                       handle: str, color: Color) -> bool:
        """Offer triangles (SOLID, 3DFACE, wide polylines)."""
        _, layer, _ = self._split(key)
        if category in _EXTRUDED:
            import shapely

            tri = pts if idx is None else pts[idx]
            polys = [_polygon(tri[k:k + 3, :2]) for k in range(0, tri.shape[0] - 2, 3)]
            polys = [p for p in polys if p is not None]
            if polys:
                merged = shapely.union_all(polys)
                for poly in iter_polygons(merged):
                    self.polygons.append((poly, handle, layer, color, category))
            return True
        self._element(key, color).tris.append((pts, idx, color))
        return True

    def take_polygon(self, category: str, key: str, poly: Any, pos3: np.ndarray,
                     idx: np.ndarray, m: np.ndarray | None, handle: str, color: Color) -> bool:
        """Offer a filled polygon (solid HATCH), ``poly`` in the entity's plane."""
        _, layer, _ = self._split(key)
        if category in _EXTRUDED:
            from shapely import affinity

            if m is not None:
                poly = affinity.affine_transform(poly, [m[0, 0], m[1, 0], m[0, 1], m[1, 1],
                                                        m[3, 0], m[3, 1]])
            for p in iter_polygons(poly):
                self.polygons.append((p, handle, layer, color, category))
            return True
        self._element(key, color).tris.append((pos3, idx, color))
        return True

    # -- emission ------------------------------------------------------------------------

    def emit(self, builder: SceneBuilder, scale: float, warnings: list[str]) -> None:
        """Build walls, openings and columns; add their nodes to ``builder``."""
        unit = 1.0 / scale  # drawing units per metre
        self._scale = scale
        o = self.opt
        walls = self._walls(unit)
        columns = [w for w in walls if w.style == "column"]
        walls = [w for w in walls if w.style != "column"]
        openings = self._openings(walls, unit, warnings)

        height = o.wall_height * unit
        # strip walls: all boxes of all walls in one vectorised call
        box_rows: list[tuple[float, float, float, float, float, float, float, float]] = []
        box_owner: list[int] = []
        for i, wall in enumerate(walls):
            if wall.is_strip:
                (t0, t1), (s0, s1), (ux, uy) = wall.trange, wall.strip, wall.axis
                for ta, tb, za, zb in strip_boxes(t0, t1, 0.0, height, wall.strip_cuts):
                    box_rows.append((ux, uy, ta, tb, s0, s1, za, zb))
                    box_owner.append(i)
        meshes: dict[int, np.ndarray] = {}
        if box_rows:
            rows = np.asarray(box_rows, dtype=np.float64)
            tris = boxes_to_triangles(rows[:, :2], rows[:, 2], rows[:, 3], rows[:, 4],
                                      rows[:, 5], rows[:, 6], rows[:, 7]).reshape(-1, 36, 3)
            flat = tris.reshape(-1, 3)
            owner = np.asarray(box_owner)
            cuts = (np.flatnonzero(np.diff(owner)) + 1).tolist()
            bounds = [0, *cuts, len(box_owner)]
            for a, b in zip(bounds[:-1], bounds[1:]):
                meshes[box_owner[a]] = flat[a * 36:b * 36]
        for n, wall in enumerate(walls, 1):
            if wall.is_strip:
                pos, idx = meshes[n - 1], None
            else:
                pos, idx = extrude_bands(wall.footprint, 0.0, height, wall.cutouts)
            key = f"wall:{n}"
            self._layer_node(builder, wall.layer)
            length, thickness = _dimensions(wall)
            builder.node(key, name=f"wall {n}", category="wall", parent="layer:" + wall.layer,
                         layer=wall.layer, style=wall.style, height_m=o.wall_height,
                         thickness_m=round(thickness / unit, 4),
                         length_m=round(length / unit, 4), openings=wall.openings).source = \
                sorted(set(wall.handles))
            builder.add_triangles(key, wall.color, pos, idx, double_sided=False, indexed=False)
        for n, col in enumerate(columns, 1):
            pos, idx = extrude_bands(col.footprint, 0.0, height, [])
            key = f"column:{n}"
            self._layer_node(builder, col.layer)
            builder.node(key, name=f"column {n}", category="column",
                         parent="layer:" + col.layer, layer=col.layer,
                         height_m=o.wall_height).source = sorted(set(col.handles))
            builder.add_triangles(key, col.color, pos, idx, double_sided=False)
        line_jobs = [(key, el.lines) for key, el, _, _ in openings if el.lines]
        line_chunks = iter(_bulk_polylines(line_jobs))
        for key, el, extras, parts in openings:
            self._layer_node(builder, el.layer)
            node = builder.node(key, name=key.replace(":", " "), category=el.category,
                                parent="layer:" + el.layer, layer=el.layer, **extras)
            node.source = sorted(set(h for h in el.handles if h))
            if el.lines:
                for kind, color, arr in next(line_chunks):
                    if kind == "lines":
                        builder.add_segments(key, color, arr)
                    else:
                        builder.add_points(key, color, arr)
            for pts, idx, color in el.tris:
                builder.add_triangles(key, color, pts, idx)
            for pos, idx, color, double in parts:
                builder.add_triangles(key, color, pos, idx, double_sided=double, indexed=False)

    @staticmethod
    def _layer_node(builder: SceneBuilder, layer: str) -> None:
        key = "layer:" + layer
        if not builder.has_node(key):
            builder.node(key, name=layer, category="layer", layer=layer)

    def _walls(self, unit: float) -> list[_Wall]:
        o = self.opt
        walls: list[_Wall] = []
        for poly, handle, layer, color, cat in self.polygons:
            style = "column" if cat == "column" else "outline"
            walls.append(_Wall(poly, [handle], layer, color, style))
        if self.rects:
            walls.extend(_rect_walls(self.rects, o.max_wall_thickness * unit * 1.5))
        if self.segments:
            walls.extend(_pair_walls(self.segments, o.min_wall_thickness * unit,
                                     o.max_wall_thickness * unit, o.wall_thickness * unit))
        # outlines that are thin rectangles get an axis and strip like line walls
        for w in walls:
            if w.style == "outline" and not w.is_strip:
                _fit_strip(w, o.max_wall_thickness * unit * 1.5)
        _strip_footprints(walls)
        return walls

    def _openings(self, walls: list[_Wall], unit: float, warnings: list[str]):
        """Cluster door/window elements, host them in walls, cut openings, add lintels."""
        import shapely
        from shapely.strtree import STRtree

        o = self.opt
        els = [el for el in self.elements.values() if el.lines or el.tris]
        merged = _cluster(els, tol=0.02 * unit)
        counters: dict[str, int] = {}
        keys = []
        for el in merged:
            counters[el.category] = counters.get(el.category, 0) + 1
            keys.append(f"{el.category}:{counters[el.category]}")
        out = [(key, el, {}, []) for key, el in zip(keys, merged)]
        candidates = [i for i, el in enumerate(merged) if el.category in _OPENINGS]
        if not candidates:
            return out
        if not walls:
            warnings.append(f"{len(candidates)} door/window element(s) but no walls; kept "
                            f"without openings")
            return out
        footprints = np.array([w.footprint for w in walls], dtype=object)
        tree = STRtree(footprints)
        search = o.max_wall_thickness * unit
        # all candidates' points in one array; per-candidate bounds in two reductions
        all_pts, n_pts = _plan_points([merged[i] for i in candidates])
        p_start = np.cumsum(n_pts) - n_pts
        lo = np.minimum.reduceat(all_pts, p_start, axis=0)
        hi = np.maximum.reduceat(all_pts, p_start, axis=0)
        probes = shapely.box(lo[:, 0], lo[:, 1], hi[:, 0], hi[:, 1])
        pos_of = {i: k for k, i in enumerate(candidates)}
        left, right = tree.query(probes, predicate="dwithin", distance=search)
        rdist = np.round(shapely.distance(probes[left], footprints[right]), 9)
        # nearest wall per element: smallest distance, then largest overlap, then index;
        # the overlap only matters between walls tied at an element's smallest distance
        area = np.zeros(left.shape[0])
        if left.size:
            best = np.full(len(candidates), np.inf)
            np.minimum.at(best, left, rdist)
            tied = rdist == best[left]
            n_tied = np.bincount(left[tied], minlength=len(candidates))
            need = tied & (n_tied[left] > 1)
            if need.any():
                area[need] = shapely.area(shapely.intersection(probes[left[need]],
                                                               footprints[right[need]]))
        order = np.lexsort((right, -np.round(area, 9), rdist, left))
        first = order[np.unique(left[order], return_index=True)[1]]
        host_of: dict[int, int] = {candidates[int(pi)]: int(wi)
                                   for pi, wi in zip(left[first], right[first])}
        self._hosts = {i: walls[w] for i, w in host_of.items()}
        height = o.wall_height * unit
        eps = 0.01 * unit
        unhosted = 0
        # phase A: each opening's frame on its host wall (cheap per-opening work)
        ops: list[tuple[int, np.ndarray, float, float, float, float, float, float]] = []
        # extents along strip hosts' axes for all candidates at once
        ax = np.zeros((len(candidates), 2))
        for k, i in enumerate(candidates):
            w = host_of.get(i)
            if w is not None and walls[w].axis is not None and walls[w].strip is not None:
                ax[k] = walls[w].axis
        t_all = all_pts[:, 0] * np.repeat(ax[:, 0], n_pts) + all_pts[:, 1] * np.repeat(ax[:, 1],
                                                                                     n_pts)
        t_lo = np.minimum.reduceat(t_all, p_start).tolist()
        t_hi = np.maximum.reduceat(t_all, p_start).tolist()
        for k, i in enumerate(candidates):
            if i not in host_of:
                unhosted += 1
                continue
            host = walls[host_of[i]]
            if host.axis is not None and host.strip is not None:
                u, s_lo, s_hi = np.array(host.axis), host.strip[0], host.strip[1]
                t0, t1 = t_lo[k], t_hi[k]
            else:
                centre = (lo[pos_of[i]] + hi[pos_of[i]]) / 2.0
                u, s_lo, s_hi = _local_axis(host, centre, search)
                if u is None:
                    unhosted += 1
                    continue
                t = all_pts[p_start[k]:p_start[k] + n_pts[k]] @ u
                t0, t1 = float(t.min()), float(t.max())
            if t1 - t0 <= 1e-9:
                unhosted += 1
                continue
            if merged[i].category == "door":
                z0, z1 = 0.0, min(o.door_height * unit, height)
            else:
                z0, z1 = o.window_sill * unit, min(o.window_head * unit, height)
            ops.append((i, np.asarray(u, dtype=np.float64), s_lo, s_hi, t0, t1, z0, z1))
        if ops:
            self._cut_openings(ops, walls, out, tree, height, eps)
        if unhosted:
            warnings.append(f"{unhosted} door/window element(s) not near any wall; "
                            f"kept without an opening")
        return out


    def _cut_openings(self, ops, walls: list[_Wall], out, tree: Any, height: float,
                      eps: float) -> None:
        """Cut all openings into their walls and build lintels, sills and panes in bulk."""
        import shapely
        from shapely.geometry import Polygon

        K = len(ops)
        U = np.array([op[1] for op in ops])
        N = np.column_stack([-U[:, 1], U[:, 0]])
        S = np.array([(op[2], op[3]) for op in ops])
        T = np.array([(op[4], op[5]) for op in ops])
        Z = np.array([(op[6], op[7]) for op in ops])
        corners = np.stack([
            U * T[:, :1] + N * (S[:, :1] - eps), U * T[:, 1:] + N * (S[:, :1] - eps),
            U * T[:, 1:] + N * (S[:, 1:] + eps), U * T[:, :1] + N * (S[:, 1:] + eps)], axis=1)
        cuts = shapely.polygons(corners)
        ci, wi = tree.query(cuts, predicate="intersects")
        order = np.lexsort((wi, ci))
        ci, wi = ci[order], wi[order]
        is_strip = np.array([w.is_strip for w in walls])
        W_axis = np.array([w.axis if w.is_strip else (1.0, 0.0) for w in walls])
        W_strip = np.array([w.strip if w.is_strip else (0.0, 0.0) for w in walls])
        W_trange = np.array([w.trange if w.is_strip else (0.0, 0.0) for w in walls])
        covered: list[list[tuple[float, float]]] = [[] for _ in range(K)]
        hit_polys: list[list[Any]] = [[] for _ in range(K)]
        if ci.size:
            wu = W_axis[wi]
            wn = np.column_stack([-wu[:, 1], wu[:, 0]])
            par = np.abs(np.einsum("ij,ij->i", wu, U[ci])) >= 0.999
            ct = np.einsum("kcj,kj->kc", corners[ci], wu)
            cs = np.einsum("kcj,kj->kc", corners[ci], wn)
            a, b = ct.min(axis=1), ct.max(axis=1)
            ov_t = np.minimum(b, W_trange[wi, 1]) - np.maximum(a, W_trange[wi, 0])
            ov_s = np.minimum(cs.max(axis=1), W_strip[wi, 1]) - np.maximum(cs.min(axis=1),
                                                                           W_strip[wi, 0])
            strip_hit = is_strip[wi] & par & (ov_t > 1e-9) & (ov_s > 1e-9)
            lo_end = np.maximum(a, W_trange[wi, 0])
            hi_end = np.minimum(b, W_trange[wi, 1])
            # the covered piece of the opening, in the opening's own t
            e0 = np.einsum("ij,ij->i", wu * lo_end[:, None], U[ci])
            e1 = np.einsum("ij,ij->i", wu * hi_end[:, None], U[ci])
            for k in np.flatnonzero(strip_hit).tolist():
                c, w = int(ci[k]), walls[int(wi[k])]
                w.strip_cuts.append((float(a[k]), float(b[k]), float(Z[c, 0]), float(Z[c, 1])))
                w.openings.append(out[ops[c][0]][0])
                covered[c].append((float(min(e0[k], e1[k])), float(max(e0[k], e1[k]))))
            for k in np.flatnonzero(~is_strip[wi]).tolist():
                c, w = int(ci[k]), walls[int(wi[k])]
                inter = w.footprint.intersection(cuts[c])
                if inter.is_empty or inter.area <= 0:
                    continue
                w.cutouts.append((cuts[c], float(Z[c, 0]), float(Z[c, 1])))
                w.openings.append(out[ops[c][0]][0])
                hit_polys[c].append(w.footprint)
        # lintels and sills where the wall was drawn with a gap: boxes, all at once
        rows: list[tuple[float, ...]] = []
        owner: list[int] = []
        for c, (i, u, s_lo, s_hi, t0, t1, z0, z1) in enumerate(ops):
            host_color = self._hosts[i].color
            key, el, extras, parts = out[i]
            if hit_polys[c]:
                n = np.array([-u[1], u[0]])
                strip_poly = Polygon([u * t0 + n * s_lo, u * t1 + n * s_lo,
                                      u * t1 + n * s_hi, u * t0 + n * s_hi])
                fill = strip_poly.difference(shapely.union_all(hit_polys[c]))
                for za, zb in ((z1, height), (0.0, z0)):
                    if zb > za and not fill.is_empty and fill.area > 1e-9 * eps * eps:
                        pos, idx = extrude_bands(fill, za, zb, [])
                        parts.append((pos, idx, host_color, False))
            else:
                for ga, gb in subtract_intervals(t0, t1, covered[c]):
                    for za, zb in ((z1, height), (0.0, z0)):
                        if zb > za:
                            rows.append((u[0], u[1], ga, gb, s_lo, s_hi, za, zb))
                            owner.append(c)
        if rows:
            r = np.asarray(rows, dtype=np.float64)
            tris = boxes_to_triangles(r[:, :2], r[:, 2], r[:, 3], r[:, 4], r[:, 5], r[:, 6],
                                      r[:, 7]).reshape(-1, 36, 3)
            own = np.asarray(owner)
            splits = np.flatnonzero(np.diff(own)) + 1
            for chunk, idx in zip(np.split(tris, splits), np.split(own, splits)):
                c = int(idx[0])
                out[ops[c][0]][3].append((chunk.reshape(-1, 3), None, self._host_color(ops[c]),
                                          False))
        unit = 1.0 / self._scale
        pane_idx = np.array([0, 1, 2, 0, 2, 3], dtype=np.int64)
        for i, u, s_lo, s_hi, t0, t1, z0, z1 in ops:
            key, el, extras, parts = out[i]
            ux, uy = float(u[0]), float(u[1])
            nx, ny = -uy, ux
            mid = (s_lo + s_hi) / 2.0
            if el.category == "window":
                ax, ay = ux * t0 + nx * mid, uy * t0 + ny * mid
                bx, by = ux * t1 + nx * mid, uy * t1 + ny * mid
                pane = np.array([[ax, ay, z0], [bx, by, z0], [bx, by, z1], [ax, ay, z1]],
                                dtype=np.float64)
                parts.append((pane, pane_idx, _GLASS, True))
            cx = ux * (t0 + t1) / 2.0 + nx * mid
            cy = uy * (t0 + t1) / 2.0 + ny * mid
            extras.update({
                "host_wall": True,
                "width_m": round((t1 - t0) / unit, 4),
                "bottom_m": round(z0 / unit, 4),
                "top_m": round(z1 / unit, 4),
                "center_m": [round(cx / unit, 4), round(cy / unit, 4)],
                "axis": [round(ux, 6), round(uy, 6)],
            })

    def _host_color(self, op) -> Color:
        return self._hosts[op[0]].color

# -- helpers -------------------------------------------------------------------------------


def _bulk_polylines(jobs: list[tuple[str, list[tuple[np.ndarray, bool, Color]]]]):
    """Vertex chains -> line segments for many nodes at once.

    Same segments as ``SceneBuilder.add_polyline`` per chain (closed chains get their
    closing segment unless already closed; single vertices become points), computed in
    one pass. Returns, per job, ``[(kind, colour, array)]`` with consecutive chains of
    one colour merged into one slice.
    """
    lines = [ln for _, lns in jobs for ln in lns]
    if not lines:
        return [[] for _ in jobs]
    lens = np.array([ln[0].shape[0] for ln in lines], dtype=np.int64)
    closed = np.array([bool(ln[1]) for ln in lines])
    V = np.concatenate([ln[0] for ln in lines]) if len(lines) > 1 else lines[0][0]
    V = np.asarray(V, dtype=np.float64).reshape(-1, 3)
    ends = np.cumsum(lens)
    starts = ends - lens
    multi = lens >= 2
    need_close = closed & multi
    if need_close.any():
        k = np.flatnonzero(need_close)
        same = np.all(V[starts[k]] == V[ends[k] - 1], axis=1)
        need_close[k[same]] = False
    m = np.where(multi, lens - 1 + need_close, 0)
    total = int(m.sum())
    seg_end = np.cumsum(m)
    seg_start = seg_end - m
    A = np.repeat(starts, m) + (np.arange(total) - np.repeat(seg_start, m))
    B = A + 1
    close_at = seg_end[need_close] - 1
    B[close_at] = starts[need_close]
    seg = np.empty((2 * total, 3), dtype=np.float64)
    seg[0::2] = V[A]
    seg[1::2] = V[B]
    s_l, e_l = (2 * seg_start).tolist(), (2 * seg_end).tolist()
    st_l, en_l, lens_l = starts.tolist(), ends.tolist(), lens.tolist()
    out = []
    li = 0
    for _, lns in jobs:
        items: list[tuple[str, Color, np.ndarray]] = []
        run_color, run_a, run_b = None, 0, 0
        for _pts, _closed, color in lns:
            n = lens_l[li]
            if n >= 2:
                if run_color is not None and color == run_color and s_l[li] == run_b:
                    run_b = e_l[li]
                else:
                    if run_color is not None:
                        items.append(("lines", run_color, seg[run_a:run_b]))
                    run_color, run_a, run_b = color, s_l[li], e_l[li]
            elif n == 1:
                if run_color is not None:
                    items.append(("lines", run_color, seg[run_a:run_b]))
                    run_color = None
                items.append(("points", color, V[st_l[li]:en_l[li]]))
            li += 1
        if run_color is not None:
            items.append(("lines", run_color, seg[run_a:run_b]))
        out.append(items)
    return out



def _is_rectangle(q: list[list[float]]) -> bool:
    """Four corners with right angles (relative tolerance 1e-6) and no zero-length side.

    Python floats for four points: several times cheaper than numpy on (4, 2) arrays,
    and the same arithmetic (edge i = q[i+1] - q[i], dot products of neighbours).
    """
    e = [(q[(i + 1) % 4][0] - q[i][0], q[(i + 1) % 4][1] - q[i][1]) for i in range(4)]
    ln = [math.sqrt(x * x + y * y) for x, y in e]
    if min(ln) <= 0:
        return False
    for i in range(4):
        (ax, ay), (bx, by) = e[i], e[(i + 1) % 4]
        if not abs(ax * bx + ay * by) <= 1e-6 * ln[i] * ln[(i + 1) % 4]:
            return False
    return True


def _plan_points(els: list[_Element]) -> tuple[np.ndarray, np.ndarray]:
    """The plan points of many elements in one ``(n, 2)`` array (per element: its
    lines' points, then its triangles' positions) and the number of points of each."""
    parts: list[np.ndarray] = []
    sizes: list[int] = []
    for el in els:
        k = 0
        for p, _, _ in el.lines:
            parts.append(p)
            k += p.shape[0]
        for p, _, _ in el.tris:
            parts.append(p)
            k += p.shape[0]
        sizes.append(k)
    if not parts:
        return np.zeros((0, 2)), np.array(sizes, dtype=np.int64)
    pts = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return np.ascontiguousarray(pts[:, :2], dtype=np.float64), np.array(sizes, dtype=np.int64)


def _polygon(pts: np.ndarray) -> Any | None:
    import shapely
    from shapely.geometry import Polygon

    if pts.shape[0] < 3:
        return None
    poly = Polygon(pts)
    if not poly.is_valid:
        poly = shapely.make_valid(poly)
        polys = list(iter_polygons(poly))
        if not polys:
            return None
        poly = shapely.union_all(polys)
    if poly.is_empty or poly.area <= 0:
        return None
    return poly


def _dimensions(w: _Wall) -> tuple[float, float]:
    if w.is_strip:
        return w.trange[1] - w.trange[0], w.strip[1] - w.strip[0]  # type: ignore[index]
    rect = w.footprint.minimum_rotated_rectangle
    xy = np.asarray(rect.exterior.coords)[:4] if rect.geom_type == "Polygon" else np.zeros((4, 2))
    e1, e2 = np.linalg.norm(xy[1] - xy[0]), np.linalg.norm(xy[2] - xy[1])
    return max(e1, e2), min(e1, e2)


def _rect_walls(rects, max_thickness: float) -> list[_Wall]:
    """Closed rectangles on wall layers: thin ones become strip walls, all in bulk."""
    import shapely

    q = np.stack([r[0] for r in rects])                     # (R, 4, 2)
    e0, e1 = q[:, 1] - q[:, 0], q[:, 2] - q[:, 1]
    l0, l1 = np.linalg.norm(e0, axis=1), np.linalg.norm(e1, axis=1)
    long_is_0 = l0 >= l1
    u = np.where(long_is_0[:, None], e0 / l0[:, None], e1 / l1[:, None])
    flip = (u[:, 0] < 0) | ((u[:, 0] == 0) & (u[:, 1] < 0))
    u[flip] *= -1
    n = np.column_stack([-u[:, 1], u[:, 0]])
    t = np.einsum("rcj,rj->rc", q, u)
    sv = np.einsum("rcj,rj->rc", q, n)
    short, long_ = np.minimum(l0, l1), np.maximum(l0, l1)
    thin = (short <= max_thickness) & (long_ >= 1.5 * short)
    walls = []
    fat = np.flatnonzero(~thin)
    polys = shapely.polygons(q[fat]) if fat.size else []
    for k, poly in zip(fat.tolist(), polys):
        _, handle, layer, color = rects[k]
        walls.append(_Wall(poly, [handle], layer, color, "outline"))
    for k in np.flatnonzero(thin).tolist():
        _, handle, layer, color = rects[k]
        walls.append(_Wall(None, [handle], layer, color, "outline",
                           axis=(float(u[k, 0]), float(u[k, 1])),
                           strip=(float(sv[k].min()), float(sv[k].max())),
                           trange=(float(t[k].min()), float(t[k].max()))))
    return walls


def _strip_footprints(walls: list[_Wall]) -> None:
    """Create the plan polygons of strip walls in one vectorised call."""
    import shapely

    todo = [w for w in walls if w.footprint is None and w.is_strip]
    if not todo:
        return
    u = np.array([w.axis for w in todo], dtype=np.float64)
    n = np.column_stack([-u[:, 1], u[:, 0]])
    tr = np.array([w.trange for w in todo], dtype=np.float64)
    st = np.array([w.strip for w in todo], dtype=np.float64)
    t0, t1, s0, s1 = tr[:, :1], tr[:, 1:], st[:, :1], st[:, 1:]
    rects = np.stack([u * t0 + n * s0, u * t1 + n * s0, u * t1 + n * s1, u * t0 + n * s1],
                     axis=1)  # what _Wall.rect() gives, for all strip walls at once
    for w, poly in zip(todo, shapely.polygons(rects)):
        w.footprint = poly


def _fit_strip(w: _Wall, max_thickness: float) -> None:
    """Thin, rectangular outlines become strip walls (meshed as boxes)."""
    poly = w.footprint
    if poly.geom_type != "Polygon" or len(poly.interiors):
        return
    rect = poly.minimum_rotated_rectangle
    if rect.geom_type != "Polygon":
        return
    xy = np.asarray(rect.exterior.coords)[:4]
    e1, e2 = xy[1] - xy[0], xy[2] - xy[1]
    l1, l2 = float(np.linalg.norm(e1)), float(np.linalg.norm(e2))
    if min(l1, l2) <= 0 or min(l1, l2) > max_thickness or max(l1, l2) < 1.5 * min(l1, l2):
        return
    if rect.area <= 0 or poly.area / rect.area < 0.98:
        return
    u = e1 / l1 if l1 >= l2 else e2 / l2
    if u[0] < 0 or (u[0] == 0 and u[1] < 0):
        u = -u
    n = np.array([-u[1], u[0]])
    s, t = xy @ n, xy @ u
    w.axis = (float(u[0]), float(u[1]))
    w.strip = (float(s.min()), float(s.max()))
    w.trange = (float(t.min()), float(t.max()))


def _local_axis(w: _Wall, centre: np.ndarray, search: float):
    """Wall direction and normal offsets (lo, hi) of the wall strip near ``centre``."""
    from shapely.geometry import LineString, Point
    from shapely.ops import nearest_points

    if w.axis is not None and w.strip is not None:
        return np.array(w.axis), w.strip[0], w.strip[1]
    boundary = w.footprint.boundary
    p = Point(float(centre[0]), float(centre[1]))
    q = nearest_points(boundary, p)[0]
    # direction of the boundary segment nearest to the centre
    best = None
    for line in getattr(boundary, "geoms", [boundary]):
        c = np.asarray(line.coords)
        for a, b in zip(c[:-1], c[1:]):
            seg = LineString([a, b])
            d = seg.distance(q)
            if best is None or d < best[0]:
                best = (d, a, b)
    if best is None:
        return None, 0.0, 0.0
    d = np.asarray(best[2]) - np.asarray(best[1])
    length = float(np.linalg.norm(d))
    if length == 0:
        return None, 0.0, 0.0
    u = d / length
    if u[0] < 0 or (u[0] == 0 and u[1] < 0):
        u = -u
    n = np.array([-u[1], u[0]])
    qa = np.array([q.x, q.y])
    s_edge = float(qa @ n)
    # local thickness: probe both sides of the edge into the polygon
    best_side = (0.0, s_edge, s_edge)
    for sign in (1.0, -1.0):
        probe = LineString([qa + n * sign * 1e-6 * max(search, 1.0), qa + n * sign * search])
        inside = w.footprint.intersection(probe)
        if not inside.is_empty and inside.length > best_side[0]:
            other = s_edge + sign * inside.length
            best_side = (inside.length, min(s_edge, other), max(s_edge, other))
    if best_side[0] == 0.0:
        return u, s_edge - search / 2, s_edge + search / 2
    return u, best_side[1], best_side[2]


def _cluster(els: list[_Element], tol: float) -> list[_Element]:
    """Merge elements of the same category and layer whose bounding boxes touch."""
    from shapely.strtree import STRtree

    out: list[_Element] = []
    groups: dict[tuple[str, str], list[_Element]] = {}
    for el in els:
        groups.setdefault((el.category, el.layer), []).append(el)
    for (cat, layer), group in groups.items():
        if cat not in _OPENINGS or len(group) == 1:
            out.extend(group)
            continue
        import shapely

        pts, sizes = _plan_points(group)
        starts = np.cumsum(sizes) - sizes
        lo = np.minimum.reduceat(pts, starts, axis=0) - tol
        hi = np.maximum.reduceat(pts, starts, axis=0) + tol
        boxes = shapely.box(lo[:, 0], lo[:, 1], hi[:, 0], hi[:, 1])
        single = np.array([len(el.lines) + len(el.tris) == 1 for el in group])
        parent = list(range(len(group)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        tree = STRtree(boxes)
        left, right = tree.query(boxes, predicate="intersects")
        # INSERTs (multi-entity symbols) stay separate from each other; loose pieces join
        keep = (left != right) & (single[left] | single[right])
        for a, b in zip(left[keep].tolist(), right[keep].tolist()):
            if True:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
        merged: dict[int, _Element] = {}
        for i, el in enumerate(group):
            r = find(i)
            if r not in merged:
                merged[r] = _Element(el.category, el.layer, list(el.handles), el.color,
                                     list(el.lines), list(el.tris))
            elif r != i:
                m = merged[r]
                m.handles.extend(el.handles)
                m.lines.extend(el.lines)
                m.tris.extend(el.tris)
        out.extend(merged[k] for k in sorted(merged))
    return out


def _pair_walls(segments, min_t: float, max_t: float, default_t: float) -> list[_Wall]:
    """Pair parallel wall lines into walls; bridge corners; single lines get ``default_t``."""
    P = np.array([s[0] for s in segments], dtype=np.float64)
    Q = np.array([s[1] for s in segments], dtype=np.float64)
    d = Q - P
    L = np.linalg.norm(d, axis=1)
    ok = L > max(min_t * 0.25, 1e-9)
    idx_ok = np.nonzero(ok)[0]
    P, Q, d, L = P[ok], Q[ok], d[ok], L[ok]
    u = d / L[:, None]
    flip = (u[:, 0] < 0) | ((u[:, 0] == 0) & (u[:, 1] < 0))
    u[flip] *= -1
    P2 = np.where(flip[:, None], Q, P)
    Q2 = np.where(flip[:, None], P, Q)
    theta = np.arctan2(u[:, 1], u[:, 0])  # in (-pi/2, pi/2]
    nrm = np.column_stack([-u[:, 1], u[:, 0]])
    n = P.shape[0]
    ang_tol = math.radians(1.5)
    # bucket by angle; compare within the same and the next bucket
    nb = int(math.ceil(math.pi / ang_tol))
    bucket = np.floor((theta + math.pi / 2) / ang_tol).astype(np.int64) % nb
    claims: list[list[tuple[float, float, float, int]]] = [[] for _ in range(n)]
    cand: list[tuple[float, int, int]] = []
    order_all = np.argsort(bucket, kind="stable")
    buckets = {}
    for b in np.unique(bucket):
        buckets[int(b)] = order_all[bucket[order_all] == b]
    for b, members in buckets.items():
        pool = np.concatenate([members] + ([buckets[(b + 1) % nb]] if (b + 1) % nb in buckets
                                           and (b + 1) % nb != b else []))
        if pool.size < 2:
            continue
        # offsets of pool segments measured with the bucket's mean normal
        nm = nrm[members].mean(axis=0)
        nm /= np.linalg.norm(nm) or 1.0
        um = np.array([nm[1], -nm[0]])
        if um[0] < 0 or (um[0] == 0 and um[1] < 0):
            um = -um
        cc = P2[pool] @ nm
        order = np.argsort(cc, kind="stable")
        pool = pool[order]
        cc = cc[order]
        lo = np.searchsorted(cc, cc + min_t, side="left")
        hi = np.searchsorted(cc, cc + max_t, side="right")
        counts = hi - lo
        total = int(counts.sum())
        if total == 0:
            continue
        if total > 5_000_000:
            counts = np.minimum(counts, 5_000_000 // max(pool.size, 1))
            total = int(counts.sum())
        ii = np.repeat(np.arange(pool.size), counts)
        starts = np.repeat(lo, counts)
        offs = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        jj = starts + offs
        a, bb = pool[ii], pool[jj]
        if (b + 1) % nb != b:
            keep = np.isin(a, members) | np.isin(bb, members)
            a, bb, ii, jj = a[keep], bb[keep], ii[keep], jj[keep]
        ta0 = P2[a] @ um
        ta1 = Q2[a] @ um
        tb0 = P2[bb] @ um
        tb1 = Q2[bb] @ um
        lo_t = np.maximum(np.minimum(ta0, ta1), np.minimum(tb0, tb1))
        hi_t = np.minimum(np.maximum(ta0, ta1), np.maximum(tb0, tb1))
        overlap = hi_t - lo_t
        dang = np.abs(theta[a] - theta[bb])
        dang = np.minimum(dang, math.pi - dang)
        good = (overlap > min_t) & (dang <= ang_tol)
        ga, gb = a[good], bb[good]
        cand.extend(zip((cc[jj] - cc[ii])[good].tolist(), np.minimum(ga, gb).tolist(),
                        np.maximum(ga, gb).tolist()))
    cand = sorted(set(cand))
    walls: list[_Wall] = []
    # per-candidate geometry in bulk (same arithmetic as scalar dot products of 2-vectors)
    if cand:
        ci_ = np.array([c[1] for c in cand], dtype=np.int64)
        cj_ = np.array([c[2] for c in cand], dtype=np.int64)
        ux, uy = u[ci_, 0], u[ci_, 1]
        pi_t = P2[ci_, 0] * ux + P2[ci_, 1] * uy
        qi_t = Q2[ci_, 0] * ux + Q2[ci_, 1] * uy
        pj_t = P2[cj_, 0] * ux + P2[cj_, 1] * uy
        qj_t = Q2[cj_, 0] * ux + Q2[cj_, 1] * uy
        a_all = np.maximum(np.minimum(pi_t, qi_t), np.minimum(pj_t, qj_t))
        b_all = np.minimum(np.maximum(pi_t, qi_t), np.maximum(pj_t, qj_t))
        ci_all = P2[ci_, 0] * -uy + P2[ci_, 1] * ux
        cj_all = P2[cj_, 0] * -uy + P2[cj_, 1] * ux
        live = np.flatnonzero(~(b_all - a_all <= min_t))
        rows = zip(ci_[live].tolist(), cj_[live].tolist(), a_all[live].tolist(),
                   b_all[live].tolist(), ci_all[live].tolist(), cj_all[live].tolist(),
                   ux[live].tolist(), uy[live].tolist())
    else:
        rows = iter(())
    for i, j, a_t, b_t, ci, cj, nux, nuy in rows:
        if any(min(b_t, cb) - max(a_t, ca) > min_t for ca, cb, _, _ in claims[i]) or \
           any(min(b_t, cb) - max(a_t, ca) > min_t for ca, cb, _, _ in claims[j]):
            continue
        wi = len(walls)
        claims[i].append((a_t, b_t, cj - ci, wi))
        # claims on j use i's axis (same orientation within the angle tolerance)
        claims[j].append((a_t, b_t, ci - cj, wi))
        seg_i = segments[idx_ok[i]]
        walls.append(_Wall(None, [seg_i[2], segments[idx_ok[j]][2]], seg_i[3], seg_i[4],
                           "pair", axis=(nux, nuy), strip=(min(ci, cj), max(ci, cj)),
                           trange=(a_t, b_t)))
    # uncovered pieces: bridge next to a pair (corners, T-junctions), else single walls
    bridge_max = max_t * 1.05
    ux_l, uy_l = u[:, 0].tolist(), u[:, 1].tolist()
    pt = P2[:, 0] * u[:, 0] + P2[:, 1] * u[:, 1]
    qt = Q2[:, 0] * u[:, 0] + Q2[:, 1] * u[:, 1]
    tk0_l = np.minimum(pt, qt).tolist()
    tk1_l = np.maximum(pt, qt).tolist()
    ck_l = (P2[:, 0] * -u[:, 1] + P2[:, 1] * u[:, 0]).tolist()
    idx_ok_l = idx_ok.tolist()
    for k in range(n):
        tk0, tk1, ck = tk0_l[k], tk1_l[k], ck_l[k]
        gaps = []
        cursor = tk0
        prev = None
        ck_claims = claims[k]
        if ck_claims:
            if len(ck_claims) > 1:
                ck_claims.sort()
            for claim in ck_claims:
                ca, cb = claim[0], claim[1]
                if ca - cursor > 1e-9:
                    gaps.append((cursor, ca, prev, claim))
                cursor = max(cursor, cb)
                prev = claim
        if tk1 - cursor > 1e-9:
            gaps.append((cursor, tk1, prev, None))
        if not gaps:
            continue
        nux, nuy = ux_l[k], uy_l[k]
        seg = segments[idx_ok_l[k]]
        for g0, g1, left, right in gaps:
            glen = g1 - g0
            nb_claim = left or right
            if nb_claim is not None and glen <= bridge_max:
                # extend the neighbouring pair wall over the gap (same strip)
                w = walls[nb_claim[3]]
                wux, wuy = w.axis
                e0 = (nux * g0 + -nuy * ck) * wux + (nuy * g0 + nux * ck) * wuy
                e1 = (nux * g1 + -nuy * ck) * wux + (nuy * g1 + nux * ck) * wuy
                w.trange = (min(w.trange[0], min(e0, e1)), max(w.trange[1], max(e0, e1)))
                continue
            if glen > max(bridge_max, 2 * default_t) or (nb_claim is None and glen > min_t):
                h = default_t / 2.0
                walls.append(_Wall(None, [seg[2]], seg[3], seg[4], "single",
                                   axis=(nux, nuy), strip=(ck - h, ck + h), trange=(g0, g1)))
    return walls
