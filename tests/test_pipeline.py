"""The Prefect pipeline under ``prefect_test_harness``, against real services: the moto S3
HTTP server for storage, PostgreSQL for the ledger, real DXF files.

Covers the flow's contract: results stored and validator-clean, the job row, progress,
artifacts, content caching (a second request does no conversion work), retries only
for transient errors, two concurrent runs of one job, callbacks.
"""

from __future__ import annotations

import asyncio
import base64
import uuid

import pytest

from cad2gltf.errors import ConversionError
from cad2gltf.synth.floorplan import encode_floorplan, generate_floorplan
from tests.gltf_validator import assert_valid_glb


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def pipeline(harness, moto_s3, pg_dsn, tmp_path, monkeypatch):
    """Settings pointing at S3 (moto) and PostgreSQL; fast retries."""
    from tasks.runtime import reset_runtime

    bucket = f"cad-{uuid.uuid4().hex[:10]}"
    moto_s3.make_bucket(bucket)
    env = {
        "CAD2GLTF_HOME": str(tmp_path / "home"),
        "CAD2GLTF_STORAGE_URL": f"s3://{bucket}/store",
        "CAD2GLTF_S3_ENDPOINT_URL": moto_s3.endpoint_url,
        "AWS_ACCESS_KEY_ID": moto_s3.key,
        "AWS_SECRET_ACCESS_KEY": moto_s3.secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "CAD2GLTF_LEDGER_DSN": pg_dsn,
        "CAD2GLTF_TASK_RETRIES": "3",
        "CAD2GLTF_RETRY_BACKOFF_SECONDS": "0.05",
        "CAD2GLTF_RETRY_BACKOFF_MAX_SECONDS": "0.2",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    reset_runtime()

    class P:
        pass

    p = P()
    p.bucket = bucket
    p.s3 = moto_s3

    def upload(name: str, data: bytes) -> str:
        moto_s3.client.put_object(Bucket=bucket, Key=f"incoming/{name}", Body=data)
        return f"s3://{bucket}/incoming/{name}"

    def fetch(uri: str) -> bytes:
        key = uri.split(f"s3://{bucket}/", 1)[1]
        return moto_s3.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def keys(prefix: str = "") -> list[str]:
        out = moto_s3.client.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for o in out.get("Contents", []))

    p.upload, p.fetch, p.keys = upload, fetch, keys
    yield p
    reset_runtime()


def _plan_bytes(seed: int = 1) -> bytes:
    return encode_floorplan(generate_floorplan(seed=seed, rooms_x=2, rooms_y=2))


def _run(coro):
    return asyncio.run(coro)


async def _task_runs(flow_run_id: str, name: str):
    """Task runs called ``name`` in a flow run and its subflow runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter, FlowRunFilterId, FlowRunFilterParentTaskRunId)

    async with get_client() as client:
        ids = [uuid.UUID(flow_run_id)]
        frontier = list(ids)
        while frontier:  # a subflow run hangs off a task run of its parent
            parents = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=frontier)))
            if not parents:
                break
            children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[t.id for t in parents])))
            frontier = [c.id for c in children if c.id not in ids]
            ids += frontier
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
        # task *run* names are templated ("convert plan.dxf"); the task key starts with
        # the function's name
        return [t for t in runs if t.task_key.rsplit("-", 1)[0] == name]


async def _settled_task_runs(flow_run_id: str, name: str, timeout: float = 30.0):
    """Task runs reach the API through events, a moment after the flow returns: wait
    until the run's always-present task (download_source) is recorded as final."""
    import time as _time

    deadline = _time.monotonic() + timeout
    while True:
        anchor = await _task_runs(flow_run_id, "download_source")
        wanted = await _task_runs(flow_run_id, name)
        settled = anchor and all(t.state and t.state.is_final() for t in anchor + wanted)
        if settled or _time.monotonic() > deadline:
            return wanted
        await asyncio.sleep(0.3)


def test_convert_file_stores_result_and_records_job(pipeline):
    from flows.convert import convert_file
    from tasks.artifacts import artifact_key
    from tasks.runtime import get_ledger

    uri = pipeline.upload("plan.dxf", _plan_bytes())
    out = _run(convert_file(uri))
    assert out["status"] == "SUCCESS" and out["result_uri"].endswith("/plan.glb")
    assert_valid_glb(pipeline.fetch(out["result_uri"]))
    assert pipeline.fetch(out["preview_uri"]).startswith(b"\x89PNG")
    job = get_ledger().get(out["job_id"])
    assert job.status.value == "SUCCESS" and job.result_uri == out["result_uri"]
    assert job.progress == 100.0 and job.stage == "done" and job.file_type == "dxf"
    assert job.flow_run_id == out["flow_run_id"] and job.attempts == 1

    async def artifacts():
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[out["flow_run_id"]])))

    # one artifact per run (one API call): the summary with the preview image inline
    arts = _run(artifacts())
    assert [a.key for a in arts] == [artifact_key(out["job_id"])]
    summary = arts[0].data
    assert "wall" in summary and out["result_uri"] in summary
    png = pipeline.fetch(out["preview_uri"])
    assert f"(data:image/png;base64,{base64.b64encode(png).decode()})" in summary


