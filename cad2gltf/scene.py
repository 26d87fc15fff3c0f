"""The typed intermediate model between readers (DXF, PDF) and the glTF writer.

Conventions:
    * lengths in **metres**;
    * the frame is the drawing's own: X right, Y up the sheet (north), Z up out of the
      sheet. The glTF writer turns that into glTF's Y-up frame; readers never do;
    * colours are sRGB ``(r, g, b, a)`` floats in 0..1.

Readers build a scene through :class:`SceneBuilder`, which batches geometry per
(node, primitive kind, colour) so that a drawing of 100k entities becomes a few dozen
primitives instead of 100k tiny ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["Color", "Node", "Primitive", "PrimitiveKind", "Scene", "SceneBuilder"]

PrimitiveKind = Literal["lines", "triangles", "points"]
Color = tuple[float, float, float, float]

_KIND_ORDER = {"triangles": 0, "lines": 1, "points": 2}


@dataclass
class Primitive:
    """One batch of geometry of a single kind and colour.

    Attributes:
        kind: ``lines`` (pairs of vertices), ``triangles`` or ``points``.
        color: sRGB + alpha.
        positions: ``(N, 3)`` float64 vertex positions in metres.
        indices: ``(M,)`` uint32 indices into ``positions`` or None for non-indexed.
        double_sided: triangles should be visible from both sides (flat CAD faces).
    """

    kind: PrimitiveKind
    color: Color
    positions: np.ndarray
    indices: np.ndarray | None = None
    double_sided: bool = True

    @property
    def vertex_count(self) -> int:
        return int(self.positions.shape[0])

    def triangles(self) -> np.ndarray:
        """Triangle soup ``(3k, 3)``: indexed triangles resolved, a ragged tail dropped."""
        tri = self.positions[self.indices] if self.indices is not None else self.positions
        return tri[: tri.shape[0] - tri.shape[0] % 3]


@dataclass
class Node:
    """A named group: a layer, a recognised element (wall, door...), a page, a text.

    ``extras`` holds JSON-serialisable metadata copied into the glTF node (``category``
    and ``source`` are always set by the writer from the attributes here).
    """

    name: str
    category: str = "layer"
    primitives: list[Primitive] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)
    translation: tuple[float, float, float] | None = None
    rotation_z: float = 0.0
    source: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    def iter_nodes(self):
        """This node and its descendants, depth first (pre-order)."""
        yield self
        if self.children:
            yield from _walk(self.children)


@dataclass
class Scene:
    """A converted drawing.

    Attributes:
        nodes: top-level nodes (one per layer or page, elements as their children).
        metadata: provenance and facts (units, source sha256, counts); copied to glTF.
        warnings: repairable problems met on the way, one sentence each.
        stats: counters (entities seen, converted, skipped by type ...).
    """

    nodes: list[Node] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def iter_nodes(self):
        """All nodes, depth first (pre-order); iterative: scenes have ~100k nodes."""
        return _walk(self.nodes)

    def iter_primitives(self):
        for node in self.iter_nodes():
            yield from node.primitives

    def bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Axis-aligned bounds ``(min, max)`` of all geometry and placements, or None.

        Small primitives are reduced together in bounded batches (one ``min``/``max`` per
        batch instead of two numpy calls per primitive: a plan has ~100k of them).
        """
        mins: list[np.ndarray] = []
        maxs: list[np.ndarray] = []
        small: list[np.ndarray] = []
        rows = 0

        def flush() -> None:
            nonlocal rows
            if small:
                arr = np.concatenate(small) if len(small) > 1 else small[0]
                mins.append(_column_min(arr))
                maxs.append(_column_max(arr))
                small.clear()
                rows = 0

        places: list[tuple[float, float, float]] = []
        for node in self.iter_nodes():
            for prim in node.primitives:
                pos = prim.positions
                n = pos.shape[0]
                if not n:
                    continue
                if n >= 65536:
                    mins.append(_column_min(pos))
                    maxs.append(_column_max(pos))
                    continue
                small.append(pos)
                rows += n
                if rows >= 1 << 20:
                    flush()
            if node.translation is not None:
                places.append(node.translation)
        flush()
        if places:
            arr = np.asarray(places, dtype=np.float64).reshape(-1, 3)
            mins.append(arr.min(axis=0))
            maxs.append(arr.max(axis=0))
        if not mins:
            return None
        return np.min(mins, axis=0), np.max(maxs, axis=0)

    @property
    def vertex_count(self) -> int:
        return sum(p.positions.shape[0] for p in self.iter_primitives())

    @property
    def has_geometry(self) -> bool:
        return any(p.positions.shape[0] for p in self.iter_primitives())


def _column_min(arr: np.ndarray) -> np.ndarray:
    """``arr.min(axis=0)`` of an ``(n, k)`` array, one column at a time: numpy reduces
    along axis 0 of a C-ordered ``(n, 3)`` array row by row (measured: 64 ms for a
    million rows against 5 ms for the three columns). Same values (NaN propagates alike)."""
    return np.array([arr[:, k].min() for k in range(arr.shape[1])], dtype=arr.dtype)


def _column_max(arr: np.ndarray) -> np.ndarray:
    """``arr.max(axis=0)``, one column at a time (see :func:`_column_min`)."""
    return np.array([arr[:, k].max() for k in range(arr.shape[1])], dtype=arr.dtype)


def _walk(nodes: list[Node]):
    stack = nodes[::-1]
    pop, extend = stack.pop, stack.extend
    while stack:
        node = pop()
        yield node
        if node.children:
            extend(node.children[::-1])


