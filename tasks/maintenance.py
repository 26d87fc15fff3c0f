"""Maintenance tasks: retention cleanup (scratch files, results, ledger rows) and the
performance baseline (a fixed synthetic corpus, its statistics and the ``perf_baselines``
table).

The flows in :mod:`flows.maintenance` only compose what is here. Pure pieces
(:func:`retention_cutoffs`, :func:`summarise`, :func:`is_regression`,
:func:`baseline_row`, the markdown and the chart) have no I/O and are unit-tested; the
``@task`` functions do the I/O through :func:`tasks.runtime.get_store` and
:func:`tasks.runtime.get_ledger`.
"""

from __future__ import annotations

import base64
import math
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from prefect import get_run_logger, task

from tasks.ledger import ADVISORY_LOCK_KEYS

__all__ = [
    "CLEANUP_LOCK_KEY",
    "CORPUS",
    "REGRESSION_TOLERANCE",
    "PDF_SLA_P95_SECONDS",
    "SLA_BY_TYPE",
    "SLA_P95_SECONDS",
    "baseline_chart_png",
    "baseline_markdown",
    "baseline_row",
    "baseline_workspace",
    "clean_ledger",
    "clean_results",
    "clean_scratch",
    "cleanup_lock",
    "cleanup_markdown",
    "insert_baseline",
    "calibrate",
    "is_regression",
    "p95_change",
    "isolated_runtime",
    "meets_sla",
    "prepare_corpus",
    "previous_baseline",
    "publish_baseline_report",
    "publish_cleanup_report",
    "retention_cutoffs",
    "store_baseline",
    "summarise",
    "timed_run",
]

CLEANUP_LOCK_KEY = ADVISORY_LOCK_KEYS["cleanup"]
"""PostgreSQL advisory-lock key held by a running cleanup (see ADVISORY_LOCK_KEYS)."""

SLA_P95_SECONDS = 5.0
"""Service level for DXF: 95 % of files converted end to end within 5 s."""

REGRESSION_TOLERANCE = 0.10
"""A p95 more than 10 % above the previous baseline of the same size is a regression."""

RESULTS_PREFIX = "results/"
MANIFEST_NAME = "manifest.json"
EXAMPLES = 5

PDF_SLA_P95_SECONDS = 30.0
"""The inherited PDF service level: p95 below 30 s per file."""

# (file type, size label) -> how the drawing is generated, fixed seeds: DXF from
# cad2gltf.synth.floorplan, PDF through cad2gltf.synth.render (a vector A3 sheet, a
# 10-sheet vector set, a scanned A3 sheet at 150 dpi with noise)
CORPUS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("dxf", "small", "generate_floorplan", {"seed": 1, "rooms_x": 2, "rooms_y": 2}),
    ("dxf", "medium", "generate_floorplan", {"seed": 1, "rooms_x": 3, "rooms_y": 3}),
    ("dxf", "large", "generate_large_drawing", {"target_entities": 10_000, "seed": 42}),
    ("pdf", "sheet", "vector", {"seeds": (1,)}),
    ("pdf", "set10", "vector", {"seeds": tuple(range(1, 11))}),
    ("pdf", "scan", "scan", {"seed": 1}),
)

SLA_BY_TYPE = {"dxf": SLA_P95_SECONDS, "pdf": PDF_SLA_P95_SECONDS}


# =========================================================================== cleanup


