"""Maintenance flows (flows/maintenance.py, tasks/maintenance.py) under
``prefect_test_harness``: retention cleanup against a local file store and PostgreSQL, the
cleanup lock, the performance baseline and its table; the statistics and the regression
rule as pure functions; the ledger helpers they use (``query``, ``try_advisory_lock``).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cad2gltf.synth.floorplan import generate_floorplan, write_floorplan
from tasks.maintenance import (
    CLEANUP_LOCK_KEY,
    baseline_chart_png,
    baseline_markdown,
    baseline_row,
    insert_baseline,
    calibrate,
    is_regression,
    p95_change,
    meets_sla,
    previous_baseline,
    retention_cutoffs,
    summarise,
)
from tests.conftest import fresh_schema_dsn
from tests.gltf_validator import assert_valid_glb, format_report, validate_many

DAY = 86400.0


def _fresh_schema_dsn(pg_dsn: str) -> str:
    return fresh_schema_dsn(pg_dsn, "m")


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def env(harness, pg_dsn, tmp_path, monkeypatch):
    """A local file store under ``CAD2GLTF_HOME`` and a fresh PostgreSQL schema."""
    from tasks.runtime import reset_runtime

    dsn = _fresh_schema_dsn(pg_dsn)
    home = tmp_path / "home"
    monkeypatch.setenv("CAD2GLTF_HOME", str(home))
    monkeypatch.setenv("CAD2GLTF_LEDGER_DSN", dsn)
    for name in ("CAD2GLTF_STORAGE_URL", "CAD2GLTF_WORK_DIR"):
        monkeypatch.delenv(name, raising=False)
    reset_runtime()

    class E:
        pass

    e = E()
    e.home, e.dsn, e.tmp = home, dsn, tmp_path
    e.store_root = home / "store"
    e.work = home / "work"
    yield e
    reset_runtime()


def _run(coro):
    return asyncio.run(coro)


def _age(path: Path, days: float) -> None:
    when = time.time() - days * DAY
    os.utime(path, (when, when))


def _pg_exec(dsn: str, sql: str, params=()) -> list[tuple]:
    import psycopg2

    conn = psycopg2.connect(dsn, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


async def _artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return max(found, key=lambda a: a.created or datetime.min.replace(tzinfo=UTC)) \
        if found else None


# --------------------------------------------------------------------------- pure parts


def test_retention_cutoffs():
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    cut = retention_cutoffs(now, scratch_hours=24, result_days=30, ledger_days=0)
    assert cut == {"scratch": now - timedelta(hours=24), "results": now - timedelta(days=30),
                   "ledger": now}
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            retention_cutoffs(now, scratch_hours=bad, result_days=1, ledger_days=1)
    with pytest.raises(ValueError):
        retention_cutoffs(datetime(2026, 5, 1), scratch_hours=1, result_days=1, ledger_days=1)


def test_summarise_percentiles_and_throughput():
    stats = summarise([float(i) for i in range(1, 101)])  # 1 .. 100 s
    assert stats["n"] == 100
    assert stats["p50"] == pytest.approx(50.5)
    assert stats["p95"] == pytest.approx(95.05)
    assert stats["p99"] == pytest.approx(99.01)
    assert stats["mean"] == pytest.approx(50.5)
    assert stats["throughput_per_min"] == pytest.approx(60 * 100 / 5050)
    one = summarise([2.0])
    assert (one["n"], one["p50"], one["p95"], one["p99"]) == (1, 2.0, 2.0, 2.0)
    assert one["throughput_per_min"] == pytest.approx(30.0)
    two = summarise([1.0, 3.0])  # linear interpolation between the two
    assert two["p95"] == pytest.approx(2.9) and two["p50"] == pytest.approx(2.0)
    for bad in ([], [1.0, -0.1], [float("nan")]):
        with pytest.raises(ValueError):
            summarise(bad)


@pytest.mark.parametrize(("p95", "previous", "tolerance", "expected"), [
    (1.11, 1.0, 0.10, True),     # 11 % slower
    (1.10, 1.0, 0.10, False),    # exactly 10 %: not "over 10 %"
    (2.20, 2.0, 0.10, False),    # exactly 10 % with float noise
    (2.21, 2.0, 0.10, True),
    (0.50, 1.0, 0.10, False),    # faster
    (3.00, 2.0, 0.50, False),    # 50 % allowed
    (3.01, 2.0, 0.50, True),
    (9.00, None, 0.10, False),   # first baseline
    (9.00, 0.0, 0.10, False),    # nothing to compare with
])
def test_is_regression(p95, previous, tolerance, expected):
    assert is_regression(p95, previous, tolerance) is expected


@pytest.mark.parametrize(("p95", "cal", "previous", "prev_cal", "expected"), [
    (1.30, 1.30, 1.0, 1.0, False),   # 30 % slower, but the machine was 30 % slower too
    (1.30, 1.00, 1.0, 1.0, True),    # same machine speed: a real 30 % regression
    (1.00, 0.70, 1.0, 1.0, True),    # same seconds on a 30 % faster machine: regressed
    (1.30, None, 1.0, 1.0, True),    # no calibration today: raw seconds
    (1.30, 1.30, 1.0, None, True),   # previous row from before calibration: raw seconds
    (1.30, 1.30, 1.0, 0.0, True),    # unusable calibration: raw seconds
])
def test_is_regression_in_units_of_machine_speed(p95, cal, previous, prev_cal, expected):
    assert is_regression(p95, previous, 0.10, cal, prev_cal) is expected
    change = p95_change(p95, previous, cal, prev_cal)
    assert (change > 0.10) is expected


def test_calibrate_times_the_reference_workload(tmp_path):
    from cad2gltf.synth.floorplan import generate_floorplan, write_floorplan

    path = tmp_path / "ref.dxf"
    write_floorplan(generate_floorplan(seed=1, rooms_x=2, rooms_y=1), path)
    seconds = calibrate(str(path))
    assert 0 < seconds < 30
    with pytest.raises(OSError):
        calibrate(str(tmp_path / "missing.dxf"))


def test_baseline_row_and_sla():
    taken = datetime(2026, 5, 1, tzinfo=UTC)
    stats = summarise([4.0, 4.5, 5.5])
    row = baseline_row("large", stats, {"p95": 4.0}, taken_at=taken, host="h",
                       converter_version="9.9")
    assert row["previous_p95"] == 4.0 and row["regression"] is True  # 5.4 vs 4.0
    assert row["runs"] == 3 and row["sla_p95_seconds"] == 5.0 and row["file_type"] == "dxf"
    first = baseline_row("large", stats, None, taken_at=taken, host="h", converter_version="9.9")
    assert first["previous_p95"] is None and first["regression"] is False
    assert meets_sla(4.99) and not meets_sla(5.0) and meets_sla(99, None)
    png = baseline_chart_png([{**row, "size_label": "large"}])
    assert png.startswith(b"\x89PNG")
    md = baseline_markdown([row], png)
    assert "| large | 3 |" in md and "data:image/png;base64," in md and "**yes**" in md
    assert "**missed**" in md  # p95 5.4 s > 5 s


# --------------------------------------------------------------------------- ledger helpers


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_ledger_query_and_baseline_rows(backend, request, tmp_path):
    from tasks.ledger import open_ledger

    dsn = (_fresh_schema_dsn(request.getfixturevalue("pg_dsn")) if backend == "postgres"
           else f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    with open_ledger(dsn) as led:
        assert 3 in led.migrate()  # 003_perf_baselines is found by its name
        assert previous_baseline("dxf", "small", led) is None
        stats = summarise([1.0, 2.0])
        t1 = datetime(2026, 5, 1, 8, tzinfo=UTC)
        first = baseline_row("small", stats, None, taken_at=t1, host="h", converter_version="v")
        id1 = insert_baseline(first, led)
        second = baseline_row("small", summarise([3.0]), first, taken_at=t1 + timedelta(hours=1),
                              host="h", converter_version="v")
        id2 = insert_baseline(second, led)
        assert id2 > id1
        got = previous_baseline("dxf", "small", led)
        assert got["id"] == id2 and got["taken_at"] == t1 + timedelta(hours=1)
        assert got["regression"] is True and got["previous_p95"] == pytest.approx(first["p95"])
        assert got["calibration_seconds"] is None  # rows without a calibration stay valid
        third = baseline_row("small", summarise([3.3]), got, taken_at=t1 + timedelta(hours=2),
                             host="h", converter_version="v", calibration_seconds=0.8)
        insert_baseline(third, led)
        fourth = baseline_row("small", summarise([3.9]), previous_baseline("dxf", "small", led),
                              taken_at=t1 + timedelta(hours=3), host="h", converter_version="v",
                              calibration_seconds=1.0)
        assert fourth["previous_calibration_seconds"] == pytest.approx(0.8)
        assert fourth["regression"] is False  # 18 % more seconds, 5.5 % faster per machine speed
        insert_baseline(fourth, led)
        assert previous_baseline("dxf", "small", led)["calibration_seconds"] == pytest.approx(1.0)
        assert previous_baseline("dxf", "large", led) is None
        assert led.query("SELECT count(*) FROM perf_baselines WHERE taken_at < ?",
                         [t1 + timedelta(minutes=1)]) == [(1,)]
        assert led.query("UPDATE perf_baselines SET host = ? WHERE id = ?", ["x", id1],
                         write=True) == []
        with pytest.raises(ValueError):
            led.query("SELECT 1 WHERE ? IS NULL", [datetime(2026, 1, 1)])


def test_try_advisory_lock(pg_dsn, tmp_path):
    from tasks.ledger import open_ledger

    with open_ledger(pg_dsn) as led:
        with led.try_advisory_lock(CLEANUP_LOCK_KEY) as first:
            assert first is True
            with led.try_advisory_lock(CLEANUP_LOCK_KEY) as second:
                assert second is False  # its own session: not re-entrant
        with led.try_advisory_lock(CLEANUP_LOCK_KEY) as again:
            assert again is True  # released on exit
    with open_ledger(f"sqlite:///{tmp_path / 'j.sqlite3'}") as led:
        with led.try_advisory_lock(1) as a, led.try_advisory_lock(1) as b:
            assert a is True and b is False  # SQLite: a file lock beside the database
        with led.try_advisory_lock(1) as again:
            assert again is True


# --------------------------------------------------------------------------- cleanup


def _convert(tmp: Path, seed: int) -> dict:
    from flows.convert import convert_file

    path = write_floorplan(generate_floorplan(seed=seed, rooms_x=2, rooms_y=2),
                           tmp / f"plan{seed}.dxf")
    out = _run(convert_file(path.as_uri()))
    assert out["status"] == "SUCCESS"
    return out


def _local(uri: str) -> Path:
    return Path(urlsplit(uri).path)


def _finished_job(ledger, status: str, days_ago: float | None, dsn: str) -> str:
    """A job in ``status``, its timestamps moved ``days_ago`` into the past."""
    job, _ = ledger.create_or_get(f"k-{uuid.uuid4().hex}", "file:///in/x.dxf")
    path = {"SUCCESS": ["RUNNING", "SUCCESS"], "FAILURE": ["FAILURE"], "DLQ": ["DLQ"],
            "RUNNING": ["RUNNING"]}[status]
    for to in path:
        ledger.transition(job.job_id, to, owner="w1" if "RUNNING" in path else None)
    if days_ago:
        _pg_exec(dsn, "UPDATE cad_jobs SET created_at = created_at - %s * interval '1 day', "
                      "started_at = started_at - %s * interval '1 day', "
                      "finished_at = finished_at - %s * interval '1 day' WHERE job_id = %s",
                 (days_ago, days_ago, days_ago, job.job_id))
    return job.job_id


def test_cleanup_removes_only_what_is_past_retention(env):
    from flows.maintenance import cleanup
    from tasks.runtime import get_ledger

    old, new = _convert(env.tmp, 1), _convert(env.tmp, 2)
    reports = validate_many([_local(old["result_uri"]), _local(new["result_uri"])])
    assert all(r["errors"] == 0 for r in reports.values()), \
        [format_report(r) for r in reports.values()]
    old_folder = _local(old["result_uri"]).parent
    new_folder = _local(new["result_uri"]).parent
    assert sorted(p.name for p in old_folder.iterdir()) == ["manifest.json", "plan1.glb",
                                                            "plan1.png"]
    for f in old_folder.iterdir():
        _age(f, 40)  # past the 30-day default
    # scratch: an old download and an old stray file; a fresh one stays
    stale_dir = env.work / "0123456789abcdef"
    stale_dir.mkdir(parents=True)
    (stale_dir / "old.dxf").write_bytes(b"x" * 1000)
    (env.work / "stray.part").write_bytes(b"y" * 10)
    _age(stale_dir / "old.dxf", 2)
    _age(env.work / "stray.part", 2)
    _age(stale_dir, 2)
    fresh = env.work / "fresh" / "new.dxf"
    fresh.parent.mkdir()
    fresh.write_bytes(b"z")
    # ledger: old finished jobs go, recent and unfinished ones stay
    ledger = get_ledger()
    gone = {_finished_job(ledger, "SUCCESS", 100, env.dsn),
            _finished_job(ledger, "FAILURE", 95, env.dsn),
            _finished_job(ledger, "DLQ", 91, env.dsn)}
    kept = {_finished_job(ledger, "SUCCESS", 10, env.dsn),
            _finished_job(ledger, "RUNNING", 200, env.dsn),
            old["job_id"], new["job_id"]}

    dry = _run(cleanup(dry_run=True))
    assert dry["dry_run"] is True
    assert (dry["results"]["results"], dry["results"]["objects"]) == (1, 3)
    assert dry["results"]["examples"] == [str(old_folder.relative_to(env.store_root))]
    assert (dry["scratch"]["files"], dry["scratch"]["bytes"]) == (2, 1010)
    assert dry["ledger"]["jobs"] == 3 and set(dry["ledger"]["examples"]) == gone
    assert len(list(old_folder.iterdir())) == 3 and (stale_dir / "old.dxf").exists()
    assert all(ledger.get(j) is not None for j in gone)

    out = _run(cleanup())
    assert out["dry_run"] is False
    assert (out["results"]["results"], out["results"]["objects"]) == (1, 3)
    assert out["results"]["bytes"] > 1000
    assert not [p for p in old_folder.iterdir()]  # GLB, PNG and manifest all gone
    assert sorted(p.name for p in new_folder.iterdir()) == ["manifest.json", "plan2.glb",
                                                            "plan2.png"]
    assert_valid_glb(new_folder / "plan2.glb")
    assert out["scratch"] == {"files": 2, "bytes": 1010, "dirs": 1,
                              "examples": out["scratch"]["examples"], "dry_run": False}
    assert not stale_dir.exists() and not (env.work / "stray.part").exists()
    assert fresh.exists()
    assert out["ledger"]["jobs"] == 3
    assert all(ledger.get(j) is None for j in gone)
    assert all(ledger.get(j) is not None for j in kept)
    assert _pg_exec(env.dsn, "SELECT count(*) FROM cad_job_events WHERE job_id = ANY(%s)",
                    (list(gone),)) == [(0,)]

    art = _run(_artifact("cleanup-report"))
    assert art is not None and "results and previews" in art.data
    assert str(old_folder.relative_to(env.store_root)) in art.data

    # a second pass finds nothing more; result_days=0 expires the remaining result
    again = _run(cleanup())
    assert (again["results"]["results"], again["scratch"]["files"],
            again["ledger"]["jobs"]) == (0, 0, 0)
    everything = _run(cleanup(result_days=0, dry_run=True))
    assert everything["results"]["results"] == 1 and (new_folder / "plan2.glb").exists()


def test_cleanup_refuses_bad_ages_and_a_work_dir_holding_the_store(env, monkeypatch):
    from flows.maintenance import cleanup
    from tasks.runtime import reset_runtime

    with pytest.raises(ValueError):
        _run(cleanup(scratch_hours=-1))
    monkeypatch.setenv("CAD2GLTF_WORK_DIR", str(env.home))  # would reach the file store
    reset_runtime()
    with pytest.raises(RuntimeError, match="scratch"):
        _run(cleanup(dry_run=True))


def test_two_cleanups_at_once_one_stands_down(env, monkeypatch):
    import contextlib
    import threading

    import psycopg2

    import flows.maintenance as fm
    from flows.maintenance import cleanup
    from tasks.storage import ObjectStore

    # The first cleanup's result listing waits until the other has been refused the lock
    # (or 30 s): in one process Prefect starts the second run only once the first yields,
    # so without this the two might simply run one after the other.
    refused = threading.Event()
    real_lock, real_list = fm.cleanup_lock, ObjectStore.list

    @contextlib.contextmanager
    def observed_lock():
        with real_lock() as held:
            if not held:
                refused.set()
            yield held

    def slow_list(self, prefix=""):
        refused.wait(30)
        return real_list(self, prefix)

    monkeypatch.setattr(fm, "cleanup_lock", observed_lock)
    monkeypatch.setattr(ObjectStore, "list", slow_list)

    async def both():
        return await asyncio.gather(cleanup(), cleanup())

    t0 = time.monotonic()
    outs = _run(both())
    skipped = [o for o in outs if o.get("skipped")]
    assert len(skipped) == 1 and refused.is_set(), outs
    assert time.monotonic() - t0 < 25
    assert skipped[0] == {"skipped": "another cleanup is running"}
    assert [o for o in outs if not o.get("skipped")][0]["dry_run"] is False
    monkeypatch.setattr(ObjectStore, "list", real_list)

    # deterministic: while another session holds the lock, a cleanup does nothing
    holder = psycopg2.connect(env.dsn, connect_timeout=5)
    holder.autocommit = True
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (CLEANUP_LOCK_KEY,))
        assert _run(cleanup()) == {"skipped": "another cleanup is running"}
    finally:
        holder.close()  # ends the session: the lock goes with it
    assert "skipped" not in _run(cleanup())


# --------------------------------------------------------------------------- baseline


def test_performance_baseline_stores_compares_and_reports(env):
    from flows.maintenance import performance_baseline

    before = {k: os.environ.get(k) for k in ("CAD2GLTF_HOME", "CAD2GLTF_LEDGER_DSN",
                                             "CAD2GLTF_STORAGE_URL", "CAD2GLTF_WORK_DIR")}
    first_root = env.tmp / "bench1"
    rows = _run(performance_baseline(runs_per_size=2, settle_seconds=0,
                                     work_root=str(first_root)))
    # the environment is restored and the real ledger got the rows
    assert {k: os.environ.get(k) for k in before} == before
    assert [(r["file_type"], r["size_label"]) for r in rows] == [
        ("dxf", "small"), ("dxf", "medium"), ("dxf", "large"),
        ("pdf", "sheet"), ("pdf", "set10"), ("pdf", "scan")]
    for r in rows:
        assert r["runs"] == 2 and r["previous_p95"] is None
        assert r["regression"] is False and 0 < r["p50"] <= r["p95"] <= r["p99"]
        assert r["throughput_per_min"] > 0
        assert r["sla_p95_seconds"] == (5.0 if r["file_type"] == "dxf" else 30.0)
    assert _pg_exec(env.dsn, "SELECT file_type, size_label, runs FROM perf_baselines "
                             "ORDER BY id") == [
        ("dxf", "small", 2), ("dxf", "medium", 2), ("dxf", "large", 2),
        ("pdf", "sheet", 2), ("pdf", "set10", 2), ("pdf", "scan", 2)]
    # every run converted from scratch in a home of its own: 1 warm-up + 6 sizes x 2 runs
    glbs = sorted(first_root.glob("runs/*/store/results/**/*.glb"))
    assert len(glbs) == 13 and len({p.parts[len(first_root.parts) + 1] for p in glbs}) == 13
    reports = validate_many(glbs)
    bad = [format_report(r) for r in reports.values() if r["errors"] or r.get("error")]
    assert not bad, bad

    second_root = env.tmp / "bench2"
    again = _run(performance_baseline(runs_per_size=1, settle_seconds=0, warmup=False,
                                      work_root=str(second_root)))
    by_size = {(r["file_type"], r["size_label"]): r for r in rows}
    for r in again:
        assert r["previous_p95"] == pytest.approx(
            by_size[(r["file_type"], r["size_label"])]["p95"])
        # regressions are judged in units of the machine's speed (calibrated runs)
        assert r["calibration_seconds"] > 0 and r["previous_calibration_seconds"] > 0
        assert r["regression"] is is_regression(r["p95"], r["previous_p95"], 0.10,
                                                r["calibration_seconds"],
                                                r["previous_calibration_seconds"])
    stored = _pg_exec(env.dsn, "SELECT size_label, previous_p95, regression FROM "
                               "perf_baselines ORDER BY id")
    assert len(stored) == 12 and all(p is not None for _, p, _ in stored[6:])
    glbs2 = sorted(second_root.glob("runs/*/store/results/**/*.glb"))
    assert len(glbs2) == 6
    reports = validate_many(glbs2)
    assert all(r["errors"] == 0 for r in reports.values())

    art = _run(_artifact("performance-baseline"))
    assert art is not None and "| large |" in art.data
    assert "data:image/png;base64," in art.data
