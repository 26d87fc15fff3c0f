"""Orchestration overhead: the same drawings through the pure core and through the
``convert-file`` flow (Prefect's local API, warm process), per file.

    PYTHONPATH=. python benchmarks/orchestration.py [--repeat 7] [--busy 1]

Every flow run converts content it has not seen (the drawing with a different DXF
comment in front: another sha256, so no cache hit), so it does the whole work:
validate, download, convert, upload, ledger transitions, artifacts. By default the runs
share one home (store, SQLite ledger), as the runs of a warm worker share their
process's connections; ``--fresh-home`` gives every run empty folders and fresh
connections instead (adds the per-process set-up: ledger migration, result-storage
block, store client). Target (issue 3): <= 0.3 s of overhead per file for a 10k-entity
drawing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def drawings() -> dict[str, Path]:
    from cad2gltf.synth.floorplan import generate_floorplan, generate_large_drawing, write_floorplan

    data = ROOT / "benchmarks" / "data"
    data.mkdir(parents=True, exist_ok=True)
    out = {}
    small = data / "orch_small.dxf"
    if not small.exists():
        write_floorplan(generate_floorplan(seed=3, rooms_x=3, rooms_y=2), small)
    out["small plan (~250 entities)"] = small
    big = data / "plan_10k.dxf"
    if not big.exists():
        write_floorplan(generate_large_drawing(target_entities=10_000, seed=42), big)
    out["10k entities"] = big
    return out


_COUNTER = [0]


def variant(path: Path, base: Path) -> Path:
    """The drawing with a unique DXF comment in front: same work, another sha256."""
    _COUNTER[0] += 1
    out = base / "variants" / f"{_COUNTER[0]:05d}-{path.name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(f"999\nbenchmark run {_COUNTER[0]}\n".encode() + path.read_bytes())
    return out


async def flow_once(path: Path, base: Path, fresh_home: bool) -> tuple[float, float]:
    """Seconds of one convert-file run, and of the conversion call inside it."""
    from flows.convert import convert_file
    from tasks.runtime import reset_runtime

    if fresh_home or "CAD2GLTF_HOME" not in os.environ:
        home = Path(tempfile.mkdtemp(dir=base))
        os.environ["CAD2GLTF_HOME"] = str(home)
        reset_runtime()
    source = variant(path, base)
    t0 = time.perf_counter()
    out = await convert_file(source.resolve().as_uri())
    seconds = time.perf_counter() - t0
    assert out["status"] == "SUCCESS" and not out["reused"], out
    return seconds, out["summary"]["seconds"]


def core_once(path: Path) -> float:
    from cad2gltf import convert_path

    t0 = time.perf_counter()
    convert_path(path)
    return time.perf_counter() - t0


def measure(files: dict[str, Path], base: Path, args: argparse.Namespace) -> list[tuple]:
    """Per drawing: median core seconds, median flow seconds, median and worst same-run
    overhead."""
    rows = []
    for label, path in files.items():
        core, flow, inner = [], [], []
        for _ in range(args.repeat):
            # interleaved, with a pause: on 2 cores the local API server's background
            # services (event persistence) would otherwise bill their CPU to the next run
            time.sleep(args.settle)
            core.append(core_once(path))
            time.sleep(args.settle)
            total, converting = asyncio.run(flow_once(path, base, args.fresh_home))
            flow.append(total)
            inner.append(total - converting)
        rows.append((label, statistics.median(core), statistics.median(flow),
                     statistics.median(inner), max(inner)))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds of quiet before each measured run")
    ap.add_argument("--fresh-home", action="store_true",
                    help="empty store, ledger and connections for every run")
    ap.add_argument("--plain-process", action="store_true",
                    help="do not prepare the process as a prefork worker child and the "
                         "CLI do "
                         "(Prefect's client TLS contexts then cost ~30 ms per client)")
    ap.add_argument("--busy", type=int, default=0,
                    help="keep N other processes spinning on the CPU while measuring (as "
                         "a second worker child converting beside this one would)")
    args = ap.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    if not args.plain_process:
        from tasks.runtime import share_client_tls_contexts

        share_client_tls_contexts()  # what warm children of cad2gltf-prefork and the CLI do
    base = Path(tempfile.mkdtemp(prefix="cad2gltf-orch-"))
    files = drawings()
    t0 = time.perf_counter()
    os.environ.pop("CAD2GLTF_HOME", None)
    asyncio.run(flow_once(next(iter(files.values())), base, True))  # start the local API
    print(f"first flow run (starts Prefect's local API): {time.perf_counter() - t0:.1f} s\n")
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(args.busy)]
    try:
        rows = measure(files, base, args)
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()
    print(f"{'drawing':28} {'core s':>8} {'flow s':>8} {'overhead s':>10} {'overhead %':>10} "
          f"{'same-run s':>10} {'worst':>7}")
    print("-" * 87)
    for label, core, flow, inner, worst in rows:
        over = flow - core
        print(f"{label:28} {core:8.3f} {flow:8.3f} {over:10.3f} {100 * over / core:9.0f}% "
              f"{inner:10.3f} {worst:7.3f}")
    print("\noverhead = flow - core (separate runs); same-run = flow minus the conversion "
          "call timed inside that flow run (the load on the machine cancels out); worst = "
          "the largest same-run overhead of the runs")
    mode = "fresh home per run" if args.fresh_home else "one home, new content per run"
    mode += ", plain process" if args.plain_process else ", process prepared like a warm child"
    if args.busy:
        mode += f", {args.busy} busy process(es) beside it"
    print(f"\nmedians of {args.repeat} interleaved runs each, {args.settle:g} s settle time, "
          f"{mode}; target: overhead <= 0.3 s per file (10k)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
