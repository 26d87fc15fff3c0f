"""DXF -> :class:`~cad2gltf.scene.Scene`.

The reader loads a document with ezdxf (ASCII files through the faster tag reader of
:mod:`cad2gltf.dxf.tags` first, ``ezdxf.readfile`` for anything it leaves, ezdxf's
recover mode when the file is damaged), walks the modelspace in file order, explodes block references with
their full transforms (nested, mirrored, non-uniformly scaled, MINSERT arrays and
attributes), converts OCS to WCS, tessellates curves to a chord tolerance relative to
the drawing size and batches everything per layer and colour.

Entities on layers recognised as walls, doors, windows, columns (see
:data:`cad2gltf.options.DEFAULT_LAYER_RULES`) are handed to
:mod:`cad2gltf.dxf.semantics`, which turns them into 3D elements.
"""

from __future__ import annotations

import gc
import io
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

import numpy as np

from cad2gltf.dxf.tags import fast_readfile
from cad2gltf.errors import InvalidInputError, ParsingError
from cad2gltf.options import ConvertOptions
from cad2gltf.scene import Color, Scene, SceneBuilder

__all__ = ["INSUNITS_TO_M", "dxf_readfile", "dxf_loadb", "read_document"]

log = logging.getLogger(__name__)

# $INSUNITS code -> metres per drawing unit (AutoCAD's table)
INSUNITS_TO_M: dict[int, tuple[str, float]] = {
    1: ("in", 0.0254), 2: ("ft", 0.3048), 3: ("mi", 1609.344), 4: ("mm", 0.001),
    5: ("cm", 0.01), 6: ("m", 1.0), 7: ("km", 1000.0), 8: ("microinch", 2.54e-8),
    9: ("mil", 2.54e-5), 10: ("yd", 0.9144), 11: ("angstrom", 1e-10), 12: ("nm", 1e-9),
    13: ("um", 1e-6), 14: ("dm", 0.1), 15: ("dam", 10.0), 16: ("hm", 100.0),
    17: ("Gm", 1e9), 18: ("au", 1.495978707e11), 19: ("ly", 9.46073e15), 20: ("pc", 3.08568e16),
    21: ("us_ft", 1200 / 3937), 22: ("us_in", 100 / 3937), 23: ("us_yd", 3600 / 3937),
    24: ("us_mi", 6336000 / 3937),
}
UNIT_NAME_TO_M = {"mm": 0.001, "cm": 0.01, "m": 1.0, "km": 1000.0, "in": 0.0254, "ft": 0.3048,
                  "yd": 0.9144, "mi": 1609.344, "um": 1e-6}

_MAX_WARNINGS = 50
_IDENTITY = None  # marker for "no transform"
_ACI7 = (0.08, 0.08, 0.08, 1.0)  # ACI 7 is white on black screens; on a light kiosk: black
# while a block definition is compiled, what its INSERT decides is left open:
_INHERIT = "\x00inherit"          # layer "0": the INSERT's layer
_BYBLOCK_C: Color = (-1.0, -1.0, -1.0, -1.0)  # colour BYBLOCK: the INSERT's colour
_BYLAYER_C: Color = (-2.0, -2.0, -2.0, -2.0)  # BYLAYER on an inherited layer


@dataclass
class _Compiled:
    """A block definition converted once, in block coordinates.

    ``ops`` are (kind, layer, colour, start, end, payload); their points live in ``pts``
    rows ``start:end`` so that an INSERT transforms all of them with one matrix product.
    """

    ops: list[tuple[str, str, Color, int, int, Any]]
    pts: np.ndarray
    # fast path: all linework pre-split into segments, grouped by (layer, colour)
    segs: np.ndarray | None = None
    seg_groups: list[tuple[str, Color, int, int]] | None = None
    others: list[tuple[str, str, Color, int, int, Any]] | None = None
    concrete_semantic: bool = False
    # every op is a vertex chain on the INSERT's layer (door and window symbols)
    inherited_chains: bool = False


class _Ctx(NamedTuple):
    """Inherited properties inside a block reference (a tuple: one is made per entity)."""

    layer: str          # effective layer for entities on layer "0"
    color: Color        # BYBLOCK colour
    depth: int
    handle: str         # handle of the top-level entity (provenance)
    blocks: tuple[str, ...]  # block names on the stack (cycle guard)


def _rgb(c: tuple[int, int, int], alpha: float = 1.0) -> Color:
    return (round(c[0] / 255.0, 4), round(c[1] / 255.0, 4), round(c[2] / 255.0, 4), alpha)


def _np_matrix(m: Any) -> np.ndarray:
    return np.array(list(m), dtype=np.float64).reshape(4, 4)


def _xf(points: np.ndarray, m: np.ndarray | None) -> np.ndarray:
    if m is None:
        return points
    return points @ m[:3, :3] + m[3, :3]


def _vecs(vs: Iterable[Any]) -> np.ndarray:
    arr = np.array([(v[0], v[1], v[2] if len(v) > 2 else 0.0) for v in vs], dtype=np.float64)
    return arr.reshape(-1, 3)


class _WarningCapture(logging.Handler):
    """Turns ezdxf's log messages during loading into conversion warnings."""

    def __init__(self, sink: list[str], limit: int = 20) -> None:
        super().__init__(logging.INFO)
        self.sink, self.limit, self.count = sink, limit, 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.count <= self.limit:
            self.sink.append(f"ezdxf: {record.getMessage()}"[:200])
        elif self.count == self.limit + 1:
            self.sink.append("ezdxf: further loader messages suppressed")


def _load(source: str | Path | bytes, warnings: list[str]) -> Any:
    """Load a DXF document; fall back to ezdxf's recover mode on structure errors."""
    logger = logging.getLogger("ezdxf")
    handler = _WarningCapture(warnings)
    old_propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        if not isinstance(source, (bytes, bytearray)):
            mark = len(warnings)
            try:
                return fast_readfile(source)
            except MemoryError:
                raise
            except Exception:  # noqa: BLE001 - anything unusual: ezdxf's own path below
                del warnings[mark:]  # what the attempt logged is logged again below
                handler.count = 0
        return _load_inner(source, warnings)
    finally:
        logger.removeHandler(handler)
        logger.propagate = old_propagate


