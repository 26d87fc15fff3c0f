"""The command-line contract: outputs, JSON lines, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ezdxf

from tests.gltf_validator import validate_many

REPO = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("CAD2GLTF_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "cad2gltf", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


def _good(path: Path) -> Path:
    doc = ezdxf.new("R2010")
    doc.units = 6
    doc.modelspace().add_circle((0, 0), 2)
    doc.saveas(path)
    return path


def test_convert_json_lines_and_exit_codes(tmp_path):
    good = _good(tmp_path / "good.dxf")
    empty = tmp_path / "empty.dxf"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.dxf"
    corrupt.write_bytes(b"0\nSECTION\n2\nENTITIES\n0\nLINE\n10\nxx\n\xff\xfe")
    other = _good(tmp_path / "other.dxf")
    out = tmp_path / "out"
    proc = run("convert", str(good), str(empty), str(corrupt), str(other), "--out", str(out),
               "--json")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["status"] for r in recs] == ["success", "error", "error", "success"]
    keys = {"input", "status", "output", "preview", "error_code", "message", "seconds",
            "warnings"}
    assert all(keys <= set(r) for r in recs)
    assert recs[1]["error_code"] == "VALIDATION_ERROR" and recs[1]["error_subcode"] == "EMPTY_FILE"
    assert recs[2]["error_code"] == "PARSING_ERROR"
    assert recs[0]["output"] == str(out / "good.glb") and Path(recs[0]["preview"]).is_file()
    assert (out / "good.png").read_bytes().startswith(b"\x89PNG")
    # failed inputs leave nothing behind, not even temporary files
    assert sorted(p.name for p in out.iterdir()) == ["good.glb", "good.png", "other.glb",
                                                      "other.png"]
    reports = validate_many([out / "good.glb", out / "other.glb"])
    assert all(r["errors"] == 0 for r in reports.values())


def test_all_good_exit_zero_and_human_output(tmp_path):
    good = _good(tmp_path / "a.dxf")
    proc = run("convert", str(good), "--out", str(tmp_path / "o"))
    assert proc.returncode == 0
    assert "ok" in proc.stdout and "1 of 1 converted" in proc.stdout
    validate_many([tmp_path / "o" / "a.glb"])


def test_usage_errors_exit_two(tmp_path):
    assert run("convert", "--out", str(tmp_path)).returncode == 2  # no inputs
    assert run("convert", "x.dxf").returncode == 2  # no --out
    assert run("frobnicate").returncode == 2
    bad_opts = run("convert", "x.dxf", "--out", str(tmp_path), "--options", '{"nope": 1}')
    assert bad_opts.returncode == 2 and "unknown option" in bad_opts.stderr
    assert "Traceback" not in bad_opts.stderr


def test_options_and_units_flags(tmp_path):
    good = _good(tmp_path / "u.dxf")
    proc = run("convert", str(good), "--out", str(tmp_path / "o"), "--json", "--units", "mm",
               "--options", json.dumps({"wall_height": 3.0}))
    rec = json.loads(proc.stdout)
    assert rec["status"] == "success" and rec["units"] == "mm"
    validate_many([tmp_path / "o" / "u.glb"])


def test_duplicate_stems_do_not_overwrite(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = _good(tmp_path / "a" / "p.dxf"), _good(tmp_path / "b" / "p.dxf")
    proc = run("convert", str(one), str(two), "--out", str(tmp_path / "o"), "--json")
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert recs[0]["status"] == "success"
    assert recs[1]["error_subcode"] == "DUPLICATE_OUTPUT" and proc.returncode == 1
    validate_many([tmp_path / "o" / "p.glb"])


def test_missing_input_is_classified(tmp_path):
    proc = run("convert", str(tmp_path / "missing.dxf"), "--out", str(tmp_path / "o"), "--json")
    rec = json.loads(proc.stdout)
    assert proc.returncode == 1 and rec["error_subcode"] == "NOT_FOUND"
