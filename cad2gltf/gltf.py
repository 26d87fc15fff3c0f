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

from cad2gltf.scene import Color, Node, Primitive, Scene

__all__ = ["gltf_dumpb", "scene_to_gltf_dict"]

_ARRAY_BUFFER = 34962
_FLOAT = 5126
_MODE = {"points": 0, "lines": 1, "triangles": 4}


def _srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _to_yup(p: np.ndarray) -> np.ndarray:
    out = np.empty_like(p, dtype=np.float64)
    out[:, 0] = p[:, 0]
    out[:, 1] = p[:, 2]
    out[:, 2] = -p[:, 1]
    return out


def _jsonable(value: Any) -> Any:
    """Make extras JSON-safe and deterministic (floats finite, tuples as lists)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return round(v, 9) if math.isfinite(v) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
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
        self.blob = bytearray()
        self.buffer_views: list[dict[str, Any]] = []
        self.accessors: list[dict[str, Any]] = []
        self.materials: list[dict[str, Any]] = []
        self.material_index: dict[tuple[Color, bool, bool], int] = {}
        self.meshes: list[dict[str, Any]] = []
        self.nodes: list[dict[str, Any]] = []
        self.uses_unlit = False
        # pending primitives: (node entry, kind, material, array)
        self._tris: list[tuple[dict[str, Any], int, np.ndarray]] = []
        self._lines: list[tuple[dict[str, Any], int, np.ndarray]] = []
        self._points: list[tuple[dict[str, Any], int, np.ndarray]] = []

    def _view(self, data: bytes) -> int:
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
            if prim.vertex_count == 0:
                continue
            if prim.kind == "triangles":
                tri = prim.positions[prim.indices] if prim.indices is not None else prim.positions
                tri = tri[: tri.shape[0] - tri.shape[0] % 3]
                if tri.shape[0]:
                    mat = self._material(prim.color, False, prim.double_sided)
                    self._tris.append((entry, mat, tri))
            elif prim.kind == "lines":
                pts = prim.positions[: prim.positions.shape[0] - prim.positions.shape[0] % 2]
                if pts.shape[0]:
                    self._lines.append((entry, self._material(prim.color, True, False), pts))
            else:
                self._points.append((entry, self._material(prim.color, True, False),
                                     prim.positions))
        if node.translation is not None:
            t = _to_yup(np.asarray([node.translation], dtype=np.float64))[0] - self.offset
            if np.all(np.isfinite(t)):
                entry["translation"] = [round(float(v), 6) for v in t]
        if node.rotation_z:
            half = node.rotation_z / 2.0
            entry["rotation"] = [0.0, round(math.sin(half), 9), 0.0, round(math.cos(half), 9)]
        extras = {k: v for k, v in node.extras.items() if not k.startswith("_")}
        extras["category"] = node.category
        if node.source:
            extras["source"] = list(node.source)
        entry["extras"] = _jsonable(extras)
        children = [self.node(child) for child in node.children]
        if children:
            entry["children"] = children
        return index

    def _accessors(self, view: int, arr32: np.ndarray, starts: np.ndarray, counts: np.ndarray,
                   bounds: bool) -> list[int]:
        """One VEC3 float accessor per slice ``[start, start + count)`` of ``arr32``."""
        out = []
        if bounds and arr32.shape[0]:
            mins = np.minimum.reduceat(arr32, starts, axis=0)
            maxs = np.maximum.reduceat(arr32, starts, axis=0)
        for k, (start, count) in enumerate(zip(starts.tolist(), counts.tolist())):
            acc: dict[str, Any] = {"bufferView": view, "byteOffset": int(start) * 12,
                                   "componentType": _FLOAT, "count": int(count), "type": "VEC3"}
            if bounds:
                acc["min"] = [float(v) for v in mins[k]]
                acc["max"] = [float(v) for v in maxs[k]]
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
        # triangles: flat normals, degenerate ones dropped, all in one go
        if self._tris:
            sizes = np.array([t.shape[0] // 3 for _, _, t in self._tris], dtype=np.int64)
            tri = _to_yup(np.vstack([t for _, _, t in self._tris])) - self.offset
            tri32 = tri.astype(np.float32)
            t64 = tri32.astype(np.float64)
            a, b, c = t64[0::3], t64[1::3], t64[2::3]
            e1, e2 = b - a, c - a
            nrm = np.cross(e1, e2)
            length = np.linalg.norm(nrm, axis=1)
            scale = np.maximum(np.maximum(np.abs(e1).max(axis=1), np.abs(e2).max(axis=1)), 1e-30)
            keep = (length > 1e-12 * scale * scale) & np.isfinite(length)
            owner = np.repeat(np.arange(len(self._tris)), sizes)
            kept_per = np.bincount(owner[keep], minlength=len(self._tris))
            pos = tri32.reshape(-1, 3, 3)[keep].reshape(-1, 3)
            nrm32 = np.repeat((nrm[keep] / length[keep][:, None]).astype(np.float32), 3, axis=0)
            counts = kept_per * 3
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
            live = counts > 0
            if not live.any():
                self._tris = []
            pv = -1 if not live.any() else self._view(np.ascontiguousarray(pos, dtype="<f4").tobytes())
            nv = -1 if not live.any() else self._view(np.ascontiguousarray(nrm32, dtype="<f4").tobytes())
            pa = self._accessors(pv, pos, starts[live], counts[live], True) if live.any() else []
            na = self._accessors(nv, nrm32, starts[live], counts[live], False) if live.any() else []
            k = 0
            for i, (entry, mat, _) in enumerate(self._tris):
                if live[i]:
                    attach(entry, {"attributes": {"POSITION": pa[k], "NORMAL": na[k]},
                                   "mode": 4, "material": mat}, order)
                    k += 1
                order += 1
        for items, mode in ((self._lines, 1), (self._points, 0)):
            if not items:
                continue
            pts = _to_yup(np.vstack([p for _, _, p in items])) - self.offset
            sizes = np.array([p.shape[0] for _, _, p in items], dtype=np.int64)
            finite = np.all(np.isfinite(pts), axis=1)
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
            view = self._view(pts32.tobytes())
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


def scene_to_gltf_dict(scene: Scene, *, provenance: dict[str, Any] | None = None,
                       recenter: bool = True, name: str = "drawing") -> tuple[dict[str, Any], bytes]:
    """Build the glTF JSON document and its binary buffer.

    Args:
        scene: the scene (metres, drawing frame).
        provenance: source sha256, converter version, options... (asset extras).
        recenter: move the centre of the plan to the origin.
        name: name of the root node.

    Returns:
        ``(gltf_json_dict, binary_blob)``.
    """
    offset = np.zeros(3)
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
    return doc, bytes(writer.blob)


def gltf_dumpb(scene: Scene, *, provenance: dict[str, Any] | None = None,
               recenter: bool = True, name: str = "drawing") -> bytes:
    """Serialise a scene to GLB bytes (deterministic).

    Returns:
        The GLB file content.
    """
    doc, blob = scene_to_gltf_dict(scene, provenance=provenance, recenter=recenter, name=name)
    js = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    js += b" " * ((-len(js)) % 4)
    blob += b"\x00" * ((-len(blob)) % 4)
    chunks = struct.pack("<II", len(js), 0x4E4F534A) + js
    if blob:
        chunks += struct.pack("<II", len(blob), 0x004E4942) + blob
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks
