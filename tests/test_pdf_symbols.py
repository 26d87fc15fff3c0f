"""Symbols on PDF pages: detections -> openings cut into walls, other classes as
placeholders.

The pipeline after the detector (pixel boxes -> page -> metres, hosting in the nearest
wall, deskew of scans, placeholders) is checked with an *oracle* detector: an object
with the detector's interface that returns the ground-truth symbol boxes of the rendered
plan (:func:`cad2gltf.synth.render.symbol_boxes`), so that failures point at the
converter, not at the model. The shipped model itself is evaluated by the detector's
own tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from cad2gltf import ConvertOptions, convert_path
from cad2gltf.pdf import symbols
from cad2gltf.synth.floorplan import generate_floorplan
from cad2gltf.synth.render import plan_to_pdf, plan_to_raster, raster_to_pdf, symbol_boxes
from tests import glb as G
from tests.gltf_validator import assert_valid_glb
from tests.test_pdf import material_at, solid_triangles


@dataclass(frozen=True)
class _Det:
    label: str
    score: float
    box: tuple[float, float, float, float]


class OracleDetector:
    """The detector interface answering with the true boxes of known pages, in order."""

    def __init__(self, boxes_per_page, dpi: float) -> None:
        self.pages = list(boxes_per_page)
        self.dpi = dpi
        self.tile = 640
        self.classes = ("door", "window", "stairs", "toilet", "sink", "bathtub")
        self.device = "cpu"
        self.calls: list[int] = []

    def detect(self, images, conf=0.25, iou=0.5, batch=16):
        self.calls.append(len(images))
        out = []
        for img in images:
            boxes = self.pages.pop(0)
            h, w = img.shape[:2]
            assert all(0 <= b[0] < b[2] <= w + 1 and 0 <= b[1] < b[3] <= h + 1
                       for _, b in boxes)
            out.append([_Det(label, 0.9, tuple(b)) for label, b in boxes])
        return out


@pytest.fixture
def oracle(monkeypatch):
    def install(boxes_per_page, dpi):
        det = OracleDetector(boxes_per_page, dpi)
        monkeypatch.setitem(symbols._CACHE, "default", symbols.SymbolDetector(det))
        return det

    yield install
    symbols._CACHE.pop("default", None)


def _to_m(tf, denom: float = 100.0):
    mpp = 0.0254 / 72.0 * denom
    height = tf.page_size_pt[1]

    def to_m(x: float, y: float) -> tuple[float, float]:
        px, py = tf.to_points((x, y))
        return px * mpp, (height - py) * mpp

    return to_m


def _check_openings(plan, to_m, doc, blob, min_found: float = 1.0):
    o = ConvertOptions()
    tris = solid_triangles(doc, blob, {"wall", "door", "window"})
    found = 0
    for op in plan.openings:
        cx, cy = to_m(*op.center)
        z = 1.0 if op.kind == "door" else (o.window_sill + o.window_head) / 2
        if not material_at(tris, cx, cy, z) and material_at(tris, cx, cy, 2.5):
            found += 1
    assert found >= min_found * len(plan.openings), f"{found}/{len(plan.openings)} open"


def test_vector_page_detections_become_openings(tmp_path, oracle):
    plan = generate_floorplan(seed=12, rooms_x=3, rooms_y=2, units="mm", symbols=True)
    pdf, tf = plan_to_pdf(plan, scale=100, paper="A3")
    dpi = 100.0
    boxes = symbol_boxes(plan, tf, dpi)
    det = oracle([boxes], dpi)
    p = tmp_path / "plan.pdf"
    p.write_bytes(pdf)
    res = convert_path(p, ConvertOptions(detect_symbols=True), keep_scene=True)
    assert_valid_glb(res.glb)
    assert det.calls == [1]
    doc, blob, _ = G.load(res.glb)
    cats = res.report["nodes_by_category"]
    n_doors = sum(o.kind == "door" for o in plan.openings)
    n_windows = sum(o.kind == "window" for o in plan.openings)
    assert cats.get("door") == n_doors and cats.get("window") == n_windows
    for n in G.nodes_by_category(doc, "door") + G.nodes_by_category(doc, "window"):
        assert n["extras"]["host_wall"], n["name"]
        assert n["extras"]["source"]["items"][0].startswith("p1#det")
    _check_openings(plan, _to_m(tf), doc, blob, 0.9)
    others = {label for label, _ in boxes} - {"door", "window"}
    assert others, "the plan should have stairs or fixtures"
    for label in others:
        nodes = G.nodes_by_category(doc, label)
        assert len(nodes) == sum(1 for lb, _ in boxes if lb == label)
        for n in nodes:
            assert n["extras"]["score"] == pytest.approx(0.9)
            assert len(n["extras"]["box_px"]) == 4 and n["extras"]["source"]["page"] == 1


def test_scanned_rotated_page_detections_follow_the_deskew(tmp_path, oracle):
    plan = generate_floorplan(seed=14, rooms_x=3, rooms_y=2, units="mm", symbols=True)
    dpi = 150.0
    img, tf = plan_to_raster(plan, scale=100, paper="A3", dpi=dpi, seed=3,
                             rotation_deg=1.5, noise=6.0, blur=0.5)
    boxes = symbol_boxes(plan, tf, dpi)
    oracle([boxes], dpi)
    p = tmp_path / "scan.pdf"
    p.write_bytes(raster_to_pdf([img], dpi=dpi))
    res = convert_path(p, ConvertOptions(detect_symbols=True, dpi=150), keep_scene=True)
    assert_valid_glb(res.glb)
    doc, blob, _ = G.load(res.glb)
    page = G.nodes_by_category(doc, "page")[0]["extras"]
    assert page["kind"] == "scanned" and page["deskew_deg"] == pytest.approx(1.5, abs=0.3)
    hosted = [n for n in G.nodes_by_category(doc, "door") + G.nodes_by_category(doc, "window")
              if n["extras"].get("host_wall")]
    assert len(hosted) >= 0.8 * len(plan.openings)
    _check_openings(plan, _to_m(tf), doc, blob, 0.7)


def test_detections_are_batched_per_chunk(tmp_path, oracle):
    import pymupdf

    from cad2gltf.pdf.reader import CHUNK

    plan = generate_floorplan(seed=16, rooms_x=2, rooms_y=1, units="mm", symbols=True)
    pdf, tf = plan_to_pdf(plan, scale=100, paper="A3")
    src = pymupdf.open(stream=pdf, filetype="pdf")
    out = pymupdf.open()
    n_pages = CHUNK + 2
    for _ in range(n_pages):
        out.insert_pdf(src)
    p = tmp_path / "set.pdf"
    out.save(p)
    boxes = symbol_boxes(plan, tf, 100.0)
    det = oracle([boxes] * n_pages, 100.0)
    res = convert_path(p, ConvertOptions(detect_symbols=True), keep_scene=True)
    assert_valid_glb(res.glb)
    assert det.calls == [CHUNK, 2]
    doors = [n for n in res.scene.iter_nodes() if n.category == "door"]
    assert len(doors) == n_pages * sum(o.kind == "door" for o in plan.openings)
    pages = {d.extras["source"]["page"] for d in doors}
    assert pages == set(range(1, n_pages + 1))
    assert np.all([d.extras["host_wall"] for d in doors])


def test_detector_does_not_duplicate_openings_from_door_and_window_layers(tmp_path):
    """A vector PDF whose layers already give the openings: the detector's doors and
    windows are not added again (regression: every opening came out twice)."""
    plan = generate_floorplan(seed=4, rooms_x=2, rooms_y=2)
    pdf, _ = plan_to_pdf(plan, scale=100)
    p = tmp_path / "layered.pdf"
    p.write_bytes(pdf)
    plain = convert_path(p, ConvertOptions()).report["nodes_by_category"]
    res = convert_path(p, ConvertOptions(detect_symbols=True))
    assert_valid_glb(res.glb)
    cats = res.report["nodes_by_category"]
    if plain.get("door"):  # the layers were read
        assert cats.get("door") == plain["door"] and cats.get("window") == plain.get("window")
    else:  # no layers: the detector alone gives them
        assert cats.get("door") == sum(o.kind == "door" for o in plan.openings)
