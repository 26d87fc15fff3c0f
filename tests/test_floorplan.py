"""Floor-plan semantics against generated plans with known walls, doors and windows.

Checks, in the GLB as a viewer sees it: walls extruded to the requested height, an
opening (no wall material) where each door/window is, material above doors and above
and below windows, the categories and the DXF handles in ``extras``.
"""

from __future__ import annotations

import numpy as np
import pytest

from cad2gltf import ConvertOptions, convert_path
from cad2gltf.synth.floorplan import generate_floorplan, write_floorplan
from tests import glb as G

HEIGHT = 3.1


def _solid_triangles(doc, blob, categories):
    parts = []
    for node in doc["nodes"]:
        if node.get("extras", {}).get("category") in categories and "mesh" in node:
            for prim in doc["meshes"][node["mesh"]]["primitives"]:
                if prim.get("mode", 4) == 4:
                    mat = doc["materials"][prim["material"]]
                    if mat["pbrMetallicRoughness"]["baseColorFactor"][3] < 1:
                        continue  # glass panes are not wall material
                    parts.append(G.accessor(doc, blob, prim["attributes"]["POSITION"]))
    tri = np.vstack(parts).reshape(-1, 3, 3).astype(np.float64)
    off = np.asarray(doc["nodes"][0]["extras"]["origin_offset_m"])
    return G.to_plan(tri.reshape(-1, 3), off).reshape(-1, 3, 3)


def _material_at(tris, x, y, z, eps=1e-3):
    """Is the point (x, y, z) inside the union of the closed solids? Ray casting along +x."""
    # count crossings of a ray from (x, y, z) towards +x with the triangles
    a, b, c = tris[:, 0], tris[:, 1], tris[:, 2]
    # only triangles whose (y, z) projection contains (y, z)
    def cross(p, q):
        return (q[:, 0] - p[:, 0]) * (z - p[:, 1]) - (q[:, 1] - p[:, 1]) * (y - p[:, 0])
    pa, pb, pc = a[:, 1:], b[:, 1:], c[:, 1:]
    d1, d2, d3 = cross(pa, pb), cross(pb, pc), cross(pc, pa)
    inside = ((d1 > 0) & (d2 > 0) & (d3 > 0)) | ((d1 < 0) & (d2 < 0) & (d3 < 0))
    if not inside.any():
        return False
    # x of the triangle plane at (y, z)
    n = np.cross(b - a, c - a)
    ok = inside & (np.abs(n[:, 0]) > 1e-12)
    xs = a[ok, 0] - (n[ok, 1] * (y - a[ok, 1]) + n[ok, 2] * (z - a[ok, 2])) / n[ok, 0]
    return int(np.sum(xs > x + eps)) % 2 == 1


@pytest.fixture(scope="module", params=["pair", "outline", "single", "mixed"])
def plan_glb(request, tmp_path_factory):
    plan = generate_floorplan(seed=7, rooms_x=3, rooms_y=2, wall_style=request.param,
                              units="mm")
    path = write_floorplan(plan, tmp_path_factory.mktemp("fp") / f"{request.param}.dxf")
    res = convert_path(path, ConvertOptions(wall_height=HEIGHT), keep_scene=True)
    from tests.gltf_validator import assert_valid_glb

    assert_valid_glb(res.glb)
    doc, blob, _ = G.load(res.glb)
    return plan, res, doc, blob


def test_categories_and_sources(plan_glb):
    plan, res, doc, blob = plan_glb
    doors = G.nodes_by_category(doc, "door")
    windows = G.nodes_by_category(doc, "window")
    walls = G.nodes_by_category(doc, "wall")
    truth_doors = {o.handle for o in plan.openings if o.kind == "door"}
    truth_windows = {o.handle for o in plan.openings if o.kind == "window"}
    assert {h for n in doors for h in n["extras"]["source"]} == truth_doors
    assert {h for n in windows for h in n["extras"]["source"]} == truth_windows
    assert len(doors) == len(truth_doors) and len(windows) == len(truth_windows)
    wall_handles = {h for w in plan.walls for h in w.handles}
    got = {h for n in walls for h in n["extras"]["source"]}
    assert got <= wall_handles and len(got) >= 0.95 * len(wall_handles)
    assert all(n["extras"].get("host_wall") for n in doors + windows)


