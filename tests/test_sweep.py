"""Dead letters: the sweep's policy, the sweep against the real broker and ledger, the
``dlq`` command, and the storage-outage chain (retries -> DLQ -> requeue -> SUCCESS)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from blocks.settings import PipelineSettings
from tasks.deadletters import DeadLetter, decide

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def _letter(code: str, minutes_ago: float, complete: bool = True) -> DeadLetter:
    request = {"job_id": "j", "source_uri": "s3://b/k.dxf"} if complete else {}
    return DeadLetter(1, b"{}", {}, code, "why", NOW - timedelta(minutes=minutes_ago),
                      "j" if complete else None, request)


@pytest.mark.parametrize("code,minutes,reprocessed,action", [
    ("VALIDATION_ERROR", 0, 0, "drop"),
    ("STORAGE_ERROR", 1, 0, "keep"),        # too young: wait 5 minutes
    ("STORAGE_ERROR", 6, 0, "requeue"),
    ("NETWORK_ERROR", 6, 0, "requeue"),
    ("NETWORK_ERROR", 6, 1, "keep"),        # requeued once already
    ("TIMEOUT_ERROR", 6, 0, "keep"),        # waits 10 minutes
    ("TIMEOUT_ERROR", 11, 0, "requeue"),
    ("PARSING_ERROR", 11, 0, "keep"),       # for a person
    ("PARSING_ERROR", 8 * 24 * 60, 0, "drop"),  # expired after 7 days
    ("INTERNAL_ERROR", 60, 0, "keep"),
])
def test_policy(code, minutes, reprocessed, action):
    assert decide(_letter(code, minutes), reprocessed, NOW, PipelineSettings()).action == action


def test_incomplete_transient_letter_is_kept():
    assert decide(_letter("STORAGE_ERROR", 60, complete=False), 0, NOW,
                  PipelineSettings()).action == "keep"


@pytest.fixture
def env(broker, pg_dsn, tmp_path, monkeypatch):
    """The broker's own topology, the ledger on PostgreSQL, short sweep delays, Prefect."""
    from prefect.testing.utilities import prefect_test_harness

    from blocks.settings import get_settings
    from tasks.amqp import declare_topology
    from tasks.runtime import reset_runtime

    for k, v in {"CAD2GLTF_LEDGER_DSN": pg_dsn, "CAD2GLTF_HOME": str(tmp_path / "home"),
                 "CAD2GLTF_DLQ_RETRY_AFTER_TRANSIENT_SECONDS": "0",
                 "CAD2GLTF_DLQ_RETRY_AFTER_TIMEOUT_SECONDS": "3600",
                 "CAD2GLTF_RETRY_BACKOFF_SECONDS": "0.01",
                 "CAD2GLTF_TASK_RETRIES": "2"}.items():
        monkeypatch.setenv(k, v)
    reset_runtime()
    channel = broker[0]
    declare_topology(channel, get_settings())
    with prefect_test_harness(server_startup_timeout=120):
        yield channel


def _dead_letter(channel, job_id: str, code: str, minutes_ago: float = 30) -> None:
    from blocks.settings import get_settings
    from tasks.amqp import publish

    body = {"schema_version": "1.1", "job_id": job_id, "source_uri": f"s3://b/{job_id}.dxf",
            "options": {}, "metadata": {}, "error_code": code, "error_message": "boom",
            "attempts": 3, "failed_at": (datetime.now(timezone.utc)
                                         - timedelta(minutes=minutes_ago)).isoformat(),
            "flow_run_id": str(uuid.uuid4())}
    publish(channel, get_settings().amqp_dead_letter_exchange, "", json.dumps(body).encode())


def _job_in_dlq(job_id: str) -> None:
    from tasks.ledger import JobStatus
    from tasks.runtime import get_ledger

    ledger = get_ledger()
    ledger.create_or_get(f"key-{job_id}", f"s3://b/{job_id}.dxf", job_id=job_id)
    ledger.transition(job_id, JobStatus.DLQ)


def _drain(channel, queue: str) -> list[dict]:
    out = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append(json.loads(body))


def test_sweep_requeues_drops_and_keeps(env):
    from blocks.settings import get_settings
    from flows.sweep import sweep_dead_letters
    from tasks.runtime import get_ledger

    channel = env
    ids = {code: str(uuid.uuid4()) for code in ("STORAGE_ERROR", "VALIDATION_ERROR",
                                                 "PARSING_ERROR", "TIMEOUT_ERROR")}
    for code, job_id in ids.items():
        _job_in_dlq(job_id)
        _dead_letter(channel, job_id, code)
    result = asyncio.run(sweep_dead_letters())
    assert (result["requeue"], result["drop"], result["keep"]) == (1, 1, 2)
    s = get_settings()
    requeued = _drain(channel, s.amqp_queue)
    assert [r["job_id"] for r in requeued] == [ids["STORAGE_ERROR"]]
    assert requeued[0]["metadata"]["reprocess"] == 1
    job = get_ledger().get(ids["STORAGE_ERROR"])
    assert job.status.value == "REPROCESSING" and job.reprocess_count == 1
    kept = {d["job_id"] for d in _drain(channel, s.amqp_dead_letter_queue)}
    assert kept == {ids["PARSING_ERROR"], ids["TIMEOUT_ERROR"]}


