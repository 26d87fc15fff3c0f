"""RabbitMQ requests: message schema, topology, the listener against the real broker on
127.0.0.1:5672 and a Prefect API (``prefect_test_harness``) with the listener
deployment registered. Each test uses its own exchange and queues."""

from __future__ import annotations

import json
import uuid

import pytest

from tasks.messages import CURRENT_SCHEMA, MalformedMessage, parse_request


def _body(**kw) -> bytes:
    data = {"schema_version": CURRENT_SCHEMA, "job_id": str(uuid.uuid4()),
            "source_uri": "s3://bucket/plan.dxf"}
    data.update(kw)
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


# -- schema (pure) -----------------------------------------------------------------------

def test_current_and_upgraded_schema():
    r = parse_request(_body(options={"wall_height": 3.0}, priority=7))
    assert r.schema_version == "1.1" and r.priority == 7
    old = parse_request(_body(schema_version="1.0"))
    assert old.schema_version == "1.1" and old.priority == 5 and old.metadata == {}
    newer = parse_request(_body(schema_version="1.4", some_future_field=1))
    assert newer.schema_version == "1.1"


@pytest.mark.parametrize("body,subcode", [
    (b"{not json", "BAD_JSON"),
    (b"[]", "BAD_JSON"),
    (_body(schema_version="2.0"), "UNSUPPORTED_SCHEMA"),
    (_body(schema_version="x"), "UNSUPPORTED_SCHEMA"),
    (_body(source_uri="relative/path.dxf"), "BAD_MESSAGE"),
    (_body(job_id=...), "BAD_MESSAGE"),
    (_body(options={"nope": 1}), "BAD_MESSAGE"),
    (_body(file_type="dwg"), "BAD_MESSAGE"),
])
def test_malformed_messages_are_refused_with_a_reason(body, subcode):
    with pytest.raises(MalformedMessage) as info:
        parse_request(body)
    assert info.value.subcode == subcode and info.value.message


def test_idempotency_key_is_the_business_identity():
    a = parse_request(_body(job_id="j1", metadata={"etag": "e1"}))
    b = parse_request(_body(job_id="j2", metadata={"etag": "e1"}))
    c = parse_request(_body(job_id="j1", metadata={"etag": "e2"}))
    assert a.idempotency_key() == b.idempotency_key() != c.idempotency_key()


# -- broker ------------------------------------------------------------------------------

def test_topology_is_declared_idempotently(broker):
    from blocks.settings import get_settings
    from tasks.amqp import declare_topology

    channel, names = broker
    declare_topology(channel)
    declare_topology(channel)  # same arguments: no error
    s = get_settings()
    q = channel.queue_declare(s.amqp_queue, passive=True)
    assert q.method.message_count == 0
    channel.queue_declare(s.amqp_dead_letter_queue, passive=True)


@pytest.fixture
def listener_env(broker, pg_dsn, tmp_path, monkeypatch):
    """A Prefect API with the listener's deployment, and the ledger on PostgreSQL."""
    from prefect.testing.utilities import prefect_test_harness

    monkeypatch.setenv("CAD2GLTF_LEDGER_DSN", pg_dsn)
    monkeypatch.setenv("CAD2GLTF_HOME", str(tmp_path / "home"))
    with prefect_test_harness(server_startup_timeout=120):
        import asyncio

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import WorkPoolCreate

        from flows.convert import convert_file

        async def register():
            async with get_client() as client:
                await client.create_work_pool(WorkPoolCreate(name="cad-cpu", type="process"))
            dep = await convert_file.to_deployment(name="rabbitmq", work_pool_name="cad-cpu")
            return await dep.apply()

        deployment_id = asyncio.run(register())
        yield broker, deployment_id


def _runs_of(deployment_id):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async def read():
        async with get_client() as client:
            return await client.read_flow_runs(deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[deployment_id])))

    return asyncio.run(read())


def _publish(channel, body: bytes, **headers):
    from blocks.settings import get_settings
    from tasks.amqp import declare_topology, publish

    s = get_settings()
    declare_topology(channel, s)
    publish(channel, s.amqp_exchange, s.amqp_routing_key, body, headers=headers)


