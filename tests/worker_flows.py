"""Small flows the prefork-worker tests and benchmark deploy (entrypoints of this file).

Each flow writes what it computed to ``out`` (a JSON file), so a test can check the
result of a run that happened in another process.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from prefect import flow, task

#: module state that would leak from one run to the next in a warm child
_SEEN: list[str] = []


def _write(out: str | None, payload: dict) -> None:
    if out:
        tmp = Path(out + ".tmp")
        tmp.write_text(json.dumps(payload))
        tmp.replace(out)


@task
def double_number(x: int) -> int:
    return 2 * x


@flow(name="double", log_prints=False)
async def double(x: int = 21, out: str | None = None) -> int:
    """The trivial flow of the worker benchmark: one task that doubles a number."""
    value = double_number(x)
    _write(out, {"value": value, "pid": os.getpid()})
    return value


@flow(name="sleepy")
async def sleepy(seconds: float = 30.0, out: str | None = None) -> float:
    """Sleeps (in small steps) so a test can kill or cancel it mid-run."""
    _write(out, {"started": True, "pid": os.getpid()})
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        await asyncio.sleep(0.05)
    return seconds


@flow(name="probe")
async def probe(tag: str, out: str | None = None) -> dict:
    """Reports process facts, and what module state it found, to check run isolation."""
    seen_before = list(_SEEN)
    _SEEN.append(tag)
    payload = {
        "pid": os.getpid(),
        "seen_before": seen_before,
        "flow_run_id": os.environ.get("PREFECT__FLOW_RUN_ID"),
        "cwd": os.getcwd(),
        "env_marker": os.environ.get("CAD2GLTF_TEST_MARKER"),
        "preloaded_ezdxf": "ezdxf" in sys.modules,
    }
    _write(out, payload)
    return payload


@flow(name="convert-probe")
async def convert_probe(source: str, options: dict | None = None,
                        out: str | None = None) -> str:
    """Converts a drawing with the pure core and reports the GLB's sha256."""
    import hashlib

    from cad2gltf.convert import convert_path
    from cad2gltf.options import ConvertOptions

    result = convert_path(source, ConvertOptions.from_dict(options or {}), preview=False)
    digest = hashlib.sha256(result.glb).hexdigest()
    _write(out, {"sha256": digest, "pid": os.getpid(), "report": result.report["nodes_by_category"]})
    return digest