def test_second_request_does_no_conversion_work(pipeline):
    from flows.convert import convert_file

    data = _plan_bytes(seed=2)
    first = _run(convert_file(pipeline.upload("a.dxf", data), options={"wall_height": 3.0}))
    # the same request again: the job is done, nothing runs
    again = _run(convert_file(pipeline.upload("a.dxf", data), options={"wall_height": 3.0}))
    assert again["job_id"] == first["job_id"] and again["reused"] is True
    assert _run(_settled_task_runs(again["flow_run_id"], "convert_drawing")) == []
    # the same content under another name: a new job, but the conversion is reused
    other = _run(convert_file(pipeline.upload("copy-of-a.dxf", data),
                              options={"wall_height": 3.0}))
    assert other["job_id"] != first["job_id"] and other["result_uri"] == first["result_uri"]
    runs = _run(_settled_task_runs(other["flow_run_id"], "convert_drawing"))
    # Prefect's content-keyed cache answers: the task did not run again
    assert len(runs) == 1 and runs[0].state.name == "Cached"
    # ... from its record in the configured store (any worker finds it), not ~/.prefect
    records = pipeline.keys("store/prefect-results/")
    assert any("/cad2gltf-convert-" in k for k in records), records
    # other options: converted again, elsewhere
    third = _run(convert_file(pipeline.upload("a.dxf", data), options={"wall_height": 2.5}))
    assert third["result_uri"] != first["result_uri"]
    assert len([k for k in pipeline.keys("store/results/") if k.endswith(".glb")]) == 2


def test_corrupt_drawing_fails_at_once_with_its_code(pipeline):
    from flows.convert import convert_file
    from tasks.runtime import get_ledger

    uri = pipeline.upload("broken.dxf", b"0\nSECTION\n2\nENTITIES\n0\nLINE\n10\nxx\n\xff\xfe" * 3)
    with pytest.raises(ConversionError) as info:
        _run(convert_file(uri))
    err = info.value
    assert err.code == "PARSING_ERROR"
    job = get_ledger().get(err.details["job_id"])
    assert job.status.value == "FAILURE" and job.error_code.startswith("PARSING_ERROR")
    runs = _run(_settled_task_runs(err.details["flow_run_id"], "convert_drawing"))
    assert len(runs) == 1 and runs[0].run_count == 1  # no retries for a permanent error
    assert not [k for k in pipeline.keys("store/results/")]


def test_refused_input_is_recorded(pipeline):
    from flows.convert import convert_file
    from tasks.runtime import get_ledger

    with pytest.raises(ConversionError) as info:
        _run(convert_file(pipeline.upload("empty.dxf", b"")))
    assert (info.value.code, info.value.subcode) == ("VALIDATION_ERROR", "EMPTY_FILE")
    job = get_ledger().get(info.value.details["job_id"])
    assert job.status.value == "FAILURE" and job.error_code == "VALIDATION_ERROR/EMPTY_FILE"
    with pytest.raises(ConversionError) as missing:
        _run(convert_file(f"s3://{pipeline.bucket}/incoming/nope.dxf"))
    assert missing.value.subcode == "NOT_FOUND"


def test_storage_outage_is_retried_then_succeeds(pipeline, flaky_proxy, monkeypatch):
    from flows.convert import convert_file
    from tasks.runtime import get_ledger, reset_runtime

    uri = pipeline.upload("flaky.dxf", _plan_bytes(seed=3))
    proxy = flaky_proxy(pipeline.s3.endpoint_url, fail_first=2, methods=("PUT",), status=503)
    monkeypatch.setenv("CAD2GLTF_S3_ENDPOINT_URL", proxy.url)
    reset_runtime()
    out = _run(convert_file(uri))
    assert out["status"] == "SUCCESS"
    assert proxy.failed == 2
    runs = _run(_settled_task_runs(out["flow_run_id"], "convert_drawing"))
    assert runs[0].run_count == 3  # two transient failures, then success
    assert_valid_glb(pipeline.fetch(out["result_uri"]))
    assert get_ledger().get(out["job_id"]).status.value == "SUCCESS"