def _load_inner(source: str | Path | bytes, warnings: list[str]) -> Any:
    import ezdxf
    from ezdxf import recover
    from ezdxf.lldxf.const import DXFError

    try:
        if isinstance(source, (bytes, bytearray)):
            doc, auditor = recover.read(io.BytesIO(source))
            _audit_warnings(auditor, warnings)
            return doc
        try:
            return ezdxf.readfile(str(source))
        except (DXFError, UnicodeDecodeError, ValueError, TypeError, KeyError, IndexError,
                AttributeError) as first:
            doc, auditor = recover.readfile(str(source))
            warnings.append(f"damaged DXF repaired by recover mode ({type(first).__name__}: "
                            f"{str(first)[:160]})")
            _audit_warnings(auditor, warnings)
            return doc
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - ezdxf raises many types for broken input
        raise ParsingError(f"not a readable DXF: {type(exc).__name__}: {str(exc)[:300]}",
                           subcode="BAD_DXF") from None


def _audit_warnings(auditor: Any, warnings: list[str]) -> None:
    fixes = list(getattr(auditor, "fixes", []))
    errors = list(getattr(auditor, "errors", []))
    if fixes:
        warnings.append(f"recover mode applied {len(fixes)} fix(es)")
        for entry in fixes[:10]:
            warnings.append(f"fixed: {getattr(entry, 'message', entry)}"[:200])
    if errors:
        warnings.append(f"recover mode left {len(errors)} unfixed error(s)")
        for entry in errors[:10]:
            warnings.append(f"unfixed: {getattr(entry, 'message', entry)}"[:200])


def dxf_readfile(path: str | Path, options: ConvertOptions | None = None) -> Scene:
    """Read a DXF file into a :class:`Scene` (metres, Z-up drawing frame).

    Raises:
        ParsingError: the file cannot be read as DXF (``BAD_DXF``) or has nothing in it.
    """
    warnings: list[str] = []
    doc = _load(Path(path), warnings)
    scene = read_document(doc, options or ConvertOptions(), warnings=warnings)
    del doc
    _free_document()
    return scene


def dxf_loadb(data: bytes, options: ConvertOptions | None = None) -> Scene:
    """Read DXF bytes (ASCII or binary) into a :class:`Scene`. See :func:`dxf_readfile`."""
    warnings: list[str] = []
    doc = _load(bytes(data), warnings)
    scene = read_document(doc, options or ConvertOptions(), warnings=warnings)
    del doc
    _free_document()
    return scene


def _free_document() -> None:
    """Free the (now unreferenced) ezdxf document while the collector is paused.

    An ezdxf document is held together by reference cycles (entities and their
    namespaces, the entity database), so only the cyclic collector frees it. Paused
    (:func:`cad2gltf.gcpause.gc_paused`), it would stay in memory through GLB writing
    and the preview: a third of the peak on a 100k-entity drawing. Everything allocated
    since the pause is in the youngest generation, so one young collection frees it;
    the collection that ends the pause then has that much less to scan.
    """
    if not gc.isenabled():
        gc.collect(0)


def read_document(doc: Any, options: ConvertOptions, *, warnings: list[str] | None = None) -> Scene:
    """Convert a loaded ezdxf document into a :class:`Scene`.

    Raises:
        ParsingError: the drawing could not be walked (``BAD_DXF``).
        InvalidInputError: the drawing would exceed ``options.max_vertices``.
    """
    return _Walker(doc, options, list(warnings or [])).run()


