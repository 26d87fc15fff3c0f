"""Tests of the plan renderer (cad2gltf.synth.render) and the opt-in plan symbols."""

from __future__ import annotations

import math

import numpy as np
import pymupdf
import pytest

from cad2gltf.synth import (
    DOOR_STYLES,
    SYMBOL_KINDS,
    WINDOW_STYLES,
    encode_floorplan,
    generate_floorplan,
)
from cad2gltf.synth.render import (
    PageTransform,
    plan_to_pdf,
    plan_to_raster,
    plans_to_pdf,
    raster_to_pdf,
    symbol_boxes,
)


@pytest.fixture(scope="module")
def single_plan():
    # single centre-line walls: every wall is one LINE from start to end
    return generate_floorplan(seed=7, rooms_x=3, rooms_y=2, wall_style="single", symbols=True)


def _segments(page: pymupdf.Page) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    out = []
    for path in page.get_drawings():
        for item in path["items"]:
            if item[0] == "l":
                out.append(((item[1].x, item[1].y), (item[2].x, item[2].y)))
    return out


def test_symbols_are_opt_in_and_default_bytes_unchanged():
    base = encode_floorplan(generate_floorplan(seed=3))
    again = encode_floorplan(
        generate_floorplan(seed=3, symbols=False, door_style="arc", window_style="glass")
    )
    assert base == again
    plan = generate_floorplan(seed=3)
    assert plan.symbols == []


def test_symbols_ground_truth_matches_inserts():
    from ezdxf import bbox as ezbbox

    kinds = set()
    for seed in range(6):
        plan = generate_floorplan(seed=seed, rooms_x=3, rooms_y=3, symbols=True)
        plain = generate_floorplan(seed=seed, rooms_x=3, rooms_y=3)
        # the rest of the plan is unchanged by the symbols
        assert [o.center for o in plan.openings] == [o.center for o in plain.openings]
        assert [f.bbox for f in plan.furniture] == [f.bbox for f in plain.furniture]
        for s in plan.symbols:
            kinds.add(s.kind)
            insert = plan.doc.entitydb[s.handle]
            assert insert.dxftype() == "INSERT" and insert.dxf.name == s.block
            box = ezbbox.extents([insert], fast=False)
            (x0, y0), (x1, y1) = s.bbox
            assert box.extmin.x >= x0 - 1e-6 and box.extmax.x <= x1 + 1e-6
            assert box.extmin.y >= y0 - 1e-6 and box.extmax.y <= y1 + 1e-6
            # symbols never overlap furniture
            for f in plan.furniture:
                (fx0, fy0), (fx1, fy1) = f.bbox
                assert x1 <= fx0 or fx1 <= x0 or y1 <= fy0 or fy1 <= y0
    assert kinds == set(SYMBOL_KINDS)


@pytest.mark.parametrize("door_style", DOOR_STYLES)
@pytest.mark.parametrize("window_style", WINDOW_STYLES)
def test_styles_are_deterministic(door_style, window_style):
    kw = dict(seed=2, symbols=True, door_style=door_style, window_style=window_style)
    assert encode_floorplan(generate_floorplan(**kw)) == encode_floorplan(generate_floorplan(**kw))


def test_transform_maps_wall_ends_to_drawn_lines(single_plan):
    pdf, tr = plan_to_pdf(single_plan, scale=100, paper="A3")
    assert isinstance(tr, PageTransform)
    assert tr.scale_denominator == 100 and tr.unit_scale_m == 1.0
    # 1 m at 1:100 is 10 mm of paper
    assert tr.mm_per_unit_on_paper == pytest.approx(10.0, rel=2e-3)
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        assert doc.page_count == 1
        page = doc[0]
        assert page.rect.width == pytest.approx(420 / 25.4 * 72, abs=1.0)
        assert page.rect.height == pytest.approx(297 / 25.4 * 72, abs=1.0)
        segments = _segments(page)
    assert segments
    for wall in single_plan.walls[:6]:
        for end in (wall.start, wall.end):
            px, py = tr.to_points(end)
            best = min(min(math.dist((px, py), a), math.dist((px, py), b)) for a, b in segments)
            assert best < 0.3, (end, (px, py), best)


def test_scale_changes_size(single_plan):
    _, t50 = plan_to_pdf(single_plan, scale=50)
    _, t200 = plan_to_pdf(single_plan, scale=200)
    assert t50.points_per_unit == pytest.approx(4 * t200.points_per_unit)