def test_cached_result_whose_files_are_gone_is_converted_again(pipeline):
    """Cleanup removed a result whose cache record lives on: the record is not trusted,
    the conversion runs again into the same keys."""
    from flows.convert import convert_file

    data = _plan_bytes(seed=6)
    first = _run(convert_file(pipeline.upload("gone.dxf", data)))
    stored = pipeline.keys("store/results/")
    assert stored
    pipeline.s3.client.delete_objects(Bucket=pipeline.bucket, Delete={
        "Objects": [{"Key": k} for k in stored]})
    second = _run(convert_file(pipeline.upload("gone.dxf", data)))
    assert second["status"] == "SUCCESS" and second["result_uri"] == first["result_uri"]
    assert_valid_glb(pipeline.fetch(second["result_uri"]))
    assert pipeline.keys("store/results/") == stored
    runs = _run(_settled_task_runs(second["flow_run_id"], "convert_drawing"))
    assert sorted(r.state.name for r in runs) == ["Cached", "Completed"]


def test_fresh_conversion_does_not_check_its_own_manifest_again(pipeline, flaky_proxy,
                                                               monkeypatch):
    """No needless round trip: after a conversion stored its manifest, nothing reads or
    checks it again in that run (only a result from the cache is checked)."""
    from flows.convert import convert_file
    from tasks.runtime import reset_runtime

    uri = pipeline.upload("once.dxf", _plan_bytes(seed=7))
    proxy = flaky_proxy(pipeline.s3.endpoint_url, fail_first=0)
    monkeypatch.setenv("CAD2GLTF_S3_ENDPOINT_URL", proxy.url)
    reset_runtime()
    out = _run(convert_file(uri))
    assert out["status"] == "SUCCESS" and not out["reused"]
    manifest = [(method, status) for method, path, status in proxy.requests
                if path.split("?")[0].endswith("/manifest.json")]
    put = manifest.index(("PUT", 200))
    assert manifest[put + 1:] == []


def _terminate_ledger_connections(pg_dsn: str) -> None:
    """Kill the ledger's pooled PostgreSQL connections server-side (a database restart or
    a dropped network path, as the next statement on them finds out)."""
    from urllib.parse import urlsplit

    import psycopg2

    admin = psycopg2.connect(pg_dsn, connect_timeout=5)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = 'cad2gltf-ledger' AND datname = %s",
                        (urlsplit(pg_dsn).path.lstrip("/"),))
    finally:
        admin.close()


def test_ledger_connection_lost_at_claim_and_at_success_is_retried(pipeline, pg_dsn,
                                                                   monkeypatch):
    """The flow's own ledger calls (claim, SUCCESS) are not task runs but are retried on
    transient errors all the same: each meets a dead database connection once."""
    from cad2gltf.errors import NetworkError
    from flows.convert import convert_file
    from tasks.ledger import JobStatus
    from tasks.runtime import get_ledger

    ledger = get_ledger()
    real = ledger.transition
    failed: list[JobStatus] = []

    def transition(job_id, to_status, **kwargs):
        status = JobStatus(to_status)
        first = status in (JobStatus.RUNNING, JobStatus.SUCCESS) and status not in failed
        if first:
            _terminate_ledger_connections(pg_dsn)
        try:
            return real(job_id, to_status, **kwargs)
        except NetworkError:
            if first:
                failed.append(status)
            raise

    monkeypatch.setattr(ledger, "transition", transition)
    out = _run(convert_file(pipeline.upload("dbflap.dxf", _plan_bytes(seed=5))))
    assert failed == [JobStatus.RUNNING, JobStatus.SUCCESS]  # both calls really failed once
    assert out["status"] == "SUCCESS"
    assert_valid_glb(pipeline.fetch(out["result_uri"]))
    job = ledger.get(out["job_id"])
    assert job.status == JobStatus.SUCCESS and job.result_uri == out["result_uri"]
    assert job.attempts == 1  # the failed claim wrote nothing; the retry claimed once
    changes = [(e.from_status, e.to_status) for e in ledger.events(out["job_id"])]
    assert changes.count(("RUNNING", "SUCCESS")) == 1


def test_two_concurrent_runs_of_one_job_make_one_result(pipeline):
    from flows.convert import convert_file
    from tasks.runtime import get_ledger

    uri = pipeline.upload("twice.dxf", _plan_bytes(seed=4))
    job_id = str(uuid.uuid4())

    async def both():
        return await asyncio.gather(convert_file(uri, job_id=job_id),
                                    convert_file(uri, job_id=job_id))

    outs = _run(both())
    assert sorted(o["status"] for o in outs) in (["DUPLICATE", "SUCCESS"],
                                                ["SUCCESS", "SUCCESS"])
    done = [o for o in outs if o["status"] == "SUCCESS"]
    assert len({o["result_uri"] for o in done}) == 1
    assert len([k for k in pipeline.keys("store/results/") if k.endswith(".glb")]) == 1
    job = get_ledger().get(job_id)
    assert job.status.value == "SUCCESS"


