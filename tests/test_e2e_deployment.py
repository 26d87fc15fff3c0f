"""End to end through a real Prefect server and the pools' prefork worker.

Starts ``prefect server start`` on a free local port, creates the work pools and the
deployments with ``deployments/deploy.py``, starts a ``cad2gltf-prefork`` worker for
``cad-cpu``, runs
``prefect deployment run convert-file/manual`` for a DXF stored in the S3 endpoint
(moto's HTTP server), and checks what a person would: the flow run COMPLETED, the GLB
landed (validator-clean), the ledger row (PostgreSQL) is SUCCESS with the result URI,
and the run's artifact exists.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid

import pytest

from cad2gltf.synth.floorplan import encode_floorplan, generate_floorplan
from deployments.local import LOCAL_AMQP_URL, REPO, LocalPrefect, amqp_names
from tests.gltf_validator import assert_valid_glb


@pytest.fixture(scope="module")
def stack(tmp_path_factory, moto_s3, pg_dsn):
    tmp = tmp_path_factory.mktemp("e2e")
    bucket = f"e2e-{uuid.uuid4().hex[:8]}"
    moto_s3.make_bucket(bucket)
    env = {
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "CAD2GLTF_HOME": str(tmp / "cad2gltf"),
        "CAD2GLTF_STORAGE_URL": f"s3://{bucket}/store",
        "CAD2GLTF_S3_ENDPOINT_URL": moto_s3.endpoint_url,
        "AWS_ACCESS_KEY_ID": moto_s3.key,
        "AWS_SECRET_ACCESS_KEY": moto_s3.secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "CAD2GLTF_LEDGER_DSN": pg_dsn,
        "CAD2GLTF_RETRY_BACKOFF_SECONDS": "0.1",
        "CAD2GLTF_WORKER_CHILDREN": "2",
    }
    with LocalPrefect(tmp, env) as st:
        deploy = subprocess.run([sys.executable, str(REPO / "deployments" / "deploy.py")],
                                env=st.env, cwd=REPO, capture_output=True, text=True,
                                timeout=300)
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        # the pools' own worker type (deploy.py creates cad2gltf-prefork pools)
        st.start_worker("cad-cpu", "cad2gltf-prefork", name="cpu")
        yield {"env": st.env, "bucket": bucket, "s3": moto_s3, "stack": st,
               "deploy_output": deploy.stdout}


def _worker_log(stack) -> str:
    return stack["stack"].log_text("worker-cpu")[-4000:]


def _flow_run_state(env: dict, run_id: str) -> str:
    out = subprocess.run([sys.executable, "-m", "prefect", "flow-run", "inspect", run_id],
                         env=env, capture_output=True, text=True, timeout=120)
    m = re.search(r"type=StateType\.(\w+)|'type': '(\w+)'|\"type\": \"(\w+)\"", out.stdout)
    if not m:
        return "UNKNOWN"
    return next(g for g in m.groups() if g)


def _run_deployment_cli(env: dict, name: str, source_uri: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "prefect", "deployment", "run", name,
         "--param", f"source_uri={source_uri}"], env=env, capture_output=True, text=True,
        timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return re.search(r"UUID:\s*([0-9a-f-]{36})", run.stdout).group(1)


def _wait_final(env: dict, run_id: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    state = "PENDING"
    while time.monotonic() < deadline:
        state = _flow_run_state(env, run_id)
        if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            break
        time.sleep(2)
    return state


def test_deployment_run_through_worker(stack):
    env, bucket, s3 = stack["env"], stack["bucket"], stack["s3"]
    assert "convert-file/manual" in stack["deploy_output"] or \
        "convert-file" in stack["deploy_output"]
    data = encode_floorplan(generate_floorplan(seed=8, rooms_x=2, rooms_y=2))
    s3.client.put_object(Bucket=bucket, Key="incoming/e2e.dxf", Body=data)
    run_id = _run_deployment_cli(env, "convert-file/manual",
                                 f"s3://{bucket}/incoming/e2e.dxf")
    state = _wait_final(env, run_id, timeout=240)
    assert state == "COMPLETED", f"flow run ended {state}\n{_worker_log(stack)}"
    keys = [o["Key"] for o in s3.client.list_objects_v2(
        Bucket=bucket, Prefix="store/results/").get("Contents", [])]
    glbs = [k for k in keys if k.endswith("e2e.glb")]
    assert len(glbs) == 1
    assert_valid_glb(s3.client.get_object(Bucket=bucket, Key=glbs[0])["Body"].read())

    from tasks.ledger import open_ledger

    ledger = open_ledger(env["CAD2GLTF_LEDGER_DSN"])
    jobs = [j for j in ledger.list_recent(limit=200) if j.flow_run_id == run_id]
    assert len(jobs) == 1
    job = jobs[0]
    assert job.status.value == "SUCCESS" and job.result_uri == f"s3://{bucket}/{glbs[0]}"
    ledger.close()

    from tasks.artifacts import artifact_key

    art = subprocess.run([sys.executable, "-m", "prefect", "artifact", "inspect",
                          artifact_key(job.job_id)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert art.returncode == 0 and "e2e.glb" in art.stdout, art.stdout + art.stderr


def test_rabbitmq_request_end_to_end(stack, tmp_path, callback_server):
    """submit -> RabbitMQ -> listener -> one flow run on the worker -> GLB stored ->
    job SUCCESS -> callback received by a local HTTP server."""
    import json

    env = dict(stack["env"])
    env.update({**amqp_names("e2e"), "CAD2GLTF_AMQP_URL": LOCAL_AMQP_URL})
    received = callback_server.received
    drawing = tmp_path / "queued.dxf"
    drawing.write_bytes(encode_floorplan(generate_floorplan(seed=9, rooms_x=2, rooms_y=1)))
    try:
        sub = subprocess.run(
            [sys.executable, "-m", "flows.cli", "submit", str(drawing), "--callback",
             callback_server.url], env=env, cwd=REPO,
            capture_output=True, text=True, timeout=120)
        assert sub.returncode == 0, sub.stdout + sub.stderr
        job_id = json.loads(sub.stdout.splitlines()[0])["job_id"]
        listen = subprocess.run([sys.executable, "-m", "flows.cli", "listen",
                                 "--max-messages", "1", "--idle-exit", "60"], env=env, cwd=REPO,
                                capture_output=True, text=True, timeout=180)
        assert listen.returncode == 0 and "1 run(s) started" in listen.stderr, listen.stderr
        from tasks.ledger import open_ledger

        ledger = open_ledger(env["CAD2GLTF_LEDGER_DSN"])
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            job = ledger.get(job_id)
            if job and job.status.value in ("SUCCESS", "FAILURE", "DLQ") and received:
                break
            time.sleep(1)
        ledger.close()
        assert job.status.value == "SUCCESS", _worker_log(stack)
        assert_valid_glb(stack["s3"].client.get_object(
            Bucket=stack["bucket"], Key=job.result_uri.split(f"{stack['bucket']}/", 1)[1]
        )["Body"].read())
        assert [r["status"] for r in received] == ["SUCCESS"]
        assert received[0]["job_id"] == job_id
    finally:
        from blocks.settings import PipelineSettings
        from tasks.amqp import connect, delete_topology

        names = {k.removeprefix("CAD2GLTF_").lower(): v for k, v in env.items()
                 if k.startswith("CAD2GLTF_AMQP_")}
        conn = connect(env["CAD2GLTF_AMQP_URL"])
        delete_topology(conn.channel(), PipelineSettings(**names))
        conn.close()


def test_pdf_goes_to_the_gpu_pool_when_it_is_served(stack):
    """With a worker on cad-gpu, convert-file hands PDFs to convert-pdf/gpu; a PDF that
    fails there fails the parent run with the same error code."""
    import asyncio

    import pymupdf
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cad2gltf.synth.render import plan_to_pdf
    from tasks.ledger import open_ledger

    env, bucket, s3, st = stack["env"], stack["bucket"], stack["s3"], stack["stack"]
    worker = st.start_worker("cad-gpu", "cad2gltf-prefork", name="gpu",
                             env={"CAD2GLTF_WORKER_CHILDREN": "1"})
    try:
        st.wait_for_log("worker-gpu", "warm children ready")
        time.sleep(3)  # the worker's first heartbeat marks it ONLINE
        pdf, _ = plan_to_pdf(generate_floorplan(seed=31, rooms_x=2, rooms_y=1), scale=100)
        s3.client.put_object(Bucket=bucket, Key="incoming/gpu.pdf", Body=pdf)
        run_id = _run_deployment_cli(env, "convert-file/manual", f"s3://{bucket}/incoming/gpu.pdf")
        assert _wait_final(env, run_id) == "COMPLETED", _worker_log(stack)

        doc = pymupdf.open()
        doc.new_page().insert_text((72, 72), "locked")
        locked = doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="o", user_pw="u")
        s3.client.put_object(Bucket=bucket, Key="incoming/locked.pdf", Body=locked)
        bad_id = _run_deployment_cli(env, "convert-file/manual",
                                     f"s3://{bucket}/incoming/locked.pdf")
        assert _wait_final(env, bad_id) == "FAILED"
    finally:
        st.stop_process(worker)

    async def pdf_runs():
        async with get_client() as client:
            return await client.read_flow_runs(deployment_filter=DeploymentFilter(
                name=DeploymentFilterName(any_=["gpu"])))

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        runs = asyncio.run(pdf_runs())
    assert sorted(r.state.type.value for r in runs) == ["COMPLETED", "FAILED"]
    ledger = open_ledger(env["CAD2GLTF_LEDGER_DSN"])
    jobs = {j.flow_run_id: j for j in ledger.list_recent(limit=200)}
    ledger.close()
    good, bad = jobs[run_id], jobs[bad_id]
    assert good.status.value == "SUCCESS" and good.file_type == "pdf"
    key = good.result_uri.split(f"{bucket}/", 1)[1]
    assert_valid_glb(s3.client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert bad.status.value == "FAILURE" and bad.error_code == "VALIDATION_ERROR/ENCRYPTED"
