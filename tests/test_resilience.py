"""The event-driven path under faults, with real processes: a Prefect server (on
PostgreSQL), the prefork worker, ``cad2gltf listen`` as a subprocess, RabbitMQ and the
ledger on PostgreSQL.

* the broker restarted while 200 requests are in flight: afterwards every request is
  SUCCESS (or dead-lettered with a reason), none is missing, none ran twice, the queues
  are empty;
* the listener SIGKILLed again and again while it works through a stream of requests:
  still exactly one flow run per request;
* SIGTERM: the listener finishes the message in hand, exits 0, and loses nothing.

The broker restart uses ``rabbitmqctl stop_app`` / ``start_app`` on the machine's broker:
every connection drops and the node's queues go down and come back, as in a restart.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cad2gltf.synth.floorplan import generate_floorplan, write_floorplan
from deployments.local import REPO, LocalPrefect, pipeline_env

pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, pg_dsn):
    tmp = tmp_path_factory.mktemp("resilience")
    env = {
        **pipeline_env(tmp, "res", pg_dsn),
        "CAD2GLTF_LISTENER_BACKOFF_MAX_SECONDS": "2",
        "CAD2GLTF_RETRY_BACKOFF_SECONDS": "0.1",
        "CAD2GLTF_WORKER_CHILDREN": "2",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
    }
    with LocalPrefect(tmp / "stack", env, database="postgres") as st:
        deploy = subprocess.run([sys.executable, str(REPO / "deployments" / "deploy.py")],
                                env=st.env, cwd=REPO, capture_output=True, text=True,
                                timeout=300)
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        st.tmp = tmp
        st.files = tmp / "in"
        st.files.mkdir()
        yield st
        _delete_topology(st.env)


def _delete_topology(env: dict[str, str]) -> None:
    from blocks.settings import PipelineSettings
    from tasks.amqp import connect, delete_topology

    names = {k.removeprefix("CAD2GLTF_").lower(): v for k, v in env.items()
             if k.startswith("CAD2GLTF_AMQP_")}
    conn = connect(env["CAD2GLTF_AMQP_URL"])
    delete_topology(conn.channel(), PipelineSettings(**names))
    conn.close()


def _settings(env):
    from blocks.settings import PipelineSettings

    names = {k.removeprefix("CAD2GLTF_").lower(): v for k, v in env.items()
             if k.startswith("CAD2GLTF_AMQP_")}
    return PipelineSettings(**names)


def _publish(env, files: list[Path]) -> list[str]:
    """Publish one request per file (confirmed); return the job ids."""
    from tasks.amqp import connect, declare_topology, publish
    from tasks.messages import ConversionRequest

    s = _settings(env)
    conn = connect(env["CAD2GLTF_AMQP_URL"])
    ch = conn.channel()
    ch.confirm_delivery()
    declare_topology(ch, s)
    ids = []
    for path in files:
        req = ConversionRequest(job_id=str(uuid.uuid4()), source_uri=path.as_uri())
        publish(ch, s.amqp_exchange, s.amqp_routing_key, req.to_body(),
                headers={"x-request-id": req.job_id})
        ids.append(req.job_id)
    conn.close()
    return ids


def _queue_counts(env) -> tuple[int, int]:
    from tasks.amqp import connect

    s = _settings(env)
    conn = connect(env["CAD2GLTF_AMQP_URL"])
    ch = conn.channel()
    work = ch.queue_declare(s.amqp_queue, passive=True).method.message_count
    dead = ch.queue_declare(s.amqp_dead_letter_queue, passive=True).method.message_count
    conn.close()
    return work, dead


def _drawings(st, n: int, prefix: str) -> list[Path]:
    out = []
    for i in range(n):
        p = st.files / f"{prefix}-{i:04d}.dxf"
        write_floorplan(generate_floorplan(seed=hash((prefix, i)) % 100_000, rooms_x=1,
                                           rooms_y=1, with_dimensions=False,
                                           with_furniture=False), p)
        out.append(p)
    return out


def _listener(st, name: str) -> subprocess.Popen:
    return st.start(name, [sys.executable, "-m", "flows.cli", "listen"])


def _jobs(env, ids: list[str]) -> dict[str, object]:
    from tasks.ledger import open_ledger

    ledger = open_ledger(env["CAD2GLTF_LEDGER_DSN"])
    try:
        ledger.migrate()  # idempotent; the listener may not have created the tables yet
        return {j: ledger.get(j) for j in ids}
    finally:
        ledger.close()


def _runs_by_job(env) -> dict[str, list[str]]:
    """Flow runs of convert-file/rabbitmq grouped by the job id they were given."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def read():
        runs, offset = [], 0
        async with get_client() as client:
            while True:
                page = await client.read_flow_runs(
                    deployment_filter=DeploymentFilter(name=DeploymentFilterName(
                        any_=["rabbitmq"])), limit=200, offset=offset)
                runs += page
                if len(page) < 200:
                    return runs
                offset += 200

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        runs = asyncio.run(read())
    grouped: dict[str, list[str]] = {}
    for run in runs:
        grouped.setdefault(run.parameters.get("job_id"), []).append(str(run.id))
    return grouped


