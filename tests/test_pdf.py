"""PDF drawings: vector plans against the generated ground truth, scanned plans, scales.

Vector PDFs are made here from generated DXF floor plans with ezdxf's PyMuPDF drawing
backend, placed on the sheet with a known transform (content box centred on an A3 page
at 1:N), so every wall, door and window of the ground truth has a known place in metres.
Scanned PDFs are renders of such plans (noise, blur, a small rotation) wrapped as
image-only pages. Every GLB goes through the Khronos validator.
"""

from __future__ import annotations

import numpy as np
import pymupdf
import pytest

from cad2gltf import ConvertOptions, convert_path
from cad2gltf.pdf import pdf_readfile
from cad2gltf.pdf.scale import find_scale_note, parse_scale
from cad2gltf.synth.floorplan import generate_floorplan
from tests import glb as G
from tests.gltf_validator import assert_valid_glb

A3 = (420.0, 297.0)


def vector_pdf(plan, denom: float = 100.0, page=A3, layers: bool = True,
               note: str | None = None, lineweights: bool = True):
    """A vector PDF of ``plan`` at 1:denom and ``to_m(x, y)``: drawing units -> scene m."""
    from ezdxf.addons.drawing import Frontend, RenderContext, config, layout
    from ezdxf.addons.drawing.pymupdf import PyMuPdfBackend
    from ezdxf.math import BoundingBox2d

    (x0, y0), (x1, y1) = plan.extents
    be = PyMuPdfBackend()
    cfg = config.Configuration(
        lineweight_policy=config.LineweightPolicy.ABSOLUTE if lineweights
        else config.LineweightPolicy.RELATIVE_FIXED,
        background_policy=config.BackgroundPolicy.WHITE,
        color_policy=config.ColorPolicy.BLACK)
    Frontend(RenderContext(plan.doc), be, config=cfg).draw_layout(plan.doc.modelspace())
    paper_scale = plan.unit_scale_m * 1000.0 / denom  # paper mm per drawing unit
    data = be.get_pdf_bytes(layout.Page(*page, layout.Units.mm),
                            settings=layout.Settings(scale=paper_scale, fit_page=False,
                                                     output_layers=layers),
                            render_box=BoundingBox2d([(x0, y0), (x1, y1)]))
    if note is not None:
        doc = pymupdf.open(stream=data, filetype="pdf")
        doc[0].insert_text((40, doc[0].rect.height - 30), note, fontsize=14)
        data = doc.tobytes()
        doc.close()
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    s = plan.unit_scale_m

    def to_m(x: float, y: float) -> tuple[float, float]:
        return (page[0] / 2000.0 * denom + (x - cx) * s, page[1] / 2000.0 * denom + (y - cy) * s)

    return data, to_m


def scanned_pdf(vector: bytes, dpi: int = 150, rotate_deg: float = 0.0, noise: float = 0.0,
                blur: bool = False, seed: int = 0) -> bytes:
    """Render page 1 of ``vector`` and wrap it as an image-only PDF page (a scan)."""
    import cv2

    src = pymupdf.open(stream=vector, filetype="pdf")
    page = src[0]
    pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
    img = np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.stride)[:, :pix.width]
    img = img.copy()
    if rotate_deg:
        h, w = img.shape
        m = cv2.getRotationMatrix2D((w / 2, h / 2), rotate_deg, 1.0)
        img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=255)
    if blur:
        img = cv2.GaussianBlur(img, (3, 3), 0.8)
    if noise:
        rng = np.random.default_rng(seed)
        img = np.clip(img.astype(np.float32) + rng.normal(0, noise, img.shape), 0, 255)
        speck = rng.random(img.shape) < 0.0008
        img[speck] = 0
        img = img.astype(np.uint8)
    ok, png = cv2.imencode(".png", img)
    assert ok
    out = pymupdf.open()
    p = out.new_page(width=page.rect.width, height=page.rect.height)
    p.insert_image(p.rect, stream=png.tobytes())
    data = out.tobytes(garbage=3, deflate=True)
    out.close()
    src.close()
    return data


