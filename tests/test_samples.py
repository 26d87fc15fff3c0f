"""The bundled samples (what the README's first command converts) are current and convert."""

from __future__ import annotations

from pathlib import Path

import pytest

from cad2gltf import convert_path
from cad2gltf.synth.floorplan import encode_floorplan, generate_floorplan
from samples.generate import PDF_SAMPLES, SAMPLES, encode_pdf_sample
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


def test_generation_does_not_depend_on_hash_seed_or_history():
    """Regression: ezdxf wrote CLASSES in set order, so bytes changed between processes."""
    import os
    import subprocess
    import sys

    code = ("import hashlib; from cad2gltf.synth.floorplan import encode_floorplan, "
            "generate_floorplan; from samples.generate import SAMPLES; "
            "print(hashlib.sha256(encode_floorplan(generate_floorplan("
            "**SAMPLES['apartment.dxf']))).hexdigest())")
    digests = set()
    for seed in ("0", "1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(HERE.parent))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, timeout=120).stdout.strip()
        digests.add(out)
    import hashlib

    assert digests == {hashlib.sha256((HERE / "apartment.dxf").read_bytes()).hexdigest()}


@pytest.mark.parametrize("name", sorted(PDF_SAMPLES))
def test_pdf_sample_is_current_and_converts(name):
    path = HERE / name
    assert path.read_bytes() == encode_pdf_sample(name), \
        f"{name} is stale: run `PYTHONPATH=. python samples/generate.py`"
    res = convert_path(path)
    assert_valid_glb(res.glb)
    assert res.report["file_type"] == "pdf"
    assert res.report["nodes_by_category"]["wall"] >= 12