def test_two_sweeps_never_run_at_once(env):
    from flows.sweep import sweep_dead_letters
    from tasks.deadletters import SWEEP_LOCK_KEY
    from tasks.ledger import open_ledger
    from tasks.runtime import ledger_dsn

    _dead_letter(env, str(uuid.uuid4()), "VALIDATION_ERROR")
    # another process's session holds the lock
    with open_ledger(ledger_dsn()) as other, other.try_advisory_lock(SWEEP_LOCK_KEY) as got:
        assert got
        assert asyncio.run(sweep_dead_letters()) == {"skipped": "another sweep is running"}
    assert asyncio.run(sweep_dead_letters())["drop"] == 1


def test_dlq_command_lists_drops_and_requeues(env, capsys):
    from blocks.settings import get_settings
    from flows.cli import main

    keep, drop = str(uuid.uuid4()), str(uuid.uuid4())
    for job_id in (keep, drop):
        _job_in_dlq(job_id)
        _dead_letter(env, job_id, "PARSING_ERROR")
    assert main(["dlq", "list"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {d["job_id"] for d in listed} == {keep, drop}
    assert main(["dlq", "drop", drop]) == 0
    assert main(["dlq", "requeue", keep]) == 0
    assert main(["dlq", "drop", "no-such-job"]) == 1
    s = get_settings()
    assert _drain(env, s.amqp_dead_letter_queue) == []
    assert [r["job_id"] for r in _drain(env, s.amqp_queue)] == [keep]


def test_storage_outage_chain_ends_in_success(env, tmp_path, flaky_proxy, moto_s3,
                                              monkeypatch):
    """A run whose storage stays down exhausts its retries, is dead-lettered with
    STORAGE_ERROR, the sweep requeues it, and the requeued request succeeds."""
    from blocks.settings import get_settings
    from cad2gltf.errors import ConversionError
    from cad2gltf.synth.floorplan import encode_floorplan, generate_floorplan
    from flows.convert import convert_file
    from tasks.runtime import get_ledger, reset_runtime
    from tests.gltf_validator import assert_valid_glb

    bucket = moto_s3.make_bucket()
    moto_s3.client.put_object(Bucket=bucket, Key="in/outage.dxf",
                              Body=encode_floorplan(generate_floorplan(seed=12, rooms_x=2,
                                                                       rooms_y=1)))
    proxy = flaky_proxy(moto_s3.endpoint_url, fail_first=1000, methods=("PUT",), status=503)
    for k, v in {"CAD2GLTF_STORAGE_URL": f"s3://{bucket}/store", "AWS_DEFAULT_REGION":
                 "us-east-1", "AWS_ACCESS_KEY_ID": moto_s3.key,
                 "AWS_SECRET_ACCESS_KEY": moto_s3.secret,
                 "CAD2GLTF_S3_ENDPOINT_URL": proxy.url}.items():
        monkeypatch.setenv(k, v)
    reset_runtime()
    uri = f"s3://{bucket}/in/outage.dxf"
    job_id = str(uuid.uuid4())
    with pytest.raises(ConversionError) as info:
        asyncio.run(convert_file(uri, job_id=job_id, dead_letter=True))
    assert info.value.code == "STORAGE_ERROR"
    assert get_ledger().get(job_id).status.value == "DLQ"
    # storage is back; the sweep requeues the request
    monkeypatch.setenv("CAD2GLTF_S3_ENDPOINT_URL", moto_s3.endpoint_url)
    reset_runtime()
    from flows.sweep import sweep_dead_letters

    assert asyncio.run(sweep_dead_letters())["requeue"] == 1
    (request,) = _drain(env, get_settings().amqp_queue)
    out = asyncio.run(convert_file(request["source_uri"], job_id=request["job_id"],
                                   dead_letter=True))
    assert out["status"] == "SUCCESS"
    job = get_ledger().get(job_id)
    assert job.status.value == "SUCCESS" and job.reprocess_count == 1
    key = out["result_uri"].split(f"s3://{bucket}/", 1)[1]
    assert_valid_glb(moto_s3.client.get_object(Bucket=bucket, Key=key)["Body"].read())
