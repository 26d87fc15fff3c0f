"""Retry only what is worth retrying: transient errors (storage, network, timeouts)."""

from __future__ import annotations

from typing import Any

from cad2gltf.errors import classify

__all__ = ["retry_if_transient"]


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