def _wait_jobs(env, ids, statuses, timeout) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = _jobs(env, ids)
        if all(j is not None and j.status.value in statuses for j in jobs.values()):
            return jobs
        if time.monotonic() > deadline:
            counts: dict[str, int] = {}
            for j in jobs.values():
                key = j.status.value if j is not None else "MISSING"
                counts[key] = counts.get(key, 0) + 1
            raise AssertionError(f"jobs not done after {timeout} s: {counts}")
        time.sleep(1)


def _rabbitmqctl(*args: str) -> None:
    exe = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"rabbitmqctl {' '.join(args)}: {out.stdout}{out.stderr}"


def test_broker_restart_with_200_requests_in_flight(pipeline):
    st = pipeline
    worker = st.start_worker("cad-cpu", "cad2gltf-prefork", name="res")
    listener = _listener(st, "listener-restart")
    files = _drawings(st, 200, "restart")
    ids = _publish(st.env, files)
    # restart the broker once the listener is part-way through the stream
    deadline = time.monotonic() + 300
    while sum(j is not None for j in _jobs(st.env, ids).values()) < 30:
        assert time.monotonic() < deadline, "the listener did not start consuming"
        assert listener.poll() is None, st.log_text("listener-restart")[-3000:]
        time.sleep(0.2)
    try:
        _rabbitmqctl("stop_app")
        time.sleep(3)
    finally:
        _rabbitmqctl("start_app")
    _rabbitmqctl("await_startup")
    try:
        jobs = _wait_jobs(st.env, ids, {"SUCCESS", "DLQ", "FAILURE"}, timeout=900)
    finally:
        st.stop_process(listener)
        st.stop_process(worker)
    assert "reconnecting" in st.log_text("listener-restart"), "the broker restart went unseen"
    statuses = {j.status.value for j in jobs.values()}
    assert statuses == {"SUCCESS"}, statuses  # small valid drawings: nothing may fail
    runs = _runs_by_job(st.env)
    assert all(len(runs.get(j, [])) == 1 for j in ids), {
        j: runs.get(j) for j in ids if len(runs.get(j, [])) != 1}
    results = {j.result_uri for j in jobs.values()}
    assert len(results) == 200 and all(Path(u.removeprefix("file://")).is_file()
                                       for u in results)
    assert _queue_counts(st.env) == (0, 0)


def test_listener_sigkilled_repeatedly_still_one_run_per_request(pipeline):
    st = pipeline
    ids = _publish(st.env, _drawings(st, 60, "kill"))
    for round_ in range(3):
        listener = _listener(st, f"listener-kill-{round_}")
        deadline = time.monotonic() + 120
        start = sum(j is not None for j in _jobs(st.env, ids).values())
        while sum(j is not None for j in _jobs(st.env, ids).values()) < start + 8:
            assert time.monotonic() < deadline, st.log_text(f"listener-kill-{round_}")[-3000:]
            time.sleep(0.05)
        listener.send_signal(signal.SIGKILL)
        listener.wait(timeout=30)
    listener = _listener(st, "listener-kill-final")
    try:
        deadline = time.monotonic() + 300
        while _queue_counts(st.env)[0] > 0 or sum(
                j is not None for j in _jobs(st.env, ids).values()) < len(ids):
            assert time.monotonic() < deadline, "requests left unhandled"
            time.sleep(0.5)
        time.sleep(2)  # the last ack
    finally:
        st.stop_process(listener)
    runs = _runs_by_job(st.env)
    assert all(len(runs.get(j, [])) == 1 for j in ids), {
        j: runs.get(j) for j in ids if len(runs.get(j, [])) != 1}
    assert _queue_counts(st.env) == (0, 0)


def test_sigterm_finishes_the_message_in_hand_and_loses_nothing(pipeline):
    st = pipeline
    ids = _publish(st.env, _drawings(st, 40, "term"))
    listener = _listener(st, "listener-term")
    deadline = time.monotonic() + 120
    while sum(j is not None for j in _jobs(st.env, ids).values()) < 5:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    listener.send_signal(signal.SIGTERM)
    assert listener.wait(timeout=60) == 0, st.log_text("listener-term")[-3000:]
    recorded = sum(j is not None for j in _jobs(st.env, ids).values())
    runs = _runs_by_job(st.env)
    started = sum(1 for j in ids if runs.get(j))
    waiting, _ = _queue_counts(st.env)
    # every request is either handed over (a run exists) or back in the queue
    assert started + waiting == len(ids), (started, waiting, recorded)
    assert waiting > 0, "the listener did not stop early"
    listener = _listener(st, "listener-term-2")
    try:
        deadline = time.monotonic() + 300
        while _queue_counts(st.env)[0] > 0:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        time.sleep(2)
    finally:
        st.stop_process(listener)
    runs = _runs_by_job(st.env)
    assert all(len(runs.get(j, [])) == 1 for j in ids)
    assert _queue_counts(st.env) == (0, 0)