def retention_cutoffs(now: datetime, *, scratch_hours: float, result_days: float,
                      ledger_days: float) -> dict[str, datetime]:
    """The moments before which scratch files, results and finished jobs are removed.

    Raises:
        ValueError: ``now`` is naive, or an age is negative, NaN or infinite.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    ages = {"scratch": ("scratch_hours", scratch_hours, 3600.0),
            "results": ("result_days", result_days, 86400.0),
            "ledger": ("ledger_days", ledger_days, 86400.0)}
    out = {}
    for part, (name, value, unit) in ages.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        out[part] = now - timedelta(seconds=float(value) * unit)
    return out


@contextmanager
def cleanup_lock() -> Iterator[bool]:
    """Hold the cleanup lock (PostgreSQL advisory lock on the ledger's database) while
    the block runs. Yields False when another cleanup holds it; with a SQLite ledger
    (one machine) it always yields True."""
    from tasks.runtime import get_ledger

    with get_ledger().try_advisory_lock(CLEANUP_LOCK_KEY) as held:
        yield held


def _protected_paths() -> list[Path]:
    """Local things a scratch cleanup must never reach: the SQLite ledger, a file store."""
    from blocks.settings import get_settings

    settings = get_settings()
    out = [Path(settings.resolved_ledger_dsn().removeprefix("sqlite:///"))]
    dsn = os.environ.get("CAD2GLTF_LEDGER_DSN", "")
    if dsn.startswith("sqlite:///") and dsn != "sqlite:///:memory:":
        out.append(Path("/" + dsn.removeprefix("sqlite:///").lstrip("/")))
    url = settings.resolved_storage_url()
    if url.startswith("file://"):
        out.append(Path(unquote(urlsplit(url).path)))
    return [p.resolve() for p in out]


def _check_scratch_root(root: Path) -> None:
    if root == Path(root.anchor):
        raise ValueError(f"refusing to clean {root}: the work dir is a file-system root")
    for path in _protected_paths():
        if path == root or root in path.parents:
            raise ValueError(f"refusing to clean {root}: it holds {path} "
                             "(CAD2GLTF_WORK_DIR must be a folder of its own)")


@task(name="clean_scratch", task_run_name="clean scratch files")
def clean_scratch(cutoff: datetime, dry_run: bool = False) -> dict[str, Any]:
    """Remove files of the work dir last modified before ``cutoff``, then the folders
    that were already that old and are now empty. Symbolic links are removed, never
    followed; the work dir itself stays.

    Returns:
        ``{"files", "bytes", "dirs", "examples", "dry_run"}`` (what was or would be removed).

    Raises:
        ValueError: the work dir is ``/`` or holds the SQLite ledger or a file store.
    """
    from blocks.settings import get_settings

    root = get_settings().resolved_work_dir()
    _check_scratch_root(root)
    limit = cutoff.timestamp()
    files: list[tuple[str, int]] = []
    old_dirs: list[str] = []
    if root.is_dir():
        for dirpath, dirnames, filenames in os.walk(root, onerror=None):
            # symlinks to folders are listed in dirnames but not walked: links, not trees
            names = filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            for name in names:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                if st.st_mtime < limit:
                    files.append((path, st.st_size if stat.S_ISREG(st.st_mode) else 0))
            if dirpath != str(root):
                try:
                    if os.lstat(dirpath).st_mtime < limit:  # taken before anything changes
                        old_dirs.append(dirpath)
                except FileNotFoundError:
                    pass
    removed_files: list[tuple[str, int]] = []
    removed_dirs = 0
    if dry_run:
        removed_files = files
    else:
        for path, size in files:
            try:
                os.unlink(path)
                removed_files.append((path, size))
            except FileNotFoundError:
                continue
        # deepest first; rmdir refuses a folder that is not empty (new work arrived)
        for path in sorted(old_dirs, key=lambda p: p.count(os.sep), reverse=True):
            try:
                os.rmdir(path)
                removed_dirs += 1
            except OSError:
                continue
    out = {"files": len(removed_files), "bytes": sum(s for _, s in removed_files),
           "dirs": removed_dirs,
           "examples": [os.path.relpath(p, root) for p, _ in removed_files[:EXAMPLES]],
           "dry_run": dry_run}
    get_run_logger().info("scratch %s: %d files (%d bytes), %d folders older than %s",
                          "would remove" if dry_run else "removed", out["files"],
                          out["bytes"], removed_dirs, cutoff.isoformat())
    return out


def _result_folder(key: str) -> str:
    return key.rsplit("/", 1)[0]


@task(name="clean_results", task_run_name="clean results")
def clean_results(cutoff: datetime, dry_run: bool = False) -> dict[str, Any]:
    """Remove stored results (GLB, preview PNG, manifest) past retention.

    A result folder (``results/<sha[:2]>/<sha>/<version>-<options>/``) expires when its
    newest object was written before ``cutoff``; a folder with an object of unknown age
    is kept. The manifest goes first, so a half-deleted folder never looks complete
    (``convert_drawing`` treats a folder without manifest as not converted).

    Returns:
        ``{"results", "objects", "bytes", "examples", "dry_run"}``.

    Raises:
        StorageError | NetworkError: the store failed (transient: retried; deleting is
            idempotent).
    """
    from tasks.runtime import get_store

    store = get_store()
    folders: dict[str, list[Any]] = {}
    for obj in store.list(RESULTS_PREFIX):
        folders.setdefault(_result_folder(obj.key), []).append(obj)
    expired = []
    for folder, objects in sorted(folders.items()):
        if any(o.modified is None for o in objects):
            continue
        if max(o.modified for o in objects) < cutoff:
            expired.append((folder, objects))
    count = size = 0
    for _folder, objects in expired:
        ordered = sorted(objects, key=lambda o: (o.key.rsplit("/", 1)[-1] != MANIFEST_NAME,
                                                 o.key))
        for obj in ordered:
            if not dry_run:
                store.delete(obj.key)
            count += 1
            size += obj.size
    out = {"results": len(expired), "objects": count, "bytes": size,
           "examples": [folder for folder, _ in expired[:EXAMPLES]], "dry_run": dry_run}
    get_run_logger().info("results %s: %d folders, %d objects (%d bytes) older than %s",
                          "would remove" if dry_run else "removed", len(expired), count,
                          size, cutoff.isoformat())
    return out


@task(name="clean_ledger", task_run_name="clean ledger")
def clean_ledger(cutoff: datetime, dry_run: bool = False) -> dict[str, Any]:
    """Delete jobs that finished (SUCCESS, FAILURE, DLQ) before ``cutoff``, with their
    events. Unfinished jobs are never touched, however old.

    Returns:
        ``{"jobs", "examples", "dry_run"}``.
    """
    from tasks.ledger import FINISHED_STATUSES
    from tasks.runtime import get_ledger

    ledger = get_ledger()
    statuses = sorted(s.value for s in FINISHED_STATUSES)
    where = f"status IN ({', '.join('?' for _ in statuses)}) AND finished_at < ?"
    params = [*statuses, cutoff]
    examples = [row[0] for row in ledger.query(
        f"SELECT job_id FROM cad_jobs WHERE {where} ORDER BY finished_at, job_id LIMIT ?",
        [*params, EXAMPLES])]
    if dry_run:
        jobs = int(ledger.query(f"SELECT count(*) FROM cad_jobs WHERE {where}", params)[0][0])
    else:
        jobs = ledger.delete_finished_before(cutoff)
    get_run_logger().info("ledger %s: %d finished jobs older than %s",
                          "would remove" if dry_run else "removed", jobs, cutoff.isoformat())
    return {"jobs": jobs, "examples": examples, "dry_run": dry_run}


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _examples(items: Sequence[str]) -> str:
    return "<br>".join(f"`{item}`" for item in items) or "-"


def cleanup_markdown(summary: Mapping[str, Any]) -> str:
    """The ``cleanup-report`` artifact: what was (or would be) removed."""
    dry = bool(summary.get("dry_run"))
    cut = summary.get("cutoffs", {})
    ages = summary.get("ages", {})
    lines = [f"# Cleanup{' (dry run: nothing was deleted)' if dry else ''}", "",
             f"| part | older than | {'would remove' if dry else 'removed'} | bytes | "
             "examples |", "|---|---|---|---|---|"]
    s = summary.get("scratch")
    if s:
        lines.append(f"| scratch files | {cut.get('scratch', '?')} ({ages.get('scratch', '?')})"
                     f" | {s['files']} files, {s['dirs']} folders | {_size(s['bytes'])} | "
                     f"{_examples(s['examples'])} |")
    r = summary.get("results")
    if r:
        lines.append(f"| results and previews | {cut.get('results', '?')} "
                     f"({ages.get('results', '?')}) | {r['results']} results "
                     f"({r['objects']} objects) | {_size(r['bytes'])} | "
                     f"{_examples(r['examples'])} |")
    j = summary.get("ledger")
    if j:
        lines.append(f"| finished ledger jobs | {cut.get('ledger', '?')} "
                     f"({ages.get('ledger', '?')}) | {j['jobs']} jobs | - | "
                     f"{_examples(j['examples'])} |")
    errors = summary.get("errors") or {}
    if errors:
        lines += ["", "## Failed parts", ""]
        lines += [f"- **{part}**: {message}" for part, message in sorted(errors.items())]
    return "\n".join(lines) + "\n"


async def publish_cleanup_report(summary: Mapping[str, Any]) -> None:
    """Create the ``cleanup-report`` markdown artifact (best effort, never raises)."""
    from prefect.artifacts import acreate_markdown_artifact

    try:
        await acreate_markdown_artifact(markdown=cleanup_markdown(summary), key="cleanup-report",
                                        description="retention cleanup")
    except Exception as exc:  # noqa: BLE001 - a report never fails the cleanup
        get_run_logger().warning("cleanup report artifact not created: %s", exc)


# =========================================================================== baseline


def summarise(seconds: Sequence[float]) -> dict[str, float | int]:
    """Statistics of one size's run times (polars, linear-interpolated percentiles).

    Returns:
        ``{"n", "p50", "p95", "p99", "mean", "throughput_per_min"}``; throughput is files
        per minute of one sequential worker (``60 * n / total seconds``).

    Raises:
        ValueError: no values, or a negative, NaN or infinite one.
    """
    import polars as pl

    values = [float(v) for v in seconds]
    if not values:
        raise ValueError("no run times to summarise")
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"run times must be finite and >= 0: {values!r}")
    s = pl.Series("seconds", values, dtype=pl.Float64)
    total = math.fsum(values)

    def q(p: float) -> float:
        value = s.quantile(p, interpolation="linear")
        assert value is not None  # only for an empty series
        return float(value)

    return {"n": len(values), "p50": q(0.50), "p95": q(0.95), "p99": q(0.99),
            "mean": total / len(values),
            "throughput_per_min": 60.0 * len(values) / total if total > 0 else math.inf}


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def p95_change(p95: float, previous_p95: float | None, calibration: float | None = None,
               previous_calibration: float | None = None) -> float | None:
    """Fractional change of the p95 against the previous one, or None without a usable
    previous value.

    With both calibrations (seconds of the same reference workload, see
    :func:`calibrate`), the p95s are compared in units of the machine's speed at the
    time: ``(p95 / calibration) / (previous_p95 / previous_calibration) - 1``, so a
    machine that is 30 % busier today does not look like a 30 % slower converter.
    """
    if not _usable(previous_p95):
        return None
    assert previous_p95 is not None
    if _usable(calibration) and _usable(previous_calibration):
        assert calibration is not None and previous_calibration is not None
        return (p95 / calibration) / (previous_p95 / previous_calibration) - 1.0
    return (p95 - previous_p95) / previous_p95


def is_regression(p95: float, previous_p95: float | None,
                  tolerance: float = REGRESSION_TOLERANCE, calibration: float | None = None,
                  previous_calibration: float | None = None) -> bool:
    """True when ``p95`` is more than ``tolerance`` (a fraction) above the previous p95
    (machine-normalised when both calibrations are known, see :func:`p95_change`).

    Exactly ``tolerance`` above is not a regression; without a usable previous value
    (None, 0, negative) there is nothing to regress from.
    """
    change = p95_change(p95, previous_p95, calibration, previous_calibration)
    return change is not None and change > tolerance + 1e-9


def calibrate(path: str) -> float:
    """Seconds of the reference workload on this machine now: ``ezdxf.readfile`` of
    ``path`` (the baseline's large DXF; pinned ezdxf, so the same work every week)."""
    import ezdxf

    t0 = time.perf_counter()
    ezdxf.readfile(path)
    return time.perf_counter() - t0


def meets_sla(p95: float, sla_p95_seconds: float | None = SLA_P95_SECONDS) -> bool:
    """True when the p95 is strictly below the SLA (no SLA: always true)."""
    return sla_p95_seconds is None or p95 < sla_p95_seconds


def baseline_row(size_label: str, stats: Mapping[str, Any],
                 previous: Mapping[str, Any] | None, *, taken_at: datetime, host: str,
                 converter_version: str, file_type: str = "dxf",
                 sla_p95_seconds: float | None = SLA_P95_SECONDS,
                 tolerance: float = REGRESSION_TOLERANCE,
                 calibration_seconds: float | None = None) -> dict[str, Any]:
    """One ``perf_baselines`` row (without ``id``) from :func:`summarise`'s statistics
    and the previous row of the same file type and size (or None)."""
    previous_p95 = float(previous["p95"]) if previous else None
    previous_cal = previous.get("calibration_seconds") if previous else None
    return {
        "taken_at": taken_at, "file_type": file_type, "size_label": size_label,
        "runs": int(stats["n"]), "p50": float(stats["p50"]), "p95": float(stats["p95"]),
        "p99": float(stats["p99"]), "throughput_per_min": float(stats["throughput_per_min"]),
        "converter_version": converter_version, "host": host,
        "sla_p95_seconds": sla_p95_seconds,
        "regression": is_regression(float(stats["p95"]), previous_p95, tolerance,
                                    calibration_seconds, previous_cal),
        "previous_p95": previous_p95,
        "calibration_seconds": calibration_seconds,
        "previous_calibration_seconds": previous_cal,
    }


_BASELINE_COLUMNS = ("id", "taken_at", "file_type", "size_label", "runs", "p50", "p95",
                     "p99", "throughput_per_min", "converter_version", "host",
                     "sla_p95_seconds", "regression", "previous_p95", "calibration_seconds")


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _row_dict(row: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(_BASELINE_COLUMNS, row, strict=True))
    out["taken_at"] = _as_datetime(out["taken_at"])
    out["regression"] = bool(out["regression"])
    return out


def previous_baseline(file_type: str, size_label: str, ledger: Any = None) -> dict[str, Any] | None:
    """The newest ``perf_baselines`` row of that file type and size, or None."""
    from tasks.runtime import get_ledger

    ledger = ledger or get_ledger()
    rows = ledger.query(
        f"SELECT {', '.join(_BASELINE_COLUMNS)} FROM perf_baselines "
        "WHERE file_type = ? AND size_label = ? ORDER BY taken_at DESC, id DESC LIMIT 1",
        [file_type, size_label])
    return _row_dict(rows[0]) if rows else None


def insert_baseline(row: Mapping[str, Any], ledger: Any = None) -> int:
    """Insert one ``perf_baselines`` row (the columns of :func:`baseline_row`); its id."""
    from tasks.runtime import get_ledger

    ledger = ledger or get_ledger()
    columns = [c for c in _BASELINE_COLUMNS if c != "id"]
    rows = ledger.query(
        f"INSERT INTO perf_baselines ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)}) RETURNING id",
        [row.get(c) if c == "calibration_seconds" else row[c] for c in columns], write=True)
    return int(rows[0][0])


@task(name="prepare_corpus", task_run_name="prepare baseline corpus")
def prepare_corpus(folder: str) -> list[dict[str, Any]]:
    """Write the fixed baseline drawings (:data:`CORPUS`) into ``folder``.

    Returns:
        ``[{"file_type", "size_label", "path", "uri", "bytes"}]`` in corpus order
        (DXF small, medium, large; PDF sheet, set10, scan).
    """
    from cad2gltf.synth import floorplan

    out_dir = Path(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for file_type, label, generator, kwargs in CORPUS:
        path = out_dir / f"baseline_{label}.{file_type}"
        if file_type == "dxf":
            floorplan.write_floorplan(getattr(floorplan, generator)(**kwargs), path)
        else:
            path.write_bytes(_pdf_drawing(generator, kwargs))
        out.append({"file_type": file_type, "size_label": label, "path": str(path),
                    "uri": path.resolve().as_uri(), "bytes": path.stat().st_size})
    return out


def _pdf_drawing(kind: str, kwargs: dict[str, Any]) -> bytes:
    from cad2gltf.synth import render
    from cad2gltf.synth.floorplan import generate_floorplan

    if kind == "vector":
        plans = [generate_floorplan(seed=seed, rooms_x=3, rooms_y=2)
                 for seed in kwargs["seeds"]]
        return render.plans_to_pdf(plans, scale=100)
    image, _ = render.plan_to_raster(generate_floorplan(seed=kwargs["seed"], rooms_x=3,
                                                        rooms_y=2),
                                     scale=100, dpi=150, seed=kwargs["seed"],
                                     rotation_deg=0.8, noise=6.0, blur=0.6)
    return render.raster_to_pdf([image], dpi=150)


@contextmanager
def baseline_workspace(work_root: str | None = None) -> Iterator[Path]:
    """Where the corpus and the fresh homes of a baseline go: ``work_root`` (kept, the
    caller's) or a temporary folder removed afterwards."""
    if work_root:
        root = Path(work_root)
        root.mkdir(parents=True, exist_ok=True)
        yield root
        return
    root = Path(tempfile.mkdtemp(prefix="cad2gltf-baseline-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


_ISOLATED_ENV = ("CAD2GLTF_HOME", "CAD2GLTF_STORAGE_URL", "CAD2GLTF_LEDGER_DSN",
                 "CAD2GLTF_WORK_DIR")


@contextmanager
def isolated_runtime(home: Path) -> Iterator[None]:
    """Point this process's pipeline at a fresh ``home`` (file store, SQLite ledger, work
    dir) for the block, then restore the environment and forget the connections.

    Changes process-wide state (``os.environ``, the runtime cache): a baseline must run
    in a process of its own, not beside other flow runs.
    """
    from tasks.runtime import get_ledger, get_store, reset_runtime

    home.mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in _ISOLATED_ENV}
    os.environ.update({
        "CAD2GLTF_HOME": str(home),
        "CAD2GLTF_STORAGE_URL": (home / "store").resolve().as_uri(),
        "CAD2GLTF_LEDGER_DSN": f"sqlite:///{(home / 'jobs.sqlite3').resolve()}",
        "CAD2GLTF_WORK_DIR": str(home / "work"),
    })
    try:
        reset_runtime()
        get_store()
        get_ledger()  # open and migrate outside the measured time
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_runtime()


async def timed_run(convert: Callable[[str], Awaitable[Mapping[str, Any]]], source_uri: str,
                    home: Path) -> float:
    """Seconds of one end-to-end ``convert(source_uri)`` against a fresh ``home``.

    Raises:
        RuntimeError: the run did not convert (failed, duplicate or reused result): its
            time would not measure a conversion.
    """
    with isolated_runtime(home):
        t0 = time.perf_counter()
        out = await convert(source_uri)
        seconds = time.perf_counter() - t0
    if out.get("status") != "SUCCESS" or out.get("reused"):
        raise RuntimeError(f"baseline run of {source_uri} did not convert: "
                           f"status {out.get('status')}, reused {out.get('reused')}")
    return seconds


@task(name="store_baseline", task_run_name="store baseline {size_label}")
def store_baseline(size_label: str, seconds: list[float], file_type: str = "dxf",
                   sla_p95_seconds: float | None = SLA_P95_SECONDS,
                   tolerance: float = REGRESSION_TOLERANCE,
                   calibration_seconds: float | None = None) -> dict[str, Any]:
    """Summarise one size's run times, compare with the previous baseline of that size
    and insert the row.

    Returns:
        The stored row (JSON-friendly: ``taken_at`` as ISO-8601), plus ``sla_ok``,
        ``change`` (fraction vs the previous p95, or None) and ``mean``.
    """
    from cad2gltf import __version__
    from tasks.runtime import get_ledger

    ledger = get_ledger()
    stats = summarise(seconds)
    previous = previous_baseline(file_type, size_label, ledger)
    row = baseline_row(size_label, stats, previous, taken_at=datetime.now(UTC),
                       host=socket.gethostname(), converter_version=__version__,
                       file_type=file_type, sla_p95_seconds=sla_p95_seconds,
                       tolerance=tolerance, calibration_seconds=calibration_seconds)
    row_id = insert_baseline(row, ledger)
    prev = row["previous_p95"]
    out = {"id": row_id, **row, "taken_at": row["taken_at"].isoformat(),
           "sla_ok": meets_sla(row["p95"], sla_p95_seconds), "mean": stats["mean"],
           "change": p95_change(row["p95"], prev, calibration_seconds,
                                row["previous_calibration_seconds"])}
    logger = get_run_logger()
    if not out["sla_ok"]:
        logger.warning("%s %s: p95 %.2f s misses the SLA (< %g s)", file_type, size_label,
                       row["p95"], sla_p95_seconds)
    if row["regression"]:
        logger.warning("%s %s: p95 %.3f s is %.0f%% above the previous %.3f s%s", file_type,
                       size_label, row["p95"], 100 * out["change"], prev,
                       " (machine-normalised)" if calibration_seconds and
                       row["previous_calibration_seconds"] else "")
    return out


def baseline_chart_png(rows: Sequence[Mapping[str, Any]],
                       sla_p95_seconds: float | None = SLA_P95_SECONDS) -> bytes:
    """A bar chart of p50/p95/p99 per size (seconds), with the SLA line, as PNG bytes."""
    import io

    from matplotlib.figure import Figure  # no pyplot: no global state, thread-safe

    fig = Figure(figsize=(6.4, 3.4), dpi=100)
    ax = fig.add_subplot()
    labels = [f"{r.get('file_type', 'dxf')} {r['size_label']}" for r in rows]
    width = 0.26
    for i, (stat_name, colour) in enumerate((("p50", "#4c78a8"), ("p95", "#f58518"),
                                              ("p99", "#e45756"))):
        xs = [j + (i - 1) * width for j in range(len(rows))]
        bars = ax.bar(xs, [float(r[stat_name]) for r in rows], width, label=stat_name,
                      color=colour)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    if sla_p95_seconds is not None:
        ax.axhline(sla_p95_seconds, color="#555555", linestyle="--", linewidth=1,
                   label=f"SLA p95 < {sla_p95_seconds:g} s")
    ax.set_xticks(range(len(rows)), labels)
    ax.set_ylabel("seconds per file")
    ax.set_title("convert-file end to end, by drawing size")
    ax.legend(fontsize=8, loc="upper left")
    ax.margins(y=0.15)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def baseline_markdown(rows: Sequence[Mapping[str, Any]], chart_png: bytes | None,
                      sla_p95_seconds: float | None = SLA_P95_SECONDS,
                      tolerance: float = REGRESSION_TOLERANCE) -> str:
    """The ``performance-baseline`` artifact: the table and the chart (a data URI)."""
    host = rows[0]["host"] if rows else "?"
    version = rows[0]["converter_version"] if rows else "?"
    calibration = rows[0].get("calibration_seconds") if rows else None
    cal = f": {calibration:.3f} s this time" if calibration else ""
    lines = [f"# Performance baseline ({version} on {host})", "",
             f"End-to-end `convert-file` runs against a fresh home each (file store, "
             f"SQLite ledger). SLA: DXF p95 < {sla_p95_seconds:g} s, PDF p95 < "
             f"{PDF_SLA_P95_SECONDS:g} s unless the row says otherwise; regression: p95 more "
             f"than {100 * tolerance:.0f} % above the previous baseline of the size, in "
             f"units of the machine's speed when both baselines have a calibration "
             f"(`ezdxf.readfile` of the large DXF{cal}).", "",
             "| type | size | runs | p50 s | p95 s | p99 s | files/min | previous p95 s | "
             "change | SLA | regression |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        prev = r.get("previous_p95")
        change = p95_change(r["p95"], prev, r.get("calibration_seconds"),
                            r.get("previous_calibration_seconds"))
        sla = r.get("sla_p95_seconds", sla_p95_seconds)
        lines.append(
            f"| {r.get('file_type', 'dxf')} | {r['size_label']} | {r['runs']} | "
            f"{r['p50']:.3f} | {r['p95']:.3f} | "
            f"{r['p99']:.3f} | {r['throughput_per_min']:.1f} | "
            f"{f'{prev:.3f}' if prev else '-'} | "
            f"{f'{100 * change:+.1f} %' if change is not None else '-'} | "
            f"{'ok' if meets_sla(r['p95'], sla) else '**missed**'} | "
            f"{'**yes**' if r['regression'] else 'no'} |")
    if chart_png:
        data = base64.b64encode(chart_png).decode()
        lines += ["", f"![p50, p95 and p99 per size](data:image/png;base64,{data})"]
    return "\n".join(lines) + "\n"


async def publish_baseline_report(rows: Sequence[Mapping[str, Any]],
                                  sla_p95_seconds: float | None = SLA_P95_SECONDS,
                                  tolerance: float = REGRESSION_TOLERANCE) -> None:
    """Create the ``performance-baseline`` markdown artifact (best effort, never raises);
    without matplotlib the table goes alone."""
    from prefect.artifacts import acreate_markdown_artifact

    logger = get_run_logger()
    try:
        chart = baseline_chart_png(rows, sla_p95_seconds)
    except Exception as exc:  # noqa: BLE001 - the table matters more than the chart
        logger.warning("baseline chart not drawn: %s", exc)
        chart = None
    try:
        await acreate_markdown_artifact(
            markdown=baseline_markdown(rows, chart, sla_p95_seconds, tolerance),
            key="performance-baseline", description="performance baseline")
    except Exception as exc:  # noqa: BLE001
        logger.warning("baseline artifact not created: %s", exc)
