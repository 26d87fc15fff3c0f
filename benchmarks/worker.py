"""Per-run overhead and throughput: the stock process worker against cad2gltf-prefork.

    PYTHONPATH=. python benchmarks/worker.py [-n 50] [--workers prefork,process]
                                             [--via api|cli] [--concurrency 1,10]

Starts its own Prefect server (free port, own PREFECT_HOME), one work pool per worker
type, and two deployments per pool: ``double`` (a flow whose only task doubles a number,
``tests/worker_flows.py``) and ``convert-file`` (the real per-file conversion of a small
DXF; every run gets a different drawing, so no run is a cache hit). For each worker type,
flow and concurrency (1 = one run at a time, 10 = ten runs kept in flight) it starts N runs
and prints latency percentiles (run created -> COMPLETED, from the server's own
timestamps) and throughput (runs per minute from the first creation to the last
completion).

Runs are created like ``prefect deployment run`` does (``--via cli`` really calls it; the
default ``api`` makes the same API call in-process, because on 2 cores the CLI's own 2-3 s
of CPU per call would compete with the worker being measured).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deployments.local import LocalPrefect  # noqa: E402

WORKER_TYPES = {"prefork": "cad2gltf-prefork", "process": "process"}


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


async def create_deployments(pool: str) -> dict[str, object]:
    from prefect.client.orchestration import get_client

    pull = [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
    out = {}
    async with get_client() as client:
        for key, flow_name, entry in (("double", "double", "tests.worker_flows:double"),
                                      ("convert", "convert-file",
                                       "flows.convert:convert_file")):
            flow_id = await client.create_flow_from_name(flow_name)
            out[key] = await client.create_deployment(flow_id=flow_id, name=pool,
                                                      entrypoint=entry, work_pool_name=pool,
                                                      pull_steps=pull)
    return out


async def run_batch(deployment_id, params: list[dict], concurrency: int, via: str,
                    env: dict[str, str], deployment_name: str) -> list[tuple[float, float, str, dict[str, float]]]:
    """Create len(params) runs keeping `concurrency` in flight; return
    (created, completed, state, {state type: timestamp}) per run in server time (epoch seconds)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    results: list[tuple[float, float, str]] = []
    queue = list(params)

    async with get_client() as client:
        async def create(p: dict):
            if via == "cli":
                args = [sys.executable, "-m", "prefect", "deployment", "run", deployment_name]
                for k, v in p.items():
                    args += ["--param", f"{k}={v}"]
                proc = await asyncio.create_subprocess_exec(
                    *args, env=env, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT)
                out, _ = await proc.communicate()
                import re
                import uuid

                m = re.search(rb"UUID:\s*([0-9a-f-]{36})", out)
                if not m:
                    raise RuntimeError(out.decode(errors="replace"))
                return uuid.UUID(m.group(1).decode())
            run = await client.create_flow_run_from_deployment(deployment_id, parameters=p)
            return run.id

        # one poller for all runs in flight (one API call per 0.25 s, whatever the
        # concurrency: the benchmark must not load the API more than the worker does;
        # latencies come from the server's state timestamps, not from this loop)
        in_flight: list = []
        while queue or in_flight:
            while queue and len(in_flight) < concurrency:
                in_flight.append(await create(queue.pop(0)))
            await asyncio.sleep(0.25)
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=in_flight)))
            for run in runs:
                if run.state is not None and run.state.is_final():
                    in_flight.remove(run.id)
                    states = await client.read_flow_run_states(run.id)
                    final = [s for s in states if s.is_final()]
                    done = final[-1].timestamp.timestamp() if final else time.time()
                    marks = {s.type.value: s.timestamp.timestamp() for s in states}
                    results.append((run.created.timestamp(), done, run.state.type.value,
                                    marks))
    return results


STAGES = (("pickup", None, "PENDING"), ("start", "PENDING", "RUNNING"),
          ("body", "RUNNING", "COMPLETED"))


def stage_medians(rows: list) -> str:
    """Median seconds per stage: created -> PENDING (the worker noticed the run and
    took it), PENDING -> RUNNING (the child loaded the run and its flow), RUNNING ->
    COMPLETED (the flow itself, with its task and result)."""
    parts = []
    for name, start, end in STAGES:
        values = [m[end] - (created if start is None else m[start])
                  for created, _, state, m in rows
                  if state == "COMPLETED" and end in m and (start is None or start in m)]
        if values:
            parts.append(f"{name} {statistics.median(values):.2f}")
    return "stages (median s): " + ", ".join(parts)