class _Walker:
    def __init__(self, doc: Any, options: ConvertOptions, warnings: list[str]) -> None:
        self.doc = doc
        self.opt = options
        self.warnings = warnings
        self.builder = SceneBuilder()
        self.stats: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.rays: list[tuple[str, Color, np.ndarray, np.ndarray, bool]] = []
        self.texts = 0
        self.vertex_budget = options.max_vertices
        self._rec: list[tuple[str, str, Color, np.ndarray, Any]] | None = None
        self._compiled: dict[tuple[str, int], _Compiled] = {}
        self._compiling: set[str] = set()
        self._dist_scale = 1.0
        self._sinks: dict[str, tuple[str, None]] = {}
        self._sem_sink: tuple[str, str, tuple[str, str]] | None = None
        self._blocks: dict[str, Any] = {}
        self._base_points: dict[str, tuple[float, float, float]] = {}
        self._layer_info: dict[str, tuple[Color, bool, str | None]] = {}
        self._rules = [(cat, re.compile(rx)) for cat, rx in options.layer_rules]
        from cad2gltf.dxf.semantics import SemanticCollector

        self.semantics = SemanticCollector(options) if options.semantics else None
        self.handlers: dict[str, Callable[[Any, np.ndarray | None, _Ctx, str, Color], None]] = {
            "LINE": self._line,
            "POINT": self._point,
            "CIRCLE": self._curve,
            "ARC": self._curve,
            "ELLIPSE": self._curve,
            "SPLINE": self._curve,
            "HELIX": self._curve,
            "LWPOLYLINE": self._lwpolyline,
            "POLYLINE": self._polyline,
            "SOLID": self._solid,
            "TRACE": self._solid,
            "3DFACE": self._3dface,
            "MESH": self._mesh,
            "HATCH": self._hatch,
            "MPOLYGON": self._hatch,
            "INSERT": self._insert,
            "DIMENSION": self._virtual,
            "ARC_DIMENSION": self._virtual,
            "LARGE_RADIAL_DIMENSION": self._virtual,
            "LEADER": self._virtual,
            "MLEADER": self._virtual,
            "MULTILEADER": self._virtual,
            "ACAD_TABLE": self._virtual,
            "TEXT": self._text,
            "MTEXT": self._text,
            "ATTRIB": self._text,
            "RAY": self._ray,
            "XLINE": self._ray,
            "IMAGE": self._frame,
            "WIPEOUT": self._frame,
        }

    # -- layers and colours -------------------------------------------------------------

    def _layer(self, name: str) -> tuple[Color, bool, str | None]:
        info = self._layer_info.get(name)
        if info is not None:
            return info
        if name == _INHERIT:
            return (_BYLAYER_C, True, None)
        from ezdxf.colors import aci2rgb, int2rgb

        color: Color = _ACI7
        visible = True
        layer = self.doc.layers.get(name) if name in self.doc.layers else None
        if layer is not None:
            aci = abs(layer.dxf.get("color", 7)) or 7
            tc = layer.dxf.get("true_color", None)
            if tc is not None:
                color = _rgb(int2rgb(tc))
            elif aci != 7 and 0 < aci < 256:
                color = _rgb(aci2rgb(aci))
            visible = layer.is_on() and not layer.is_frozen()
        if name.upper() == "DEFPOINTS":
            visible = False  # dimension definition points: AutoCAD never plots this layer
        category = None
        if self.semantics is not None:
            upper = name.upper()
            category = next((cat for cat, rx in self._rules if rx.search(upper)), None)
        info = (color, visible or self.opt.include_hidden_layers, category)
        self._layer_info[name] = info
        return info

    def _entity_color(self, e: Any, layer_color: Color, ctx: _Ctx) -> Color:
        # the namespace's own dict: what dxf.get() returns for set attributes, cheaper
        attrs = e.dxf.__dict__
        tc = attrs.get("true_color", None)
        if tc is not None:
            from ezdxf.colors import int2rgb

            return _rgb(int2rgb(tc))
        aci = attrs.get("color", 256)
        if aci == 256:
            return layer_color
        if aci == 0:
            return ctx.color
        if aci == 7:
            return _ACI7
        if 0 < aci < 256:
            from ezdxf.colors import aci2rgb

            return _rgb(aci2rgb(aci))
        return layer_color

    # -- the walk ----------------------------------------------------------------------

    def run(self) -> Scene:
        doc = self.doc
        msp = doc.modelspace()
        self.unit_name, self.scale = self._units()
        self.flat_dist = self._flattening_distance(msp)
        root = _Ctx(layer="0", color=_ACI7, depth=0, handle="", blocks=())
        n_entities = 0
        for e in msp:
            n_entities += 1
            handle = e.dxf.__dict__.get("handle") or ""  # dxf.get() without its overhead
            try:
                self._entity(e, None, _Ctx(root.layer, root.color, 0, handle, ()))
            except InvalidInputError:
                raise
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - one broken entity must not stop the rest
                self.failed[e.dxftype()] += 1
                if sum(self.failed.values()) <= 10:
                    self.warnings.append(f"{e.dxftype()} #{handle} skipped: "
                                         f"{type(exc).__name__}: {str(exc)[:120]}")
        self.stats["entities"] += n_entities
        self._finish_rays()
        if self.semantics is not None:
            self.semantics.emit(self.builder, self.scale, self.warnings)
        for dxftype, n in sorted(self.skipped.items()):
            self.warnings.append(f"{n} {dxftype} entit{'y' if n == 1 else 'ies'} not converted "
                                 f"(no supported geometry)")
        if sum(self.failed.values()) > 10:
            self.warnings.append(f"{sum(self.failed.values())} entities skipped in total "
                                 f"because they were broken")
        if self.texts > self.opt.max_text_nodes:
            self.warnings.append(f"{self.texts} texts; only the first {self.opt.max_text_nodes}"
                                 f" became placeholder nodes")
        scene = self.builder.build(stats=self._stats())
        _scale_scene(scene, self.scale)
        scene.metadata.update({
            "source_type": "dxf",
            "dxf_version": doc.dxfversion,
            "acad_release": getattr(doc, "acad_release", None),
            "units": self.unit_name,
            "unit_scale_m": self.scale,
            "layers": sorted(self._layer_info),
            "chord_tolerance_m": self.flat_dist * self.scale,
        })
        if len(self.warnings) > _MAX_WARNINGS:
            extra = len(self.warnings) - _MAX_WARNINGS
            self.warnings = self.warnings[:_MAX_WARNINGS] + [f"... and {extra} more warnings"]
        scene.warnings = self.warnings
        # break the walker's reference cycles (bound methods in self.handlers) so that
        # the document and the collected geometry are freed now, not at the next GC pass
        self.handlers = {}
        self.semantics = None
        self._compiled = {}
        self.doc = None
        return scene

    def _stats(self) -> dict[str, Any]:
        return {
            "entities": self.stats["entities"],
            "converted_by_type": dict(sorted((k[3:], v) for k, v in self.stats.items()
                                             if k.startswith("ok:"))),
            "skipped_by_type": dict(sorted(self.skipped.items())),
            "failed_by_type": dict(sorted(self.failed.items())),
            "texts": self.texts,
            "inserts": self.stats["inserts"],
        }

    def _units(self) -> tuple[str, float]:
        if self.opt.units:
            return self.opt.units, UNIT_NAME_TO_M[self.opt.units]
        code = self.doc.header.get("$INSUNITS", 0)
        try:
            code = int(code)
        except (TypeError, ValueError):
            code = 0
        if code in INSUNITS_TO_M:
            return INSUNITS_TO_M[code]
        if self.doc.header.get("$MEASUREMENT", 1) == 0 and code == 0:
            # imperial drawing without units: AutoCAD's default is inches
            self.warnings.append("drawing is unitless and imperial ($MEASUREMENT=0); "
                                 "assuming inches")
            return "in", 0.0254
        self.warnings.append(f"drawing is unitless ($INSUNITS={code}); assuming "
                             f"{self.opt.default_units} (option default_units)")
        return self.opt.default_units, UNIT_NAME_TO_M[self.opt.default_units]

    def _flattening_distance(self, msp: Any) -> float:
        ext = self._extents(msp)
        diag = float(np.linalg.norm(ext[1] - ext[0])) if ext is not None else 0.0
        self.extents = ext
        if not math.isfinite(diag) or diag <= 0:
            diag = 1.0 / self.scale  # one metre
        return max(diag * self.opt.chord_tolerance, 1e-9)

    def _extents(self, msp: Any) -> np.ndarray | None:
        hdr = self.doc.header
        try:
            lo = np.array(hdr.get("$EXTMIN", (0, 0, 0))[:3], dtype=np.float64)
            hi = np.array(hdr.get("$EXTMAX", (0, 0, 0))[:3], dtype=np.float64)
            if (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi[:2] > lo[:2])
                    and np.all(np.abs(np.r_[lo, hi]) < 1e15)):
                return np.vstack([lo, hi])
        except (TypeError, ValueError):
            pass
        # header extents missing or stale: a cheap pass over simple entities
        pts: list[tuple[float, float, float]] = []
        for e in msp:
            try:
                t = e.dxftype()
                if t == "LINE":
                    pts.append(tuple(e.dxf.start))
                    pts.append(tuple(e.dxf.end))
                elif t in ("CIRCLE", "ARC", "INSERT", "POINT", "TEXT", "MTEXT"):
                    key = {"CIRCLE": "center", "ARC": "center", "POINT": "location"}.get(t, "insert")
                    pts.append(tuple(e.dxf.get(key, (0, 0, 0))))
                elif t == "LWPOLYLINE":
                    pts.extend((x, y, 0.0) for x, y in e.get_points("xy"))
            except Exception:  # noqa: BLE001
                continue
            if len(pts) > 200_000:
                break
        if len(pts) < 2:
            return None
        arr = np.array(pts, dtype=np.float64)
        arr = arr[np.all(np.isfinite(arr), axis=1)]
        if arr.shape[0] < 2:
            return None
        return np.vstack([arr.min(axis=0), arr.max(axis=0)])

    def _entity(self, e: Any, m: np.ndarray | None, ctx: _Ctx) -> None:
        dxftype = e.dxftype()
        handler = self.handlers.get(dxftype)
        if handler is None:
            self.skipped[dxftype] += 1
            return
        attrs = e.dxf.__dict__  # set DXF attributes (dxf.get() without its overhead)
        if attrs.get("invisible", 0):
            return
        layer = attrs.get("layer", "0") or "0"
        if ctx.depth and layer == "0":
            layer = ctx.layer
        layer_color, visible, _ = self._layer(layer)
        if not visible:
            self.stats["hidden"] += 1
            return
        color = self._entity_color(e, layer_color, ctx)
        handler(e, m, ctx, layer, color)
        self.stats["ok:" + dxftype] += 1

    def _sink(self, layer: str, ctx: _Ctx) -> tuple[str, str | None]:
        """Node key for geometry on ``layer`` and its semantic category (if any)."""
        hit = self._sinks.get(layer)
        if hit is not None:
            return hit
        memo = self._sem_sink
        if memo is not None and memo[0] == layer and memo[1] == ctx.handle:
            return memo[2]
        category = self._layer(layer)[2]
        key = "layer:" + layer
        if not self.builder.has_node(key):
            self.builder.node(key, name=layer, category="layer", layer=layer)
        if category is not None and self.semantics is not None:
            res = (self.semantics.element_key(category, layer, ctx.handle, self.builder),
                   category)
            self._sem_sink = (layer, ctx.handle, res)  # the pieces of one INSERT in a row
            return res
        self._sinks[layer] = (key, None)
        return key, None

    def _budget(self, n: int) -> None:
        self.vertex_budget -= n
        if self.vertex_budget < 0:
            raise InvalidInputError(
                f"the drawing produces more than {self.opt.max_vertices} vertices",
                subcode="TOO_COMPLEX", details={"max_vertices": self.opt.max_vertices})

    def _emit_polyline(self, layer: str, ctx: _Ctx, color: Color, pts: np.ndarray,
                       closed: bool, source: str = "") -> None:
        if pts.shape[0] == 0:
            return
        if self._rec is not None:
            self._rec.append(("poly", layer, color, pts, closed))
            return
        self._budget(pts.shape[0] * 2)
        key, category = self._sink(layer, ctx)
        if category is not None and self.semantics.take_polyline(category, key, pts, closed,
                                                                 ctx.handle, color):
            return
        self.builder.add_polyline(key, color, pts, closed=closed)

    def _emit_triangles(self, layer: str, ctx: _Ctx, color: Color, pts: np.ndarray,
                        idx: np.ndarray | None = None) -> None:
        if self._rec is not None:
            self._rec.append(("tris", layer, color, pts, idx))
            return
        self._budget(pts.shape[0])
        key, category = self._sink(layer, ctx)
        if category is not None and self.semantics.take_triangles(category, key, pts, idx,
                                                                  ctx.handle, color):
            return
        self.builder.add_triangles(key, color, pts, idx)

    def _emit_points(self, layer: str, ctx: _Ctx, color: Color, pts: np.ndarray) -> None:
        if self._rec is not None:
            self._rec.append(("points", layer, color, pts, None))
            return
        self._budget(pts.shape[0])
        key, _ = self._sink(layer, ctx)
        if key.startswith("layer:"):
            self.builder.add_points(key, color, pts)
        else:
            self.builder.add_points("layer:" + layer, color, pts)

    def _emit_fill(self, layer: str, ctx: _Ctx, color: Color, pos3: np.ndarray,
                   idx: np.ndarray, poly: Any, m: np.ndarray | None) -> None:
        """A filled polygon (solid hatch): triangles, or a wall footprint on wall layers."""
        if self._rec is not None:
            self._rec.append(("fill", layer, color, pos3, (idx, poly)))
            return
        self._budget(pos3.shape[0])
        key, category = self._sink(layer, ctx)
        if category is not None and self.semantics.take_polygon(category, key, poly, pos3,
                                                                idx, m, ctx.handle, color):
            return
        self.builder.add_triangles(key, color, pos3, idx)

    def _emit_text(self, layer: str, ctx: _Ctx, p: np.ndarray, height: float, rotation: float,
                   text: str, dxftype: str, m: np.ndarray | None) -> None:
        if self._rec is not None:
            self._rec.append(("text", layer, _ACI7, p, (height, rotation, text, dxftype)))
            return
        self.texts += 1
        if self.texts > self.opt.max_text_nodes:
            return
        p = _xf(p, m)
        if m is not None:
            sx = float(np.linalg.norm(m[0, :3])) or 1.0
            height *= sx
            rotation += math.degrees(math.atan2(m[0, 1], m[0, 0]))
        if not np.all(np.isfinite(p)):
            return
        layer_key = "layer:" + layer
        if not self.builder.has_node(layer_key):
            self.builder.node(layer_key, name=layer, category="layer", layer=layer)
        key = f"text:{self.texts}"
        node = self.builder.node(key, name=f"{dxftype} {text[:40]}".strip(), category="text",
                                 parent=layer_key, text=text, height_m=height * self.scale,
                                 rotation_deg=round(rotation % 360.0, 6), dxftype=dxftype)
        node.translation = (float(p[0, 0]), float(p[0, 1]), float(p[0, 2]))
        node.rotation_z = math.radians(rotation)
        if ctx.handle:
            node.source = [ctx.handle]

    # -- entity handlers ---------------------------------------------------------------

    def _line(self, e: Any, m: np.ndarray | None, ctx: _Ctx, layer: str, color: Color) -> None:
        dxf = e.dxf
        s, t = dxf.start, dxf.end
        pts = np.array([[s.x, s.y, s.z], [t.x, t.y, t.z]], dtype=np.float64)
        self._emit_polyline(layer, ctx, color, _xf(pts, m), False, "LINE")

    def _point(self, e: Any, m: np.ndarray | None, ctx: _Ctx, layer: str, color: Color) -> None:
        p = e.dxf.location
        pts = _xf(np.array([[p.x, p.y, p.z]], dtype=np.float64), m)
        self._emit_points(layer, ctx, color, pts)

    def _dist(self, m: np.ndarray | None) -> float:
        if m is None:
            return self.flat_dist / self._dist_scale
        scale = float(np.max(np.linalg.norm(m[:3, :3], axis=1))) or 1.0
        return self.flat_dist / (scale * self._dist_scale)

    def _flatten(self, path: Any, m: np.ndarray | None) -> list[np.ndarray]:
        """Flatten an ezdxf path (sub-paths kept apart) to arrays of vertices."""
        dist = self._dist(m)
        out = []
        subs = path.sub_paths() if path.has_sub_paths else [path]
        for sub in subs:
            if len(sub) == 0:
                continue
            pts = _vecs(sub.flattening(dist, segments=4))
            if pts.shape[0] > self.opt.max_segments * 64:
                pts = pts[:: int(math.ceil(pts.shape[0] / (self.opt.max_segments * 64)))]
            out.append(pts)
        return out

    def _curve(self, e: Any, m: np.ndarray | None, ctx: _Ctx, layer: str, color: Color) -> None:
        dxftype = e.dxftype()
        if dxftype == "CIRCLE" or dxftype == "ARC":
            self._arc(e, m, ctx, layer, color, dxftype == "CIRCLE")
            return
        from ezdxf import path as ezpath

        p = ezpath.make_path(e)
        closed = bool(dxftype == "ELLIPSE" and abs(e.dxf.end_param - e.dxf.start_param -
                                                   math.tau) < 1e-9)
        for pts in self._flatten(p, m):
            self._emit_polyline(layer, ctx, color, _xf(pts, m), closed, dxftype)

    def _arc(self, e: Any, m: np.ndarray | None, ctx: _Ctx, layer: str, color: Color,
             full: bool) -> None:
        dxf = e.dxf
        r = float(dxf.radius)
        if not (r > 0) or not math.isfinite(r):
            self.skipped[f"{e.dxftype()} (radius <= 0)"] += 1
            return
        if full:
            a0, sweep = 0.0, math.tau
        else:
            a0 = math.radians(dxf.start_angle)
            a1 = math.radians(dxf.end_angle)
            sweep = (a1 - a0) % math.tau or math.tau
        dist = min(self._dist(m), r)
        # chord error r(1 - cos(da/2)) <= dist
        da = 2.0 * math.acos(max(-1.0, 1.0 - dist / r))
        n = int(min(self.opt.max_segments, max(4 if full else 2, math.ceil(sweep / da))))
        ang = a0 + np.linspace(0.0, sweep, n + 1)
        c = dxf.center
        pts = np.empty((n + 1, 3), dtype=np.float64)
        pts[:, 0] = c.x + r * np.cos(ang)
        pts[:, 1] = c.y + r * np.sin(ang)
        pts[:, 2] = c.z
        ext = dxf.get("extrusion", None)
        if ext is not None and (abs(ext[0]) > 1e-12 or abs(ext[1]) > 1e-12 or ext[2] < 0):
            ocs = e.ocs()
            pts = _vecs(ocs.points_to_wcs(pts.tolist()))
        if full:
            pts[-1] = pts[0]
        self._emit_polyline(layer, ctx, color, _xf(pts, m), full, e.dxftype())

    def _lwpolyline(self, e: Any, m: np.ndarray | None, ctx: _Ctx, layer: str,
                    color: Color) -> None:
        closed = bool(e.closed)
        attrs = e.dxf.__dict__
        # the vertex array itself (x, y, start width, end width, bulge per row) rather
        # than has_width / has_arc / get_points, which loop over it in Python
        v = np.asarray(e.lwpoints.values, dtype=np.float64).reshape(-1, 5)
        # start width, end width, bulge: any non-zero (NaN counts), in one reduction
        flags: list[bool] = v[:, 2:5].any(axis=0).tolist()  # type: ignore[assignment]
        start_w, end_w, bulge = flags
        if "const_width" in attrs:
            has_width = attrs["const_width"] != 0.0
        else:
            has_width = start_w or end_w
        if has_width:
            self._wide_polyline(e, m, ctx, layer, color)
            return
        if bulge:
            self._curve(e, m, ctx, layer, color)
            return
        out = np.empty((v.shape[0], 3), dtype=np.float64)
        out[:, :2] = v[:, :2]
        out[:, 2] = attrs.get("elevation", 0.0)
        ext = attrs.get("extrusion", None)
        if ext is not None and (abs(ext[0]) > 1e-12 or abs(ext[1]) > 1e-12 or ext[2] < 0):
            out = _vecs(e.ocs().points_to_wcs(out.tolist()))
        self._emit_polyline(layer, ctx, color, _xf(out, m), closed, "LWPOLYLINE")

    def _wide_polyline(self, e: Any, m: np.ndarray | None, ctx: _Ctx, layer: str,
                       color: Color) -> None:
        from ezdxf.render.trace import TraceBuilder

        tb = TraceBuilder.from_polyline(e, segments=16)
        elevation = e.dxf.get("elevation", 0.0)
        if not isinstance(elevation, (int, float)):
            elevation = elevation[2]
        quads = [_vecs(face) for face in tb.faces_wcs(e.ocs(), elevation)]
        if not quads:
            return
        tris = []
        for q in quads:
            if q.shape[0] >= 4:
                tris.append(q[[0, 1, 2, 0, 2, 3]])
            elif q.shape[0] == 3:
                tris.append(q)
        if tris:
            self._emit_triangles(layer, ctx, color, _xf(np.vstack(tris), m))

    def _polyline(self, e: Any, m: np.ndarray | None, ctx: _Ctx, layer: str,
                  color: Color) -> None:
        if e.is_polygon_mesh or e.is_poly_face_mesh:
            from ezdxf.render import MeshBuilder

            mb = (MeshBuilder.from_polyface(e) if e.is_poly_face_mesh
                  else MeshBuilder.from_polyface(e))
            self._meshbuilder(mb, m, ctx, layer, color)
            return
        if e.is_2d_polyline and any(v.dxf.get("start_width", 0) or v.dxf.get("end_width", 0)
                                    for v in e.vertices) or e.dxf.get("default_start_width", 0):
            self._wide_polyline(e, m, ctx, layer, color)
            return
        self._curve(e, m, ctx, layer, color)

    def _meshbuilder(self, mb: Any, m: np.ndarray | None, ctx: _Ctx, layer: str,
                     color: Color) -> None:
        verts = _vecs(mb.vertices)
        tris: list[int] = []
        nv = verts.shape[0]
        for face in mb.faces:
            face = [i for i in face if 0 <= i < nv]
            for k in range(1, len(face) - 1):
                tris.extend((face[0], face[k], face[k + 1]))
        if tris and nv:
            self._emit_triangles(layer, ctx, color, _xf(verts, m),
                                 np.array(tris, dtype=np.int64))

    def _mesh(self, e: Any, m: np.ndarray | None, ctx: _Ctx, layer: str, color: Color) -> None:
        from ezdxf.render import MeshBuilder

        self._meshbuilder(MeshBuilder.from_mesh(e), m, ctx, layer, color)

    def _solid(self, e: Any, m: np.ndarray | None, ctx: _Ctx, layer: str, color: Color) -> None:
        v = _vecs(e.wcs_vertices(close=False))
        if v.shape[0] < 3:
            return
        pts = v[[0, 1, 2, 0, 2, 3]] if v.shape[0] >= 4 else v[:3]
        self._emit_triangles(layer, ctx, color, _xf(pts, m))

    def _3dface(self, e: Any, m: np.ndarray | None, ctx: _Ctx, layer: str,
                color: Color) -> None:
        v = _vecs(e.wcs_vertices())
        if v.shape[0] >= 4 and not np.allclose(v[2], v[3]):
            pts = v[[0, 1, 2, 0, 2, 3]]
        else:
            pts = v[:3]
        if pts.shape[0] >= 3:
            self._emit_triangles(layer, ctx, color, _xf(pts, m))

    def _hatch(self, e: Any, m: np.ndarray | None, ctx: _Ctx, layer: str, color: Color) -> None:
        from ezdxf import path as ezpath

        from cad2gltf.geometry.polygons import polygon_from_rings, triangulate_polygon

        paths = list(ezpath.from_hatch(e))
        rings = []
        for p in paths:
            for pts in self._flatten(p, m):
                if pts.shape[0] >= 3:
                    rings.append(pts)
        if not rings:
            return
        solid = bool(e.dxf.get("solid_fill", 0))
        if not solid:
            for pts in rings:
                self._emit_polyline(layer, ctx, color, _xf(pts, m), True, "HATCH")
            return
        # fill colour: HATCH may carry its own gradient/true colour; use entity colour
        z = float(np.median(rings[0][:, 2]))
        ocs = e.ocs()
        flat = abs(ocs.uz.z - 1.0) < 1e-9
        rings2d = [r[:, :2] if flat else _vecs(ocs.points_from_wcs(r.tolist()))[:, :2]
                   for r in rings]
        poly = polygon_from_rings(rings2d)
        if poly is None:
            return
        pos, idx = triangulate_polygon(poly)
        if idx.size == 0:
            return
        pos3 = np.zeros((pos.shape[0], 3), dtype=np.float64)
        pos3[:, :2] = pos
        if flat:
            pos3[:, 2] = z
        else:
            zs = float(np.median(_vecs(ocs.points_from_wcs(rings[0].tolist()))[:, 2]))
            pos3[:, 2] = zs
            pos3 = _vecs(ocs.points_to_wcs(pos3.tolist()))
        self._emit_fill(layer, ctx, color, _xf(pos3, m), idx, poly if flat else None, m)

    def _insert(self, e: Any, m: np.ndarray | None, ctx: _Ctx, layer: str, color: Color) -> None:
        self.stats["inserts"] += 1
        attrs = e.dxf.__dict__
        name = attrs.get("name", "")
        try:
            block = self._blocks[name]
        except KeyError:
            block = self._blocks[name] = e.block()
        if block is None:
            self.skipped[f"INSERT of missing block {name!r}"[:60]] += 1
            return
        if name in ctx.blocks or name in self._compiling:
            self.warnings.append(f"block {name!r} references itself; recursion cut")
            return
        if ctx.depth + len(self._compiling) >= self.opt.max_block_depth:
            self.warnings.append(f"block nesting deeper than {self.opt.max_block_depth} at "
                                 f"#{ctx.handle}; not expanded")
            return
        multi = (attrs.get("row_spacing") or attrs.get("column_spacing")) and e.mcount > 1
        inserts = list(e.multi_insert()) if multi else [e]
        for ins in inserts:
            bm = self._insert_matrix(ins, name, block)
            if m is None and bm[0, 2] == 0.0 and bm[1, 2] == 0.0 and bm[2, 0] == 0.0 \
                    and bm[2, 1] == 0.0:
                # the usual 2D placement: same checks as below, in Python floats
                a, b, c, d, sz = (float(bm[0, 0]), float(bm[0, 1]), float(bm[1, 0]),
                                  float(bm[1, 1]), float(bm[2, 2]))
                if not all(map(math.isfinite, (a, b, c, d, sz, float(bm[3, 0]),
                                               float(bm[3, 1]), float(bm[3, 2])))) \
                        or abs(sz * (a * d - b * c)) < 1e-300:
                    self.skipped["INSERT (degenerate transform)"] += 1
                    continue
                full = bm
                scale = max(math.sqrt(a * a + b * b), math.sqrt(c * c + d * d),
                            math.sqrt(sz * sz)) \
                    * self._dist_scale
            else:
                if not np.all(np.isfinite(bm)) or abs(np.linalg.det(bm[:3, :3])) < 1e-300:
                    self.skipped["INSERT (degenerate transform)"] += 1
                    continue
                full = bm if m is None else bm @ m
                scale = float(np.max(np.linalg.norm(full[:3, :3], axis=1))) * self._dist_scale
            bucket = int(round(math.log2(scale))) if scale > 0 else 0
            compiled = self._compile(name, block, bucket, ctx)
            if compiled is not None and compiled.ops:
                self._instantiate(compiled, full, ctx, layer, color)
        # attributes are stored in WCS of the INSERT's container (not the block frame)
        for attrib in e.attribs:
            self._entity(attrib, m, ctx)

    def _insert_matrix(self, ins: Any, name: str, block: Any) -> np.ndarray:
        """The block-to-container transform; a direct formula for the usual 2D case."""
        dxf = ins.dxf.__dict__  # set attributes only, as dxf.get(key, default) reads them
        ext = dxf.get("extrusion", None)
        if ext is not None and (abs(ext[0]) > 1e-12 or abs(ext[1]) > 1e-12 or ext[2] <= 0):
            return _np_matrix(ins.matrix44())
        base = self._base_points.get(name)
        if base is None:
            bp = block.block.dxf.get("base_point", (0, 0, 0)) if block.block else (0, 0, 0)
            base = self._base_points[name] = (float(bp[0]), float(bp[1]), float(bp[2]))
        sx, sy, sz = dxf.get("xscale", 1.0), dxf.get("yscale", 1.0), dxf.get("zscale", 1.0)
        rot = math.radians(dxf.get("rotation", 0.0))
        c, s_ = math.cos(rot), math.sin(rot)
        p = dxf.get("insert", (0.0, 0.0, 0.0))
        m = np.array([[sx * c, sx * s_, 0.0, 0.0],
                      [-sy * s_, sy * c, 0.0, 0.0],
                      [0.0, 0.0, sz, 0.0],
                      [0.0, 0.0, 0.0, 1.0]])
        m[3, :3] = (p[0], p[1], p[2] if len(p) > 2 else 0.0)
        m[3, :3] -= np.asarray(base) @ m[:3, :3]
        return m

    def _compile(self, name: str, block: Any, bucket: int, ctx: _Ctx) -> _Compiled | None:
        """Convert a block definition once per scale bucket, in block coordinates."""
        key = (name, bucket)
        hit = self._compiled.get(key)
        if hit is not None:
            return hit
        saved = (self._rec, self._dist_scale)
        self._rec = []
        self._dist_scale = 2.0 ** bucket
        self._compiling.add(name)
        sub = _Ctx(layer=_INHERIT, color=_BYBLOCK_C, depth=ctx.depth + 1, handle=ctx.handle,
                   blocks=ctx.blocks + (name,))
        try:
            for be in block:
                if be.dxftype() == "ATTDEF" and not be.dxf.get("flags", 0) & 2:
                    continue  # definitions are templates; only constant ones are shown
                try:
                    self._entity(be, None, sub)
                except (InvalidInputError, MemoryError):
                    raise
                except Exception as exc:  # noqa: BLE001 - a broken entity costs itself only
                    self.failed[be.dxftype()] += 1
                    if sum(self.failed.values()) <= 10:
                        self.warnings.append(f"{be.dxftype()} in block {name!r} skipped: "
                                             f"{type(exc).__name__}: {str(exc)[:120]}")
            recorded = self._rec
        finally:
            self._compiling.discard(name)
            self._rec, self._dist_scale = saved
        ops = []
        chunks = []
        cursor = 0
        for kind, layer, color, pts, payload in recorded:
            n = pts.shape[0]
            ops.append((kind, layer, color, cursor, cursor + n, payload))
            chunks.append(pts)
            cursor += n
        compiled = _Compiled(ops, np.concatenate(chunks) if chunks else np.zeros((0, 3)))
        compiled.inherited_chains = bool(ops) and all(
            op[0] == "poly" and op[1] == _INHERIT and op[4] > op[3] for op in ops)
        self._prepare_segments(compiled)
        self._compiled[key] = compiled
        return compiled

    def _prepare_segments(self, compiled: _Compiled) -> None:
        """Group a block's polylines into segment arrays per (layer, colour) once, so that
        placing the block adds a handful of arrays instead of one per entity."""
        groups: dict[tuple[str, Color], list[np.ndarray]] = {}
        others = []
        for op in compiled.ops:
            kind, layer, color, a, b, payload = op
            if layer != _INHERIT and self._layer(layer)[2] is not None:
                compiled.concrete_semantic = True
            if kind == "poly":
                pts = compiled.pts[a:b]
                if payload and not np.array_equal(pts[0], pts[-1]):
                    pts = np.concatenate([pts, pts[:1]])
                if pts.shape[0] >= 2:
                    seg = np.empty((2 * (pts.shape[0] - 1), 3))
                    seg[0::2], seg[1::2] = pts[:-1], pts[1:]
                    groups.setdefault((layer, color), []).append(seg)
            else:
                others.append(op)
        if not groups:
            compiled.segs, compiled.seg_groups, compiled.others = np.zeros((0, 3)), [], others
            return
        chunks, seg_groups, cursor = [], [], 0
        for (layer, color), parts in groups.items():
            arr = np.concatenate(parts)
            seg_groups.append((layer, color, cursor, cursor + arr.shape[0]))
            chunks.append(arr)
            cursor += arr.shape[0]
        compiled.segs = np.concatenate(chunks)
        compiled.seg_groups = seg_groups
        compiled.others = others

    def _resolve(self, op_layer: str, op_color: Color, layer: str,
                 color: Color) -> tuple[str, Color]:
        lay = layer if op_layer == _INHERIT else op_layer
        if op_color == _BYBLOCK_C:
            return lay, color
        if op_color == _BYLAYER_C:
            return lay, (_BYLAYER_C if lay == _INHERIT else self._layer(lay)[0])
        return lay, op_color

    def _instantiate(self, compiled: _Compiled, m: np.ndarray, ctx: _Ctx, layer: str,
                     color: Color) -> None:
        """Place a compiled block: one matrix product, then resolve inherited properties."""
        ops = compiled.ops
        sem = self.semantics
        if compiled.inherited_chains and self._rec is None and layer != _INHERIT \
                and sem is not None:
            layer_color, visible, category = self._layer(layer)
            if category is not None and sem.keeps_linework(category):
                # a door/window symbol: all its chains go to one element, as
                # _emit_polyline -> take_polyline would hand them over one by one
                if not visible:
                    return
                pts = _xf(compiled.pts, m)
                self._budget(2 * pts.shape[0])
                key, _ = self._sink(layer, ctx)
                chains = []
                for _, _, op_color, a, b, closed in ops:
                    col = (color if op_color == _BYBLOCK_C else
                           layer_color if op_color == _BYLAYER_C else op_color)
                    chains.append((pts[a:b], closed, col))
                sem.take_chains(key, chains)
                return
        if (self._rec is None and not compiled.concrete_semantic and compiled.segs is not None
                and (layer == _INHERIT or self._layer(layer)[2] is None)):
            # plain linework block: pre-split segments, one array per (layer, colour)
            segs = _xf(compiled.segs, m)
            self._budget(segs.shape[0])
            for op_layer, op_color, a, b in compiled.seg_groups:
                lay, col = self._resolve(op_layer, op_color, layer, color)
                if lay != _INHERIT and not self._layer(lay)[1]:
                    continue
                key, _ = self._sink(lay, ctx)
                self.builder.add_segments(key, col, segs[a:b])
            ops = compiled.others
            if not ops:
                return
        pts = _xf(compiled.pts, m)
        for kind, op_layer, op_color, a, b, payload in ops:
            lay = layer if op_layer == _INHERIT else op_layer
            if op_color == _BYBLOCK_C:
                col = color
            elif op_color == _BYLAYER_C:
                col = _BYLAYER_C if lay == _INHERIT else self._layer(lay)[0]
            else:
                col = op_color
            if lay != _INHERIT and not self._layer(lay)[1]:
                continue
            if kind == "poly":
                self._emit_polyline(lay, ctx, col, pts[a:b], payload)
            elif kind == "tris":
                self._emit_triangles(lay, ctx, col, pts[a:b], payload)
            elif kind == "points":
                self._emit_points(lay, ctx, col, pts[a:b])
            elif kind == "fill":
                idx, poly = payload
                if self._rec is None and poly is not None:
                    self._emit_fill(lay, ctx, col, pts[a:b], idx, poly, m)
                elif self._rec is not None:
                    # nested: keep the plan polygon in the parent's block frame
                    from shapely import affinity

                    moved = None if poly is None else affinity.affine_transform(
                        poly, [m[0, 0], m[1, 0], m[0, 1], m[1, 1], m[3, 0], m[3, 1]])
                    self._emit_fill(lay, ctx, col, pts[a:b], idx, moved, None)
                else:
                    self._emit_triangles(lay, ctx, col, pts[a:b], idx)
            elif kind == "text":
                height, rotation, text, dxftype = payload
                sx = float(np.linalg.norm(m[0, :3])) or 1.0
                self._emit_text(lay, ctx, pts[a:b], height * sx,
                                rotation + math.degrees(math.atan2(m[0, 1], m[0, 0])),
                                text, dxftype, None)

    def _virtual(self, e: Any, m: np.ndarray | None, ctx: _Ctx, layer: str,
                 color: Color) -> None:
        sub_ctx = _Ctx(layer=layer, color=color, depth=ctx.depth + 1, handle=ctx.handle,
                       blocks=ctx.blocks)
        for ve in e.virtual_entities():
            self._entity(ve, m, sub_ctx)

    def _text(self, e: Any, m: np.ndarray | None, ctx: _Ctx, layer: str, color: Color) -> None:
        if not self.opt.include_text:
            return
        dxftype = e.dxftype()
        dxf = e.dxf
        if dxftype == "MTEXT":
            ins = dxf.get("insert", (0, 0, 0))
            p = np.array([[ins[0], ins[1], ins[2]]], dtype=np.float64)
            height = float(dxf.get("char_height", 1.0))
            rotation = float(e.get_rotation()) if hasattr(e, "get_rotation") else 0.0
            text = e.plain_text(split=False)
        else:
            ins = dxf.get("insert", (0, 0, 0))
            if "extrusion" in dxf.__dict__:
                p = _vecs(e.ocs().points_to_wcs([ins]))
            else:  # ezdxf's OCS without an extrusion passes points through unchanged
                p = _vecs((ins,))
            height = float(dxf.get("height", 1.0))
            rotation = float(dxf.get("rotation", 0.0))
            text = e.plain_text()
        self._emit_text(layer, ctx, p, height, rotation, str(text)[:1000], dxftype, m)

    def _ray(self, e: Any, m: np.ndarray | None, ctx: _Ctx, layer: str, color: Color) -> None:
        if self._rec is not None or layer == _INHERIT:
            self.skipped[f"{e.dxftype()} inside a block"] += 1
            return
        s = e.dxf.start
        d = e.dxf.unit_vector
        p = _xf(np.array([[s.x, s.y, s.z]], dtype=np.float64), m)[0]
        q = _xf(np.array([[s.x + d.x, s.y + d.y, s.z + d.z]], dtype=np.float64), m)[0]
        self.rays.append((layer, color, p, q - p, e.dxftype() == "XLINE"))
        self._sink(layer, ctx)

    def _finish_rays(self) -> None:
        if not self.rays:
            return
        ext = self.extents
        if ext is None:
            self.warnings.append(f"{len(self.rays)} RAY/XLINE dropped: no drawing extents")
            return
        lo, hi = ext[0].copy(), ext[1].copy()
        for layer, color, p, d, both in self.rays:
            n = float(np.linalg.norm(d))
            if n == 0:
                continue
            d = d / n
            t0, t1 = (-math.inf if both else 0.0), math.inf
            for k in range(2):  # clip in plan (x, y)
                if abs(d[k]) < 1e-15:
                    if p[k] < lo[k] or p[k] > hi[k]:
                        t0, t1 = 1.0, 0.0
                    continue
                a, b = (lo[k] - p[k]) / d[k], (hi[k] - p[k]) / d[k]
                t0, t1 = max(t0, min(a, b)), min(t1, max(a, b))
            if t1 > t0 and math.isfinite(t0) and math.isfinite(t1):
                seg = np.vstack([p + t0 * d, p + t1 * d])
                self.builder.add_segments("layer:" + layer, color, seg)

    def _frame(self, e: Any, m: np.ndarray | None, ctx: _Ctx, layer: str, color: Color) -> None:
        try:
            pts = _vecs(e.boundary_path_wcs())
        except Exception:  # noqa: BLE001
            return
        if pts.shape[0] >= 2:
            self._emit_polyline(layer, ctx, color, _xf(pts, m), True, e.dxftype())


def _scale_scene(scene: Scene, scale: float) -> None:
    """Drawing units -> metres, in place."""
    for node in scene.iter_nodes():
        if scale != 1.0:
            for prim in node.primitives:
                prim.positions *= scale
            if node.translation is not None:
                node.translation = tuple(float(v) * scale for v in node.translation)