def solid_triangles(doc, blob, categories):
    parts = []
    for node in doc["nodes"]:
        if node.get("extras", {}).get("category") in categories and "mesh" in node:
            for prim in doc["meshes"][node["mesh"]]["primitives"]:
                if prim.get("mode", 4) == 4:
                    mat = doc["materials"][prim["material"]]
                    if mat["pbrMetallicRoughness"]["baseColorFactor"][3] < 1:
                        continue
                    parts.append(G.accessor(doc, blob, prim["attributes"]["POSITION"]))
    tri = np.vstack(parts).reshape(-1, 3).astype(np.float64)
    off = np.asarray(doc["nodes"][0]["extras"]["origin_offset_m"])
    return G.to_plan(tri, off).reshape(-1, 3, 3)


def material_at(tris, x, y, z, eps=1e-3):
    """Is (x, y, z) inside the closed solids? Ray casting along +x (see test_floorplan)."""
    a, b, c = tris[:, 0], tris[:, 1], tris[:, 2]

    def cross(p, q):
        return (q[:, 0] - p[:, 0]) * (z - p[:, 1]) - (q[:, 1] - p[:, 1]) * (y - p[:, 0])

    pa, pb, pc = a[:, 1:], b[:, 1:], c[:, 1:]
    d1, d2, d3 = cross(pa, pb), cross(pb, pc), cross(pc, pa)
    inside = ((d1 > 0) & (d2 > 0) & (d3 > 0)) | ((d1 < 0) & (d2 < 0) & (d3 < 0))
    if not inside.any():
        return False
    n = np.cross(b - a, c - a)
    ok = inside & (np.abs(n[:, 0]) > 1e-12)
    xs = a[ok, 0] - (n[ok, 1] * (y - a[ok, 1]) + n[ok, 2] * (z - a[ok, 2])) / n[ok, 0]
    return int(np.sum(xs > x + eps)) % 2 == 1


def convert(tmp_path, data: bytes, name: str = "plan.pdf", **options):
    p = tmp_path / name
    p.write_bytes(data)
    res = convert_path(p, ConvertOptions(**options), keep_scene=True)
    assert_valid_glb(res.glb)
    doc, blob, _ = G.load(res.glb)
    return res, doc, blob


def _wall_midpoints(plan, to_m):
    """Truth wall probes (metres): a quarter along each wall, away from openings."""
    s = plan.unit_scale_m
    out = []
    for w in plan.walls:
        (x0, y0), (x1, y1) = w.start, w.end
        px, py = x0 + 0.25 * (x1 - x0), y0 + 0.25 * (y1 - y0)
        if any(np.hypot(o.center[0] - px, o.center[1] - py) < o.width / 2 + 0.15 / s
               for o in plan.openings):
            continue
        out.append((w, to_m(px, py)))
    return out


# -- vector pages ----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["pair", "outline", "single"])
def vector_plan(request, tmp_path_factory):
    plan = generate_floorplan(seed=11, rooms_x=3, rooms_y=2, wall_style=request.param,
                              units="mm")
    data, to_m = vector_pdf(plan)
    res, doc, blob = convert(tmp_path_factory.mktemp("vec"), data)
    return plan, to_m, res, doc, blob


def test_vector_walls_and_openings_match_truth(vector_plan):
    plan, to_m, res, doc, blob = vector_plan
    cats = res.report["nodes_by_category"]
    assert cats["page"] == 1
    n_doors = sum(o.kind == "door" for o in plan.openings)
    n_windows = sum(o.kind == "window" for o in plan.openings)
    assert cats.get("door") == n_doors and cats.get("window") == n_windows
    tris = solid_triangles(doc, blob, {"wall", "door", "window"})
    assert np.isclose(tris[:, :, 2].max(), 2.7, atol=1e-4)
    probes = _wall_midpoints(plan, to_m)
    assert probes
    for w, (x, y) in probes:
        assert material_at(tris, x, y, 1.0), f"wall {w.handles} missing at {x:.2f},{y:.2f}"
    o = ConvertOptions()
    for op in plan.openings:
        cx, cy = to_m(*op.center)
        z = 1.0 if op.kind == "door" else (o.window_sill + o.window_head) / 2
        assert not material_at(tris, cx, cy, z), f"{op.kind} {op.handle} is blocked"
        assert material_at(tris, cx, cy, (o.door_height + 2.7) / 2), f"no lintel {op.handle}"
    for room in plan.rooms:
        (x0, y0), (x1, y1) = room.bbox
        assert not material_at(tris, *to_m((x0 + x1) / 2, (y0 + y1) / 2), 1.0)


