"""End-to-end latency through RabbitMQ: publish -> listener -> flow run on a worker ->
GLB stored and job SUCCESS.

    PYTHONPATH=. python benchmarks/e2e.py -n 200 [--rate 1.5] [--worker-type process]

Starts its own Prefect server (free local port, its own PREFECT_HOME), deploys, starts a
worker for cad-cpu (the pools' cad2gltf-prefork by default, ``--worker-type process`` for
Prefect's stock worker) and the listener, publishes N small-drawing requests (each a
distinct file, so each does real work) -- all at once, or ``--rate`` per second to measure
latency at a sustained load rather than queueing behind a burst -- and waits until every
job is SUCCESS or dead-lettered. Prints p50/p95/p99 of publish -> SUCCESS and the throughput, and checks
that no message was lost and none was done twice (one flow run and one result each).
Storage: local files; ledger: PostgreSQL on 127.0.0.1 (database ``test``, own table
namespace via a fresh schema); broker: RabbitMQ on 127.0.0.1 with its own queue names.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deployments.local import LocalPrefect, drop_schema, pipeline_env  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def stage_breakdown(ledger, done: dict[str, float], published: dict[str, float]
                    ) -> dict[str, float]:
    """Median seconds per stage: publish -> job row (listener), job row -> flow run
    created, created -> running (worker pickup and start), running -> completed (the flow),
    and completed -> job SUCCESS seen by the ledger."""
    import asyncio

    from prefect.client.orchestration import get_client

    async def states(run_ids: list[str]) -> dict[str, dict[str, float]]:
        out = {}
        async with get_client() as client:
            for rid in run_ids:
                run = await client.read_flow_run(rid)
                st = {s.type.value: s.timestamp.timestamp()
                      for s in await client.read_flow_run_states(rid)}
                st["CREATED"] = run.created.timestamp()
                out[rid] = st
        return out

    jobs = {j: ledger.get(j) for j in done}
    runs = asyncio.run(states([job.flow_run_id for job in jobs.values() if job.flow_run_id]))
    parts: dict[str, list[float]] = {"queue+listener": [], "run created": [],
                                     "pickup+start": [], "flow": [], "after": []}
    for j, job in jobs.items():
        st = runs.get(job.flow_run_id)
        if not st or "RUNNING" not in st or "COMPLETED" not in st:
            continue
        parts["queue+listener"].append(job.created_at.timestamp() - published[j])
        parts["run created"].append(st["CREATED"] - job.created_at.timestamp())
        parts["pickup+start"].append(st["RUNNING"] - st["CREATED"])
        parts["flow"].append(st["COMPLETED"] - st["RUNNING"])
        parts["after"].append(done[j] - st["COMPLETED"])
    return {k: statistics.median(v) for k, v in parts.items() if v}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--rate", type=float, default=0.0,
                    help="messages per second (0: publish all at once)")
    ap.add_argument("--server-db", choices=("sqlite", "postgres"), default="postgres",
                    help="the Prefect server's database: postgres (default, a fresh "
                         "database on 127.0.0.1, as in production) or sqlite (embedded)")
    ap.add_argument("--worker-type", default="cad2gltf-prefork",
                    help="cad2gltf-prefork (default) or process")
    ap.add_argument("--limit", type=int, default=None,
                    help="worker concurrency (default: the prefork worker's children; 4 "
                         "for the process worker)")
    args = ap.parse_args()
    from cad2gltf.synth.floorplan import generate_floorplan, write_floorplan

    tmp = Path(tempfile.mkdtemp(prefix="cad2gltf-e2e-"))
    for k in [k for k in os.environ if k.startswith("CAD2GLTF_")]:
        os.environ.pop(k)
    env = {
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1", "PREFECT_LOGGING_LEVEL": "WARNING",
        **pipeline_env(tmp, "e2e"),
    }
    stack = LocalPrefect(tmp, env, database=args.server_db)
    try:
        stack.__enter__()
        env = stack.env
        os.environ.update(env)
        subprocess.run([sys.executable, "deployments/deploy.py"], env=env, cwd=ROOT, check=True,
                       capture_output=True)
        limit = args.limit or (4 if args.worker_type == "process" else None)
        stack.start("worker", [sys.executable, "-m", "prefect", "worker", "start", "--pool",
                               "cad-cpu", "--type", args.worker_type,
                               *(["--limit", str(limit)] if limit else [])],
                    env={"PREFECT_LOGGING_LEVEL": "INFO"})
        if args.worker_type == "cad2gltf-prefork":  # wait for the warm children
            stack.wait_for_log("worker", "warm children ready")
        stack.start("listener", [sys.executable, "-m", "flows.cli", "listen"])
        from blocks.settings import get_settings
        from tasks.amqp import connect, declare_topology, publish
        from tasks.ledger import open_ledger
        from tasks.messages import ConversionRequest

        settings = get_settings()
        files = []
        for i in range(args.n):
            p = tmp / "in" / f"plan{i:04d}.dxf"
            p.parent.mkdir(exist_ok=True)
            write_floorplan(generate_floorplan(seed=1000 + i, rooms_x=2, rooms_y=1,
                                               with_dimensions=False), p)
            files.append(p)
        conn = connect()
        ch = conn.channel()
        ch.confirm_delivery()
        declare_topology(ch, settings)
        published: dict[str, float] = {}
        t0 = time.monotonic()
        for i, p in enumerate(files):
            if args.rate > 0:  # a steady stream instead of one burst
                pause = t0 + i / args.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            req = ConversionRequest(job_id=str(uuid.uuid4()), source_uri=p.as_uri())
            publish(ch, settings.amqp_exchange, settings.amqp_routing_key, req.to_body(),
                    headers={"x-request-id": req.job_id})
            published[req.job_id] = time.monotonic()
        conn.close()
        ledger = open_ledger(env["CAD2GLTF_LEDGER_DSN"])
        ledger.migrate()
        done: dict[str, float] = {}
        dead: set[str] = set()
        deadline = time.monotonic() + args.timeout
        while len(done) + len(dead) < len(published) and time.monotonic() < deadline:
            for job in ledger.list_recent(limit=10 * args.n):
                if job.job_id in published and job.job_id not in done:
                    if job.status.value == "SUCCESS":
                        done[job.job_id] = job.finished_at.timestamp()
                    elif job.status.value in ("DLQ", "FAILURE"):
                        dead.add(job.job_id)
            time.sleep(0.5)
        wall = time.monotonic() - t0
        # publish -> SUCCESS latency from the ledger's own clock (UTC wall time)
        t_pub0 = time.time() - (time.monotonic() - t0)
        lat = [done[j] - (t_pub0 + (published[j] - t0)) for j in done]
        results = list((tmp / "store" / "results").rglob("*.glb"))
        missing = len(published) - len(done) - len(dead)
        print(f"\nmessages published: {len(published)}; SUCCESS {len(done)}, dead-lettered "
              f"{len(dead)}, missing {missing}; GLBs stored {len(results)}")
        if lat:
            print(f"publish -> SUCCESS latency: p50 {pct(lat, .5):.2f} s, p95 "
                  f"{pct(lat, .95):.2f} s, p99 {pct(lat, .99):.2f} s, mean "
                  f"{statistics.mean(lat):.2f} s")
            rate = f"{args.rate:g}/s" if args.rate > 0 else "all at once"
            print(f"throughput: {len(done) / wall * 60:.1f} files/min ({wall:.0f} s wall, "
                  f"{args.worker_type} worker, limit {limit or 'children'}, published "
                  f"{rate}, {os.cpu_count()} cores)")
            stages = stage_breakdown(ledger, done, {j: t_pub0 + (published[j] - t0)
                                                    for j in done})
            print("where it goes (median s): " + ", ".join(f"{k} {v:.2f}"
                                                         for k, v in stages.items()))
        return 0 if missing == 0 and len(results) == len(done) else 1
    finally:
        stack.stop()
        from blocks.settings import PipelineSettings
        from tasks.amqp import connect, delete_topology

        c = connect(env["CAD2GLTF_AMQP_URL"])
        delete_topology(c.channel(), PipelineSettings())  # os.environ holds this run's names
        c.close()
        drop_schema(env["CAD2GLTF_LEDGER_DSN"])



if __name__ == "__main__":
    sys.exit(main())
