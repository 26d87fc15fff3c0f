"""``sweep-dead-letters`` (hourly): requeue what is worth another try, drop what is
not, keep the rest for a person. Never two sweeps at once (deployment concurrency limit
1 and a PostgreSQL advisory lock)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

__all__ = ["sweep_dead_letters"]


@flow(name="sweep-dead-letters", retries=0)
async def sweep_dead_letters(max_messages: int = 10_000) -> dict[str, Any]:
    """Read the dead-letter queue once and act on each letter.

    Returns:
        Counts per action and the letters' summaries (``skipped`` when another sweep
        holds the lock).
    """
    from prefect.artifacts import acreate_markdown_artifact

    from tasks.deadletters import SWEEP_LOCK_KEY, sweep_once
    from tasks.runtime import get_ledger

    logger = get_run_logger()
    with get_ledger().try_advisory_lock(SWEEP_LOCK_KEY) as got:
        if not got:
            logger.warning("another sweep is running; this one does nothing")
            return {"skipped": "another sweep is running"}
        result = sweep_once(max_messages)
    rows = "\n".join(f"| {d['action']} | {d['error_code']} | {d['job_id']} | {d['why']} |"
                     for d in result["letters"][:200])
    await acreate_markdown_artifact(
        key="dead-letter-sweep", description="what the dead-letter sweep did",
        markdown=f"# Dead-letter sweep\n\nrequeued {result['requeue']}, dropped "
                 f"{result['drop']}, kept {result['keep']}\n\n| action | code | job | why |\n"
                 f"|---|---|---|---|\n{rows}\n")
    logger.info("sweep: requeued %d, dropped %d, kept %d", result["requeue"], result["drop"],
                result["keep"])
    return result