def test_vector_opening_extras_and_sources(vector_plan):
    plan, to_m, res, doc, blob = vector_plan
    nodes = G.nodes_by_category(doc, "door") + G.nodes_by_category(doc, "window")
    centres = np.array([n["extras"]["center_m"] for n in nodes])
    for op in plan.openings:
        c = np.array(to_m(*op.center))
        d = np.hypot(*(centres - c).T)
        k = int(d.argmin())
        assert d[k] < 0.05, f"{op.kind} {op.handle}: nearest node {d[k]:.3f} m away"
        ex = nodes[k]["extras"]
        assert ex["host_wall"]
        assert op.width * plan.unit_scale_m - 0.01 <= ex["width_m"] <= \
            op.width * plan.unit_scale_m + 0.25
    for n in nodes + G.nodes_by_category(doc, "wall"):
        src = n["extras"]["source"]
        assert src["page"] == 1 and len(src["bbox_pt"]) == 4
        x0, y0, x1, y1 = src["bbox_pt"]
        assert 0 <= x0 <= x1 <= 1191 and 0 <= y0 <= y1 <= 842
        assert all(i.startswith("p1#") for i in src["items"])
    page = G.nodes_by_category(doc, "page")[0]
    assert page["name"] == "page-1"
    assert page["extras"]["kind"] == "vector" and page["extras"]["scale"] == "1:100"


def test_vector_wall_thickness(vector_plan):
    plan, to_m, res, doc, blob = vector_plan
    walls = G.nodes_by_category(doc, "wall")
    truth = {round(w.thickness * plan.unit_scale_m, 3) for w in plan.walls}
    assert truth == {0.2}
    if plan.walls[0].style == "single":
        assert all(abs(w["extras"]["thickness_m"] - 0.15) < 0.01 for w in walls)
    else:
        thick = np.array([w["extras"]["thickness_m"] for w in walls])
        assert np.median(thick) == pytest.approx(0.2, abs=0.02)


def test_vector_without_layers_uses_line_weights(tmp_path):
    """No optional content groups: walls from the heaviest strokes."""
    plan = generate_floorplan(seed=5, rooms_x=2, rooms_y=2, wall_style="pair", units="mm")
    data, to_m = vector_pdf(plan, layers=False)
    res, doc, blob = convert(tmp_path, data)
    cats = res.report["nodes_by_category"]
    assert cats.get("wall", 0) >= len(plan.walls) // 2
    tris = solid_triangles(doc, blob, {"wall"})
    probes = _wall_midpoints(plan, to_m)
    hits = sum(material_at(tris, x, y, 1.0) for _, (x, y) in probes)
    assert hits >= 0.9 * len(probes)
    for room in plan.rooms:
        (x0, y0), (x1, y1) = room.bbox
        assert not material_at(tris, *to_m((x0 + x1) / 2, (y0 + y1) / 2), 1.0)


# -- scale -----------------------------------------------------------------------------


def test_scale_parsing_and_notes():
    assert parse_scale("1:100") == 100 and parse_scale("1 : 50") == 50
    assert parse_scale("2:1") == 0.5
    assert find_scale_note([("SCALE 1:50", 10.0)]) == (50.0, "SCALE 1:50")
    assert find_scale_note([("Maßstab 1:200", 10.0)])[0] == 200
    assert find_scale_note([("1:20", 8.0)])[0] == 20
    assert find_scale_note([("meeting at 10:30 in room 1:2", 9.0)]) is None
    assert find_scale_note([("scale 1:50", 8.0), ("SCALE 1:100", 14.0)])[0] == 100
    with pytest.raises(Exception) as info:
        ConvertOptions(scale="hundred")
    assert getattr(info.value, "subcode", None) == "BAD_OPTIONS"