def test_callback_receives_the_outcome(pipeline, callback_server):
    from flows.convert import convert_file

    url = callback_server.url
    out = _run(convert_file(pipeline.upload("cb.dxf", _plan_bytes(seed=5)), callback_url=url))
    with pytest.raises(ConversionError):
        _run(convert_file(pipeline.upload("cb-bad.dxf", b"garbage" * 10), callback_url=url))
    with pytest.raises(ConversionError):  # not an allowed host: refused, not called
        _run(convert_file(pipeline.upload("cb2.dxf", _plan_bytes(seed=6)),
                          callback_url="http://example.invalid/x"))
    received = callback_server.received
    assert [r["status"] for r in received] == ["SUCCESS", "FAILURE"]
    assert received[0]["job_id"] == out["job_id"] and received[0]["result_uri"]
    assert received[1]["error_code"] == "VALIDATION_ERROR"


def test_blocks_registered_from_environment_are_used(pipeline, monkeypatch, capsys):
    """`python -m blocks` saves the connections as blocks; with a server (PREFECT_API_URL)
    and no explicit settings, the tasks resolve their store and ledger from them."""
    from blocks.__main__ import main as register
    from blocks.jobstore import JobStore
    from blocks.storage import ObjectStorage
    from tasks.runtime import get_ledger, get_store, reset_runtime

    register(["--overwrite"])
    out = capsys.readouterr().out
    assert "saved ObjectStorage block" in out and "saved JobStore block" in out
    assert pipeline.s3.secret not in out
    storage = ObjectStorage.load("cad2gltf-storage")
    assert storage.base_url == f"s3://{pipeline.bucket}/store"
    assert pipeline.s3.secret not in repr(storage)
    job_store = JobStore.load("cad2gltf-ledger")
    assert "**" in repr(job_store.dsn)  # a SecretStr
    # without the explicit settings, the saved blocks are what the tasks use
    monkeypatch.delenv("CAD2GLTF_STORAGE_URL")
    dsn = job_store.dsn.get_secret_value()
    monkeypatch.delenv("CAD2GLTF_LEDGER_DSN")
    reset_runtime()
    assert get_store().base_url == f"s3://{pipeline.bucket}/store"
    ledger = get_ledger()
    job, created = ledger.create_or_get(f"blocks-{uuid.uuid4()}", "s3://x/y.dxf")
    from tasks.ledger import open_ledger

    with open_ledger(dsn) as direct:
        assert direct.get(job.job_id) is not None


def test_pdf_is_converted_inline_when_no_gpu_worker_is_online(pipeline):
    """PDF routing, automatic: no worker serves cad-gpu here, so convert-file does the PDF
    work itself (the GPU deployment path is covered in test_e2e_deployment)."""
    from cad2gltf.synth.render import plan_to_pdf
    from flows.convert import convert_file
    from tasks.runtime import get_ledger

    pdf, _ = plan_to_pdf(generate_floorplan(seed=21, rooms_x=2, rooms_y=2), scale=100)
    out = _run(convert_file(pipeline.upload("plan.pdf", pdf)))
    assert out["status"] == "SUCCESS" and out["result_uri"].endswith("/plan.glb")
    assert_valid_glb(pipeline.fetch(out["result_uri"]))
    job = get_ledger().get(out["job_id"])
    assert job.status.value == "SUCCESS" and job.file_type == "pdf"
    assert out["summary"]["file_type"] == "pdf"
    assert out["summary"]["nodes_by_category"].get("wall", 0) >= 8


def test_encrypted_pdf_fails_at_once_with_its_code(pipeline):
    import pymupdf

    from flows.convert import convert_file
    from tasks.runtime import get_ledger

    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "secret plan")
    data = doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="o", user_pw="u")
    uri = pipeline.upload("locked.pdf", data)
    with pytest.raises(ConversionError) as info:
        _run(convert_file(uri))
    assert info.value.full_code == "VALIDATION_ERROR/ENCRYPTED"
    job = next(j for j in get_ledger().list_recent(limit=50) if j.source_uri == uri)
    assert job.status.value == "FAILURE" and job.error_code == "VALIDATION_ERROR/ENCRYPTED"
    assert job.attempts == 1  # permanent: not retried
