"""``cad2gltf-prefork``: a Prefect worker type that runs flow runs in warm child processes.

A stock process worker starts a fresh interpreter per flow run (``python -m
prefect.engine``): seconds of imports before any conversion starts. This worker keeps a
:class:`~workers.pool.ChildPool` of warm children with the conversion stack imported and
hands each flow run to a free child, which executes it with Prefect's own flow engine
(:func:`workers.child.execute_flow_run`). Everything around the run is Prefect's runner
machinery, as in the stock process worker: a :class:`FlowRunExecutorContext` proposes
CRASHED when a child dies mid-run, and its cancellation observer kills the child of a
cancelled run (the pool then replaces it).

Start it with::

    prefect work-pool create cad-cpu --type cad2gltf-prefork
    prefect worker start --pool cad-cpu --type cad2gltf-prefork

Worker-process knobs (children, recycling, preload, warm-up) are
:class:`~workers.settings.WorkerSettings` (``CAD2GLTF_WORKER_*``).

Pickup: besides the usual polling (``CAD2GLTF_WORKER_POLL_SECONDS``), the worker listens
to the API's event stream for ``prefect.flow-run.Scheduled`` events of its pool and polls
at once when one arrives, so a new run starts within a fraction of a second without
polling the API several times a second.

Shutdown: the first SIGTERM or SIGINT stops taking runs and waits for the runs in hand
(up to ``CAD2GLTF_WORKER_DRAIN_TIMEOUT_SECONDS``), then stops the children; a second
signal stops at once. Children live in their own session, so a signal to the worker's
process group does not interrupt their runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from prefect._internal.schemas.validators import validate_working_dir
from prefect.flows import load_flow_from_flow_run
from prefect.runner._flow_run_executor import FlowRunExecutionResult, FlowRunExecutorContext
from prefect.runner._process_manager import ProcessHandle
from prefect.settings import get_current_settings
from prefect.utilities.processutils import sanitize_subprocess_env
from prefect.workers.base import BaseJobConfiguration, BaseVariables, BaseWorker, BaseWorkerResult
from pydantic import Field, field_validator

from workers.pool import Child, ChildPool
from workers.settings import WorkerSettings

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun
    from prefect.runner._control_channel import ControlChannel

__all__ = ["PreforkJobConfiguration", "PreforkVariables", "PreforkWorker",
           "PreforkWorkerResult"]

WORKER_TYPE = "cad2gltf-prefork"


class PreforkJobConfiguration(BaseJobConfiguration):
    """What a flow run needs from its pool: environment and working directory."""

    working_dir: Path | None = Field(default=None)

    @field_validator("working_dir")
    @classmethod
    def _validate_working_dir(cls, v: Path | str | None) -> Path | None:
        if isinstance(v, str):
            return validate_working_dir(v)
        return v


class PreforkVariables(BaseVariables):
    """Job variables a deployment may override (shown in the work pool's UI form)."""

    working_dir: Path | None = Field(
        default=None, title="Working Directory",
        description="Directory the run executes in; a fresh temporary directory when "
                    "empty (deployments usually set theirs with a pull step).")


class PreforkWorkerResult(BaseWorkerResult):
    """Exit status of a run executed in a warm child."""


class _RunProcess:
    """What Prefect's process manager sees of a run: the child's PID and the run's exit
    code (the child itself outlives the run)."""

    def __init__(self, child: Child) -> None:
        self.pid: int = child.pid
        self.returncode: int | None = None


class _ChildTermination:
    """Termination scope of a run: signals go to its child, which is then replaced.

    What Prefect kills is the run: once the child reported the run over (the engine
    handled the SIGTERM as a cancellation), the run is dead even though the process
    still lives until the pool retires it.
    """

    wait_after_graceful_kill = True

    def __init__(self, child: Child, process: _RunProcess) -> None:
        self._child = child
        self._process = process

    def is_alive(self, pid: int) -> bool:
        return self._process.returncode is None and self._child.alive()

    def graceful_kill(self, pid: int) -> None:
        self._child.signal(signal.SIGTERM)

    def hard_kill(self, pid: int) -> None:
        self._child.signal(signal.SIGKILL)

    def close(self) -> None:
        pass


def _started(task_status: Any) -> bool:
    """Whether ``task_status.started()`` was called (anyio keeps it in ``_future``)."""
    return bool(task_status._future.done())


class _KnownFlow:
    """The worker's client, except that ``read_flow`` answers with the flow already read
    (the job configuration reads it; the worker read it alongside PENDING)."""

    def __init__(self, client: Any, flow: Any) -> None:
        self._client = client
        self._flow = flow

    async def read_flow(self, flow_id: Any) -> Any:
        if flow_id == self._flow.id:
            return self._flow
        return await self._client.read_flow(flow_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class _ChildStarter:
    """A Prefect ``ProcessStarter`` that runs the flow run in a warm child."""

    def __init__(self, pool: ChildPool, configuration: PreforkJobConfiguration,
                 control_channel: ControlChannel | None = None) -> None:
        self._pool = pool
        self._configuration = configuration
        self._control_channel = control_channel

    def _environment(self, flow_run: FlowRun, control_env: dict[str, str]) -> dict[str, str]:
        # the same environment EngineCommandStarter gives `python -m prefect.engine`
        env: dict[str, str | None] = dict(os.environ)
        env.update(self._configuration.env)
        env.update(get_current_settings().to_environment_variables(exclude_unset=True))
        env.update({
            "PREFECT__FLOW_RUN_ID": str(flow_run.id),
            "PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS": "false",
            **control_env,
        })
        return {k: v for k, v in sanitize_subprocess_env(env).items() if v is not None}

    async def start(self, flow_run: FlowRun,
                    task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED,
                    ) -> None:
        child = await self._pool.acquire()
        # the control channel tells the engine in the child that a SIGTERM is a
        # cancellation (CANCELLED), not a crash -- as for `python -m prefect.engine`
        control_env: dict[str, str] = {}
        registered = handed_off = False
        if self._control_channel is not None:
            with contextlib.suppress(RuntimeError):
                port, token = self._control_channel.register(flow_run.id)
                control_env = {"PREFECT__CONTROL_PORT": str(port),
                               "PREFECT__CONTROL_TOKEN": token}
                registered = True
        try:
            with contextlib.ExitStack() as stack:
                cwd = self._configuration.working_dir
                if cwd is None:
                    cwd = Path(stack.enter_context(tempfile.TemporaryDirectory(suffix="prefect")))
                job = {"flow_run_id": str(flow_run.id),
                       "env": self._environment(flow_run, control_env), "cwd": str(cwd)}
                process = _RunProcess(child)
                running = asyncio.ensure_future(self._pool.run(child, job))
                task_status.started(ProcessHandle(process,  # type: ignore[arg-type]
                                                  termination_scope=_ChildTermination(child, process)))
                handed_off = True
                outcome = await running
                process.returncode = outcome.exit_code
        finally:
            if registered and not handed_off and self._control_channel is not None:
                self._control_channel.unregister(flow_run.id)
            await self._pool.release(child)


class PreforkWorker(BaseWorker[PreforkJobConfiguration, PreforkVariables, PreforkWorkerResult]):
    """Runs flow runs in warm, recycled child processes (see the module docstring)."""

    type = WORKER_TYPE
    job_configuration = PreforkJobConfiguration
    job_configuration_variables = PreforkVariables
    _description = ("Execute flow runs in warm child processes that already imported the "
                    "cad2gltf conversion stack; children are recycled after N runs or "
                    "above a memory ceiling.")
    _display_name = "cad2gltf prefork"
    _documentation_url = "https://docs.prefect.io/v3/concepts/workers"

    def __init__(self, *args: Any, settings: WorkerSettings | None = None, **kwargs: Any) -> None:
        self.settings = settings or WorkerSettings()
        if kwargs.get("limit") is None:
            kwargs["limit"] = self.settings.children
        super().__init__(*args, **kwargs)
        self.pool: ChildPool | None = None
        self._executor_context: FlowRunExecutorContext | None = None
        self._wakeup_task: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None
        self.draining = False

    # ---------------------------------------------------------------- lifecycle
    async def setup(self) -> None:
        s = self.settings
        self.pool = ChildPool(s.children, preload=s.preload, warmup=s.warmup,
                              max_runs=s.max_runs_per_child,
                              max_memory_bytes=s.max_memory_mb * 2**20,
                              start_method=s.start_method, ready_timeout=s.ready_timeout_seconds)
        t0 = time.perf_counter()
        await self.pool.start()
        self._logger.info("%d warm children ready in %.1f s (pids %s)", s.children,
                          time.perf_counter() - t0, self.pool.pids)
        try:
            await super().setup()
            self._executor_context = await self._exit_stack.enter_async_context(
                FlowRunExecutorContext())
        except BaseException:
            await self.pool.close(timeout=0)
            raise

    async def teardown(self, *exc_info: Any) -> None:
        if self._wakeup_task is not None:
            self._wakeup_task.cancel()
            with contextlib.suppress(BaseException):
                await self._wakeup_task
            self._wakeup_task = None
        try:
            await super().teardown(*exc_info)
        finally:
            if self.pool is not None:
                await self.pool.close(timeout=5)

    async def start(self, run_once: bool = False, with_healthcheck: bool = False,
                    printer: Callable[..., None] = print) -> None:
        """Start the worker; the first SIGTERM/SIGINT drains, a second one stops."""
        from prefect.settings import PREFECT_WORKER_QUERY_SECONDS, temporary_settings

        main_task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task[None]] = []

        def on_signal(signum: int) -> None:
            if self.draining or main_task is None:
                printer(f"Worker {self.name!r}: second signal, stopping now")
                if main_task is not None:
                    main_task.cancel()
                return
            self.draining = True
            printer(f"Worker {self.name!r}: draining ({signal.Signals(signum).name})")
            stopping.append(loop.create_task(self._drain_then_stop(main_task, printer)))

        installed = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, on_signal, signum)
                installed.append(signum)
        try:
            with temporary_settings({PREFECT_WORKER_QUERY_SECONDS: self.settings.poll_seconds}):
                await super().start(run_once=run_once, with_healthcheck=with_healthcheck,
                                    printer=printer)
        except asyncio.CancelledError:
            if not self.draining:
                raise
            printer(f"Worker {self.name!r} stopped after draining")
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    async def _drain_then_stop(self, main_task: asyncio.Task[Any],
                               printer: Callable[..., None]) -> None:
        deadline = time.monotonic() + self.settings.drain_timeout_seconds
        while time.monotonic() < deadline:
            borrowed = self._limiter.borrowed_tokens if self._limiter else 0
            if borrowed == 0 and (self.pool is None or self.pool.busy == 0):
                break
            await asyncio.sleep(0.1)
        else:
            printer(f"Worker {self.name!r}: drain timeout, stopping runs in hand")
        main_task.cancel()

    async def get_and_submit_flow_runs(self) -> list[FlowRun]:
        if self.draining:
            return []
        return await super().get_and_submit_flow_runs()

    # ---------------------------------------------------------------- fast pickup
    async def _initialize_after_sync(self) -> None:
        await super()._initialize_after_sync()
        if self._wakeup_task is None and self._work_pool is not None:
            self._wakeup_task = asyncio.create_task(self._poll_on_demand())

    def poll_soon(self) -> None:
        """Ask for a poll of the work pool now (a run finished, or one was scheduled)."""
        if self._kick is not None:
            self._kick.set()

    async def _poll_on_demand(self) -> None:
        """Poll at once when the API announces a scheduled run in this pool (event
        stream) and whenever a run finishes, so queued runs do not wait for the next
        regular poll."""
        self._kick = asyncio.Event()

        async def poller() -> None:
            kick = self._kick
            assert kick is not None
            while True:
                await kick.wait()
                # The event can arrive a moment before the run is visible to the pool's
                # query: when a poll finds nothing, look again shortly after -- or at
                # once when another kick comes in meanwhile (a run announced while this
                # poller waits must not wait for the retry).
                for delay in (0.0, 0.25, 1.0):
                    if delay:
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(kick.wait(), delay)
                    kick.clear()
                    try:
                        if await self.get_and_submit_flow_runs():
                            break
                    except Exception:  # noqa: BLE001 - the regular poll loop will retry
                        self._logger.debug("on-demand poll failed", exc_info=True)
                        break

        poll_task = asyncio.create_task(poller())
        try:
            if self.settings.wakeup_events:
                await self._listen_for_scheduled_runs()
            else:
                await asyncio.Event().wait()
        finally:
            poll_task.cancel()

    async def _listen_for_scheduled_runs(self) -> None:
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter

        assert self._work_pool is not None
        event_filter = EventFilter(
            event=EventNameFilter(name=["prefect.flow-run.Scheduled"]),
            any_resource=EventAnyResourceFilter(id=[f"prefect.work-pool.{self._work_pool.id}"]),
        )
        backoff = 1.0
        while True:
            try:
                async with get_events_subscriber(filter=event_filter) as subscriber:
                    backoff = 1.0
                    async for event in subscriber:
                        self._logger.debug("scheduled run %s announced, %.3f s after it "
                                           "occurred", event.resource.id,
                                           time.time() - event.occurred.timestamp())
                        self.poll_soon()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - polling goes on meanwhile
                self._logger.debug("event stream unavailable (%s); retrying in %.0f s",
                                   exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)

    # ---------------------------------------------------------------- submission
    async def _submit_run(self, flow_run: FlowRun) -> None:
        """``BaseWorker._submit_run`` with its API round trips overlapped.

        The stock path makes six calls one after the other before the run can start:
        read the deployment, propose PENDING, read the deployment again and the flow
        (job configuration), set the worker labels, propose "Submitting". Here the
        deployment and flow reads go out together with the PENDING proposal (PENDING
        still decides whether this worker may run it), the configuration uses what was
        read, and the labels are set while "Submitting" is proposed: two round trips
        instead of six. The order of the run's
        states (Pending, Submitting, Running) and every outcome of the stock path are
        kept: a deleted deployment cancels the run, a refused PENDING releases the slot,
        a failed submission crashes the run.
        """
        from prefect.exceptions import ObjectNotFound

        run_logger = self.get_flow_run_logger(flow_run)
        client = self.client
        deployment_read = (asyncio.ensure_future(client.read_deployment(flow_run.deployment_id))
                           if flow_run.deployment_id else None)
        flow_read = asyncio.ensure_future(client.read_flow(flow_run.flow_id))
        try:
            ready = await self._propose_pending_state(flow_run)
            deployment = None
            if deployment_read is not None:
                try:
                    deployment = await deployment_read
                except ObjectNotFound:
                    self._logger.error(
                        "Deployment %s no longer exists. Flow run %s will not be submitted "
                        "for execution", flow_run.deployment_id, flow_run.id)
                    await self._mark_flow_run_as_cancelled(flow_run, state_updates={
                        "message": f"Deployment {flow_run.deployment_id} no longer exists, "
                                   "cancelled run."})
                    self._release_limit_slot(flow_run.id)
                    return
                except Exception as exc:  # noqa: BLE001 - read again while configuring
                    self._logger.debug("deployment read failed (%s); retrying", exc)
                    deployment = None
            if not ready:
                self._release_limit_slot(flow_run.id)
                return
            readiness = await self._runs_task_group.start(  # type: ignore[union-attr]
                self._submit_prefetched, flow_run, deployment, flow_read)
            if readiness and not isinstance(readiness, Exception):
                try:
                    await client.update_flow_run(flow_run_id=flow_run.id,
                                                 infrastructure_pid=str(readiness))
                except Exception:  # noqa: BLE001 - as in the stock worker
                    run_logger.exception(
                        "An error occurred while setting the `infrastructure_pid` on flow "
                        f"run {flow_run.id!r}. The flow run will not be cancellable.")
                run_logger.info(f"Flow run '{flow_run.name}' submitted to infrastructure")
            else:
                self._release_limit_slot(flow_run.id)
        finally:
            for pending in (deployment_read, flow_read):
                if pending is None:
                    continue
                if not pending.done():
                    pending.cancel()
                elif not pending.cancelled():
                    pending.exception()  # retrieved: no "never retrieved" warning later
            self._submitting_flow_run_ids.discard(flow_run.id)
            if self._cancelling_observer is not None:
                self._cancelling_observer.remove_in_flight_flow_run_id(flow_run.id)

    async def _submit_prefetched(self, flow_run: FlowRun, deployment: Any,
                                 flow_read: asyncio.Future[Any],
                                 task_status: anyio.abc.TaskStatus[Any] | None = None,
                                 ) -> BaseWorkerResult | Exception:
        """``BaseWorker._submit_run_and_capture_errors`` using the deployment and flow
        read alongside the PENDING proposal."""
        import copy

        from prefect._internal.infrastructure_exit_codes import get_infrastructure_exit_info

        run_logger = self.get_flow_run_logger(flow_run)
        try:
            flow = await flow_read
            configuration = await self.job_configuration.resolve_for_flow_run(
                flow_run, client=_KnownFlow(self.client, flow),  # type: ignore[arg-type]
                work_pool=copy.deepcopy(self.work_pool), worker_name=self.name,
                worker_id=self.backend_id, deployment=deployment)
            submitted_event = self._emit_flow_run_submitted_event(configuration)
            await asyncio.gather(self._give_worker_labels_to_flow_run(flow_run.id),
                                 self._propose_submitting_state(flow_run))
            result = await self.run(flow_run=flow_run, task_status=task_status,
                                    configuration=configuration)
        except Exception as exc:
            if task_status and not _started(task_status):
                run_logger.exception(
                    f"Failed to submit flow run '{flow_run.name}' to infrastructure.")
                task_status.started(exc)
                await self._propose_crashed_state(
                    flow_run, "Failed to submit flow run to infrastructure: "
                              f"{type(exc).__name__}: {exc}")
            else:
                run_logger.exception(
                    f"Lost connection to flow run '{flow_run.name}' infrastructure. The "
                    "flow run's final state will be determined by the execution "
                    "environment.")
            return exc
        finally:
            self._release_limit_slot(flow_run.id)
        if task_status and not _started(task_status):
            run_logger.error(f"Infrastructure returned without reporting flow run "
                             f"'{flow_run.id}' as started or raising an error.")
            task_status.started(RuntimeError(
                "Infrastructure returned without reporting flow run as started or raising "
                "an error."))
        if result.status_code != 0:
            info = get_infrastructure_exit_info(result.status_code)
            await self._propose_crashed_state(
                flow_run, "Flow run infrastructure exited with non-zero status code "
                          f"{result.status_code}. {info.explanation}")
            if info.resolution:
                run_logger.info(info.resolution)
        if submitted_event:
            self._emit_flow_run_executed_event(result, configuration, submitted_event)
        return result

    # ---------------------------------------------------------------- runs
    def _release_limit_slot(self, flow_run_id: Any) -> None:
        super()._release_limit_slot(flow_run_id)
        self.poll_soon()  # a slot is free: take the next queued run now

    async def run(self, flow_run: FlowRun, configuration: PreforkJobConfiguration,
                  task_status: anyio.abc.TaskStatus[int] | None = None,
                  ) -> PreforkWorkerResult:
        if task_status is None:
            task_status = anyio.TASK_STATUS_IGNORED
        assert self.pool is not None and self._executor_context is not None
        executor = self._executor_context.create_executor(
            flow_run, _ChildStarter(self.pool, configuration,
                                    self._executor_context.control_channel),
            resolve_flow=load_flow_from_flow_run, propose_submitting=False)
        execution: FlowRunExecutionResult | None = None

        async def execute(*, task_status: anyio.abc.TaskStatus[ProcessHandle]
                          = anyio.TASK_STATUS_IGNORED) -> None:
            nonlocal execution
            execution = await executor.submit(task_status=task_status)

        async with anyio.create_task_group() as group:
            handle = await group.start(execute)
            if handle.pid is None:
                raise RuntimeError("flow run child has no PID")
            task_status.started(handle.pid)
        if execution is None or execution.status_code is None:
            raise RuntimeError("the flow run could not be executed in a warm child")
        return PreforkWorkerResult(status_code=execution.status_code,
                                   identifier=str(execution.handle.pid))
