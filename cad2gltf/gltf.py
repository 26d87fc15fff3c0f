"""Scene -> GLB bytes (glTF 2.0).

* metres, Y-up: the drawing frame (X right, Y north, Z up) maps to glTF as
  ``(x, y, z) -> (x, z, -y)``, a proper rotation, so windings are kept;
* one node per layer or page, recognised elements as child nodes, ``extras`` with
  ``category``, ``source`` (entity handles) and what the reader knew;
* one material per colour (sRGB converted to linear ``baseColorFactor``); lines and
  points use ``KHR_materials_unlit``;
* flat-shaded triangles carry per-face normals; degenerate triangles are dropped;
* large coordinates are re-centred (the offset is kept in ``extras.origin_offset_m``)
  because glTF positions are float32;
* deterministic: the same scene gives the same bytes (no timestamps, stable ordering).

The document is built as plain JSON-able dicts and packed into a GLB container here;
pygltflib is used by the tests to reload and inspect what was written. (Serialising
through pygltflib's dataclasses costs seconds for drawings with thousands of nodes.)
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from cad2gltf.scene import Color, Node, Scene

__all__ = ["gltf_dumpb", "scene_to_gltf_dict"]

_ARRAY_BUFFER = 34962
_FLOAT = 5126
_MODE = {"points": 0, "lines": 1, "triangles": 4}
_UNSET: Any = object()  # "bounds not given": compute them


def _srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _to_yup(p: np.ndarray) -> np.ndarray:
    out = np.empty_like(p, dtype=np.float64)
    out[:, 0] = p[:, 0]
    out[:, 1] = p[:, 2]
    out[:, 2] = -p[:, 1]
    return out


_PLAIN = (str, int, bool, type(None))


def _jsonable(value: Any) -> Any:
    """Make extras JSON-safe and deterministic (floats finite, tuples as lists)."""
    cls = value.__class__
    if cls in _PLAIN:
        return value
    if cls is float:
        return round(value, 9) if math.isfinite(value) else None
    if cls is dict:
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if cls is list or cls is tuple:
        if all(x.__class__ is str for x in value):
            return list(value)
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return round(v, 9) if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return _jsonable(dict(value))
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


class _Writer:
    """Two passes: walk the nodes collecting geometry, then encode it all in bulk.

    All triangle positions share one buffer view (and normals another, lines and points
    theirs); each primitive is an accessor with a byte offset into them. Normals, bounds
    and degenerate-triangle removal are computed once over all triangles, so the cost
    does not grow with the number of nodes.
    """

    def __init__(self, offset: np.ndarray) -> None:
        self.offset = offset
        self._offset_l = [float(v) for v in offset]
        self.blob = bytearray()
        self.buffer_views: list[dict[str, Any]] = []
        self.accessors: list[dict[str, Any]] = []
        self.materials: list[dict[str, Any]] = []
        self.material_index: dict[tuple[Color, bool, bool], int] = {}
        self.meshes: list[dict[str, Any]] = []
        self.nodes: list[dict[str, Any]] = []
        self.uses_unlit = False
        # orjson serialises tuples, numpy scalars and NaN (as null) itself
        self.fast_json = _orjson() is not None
        # pending primitives: (node entry, kind, material, array)
        self._tris: list[tuple[dict[str, Any], int, np.ndarray]] = []
        self._lines: list[tuple[dict[str, Any], int, np.ndarray]] = []
        self._points: list[tuple[dict[str, Any], int, np.ndarray]] = []

    def _view(self, data: bytes | memoryview) -> int:
        """A vertex buffer view of tightly packed VEC3 floats (stride 12: shared by
        several accessors, which the spec only allows with an explicit stride)."""
        pad = (-len(self.blob)) % 4
        self.blob.extend(b"\x00" * pad)
        self.buffer_views.append({"buffer": 0, "byteOffset": len(self.blob),
                                  "byteLength": len(data), "byteStride": 12,
                                  "target": _ARRAY_BUFFER})
        self.blob.extend(data)
        return len(self.buffer_views) - 1

    def _material(self, color: Color, unlit: bool, double_sided: bool) -> int:
        key = (color, unlit, double_sided)
        idx = self.material_index.get(key)
        if idx is not None:
            return idx
        r, g, b, a = color
        mat: dict[str, Any] = {
            "name": "#%02x%02x%02x%s" % (round(r * 255), round(g * 255), round(b * 255),
                                         "" if a >= 1 else f"@{a:g}"),
            "pbrMetallicRoughness": {
                "baseColorFactor": [round(_srgb_to_linear(r), 6), round(_srgb_to_linear(g), 6),
                                    round(_srgb_to_linear(b), 6), round(float(a), 6)],
                "metallicFactor": 0.0,
                "roughnessFactor": 0.9,
            },
        }
        if a < 1.0:
            mat["alphaMode"] = "BLEND"
        if double_sided:
            mat["doubleSided"] = True
        if unlit:
            mat["extensions"] = {"KHR_materials_unlit": {}}
            self.uses_unlit = True
        self.materials.append(mat)
        self.material_index[key] = len(self.materials) - 1
        return len(self.materials) - 1

    def node(self, node: Node) -> int:
        entry: dict[str, Any] = {"name": node.name}
        index = len(self.nodes)
        self.nodes.append(entry)
        for prim in node.primitives:
            n = prim.positions.shape[0]
            if n == 0:
                continue
            kind = prim.kind
            if kind == "triangles":
                tri = prim.triangles()
                if tri.shape[0]:
                    mat = self._material(prim.color, False, prim.double_sided)
                    self._tris.append((entry, mat, tri))
            elif kind == "lines":
                pts = prim.positions if n % 2 == 0 else prim.positions[: n - 1]
                if pts.shape[0]:
                    self._lines.append((entry, self._material(prim.color, True, False), pts))
            else:
                self._points.append((entry, self._material(prim.color, True, False),
                                     prim.positions))
        if node.translation is not None:
            # _to_yup minus the offset, in Python floats (the same IEEE arithmetic)
            x, y, z = (float(v) for v in node.translation)
            ox, oy, oz = self._offset_l
            t = (x - ox, z - oy, -y - oz)
            if all(map(math.isfinite, t)):
                entry["translation"] = [round(v, 6) for v in t]
        if node.rotation_z:
            half = node.rotation_z / 2.0
            entry["rotation"] = [0.0, round(math.sin(half), 9), 0.0, round(math.cos(half), 9)]
        extras = {k: v for k, v in node.extras.items() if not k.startswith("_")}
        extras["category"] = node.category
        if node.source:
            extras["source"] = list(node.source)
        entry["extras"] = extras if self.fast_json else _jsonable(extras)
        children = [self.node(child) for child in node.children]
        if children:
            entry["children"] = children
        return index

    def _yup32(self, p: np.ndarray) -> np.ndarray:
        """Drawing frame (float64) -> glTF frame, re-centred, float32, in one pass."""
        out = np.empty(p.shape, dtype="<f4")
        out[:, 0] = p[:, 0] - self.offset[0]
        out[:, 1] = p[:, 2] - self.offset[1]
        out[:, 2] = -p[:, 1] - self.offset[2]
        return out

    def _accessors(self, view: int, arr32: np.ndarray, starts: np.ndarray, counts: np.ndarray,
                   bounds: bool) -> list[int]:
        """One VEC3 float accessor per slice ``[start, start + count)`` of ``arr32``."""
        out = []
        if bounds and arr32.shape[0]:
            mins_l = np.minimum.reduceat(arr32, starts, axis=0).astype(np.float64).tolist()
            maxs_l = np.maximum.reduceat(arr32, starts, axis=0).astype(np.float64).tolist()
        for k, (start, count) in enumerate(zip(starts.tolist(), counts.tolist())):
            acc: dict[str, Any] = {"bufferView": view, "byteOffset": int(start) * 12,
                                   "componentType": _FLOAT, "count": int(count), "type": "VEC3"}
            if bounds:
                acc["min"] = mins_l[k]
                acc["max"] = maxs_l[k]
            self.accessors.append(acc)
            out.append(len(self.accessors) - 1)
        return out

    def finish(self) -> None:
        """Encode all collected geometry and attach meshes to their nodes."""
        prims: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        order = 0

        def attach(entry: dict[str, Any], prim: dict[str, Any], rank: int) -> None:
            prims.setdefault(id(entry), []).append((rank, prim))

        entries = {id(e): e for e in self.nodes}
        # triangles: flat normals, degenerate ones dropped; done in bounded chunks written
        # straight into the buffer, positions and normals interleaved in one view (stride
        # 24), so working memory stays bounded and the output is not copied again
        if self._tris:
            counts = np.zeros(len(self._tris), dtype=np.int64)
            mins = np.zeros((len(self._tris), 3))
            maxs = np.zeros((len(self._tris), 3))
            self.blob.extend(b"\x00" * ((-len(self.blob)) % 4))
            view_start = len(self.blob)
            for lo, hi in _chunks([t.shape[0] for _, _, t in self._tris], 1_000_000):
                group = [t for _, _, t in self._tris[lo:hi]]
                sizes = np.array([t.shape[0] // 3 for t in group], dtype=np.int64)
                tri32 = self._yup32(np.concatenate(group) if len(group) > 1 else group[0])
                t64 = tri32.astype(np.float64)
                a, b, c = t64[0::3], t64[1::3], t64[2::3]
                e1, e2 = b - a, c - a
                del t64
                nrm = np.cross(e1, e2)
                length = np.sqrt(np.einsum("ij,ij->i", nrm, nrm))
                # the largest |component| of both edges (column-wise maxima: numpy's
                # reductions along a length-3 axis cost far more than three ufunc calls)
                ae1, ae2 = np.abs(e1), np.abs(e2)
                scale = np.maximum(np.maximum(np.maximum(ae1[:, 0], ae1[:, 1]), ae1[:, 2]),
                                   np.maximum(np.maximum(ae2[:, 0], ae2[:, 1]), ae2[:, 2]))
                np.maximum(scale, 1e-30, out=scale)
                del ae1, ae2
                del e1, e2, a, b, c
                keep = (length > 1e-12 * scale * scale) & np.isfinite(length)
                owner = np.repeat(np.arange(hi - lo), sizes)
                kept = np.bincount(owner[keep], minlength=hi - lo) * 3
                inter = np.empty((int(kept.sum()), 6), dtype="<f4")
                inter[:, :3] = tri32.reshape(-1, 3, 3)[keep].reshape(-1, 3)
                inter[:, 3:] = np.repeat((nrm[keep] / length[keep][:, None]), 3, axis=0)
                counts[lo:hi] = kept
                starts = np.concatenate([[0], np.cumsum(kept)[:-1]]).astype(np.int64)
                live = kept > 0
                if live.any():
                    idx = np.arange(lo, hi)[live]
                    mins[idx] = np.minimum.reduceat(inter[:, :3], starts[live], axis=0)
                    maxs[idx] = np.maximum.reduceat(inter[:, :3], starts[live], axis=0)
                self.blob.extend(memoryview(inter).cast("B"))
                del tri32, inter, nrm
            live = counts > 0
            if live.any():
                self.buffer_views.append({"buffer": 0, "byteOffset": view_start,
                                          "byteLength": len(self.blob) - view_start,
                                          "byteStride": 24, "target": _ARRAY_BUFFER})
                view = len(self.buffer_views) - 1
                starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
                mins_l, maxs_l = mins.tolist(), maxs.tolist()
                starts_l, counts_l = starts.tolist(), counts.tolist()
                for i, (entry, mat, _) in enumerate(self._tris):
                    if live[i]:
                        self.accessors.append({
                            "bufferView": view, "byteOffset": starts_l[i] * 24,
                            "componentType": _FLOAT, "count": counts_l[i], "type": "VEC3",
                            "min": mins_l[i], "max": maxs_l[i]})
                        self.accessors.append({
                            "bufferView": view, "byteOffset": starts_l[i] * 24 + 12,
                            "componentType": _FLOAT, "count": counts_l[i], "type": "VEC3"})
                        n_acc = len(self.accessors)
                        attach(entry, {"attributes": {"POSITION": n_acc - 2, "NORMAL": n_acc - 1},
                                       "mode": 4, "material": mat}, order)
                    order += 1
            else:
                del self.blob[view_start:]
                order += len(self._tris)
            self._tris = []
        for items, mode in ((self._lines, 1), (self._points, 0)):
            if not items:
                continue
            pts = self._yup32(np.concatenate([p for _, _, p in items]))
            sizes = np.array([p.shape[0] for _, _, p in items], dtype=np.int64)
            finite = np.isfinite(pts[:, 0]) & np.isfinite(pts[:, 1]) & np.isfinite(pts[:, 2])
            if mode == 1:
                pair = finite[0::2] & finite[1::2]
                finite = np.repeat(pair, 2)
            owner = np.repeat(np.arange(len(items)), sizes)
            counts = np.bincount(owner[finite], minlength=len(items))
            pts32 = np.ascontiguousarray(pts[finite], dtype="<f4")
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
            live = counts > 0
            if not live.any():
                order += len(items)
                continue
            view = self._view(memoryview(pts32).cast("B"))
            acc = self._accessors(view, pts32, starts[live], counts[live], True) if live.any() else []
            k = 0
            for i, (entry, mat, _) in enumerate(items):
                if live[i]:
                    attach(entry, {"attributes": {"POSITION": acc[k]}, "mode": mode,
                                   "material": mat}, order)
                    k += 1
                order += 1
        # meshes in node order, primitives in their original order
        for entry in self.nodes:
            plist = prims.get(id(entry))
            if not plist:
                continue
            plist.sort(key=lambda rp: rp[0])
            self.meshes.append({"name": entry["name"], "primitives": [p for _, p in plist]})
            entry["mesh"] = len(self.meshes) - 1
        del entries


def _orjson() -> Any:
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a pinned dependency
        return None
    return orjson


def _dumps(doc: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; orjson when present (several times faster on 60k nodes)."""
    orjson = _orjson()
    if orjson is None:  # pragma: no cover
        return json.dumps(_jsonable(doc), separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode()
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def _chunks(sizes: list[int], budget: int) -> list[tuple[int, int]]:
    """Split consecutive items into runs of at most ``budget`` rows (at least one item)."""
    out = []
    lo, acc = 0, 0
    for i, n in enumerate(sizes):
        if acc and acc + n > budget:
            out.append((lo, i))
            lo, acc = i, 0
        acc += n
    if lo < len(sizes):
        out.append((lo, len(sizes)))
    return out


def scene_to_gltf_dict(scene: Scene, *, provenance: dict[str, Any] | None = None,
                       recenter: bool = True, name: str = "drawing",
                       bounds: Any = _UNSET) -> tuple[dict[str, Any], bytearray]:
    """Build the glTF JSON document and its binary buffer.

    Args:
        scene: the scene (metres, drawing frame).
        provenance: source sha256, converter version, options... (asset extras).
        recenter: move the centre of the plan to the origin.
        name: name of the root node.
        bounds: ``scene.bounds()`` when the caller already has it.

    Returns:
        ``(gltf_json_dict, binary_blob)``.
    """
    offset = np.zeros(3)
    if bounds is _UNSET:
        bounds = scene.bounds()
    if recenter and bounds is not None:
        lo, hi = bounds
        centre = _to_yup(((lo + hi) / 2.0)[None, :])[0]
        centre[1] = _to_yup(lo[None, :])[0][1]  # keep the floor level: shift plan only
        offset = np.where(np.isfinite(centre), np.round(centre, 3), 0.0)
    writer = _Writer(offset)
    root = {"name": name, "extras": {}, "children": []}
    writer.nodes.append(root)
    for node in scene.nodes:
        root["children"].append(writer.node(node))
    writer.finish()
    if not root["children"]:
        del root["children"]
    meta = dict(scene.metadata)
    meta["origin_offset_m"] = [float(v) for v in offset]  # glTF frame (Y-up)
    meta["warnings"] = list(scene.warnings)
    meta["stats"] = scene.stats
    root["extras"] = _jsonable({"category": "drawing", **meta})
    asset: dict[str, Any] = {"version": "2.0"}
    prov = dict(provenance or {})
    asset["generator"] = f"cad2gltf {prov.get('converter_version', '')}".strip()
    asset["extras"] = _jsonable(prov)
    doc: dict[str, Any] = {
        "asset": asset,
        "scene": 0,
        "scenes": [{"name": name, "nodes": [0], "extras": _jsonable({"units": "m", "up": "Y"})}],
        "nodes": writer.nodes,
    }
    if writer.meshes:
        doc["meshes"] = writer.meshes
    if writer.materials:
        doc["materials"] = writer.materials
    if writer.accessors:
        doc["accessors"] = writer.accessors
        doc["bufferViews"] = writer.buffer_views
        doc["buffers"] = [{"byteLength": len(writer.blob) + (-len(writer.blob)) % 4}]
    if writer.uses_unlit:
        doc["extensionsUsed"] = ["KHR_materials_unlit"]
    return doc, writer.blob  # a bytearray: no extra copy of a large buffer


def gltf_dumpb(scene: Scene, *, provenance: dict[str, Any] | None = None,
               recenter: bool = True, name: str = "drawing", bounds: Any = _UNSET) -> bytes:
    """Serialise a scene to GLB bytes (deterministic).

    Returns:
        The GLB file content.
    """
    doc, blob = scene_to_gltf_dict(scene, provenance=provenance, recenter=recenter, name=name,
                                   bounds=bounds)
    js = _dumps(doc)
    js += b" " * ((-len(js)) % 4)
    pad = b"\x00" * ((-len(blob)) % 4)
    parts = [struct.pack("<II", len(js), 0x4E4F534A), js]
    if blob:
        parts += [struct.pack("<II", len(blob) + len(pad), 0x004E4942), blob, pad]
    total = 12 + sum(len(x) for x in parts)
    return b"".join([struct.pack("<4sII", b"glTF", 2, total), *parts])
