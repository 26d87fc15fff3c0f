"""The cad2gltf-prefork worker against a real Prefect server and real worker processes.

One server for the module; pool ``warm-a`` (2 children, recycled after 5 runs) and pool
``warm-b`` (1 child, pool concurrency limit 1) each served by ``prefect worker start
--type cad2gltf-prefork``. The flows are in ``tests/worker_flows.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from deployments.local import REPO, LocalPrefect

pytestmark = pytest.mark.timeout(600)

FLOWS = {"double": "double", "sleepy": "sleepy", "probe": "probe",
         "convert_probe": "convert-probe"}
SAMPLE = REPO / "samples" / "house.dxf"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("prefork")
    with LocalPrefect(home, {"CAD2GLTF_HOME": str(home / "cad2gltf")}) as st:
        # the type is found through the plugin's entry point, as a user would create it
        st.run("work-pool", "create", "warm-a", "--type", "cad2gltf-prefork")
        st.run("work-pool", "create", "warm-b", "--type", "cad2gltf-prefork")
        with temporary_settings({PREFECT_API_URL: st.api_url}):
            with get_client(sync_client=True) as client:
                client.update_work_pool("warm-b", WorkPoolUpdate(concurrency_limit=1))
                deployments = {}
                for pool in ("warm-a", "warm-b"):
                    for fn, name in FLOWS.items():
                        flow_id = client.create_flow_from_name(name)
                        deployments[(pool, fn)] = client.create_deployment(
                            flow_id=flow_id, name=pool, work_pool_name=pool,
                            entrypoint=f"tests/worker_flows.py:{fn}",
                            pull_steps=[{"prefect.deployments.steps.set_working_directory":
                                         {"directory": str(REPO)}}])
            worker_env = {"CAD2GLTF_WORKER_POLL_SECONDS": "2",
                          "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
                          "CAD2GLTF_TEST_MARKER": "from-worker"}
            st.workers = {
                "warm-a": st.start_worker("warm-a", "cad2gltf-prefork", name="a", env={
                    **worker_env, "CAD2GLTF_WORKER_CHILDREN": "2",
                    "CAD2GLTF_WORKER_MAX_RUNS_PER_CHILD": "5"}),
            }
            st.deployments = deployments
            st.out = home / "out"
            st.out.mkdir()
            st.worker_env = worker_env
            st.wait_for_log("worker-a", "warm children ready", 180)
            yield st


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _start(st, pool: str, fn: str, **params) -> tuple[uuid.UUID, Path]:
    out = st.out / f"{uuid.uuid4().hex}.json"
    with _client() as client:
        run = client.create_flow_run_from_deployment(st.deployments[(pool, fn)],
                                                     parameters={**params, "out": str(out)})
    return run.id, out


def _wait_state(run_id, timeout: float = 120.0, final: bool = True, name: str | None = None):
    deadline = time.monotonic() + timeout
    with _client() as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(run_id)
            if run.state is not None and ((final and run.state.is_final())
                                          or (name and run.state.type.value == name)):
                return run
            time.sleep(0.1)
    raise AssertionError(f"flow run {run_id} still {run.state.type.value if run.state else None}")


def _wait_file(path: Path, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} never written")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def api(stack):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        yield stack


def test_worker_type_is_registered_with_its_job_template(api):
    from prefect.workers.base import BaseWorker

    from workers import PreforkWorker

    assert BaseWorker.get_worker_class_from_type("cad2gltf-prefork") is PreforkWorker
    with _client() as client:
        pool = client.read_work_pool("warm-a")
    assert pool.type == "cad2gltf-prefork"
    assert "working_dir" in pool.base_job_template["variables"]["properties"]


def test_runs_complete_in_warm_children_with_right_results(api):
    worker_pid = api.workers["warm-a"].pid
    run_id, out = _start(api, "warm-a", "double", x=21)
    run = _wait_state(run_id)
    assert run.state.type.value == "COMPLETED", run.state
    result = json.loads(out.read_text())
    assert result["value"] == 42
    assert result["pid"] != worker_pid
    # the run's environment is the worker's plus the job's, like a fresh engine process
    run_id, out = _start(api, "warm-a", "probe", tag="env")
    assert _wait_state(run_id).state.type.value == "COMPLETED"
    probe = json.loads(out.read_text())
    assert probe["flow_run_id"] == str(run_id)
    assert probe["env_marker"] == "from-worker"
    assert probe["cwd"] == str(REPO)  # the deployment's pull step ran
    assert probe["preloaded_ezdxf"] is True  # the child came warm


def test_heartbeats_are_emitted_from_warm_children(api):
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    run_id, _ = _start(api, "warm-a", "sleepy", seconds=1.0)
    assert _wait_state(run_id).state.type.value == "COMPLETED"
    deadline = time.monotonic() + 20
    with _client() as client:
        while time.monotonic() < deadline:
            resp = client.request("POST", "/events/filter", json={"filter": EventFilter(
                event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
            ).model_dump(mode="json"), "limit": 10})
            if resp.json()["events"]:
                return
            time.sleep(0.5)
    raise AssertionError("no heartbeat event for the run")


def test_module_state_does_not_leak_between_runs(api, tmp_path):
    """Runs with different options in warm children give the bytes fresh processes give."""
    options = [{"wall_height": 3.1}, {"semantics": False}, {"wall_height": 3.1},
               {"include_text": False}, {}]
    warm = []
    for opts in options:
        run_id, out = _start(api, "warm-a", "convert_probe", source=str(SAMPLE), options=opts)
        assert _wait_state(run_id).state.type.value == "COMPLETED"
        warm.append(json.loads(out.read_text())["sha256"])
    code = ("import hashlib, json, sys\n"
            "from cad2gltf.convert import convert_path\n"
            "from cad2gltf.options import ConvertOptions\n"
            "r = convert_path(sys.argv[1], ConvertOptions.from_dict(json.loads(sys.argv[2])),"
            " preview=False)\n"
            "print(hashlib.sha256(r.glb).hexdigest())\n")
    fresh = [subprocess.run([sys.executable, "-c", code, str(SAMPLE), json.dumps(o)],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                            text=True, check=True).stdout.strip() for o in options]
    assert warm == fresh
    assert len(set(fresh)) == 4  # the options really changed the output


def test_recycling_after_max_runs(api):
    pids = []
    for i in range(11):
        run_id, out = _start(api, "warm-a", "probe", tag=str(i))
        assert _wait_state(run_id).state.type.value == "COMPLETED"
        pids.append(json.loads(out.read_text())["pid"])
    counts = {pid: pids.count(pid) for pid in set(pids)}
    assert max(counts.values()) <= 5, counts
    assert len(counts) >= 3, counts
    retired = [pid for pid, n in counts.items() if n == 5]
    assert retired, counts
    deadline = time.monotonic() + 20  # the last run's child retires after it reported
    while any(_alive(pid) for pid in retired) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in retired), counts


def test_child_killed_mid_run_is_crashed_and_replaced(api):
    run_id, out = _start(api, "warm-a", "sleepy", seconds=60)
    pid = _wait_file(out)["pid"]
    os.kill(pid, signal.SIGKILL)
    run = _wait_state(run_id, timeout=60)
    assert run.state.type.value == "CRASHED", run.state
    assert "-9" in (run.state.message or ""), run.state.message
    run_id, out = _start(api, "warm-a", "double", x=5)
    assert _wait_state(run_id).state.type.value == "COMPLETED"
    assert json.loads(out.read_text())["value"] == 10
    assert json.loads(out.read_text())["pid"] != pid


def test_cancel_from_api_stops_the_child_and_frees_it(api):
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelling

    run_id, out = _start(api, "warm-a", "sleepy", seconds=120)
    pid = _wait_file(out)["pid"]
    _wait_state(run_id, final=False, name="RUNNING")
    with _client() as client:
        client.set_flow_run_state(run_id, Cancelling(), force=True)
    run = _wait_state(run_id, timeout=90)
    assert run.state.type == StateType.CANCELLED, run.state
    deadline = time.monotonic() + 20
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the cancelled run's child is still alive"
    # both children are free again: two runs at once complete
    runs = [_start(api, "warm-a", "sleepy", seconds=1.0) for _ in range(2)]
    for run_id, _ in runs:
        assert _wait_state(run_id, timeout=60).state.type.value == "COMPLETED"


def test_twenty_concurrent_runs_on_two_children(api):
    runs = [(i, *_start(api, "warm-a", "double", x=i)) for i in range(20)]
    pids = set()
    for i, run_id, out in runs:
        run = _wait_state(run_id, timeout=300)
        assert run.state.type.value == "COMPLETED", (i, run.state)
        result = json.loads(out.read_text())
        assert result["value"] == 2 * i
        pids.add(result["pid"])
    # 2 children, replaced every 5 runs: at most 2 + 20/5 processes
    assert len(pids) <= 6, pids


def test_pool_concurrency_limit_and_sigterm_drain(api):
    """Pool warm-b allows one run at a time; SIGTERM lets the run in hand finish."""
    worker = api.start_worker("warm-b", "cad2gltf-prefork", name="b", env={
        **api.worker_env, "CAD2GLTF_WORKER_CHILDREN": "2"})
    try:
        api.wait_for_log("worker-b", "warm children ready", 180)
        runs = [_start(api, "warm-b", "sleepy", seconds=2.0) for _ in range(3)]
        max_running = 0
        deadline = time.monotonic() + 120
        with _client() as client:
            while time.monotonic() < deadline:
                states = [client.read_flow_run(r).state.type.value for r, _ in runs]
                max_running = max(max_running, states.count("RUNNING"))
                if all(s == "COMPLETED" for s in states):
                    break
                time.sleep(0.1)
        assert states == ["COMPLETED"] * 3, states
        assert max_running == 1

        run_id, out = _start(api, "warm-b", "sleepy", seconds=4.0)
        _wait_file(out)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=120) == 0, api.log_text("worker-b")[-3000:]
        assert _wait_state(run_id, timeout=30).state.type.value == "COMPLETED"
        assert "stopped after draining" in api.log_text("worker-b")
    finally:
        api.stop_process(worker)


def test_stock_process_worker_still_serves_the_pools_flows(api, tmp_path):
    """The fallback: a stock process worker runs the same deployments."""
    from prefect.client.schemas.actions import WorkPoolCreate

    with _client() as client:
        client.create_work_pool(WorkPoolCreate(name="stock", type="process"))
        flow_id = client.create_flow_from_name("double")
        dep = client.create_deployment(
            flow_id=flow_id, name="stock", work_pool_name="stock",
            entrypoint="tests/worker_flows.py:double",
            pull_steps=[{"prefect.deployments.steps.set_working_directory":
                         {"directory": str(REPO)}}])
        out = tmp_path / "stock.json"
        run = client.create_flow_run_from_deployment(dep, parameters={"x": 4, "out": str(out)})
    worker = api.start_worker("stock", "process", name="stock",
                              env={"PREFECT_WORKER_QUERY_SECONDS": "1"})
    try:
        assert _wait_state(run.id, timeout=180).state.type.value == "COMPLETED"
        assert json.loads(out.read_text())["value"] == 8
    finally:
        api.stop_process(worker)

