"""Soak: the listener and the prefork worker under a steady stream for a long time.

    PYTHONPATH=. python benchmarks/soak.py --minutes 60 --rate 0.5

Starts its own Prefect server (on PostgreSQL), the prefork worker for cad-cpu and the
listener, then publishes small-drawing requests at ``--rate`` per second for
``--minutes``. Every ``--sample`` seconds it prints what would show a leak: the
listener's and the worker's resident memory (with its children), the work queue's ready
and unacknowledged messages (``rabbitmqctl list_queues``), and how many requests are
done. At the end it waits for the backlog and checks that every request is SUCCESS,
exactly once; it prints the RSS and unacked trends (first vs last quarter).
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def rss_mb(pid: int, with_children: bool = False) -> float:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc] + (proc.children(recursive=True) if with_children else [])
        return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20
    except psutil.Error:
        return float("nan")


def queue_counts(queue: str) -> tuple[int, int]:
    exe = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    out = subprocess.run([exe, "-q", "list_queues", "name", "messages_ready",
                          "messages_unacknowledged"], capture_output=True, text=True,
                         timeout=60).stdout
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == queue:
            return int(parts[1]), int(parts[2])
    return -1, -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=0.5, help="requests per second")
    ap.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    args = ap.parse_args()
    from cad2gltf.synth.floorplan import generate_floorplan, write_floorplan
    from tasks.amqp import connect, declare_topology, publish
    from tasks.ledger import open_ledger
    from tasks.messages import ConversionRequest

    tmp = Path(tempfile.mkdtemp(prefix="cad2gltf-soak-"))
    for k in [k for k in os.environ if k.startswith("CAD2GLTF_")]:
        os.environ.pop(k)
    env = {
        "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        **pipeline_env(tmp, "soak"),
    }
    stack = LocalPrefect(tmp, env, database="postgres")
    samples: list[tuple[float, float, float, int, int, int]] = []
    try:
        stack.__enter__()
        os.environ.update(stack.env)
        subprocess.run([sys.executable, "deployments/deploy.py"], env=stack.env, cwd=ROOT,
                       check=True, capture_output=True)
        worker = stack.start("worker", [sys.executable, "-m", "prefect", "worker", "start",
                                        "--pool", "cad-cpu", "--type", "cad2gltf-prefork"],
                             env={"PREFECT_LOGGING_LEVEL": "INFO"})
        stack.wait_for_log("worker", "warm children ready")
        listener = stack.start("listener", [sys.executable, "-m", "flows.cli", "listen"])
        from blocks.settings import get_settings

        settings = get_settings()
        conn = connect()
        ch = conn.channel()
        ch.confirm_delivery()
        declare_topology(ch, settings)
        ledger = open_ledger(stack.env["CAD2GLTF_LEDGER_DSN"])
        ledger.migrate()
        ids: list[str] = []
        t0 = time.monotonic()
        next_sample = t0
        end = t0 + args.minutes * 60
        print(f"{'min':>6} {'listener MB':>12} {'worker MB':>10} {'ready':>6} {'unacked':>8} "
              f"{'done':>6}/{'sent':<6}", flush=True)
        while time.monotonic() < end:
            path = tmp / "in" / f"plan{len(ids):06d}.dxf"
            path.parent.mkdir(exist_ok=True)
            write_floorplan(generate_floorplan(seed=len(ids), rooms_x=2, rooms_y=1,
                                               with_dimensions=False), path)
            req = ConversionRequest(job_id=str(uuid.uuid4()), source_uri=path.as_uri())
            publish(ch, settings.amqp_exchange, settings.amqp_routing_key, req.to_body())
            ids.append(req.job_id)
            if time.monotonic() >= next_sample:
                ready, unacked = queue_counts(settings.amqp_queue)
                done = sum(1 for j in ledger.list_recent(limit=len(ids) + 10, status="SUCCESS"))
                row = ((time.monotonic() - t0) / 60, rss_mb(listener.pid),
                       rss_mb(worker.pid, with_children=True), ready, unacked, done)
                samples.append(row)
                print(f"{row[0]:6.1f} {row[1]:12.0f} {row[2]:10.0f} {ready:6d} {unacked:8d} "
                      f"{done:6d}/{len(ids):<6}", flush=True)
                next_sample += args.sample
            pause = t0 + len(ids) / args.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        conn.close()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            jobs = [ledger.get(j) for j in ids]
            if all(j is not None and j.status.value == "SUCCESS" for j in jobs):
                break
            time.sleep(2)
        jobs = [ledger.get(j) for j in ids]
        ok = sum(1 for j in jobs if j is not None and j.status.value == "SUCCESS")
        print(f"\nsent {len(ids)}, SUCCESS {ok}, missing or failed {len(ids) - ok}")
        if len(samples) >= 4:
            q = max(1, len(samples) // 4)
            for i, name in ((1, "listener RSS MB"), (2, "worker RSS MB (with children)"),
                            (4, "unacked")):
                first = statistics.mean(s[i] for s in samples[:q])
                last = statistics.mean(s[i] for s in samples[-q:])
                print(f"{name}: first quarter {first:.1f}, last quarter {last:.1f}")
        return 0 if ok == len(ids) else 1
    finally:
        stack.stop()
        from blocks.settings import PipelineSettings
        from tasks.amqp import delete_topology

        c = connect(env["CAD2GLTF_AMQP_URL"])
        delete_topology(c.channel(), PipelineSettings())
        c.close()
        drop_schema(env["CAD2GLTF_LEDGER_DSN"])


if __name__ == "__main__":
    sys.exit(main())
