"""DXF reader: each entity family, transforms, units, layers and colours.

Drawings are built with ezdxf (real files, no mocks); every GLB goes through the Khronos
validator.
"""

from __future__ import annotations

import math
from pathlib import Path

import ezdxf
import numpy as np
import pytest

from cad2gltf import ConvertOptions, convert_path
from cad2gltf.errors import InvalidInputError, ParsingError
from tests import glb as G


def convert(doc, tmp_path: Path, valid_glb, name: str = "t.dxf", **opts):
    path = tmp_path / name
    doc.saveas(path)
    result = convert_path(path, ConvertOptions(**opts), keep_scene=True)
    valid_glb(result.glb)
    return result


def layer_node(scene, layer):
    return next(n for n in scene.iter_nodes() if n.category == "layer" and n.name == layer)


def all_points(node, kind=None):
    parts = [p.positions for n in node.iter_nodes() for p in n.primitives
             if kind is None or p.kind == kind]
    return np.vstack(parts) if parts else np.zeros((0, 3))


def new_doc(units=6):
    doc = ezdxf.new("R2018", setup=True)
    doc.units = units
    return doc


def test_line_units_and_y_up(tmp_path, valid_glb):
    doc = new_doc(units=4)  # millimetres
    doc.modelspace().add_line((0, 0, 0), (1000, 2000, 300), dxfattribs={"layer": "L1"})
    res = convert(doc, tmp_path, valid_glb, recenter=False)
    pts = all_points(layer_node(res.scene, "L1"))
    assert np.allclose(pts, [[0, 0, 0], [1, 2, 0.3]])
    doc_json, blob, _ = G.load(res.glb)
    node = next(n for n in doc_json["nodes"] if n["name"] == "L1")
    gl = G.node_positions(doc_json, blob, node)
    # glTF is Y-up: drawing (x, y, z) -> (x, z, -y)
    assert np.allclose(gl, [[0, 0, 0], [1, 0.3, -2]], atol=1e-6)
    assert res.report["units"] == "mm"


def test_unitless_uses_default_units_option(tmp_path, valid_glb):
    doc = new_doc(units=0)
    doc.modelspace().add_line((0, 0), (10, 0))
    res = convert(doc, tmp_path, valid_glb, default_units="cm", recenter=False)
    assert np.isclose(all_points(res.scene.nodes[0])[:, 0].max(), 0.1)
    assert any("unitless" in w for w in res.warnings)


def test_circle_arc_chord_tolerance(tmp_path, valid_glb):
    doc = new_doc()
    msp = doc.modelspace()
    msp.add_circle((0, 0), 10, dxfattribs={"layer": "C"})
    msp.add_arc((50, 0), 5, 0, 90, dxfattribs={"layer": "A"})
    res = convert(doc, tmp_path, valid_glb, recenter=False)
    circle = all_points(layer_node(res.scene, "C"))
    r = np.linalg.norm(circle[:, :2], axis=1)
    assert np.allclose(r, 10)
    # chord midpoints stay within the tolerance (relative to the drawing diagonal)
    mids = (circle[0::2] + circle[1::2]) / 2
    sag = 10 - np.linalg.norm(mids[:, :2], axis=1)
    tol = res.scene.metadata["chord_tolerance_m"]
    assert sag.max() <= tol * 1.01
    arc = all_points(layer_node(res.scene, "A"))
    ang = np.degrees(np.arctan2(arc[:, 1], arc[:, 0] - 50))
    assert ang.min() >= -1e-6 and ang.max() <= 90 + 1e-6


def test_ocs_arc_with_negative_extrusion(tmp_path, valid_glb):
    doc = new_doc()
    # extrusion (0,0,-1) mirrors the OCS x axis: centre (5,0) in OCS is (-5,0) in WCS
    doc.modelspace().add_circle((5, 0), 1, dxfattribs={"extrusion": (0, 0, -1), "layer": "O"})
    res = convert(doc, tmp_path, valid_glb, recenter=False)
    pts = all_points(layer_node(res.scene, "O"))
    assert np.allclose(pts[:, :2].mean(axis=0), [-5, 0], atol=0.05)