def report(label: str, rows: list) -> dict[str, float]:
    ok = [r for r in rows if r[2] == "COMPLETED"]
    lat = [done - created for created, done, *_ in ok]
    span = max(r[1] for r in rows) - min(r[0] for r in rows)
    figures = {"p50": pct(lat, .5) if lat else float("nan"),
               "p95": pct(lat, .95) if lat else float("nan"),
               "mean": statistics.mean(lat) if lat else float("nan"),
               "per_min": len(ok) / span * 60 if span > 0 else float("nan")}
    print(f"{label:<34} {len(ok):>3}/{len(rows):<3} p50 {figures['p50']:6.2f} s  "
          f"p95 {figures['p95']:6.2f} s  mean {figures['mean']:6.2f} s  "
          f"{figures['per_min']:7.1f} runs/min", flush=True)
    print(f"{'':<38}{stage_medians(rows)}", flush=True)
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=50, help="runs per flow and concurrency")
    ap.add_argument("--workers", default="prefork,process")
    ap.add_argument("--concurrency", default="1,10")
    ap.add_argument("--flows", default="double,convert")
    ap.add_argument("--via", choices=("api", "cli"), default="api")
    ap.add_argument("--server-db", choices=("sqlite", "postgres"), default="postgres",
                    help="the Prefect server's database (default postgres, as in production)")
    ap.add_argument("--children", type=int, default=os.cpu_count() or 2,
                    help="warm children of the prefork worker")
    args = ap.parse_args()
    from cad2gltf.synth.floorplan import generate_floorplan, write_floorplan

    tmp = Path(tempfile.mkdtemp(prefix="cad2gltf-worker-bench-"))
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    flows = args.flows.split(",")
    env = {"PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_WORKER_PREFETCH_SECONDS": "1",
           "CAD2GLTF_HOME": str(tmp / "home"), "CAD2GLTF_STORAGE_URL": (tmp / "store").as_uri(),
           "CAD2GLTF_WORKER_CHILDREN": str(args.children)}
    drawings = tmp / "in"
    drawings.mkdir()
    print(f"cad2gltf worker benchmark: n={args.n} per cell, {os.cpu_count()} cores, "
          f"runs created via {args.via}, server on {args.server_db}; "
          f"latency = run created -> COMPLETED (server clock)",
          flush=True)
    table: dict[tuple[str, str, int], dict[str, float]] = {}
    counter = 0
    with LocalPrefect(tmp / "stack", env, database=args.server_db) as st:
        os.environ.update({k: v for k, v in st.env.items() if k.startswith("PREFECT_")})
        for short in args.workers.split(","):
            wtype = WORKER_TYPES[short]
            pool = f"bench-{short}"
            st.run("work-pool", "create", pool, "--type", wtype)
            deployments = asyncio.run(create_deployments(pool))
            limit = ["--limit", "10"] if short == "process" else []
            worker_env = {"PREFECT_WORKER_QUERY_SECONDS": "1"} if short == "process" else {}
            worker = st.start_worker(pool, wtype, name=short, env=worker_env,
                                     extra_args=tuple(limit))
            time.sleep(2)
            # one warm-up run, not measured (pool start, first imports in the server)
            asyncio.run(run_batch(deployments["double"], [{"x": 0}], 1, "api", st.env, ""))
            for flow in flows:
                for conc in concurrencies:
                    params = []
                    for i in range(args.n):
                        if flow == "double":
                            params.append({"x": i})
                        else:
                            counter += 1
                            p = drawings / f"plan{counter:05d}.dxf"
                            write_floorplan(generate_floorplan(seed=5000 + counter, rooms_x=2,
                                                               rooms_y=1,
                                                               with_dimensions=False), p)
                            params.append({"source_uri": p.as_uri()})
                    name = f"{'double' if flow == 'double' else 'convert-file'}/{pool}"
                    rows = asyncio.run(run_batch(deployments[flow], params, conc, args.via,
                                                 st.env, name))
                    table[(short, flow, conc)] = report(f"{short:<8} {flow:<8} x{conc:<3}", rows)
            st.stop_process(worker)
    print("\nratios (prefork vs process):")
    for flow in flows:
        for conc in concurrencies:
            a, b = table.get(("prefork", flow, conc)), table.get(("process", flow, conc))
            if a and b:
                print(f"  {flow:<8} x{conc:<3} p50 latency {b['p50'] / a['p50']:5.1f}x lower, "
                      f"throughput {a['per_min'] / b['per_min']:5.1f}x higher")
    return 0


if __name__ == "__main__":
    sys.exit(main())
