"""End-to-end latency through RabbitMQ: publish -> listener -> flow run on a worker ->
GLB stored and job SUCCESS.

    PYTHONPATH=. python benchmarks/e2e.py -n 200

Starts its own Prefect server (free local port, its own PREFECT_HOME), deploys, starts a
process worker for cad-cpu and the listener, publishes N small-drawing requests (each a
distinct file, so each does real work), and waits until every job is SUCCESS or
dead-lettered. Prints p50/p95/p99 of publish -> SUCCESS and the throughput, and checks
that no message was lost and none was done twice (one flow run and one result each).
Storage: local files; ledger: PostgreSQL on 127.0.0.1 (database ``test``, own table
namespace via a fresh schema); broker: RabbitMQ on 127.0.0.1 with its own queue names.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(url)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()
    from cad2gltf.synth.floorplan import generate_floorplan, write_floorplan

    tmp = Path(tempfile.mkdtemp(prefix="cad2gltf-e2e-"))
    port = free_port()
    tag = uuid.uuid4().hex[:8]
    schema = f"e2e_{tag}"
    import psycopg2

    with psycopg2.connect("postgresql://postgres@127.0.0.1:5432/test") as c, c.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CAD2GLTF_"))}
    env.update({
        "PREFECT_HOME": str(tmp / "prefect"), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1", "PREFECT_LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT), "CAD2GLTF_APP_DIR": str(ROOT),
        "CAD2GLTF_HOME": str(tmp / "home"),
        "CAD2GLTF_STORAGE_URL": (tmp / "store").as_uri(),
        "CAD2GLTF_LEDGER_DSN": f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}",
        "CAD2GLTF_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
        "CAD2GLTF_AMQP_EXCHANGE": f"e2e-{tag}", "CAD2GLTF_AMQP_QUEUE": f"e2e-{tag}.q",
        "CAD2GLTF_AMQP_DEAD_LETTER_EXCHANGE": f"e2e-{tag}.dlx",
        "CAD2GLTF_AMQP_DEAD_LETTER_QUEUE": f"e2e-{tag}.dlq",
    })
    os.environ.update(env)
    procs = []
    logs = tmp / "logs"
    logs.mkdir()

    def start(name: str, *cmd: str) -> None:
        procs.append(subprocess.Popen([sys.executable, *cmd], env=env, cwd=ROOT,
                                      stdout=open(logs / f"{name}.log", "w"),
                                      stderr=subprocess.STDOUT))

    try:
        start("server", "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
              str(port))
        wait_http(f"http://127.0.0.1:{port}/api/health", 120)
        subprocess.run([sys.executable, "deployments/deploy.py"], env=env, cwd=ROOT, check=True,
                       capture_output=True)
        start("worker", "-m", "prefect", "worker", "start", "--pool", "cad-cpu", "--type",
              "process", "--limit", "4")
        start("listener", "-m", "flows.cli", "listen")
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
        for p in files:
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
            print(f"throughput: {len(done) / wall * 60:.1f} files/min ({wall:.0f} s wall, "
                  f"process worker limit 4, 2 cores)")
        return 0 if missing == 0 and len(results) == len(done) else 1
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        from blocks.settings import PipelineSettings
        from tasks.amqp import connect, delete_topology

        c = connect(env["CAD2GLTF_AMQP_URL"])
        delete_topology(c.channel(), PipelineSettings())  # os.environ holds this run's names
        c.close()
        with psycopg2.connect("postgresql://postgres@127.0.0.1:5432/test") as c2, \
                c2.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    sys.exit(main())