def test_scale_from_note_option_and_default(tmp_path):
    plan = generate_floorplan(seed=3, rooms_x=2, rooms_y=1, wall_style="pair", units="mm")
    data, to_m = vector_pdf(plan, denom=50, note="GROUND FLOOR  SCALE 1:50")
    res, doc, blob = convert(tmp_path, data, name="note.pdf")
    page = G.nodes_by_category(doc, "page")[0]["extras"]
    assert page["scale"] == "1:50" and page["scale_source"] == "note"
    tris = solid_triangles(doc, blob, {"wall"})
    for _w, (x, y) in _wall_midpoints(plan, to_m):
        assert material_at(tris, x, y, 1.0)
    texts = G.nodes_by_category(doc, "text")
    assert any("SCALE 1:50" in t["extras"]["text"] for t in texts)
    # the option wins over the note; without either the default is 1:100
    res2, doc2, _ = convert(tmp_path, data, name="opt.pdf", scale="1:50")
    assert G.nodes_by_category(doc2, "page")[0]["extras"]["scale_source"] == "option"
    data3, _ = vector_pdf(plan, denom=100)
    res3, doc3, _ = convert(tmp_path, data3, name="default.pdf")
    ex = G.nodes_by_category(doc3, "page")[0]["extras"]
    assert ex["scale"] == "1:100" and ex["scale_source"] == "default"


def _dimensioned_pdf(denom: float, texts: list[str], unit_m: float = 0.001) -> bytes:
    """A room drawn at 1:denom whose sides carry dimension texts (real text)."""
    mpp = 0.0254 / 72.0 * denom
    doc = pymupdf.open()
    page = doc.new_page(width=1191, height=842)
    shape = page.new_shape()
    x0, y0 = 150.0, 150.0
    lengths = [float(t.replace(",", ".")) * unit_m / mpp for t in texts]
    w, h = lengths[0], lengths[1]
    for a, b in [((x0, y0), (x0 + w, y0)), ((x0, y0), (x0, y0 + h)),
                 ((x0 + w, y0), (x0 + w, y0 + h)), ((x0, y0 + h), (x0 + w, y0 + h))]:
        shape.draw_line(a, b)
    shape.finish(color=(0, 0, 0), width=2.0)
    # dimension lines: 20 pt outside, the value written along them
    shape.draw_line((x0, y0 - 20), (x0 + w, y0 - 20))
    shape.draw_line((x0 - 20, y0), (x0 - 20, y0 + h))
    shape.draw_line((x0, y0 + h + 20), (x0 + w, y0 + h + 20))
    shape.finish(color=(0, 0, 0), width=0.3)
    shape.commit()
    page.insert_text((x0 + w / 2 - 12, y0 - 23), texts[0], fontsize=8)
    page.insert_text((x0 - 23, y0 + h / 2 + 12), texts[1], fontsize=8, rotate=90)
    page.insert_text((x0 + w / 2 - 12, y0 + h + 17), texts[0], fontsize=8)
    data = doc.tobytes()
    doc.close()
    return data


@pytest.mark.parametrize("denom,texts,unit_m", [(50, ["4000", "3000"], 0.001),
                                                 (200, ["12.50", "8.00"], 1.0)])
def test_scale_from_dimensions(tmp_path, denom, texts, unit_m):
    data = _dimensioned_pdf(denom, texts, unit_m)
    res, doc, blob = convert(tmp_path, data, name="dims.pdf")
    page = G.nodes_by_category(doc, "page")[0]["extras"]
    assert page["scale"] == f"1:{denom}" and page["scale_source"] == "dimensions"
    # the room's long side (plus the 20 pt to the left dimension line) measures what its
    # dimension says
    lines = [n for n in res.scene.iter_nodes() if n.category == "layer"]
    pts = np.concatenate([p.positions for n in lines for p in n.primitives])
    offset = 20 * 0.0254 / 72.0 * denom
    assert pts[:, 0].max() - pts[:, 0].min() == pytest.approx(
        float(texts[0]) * unit_m + offset, rel=0.01)


# -- scanned pages ---------------------------------------------------------------------