def test_pdf_deterministic_and_multipage(single_plan):
    a, _ = plan_to_pdf(single_plan, scale=100, lineweight_scale=1.5, font="DejaVuSerif.ttf")
    b, _ = plan_to_pdf(single_plan, scale=100, lineweight_scale=1.5, font="DejaVuSerif.ttf")
    assert a == b
    other = generate_floorplan(seed=8, rooms_x=2, rooms_y=2)
    pdf = plans_to_pdf([single_plan, other, single_plan], scale=[100, 50, 200])
    assert pdf == plans_to_pdf([single_plan, other, single_plan], scale=[100, 50, 200])
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        assert doc.page_count == 3
        assert all(len(doc[i].get_drawings()) > 50 for i in range(3))


@pytest.mark.parametrize("dpi", [72, 100, 150])
def test_raster_size_is_paper_times_dpi(single_plan, dpi):
    img, tr = plan_to_raster(single_plan, scale=100, paper="A3", dpi=dpi)
    assert img.dtype == np.uint8 and img.ndim == 2
    assert abs(img.shape[1] - 420 / 25.4 * dpi) <= 1.5
    assert abs(img.shape[0] - 297 / 25.4 * dpi) <= 1.5
    assert (img.shape[1], img.shape[0]) == tr.pixel_size(dpi)


def test_raster_transform_hits_ink_with_rotation(single_plan):
    kw = dict(scale=100, dpi=100, seed=4, noise=6.0, blur=0.6, speckle=0.0005, jpeg_quality=70)
    img, tr = plan_to_raster(single_plan, rotation_deg=2.5, **kw)
    img2, _ = plan_to_raster(single_plan, rotation_deg=2.5, **kw)
    assert np.array_equal(img, img2)  # deterministic from the seed
    assert tr.rotation_deg == 2.5
    for wall in single_plan.walls[:8]:
        mid = ((wall.start[0] + wall.end[0]) / 2, (wall.start[1] + wall.end[1]) / 2)
        x, y = tr.to_pixels(mid, 100)
        patch = img[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3]
        assert patch.min() < 110, (mid, x, y)
    # the same place without rotation is elsewhere by several pixels
    flat = PageTransform(**{**tr.__dict__, "rotation_deg": 0.0})
    far = single_plan.walls[0].start
    assert math.dist(flat.to_pixels(far, 100), tr.to_pixels(far, 100)) > 5


def test_symbol_boxes_cover_symbols(single_plan):
    img, tr = plan_to_raster(single_plan, scale=100, dpi=100)
    boxes = symbol_boxes(single_plan, tr, 100)
    labels = [b[0] for b in boxes]
    assert labels.count("door") == sum(o.kind == "door" for o in single_plan.openings)
    assert labels.count("window") == sum(o.kind == "window" for o in single_plan.openings)
    assert len(boxes) == len(single_plan.openings) + len(single_plan.symbols)
    for label, (x0, y0, x1, y1) in boxes:
        assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0]
        inside = img[int(y0) : int(math.ceil(y1)), int(x0) : int(math.ceil(x1))]
        assert inside.min() < 100, label  # the symbol is drawn inside its box
    # door boxes include the swing: about width x width (0.8-1.0 m = 28-35 px at 1:100)
    for (label, (x0, y0, x1, y1)), o in zip(boxes, single_plan.openings, strict=False):
        if label == "door":
            side = o.width * tr.points_per_unit * 100 / 72
            assert min(x1 - x0, y1 - y0) >= 0.9 * side


def test_raster_to_pdf_is_image_only(single_plan):
    img, _ = plan_to_raster(single_plan, scale=100, dpi=100, noise=4.0, seed=1)
    pdf = raster_to_pdf([img, img], dpi=100)
    assert pdf == raster_to_pdf([img, img], dpi=100)
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        assert doc.page_count == 2
        page = doc[0]
        assert page.get_drawings() == []
        assert page.get_text().strip() == ""
        assert len(page.get_images()) == 1
        assert page.rect.width == pytest.approx(img.shape[1] * 72 / 100)
        pix = page.get_pixmap(dpi=100, colorspace=pymupdf.csGRAY)
        assert (pix.width, pix.height) == (img.shape[1], img.shape[0])


def test_bad_options(single_plan):
    with pytest.raises(ValueError):
        plan_to_pdf(single_plan, paper="B7")
    with pytest.raises(ValueError):
        plan_to_pdf(single_plan, scale=0)
    with pytest.raises(ValueError):
        plans_to_pdf([])
    with pytest.raises(ValueError):
        raster_to_pdf([], dpi=100)
    with pytest.raises(ValueError):
        generate_floorplan(seed=1, door_style="sliding")
