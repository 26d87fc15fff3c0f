"""Tests of the synthetic floor plan generator (cad2gltf.synth.floorplan)."""

from __future__ import annotations

import math
from collections import Counter

import ezdxf
import pytest

from cad2gltf.synth import (
    FloorPlan,
    encode_floorplan,
    generate_floorplan,
    generate_large_drawing,
    write_floorplan,
)

ROLE_OF_KIND = {"door": "door", "window": "window"}


def _axis(wall):
    (sx, sy), (ex, ey) = wall.start, wall.end
    length = math.hypot(ex - sx, ey - sy)
    return (sx, sy), ((ex - sx) / length, (ey - sy) / length), length


def _local(point, origin, u):
    """(along, across) coordinates of ``point`` in the wall frame."""
    dx, dy = point[0] - origin[0], point[1] - origin[1]
    return dx * u[0] + dy * u[1], -dx * u[1] + dy * u[0]


@pytest.fixture(scope="module")
def plan() -> FloorPlan:
    return generate_floorplan(seed=11)


def test_deterministic_bytes(tmp_path):
    kwargs = dict(seed=5, wall_style="mixed", units="mm")
    a = encode_floorplan(generate_floorplan(**kwargs))
    b = encode_floorplan(generate_floorplan(**kwargs))
    assert a == b
    pa = write_floorplan(generate_floorplan(**kwargs), tmp_path / "a.dxf")
    pb = write_floorplan(generate_floorplan(**kwargs), tmp_path / "b.dxf")
    assert pa.read_bytes() == pb.read_bytes() == a
    assert encode_floorplan(generate_floorplan(seed=6, wall_style="mixed", units="mm")) != a


