"""Oriented boxes: the fast path for straight walls, lintels and sills.

A straight wall is a strip ``t0..t1`` along a unit axis ``u`` and ``s0..s1`` across it
(``n`` is ``u`` turned 90 degrees counter-clockwise), from ``z0`` to ``z1``. Openings cut
box-shaped holes ``(ta, tb, za, zb)``; what remains is a set of boxes, built here in
bulk with numpy rather than through polygon booleans.
"""

from __future__ import annotations

import numpy as np

__all__ = ["boxes_to_triangles", "strip_boxes", "subtract_intervals"]

# corner index = 4*i + 2*j + k for (t_i, s_j, z_k); outward-wound triangles
_FACES = np.array([
    [0, 2, 6], [0, 6, 4],          # bottom  (-z)
    [1, 5, 7], [1, 7, 3],          # top     (+z)
    [0, 4, 5], [0, 5, 1],          # s0 side (-n)
    [2, 3, 7], [2, 7, 6],          # s1 side (+n)
    [0, 1, 3], [0, 3, 2],          # t0 end  (-u)
    [4, 6, 7], [4, 7, 5],          # t1 end  (+u)
], dtype=np.int64).reshape(-1)


def boxes_to_triangles(u: np.ndarray, t0: np.ndarray, t1: np.ndarray, s0: np.ndarray,
                       s1: np.ndarray, z0: np.ndarray, z1: np.ndarray) -> np.ndarray:
    """Triangle soup of N oriented boxes.

    Args:
        u: ``(N, 2)`` unit axes; the other arrays are ``(N,)``.

    Returns:
        ``(N * 36, 3)`` vertices, 12 outward-facing triangles per box.
    """
    u = np.asarray(u, dtype=np.float64).reshape(-1, 2)
    n = np.column_stack([-u[:, 1], u[:, 0]])
    N = u.shape[0]
    corners = np.empty((N, 8, 3), dtype=np.float64)
    ts = np.stack([t0, t1], axis=1)
    ss = np.stack([s0, s1], axis=1)
    zs = np.stack([z0, z1], axis=1)
    for i in range(2):
        for j in range(2):
            xy = u * ts[:, i:i + 1] + n * ss[:, j:j + 1]
            for k in range(2):
                c = corners[:, 4 * i + 2 * j + k]
                c[:, :2] = xy
                c[:, 2] = zs[:, k]
    return corners[:, _FACES].reshape(-1, 3)


def subtract_intervals(lo: float, hi: float,
                       holes: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """``[lo, hi]`` minus the union of ``holes``, as sorted disjoint intervals."""
    out = []
    cursor = lo
    for a, b in sorted(holes):
        if b <= cursor:
            continue
        if a > cursor:
            out.append((cursor, min(a, hi)))
        cursor = max(cursor, b)
        if cursor >= hi:
            break
    if cursor < hi:
        out.append((cursor, hi))
    return [(a, b) for a, b in out if b - a > 1e-12]


def strip_boxes(t0: float, t1: float, z0: float, z1: float,
                cuts: list[tuple[float, float, float, float]]) -> list[tuple[float, float, float, float]]:
    """Decompose a strip wall with box cut-outs into solid boxes ``(ta, tb, za, zb)``.

    The wall is split along ``t`` at every cut-out edge; in each piece the material is
    ``z0..z1`` minus the z-ranges of the cut-outs covering that piece.
    """
    if not cuts:
        return [(t0, t1, z0, z1)]
    edges = {t0, t1}
    for a, b, _, _ in cuts:
        if t0 < a < t1:
            edges.add(a)
        if t0 < b < t1:
            edges.add(b)
    ts = sorted(edges)
    out = []
    for a, b in zip(ts[:-1], ts[1:]):
        mid = 0.5 * (a + b)
        holes = [(za, zb) for ca, cb, za, zb in cuts if ca <= mid <= cb]
        for za, zb in subtract_intervals(z0, z1, holes):
            out.append((a, b, za, zb))
    return out
