"""The job ledger (tasks/ledger.py) on a real PostgreSQL and on SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cad2gltf.errors import InternalError, NetworkError, StorageError
from tests.conftest import fresh_schema_dsn
from tasks.ledger import (
    ALLOWED_TRANSITIONS,
    FINISHED_STATUSES,
    Job,
    JobLedger,
    JobNotFound,
    JobStatus,
    TransitionRefused,
    can_transition,
    load_migrations,
    open_ledger,
)

S = JobStatus
REPO = Path(__file__).resolve().parent.parent
SUB_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
MIGRATIONS = [m.version for m in load_migrations("postgres")]
BACKENDS = ["postgres", "sqlite"]


def _fresh_schema_dsn(pg_dsn: str) -> str:
    return fresh_schema_dsn(pg_dsn, "t")


@pytest.fixture(params=BACKENDS)
def ledger_dsn(request, tmp_path) -> str:
    """An empty ledger database: a fresh PostgreSQL schema or a new SQLite file."""
    if request.param == "postgres":
        return _fresh_schema_dsn(request.getfixturevalue("pg_dsn"))
    return f"sqlite:///{tmp_path / 'ledger' / 'jobs.sqlite3'}"


@pytest.fixture
def ledger(ledger_dsn):
    with open_ledger(ledger_dsn) as led:
        led.migrate()
        yield led


def _key() -> str:
    return f"key-{uuid.uuid4().hex}"


def _new(ledger: JobLedger, **kwargs) -> Job:
    job, created = ledger.create_or_get(_key(), "s3://in/plan.dxf", **kwargs)
    assert created
    return job


# Paths that bring a new job into each status; workers are "w1".
PATHS: dict[JobStatus, list[tuple[JobStatus, str | None]]] = {
    S.PENDING: [],
    S.RUNNING: [(S.RUNNING, "w1")],
    S.SUCCESS: [(S.RUNNING, "w1"), (S.SUCCESS, "w1")],
    S.RETRY: [(S.RUNNING, "w1"), (S.RETRY, "w1")],
    S.FAILURE: [(S.FAILURE, None)],
    S.DLQ: [(S.DLQ, None)],
    S.REPROCESSING: [(S.FAILURE, None), (S.REPROCESSING, None)],
}


def _job_in(ledger: JobLedger, status: JobStatus) -> Job:
    job = _new(ledger)
    for to, owner in PATHS[status]:
        job = ledger.transition(job.job_id, to, owner=owner)
    assert job.status is status
    return job


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrate_is_idempotent(backend, request, tmp_path):
    dsn = (_fresh_schema_dsn(request.getfixturevalue("pg_dsn")) if backend == "postgres"
           else f"sqlite:///{tmp_path / 'a' / 'b' / 'jobs.sqlite3'}")
    with open_ledger(dsn) as led:
        assert led.backend == backend
        assert led.applied_migrations() == []
        assert led.migrate() == MIGRATIONS == [1, 2, 3, 4]
        assert led.migrate() == []
        assert led.applied_migrations() == [1, 2, 3, 4]
    with open_ledger(dsn) as led:  # a new process sees the recorded versions
        assert led.migrate() == []
    if backend == "sqlite":
        assert (tmp_path / "a" / "b" / "jobs.sqlite3").is_file()
        import sqlite3

        conn = sqlite3.connect(tmp_path / "a" / "b" / "jobs.sqlite3")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_migrations_both_succeed(backend, request, tmp_path):
    dsn = (_fresh_schema_dsn(request.getfixturevalue("pg_dsn")) if backend == "postgres"
           else f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    ledgers = [open_ledger(dsn) for _ in range(2)]
    barrier = threading.Barrier(2)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run(led: JobLedger) -> None:
        try:
            barrier.wait()
            results.append(led.migrate())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(led,)) for led in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for led in ledgers:
        led.close()
    assert not errors, errors
    assert sorted(results) == [[], MIGRATIONS]


def test_concurrent_migrations_in_two_processes(pg_dsn):
    dsn = _fresh_schema_dsn(pg_dsn)
    code = ("import sys; from tasks.ledger import open_ledger; "
            "print(open_ledger(sys.argv[1]).migrate())")
    procs = [subprocess.Popen([sys.executable, "-c", code, dsn], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=SUB_ENV, cwd=REPO)
             for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted(o[0].strip() for o in outs) == [str(MIGRATIONS), "[]"]


def test_unmigrated_database_is_a_storage_error(ledger_dsn):
    with open_ledger(ledger_dsn) as led:
        with pytest.raises(StorageError) as info:
            led.get("nope")
    assert info.value.subcode == "LEDGER_ERROR"
    assert info.value.code == "STORAGE_ERROR"


# --------------------------------------------------------------------------- creation


def test_create_or_get_defaults(ledger):
    before = datetime.now(UTC)
    job, created = ledger.create_or_get(
        "k-defaults", "s3://in/a.dxf", file_type="dxf", options={"wall_height": 3.0},
        callback_url="http://localhost/cb", metadata={"tenant": "t1"}, trace_id="tr-1")
    assert created
    uuid.UUID(job.job_id)  # a UUID string by default
    assert job.status is S.PENDING and isinstance(job.status, str)
    assert (job.idempotency_key, job.source_uri, job.file_type) == ("k-defaults",
                                                                     "s3://in/a.dxf", "dxf")
    assert job.options == {"wall_height": 3.0} and job.metadata == {"tenant": "t1"}
    assert (job.callback_url, job.trace_id) == ("http://localhost/cb", "tr-1")
    assert (job.progress, job.attempts, job.reprocess_count) == (0.0, 0, 0)
    assert job.stage is job.flow_run_id is job.started_at is job.finished_at is None
    assert job.created_at.tzinfo is not None and job.created_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=5) <= job.created_at <= datetime.now(UTC)
    assert job.updated_at == job.created_at

    again, created = ledger.create_or_get("k-defaults", "s3://other.dxf")
    assert not created and again == job
    assert ledger.get(job.job_id) == job
    assert ledger.find("k-defaults") == job
    assert ledger.get("missing") is None and ledger.find("missing") is None
    assert job.to_dict()["status"] == "PENDING"

    mine, created = ledger.create_or_get("k-own-id", "s3://in/b.dxf", job_id="job-42")
    assert created and mine.job_id == "job-42"


def test_create_or_get_race_20_threads(ledger_dsn):
    with open_ledger(ledger_dsn) as led:
        led.migrate()
        key = _key()
        barrier = threading.Barrier(20)
        results: list[tuple[Job, bool]] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def worker() -> None:
            try:
                barrier.wait()
                res = led.create_or_get(key, "s3://in/race.dxf")
                with lock:
                    results.append(res)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert len(results) == 20
        assert len({job.job_id for job, _ in results}) == 1
        assert sum(created for _, created in results) == 1
        assert len(led.events(results[0][0].job_id)) == 1


def test_create_or_get_rejects_bad_input(ledger):
    with pytest.raises(ValueError):
        ledger.create_or_get("", "s3://x")
    with pytest.raises(ValueError):
        ledger.create_or_get("k", "")
    with pytest.raises(TypeError):
        ledger.create_or_get("k", "s3://x", options=["not", "a", "dict"])
    ledger.create_or_get("k-a", "s3://x", job_id="same-id")
    with pytest.raises(ValueError) as info:  # InvalidInputError is a ValueError
        ledger.create_or_get("k-b", "s3://x", job_id="same-id")
    assert info.value.subcode == "JOB_ID_CONFLICT"


# --------------------------------------------------------------------------- transitions


def _expected_allowed(frm: JobStatus, to: JobStatus) -> bool:
    if frm is S.RUNNING and to is S.RUNNING:
        return True  # the same owner re-claims
    return to in ALLOWED_TRANSITIONS[frm]


def test_transition_matrix_table():
    assert ALLOWED_TRANSITIONS == {
        S.PENDING: {S.RUNNING, S.FAILURE, S.DLQ},
        S.RUNNING: {S.SUCCESS, S.RETRY, S.FAILURE, S.DLQ},
        S.RETRY: {S.RUNNING, S.FAILURE, S.DLQ},
        S.FAILURE: {S.DLQ, S.REPROCESSING},
        S.DLQ: {S.REPROCESSING, S.FAILURE},
        S.REPROCESSING: {S.RUNNING, S.FAILURE, S.DLQ},
        S.SUCCESS: set(),
    }
    assert can_transition("RUNNING", "RUNNING", owner="w1", current_owner="w1")
    assert not can_transition("RUNNING", "RUNNING", owner="w2", current_owner="w1")
    assert not can_transition("RUNNING", "SUCCESS", owner="w2", current_owner="w1")
    assert can_transition("RUNNING", "SUCCESS", owner=None, current_owner="w1")


@pytest.mark.parametrize("frm", list(JobStatus), ids=str)
def test_transition_matrix_exhaustive(ledger, frm):
    for to in JobStatus:
        job = _job_in(ledger, frm)
        n_events = len(ledger.events(job.job_id))
        if _expected_allowed(frm, to):
            after = ledger.transition(job.job_id, to, owner="w1")
            assert after.status is to, (frm, to)
            assert len(ledger.events(job.job_id)) == n_events + 1
        else:
            with pytest.raises(TransitionRefused) as info:
                ledger.transition(job.job_id, to, owner="w1")
            err = info.value
            assert (err.job_id, err.current, err.requested, err.owner) == (
                job.job_id, frm, to, "w1")
            msg = str(err)
            assert job.job_id in msg and frm.value in msg and to.value in msg and "w1" in msg
            assert ledger.get(job.job_id) == job, (frm, to)  # nothing written
            assert len(ledger.events(job.job_id)) == n_events


def test_owner_rules(ledger):
    job = _new(ledger)
    job = ledger.transition(job.job_id, S.RUNNING, owner="w1")
    assert (job.flow_run_id, job.attempts) == ("w1", 1)
    assert job.started_at is not None

    with pytest.raises(TransitionRefused, match="another flow run"):  # second worker
        ledger.transition(job.job_id, S.RUNNING, owner="w2")
    with pytest.raises(TransitionRefused):
        ledger.transition(job.job_id, S.RUNNING)  # re-claim needs the owner
    for to in (S.SUCCESS, S.RETRY, S.FAILURE, S.DLQ):
        with pytest.raises(TransitionRefused, match="'w2'"):
            ledger.transition(job.job_id, to, owner="w2")
    assert ledger.get(job.job_id) == job

    again = ledger.transition(job.job_id, S.RUNNING, owner="w1")  # retried flow run
    assert again.attempts == 2 and again.flow_run_id == "w1"
    assert again.started_at >= job.started_at

    done = ledger.transition(job.job_id, S.SUCCESS, owner="w1", result_uri="s3://out/a.glb",
                             preview_uri="s3://out/a.png", error_code="X")
    assert done.status is S.SUCCESS and done.progress == 100.0
    assert (done.result_uri, done.preview_uri, done.error_code) == (
        "s3://out/a.glb", "s3://out/a.png", "X")
    assert done.finished_at is not None and done.finished_at >= done.started_at

    # an operator (owner=None) may move a RUNNING job owned by anybody
    other = ledger.transition(_new(ledger).job_id, S.RUNNING, owner="w9")
    assert ledger.transition(other.job_id, S.DLQ).status is S.DLQ


def test_claim_race_only_one_owner_wins(ledger_dsn):
    with open_ledger(ledger_dsn, pool_size=8) as led:
        led.migrate()
        job = _new(led)
        barrier = threading.Barrier(10)
        wins: list[str] = []
        refused: list[str] = []

        def claim(owner: str) -> None:
            barrier.wait()
            try:
                led.transition(job.job_id, S.RUNNING, owner=owner,
                               expect_from={S.PENDING, S.RETRY})
                wins.append(owner)
            except TransitionRefused:
                refused.append(owner)

        threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(wins) == 1 and len(refused) == 9
        final = led.get(job.job_id)
        assert final.flow_run_id == wins[0] and final.attempts == 1


def test_counters_and_timestamps(ledger):
    job = _new(ledger)
    jid = job.job_id
    job = ledger.transition(jid, S.RUNNING, owner="w1")
    job = ledger.transition(jid, S.RETRY, owner="w1", error_code="NETWORK_ERROR",
                            error_message="boom")
    assert job.finished_at is None and job.error_code == "NETWORK_ERROR"
    job = ledger.transition(jid, S.RUNNING, owner="w2")  # a new flow run takes over
    assert (job.attempts, job.flow_run_id) == (2, "w2")
    job = ledger.transition(jid, S.FAILURE, owner="w2", error_code="PARSING_ERROR",
                            error_message="bad dxf")
    assert job.finished_at is not None and job.error_message == "bad dxf"
    job = ledger.transition(jid, S.REPROCESSING)
    assert job.reprocess_count == 1 and job.finished_at is None
    job = ledger.transition(jid, S.RUNNING, owner="w3")
    assert job.attempts == 3
    job = ledger.transition(jid, S.DLQ, owner="w3")
    assert job.finished_at is not None
    job = ledger.transition(jid, S.REPROCESSING)
    assert job.reprocess_count == 2
    job = ledger.transition(jid, S.FAILURE)
    job = ledger.transition(jid, S.REPROCESSING, reprocess_count=10)  # explicit value wins
    assert job.reprocess_count == 10
    assert job.updated_at >= job.created_at


def test_expect_from_and_fields(ledger):
    job = _new(ledger)
    with pytest.raises(TransitionRefused, match="expected one of: RETRY"):
        ledger.transition(job.job_id, S.RUNNING, owner="w1", expect_from={S.RETRY})
    job = ledger.transition(job.job_id, "RUNNING", owner="w1", expect_from="PENDING",
                            stage="parse", progress=150, file_type="dxf",
                            source_sha256="ab" * 32, metadata={"pages": 1})
    assert (job.stage, job.progress, job.file_type) == ("parse", 100.0, "dxf")
    assert job.source_sha256 == "ab" * 32 and job.metadata == {"pages": 1}
    with pytest.raises(TypeError, match="cannot set"):
        ledger.transition(job.job_id, S.SUCCESS, owner="w1", status="SUCCESS")
    with pytest.raises(ValueError, match="unknown job status"):
        ledger.transition(job.job_id, "DONE", owner="w1")
    with pytest.raises(ValueError):
        ledger.transition(job.job_id, S.SUCCESS, owner="w1", progress=float("nan"))
    with pytest.raises(JobNotFound):
        ledger.transition("no-such-job", S.RUNNING, owner="w1")
    assert ledger.get(job.job_id) == job


# --------------------------------------------------------------------------- progress


def test_update_progress_only_while_running(ledger):
    job = _new(ledger)
    assert ledger.update_progress(job.job_id, "parse", 10) is False  # PENDING
    assert ledger.get(job.job_id) == job
    ledger.transition(job.job_id, S.RUNNING, owner="w1")
    assert ledger.update_progress(job.job_id, "parse", 25.5, owner="w1") is True
    got = ledger.get(job.job_id)
    assert (got.stage, got.progress) == ("parse", 25.5)
    assert ledger.update_progress(job.job_id, "mesh", 60, owner="w2") is False  # not owner
    assert ledger.update_progress(job.job_id, None, 70) is True  # stage kept
    got = ledger.get(job.job_id)
    assert (got.stage, got.progress) == ("parse", 70.0)
    ledger.transition(job.job_id, S.RETRY, owner="w1")
    assert ledger.update_progress(job.job_id, "mesh", 80, owner="w1") is False
    assert ledger.update_progress("no-such-job", "mesh", 80) is False
    assert ledger.get(job.job_id).progress == 70.0
    n = len(ledger.events(job.job_id))
    ledger.transition(job.job_id, S.RUNNING, owner="w1")
    ledger.update_progress(job.job_id, "mesh", 90)
    assert len(ledger.events(job.job_id)) == n + 1  # progress writes no events


# --------------------------------------------------------------------------- audit


def test_events_audit_trail(ledger):
    job = _new(ledger, trace_id="tr-9")
    jid = job.job_id
    ledger.transition(jid, S.RUNNING, owner="w1", stage="load")
    with pytest.raises(TransitionRefused):
        ledger.transition(jid, S.RUNNING, owner="w2")
    ledger.transition(jid, S.FAILURE, owner="w1", error_code="PARSING_ERROR")
    ledger.transition(jid, S.DLQ)
    ledger.transition(jid, S.REPROCESSING)
    events = ledger.events(jid)
    assert [(e.from_status, e.to_status) for e in events] == [
        (None, S.PENDING),
        (S.PENDING, S.RUNNING),
        (S.RUNNING, S.FAILURE),
        (S.FAILURE, S.DLQ),
        (S.DLQ, S.REPROCESSING),
    ]
    assert events[0].detail["trace_id"] == "tr-9"
    assert events[1].detail["owner"] == "w1" and events[1].stage == "load"
    assert events[1].detail["attempts"] == 1
    assert events[2].detail["error_code"] == "PARSING_ERROR"
    assert events[4].detail["reprocess_count"] == 1
    assert all(e.job_id == jid for e in events)
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert all(e.at.utcoffset() == timedelta(0) for e in events)
    assert len({e.event_id for e in events}) == len(events)


# --------------------------------------------------------------------------- listing


def test_list_recent_newest_first(ledger):
    jobs = []
    for _ in range(5):
        jobs.append(_new(ledger))
        time.sleep(0.002)
    recent = ledger.list_recent()
    assert [j.job_id for j in recent] == [j.job_id for j in reversed(jobs)]
    assert [j.job_id for j in ledger.list_recent(limit=2)] == [jobs[4].job_id, jobs[3].job_id]
    ledger.transition(jobs[1].job_id, S.DLQ)
    ledger.transition(jobs[3].job_id, S.DLQ)
    dlq = ledger.list_recent(status="DLQ")
    assert [j.job_id for j in dlq] == [jobs[3].job_id, jobs[1].job_id]
    assert ledger.list_recent(status=S.SUCCESS) == []
    with pytest.raises(ValueError):
        ledger.list_recent(limit=0)


def test_delete_finished_before(ledger):
    kept = {s: _job_in(ledger, s) for s in JobStatus}
    finished = {s: j for s, j in kept.items() if s in FINISHED_STATUSES}
    assert set(finished) == {S.SUCCESS, S.FAILURE, S.DLQ}
    past = datetime.now(UTC) - timedelta(hours=1)
    assert ledger.delete_finished_before(past) == 0
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    assert ledger.delete_finished_before(cutoff) == 3
    for status, job in kept.items():
        if status in FINISHED_STATUSES:
            assert ledger.get(job.job_id) is None
            assert ledger.events(job.job_id) == []
        else:
            assert ledger.get(job.job_id) is not None
            assert ledger.events(job.job_id) != []
    assert ledger.delete_finished_before(cutoff) == 0
    with pytest.raises(ValueError):
        ledger.delete_finished_before(datetime.now())  # naive


# --------------------------------------------------------------------------- connections


def test_bad_postgres_dsn_is_network_error_quickly():
    start = time.monotonic()
    with pytest.raises(NetworkError) as info:
        open_ledger("postgresql://postgres@127.0.0.1:1/nothing")
    assert time.monotonic() - start < 6
    err = info.value
    assert err.subcode == "LEDGER_UNAVAILABLE" and err.code == "NETWORK_ERROR"
    assert err.transient
    assert isinstance(err, ConnectionError)


def test_bad_sqlite_path_is_an_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises((StorageError, NetworkError)):
        open_ledger(f"sqlite:///{blocker / 'sub' / 'jobs.sqlite3'}")


@pytest.mark.parametrize("dsn", ["mysql://x/y", "jobs.sqlite3", "sqlite:///", "sqlite://rel"])
def test_unsupported_dsn(dsn):
    with pytest.raises(ValueError):
        open_ledger(dsn)


def test_sqlite_memory_shared_between_threads():
    with open_ledger("sqlite:///:memory:") as led:
        assert led.migrate() == MIGRATIONS
        out: list[bool] = []
        threads = [threading.Thread(target=lambda: out.append(
            led.create_or_get("k", "s3://x")[1])) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(out) == [False, False, False, False, True]


def test_closed_ledger_refuses(ledger_dsn):
    led = open_ledger(ledger_dsn)
    led.migrate()
    led.close()
    with pytest.raises(InternalError):
        led.list_recent()


def test_ledger_imports_no_prefect():
    code = ("import sys, tasks.ledger; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'prefect']; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=SUB_ENV, cwd=REPO)


def test_dropped_connection_is_transient_and_the_pool_recovers(pg_dsn):
    import psycopg2

    dsn = _fresh_schema_dsn(pg_dsn)
    with open_ledger(dsn, pool_size=1) as led:
        led.migrate()
        job = _new(led)
        admin = psycopg2.connect(pg_dsn, connect_timeout=5)
        admin.autocommit = True
        with admin.cursor() as cur:  # kill the ledger's pooled connection server-side
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = 'cad2gltf-ledger' AND datname = %s",
                        (urlsplit(pg_dsn).path.lstrip("/"),))
        admin.close()
        with pytest.raises(NetworkError) as info:
            led.get(job.job_id)
        assert info.value.subcode == "LEDGER_UNAVAILABLE"
        assert led.get(job.job_id) == job  # a fresh connection replaced the dead one