@pytest.mark.parametrize("rotate,noise", [(0.0, 0.0), (1.5, 12.0), (-2.5, 20.0)])
def test_scanned_plan_walls(tmp_path, rotate, noise):
    plan = generate_floorplan(seed=21, rooms_x=3, rooms_y=2, wall_style="pair", units="mm")
    vec, to_m = vector_pdf(plan)
    data = scanned_pdf(vec, dpi=200, rotate_deg=rotate, noise=noise, blur=bool(noise), seed=1)
    res, doc, blob = convert(tmp_path, data, name="scan.pdf")
    page = G.nodes_by_category(doc, "page")[0]["extras"]
    assert page["kind"] == "scanned"
    assert page["deskew_deg"] == pytest.approx(rotate, abs=0.3)
    walls = G.nodes_by_category(doc, "wall")
    assert walls
    thick = np.array([w["extras"]["thickness_m"] for w in walls])
    assert np.median(thick) == pytest.approx(0.2, abs=0.05)
    total = sum(w["extras"]["length_m"] for w in walls)
    truth = sum(np.hypot(w.end[0] - w.start[0], w.end[1] - w.start[1]) * plan.unit_scale_m
                for w in plan.walls)
    assert 0.7 * truth <= total <= 1.5 * truth
    if rotate == 0.0:
        tris = solid_triangles(doc, blob, {"wall"})
        probes = _wall_midpoints(plan, to_m)
        hits = sum(material_at(tris, x, y, 1.0) for _, (x, y) in probes)
        assert hits >= 0.9 * len(probes), f"{hits}/{len(probes)} wall probes hit"
        for room in plan.rooms:
            (x0, y0), (x1, y1) = room.bbox
            assert not material_at(tris, *to_m((x0 + x1) / 2, (y0 + y1) / 2), 1.0)


# -- multi-page, determinism, page selection ----------------------------------------------


def _multi_page(tmp_path, n: int = 3) -> bytes:
    out = pymupdf.open()
    for k in range(n):
        plan = generate_floorplan(seed=30 + k, rooms_x=2, rooms_y=1 + k % 2, units="mm")
        data, _ = vector_pdf(plan)
        src = pymupdf.open(stream=data, filetype="pdf")
        out.insert_pdf(src)
        src.close()
    data = out.tobytes(garbage=3, deflate=True)
    out.close()
    return data


def test_multi_page_and_selection(tmp_path):
    data = _multi_page(tmp_path, 3)
    res, doc, blob = convert(tmp_path, data, name="set.pdf")
    pages = G.nodes_by_category(doc, "page")
    assert [p["name"] for p in pages] == ["page-1", "page-2", "page-3"]
    offsets = [p["extras"]["offset_m"][0] for p in pages]
    assert offsets[0] == 0 and offsets[0] < offsets[1] < offsets[2]
    assert res.report["stats"]["pages"] == 3
    walls_by_page = {}
    for w in G.nodes_by_category(doc, "wall"):
        walls_by_page.setdefault(w["extras"]["source"]["page"], 0)
        walls_by_page[w["extras"]["source"]["page"]] += 1
    assert sorted(walls_by_page) == [1, 2, 3]
    res2, doc2, _ = convert(tmp_path, data, name="sel.pdf", pages="2-3")
    assert [p["name"] for p in G.nodes_by_category(doc2, "page")] == ["page-2", "page-3"]


def test_one_glb_per_page(tmp_path):
    from cad2gltf.pdf import pdf_pages_to_glb
    from tests.gltf_validator import validate_many

    p = tmp_path / "set.pdf"
    p.write_bytes(_multi_page(tmp_path, 2))
    glbs = pdf_pages_to_glb(p, ConvertOptions(glb_per_page=True))
    assert [n for n, _ in glbs] == [1, 2]
    files = []
    for n, data in glbs:
        f = tmp_path / f"page-{n}.glb"
        f.write_bytes(data)
        files.append(f)
        doc, _, _ = G.load(data)
        assert doc["asset"]["extras"]["page"] == n
    for f, rep in validate_many(files).items():
        assert rep.get("errors", 1) == 0 and not rep.get("error"), (f, rep)


def test_deterministic(tmp_path):
    plan = generate_floorplan(seed=2, rooms_x=2, rooms_y=2, units="mm")
    data, _ = vector_pdf(plan)
    a = tmp_path / "a.pdf"
    a.write_bytes(data)
    r1 = convert_path(a)
    r2 = convert_path(a)
    assert r1.glb == r2.glb
    scan = tmp_path / "scan.pdf"
    scan.write_bytes(scanned_pdf(data, dpi=120, noise=10.0, seed=3))
    s1, s2 = convert_path(scan), convert_path(scan)
    assert s1.glb == s2.glb
    assert_valid_glb(r1.glb)
    assert_valid_glb(s1.glb)