class _Batch:
    __slots__ = ("chunks", "index_chunks", "count", "double_sided", "soup")

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        # per chunk: its indices (offset by the rows before it), or None for "all rows"
        self.index_chunks: list[np.ndarray | None] = []
        self.count = 0
        self.double_sided = True
        self.soup = True  # no chunk came with explicit indices and none asked for them


class SceneBuilder:
    """Accumulates geometry per (node, kind, colour) and builds the :class:`Scene`.

    Geometry is appended as numpy arrays (already in metres). ``add_polyline`` turns a
    vertex chain into line segments; ``add_triangles`` takes triangle soup or indexed
    triangles.
    """

    def __init__(self) -> None:
        self._nodes: dict[str, Node] = {}
        self._order: list[str] = []
        self._batches: dict[tuple[str, str, Color], _Batch] = {}

    def node(self, key: str, *, name: str | None = None, category: str = "layer",
             parent: str | None = None, **extras: Any) -> Node:
        """Get or create a node; children are attached to ``parent`` when built."""
        node = self._nodes.get(key)
        if node is None:
            node = Node(name=name or key, category=category, extras=dict(extras))
            node.extras.setdefault("_parent", parent)
            self._nodes[key] = node
            self._order.append(key)
        return node

    def has_node(self, key: str) -> bool:
        return key in self._nodes

    def _batch(self, key: str, kind: str, color: Color) -> _Batch:
        bkey = (key, kind, color)
        batch = self._batches.get(bkey)
        if batch is None:
            batch = self._batches[bkey] = _Batch()
        return batch

    def add_segments(self, key: str, color: Color, points: np.ndarray) -> None:
        """Add line segments as an ``(2k, 3)`` array of endpoint pairs."""
        if points.shape[0] < 2:
            return
        self._batch(key, "lines", color).chunks.append(points)

    def add_polyline(self, key: str, color: Color, points: np.ndarray, closed: bool = False) -> None:
        """Add a chain of vertices ``(n, 3)`` as consecutive line segments."""
        n = points.shape[0]
        if n < 2:
            if n == 1:
                self.add_points(key, color, points)
            return
        if closed and not np.array_equal(points[0], points[-1]):
            points = np.concatenate([points, points[:1]])
            n += 1
        seg = np.empty((2 * (n - 1), 3), dtype=np.float64)
        seg[0::2] = points[:-1]
        seg[1::2] = points[1:]
        self._batch(key, "lines", color).chunks.append(seg)

    def add_points(self, key: str, color: Color, points: np.ndarray) -> None:
        if points.shape[0]:
            self._batch(key, "points", color).chunks.append(points)

    def add_triangles(self, key: str, color: Color, positions: np.ndarray,
                      indices: np.ndarray | None = None, *, double_sided: bool = True,
                      indexed: bool = True) -> None:
        """Add triangles: ``positions (n, 3)`` plus optional ``indices (3k,)``.

        ``indexed=False`` (with ``indices=None``) asks for a non-indexed primitive (triangle
        soup, ``Primitive.indices`` None) when nothing else in the batch is indexed: no
        index array is made and a single chunk is kept as given (no copy), which is what
        tens of thousands of small wall meshes want.
        """
        if positions.shape[0] < 3:
            return
        batch = self._batch(key, "triangles", color)
        if indices is None:
            batch.index_chunks.append(None)
            if indexed:
                batch.soup = False
        else:
            if indices.size == 0:
                return
            batch.index_chunks.append(np.asarray(indices, dtype=np.int64) + batch.count)
            batch.soup = False
        batch.chunks.append(positions)
        batch.count += positions.shape[0]
        batch.double_sided = batch.double_sided and double_sided

    def build(self, metadata: dict[str, Any] | None = None, warnings: list[str] | None = None,
              stats: dict[str, Any] | None = None) -> Scene:
        """Assemble the scene. Node order is creation order; primitives are sorted."""
        for (key, kind, color), batch in self._batches.items():
            chunks = batch.chunks
            if not chunks:
                continue
            if len(chunks) == 1:
                positions = np.ascontiguousarray(chunks[0], dtype=np.float64)
                if positions is chunks[0] and kind != "triangles":
                    positions = positions.copy()  # the builder's arrays are its own
            else:
                positions = np.ascontiguousarray(np.concatenate(chunks), dtype=np.float64)
            indices = None
            if kind == "triangles" and not batch.soup:
                parts = []
                start = 0
                for pts, idx in zip(chunks, batch.index_chunks):
                    n = pts.shape[0]
                    parts.append(np.arange(start, start + n - n % 3, dtype=np.int64)
                                 if idx is None else idx)
                    start += n
                indices = np.concatenate(parts).astype(np.uint32)
            self._nodes[key].primitives.append(
                Primitive(kind=kind, color=color, positions=positions, indices=indices,
                          double_sided=batch.double_sided))  # type: ignore[arg-type]
        self._batches.clear()
        roots: list[Node] = []
        for key in self._order:
            node = self._nodes[key]
            node.primitives.sort(key=lambda p: (_KIND_ORDER[p.kind], p.color))
            parent = node.extras.pop("_parent", None)
            if parent is not None and parent in self._nodes:
                self._nodes[parent].children.append(node)
            else:
                roots.append(node)
        return Scene(nodes=roots, metadata=dict(metadata or {}), warnings=list(warnings or []),
                     stats=dict(stats or {}))
