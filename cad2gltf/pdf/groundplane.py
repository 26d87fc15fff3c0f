"""The page itself as a textured ground plane under the model (``ground_plane`` option).

The scene model has no textures, so the planes are added to the finished GLB: each page
render is embedded as a PNG image (a buffer view of the binary chunk), with a sampler,
a texture, an unlit material and a quad just below the floor (``z = -5 mm``, so that the
plan's own linework at ``z = 0`` stays visible), as a child node of its ``page-N`` node
(``extras.category = "ground_plane"``). Deterministic: same renders, same bytes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["GROUND_DPI", "GroundPlane", "add_ground_planes", "encode_texture"]

#: resolution of the page renders used as textures (an A3 page: 1240 x 877 pixels)
GROUND_DPI = 75.0
_Z = -0.005


@dataclass(frozen=True)
class GroundPlane:
    """One page's plane.

    Attributes:
        page: 1-based page number (the plane goes under node ``page-<page>``).
        png: the texture.
        rect_m: ``(x0, y0, x1, y1)`` of the page in scene metres (drawing frame).
    """

    page: int
    png: bytes
    rect_m: tuple[float, float, float, float]


def encode_texture(gray: np.ndarray, max_side: int = 2048) -> bytes:
    """A grey page render as PNG, at most ``max_side`` pixels (a GPU-friendly size)."""
    import cv2

    h, w = gray.shape[:2]
    f = min(1.0, max_side / float(max(h, w)))
    if f < 1.0:
        gray = cv2.resize(gray, (max(1, int(w * f)), max(1, int(h * f))),
                          interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", gray, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:  # pragma: no cover - a uint8 image always encodes
        raise ValueError("cannot encode the page texture")
    return buf.tobytes()


def _split(glb: bytes) -> tuple[dict[str, Any], bytearray]:
    magic, _version, _length = struct.unpack_from("<4sII", glb, 0)
    if magic != b"glTF":
        raise ValueError("not a GLB")
    jlen, _ = struct.unpack_from("<II", glb, 12)
    doc = json.loads(glb[20:20 + jlen])
    blob = bytearray()
    off = 20 + jlen
    if off + 8 <= len(glb):
        blen, _ = struct.unpack_from("<II", glb, off)
        blob = bytearray(glb[off + 8:off + 8 + blen])
    return doc, blob


def _join(doc: dict[str, Any], blob: bytearray) -> bytes:
    js = json.dumps(doc, sort_keys=False, separators=(",", ":"), ensure_ascii=False).encode()
    js += b" " * ((-len(js)) % 4)
    blob += b"\x00" * ((-len(blob)) % 4)
    parts = [struct.pack("<II", len(js), 0x4E4F534A), js]
    if blob:
        parts += [struct.pack("<II", len(blob), 0x004E4942), bytes(blob)]
    total = 12 + sum(len(p) for p in parts)
    return b"".join([struct.pack("<4sII", b"glTF", 2, total), *parts])


def add_ground_planes(glb: bytes, planes: list[GroundPlane]) -> bytes:
    """Add textured page planes to a GLB written by :func:`cad2gltf.gltf.gltf_dumpb`.

    Args:
        glb: the GLB (its root node's ``extras.origin_offset_m`` is honoured).
        planes: one entry per page.

    Returns:
        The new GLB bytes (unchanged input when ``planes`` is empty).

    Raises:
        ValueError: when ``glb`` is not a GLB.
    """
    if not planes:
        return glb
    doc, blob = _split(glb)
    nodes = doc["nodes"]
    off = np.asarray(nodes[0].get("extras", {}).get("origin_offset_m", [0.0, 0.0, 0.0]),
                     dtype=np.float64)
    by_name = {n.get("name"): i for i, n in enumerate(nodes)}
    views = doc.setdefault("bufferViews", [])
    accessors = doc.setdefault("accessors", [])
    meshes = doc.setdefault("meshes", [])
    materials = doc.setdefault("materials", [])
    images = doc.setdefault("images", [])
    textures = doc.setdefault("textures", [])
    samplers = doc.setdefault("samplers", [])
    samplers.append({"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071})
    sampler = len(samplers) - 1
    used = doc.setdefault("extensionsUsed", [])
    if "KHR_materials_unlit" not in used:
        used.append("KHR_materials_unlit")

    def view(data: bytes, target: int | None = None) -> int:
        blob.extend(b"\x00" * ((-len(blob)) % 4))
        entry: dict[str, Any] = {"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)}
        if target is not None:
            entry["target"] = target
        views.append(entry)
        blob.extend(data)
        return len(views) - 1

    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], dtype=np.float32)
    idx = np.array([0, 1, 2, 0, 2, 3], dtype=np.uint16)
    for plane in planes:
        parent = by_name.get(f"page-{plane.page}")
        if parent is None:
            continue
        x0, y0, x1, y1 = plane.rect_m
        # drawing frame (x, y, z) -> glTF (x, z, -y), minus the re-centring offset
        pos = np.array([[x0, _Z, -y0], [x1, _Z, -y0], [x1, _Z, -y1], [x0, _Z, -y1]],
                       dtype=np.float64) - off
        pos32 = pos.astype(np.float32)
        images.append({"bufferView": view(plane.png), "mimeType": "image/png",
                       "name": f"page-{plane.page}"})
        textures.append({"sampler": sampler, "source": len(images) - 1})
        materials.append({"name": f"page-{plane.page} ground",
                          "pbrMetallicRoughness": {
                              "baseColorTexture": {"index": len(textures) - 1},
                              "metallicFactor": 0.0, "roughnessFactor": 1.0},
                          "doubleSided": True, "extensions": {"KHR_materials_unlit": {}}})
        a_pos = len(accessors)
        accessors.append({"bufferView": view(pos32.tobytes(), 34962), "componentType": 5126,
                          "count": 4, "type": "VEC3",
                          "min": [float(v) for v in pos32.min(axis=0)],
                          "max": [float(v) for v in pos32.max(axis=0)]})
        accessors.append({"bufferView": view(uv.tobytes(), 34962), "componentType": 5126,
                          "count": 4, "type": "VEC2"})
        accessors.append({"bufferView": view(idx.tobytes(), 34963), "componentType": 5123,
                          "count": 6, "type": "SCALAR"})
        meshes.append({"name": f"page-{plane.page} ground",
                       "primitives": [{"attributes": {"POSITION": a_pos,
                                                      "TEXCOORD_0": a_pos + 1},
                                       "indices": a_pos + 2, "material": len(materials) - 1,
                                       "mode": 4}]})
        nodes.append({"name": f"page-{plane.page} ground", "mesh": len(meshes) - 1,
                      "extras": {"category": "ground_plane",
                                 "source": {"page": plane.page},
                                 "rect_m": [round(float(v), 6) for v in plane.rect_m]}})
        nodes[parent].setdefault("children", []).append(len(nodes) - 1)
    blob.extend(b"\x00" * ((-len(blob)) % 4))
    doc["buffers"] = [{"byteLength": len(blob)}]
    return _join(doc, blob)