def test_reader_alone_and_text_nodes(tmp_path):
    doc = pymupdf.open()
    page = doc.new_page(width=842, height=595)
    page.draw_rect(pymupdf.Rect(100, 100, 400, 300), color=(0, 0, 0), width=0.5)
    page.insert_text((120, 150), "KITCHEN", fontsize=12)
    p = tmp_path / "simple.pdf"
    doc.save(p)
    doc.close()
    scene = pdf_readfile(p, ConvertOptions())
    texts = [n for n in scene.iter_nodes() if n.category == "text"]
    assert [t.extras["text"] for t in texts] == ["KITCHEN"]
    assert texts[0].extras["source"]["page"] == 1
    assert scene.metadata["source_type"] == "pdf"
    res, gdoc, _ = convert(tmp_path, p.read_bytes(), name="simple2.pdf")
    assert res.report["nodes_by_category"]["text"] == 1


# -- ground plane ------------------------------------------------------------------------


def test_ground_plane_textures(tmp_path):
    plan = generate_floorplan(seed=9, rooms_x=2, rooms_y=2, units="mm")
    vec, _ = vector_pdf(plan)
    scan = scanned_pdf(vec, dpi=150, rotate_deg=1.0, noise=8.0, seed=4)
    out = pymupdf.open()
    for data in (vec, scan):
        src = pymupdf.open(stream=data, filetype="pdf")
        out.insert_pdf(src)
        src.close()
    data = out.tobytes()
    out.close()
    res, doc, blob = convert(tmp_path, data, name="ground.pdf", ground_plane=True)
    grounds = G.nodes_by_category(doc, "ground_plane")
    assert [g["extras"]["source"]["page"] for g in grounds] == [1, 2]
    assert len(doc["images"]) == 2 and len(doc["textures"]) == 2
    for g, page in zip(grounds, G.nodes_by_category(doc, "page"), strict=True):
        assert doc["nodes"].index(g) in page["children"]
        prim = doc["meshes"][g["mesh"]]["primitives"][0]
        assert "TEXCOORD_0" in prim["attributes"]
        mat = doc["materials"][prim["material"]]
        img = doc["images"][doc["textures"][mat["pbrMetallicRoughness"]["baseColorTexture"]
                                            ["index"]]["source"]]
        view = doc["bufferViews"][img["bufferView"]]
        png = blob[view.get("byteOffset", 0):view.get("byteOffset", 0) + view["byteLength"]]
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # the same without the option: no images; with it twice: the same bytes
    res2, doc2, _ = convert(tmp_path, data, name="plain.pdf")
    assert "images" not in doc2
    p = tmp_path / "ground.pdf"
    assert convert_path(p, ConvertOptions(ground_plane=True)).glb == res.glb
    from cad2gltf.pdf import pdf_pages_to_glb

    for _, glb in pdf_pages_to_glb(p, ConvertOptions(ground_plane=True)):
        assert_valid_glb(glb)
        assert len(G.load(glb)[0]["images"]) == 1


# -- poché (filled) walls -------------------------------------------------------------------


def _poche_pdf() -> tuple[bytes, object]:
    """Two rooms with 25 cm filled walls (one fill path, non-zero winding), a 0.9 m gap in
    the middle wall, some thin furniture lines and a room label, at 1:100 on A3."""
    mpp = 0.0254 / 72 * 100
    ox, oy, t = 100.0, 100.0, 0.25
    doc = pymupdf.open()
    page = doc.new_page(width=1191, height=842)
    shape = page.new_shape()
    for x0, y0, x1, y1 in [(0, 0, 10.25, t), (0, 4, 10.25, 4 + t), (0, 0, t, 4 + t),
                           (10, 0, 10 + t, 4 + t), (5, 0, 5 + t, 1.5), (5, 2.4, 5 + t, 4 + t)]:
        shape.draw_rect(pymupdf.Rect(ox + x0 / mpp, oy + y0 / mpp, ox + x1 / mpp, oy + y1 / mpp))
    shape.finish(fill=(0, 0, 0), color=None)
    for k in range(6):
        shape.draw_line((ox + 1 / mpp, oy + (1 + 0.3 * k) / mpp),
                        (ox + 3 / mpp, oy + (1 + 0.3 * k) / mpp))
    shape.finish(color=(0, 0, 0), width=0.3)
    shape.commit()
    page.insert_text((ox + 1 / mpp, oy + 3 / mpp), "LIVING 20 m2", fontsize=9)
    data = doc.tobytes()
    doc.close()
    height = 842 * mpp

    def to_m(x: float, y: float) -> tuple[float, float]:  # metres from the plan's corner
        return ox * mpp + x, height - oy * mpp - y

    return data, to_m


