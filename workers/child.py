"""The warm child: a process that executes flow runs one after the other.

A child starts (forked from the fork server, which already imported the conversion stack),
runs its warm-up callables, reports ``ready`` and then waits on its pipe. For each
``("run", job)`` message it executes the flow run exactly as ``python -m prefect.engine``
would -- :func:`prefect.flow_engine.load_flow_run`, :func:`~prefect.flow_engine.load_flow`,
:func:`~prefect.flow_engine.run_flow` inside :func:`prefect.engine.handle_engine_signals`
-- with the run's environment, working directory and freshly read Prefect settings, and
answers ``("done", exit_code, rss_bytes)``, the exit code that engine process would have
had. Between runs the process environment, working directory and settings go back to what
they were.

The child lives in its own session, so a signal sent to the worker's process group (a
terminal's Ctrl-C, a supervisor stopping the worker) reaches the worker, which drains, and
not the run in hand. A SIGTERM sent to the child itself (the cancellation of its run)
ends the run through Prefect's engine, and then the child exits so that the worker
replaces it.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection
from typing import Any
from uuid import UUID

__all__ = ["child_main", "current_rss_bytes", "execute_flow_run"]

log = logging.getLogger("cad2gltf.worker.child")


def current_rss_bytes() -> int:
    """Resident set size of this process now (not the peak), from /proc."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: the peak is the best we have
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _call(spec: str) -> None:
    module, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module)
    if attr:
        for part in attr.split("."):
            obj = getattr(obj, part)
        obj()


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    return 1


def _reset_engine_process_state() -> None:
    """Undo what one engine run leaves in Prefect's per-process state.

    ``python -m prefect.engine`` relies on a fresh process: the control listener's
    one-shot configuration and its "outcome handled" flag are module globals. Clearing
    them gives each run in a warm child the same start as a fresh process.
    """
    from prefect._internal import control_listener

    control_listener.reset_for_testing()
    control_listener.configure_from_env()


_SETTINGS_CACHE: dict[tuple[Any, ...], Any] = {}


def _use_settings_from_environment() -> None:
    """Make Prefect's global settings those of the current environment and directory.

    A fresh engine process reads its settings at import. Building them is expensive (tens
    of nested pydantic-settings models, ~0.2 s here), so a warm child keeps the settings
    of each distinct configuration -- the ``PREFECT_*`` variables (not the per-run
    ``PREFECT__*`` ones) and the ``.env``/``prefect.toml``/``pyproject.toml`` files of
    the working directory -- and only builds new ones for a configuration it has not seen.
    """
    import prefect.context as prefect_context

    cwd_files = []
    for name in (".env", "prefect.toml", "pyproject.toml"):
        try:
            st = os.stat(name)
        except OSError:
            continue
        cwd_files.append((os.path.abspath(name), st.st_mtime_ns, st.st_size))
    key = (tuple(cwd_files), tuple(sorted((k, v) for k, v in os.environ.items()
                                     if k.startswith("PREFECT_") and not k.startswith("PREFECT__"))))
    cached = _SETTINGS_CACHE.get(key)
    if cached is None:
        prefect_context.refresh_global_settings_context()
        if len(_SETTINGS_CACHE) > 32:
            _SETTINGS_CACHE.clear()
        cached = _SETTINGS_CACHE[key] = prefect_context.GLOBAL_SETTINGS_CONTEXT
    prefect_context.GLOBAL_SETTINGS_CONTEXT = cached


def execute_flow_run(flow_run_id: UUID) -> int:
    """Run one flow run as ``python -m prefect.engine`` does; return its exit code.

    The environment (``PREFECT__FLOW_RUN_ID``, the job's variables, Prefect settings) must
    already be in ``os.environ``.
    """
    from prefect.engine import _drive_run_flow_result, handle_engine_signals

    _use_settings_from_environment()
    _reset_engine_process_state()
    try:
        with handle_engine_signals(flow_run_id):
            from prefect._internal.metrics import RunMetrics
            from prefect.flow_engine import flow_run_logger, load_flow, load_flow_run, run_flow

            flow_run = load_flow_run(flow_run_id=flow_run_id)
            run_logger = flow_run_logger(flow_run=flow_run)
            try:
                flow = load_flow(flow_run)
            except Exception:
                run_logger.error("Unexpected exception encountered when trying to load flow",
                                 exc_info=True)
                raise
            with RunMetrics(flow_run, flow):
                result = run_flow(flow, flow_run=flow_run, error_logger=run_logger)
                _drive_run_flow_result(flow, result)
    except SystemExit as exc:
        return _exit_code(exc.code)
    return 0


