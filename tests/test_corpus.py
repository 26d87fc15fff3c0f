"""The real-drawing corpus (../shared/corpus/dxf): every file converts to a
validator-clean GLB with geometry, or fails with a classified error.

The expected split is pinned: a file that converted before and fails now (or the other
way round) fails the suite, so regressions cannot hide behind "classified".
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cad2gltf import convert_path
from cad2gltf.errors import ConversionError
from tests import glb as G
from tests.conftest import CORPUS
from tests.gltf_validator import validate_many

FILES = sorted(p for p in (CORPUS / "dxf").rglob("*") if p.suffix.lower() == ".dxf")
PER_FILE_SECONDS = 60.0

# Drawings whose model space holds nothing convertible (checked by hand with ezdxf:
# empty model spaces, or only circles of radius <= 0).
EXPECTED_NO_GEOMETRY = {
    "Minimal_DXF_AC1009.dxf", "Minimal_DXF_AC1021.dxf", "circle_radius_le_0.dxf",
    "dxf_unicode.dxf", "layout_broken_links.dxf", "layout_broken_links_2.dxf",
    "layout_missing_block_definition.dxf", "layout_missing_block_record.dxf",
    "r12_blocks_with_no_names.dxf", "r2000_blocks_with_no_name_and_no_block_record.dxf",
    "r2000_blocks_with_no_names.dxf", "small_r14.dxf",
}


def _id(p: Path) -> str:
    return str(p.relative_to(CORPUS / "dxf"))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, corpus_dir):
    out = tmp_path_factory.mktemp("corpus")
    results: dict[str, dict] = {}
    for i, path in enumerate(FILES):
        t0 = time.perf_counter()
        try:
            res = convert_path(path)
            glb = out / f"{i:03d}_{path.stem}.glb"
            glb.write_bytes(res.glb)
            results[_id(path)] = {"ok": True, "glb": glb, "report": res.report}
        except ConversionError as exc:
            results[_id(path)] = {"ok": False, "code": exc.code, "subcode": exc.subcode,
                                  "message": exc.message}
        results[_id(path)]["seconds"] = time.perf_counter() - t0
    reports = validate_many([r["glb"] for r in results.values() if r["ok"]])
    for r in results.values():
        if r["ok"]:
            r["validator"] = reports[r["glb"]]
    ok = sum(r["ok"] for r in results.values())
    print(f"\ncorpus: {len(results)} files, {ok} converted, {len(results) - ok} classified errors")
    return results


def test_corpus_is_complete():
    assert len(FILES) == 83, f"expected the 83 corpus drawings, found {len(FILES)}"


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_corpus_file(path, outcomes):
    r = outcomes[_id(path)]
    assert r["seconds"] < PER_FILE_SECONDS
    if path.name in EXPECTED_NO_GEOMETRY:
        assert not r["ok"] and (r["code"], r["subcode"]) == ("PARSING_ERROR", "NO_GEOMETRY")
        return
    assert r["ok"], f"{r.get('code')}/{r.get('subcode')}: {r.get('message')}"
    assert r["validator"]["errors"] == 0, r["validator"]["messages"]
    doc, blob, _ = G.load(r["glb"].read_bytes())
    assert doc.get("meshes") or any(n.get("extras", {}).get("category") == "text"
                                    for n in doc["nodes"])