def test_counts_and_truth_consistent(plan):
    doc = plan.doc
    msp = doc.modelspace()
    assert plan.entity_count == len(msp)
    in_msp = {e.dxf.handle for e in msp}
    assert plan.layers["wall"] == "A-WALL" and plan.layers["window"] == "A-GLAZ"

    # walls: handles exist, on the wall layer, as many as the grid has edges
    assert len(plan.walls) == 3 * 3 + 4 * 2
    for wall in plan.walls:
        assert wall.style == "pair" and wall.handles
        for h in wall.handles:
            assert h in in_msp
            e = doc.entitydb[h]
            assert e.dxftype() == "LINE" and e.dxf.layer == "A-WALL"

    # openings: INSERTs on the right layer whose geometry matches the truth
    inserts = Counter(e.dxf.name.split("_")[0] for e in msp.query("INSERT"))
    kinds = Counter(o.kind for o in plan.openings)
    assert inserts["DOOR"] == kinds["door"] and inserts["WINDOW"] == kinds["window"]
    for o in plan.openings:
        assert o.handle in in_msp
        e = doc.entitydb[o.handle]
        assert e.dxftype() == "INSERT"
        assert e.dxf.layer == plan.layers[ROLE_OF_KIND[o.kind]]
        assert e.dxf.name == o.block and o.block.startswith(o.kind.upper() + "_")
        assert int(o.block.split("_")[1]) == round(o.width * 1000)
        # the block frame starts at a jamb: centre = insert + xscale * w/2 * x-axis
        r = math.radians(e.dxf.rotation)
        xs = e.dxf.xscale
        cx = e.dxf.insert.x + xs * o.width / 2 * math.cos(r)
        cy = e.dxf.insert.y + xs * o.width / 2 * math.sin(r)
        assert (cx, cy) == pytest.approx(o.center, abs=1e-9)
        assert o.mirrored == (xs < 0)
        assert (e.dxf.rotation - o.angle_deg) % 180 == pytest.approx(0)

    # every interior wall has a door, exactly one exterior door, windows only outside
    xs = {c for w in plan.walls for c in (w.start[0], w.end[0])}
    ys = {c for w in plan.walls for c in (w.start[1], w.end[1])}

    def exterior(wall):
        (x0, y0), (x1, y1) = wall.start, wall.end
        return (y0 == y1 and y0 in (min(ys), max(ys))) or (x0 == x1 and x0 in (min(xs), max(xs)))

    doors_on = Counter(o.wall_index for o in plan.openings if o.kind == "door")
    for i, wall in enumerate(plan.walls):
        if not exterior(wall):
            assert doors_on[i] >= 1
    outside = [o for o in plan.openings if exterior(plan.walls[o.wall_index])]
    assert sum(o.kind == "door" for o in outside) == 1
    assert all(o.kind == "door" for o in plan.openings if o not in outside)

    # openings inside their wall, clear of the ends and of each other
    by_wall: dict[int, list[tuple[float, float]]] = {}
    for o in plan.openings:
        wall = plan.walls[o.wall_index]
        origin, u, length = _axis(wall)
        s, n = _local(o.center, origin, u)
        assert n == pytest.approx(0.0, abs=1e-9)
        lo, hi = s - o.width / 2, s + o.width / 2
        assert (
            lo >= wall.thickness / 2 + 0.3 - 1e-9 and hi <= length - wall.thickness / 2 - 0.3 + 1e-9
        )
        by_wall.setdefault(o.wall_index, []).append((lo, hi))
    for spans in by_wall.values():
        spans.sort()
        for (_, b), (a, _) in zip(spans, spans[1:], strict=False):
            assert a >= b

    # the wall lines are at +-t/2 and leave a gap at every opening
    for i, wall in enumerate(plan.walls):
        origin, u, length = _axis(wall)
        for h in wall.handles:
            line = doc.entitydb[h]
            s1, n1 = _local(line.dxf.start, origin, u)
            s2, n2 = _local(line.dxf.end, origin, u)
            assert abs(n1) == pytest.approx(wall.thickness / 2) and n1 == pytest.approx(n2)
            a, b = sorted((s1, s2))
            assert -wall.thickness / 2 - 1e-9 <= a < b <= length + wall.thickness / 2 + 1e-9
            for lo, hi in by_wall.get(i, []):
                assert b <= lo + 1e-9 or a >= hi - 1e-9

    # furniture, rooms, annotation
    types = Counter(e.dxftype() for e in msp)
    assert types["HATCH"] == 1 and types["MTEXT"] == 1 and types["TEXT"] == 6
    assert types["DIMENSION"] >= 2
    for f in plan.furniture:
        e = doc.entitydb[f.handle]
        assert f.handle in in_msp and e.dxf.layer == "A-FURN"
        assert e.dxftype() == ("HATCH" if f.kind == "rug" else "INSERT")
    desks = [doc.entitydb[f.handle] for f in plan.furniture if f.kind == "desk"]
    assert desks and {a.dxf.tag for a in desks[0].attribs} == {"ASSET", "OWNER"}
    assert any(e.dxftype() == "INSERT" for e in doc.blocks.get("BED_SET"))  # nested
    for room in plan.rooms:
        assert doc.entitydb[room.text_handle].dxf.text == room.name
    colors = {doc.layers.get(name).color for name in plan.layers.values()}
    assert len(colors) == len(plan.layers)


@pytest.mark.parametrize(
    "style, dxftype", [("pair", "LINE"), ("outline", "LWPOLYLINE"), ("single", "LINE")]
)
def test_wall_styles(style, dxftype):
    p = generate_floorplan(seed=2, wall_style=style, layer_style="plain", rooms_x=2, rooms_y=2)
    assert p.layers["door"] == "DOOR" and p.layers["furn"] == "FURNITURE"
    for wall in p.walls:
        assert wall.style == style
        entities = [p.doc.entitydb[h] for h in wall.handles]
        assert {e.dxftype() for e in entities} == {dxftype}
        assert {e.dxf.layer for e in entities} == {"WALL"}
        if style == "single":
            assert len(entities) == 1
        if style == "outline":
            assert all(e.closed and len(e) == 4 for e in entities)
    mixed = generate_floorplan(seed=2, wall_style="mixed", rooms_x=4, rooms_y=3)
    assert {w.style for w in mixed.walls} == {"pair", "outline", "single"}