def test_bulged_and_wide_polylines(tmp_path, valid_glb):
    doc = new_doc()
    msp = doc.modelspace()
    # a half circle through a bulge of 1 between (0,0) and (2,0)
    msp.add_lwpolyline([(0, 0, 0, 0, 1), (2, 0)], format="xyseb", dxfattribs={"layer": "B"})
    msp.add_lwpolyline([(0, 5), (10, 5)], dxfattribs={"layer": "W", "const_width": 0.5})
    res = convert(doc, tmp_path, valid_glb, recenter=False)
    bulge = all_points(layer_node(res.scene, "B"))
    # ezdxf approximates arcs by cubic Beziers (relative error < 3e-4), within tolerance
    assert np.allclose(np.linalg.norm(bulge[:, :2] - [1, 0], axis=1), 1, atol=1e-3)
    assert bulge[:, 1].min() < -0.99  # the arc swings below the chord (bulge 1 = CCW)
    wide = layer_node(res.scene, "W")
    assert wide.primitives[0].kind == "triangles"
    tri = all_points(wide)
    assert np.isclose(tri[:, 1].max() - tri[:, 1].min(), 0.5)


def test_3d_entities_kept(tmp_path, valid_glb):
    doc = new_doc()
    msp = doc.modelspace()
    msp.add_3dface([(0, 0, 0), (1, 0, 0), (1, 1, 1), (0, 1, 1)], dxfattribs={"layer": "F"})
    msp.add_solid([(0, 0), (1, 0), (0, 1), (1, 1)], dxfattribs={"layer": "S"})
    mesh = msp.add_mesh(dxfattribs={"layer": "M"})
    with mesh.edit_data() as data:
        data.vertices = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0.5, 0.5, 1)]
        data.faces = [(0, 1, 4), (1, 2, 4), (2, 3, 4), (3, 0, 4), (0, 3, 2, 1)]
    pface = msp.add_polyface(dxfattribs={"layer": "P"})
    pface.append_face([(0, 0, 2), (1, 0, 2), (1, 1, 2)])
    res = convert(doc, tmp_path, valid_glb, recenter=False)
    for layer, tris in (("F", 2), ("S", 2), ("M", 6), ("P", 1)):
        prim = layer_node(res.scene, layer).primitives[0]
        assert prim.kind == "triangles"
        assert prim.indices.size == 3 * tris, layer
    assert all_points(layer_node(res.scene, "M"))[:, 2].max() == 1.0


def test_hatch_with_hole_is_triangulated(tmp_path, valid_glb):
    doc = new_doc()
    hatch = doc.modelspace().add_hatch(color=3, dxfattribs={"layer": "H"})
    hatch.paths.add_polyline_path([(0, 0), (10, 0), (10, 10), (0, 10)], is_closed=True, flags=1)
    hatch.paths.add_polyline_path([(4, 4), (6, 4), (6, 6), (4, 6)], is_closed=True, flags=16)
    res = convert(doc, tmp_path, valid_glb, recenter=False)
    prim = layer_node(res.scene, "H").primitives[0]
    tri = prim.positions[prim.indices].reshape(-1, 3, 3)
    area = 0.5 * np.abs(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])[:, 2]).sum()
    assert np.isclose(area, 100 - 4)
    assert prim.color == (0.0, 1.0, 0.0, 1.0)  # ACI 3 = green


def test_nested_mirrored_scaled_blocks_and_minsert(tmp_path, valid_glb):
    doc = new_doc()
    inner = doc.blocks.new("INNER")
    inner.add_line((0, 0), (1, 0))
    outer = doc.blocks.new("OUTER")
    outer.add_blockref("INNER", (10, 0), dxfattribs={"xscale": 2, "yscale": 3})
    msp = doc.modelspace()
    msp.add_blockref("OUTER", (100, 0), dxfattribs={"xscale": -1, "layer": "MIR"})
    ins = msp.add_blockref("INNER", (0, 50), dxfattribs={"layer": "ARR"})
    ins.grid(size=(2, 3), spacing=(10, 20))  # MINSERT: 2 rows x 3 columns
    res = convert(doc, tmp_path, valid_glb, recenter=False)
    mir = all_points(layer_node(res.scene, "MIR"))
    # INNER line (0..1) scaled by 2 at x=10 in OUTER, OUTER mirrored in x at 100
    assert np.allclose(sorted(mir[:, 0]), [88, 90])
    arr = all_points(layer_node(res.scene, "ARR"))
    assert arr.shape[0] == 12
    assert set(np.round(arr[:, 1], 6)) == {50, 60}
    assert set(np.round(arr[:, 0], 6)) == {0, 1, 20, 21, 40, 41}


