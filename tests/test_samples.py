"""The bundled samples (what the README's first command converts) are current and convert."""

from __future__ import annotations

from pathlib import Path

import pytest

from cad2gltf import convert_path
from cad2gltf.synth.floorplan import encode_floorplan, generate_floorplan
from samples.generate import SAMPLES
from tests.gltf_validator import assert_valid_glb

HERE = Path(__file__).resolve().parent.parent / "samples"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_is_current_and_converts(name):
    path = HERE / name
    assert path.read_bytes() == encode_floorplan(generate_floorplan(**SAMPLES[name])), \
        f"{name} is stale: run `PYTHONPATH=. python samples/generate.py`"
    res = convert_path(path)
    assert_valid_glb(res.glb)
    cats = res.report["nodes_by_category"]
    assert cats["wall"] > 0 and cats["door"] > 0 and cats["window"] > 0
    assert not [w for w in res.warnings if "not near any wall" in w]