def test_duplicates_make_one_run_and_malformed_go_to_the_dead_letter_queue(listener_env):
    from blocks.settings import get_settings
    from flows.listener import Listener
    from tasks.amqp import CODE_HEADER, REASON_HEADER
    from tasks.runtime import get_ledger

    (channel, _), deployment_id = listener_env
    job_id = str(uuid.uuid4())
    good = _body(job_id=job_id, source_uri="s3://bucket/dup.dxf", metadata={"etag": "v1"})
    for _ in range(20):
        _publish(channel, good, **{"x-trace-id": "trace-123"})
    _publish(channel, b"{broken")
    _publish(channel, _body(schema_version="2.0"))
    other = _body(source_uri="s3://bucket/after.dxf")
    _publish(channel, other)

    listener = Listener()
    handled = listener.run(max_messages=23, idle_exit=10)
    assert handled == 23 and listener.dead_lettered == 2

    runs = _runs_of(deployment_id)
    by_job = {}
    for run in runs:
        by_job.setdefault(run.parameters["job_id"], []).append(run)
    assert len(by_job[job_id]) == 1  # 20 deliveries, one run
    assert len(runs) == 2  # plus the valid message after the malformed ones
    assert "x-trace-id:trace-123" in by_job[job_id][0].tags
    job = get_ledger().get(job_id)
    assert job.status.value == "PENDING" and job.trace_id == "trace-123"

    s = get_settings()
    dead = []
    for _ in range(2):
        method, props, body = channel.basic_get(s.amqp_dead_letter_queue, auto_ack=True)
        assert method is not None
        dead.append((props.headers[CODE_HEADER], props.headers[REASON_HEADER], body))
    codes = sorted(d[0] for d in dead)
    assert codes == ["VALIDATION_ERROR/BAD_JSON", "VALIDATION_ERROR/UNSUPPORTED_SCHEMA"]
    assert all(reason for _, reason, _ in dead)
    assert channel.queue_declare(s.amqp_queue, passive=True).method.message_count == 0


def test_unreachable_prefect_means_no_ack_and_redelivery(listener_env, monkeypatch):
    from blocks.settings import get_settings
    from flows.listener import Listener

    (channel, _), deployment_id = listener_env
    _publish(channel, _body(source_uri="s3://bucket/later.dxf"))
    listener = Listener()
    calls = {"n": 0}
    real = listener.start_run

    def flaky_start(request, trace):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ConnectionError("Prefect API unreachable")
        return real(request, trace)

    monkeypatch.setattr(listener, "start_run", flaky_start)
    assert listener.run(max_messages=1, idle_exit=15) == 1
    assert calls["n"] == 3  # nacked twice, redelivered, then handed over
    assert len(_runs_of(deployment_id)) == 1
    s = get_settings()
    assert channel.queue_declare(s.amqp_queue, passive=True).method.message_count == 0


def test_final_failure_goes_to_the_dead_letter_queue_with_context(listener_env, tmp_path):
    import asyncio

    from blocks.settings import get_settings
    from cad2gltf.errors import ConversionError
    from flows.convert import convert_file
    from tasks.amqp import CODE_HEADER
    from tasks.runtime import get_ledger

    (channel, _), _ = listener_env
    bad = tmp_path / "corrupt.dxf"
    bad.write_bytes(b"0\nSECTION\n2\nENTITIES\n0\nLINE\n10\nxx\n\xff\xfe" * 3)
    job_id = str(uuid.uuid4())
    with pytest.raises(ConversionError) as info:
        asyncio.run(convert_file(bad.as_uri(), job_id=job_id, dead_letter=True))
    assert info.value.code == "PARSING_ERROR"
    job = get_ledger().get(job_id)
    assert job.status.value == "DLQ" and job.error_code.startswith("PARSING_ERROR")
    method, props, body = channel.basic_get(get_settings().amqp_dead_letter_queue,
                                            auto_ack=True)
    assert method is not None and props.headers[CODE_HEADER].startswith("PARSING_ERROR")
    letter = json.loads(body)
    assert letter["job_id"] == job_id and letter["source_uri"] == bad.as_uri()
    assert letter["error_code"] == "PARSING_ERROR" and letter["attempts"] == 1
    assert letter["failed_at"] and letter["flow_run_id"] == info.value.details["flow_run_id"]


class _Crash(BaseException):
    """Stands for the process dying (SIGKILL): nothing after it runs, nothing is acked."""


def test_listener_dying_after_the_run_before_the_ack_makes_no_second_run(listener_env):
    from blocks.settings import get_settings
    from flows.listener import Listener

    (channel, _), deployment_id = listener_env
    _publish(channel, _body(source_uri="s3://bucket/crash.dxf"))
    first = Listener()
    real = first.start_run

    def start_then_die(request, trace):
        real(request, trace)
        raise _Crash()

    first.start_run = start_then_die
    with pytest.raises(_Crash):
        first.run(max_messages=1, idle_exit=10)
    # the dead process's connection is gone: RabbitMQ redelivers the unacked message
    import gc

    gc.collect()
    second = Listener()
    deadline_handled = second.run(max_messages=1, idle_exit=20)
    assert deadline_handled == 1
    assert len(_runs_of(deployment_id)) == 1
    s = get_settings()
    assert channel.queue_declare(s.amqp_queue, passive=True).method.message_count == 0