def test_mm_units_scale_coordinates():
    m = generate_floorplan(seed=4, units="m")
    mm = generate_floorplan(seed=4, units="mm")
    assert m.doc.header["$INSUNITS"] == 6 and mm.doc.header["$INSUNITS"] == 4
    assert m.unit_scale_m == 1.0 and mm.unit_scale_m == 0.001
    assert len(m.walls) == len(mm.walls) and len(m.openings) == len(mm.openings)
    for a, b in zip(m.walls, mm.walls, strict=True):
        assert b.start == pytest.approx((a.start[0] * 1000, a.start[1] * 1000))
        assert b.end == pytest.approx((a.end[0] * 1000, a.end[1] * 1000))
        assert b.thickness == pytest.approx(a.thickness * 1000)
    for a, b in zip(m.openings, mm.openings, strict=True):
        assert b.block == a.block
        assert b.center == pytest.approx((a.center[0] * 1000, a.center[1] * 1000))
        assert b.width == pytest.approx(a.width * 1000)
    assert mm.extents[1][0] == pytest.approx(m.extents[1][0] * 1000, rel=1e-3)
    door = next(o for o in mm.openings if o.kind == "door")
    arc = mm.doc.blocks.get(door.block).query("ARC").first
    assert arc.dxf.radius == pytest.approx(door.width)
    cm = generate_floorplan(seed=4, units="cm")
    assert cm.doc.header["$INSUNITS"] == 5 and cm.walls[0].thickness == pytest.approx(20.0)


def test_roundtrip_readfile_and_audit(tmp_path):
    p = generate_floorplan(seed=9, wall_style="mixed", units="cm")
    path = write_floorplan(p, tmp_path / "plan.dxf")
    doc = ezdxf.readfile(path)
    auditor = doc.audit()
    assert not auditor.has_errors, [e.message for e in auditor.errors]
    assert len(doc.modelspace()) == p.entity_count
    assert doc.header["$INSUNITS"] == 5
    (x0, y0), (x1, y1) = p.extents
    assert tuple(doc.header["$EXTMIN"])[:2] == pytest.approx((x0, y0))
    assert tuple(doc.header["$EXTMAX"])[:2] == pytest.approx((x1, y1))
    for o in p.openings:
        assert doc.entitydb[o.handle].dxftype() == "INSERT"
    assert p.doc.audit().has_errors is False


def test_bad_arguments():
    with pytest.raises(ValueError):
        generate_floorplan(units="ft")
    with pytest.raises(ValueError):
        generate_floorplan(wall_style="dashed")
    with pytest.raises(ValueError):
        generate_floorplan(room_size=1.5)
    with pytest.raises(ValueError):
        generate_floorplan(dxfversion="R12")


def test_large_drawing_hits_target():
    p = generate_large_drawing(target_entities=10_000, seed=1)
    msp = p.doc.modelspace()
    assert abs(len(msp) - 10_000) <= 1_000
    assert p.entity_count == len(msp)
    types = Counter(e.dxftype() for e in msp)
    for t in (
        "LINE",
        "LWPOLYLINE",
        "INSERT",
        "HATCH",
        "TEXT",
        "MTEXT",
        "ARC",
        "CIRCLE",
        "SPLINE",
        "DIMENSION",
    ):
        assert types[t] > 0, t
    assert len({o.wall_index for o in p.openings}) > 100
    sample = p.openings[:: max(1, len(p.openings) // 50)]
    for o in sample:
        e = p.doc.entitydb[o.handle]
        assert e.dxftype() == "INSERT" and e.dxf.name == o.block
    (x0, y0), (x1, y1) = p.extents
    for w in p.walls[:: max(1, len(p.walls) // 50)]:
        for x, y in (w.start, w.end):
            assert x0 <= x <= x1 and y0 <= y <= y1
