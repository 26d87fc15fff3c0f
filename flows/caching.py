"""Content-cached task runs whose stored outputs may be gone.

A cache record can outlive the files it names (the daily cleanup, another store): a
result that came from the cache is checked against the store and computed again when its
outputs are missing. A result the task has just computed and stored is not checked: that
would be one more storage round trip per task run for nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import get_run_logger

__all__ = ["is_cached", "run_fresh"]


def is_cached(state: Any) -> bool:
    """Whether a task run's final state is a cache hit (Prefect names it ``Cached``)."""
    return state is not None and state.name == "Cached"


async def run_fresh(task: Any, *args: Any, outputs_exist: Callable[[Any], bool],
                    **kwargs: Any) -> Any:
    """``task(*args, **kwargs)``; when the result came from the cache and
    ``outputs_exist(result)`` is false, the task runs again with a fresh cache.

    Raises:
        The task's own error, as calling it would.
    """
    state = task(*args, return_state=True, **kwargs)
    result = await state.aresult()
    if is_cached(state) and not outputs_exist(result):
        get_run_logger().warning("cached %s result is missing from the store; running it "
                                 "again", task.name)
        result = task.with_options(refresh_cache=True)(*args, **kwargs)
    return result