def test_block_on_layer0_inherits_insert_layer_and_byblock_colour(tmp_path, valid_glb):
    doc = new_doc()
    blk = doc.blocks.new("B")
    blk.add_line((0, 0), (1, 1), dxfattribs={"layer": "0", "color": 0})  # BYBLOCK
    doc.layers.add("HOST", color=5)
    doc.modelspace().add_blockref("B", (0, 0), dxfattribs={"layer": "HOST", "color": 1})
    res = convert(doc, tmp_path, valid_glb)
    node = layer_node(res.scene, "HOST")
    assert node.primitives[0].color == (1.0, 0.0, 0.0, 1.0)  # red from the INSERT


def test_attributes_and_text_placeholders(tmp_path, valid_glb):
    doc = new_doc()
    blk = doc.blocks.new("TAG")
    blk.add_line((0, 0), (1, 0))
    blk.add_attdef("ROOM", (0, 1), dxfattribs={"height": 0.2})
    msp = doc.modelspace()
    ref = msp.add_blockref("TAG", (5, 5), dxfattribs={"layer": "T"})
    ref.add_auto_attribs({"ROOM": "Kitchen"})
    msp.add_text("Hello", dxfattribs={"height": 0.5, "layer": "T", "rotation": 90}) \
        .set_placement((2, 3))
    msp.add_mtext("Multi\\Pline", dxfattribs={"layer": "T", "insert": (7, 8)})
    res = convert(doc, tmp_path, valid_glb, recenter=False)
    texts = [n for n in res.scene.iter_nodes() if n.category == "text"]
    by_text = {n.extras["text"]: n for n in texts}
    assert set(by_text) == {"Kitchen", "Hello", "Multi\nline"}
    assert np.allclose(by_text["Hello"].translation, (2, 3, 0))
    assert by_text["Hello"].extras["rotation_deg"] == 90
    assert np.allclose(by_text["Kitchen"].translation[:2], (5, 6))
    doc_json, _, _ = G.load(res.glb)
    hello = next(n for n in doc_json["nodes"] if n.get("extras", {}).get("text") == "Hello")
    assert np.allclose(hello["translation"], [2, 0, -3])


def test_hidden_layers_skipped_unless_asked(tmp_path, valid_glb):
    doc = new_doc()
    doc.layers.add("OFF").off()
    doc.layers.add("FROZEN").freeze()
    msp = doc.modelspace()
    msp.add_line((0, 0), (1, 0), dxfattribs={"layer": "OFF"})
    msp.add_line((0, 0), (1, 0), dxfattribs={"layer": "FROZEN"})
    msp.add_line((0, 0), (1, 1), dxfattribs={"layer": "ON"})
    res = convert(doc, tmp_path, valid_glb)
    names = {n.name for n in res.scene.nodes}
    assert names == {"ON"}
    res = convert(doc, tmp_path, valid_glb, include_hidden_layers=True)
    assert {"ON", "OFF", "FROZEN"} <= {n.name for n in res.scene.nodes}


def test_true_colour_and_aci(tmp_path, valid_glb):
    doc = new_doc()
    msp = doc.modelspace()
    line = msp.add_line((0, 0), (1, 0), dxfattribs={"layer": "C"})
    line.rgb = (10, 200, 30)
    msp.add_line((0, 1), (1, 1), dxfattribs={"layer": "C", "color": 1})
    res = convert(doc, tmp_path, valid_glb)
    colours = {p.color for p in layer_node(res.scene, "C").primitives}
    assert (round(10 / 255, 4), round(200 / 255, 4), round(30 / 255, 4), 1.0) in colours
    assert (1.0, 0.0, 0.0, 1.0) in colours
    doc_json, _, _ = G.load(res.glb)
    assert len(doc_json["materials"]) == 2


def test_xline_and_ray_clipped_to_extents(tmp_path, valid_glb):
    doc = new_doc()
    msp = doc.modelspace()
    msp.add_line((0, 0), (10, 10))
    msp.add_xline((5, 5), (1, 0), dxfattribs={"layer": "X"})
    msp.add_ray((5, 2), (0, 1), dxfattribs={"layer": "R"})
    doc.header["$EXTMIN"] = (0, 0, 0)
    doc.header["$EXTMAX"] = (10, 10, 0)
    res = convert(doc, tmp_path, valid_glb, recenter=False)
    x = all_points(layer_node(res.scene, "X"))
    assert np.allclose(sorted(x[:, 0]), [0, 10]) and np.allclose(x[:, 1], 5)
    r = all_points(layer_node(res.scene, "R"))
    assert np.allclose(sorted(r[:, 1]), [2, 10])