def _flush_prefect_workers(timeout: float = 5.0) -> None:
    """Send this run's buffered logs and events now (a fresh process does it at exit)."""
    try:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=timeout)
    except Exception:  # noqa: BLE001 - best effort, as at interpreter exit
        log.debug("log drain failed", exc_info=True)
    try:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=timeout)
    except Exception:  # noqa: BLE001
        log.debug("event drain failed", exc_info=True)


def _run_job(job: dict[str, Any],
             report: Callable[[int], bool] | None = None) -> tuple[int, bool, bool]:
    """Execute one job; return (exit code, whether the child must exit afterwards,
    whether ``report`` reached the worker).

    ``report(code)`` is called as soon as the run is over, before this run's buffered logs
    and events are flushed: the worker can pick up the next run meanwhile (its job waits
    in the pipe until the flush is done).
    """
    from prefect.exceptions import TerminationSignal

    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    terminate = False
    reported = True
    os.environ.clear()
    os.environ.update({k: v for k, v in job["env"].items() if v is not None})
    try:
        try:
            if job.get("cwd"):
                os.chdir(job["cwd"])
            if os.environ.get("CAD2GLTF_WORKER_PROFILE_DIR"):
                import cProfile

                prof = cProfile.Profile()
                code = prof.runcall(execute_flow_run, UUID(job["flow_run_id"]))
                prof.dump_stats(os.path.join(os.environ["CAD2GLTF_WORKER_PROFILE_DIR"],
                                             f"{job['flow_run_id']}.prof"))
            else:
                code = execute_flow_run(UUID(job["flow_run_id"]))
        except TerminationSignal:
            # cancelled (SIGTERM from the worker): the run is over and so is this child
            code, terminate = 143, True
        except BaseException as exc:  # noqa: BLE001 - a child never dies of a run's error
            if isinstance(exc, KeyboardInterrupt):
                terminate = True
            traceback.print_exc()
            code = 1
        if report is not None:
            reported = report(code)
        _flush_prefect_workers()
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        try:
            os.chdir(saved_cwd)
        except OSError:
            pass
    return code, terminate, reported


def _report_done(conn: Connection, code: int) -> bool:
    """Tell the worker the run is over (exit code, resident memory); False when the
    worker is gone."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        conn.send(("done", code, current_rss_bytes()))
    except (OSError, ValueError):
        return False
    return True


def child_main(conn: Connection, index: int, warmup: tuple[str, ...],
               preload: tuple[str, ...] = ()) -> None:
    """Entry point of a warm child (the ``target`` of its multiprocessing Process).

    Modules of ``preload`` the fork server could not import (it ignores import errors)
    are imported here, so that a broken preload fails loudly at start-up rather than in a
    run; their names go back to the worker in the ``ready`` message.
    """
    os.setsid()  # group signals to the worker must not reach the run in hand
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    started = time.perf_counter()
    cold = [name for name in preload if name not in sys.modules]
    from tasks.runtime import share_client_tls_contexts

    share_client_tls_contexts()
    try:
        for name in cold:
            importlib.import_module(name)
        for spec in warmup:
            _call(spec)
    except BaseException as exc:  # noqa: BLE001 - reported to the worker, which gives up
        conn.send(("failed", f"start-up failed: {type(exc).__name__}: {exc}"))
        conn.close()
        return
    conn.send(("ready", os.getpid(), current_rss_bytes(), time.perf_counter() - started, cold))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the worker is gone
            break
        if message[0] == "stop":
            break
        if message[0] != "run":
            continue
        code, terminate, reported = _run_job(message[1], partial(_report_done, conn))
        if terminate or not reported:
            break
    conn.close()
    os._exit(0)  # skip atexit: the fork server's handlers are not ours
