"""Scheduled maintenance flows: ``cleanup`` (retention) and ``performance-baseline``.

Both are ``async`` for the same reason as the conversion flows (Prefect 3.8's sync flow
engine costs ~1 s per run); the work is in :mod:`tasks.maintenance`.
"""

from __future__ import annotations

import asyncio
import statistics
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import wait

from tasks.maintenance import (
    PDF_SLA_P95_SECONDS,
    REGRESSION_TOLERANCE,
    SLA_P95_SECONDS,
    baseline_workspace,
    calibrate,
    clean_ledger,
    clean_results,
    clean_scratch,
    cleanup_lock,
    prepare_corpus,
    publish_baseline_report,
    publish_cleanup_report,
    retention_cutoffs,
    store_baseline,
    timed_run,
)

__all__ = ["cleanup", "performance_baseline"]

SKIPPED = {"skipped": "another cleanup is running"}


@flow(name="cleanup", retries=0)
async def cleanup(scratch_hours: float = 24, result_days: float | None = None,
                  ledger_days: float | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Remove what is past retention: scratch files, stored results, finished jobs.

    Args:
        scratch_hours: work-dir files older than this many hours go.
        result_days: result folders (GLB, preview, manifest) older than this many days
            go (default: ``CAD2GLTF_RESULT_RETENTION_DAYS``, 30).
        ledger_days: jobs finished more than this many days ago go, with their events
            (default: ``CAD2GLTF_LEDGER_RETENTION_DAYS``, 90).
        dry_run: count what would go, delete nothing.

    Returns:
        ``{"dry_run", "cutoffs", "ages", "scratch", "results", "ledger"}`` (each part a
        small dict of counts, bytes and example keys), or ``{"skipped": ...}`` when
        another cleanup holds the lock. Also published as the ``cleanup-report``
        artifact.

    Raises:
        ValueError: a negative or non-finite age.
        RuntimeError: a part failed (the others still ran; the report lists it).
    """
    from blocks.settings import get_settings
    from tasks.runtime import retry_options

    settings = get_settings()
    result_days = settings.result_retention_days if result_days is None else result_days
    ledger_days = settings.ledger_retention_days if ledger_days is None else ledger_days
    cutoffs = retention_cutoffs(datetime.now(UTC), scratch_hours=scratch_hours,
                                result_days=result_days, ledger_days=ledger_days)
    logger = get_run_logger()
    with cleanup_lock() as held:
        if not held:
            logger.warning("another cleanup is running; this one stands down")
            return dict(SKIPPED)
        ro = retry_options()
        futures = {
            "scratch": clean_scratch.submit(cutoffs["scratch"], dry_run),
            "results": clean_results.with_options(**ro).submit(cutoffs["results"], dry_run),
            "ledger": clean_ledger.with_options(**ro).submit(cutoffs["ledger"], dry_run),
        }
        # wait off the event loop: a concurrent cleanup in this process can reach the lock
        await asyncio.to_thread(wait, list(futures.values()))
        summary: dict[str, Any] = {
            "dry_run": dry_run,
            "cutoffs": {k: v.isoformat(timespec="seconds") for k, v in cutoffs.items()},
            "ages": {"scratch": f"{scratch_hours:g} h", "results": f"{result_days:g} d",
                     "ledger": f"{ledger_days:g} d"},
        }
        errors: dict[str, str] = {}
        for part, future in futures.items():
            try:
                summary[part] = future.result()
            except Exception as exc:  # noqa: BLE001 - reported, then raised below
                errors[part] = f"{type(exc).__name__}: {exc}"
        if errors:
            summary["errors"] = errors
        await publish_cleanup_report(summary)
    if errors:
        raise RuntimeError(f"cleanup parts failed: {', '.join(sorted(errors))}: {errors}")
    return summary


@flow(name="performance-baseline", retries=0)
async def performance_baseline(runs_per_size: int = 5,
                               sla_p95_seconds: float = SLA_P95_SECONDS,
                               pdf_sla_p95_seconds: float = PDF_SLA_P95_SECONDS,
                               regression_tolerance: float = REGRESSION_TOLERANCE,
                               settle_seconds: float = 1.0, warmup: bool = True,
                               work_root: str | None = None) -> list[dict[str, Any]]:
    """Time the fixed corpus -- DXF small (2x2 rooms), medium (3x3), large (10k
    entities); PDF sheet (one vector A3 plan), set10 (ten sheets), scan (a scanned A3
    sheet) -- through the real ``convert-file`` flow, in this process, each run against a fresh
    home (file store, SQLite ledger, work dir) so nothing is reused; store one
    ``perf_baselines`` row per size and compare with the SLA and the previous baseline.

    Changes this process's environment while it measures (restored afterwards): run it
    in a process of its own (its deployment), not beside other flow runs.

    Args:
        runs_per_size: measured runs of each drawing (sizes interleaved).
        sla_p95_seconds: the DXF service level for p95 (seconds).
        pdf_sla_p95_seconds: the PDF service level for p95 (seconds).
        regression_tolerance: a p95 more than this fraction above the previous baseline
            of the size is flagged as a regression; both p95s are taken in units of the
            machine's speed at the time (a reference workload timed once per round), so
            a busy or slower machine is not mistaken for a slower converter.
        settle_seconds: quiet time before each measured run (lets the API server's
            background work finish instead of billing it to the next run).
        warmup: one unmeasured run of the small drawing first.
        work_root: folder for the corpus and the per-run homes, kept afterwards
            (default: a temporary folder, removed).

    Returns:
        One row per size: the stored ``perf_baselines`` columns plus ``sla_ok``,
        ``change`` and ``mean``. Also published as the ``performance-baseline`` artifact.
    """
    from flows.convert import convert_file

    if isinstance(runs_per_size, bool) or runs_per_size < 1:
        raise ValueError(f"runs_per_size must be >= 1, got {runs_per_size!r}")
    if settle_seconds < 0:
        raise ValueError("settle_seconds must be >= 0")
    with baseline_workspace(work_root) as root:
        corpus = prepare_corpus(str(root / "corpus"))
        uris = {(d["file_type"], d["size_label"]): d["uri"] for d in corpus}
        if warmup:
            await timed_run(convert_file, uris[("dxf", "small")], root / "runs" / "warmup")
        seconds: dict[tuple[str, str], list[float]] = {key: [] for key in uris}
        paths = {(d["file_type"], d["size_label"]): d["path"] for d in corpus}
        calibrations: list[float] = []
        for i in range(runs_per_size):
            # the machine's speed, once per round: regressions are judged relative to it
            calibrations.append(calibrate(paths[("dxf", "large")]))
            for (file_type, label), uri in uris.items():
                if settle_seconds:
                    await asyncio.sleep(settle_seconds)
                seconds[(file_type, label)].append(await timed_run(
                    convert_file, uri, root / "runs" / f"{file_type}-{label}-{i}"))
    slas = {"dxf": sla_p95_seconds, "pdf": pdf_sla_p95_seconds}
    calibration = statistics.median(calibrations)
    get_run_logger().info("calibration (ezdxf.readfile of the large DXF): median %.3f s of %s",
                          calibration, ", ".join(f"{c:.3f}" for c in calibrations))
    rows = [store_baseline(label, values, file_type, slas[file_type], regression_tolerance,
                           calibration)
            for (file_type, label), values in seconds.items()]
    await publish_baseline_report(rows, sla_p95_seconds, regression_tolerance)
    return rows
