"""The PDF converter with the real detector runtime (:mod:`cad2gltf.detect`).

* missing weights are a classified ``DETECTOR_ERROR/WEIGHTS_MISSING``, never a download;
* the real runtime (torch, ultralytics, tiling, batching) runs inside a conversion with a
  weights file of an *untrained* network of the shipped architecture, so that the
  plumbing is tested independently of how good the model is.
"""

from __future__ import annotations

import pytest

from cad2gltf import ConvertOptions, convert_path
from cad2gltf.errors import DetectorError
from cad2gltf.pdf import symbols
from cad2gltf.synth.floorplan import generate_floorplan
from cad2gltf.synth.render import plan_to_pdf
from tests import glb as G
from tests.gltf_validator import assert_valid_glb


@pytest.fixture
def fresh_detector_cache():
    symbols._CACHE.clear()
    yield
    symbols._CACHE.clear()


def _untrained_weights(path, dpi: float = 100.0, tile: int = 320):
    import json
    from pathlib import Path

    import torch
    import yaml
    from ultralytics.nn.tasks import DetectionModel

    from cad2gltf import detect
    from cad2gltf.detect import CLASSES
    from cad2gltf.detect.train import WEIGHTS_FORMAT, offline_ultralytics

    offline_ultralytics()
    cfg = yaml.safe_load((Path(detect.__file__).parent / "yolo-plan.yaml").read_text())
    torch.manual_seed(0)
    model = DetectionModel(cfg, nc=len(CLASSES), verbose=False)
    state = {k: v.detach().half() if v.is_floating_point() else v.detach()
             for k, v in model.float().state_dict().items()}
    torch.save({"format": WEIGHTS_FORMAT, "classes": list(CLASSES), "dpi": dpi, "tile": tile,
                "imgsz": tile, "yaml": json.loads(json.dumps(dict(model.yaml))),
                "state_dict": state, "stride": [float(s) for s in model.stride],
                "extra": {"note": "untrained, for tests"}}, path)
    return path


def test_missing_weights_is_a_detector_error(tmp_path, monkeypatch, fresh_detector_cache):
    monkeypatch.setenv("CAD2GLTF_DETECTOR_WEIGHTS", str(tmp_path / "nope.pt"))
    plan = generate_floorplan(seed=1, rooms_x=2, rooms_y=1, units="mm")
    pdf, _ = plan_to_pdf(plan, scale=100, paper="A3")
    p = tmp_path / "plan.pdf"
    p.write_bytes(pdf)
    with pytest.raises(DetectorError) as info:
        convert_path(p, ConvertOptions(detect_symbols=True))
    assert info.value.full_code == "DETECTOR_ERROR/WEIGHTS_MISSING"
    # without detection the same file converts
    assert_valid_glb(convert_path(p).glb)


def test_real_runtime_inside_a_conversion(tmp_path, monkeypatch, fresh_detector_cache):
    weights = _untrained_weights(tmp_path / "untrained.pt")
    monkeypatch.setenv("CAD2GLTF_DETECTOR_WEIGHTS", str(weights))
    plan = generate_floorplan(seed=2, rooms_x=2, rooms_y=2, units="mm", symbols=True)
    pdf, _ = plan_to_pdf(plan, scale=100, paper="A3")
    p = tmp_path / "plan.pdf"
    p.write_bytes(pdf)
    det = symbols.load_symbol_detector()
    assert det.dpi == 100.0 and det.device in ("cpu", "cuda")
    res = convert_path(p, ConvertOptions(detect_symbols=True), keep_scene=True)
    assert_valid_glb(res.glb)
    doc, _, _ = G.load(res.glb)
    assert G.nodes_by_category(doc, "page")[0]["extras"]["kind"] == "vector"
    assert res.report["nodes_by_category"].get("wall", 0) > 0
    # whatever the untrained network saw lies on the page and is classified
    for node in res.scene.iter_nodes():
        if node.category in ("door", "window", "stairs", "toilet", "sink", "bathtub"):
            x0, y0, x1, y1 = node.extras["source"]["bbox_pt"]
            assert -1 <= x0 <= x1 <= 1192 and -1 <= y0 <= y1 <= 843


def _recall(plan, tf, doc, max_dist: float = 0.3) -> float:
    mpp = 0.0254 / 72.0 * 100
    height = tf.page_size_pt[1]
    hosted = [n for n in G.nodes_by_category(doc, "door") + G.nodes_by_category(doc, "window")
              if n["extras"].get("host_wall")]
    found = 0
    for op in plan.openings:
        px, py = tf.to_points(op.center)
        cx, cy = px * mpp, (height - py) * mpp
        found += any(n["extras"]["center_m"] and n["name"].startswith(op.kind)
                     and ((n["extras"]["center_m"][0] - cx) ** 2
                          + (n["extras"]["center_m"][1] - cy) ** 2) ** 0.5 < max_dist
                     for n in hosted)
    return found / len(plan.openings)


@pytest.mark.parametrize("scanned", [False, True])
def test_shipped_weights_cut_openings(tmp_path, fresh_detector_cache, scanned):
    """The shipped model on layer-less PDFs: doors and windows found, hosted, cut.

    Fails (DETECTOR_ERROR/WEIGHTS_MISSING) when the weights are not in the package.
    """
    from cad2gltf.synth.render import plan_to_raster, raster_to_pdf

    plan = generate_floorplan(seed=44, rooms_x=3, rooms_y=2, units="mm", symbols=True)
    if scanned:
        img, tf = plan_to_raster(plan, scale=100, paper="A3", dpi=150, seed=5,
                                 rotation_deg=1.0, noise=8.0, blur=0.6, jpeg_quality=75)
        data = raster_to_pdf([img], dpi=150)
    else:
        data, tf = plan_to_pdf(plan, scale=100, paper="A3")
    p = tmp_path / "plan.pdf"
    p.write_bytes(data)
    res = convert_path(p, ConvertOptions(detect_symbols=True), keep_scene=True)
    assert_valid_glb(res.glb)
    doc, _, _ = G.load(res.glb)
    assert _recall(plan, tf, doc) >= 0.75
