"""``cad2gltf convert`` through Prefect (its local API, the embedded defaults: local
files and a SQLite ledger) and ``cad2gltf jobs`` - as the README's first command runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.gltf_validator import validate_many

REPO = Path(__file__).resolve().parent.parent


def test_convert_through_prefect_and_list_jobs(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "CAD2GLTF_", "AWS_"))}
    env.update(PYTHONPATH=str(REPO), CAD2GLTF_HOME=str(tmp_path / "home"),
               PREFECT_HOME=str(tmp_path / "prefect"))
    bad = tmp_path / "bad.dxf"
    bad.write_bytes(b"not a drawing at all\n" * 5)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "convert", str(REPO / "samples" / "house.dxf"),
         str(bad), str(REPO / "samples" / "office.dxf"), "--out", str(out), "--json"],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["status"] for r in recs] == ["success", "error", "success"]
    assert all(r["job_id"] and r["flow_run_id"] for r in recs)
    assert recs[1]["error_code"] == "VALIDATION_ERROR"
    reports = validate_many([out / "house.glb", out / "office.glb"])
    assert all(r["errors"] == 0 for r in reports.values())
    assert (out / "house.png").read_bytes().startswith(b"\x89PNG")
    jobs = subprocess.run([sys.executable, "-m", "flows.cli", "jobs", "--json"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    rows = [json.loads(line) for line in jobs.stdout.splitlines()]
    assert sorted(r["status"] for r in rows) == ["FAILURE", "SUCCESS", "SUCCESS"]
    assert {r["job_id"] for r in rows} == {r["job_id"] for r in recs}
    failed = next(r for r in rows if r["status"] == "FAILURE")
    assert failed["error_code"].startswith("VALIDATION_ERROR")
