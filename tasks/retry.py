"""Retry only what is worth retrying: transient errors (storage, network, timeouts).

Two forms of one policy (``CAD2GLTF_TASK_RETRIES`` retries, exponential backoff from
``RETRY_BACKOFF_SECONDS`` capped at ``RETRY_BACKOFF_MAX_SECONDS``, jitter
``RETRY_JITTER_FACTOR``): :func:`retry_if_transient` for Prefect task runs, and
:func:`aretry_transient` for the few ledger calls a flow makes itself (its own decisions,
such as claiming the job, where a task run would cost an API round trip per file).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from cad2gltf.errors import classify

__all__ = ["aretry_transient", "retry_delays", "retry_if_transient"]

T = TypeVar("T")


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry a failed task run only for transient errors.

    A corrupt drawing (``PARSING_ERROR``) or a refused input (``VALIDATION_ERROR``) fails
    at once; ``STORAGE_ERROR``, ``NETWORK_ERROR`` and ``TIMEOUT_ERROR`` are retried.
    """
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as err:  # noqa: BLE001 - result not retrievable: judge that error
        exc = err
    if not isinstance(exc, BaseException):
        return False
    return classify(exc).transient


def retry_delays(settings: Any) -> list[float]:
    """Seconds before each retry: exponential from the backoff setting, capped."""
    return [min(settings.retry_backoff_seconds * 2 ** i, settings.retry_backoff_max_seconds)
            for i in range(settings.task_retries)]


async def aretry_transient(call: Callable[[], T], *, what: str,
                           settings: Any | None = None) -> T:
    """``call()``, retried on transient errors exactly as a task's retries would be.

    Permanent errors (and anything that is not an ``Exception``) propagate at once; a
    transient one is logged to the run logger and the call repeated after the next delay
    (with jitter), until the retries are used up and the last error propagates.
    """
    from prefect import get_run_logger
    from prefect.utilities.math import clamped_poisson_interval

    from blocks.settings import get_settings

    settings = settings or get_settings()
    delays = retry_delays(settings)
    for attempt in range(len(delays) + 1):
        try:
            return call()
        except Exception as exc:
            err = classify(exc)
            if not err.transient or attempt == len(delays):
                raise
            delay = delays[attempt]
            if settings.retry_jitter_factor and delay > 0:
                delay = clamped_poisson_interval(delay, settings.retry_jitter_factor)
            get_run_logger().warning("%s failed (%s); retry %d of %d in %.1f s", what,
                                     err.full_code, attempt + 1, len(delays), delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