def test_walls_have_requested_height(plan_glb):
    plan, res, doc, blob = plan_glb
    tris = _solid_triangles(doc, blob, {"wall"})
    assert np.isclose(tris[:, :, 2].max(), HEIGHT, atol=1e-4)
    assert np.isclose(tris[:, :, 2].min(), 0.0, atol=1e-4)
    for node in G.nodes_by_category(doc, "wall"):
        assert node["extras"]["height_m"] == HEIGHT


def test_openings_where_doors_and_windows_are(plan_glb):
    plan, res, doc, blob = plan_glb
    tris = _solid_triangles(doc, blob, {"wall", "door", "window"})
    o = ConvertOptions()
    s = plan.unit_scale_m
    for op in plan.openings:
        cx, cy = op.center[0] * s, op.center[1] * s
        if op.kind == "door":
            assert not _material_at(tris, cx, cy, 1.0), f"door {op.handle} is blocked"
            assert _material_at(tris, cx, cy, (o.door_height + HEIGHT) / 2), \
                f"no lintel over door {op.handle}"
        else:
            mid = (o.window_sill + o.window_head) / 2
            assert not _material_at(tris, cx, cy, mid), f"window {op.handle} is blocked"
            assert _material_at(tris, cx, cy, o.window_sill / 2), f"no sill {op.handle}"
            assert _material_at(tris, cx, cy, (o.window_head + HEIGHT) / 2)


def test_solid_wall_next_to_openings(plan_glb):
    plan, res, doc, blob = plan_glb
    tris = _solid_triangles(doc, blob, {"wall"})
    s = plan.unit_scale_m
    for w in plan.walls:
        (x0, y0), (x1, y1) = w.start, w.end
        # a point a quarter along the centreline, unless an opening is there
        px, py = x0 + 0.25 * (x1 - x0), y0 + 0.25 * (y1 - y0)
        near = [op for op in plan.openings
                if np.hypot(op.center[0] - px, op.center[1] - py) < op.width / 2 + 0.1 / s]
        if near:
            continue
        assert _material_at(tris, px * s, py * s, 1.0), f"wall {w.handles} missing at 1 m"


def test_opening_extras_match_truth(plan_glb):
    plan, res, doc, blob = plan_glb
    s = plan.unit_scale_m
    nodes = G.nodes_by_category(doc, "door") + G.nodes_by_category(doc, "window")
    by_handle = {n["extras"]["source"][0]: n for n in nodes}
    for op in plan.openings:
        ex = by_handle[op.handle]["extras"]
        assert np.allclose(ex["center_m"], [op.center[0] * s, op.center[1] * s], atol=0.05)
        # the symbol's extent along the wall: the clear width plus jambs/frames
        assert op.width * s - 0.01 <= ex["width_m"] <= op.width * s + 0.25


def test_plain_layer_names_and_custom_rules(tmp_path):
    plan = generate_floorplan(seed=3, layer_style="plain", rooms_x=2, rooms_y=1)
    path = write_floorplan(plan, tmp_path / "plain.dxf")
    res = convert_path(path, keep_scene=True)
    cats = res.report["nodes_by_category"]
    assert cats.get("wall", 0) > 0 and cats.get("door", 0) > 0 and cats.get("window", 0) > 0
    # a mapping that knows no walls: everything stays linework on its layer
    res2 = convert_path(path, ConvertOptions(layer_rules=(("door", r"^NOTHING$"),)),
                        keep_scene=True)
    assert "wall" not in res2.report["nodes_by_category"]
    assert "door" not in res2.report["nodes_by_category"]
    res3 = convert_path(path, ConvertOptions(semantics=False), keep_scene=True)
    assert set(res3.report["nodes_by_category"]) <= {"layer", "text"}


def test_rooms_are_empty(plan_glb):
    """The probe can say 'no': room centres hold no wall material."""
    plan, res, doc, blob = plan_glb
    tris = _solid_triangles(doc, blob, {"wall", "door", "window", "column"})
    s = plan.unit_scale_m
    assert plan.rooms
    for room in plan.rooms:
        (x0, y0), (x1, y1) = room.bbox
        assert not _material_at(tris, (x0 + x1) / 2 * s, (y0 + y1) / 2 * s, 1.0)
