"""Reading back what the writer produced: GLB -> JSON + numpy arrays (via pygltflib)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pygltflib


def load(glb: bytes) -> tuple[dict[str, Any], bytes, pygltflib.GLTF2]:
    """Parse GLB bytes with pygltflib; return (json dict, binary blob, GLTF2)."""
    gltf = pygltflib.GLTF2.load_from_bytes(glb)
    blob = gltf.binary_blob() or b""
    import json

    doc = json.loads(gltf.to_json())
    return doc, blob, gltf


def accessor(doc: dict[str, Any], blob: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    n = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[acc["type"]]
    dtype = {5126: "<f4", 5125: "<u4", 5123: "<u2"}[acc["componentType"]]
    item = np.dtype(dtype).itemsize * n
    stride = view.get("byteStride", item)
    if stride == item:
        arr = np.frombuffer(blob, dtype=dtype, count=acc["count"] * n, offset=start)
    else:  # interleaved: take every stride-th record
        raw = np.frombuffer(blob, dtype=np.uint8, count=stride * (acc["count"] - 1) + item,
                            offset=start)
        rows = np.lib.stride_tricks.as_strided(raw, shape=(acc["count"], item),
                                               strides=(stride, 1))
        arr = np.ascontiguousarray(rows).view(dtype).reshape(-1)
    return arr.reshape(acc["count"], n) if n > 1 else arr


def nodes_by_category(doc: dict[str, Any], category: str) -> list[dict[str, Any]]:
    return [n for n in doc["nodes"] if n.get("extras", {}).get("category") == category]


def node_positions(doc: dict[str, Any], blob: bytes, node: dict[str, Any],
                   mode: int | None = None) -> np.ndarray:
    """All POSITION vertices of a node's mesh (glTF frame: Y-up, metres)."""
    if "mesh" not in node:
        return np.zeros((0, 3))
    parts = []
    for prim in doc["meshes"][node["mesh"]]["primitives"]:
        if mode is not None and prim.get("mode", 4) != mode:
            continue
        parts.append(accessor(doc, blob, prim["attributes"]["POSITION"]))
    return np.vstack(parts) if parts else np.zeros((0, 3))


def to_plan(p: np.ndarray, offset: list[float] | None = None) -> np.ndarray:
    """glTF (x, y, z) Y-up (+ recentring offset) back to the drawing frame (x, y, z)."""
    q = p.astype(np.float64) + (np.asarray(offset) if offset is not None else 0.0)
    return np.column_stack([q[:, 0], -q[:, 2], q[:, 1]])
