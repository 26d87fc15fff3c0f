"""PDF conversion of the shared synthetic renders (:mod:`cad2gltf.synth.render`).

``plan_to_pdf`` writes no optional content groups (no layers), so walls come from the
line weights and fills alone; ``plan_to_raster`` adds scan effects (rotation, blur, noise,
speckle, JPEG). Ground truth goes through the returned :class:`PageTransform`.
"""

from __future__ import annotations

import numpy as np
import pytest

from cad2gltf import ConvertOptions, convert_path
from cad2gltf.synth.floorplan import generate_floorplan
from cad2gltf.synth.render import plan_to_pdf, plan_to_raster, plans_to_pdf, raster_to_pdf
from tests import glb as G
from tests.gltf_validator import assert_valid_glb
from tests.test_pdf import _wall_midpoints, material_at, solid_triangles


def _to_m(tf, denom: float = 100.0):
    mpp = 0.0254 / 72.0 * denom
    height = tf.page_size_pt[1]

    def to_m(x: float, y: float) -> tuple[float, float]:
        px, py = tf.to_points((x, y))
        return px * mpp, (height - py) * mpp

    return to_m


def _convert(tmp_path, data: bytes, name: str, **options):
    p = tmp_path / name
    p.write_bytes(data)
    res = convert_path(p, ConvertOptions(**options), keep_scene=True)
    assert_valid_glb(res.glb)
    doc, blob, _ = G.load(res.glb)
    return res, doc, blob


def _check_walls(plan, to_m, doc, blob, min_hits: float):
    tris = solid_triangles(doc, blob, {"wall"})
    probes = _wall_midpoints(plan, to_m)
    hits = sum(material_at(tris, x, y, 1.0) for _, (x, y) in probes)
    assert hits >= min_hits * len(probes), f"{hits}/{len(probes)} wall probes hit"
    for room in plan.rooms:
        (x0, y0), (x1, y1) = room.bbox
        assert not material_at(tris, *to_m((x0 + x1) / 2, (y0 + y1) / 2), 1.0), room.name


@pytest.mark.parametrize("scale", [50, 100])
def test_rendered_vector_plan(tmp_path, scale):
    plan = generate_floorplan(seed=4, rooms_x=3, rooms_y=2, units="mm")
    pdf, tf = plan_to_pdf(plan, scale=scale, paper="A3" if scale == 100 else "A1")
    res, doc, blob = _convert(tmp_path, pdf, "v.pdf", scale=f"1:{scale}")
    assert res.report["nodes_by_category"]["page"] == 1
    _check_walls(plan, _to_m(tf, scale), doc, blob, 0.9)
    thick = [w["extras"]["thickness_m"] for w in G.nodes_by_category(doc, "wall")]
    assert np.median(thick) == pytest.approx(plan.walls[0].thickness * plan.unit_scale_m,
                                             abs=0.02)


@pytest.mark.parametrize("rotation,noise", [(0.0, 6.0), (2.0, 10.0), (-1.0, 14.0)])
def test_rendered_scan(tmp_path, rotation, noise):
    plan = generate_floorplan(seed=8, rooms_x=3, rooms_y=2, units="mm")
    img, tf = plan_to_raster(plan, scale=100, paper="A3", dpi=150, seed=2,
                             rotation_deg=rotation, noise=noise, blur=0.7, speckle=0.001,
                             jpeg_quality=70)
    res, doc, blob = _convert(tmp_path, raster_to_pdf([img], dpi=150), "s.pdf")
    page = G.nodes_by_category(doc, "page")[0]["extras"]
    assert page["kind"] == "scanned"
    assert page["deskew_deg"] == pytest.approx(rotation, abs=0.3)
    walls = G.nodes_by_category(doc, "wall")
    thick = np.median([w["extras"]["thickness_m"] for w in walls])
    assert thick == pytest.approx(plan.walls[0].thickness * plan.unit_scale_m, abs=0.05)
    if rotation == 0.0:
        to_m = _to_m(tf)
        _check_walls(plan, to_m, doc, blob, 0.85)
        # furniture (sofa cushions, the rug's frame) does not become walls
        boxes = []
        for f in plan.furniture:
            (ax, ay), (bx, by) = f.bbox
            (x0, y0), (x1, y1) = to_m(ax, ay), to_m(bx, by)
            boxes.append((min(x0, x1) - 0.1, min(y0, y1) - 0.1, max(x0, x1) + 0.1,
                          max(y0, y1) + 0.1))
        scene_walls = [n for n in res.scene.iter_nodes() if n.category == "wall"]
        for w in scene_walls:
            p = np.concatenate([q.positions for q in w.primitives])
            lo, hi = p.min(axis=0), p.max(axis=0)
            assert not any(b[0] <= lo[0] and b[1] <= lo[1] and hi[0] <= b[2] and hi[1] <= b[3]
                           for b in boxes), f"{w.name} lies inside a piece of furniture"


def test_rendered_plan_set(tmp_path):
    plans = [generate_floorplan(seed=50 + k, rooms_x=2, rooms_y=2, units="mm")
             for k in range(3)]
    data = plans_to_pdf(plans, scale=100, paper="A3")
    res, doc, blob = _convert(tmp_path, data, "set.pdf")
    pages = G.nodes_by_category(doc, "page")
    assert [p["name"] for p in pages] == ["page-1", "page-2", "page-3"]
    pages_with_walls = {w["extras"]["source"]["page"] for w in G.nodes_by_category(doc, "wall")}
    assert pages_with_walls == {1, 2, 3}