@pytest.mark.parametrize("scanned", [False, True])
def test_poche_walls(tmp_path, scanned):
    data, to_m = _poche_pdf()
    if scanned:
        data = scanned_pdf(data, dpi=150, rotate_deg=1.0, noise=10.0, seed=2)
    res, doc, blob = convert(tmp_path, data, name="poche.pdf")
    walls = G.nodes_by_category(doc, "wall")
    assert len(walls) == 6
    thick = np.array([w["extras"]["thickness_m"] for w in walls])
    assert np.all(np.abs(thick - 0.25) < 0.03)
    total = sum(w["extras"]["length_m"] for w in walls)
    assert total == pytest.approx(2 * 10.25 + 2 * 4.25 + 1.5 + 1.85, rel=0.1)
    tris = solid_triangles(doc, blob, {"wall"})
    for x, y in [(2.5, 0.12), (5.12, 0.7), (5.12, 3.5), (10.12, 2.0), (0.12, 2.0)]:
        assert material_at(tris, *to_m(x, y), 1.0), (x, y)
    for x, y in [(2.5, 2.0), (7.5, 2.0), (5.12, 1.95)]:  # rooms, the door gap
        assert not material_at(tris, *to_m(x, y), 1.0), (x, y)


def test_text_limit_holds_for_the_whole_document(tmp_path):
    doc = pymupdf.open()
    for k in range(3):
        page = doc.new_page(width=842, height=595)
        page.draw_line((100, 100), (400, 100), color=(0, 0, 0), width=0.5)
        for j in range(4):
            page.insert_text((100, 150 + 20 * j), f"ROOM {k}.{j}", fontsize=10)
    p = tmp_path / "texts.pdf"
    doc.save(p)
    doc.close()
    res = convert_path(p, ConvertOptions(max_text_nodes=6), keep_scene=True)
    assert_valid_glb(res.glb)
    texts = [n.extras["text"] for n in res.scene.iter_nodes() if n.category == "text"]
    assert texts == ["ROOM 0.0", "ROOM 0.1", "ROOM 0.2", "ROOM 0.3", "ROOM 1.0", "ROOM 1.1"]
    assert any("12 texts" in w for w in res.warnings)


def test_rotated_page_is_read_as_displayed(tmp_path):
    data, _ = _poche_pdf()
    doc = pymupdf.open(stream=data, filetype="pdf")
    page = doc[0]
    page.set_rotation(90)
    m = page.rotation_matrix
    height = page.rect.height
    data = doc.tobytes()
    doc.close()
    res, gdoc, blob = convert(tmp_path, data, name="rotated.pdf")
    walls = G.nodes_by_category(gdoc, "wall")
    assert len(walls) == 6
    assert all(abs(w["extras"]["thickness_m"] - 0.25) < 0.03 for w in walls)
    mpp = 0.0254 / 72 * 100
    tris = solid_triangles(gdoc, blob, {"wall"})

    def to_m(x: float, y: float) -> tuple[float, float]:  # plan metres -> rotated page
        p = pymupdf.Point(100 + x / mpp, 100 + y / mpp) * m
        return p.x * mpp, (height - p.y) * mpp

    for x, y in [(2.5, 0.12), (5.12, 0.7), (10.12, 2.0)]:
        assert material_at(tris, *to_m(x, y), 1.0), (x, y)
    for x, y in [(2.5, 2.0), (5.12, 1.95)]:
        assert not material_at(tris, *to_m(x, y), 1.0), (x, y)
    texts = [n for n in res.scene.iter_nodes() if n.category == "text"]
    assert texts and texts[0].extras["rotation_deg"] == 270.0