def test_dimension_and_leader_through_their_geometry(tmp_path, valid_glb):
    doc = new_doc()
    msp = doc.modelspace()
    dim = msp.add_linear_dim(base=(0, 2), p1=(0, 0), p2=(5, 0), dxfattribs={"layer": "DIM"})
    dim.render()
    msp.add_leader([(0, 0), (2, 2), (4, 2)], dxfattribs={"layer": "LDR"})
    res = convert(doc, tmp_path, valid_glb)
    dim_node = layer_node(res.scene, "DIM")
    assert any(p.kind == "lines" for p in dim_node.primitives)
    texts = [n.extras["text"] for n in dim_node.iter_nodes() if n.category == "text"]
    assert len(texts) == 1 and texts[0].isdigit()  # the measurement, as the dimstyle formats it
    assert "Defpoints" not in {n.name for n in res.scene.nodes}  # never plotted
    assert all_points(layer_node(res.scene, "LDR")).shape[0] >= 4


def test_spline_and_ellipse(tmp_path, valid_glb):
    doc = new_doc()
    msp = doc.modelspace()
    msp.add_spline([(0, 0), (1, 2), (3, 1), (5, 4)], dxfattribs={"layer": "S"})
    msp.add_ellipse((0, 10), major_axis=(4, 0), ratio=0.5, dxfattribs={"layer": "E"})
    res = convert(doc, tmp_path, valid_glb, recenter=False)
    s = all_points(layer_node(res.scene, "S"))
    assert np.allclose(s[0], (0, 0, 0)) and np.allclose(s[-1], (5, 4, 0))
    e = all_points(layer_node(res.scene, "E"))
    assert np.isclose(e[:, 0].max(), 4, atol=1e-3) and np.isclose(e[:, 1].max(), 12, atol=1e-2)


def test_empty_drawing_is_classified(tmp_path):
    doc = new_doc()
    path = tmp_path / "empty.dxf"
    doc.saveas(path)
    with pytest.raises(ParsingError) as info:
        convert_path(path)
    assert info.value.code == "PARSING_ERROR" and info.value.subcode == "NO_GEOMETRY"


def test_vertex_budget_guard(tmp_path):
    doc = new_doc()
    msp = doc.modelspace()
    for i in range(600):
        msp.add_line((i, 0), (i, 1))
    path = tmp_path / "many.dxf"
    doc.saveas(path)
    with pytest.raises(InvalidInputError) as info:
        convert_path(path, ConvertOptions(max_vertices=1000))
    assert info.value.subcode == "TOO_COMPLEX"


def test_self_referencing_block_does_not_hang(tmp_path, valid_glb):
    doc = new_doc()
    blk = doc.blocks.new("LOOP")
    blk.add_line((0, 0), (1, 0))
    blk.add_blockref("LOOP", (1, 0))
    doc.modelspace().add_blockref("LOOP", (0, 0))
    res = convert(doc, tmp_path, valid_glb)
    assert any("references itself" in w for w in res.warnings)


def test_deterministic_output(tmp_path):
    doc = new_doc()
    msp = doc.modelspace()
    msp.add_circle((1, 1), 3, dxfattribs={"layer": "A"})
    msp.add_text("x", dxfattribs={"layer": "B"})
    path = tmp_path / "d.dxf"
    doc.saveas(path)
    a = convert_path(path)
    b = convert_path(path)
    assert a.glb == b.glb and a.preview == b.preview


def test_provenance_in_asset_extras(tmp_path, valid_glb):
    doc = new_doc()
    doc.modelspace().add_line((0, 0), (1, 1), dxfattribs={"layer": "P"})
    res = convert(doc, tmp_path, valid_glb)
    doc_json, _, _ = G.load(res.glb)
    extras = doc_json["asset"]["extras"]
    import hashlib

    assert extras["source_sha256"] == hashlib.sha256((tmp_path / "t.dxf").read_bytes()).hexdigest()
    assert extras["converter_version"]
    assert extras["options"]["wall_height"] == 2.7
    assert "P" in extras["layers"] and extras["units"] == "m"
    assert math.isclose(doc_json["nodes"][0]["extras"]["unit_scale_m"], 1.0)
