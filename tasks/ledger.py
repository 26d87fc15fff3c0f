"""The job ledger: one row per conversion job, its status machine and an audit trail.

Plain Python (no Prefect): the Prefect tasks wrap it. Two backends share one public API:

* ``postgresql://...`` (or ``postgres://``): PostgreSQL through psycopg2, imported lazily so
  SQLite-only installations do not need it;
* ``sqlite:///abs/path.sqlite3`` or ``sqlite:///:memory:``: the standard library's sqlite3
  (parent folders are created; WAL journal; ``busy_timeout``), the single-machine default.

The schema comes from numbered SQL files in ``tasks/sql`` (``001_jobs.postgres.sql`` /
``001_jobs.sqlite.sql``; a plain ``NNN_name.sql`` serves both dialects) applied by
:meth:`JobLedger.migrate`.

Thread safety: a :class:`JobLedger` owns a small lock-protected **connection pool**
(``pool_size`` connections, 4 by default; ``sqlite:///:memory:`` always 1). Every public call
borrows one connection for its duration and gives it back, so one ledger can be shared by
all the threads of a process (Prefect runs tasks in threads), the number of database
connections stays bounded and no connection is tied to a thread that may go away. A call
waits up to ``pool_timeout`` seconds for a free connection.

Concurrency between processes: status changes run in a transaction that locks the job row
(``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), creation is
``INSERT ... ON CONFLICT DO NOTHING`` followed by a ``SELECT`` of the idempotency key, and
migrations run under ``pg_advisory_xact_lock`` on PostgreSQL.

Errors: connection problems (server down, connection refused, timeouts, a locked SQLite
file, an exhausted pool) raise :class:`cad2gltf.errors.NetworkError` with subcode
``LEDGER_UNAVAILABLE`` (transient); any other database error raises
:class:`cad2gltf.errors.StorageError` with subcode ``LEDGER_ERROR``. Refused status changes
raise :class:`TransitionRefused` (a ``ValueError``) and write nothing.

Timestamps are produced by the calling process in UTC (``timestamptz`` on PostgreSQL,
ISO-8601 text with microseconds on SQLite) and come back as timezone-aware datetimes.
"""

from __future__ import annotations

import json
import os
import math
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cad2gltf.errors import (
    ConversionError,
    InternalError,
    InvalidInputError,
    NetworkError,
    StorageError,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "FINISHED_STATUSES",
    "SQL_DIR",
    "Job",
    "JobEvent",
    "JobLedger",
    "JobNotFound",
    "JobStatus",
    "Migration",
    "TransitionRefused",
    "can_transition",
    "load_migrations",
    "open_ledger",
]

SQL_DIR = Path(__file__).resolve().with_name("sql")
"""Folder of the numbered migration files."""

# Every advisory lock key the project uses, in one place so they can never collide.
ADVISORY_LOCK_KEYS = {
    "migrate": 0x0CAD2617F0001,  # pg_advisory_xact_lock of migrate()
    "cleanup": 0x0CAD2617F0002,  # one cleanup flow at a time
    "sweep": 0x0CAD2617F0003,    # one dead-letter sweep at a time
}
_MIGRATE_LOCK_KEY = ADVISORY_LOCK_KEYS["migrate"]
_MAX_ERROR_MESSAGE = 10_000  # longer error messages are truncated


class JobStatus(StrEnum):
    """Status of a job in the ledger."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    FAILURE = "FAILURE"
    DLQ = "DLQ"
    REPROCESSING = "REPROCESSING"


_S = JobStatus
ALLOWED_TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = MappingProxyType({
    _S.PENDING: frozenset({_S.RUNNING, _S.FAILURE, _S.DLQ}),
    _S.RUNNING: frozenset({_S.SUCCESS, _S.RETRY, _S.FAILURE, _S.DLQ}),
    _S.RETRY: frozenset({_S.RUNNING, _S.FAILURE, _S.DLQ}),
    _S.FAILURE: frozenset({_S.DLQ, _S.REPROCESSING}),
    _S.DLQ: frozenset({_S.REPROCESSING, _S.FAILURE}),
    _S.REPROCESSING: frozenset({_S.RUNNING, _S.FAILURE, _S.DLQ}),
    _S.SUCCESS: frozenset(),
})
"""Status changes :meth:`JobLedger.transition` allows. ``RUNNING -> RUNNING`` is not listed:
it is the re-claim of a job by the flow run that already owns it (see
:func:`can_transition`)."""

FINISHED_STATUSES: frozenset[JobStatus] = frozenset({_S.SUCCESS, _S.FAILURE, _S.DLQ})
"""Statuses that set ``finished_at`` (and that :meth:`JobLedger.delete_finished_before`
removes)."""

_SETTABLE_FIELDS = frozenset({
    "stage", "progress", "error_code", "error_message", "result_uri", "preview_uri",
    "file_type", "source_sha256", "metadata", "reprocess_count",
})


def can_transition(
    current: JobStatus | str,
    requested: JobStatus | str,
    *,
    owner: str | None = None,
    current_owner: str | None = None,
) -> bool:
    """Whether the ledger would allow ``current -> requested`` (ignoring ``expect_from``).

    Args:
        current: the job's status.
        requested: the wanted status.
        owner: the flow run asking (``None``: an operator, no ownership check).
        current_owner: the job's ``flow_run_id``.

    Returns:
        True when :meth:`JobLedger.transition` would apply the change.

    Raises:
        ValueError: a status is not a :class:`JobStatus` value.
    """
    return _refusal(JobStatus(current), JobStatus(requested), owner, current_owner, None) is None


class TransitionRefused(ValueError):
    """A status change was refused; nothing was written.

    Attributes:
        job_id: the job.
        current: its status when the change was asked for.
        requested: the status asked for.
        owner: the flow run that asked (``None`` for an operator).
        reason: why the change was refused.
    """

    def __init__(
        self,
        job_id: str,
        current: JobStatus,
        requested: JobStatus,
        owner: str | None,
        reason: str,
    ) -> None:
        self.job_id = job_id
        self.current = current
        self.requested = requested
        self.owner = owner
        self.reason = reason
        super().__init__(
            f"job {job_id}: transition {current.value} -> {requested.value} refused "
            f"for owner {owner!r}: {reason}"
        )


class JobNotFound(LookupError):
    """No job with that id exists in the ledger."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} not found in the ledger")


@dataclass(frozen=True)
class Job:
    """One row of ``cad_jobs``. ``options`` and ``metadata`` are parsed JSON objects;
    timestamps are timezone-aware UTC datetimes."""

    job_id: str
    idempotency_key: str
    source_uri: str
    source_sha256: str | None
    file_type: str | None
    status: JobStatus
    stage: str | None
    progress: float
    attempts: int
    error_code: str | None
    error_message: str | None
    result_uri: str | None
    preview_uri: str | None
    flow_run_id: str | None
    options: dict[str, Any]
    callback_url: str | None
    metadata: dict[str, Any]
    trace_id: str | None
    reprocess_count: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        """True in SUCCESS, FAILURE and DLQ."""
        return self.status in FINISHED_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy (status as text, timestamps as ISO-8601)."""
        out: dict[str, Any] = {}
        for name in _JOB_COLUMNS:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, JobStatus):
                value = value.value
            elif isinstance(value, dict):
                value = dict(value)
            out[name] = value
        return out


@dataclass(frozen=True)
class JobEvent:
    """One row of ``cad_job_events``: an applied status change (or the creation, with
    ``from_status`` None)."""

    event_id: int
    job_id: str
    at: datetime
    from_status: JobStatus | None
    to_status: JobStatus
    stage: str | None
    detail: dict[str, Any]


_JOB_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Job))
_EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(JobEvent))
_TS_COLUMNS = frozenset({"created_at", "updated_at", "started_at", "finished_at"})


# --------------------------------------------------------------------------- migrations

_MIGRATION_NAME = re.compile(r"^(\d+)_([A-Za-z0-9_]+?)(?:\.(postgres|sqlite))?\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered migration file for one dialect."""

    version: int
    name: str
    path: Path

    def sql(self) -> str:
        """The file's text."""
        return self.path.read_text(encoding="utf-8")


def load_migrations(dialect: str, sql_dir: Path = SQL_DIR) -> list[Migration]:
    """The migrations of ``dialect``, by version.

    ``NNN_name.<dialect>.sql`` wins over a shared ``NNN_name.sql``.

    Args:
        dialect: ``"postgres"`` or ``"sqlite"``.
        sql_dir: folder holding the files.

    Returns:
        One :class:`Migration` per version, ascending.

    Raises:
        InternalError: two different files claim the same version, or the folder is missing.
    """
    if not sql_dir.is_dir():
        raise InternalError(f"migration folder {sql_dir} is missing", subcode="LEDGER_ERROR")
    chosen: dict[int, tuple[bool, Migration]] = {}
    for path in sorted(sql_dir.iterdir()):
        match = _MIGRATION_NAME.match(path.name)
        if not match or not path.is_file():
            continue
        version, name, file_dialect = int(match[1]), match[2], match[3]
        if file_dialect is not None and file_dialect != dialect:
            continue
        specific = file_dialect is not None
        migration = Migration(version, name, path)
        previous = chosen.get(version)
        if previous is not None:
            if previous[1].name != name or previous[0] == specific:
                raise InternalError(
                    f"migration version {version} is claimed by {previous[1].path.name} "
                    f"and {path.name}", subcode="LEDGER_ERROR")
            if previous[0]:  # the dialect-specific file already won
                continue
        chosen[version] = (specific, migration)
    return [chosen[v][1] for v in sorted(chosen)]


def _split_sqlite_script(text: str) -> list[str]:
    """Split a SQL script into statements the way SQLite itself sees them."""
    statements: list[str] = []
    buffer = ""
    for line in text.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    rest = "\n".join(ln for ln in buffer.splitlines() if not ln.strip().startswith("--"))
    if rest.strip():
        raise InternalError("migration ends with an unterminated statement",
                            subcode="LEDGER_ERROR")
    return statements


# --------------------------------------------------------------------------- helpers


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _status(value: JobStatus | str) -> JobStatus:
    try:
        return JobStatus(value)
    except ValueError:
        raise ValueError(
            f"unknown job status {value!r}; expected one of {[s.value for s in JobStatus]}"
        ) from None


def _check_progress(value: float) -> float:
    progress = float(value)
    if math.isnan(progress):
        raise ValueError("progress must be a number between 0 and 100, got NaN")
    return min(100.0, max(0.0, progress))


def _dumps(value: Mapping[str, Any] | None, what: str) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping, got {type(value).__name__}")
    return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _loads(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def _opt_text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string or None, got {type(value).__name__}")
    return value


def _clean_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the ``**fields`` of :meth:`JobLedger.transition`."""
    unknown = sorted(set(raw) - _SETTABLE_FIELDS)
    if unknown:
        raise TypeError(
            f"transition() cannot set {unknown}; settable fields: {sorted(_SETTABLE_FIELDS)}")
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "progress":
            out[name] = _check_progress(value)
        elif name == "metadata":
            out[name] = _dumps(value, "metadata")
        elif name == "reprocess_count":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"reprocess_count must be an int >= 0, got {value!r}")
            out[name] = value
        elif name == "error_message":
            text = _opt_text(value, name)
            out[name] = text[:_MAX_ERROR_MESSAGE] if text is not None else None
        else:
            out[name] = _opt_text(value, name)
    return out


def _refusal(
    current: JobStatus,
    requested: JobStatus,
    owner: str | None,
    current_owner: str | None,
    expected: frozenset[JobStatus] | None,
) -> str | None:
    """Why ``current -> requested`` is refused, or None when it is allowed."""
    if expected is not None and current not in expected:
        wanted = ", ".join(sorted(s.value for s in expected)) or "nothing"
        return f"the job is {current.value}, expected one of: {wanted}"
    if current is JobStatus.RUNNING and requested is JobStatus.RUNNING:
        if owner is None:
            return "re-claiming a RUNNING job needs the owning flow run id"
        if owner != current_owner:
            return f"the job is RUNNING for another flow run ({current_owner!r})"
        return None
    if requested not in ALLOWED_TRANSITIONS[current]:
        if not ALLOWED_TRANSITIONS[current]:
            return f"{current.value} is terminal"
        allowed = ", ".join(sorted(s.value for s in ALLOWED_TRANSITIONS[current]))
        return f"{current.value} may only go to {allowed}"
    if current is JobStatus.RUNNING and owner is not None and owner != current_owner:
        return f"the job is RUNNING for another flow run ({current_owner!r})"
    return None


def _unavailable(message: str, **details: Any) -> NetworkError:
    return NetworkError(message, subcode="LEDGER_UNAVAILABLE", details=details)


def _ledger_error(message: str, **details: Any) -> StorageError:
    return StorageError(message, subcode="LEDGER_ERROR", details=details)


# --------------------------------------------------------------------------- backends


class _Backend:
    """What differs between PostgreSQL and SQLite."""

    name: str
    begin_sql: str
    lock_suffix: str
    driver_errors: tuple[type[BaseException], ...]
    schema_migrations_ddl: str

    def __init__(self, target: str) -> None:
        self.target = target  # for messages: never holds a password

    def connect(self) -> Any:
        raise NotImplementedError

    def map_error(self, exc: BaseException, conn: Any) -> tuple[ConversionError, bool]:
        """The classified error for a driver exception, and whether to drop the connection."""
        raise NotImplementedError

    def sql(self, text: str) -> str:
        return text

    def encode_ts(self, value: datetime | None) -> Any:
        return value

    def decode_ts(self, value: Any) -> datetime | None:
        raise NotImplementedError

    def is_broken(self, conn: Any) -> bool:
        return False

    def run_script(self, cursor: Any, text: str) -> None:
        raise NotImplementedError

    def close(self, conn: Any) -> None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


class _PostgresBackend(_Backend):
    name = "postgres"
    begin_sql = "BEGIN"
    lock_suffix = " FOR UPDATE"
    schema_migrations_ddl = (
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"
    )

    def __init__(self, dsn: str, connect_timeout: float, statement_timeout: float) -> None:
        try:
            import psycopg2
            import psycopg2.extensions
        except ImportError as exc:  # pragma: no cover - psycopg2 ships with the pipeline
            raise InternalError("psycopg2 is needed for a postgresql:// ledger",
                                subcode="LEDGER_ERROR") from exc
        self._pg = psycopg2
        try:
            params = psycopg2.extensions.parse_dsn(dsn)
        except psycopg2.Error as exc:
            raise ValueError(f"invalid PostgreSQL DSN: {exc}".strip()) from None
        host = params.get("host", "localhost")
        port = params.get("port", "5432")
        user = params.get("user", "")
        super().__init__(
            f"postgresql://{user + '@' if user else ''}{host}:{port}/{params.get('dbname', '')}")
        self.dsn = dsn
        extra: dict[str, Any] = {
            "connect_timeout": str(max(2, math.ceil(connect_timeout))),
            "application_name": "cad2gltf-ledger",
            "keepalives": "1",
            "keepalives_idle": "30",
            "keepalives_interval": "10",
            "keepalives_count": "3",
        }
        self.connect_kwargs = {k: v for k, v in extra.items() if k not in params}
        self.statement_timeout_ms = max(0, int(statement_timeout * 1000))
        self.driver_errors = (psycopg2.Error,)

    def connect(self) -> Any:
        pg = self._pg
        try:
            conn = pg.connect(self.dsn, **self.connect_kwargs)
        except pg.Error as exc:
            raise _unavailable(
                f"cannot connect to the job ledger at {self.target}: "
                f"{str(exc).strip() or type(exc).__name__}", target=self.target) from exc
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SET statement_timeout = %s", (self.statement_timeout_ms,))
                cur.execute("SET idle_in_transaction_session_timeout = %s",
                            (max(self.statement_timeout_ms * 2, 60_000),))
        except pg.Error as exc:
            mapped, _ = self.map_error(exc, conn)
            self.close(conn)
            raise mapped from exc
        return conn

    def map_error(self, exc: BaseException, conn: Any) -> tuple[ConversionError, bool]:
        pg = self._pg
        text = str(exc).strip() or type(exc).__name__
        if isinstance(exc, (pg.OperationalError, pg.InterfaceError)):
            return _unavailable(f"job ledger at {self.target} unavailable: {text}",
                                target=self.target,
                                pgcode=getattr(exc, "pgcode", None)), True
        broken = conn is not None and bool(getattr(conn, "closed", 0))
        return _ledger_error(f"job ledger error ({self.target}): {text}",
                             target=self.target, pgcode=getattr(exc, "pgcode", None)), broken

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def decode_ts(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise _ledger_error(f"unexpected timestamp {value!r} in the job ledger")
        return value.astimezone(UTC)

    def is_broken(self, conn: Any) -> bool:
        return bool(conn.closed)

    def run_script(self, cursor: Any, text: str) -> None:
        cursor.execute(text)  # no parameters: psycopg2 sends the script as it is


class _SqliteBackend(_Backend):
    name = "sqlite"
    begin_sql = "BEGIN IMMEDIATE"
    lock_suffix = ""
    driver_errors = (sqlite3.Error,)
    schema_migrations_ddl = (
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    _TRANSIENT = ("locked", "busy", "unable to open", "disk i/o")

    def __init__(self, path: str, busy_timeout: float) -> None:
        super().__init__(f"sqlite:///{path}")
        self.path = path
        self.memory = path == ":memory:"
        self.busy_timeout = busy_timeout
        if not self.memory:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _ledger_error(f"cannot create the folder of the job ledger {path}: {exc}",
                                    target=self.target) from exc

    def connect(self) -> Any:
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise _unavailable(f"cannot open the job ledger {self.path}: {exc}",
                               target=self.target) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            if not self.memory:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            mapped, _ = self.map_error(exc, conn)
            self.close(conn)
            raise mapped from exc
        return conn

    def map_error(self, exc: BaseException, conn: Any) -> tuple[ConversionError, bool]:
        text = str(exc).strip() or type(exc).__name__
        if isinstance(exc, sqlite3.OperationalError) and any(
            word in text.lower() for word in self._TRANSIENT
        ):
            return _unavailable(f"job ledger {self.path} unavailable: {text}",
                                target=self.target), False
        broken = isinstance(exc, sqlite3.ProgrammingError) and "closed" in text.lower()
        return _ledger_error(f"job ledger error ({self.path}): {text}",
                             target=self.target), broken and not self.memory

    def encode_ts(self, value: datetime | None) -> Any:
        if value is None:
            return None
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    def decode_ts(self, value: Any) -> datetime | None:
        if value is None:
            return None
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)

    def run_script(self, cursor: Any, text: str) -> None:
        for statement in _split_sqlite_script(text):
            cursor.execute(statement)


class _Pool:
    """A small lock-protected pool: at most ``size`` connections, borrowed per call."""

    def __init__(self, factory: Callable[[], Any], backend: _Backend, size: int,
                 timeout: float) -> None:
        self._factory = factory
        self._backend = backend
        self._timeout = timeout
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self.closed = False

    def acquire(self) -> Any:
        if self.closed:
            raise InternalError("the job ledger is closed", subcode="LEDGER_CLOSED")
        if not self._slots.acquire(timeout=self._timeout):
            raise _unavailable(
                f"no free job-ledger connection after {self._timeout:g} s (pool exhausted)",
                target=self._backend.target)
        try:
            while True:
                with self._lock:
                    conn = self._idle.pop() if self._idle else None
                if conn is None:
                    return self._factory()
                if not self._backend.is_broken(conn):
                    return conn
                self._backend.close(conn)
        except BaseException:
            self._slots.release()
            raise

    def release(self, conn: Any, *, discard: bool = False) -> None:
        try:
            with self._lock:
                keep = not (discard or self.closed or self._backend.is_broken(conn))
                if keep:
                    self._idle.append(conn)
            if not keep:
                self._backend.close(conn)
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self._backend.close(conn)


class _Cursor:
    """A cursor speaking ``?`` placeholders on both backends."""

    def __init__(self, cursor: Any, backend: _Backend) -> None:
        self._cursor = cursor
        self._backend = backend

    def execute(self, sql: str, params: Iterable[Any] | None = None) -> None:
        if params is None:
            self._cursor.execute(sql)
        else:
            self._cursor.execute(self._backend.sql(sql), tuple(params))

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    @property
    def raw(self) -> Any:
        return self._cursor


# --------------------------------------------------------------------------- the ledger


class JobLedger:
    """The job ledger (see the module documentation). Create it with :func:`open_ledger`.

    One instance is safe to share between threads: each call borrows a connection from a
    lock-protected pool. Use it as a context manager or call :meth:`close`.
    """

    def __init__(self, backend: _Backend, *, pool_size: int, pool_timeout: float) -> None:
        self._b = backend
        self._pool = _Pool(backend.connect, backend, pool_size, pool_timeout)
        self._select = f"SELECT {', '.join(_JOB_COLUMNS)} FROM cad_jobs"

    @property
    def backend(self) -> str:
        """``"postgres"`` or ``"sqlite"``."""
        return self._b.name

    def __repr__(self) -> str:
        return f"JobLedger({self._b.target!r})"

    def __enter__(self) -> JobLedger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections; further calls raise ``InternalError``."""
        self._pool.close()

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[_Cursor]:
        """Borrow a connection; with ``write``, run the block in one locking transaction."""
        conn = self._pool.acquire()
        discard = False
        open_tx = False
        try:
            raw = conn.cursor()
            try:
                if write:
                    raw.execute(self._b.begin_sql)
                    open_tx = True
                try:
                    yield _Cursor(raw, self._b)
                except BaseException:
                    if open_tx:
                        open_tx = False
                        try:
                            raw.execute("ROLLBACK")
                        except self._b.driver_errors:
                            discard = True
                    raise
                if open_tx:
                    raw.execute("COMMIT")
                    open_tx = False
            finally:
                try:
                    raw.close()
                except self._b.driver_errors:
                    discard = True
        except self._b.driver_errors as exc:
            mapped, broken = self._b.map_error(exc, conn)
            discard = discard or broken
            if open_tx and not discard:  # a failed COMMIT (SQLite: busy) leaves it open
                try:
                    conn.cursor().execute("ROLLBACK")
                except self._b.driver_errors:
                    discard = True
            raise mapped from exc
        finally:
            self._pool.release(conn, discard=discard)

    def _row_to_job(self, row: Any) -> Job:
        values = dict(zip(_JOB_COLUMNS, row, strict=True))
        for name in _TS_COLUMNS:
            values[name] = self._b.decode_ts(values[name])
        values["status"] = JobStatus(values["status"])
        values["progress"] = float(values["progress"])
        values["attempts"] = int(values["attempts"])
        values["reprocess_count"] = int(values["reprocess_count"])
        values["options"] = _loads(values["options"])
        values["metadata"] = _loads(values["metadata"])
        return Job(**values)

    def _fetch(self, cur: _Cursor, where: str, params: Iterable[Any], *,
               lock: bool = False) -> Job | None:
        cur.execute(f"{self._select} WHERE {where}{self._b.lock_suffix if lock else ''}",
                    params)
        row = cur.fetchone()
        return self._row_to_job(row) if row is not None else None

    def _add_event(self, cur: _Cursor, job_id: str, at: datetime, from_status: str | None,
                   to_status: str, stage: str | None, detail: Mapping[str, Any]) -> None:
        cur.execute(
            "INSERT INTO cad_job_events (job_id, at, from_status, to_status, stage, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, self._b.encode_ts(at), from_status, to_status, stage,
             json.dumps({k: v for k, v in detail.items() if v is not None},
                        sort_keys=True, separators=(",", ":"))),
        )

    # ------------------------------------------------------------------ schema

    def migrate(self) -> list[int]:
        """Apply the pending migrations of ``tasks/sql`` in one transaction.

        On PostgreSQL the transaction holds ``pg_advisory_xact_lock`` so concurrent
        migrations from several processes are serialised; on SQLite ``BEGIN IMMEDIATE``
        does the same. Applied versions are recorded in ``schema_migrations``.

        Returns:
            The versions applied by this call (empty when the schema was up to date).

        Raises:
            NetworkError: the database is unreachable (``LEDGER_UNAVAILABLE``).
            StorageError: a migration failed (``LEDGER_ERROR``); nothing was applied.
            InternalError: the migration files are inconsistent.
        """
        migrations = load_migrations(self._b.name)
        applied: list[int] = []
        with self._session(write=True) as cur:
            if self._b.name == "postgres":
                cur.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATE_LOCK_KEY,))
            cur.execute(self._b.schema_migrations_ddl)
            cur.execute("SELECT version FROM schema_migrations")
            done = {int(row[0]) for row in cur.fetchall()}
            for migration in migrations:
                if migration.version in done:
                    continue
                self._b.run_script(cur.raw, migration.sql())
                cur.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, self._b.encode_ts(_utcnow())))
                applied.append(migration.version)
        return applied

    def applied_migrations(self) -> list[int]:
        """The versions recorded in ``schema_migrations`` (empty before the first migrate).

        Raises:
            NetworkError: the database is unreachable (``LEDGER_UNAVAILABLE``).
            StorageError: another database error (``LEDGER_ERROR``).
        """
        with self._session() as cur:
            if self._b.name == "postgres":
                cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
            else:
                cur.execute("SELECT EXISTS (SELECT 1 FROM sqlite_master "
                            "WHERE type = 'table' AND name = 'schema_migrations')")
            if not cur.fetchone()[0]:
                return []
            cur.execute("SELECT version FROM schema_migrations ORDER BY version")
            return [int(row[0]) for row in cur.fetchall()]

    # ------------------------------------------------------------------ companions

    def query(self, sql: str, params: Iterable[Any] = (), *,
              write: bool = False) -> list[tuple[Any, ...]]:
        """Run one SQL statement on the ledger's database and return its rows.

        For the small tables that live beside the jobs (``perf_baselines``, maintenance
        counts); the jobs themselves go through the methods above.

        Args:
            sql: one statement with ``?`` placeholders (both backends).
            params: its parameters; ``datetime`` values must be timezone-aware and are
                stored like the ledger's own timestamps.
            write: run it in a locking transaction (``BEGIN`` / ``BEGIN IMMEDIATE``).

        Returns:
            The rows as tuples (empty for a statement without a result). Values come back
            as the driver gives them: timestamps are datetimes on PostgreSQL and ISO-8601
            text on SQLite, booleans are ints on SQLite.

        Raises:
            ValueError: a naive datetime parameter.
            NetworkError: the database is unreachable (``LEDGER_UNAVAILABLE``).
            StorageError: another database error (``LEDGER_ERROR``).
        """
        values = []
        for value in params:
            if isinstance(value, datetime):
                if value.tzinfo is None:
                    raise ValueError("datetime parameters must be timezone-aware")
                value = self._b.encode_ts(value)
            values.append(value)
        with self._session(write=write) as cur:
            cur.execute(sql, values)
            if cur.raw.description is None:
                return []
            return [tuple(row) for row in cur.fetchall()]

    @contextmanager
    def try_advisory_lock(self, key: int) -> Iterator[bool]:
        """Try to take the cross-process lock ``key`` for the duration of the block.

        PostgreSQL: ``pg_try_advisory_lock`` on a connection of its own, outside the pool
        (a session lock taken on a pooled connection would be re-entrant for every later
        borrower of that connection, and could be released from the wrong one). Leaving
        the block unlocks and closes that connection; the server also drops the lock if
        the process dies. SQLite (one machine): an exclusive ``flock`` on a file beside
        the database (``:memory:`` has no other process to guard against: True).

        Yields:
            True when this block holds the lock, False when another session does.

        Raises:
            NetworkError: the database is unreachable (``LEDGER_UNAVAILABLE``).
            StorageError: another database error (``LEDGER_ERROR``).
        """
        if self._b.name != "postgres":
            if getattr(self._b, "memory", True):
                yield True
                return
            import fcntl

            fd = os.open(f"{self._b.path}.lock-{key & 0xFFFFFFFFFFFFFFFF:x}",
                         os.O_CREAT | os.O_RDWR, 0o600)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held = True
                except BlockingIOError:
                    held = False
                yield held
            finally:
                os.close(fd)  # closing the descriptor releases the flock
            return
        conn = self._b.connect()
        try:
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                    held = bool(cur.fetchone()[0])
            except self._b.driver_errors as exc:
                raise self._b.map_error(exc, conn)[0] from exc
            try:
                yield held
            finally:
                if held:
                    try:
                        with conn.cursor() as cur:
                            cur.execute("SELECT pg_advisory_unlock(%s)", (key,))
                    except self._b.driver_errors:
                        pass  # closing the session below releases it anyway
        finally:
            self._b.close(conn)

    # ------------------------------------------------------------------ jobs

    def create_or_get(
        self,
        idempotency_key: str,
        source_uri: str,
        *,
        job_id: str | None = None,
        file_type: str | None = None,
        options: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
    ) -> tuple[Job, bool]:
        """Insert a PENDING job, or return the job already holding ``idempotency_key``.

        Race-safe: ``INSERT ... ON CONFLICT DO NOTHING`` then ``SELECT`` by key, so callers
        racing with the same key all get the same job and exactly one sees ``created``.
        An existing job is returned as it is (its source and options are not compared).

        Args:
            idempotency_key: the caller's unique key of the request.
            source_uri: where the drawing is.
            job_id: id of the new job (default: a new UUID4 string).
            file_type: ``dxf``/``pdf`` when known.
            options: conversion options (a JSON object).
            callback_url: URL to notify when the job finishes.
            metadata: free JSON object.
            trace_id: correlation id for logs and traces.

        Returns:
            ``(job, created)``.

        Raises:
            ValueError: an empty key or source URI.
            TypeError: options/metadata are not JSON objects.
            InvalidInputError: ``job_id`` is already used by a job with another key
                (subcode ``JOB_ID_CONFLICT``).
            NetworkError: the database is unreachable (``LEDGER_UNAVAILABLE``).
            StorageError: another database error (``LEDGER_ERROR``).
        """
        if not isinstance(idempotency_key, str) or not idempotency_key:
            raise ValueError("idempotency_key must be a non-empty string")
        if not isinstance(source_uri, str) or not source_uri:
            raise ValueError("source_uri must be a non-empty string")
        new_id = job_id if job_id is not None else str(uuid.uuid4())
        if not isinstance(new_id, str) or not new_id:
            raise ValueError("job_id must be a non-empty string")
        row = {
            "job_id": new_id,
            "idempotency_key": idempotency_key,
            "source_uri": source_uri,
            "file_type": _opt_text(file_type, "file_type"),
            "status": JobStatus.PENDING.value,
            "progress": 0.0,
            "attempts": 0,
            "options": _dumps(options, "options"),
            "callback_url": _opt_text(callback_url, "callback_url"),
            "metadata": _dumps(metadata, "metadata"),
            "trace_id": _opt_text(trace_id, "trace_id"),
            "reprocess_count": 0,
        }
        now = _utcnow()
        row["created_at"] = row["updated_at"] = self._b.encode_ts(now)
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._session(write=True) as cur:
            cur.execute(
                f"INSERT INTO cad_jobs ({columns}) VALUES ({marks}) ON CONFLICT DO NOTHING",
                list(row.values()))
            created = cur.rowcount == 1
            if created:
                self._add_event(cur, new_id, now, None, JobStatus.PENDING.value, None,
                                {"event": "created", "trace_id": trace_id})
            job = self._fetch(cur, "idempotency_key = ?", (idempotency_key,))
        if job is None:
            raise InvalidInputError(
                f"job id {new_id} is already used by a job with another idempotency key",
                subcode="JOB_ID_CONFLICT", details={"job_id": new_id})
        return job, created

    def get(self, job_id: str) -> Job | None:
        """The job with that id, or None.

        Raises:
            NetworkError: the database is unreachable (``LEDGER_UNAVAILABLE``).
            StorageError: another database error (``LEDGER_ERROR``).
        """
        with self._session() as cur:
            return self._fetch(cur, "job_id = ?", (job_id,))

    def find(self, idempotency_key: str) -> Job | None:
        """The job holding that idempotency key, or None.

        Raises:
            NetworkError: the database is unreachable (``LEDGER_UNAVAILABLE``).
            StorageError: another database error (``LEDGER_ERROR``).
        """
        with self._session() as cur:
            return self._fetch(cur, "idempotency_key = ?", (idempotency_key,))

    def list_recent(self, limit: int = 20, status: JobStatus | str | None = None) -> list[Job]:
        """The newest jobs first (by ``created_at``), optionally of one status.

        Args:
            limit: at most this many jobs (>= 1).
            status: only jobs in this status.

        Returns:
            Jobs, newest first.

        Raises:
            ValueError: a bad limit or status.
            NetworkError: the database is unreachable (``LEDGER_UNAVAILABLE``).
            StorageError: another database error (``LEDGER_ERROR``).
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an int >= 1, got {limit!r}")
        where, params = "", []
        if status is not None:
            where, params = " WHERE status = ?", [_status(status).value]
        with self._session() as cur:
            cur.execute(f"{self._select}{where} ORDER BY created_at DESC, job_id DESC LIMIT ?",
                        [*params, limit])
            return [self._row_to_job(row) for row in cur.fetchall()]

    def events(self, job_id: str) -> list[JobEvent]:
        """The audit trail of a job, oldest first (the first event is its creation).

        Raises:
            NetworkError: the database is unreachable (``LEDGER_UNAVAILABLE``).
            StorageError: another database error (``LEDGER_ERROR``).
        """
        with self._session() as cur:
            cur.execute(f"SELECT {', '.join(_EVENT_COLUMNS)} FROM cad_job_events "
                        "WHERE job_id = ? ORDER BY event_id", (job_id,))
            rows = cur.fetchall()
        out = []
        for event_id, jid, at, from_status, to_status, stage, detail in rows:
            at_dt = self._b.decode_ts(at)
            assert at_dt is not None
            out.append(JobEvent(int(event_id), jid, at_dt,
                                JobStatus(from_status) if from_status else None,
                                JobStatus(to_status), stage, _loads(detail)))
        return out

    def transition(
        self,
        job_id: str,
        to_status: JobStatus | str,
        *,
        owner: str | None = None,
        expect_from: Iterable[JobStatus | str] | JobStatus | str | None = None,
        **fields: Any,
    ) -> Job:
        """Change a job's status atomically, under a lock on its row.

        Rules (see :data:`ALLOWED_TRANSITIONS`):

        * going to RUNNING sets ``flow_run_id = owner``, ``started_at``, clears
          ``finished_at`` and increments ``attempts``; RUNNING -> RUNNING is the re-claim
          by the same owner (attempts incremented), refused for another (or no) owner;
        * leaving RUNNING needs ``owner`` to equal the row's ``flow_run_id`` when ``owner``
          is given (``owner=None`` is an operator override);
        * ``expect_from`` further restricts the current status;
        * REPROCESSING increments ``reprocess_count`` (unless given) and clears
          ``finished_at``; SUCCESS, FAILURE and DLQ set ``finished_at``; SUCCESS also sets
          ``progress`` to 100 and clears the error fields unless they are given.

        Every applied change appends a ``cad_job_events`` row in the same transaction.

        Args:
            job_id: the job.
            to_status: the wanted status.
            owner: id of the flow run asking.
            expect_from: the allowed current statuses (one or several).
            **fields: ``stage``, ``progress`` (clamped to 0..100), ``error_code``,
                ``error_message`` (truncated to 10,000 characters), ``result_uri``,
                ``preview_uri``, ``file_type``, ``source_sha256``, ``metadata``
                (replaces the stored object), ``reprocess_count``.

        Returns:
            The job as stored after the change.

        Raises:
            TransitionRefused: the change is not allowed now; nothing was written.
            JobNotFound: no such job.
            TypeError: an unknown field or a value of the wrong type.
            ValueError: an unknown status or a bad field value.
            NetworkError: the database is unreachable (``LEDGER_UNAVAILABLE``).
            StorageError: another database error (``LEDGER_ERROR``).
        """
        target = _status(to_status)
        expected: frozenset[JobStatus] | None = None
        if expect_from is not None:
            items = [expect_from] if isinstance(expect_from, str) else list(expect_from)
            expected = frozenset(_status(s) for s in items)
        changes = _clean_fields(fields)
        with self._session(write=True) as cur:
            job = self._fetch(cur, "job_id = ?", (job_id,), lock=True)
            if job is None:
                raise JobNotFound(job_id)
            reason = _refusal(job.status, target, owner, job.flow_run_id, expected)
            if reason is not None:
                raise TransitionRefused(job_id, job.status, target, owner, reason)
            now = _utcnow()
            values: dict[str, Any] = {"status": target.value, "updated_at": now}
            if target is JobStatus.RUNNING:
                values.update(flow_run_id=owner, started_at=now, finished_at=None,
                              attempts=job.attempts + 1)
            elif target is JobStatus.REPROCESSING:
                values.update(reprocess_count=job.reprocess_count + 1, finished_at=None)
            elif target in FINISHED_STATUSES:
                values["finished_at"] = now
            if target is JobStatus.SUCCESS:
                values.update(progress=100.0, error_code=None, error_message=None)
            values.update(changes)
            encoded = {k: (self._b.encode_ts(v) if k in _TS_COLUMNS else v)
                       for k, v in values.items()}
            cur.execute(
                f"UPDATE cad_jobs SET {', '.join(f'{k} = ?' for k in encoded)} "
                "WHERE job_id = ?", [*encoded.values(), job_id])
            self._add_event(
                cur, job_id, now, job.status.value, target.value,
                values.get("stage", job.stage),
                {"owner": owner,
                 "attempts": values.get("attempts"),
                 "reprocess_count": values.get("reprocess_count"),
                 "error_code": values.get("error_code"),
                 "fields": sorted(changes) or None})
            updated = self._fetch(cur, "job_id = ?", (job_id,))
        assert updated is not None
        return updated

    def update_progress(
        self, job_id: str, stage: str | None, progress: float, *, owner: str | None = None
    ) -> bool:
        """Record the stage and progress of a RUNNING job (no event row is written).

        Args:
            job_id: the job.
            stage: current stage name (None keeps the stored one).
            progress: percent done, clamped to 0..100.
            owner: when given, the row's ``flow_run_id`` must match.

        Returns:
            True when the row was updated; False when the job is not RUNNING, belongs to
            another flow run or does not exist (a lost race is not an error).

        Raises:
            ValueError: progress is NaN.
            NetworkError: the database is unreachable (``LEDGER_UNAVAILABLE``).
            StorageError: another database error (``LEDGER_ERROR``).
        """
        value = _check_progress(progress)
        sql = ("UPDATE cad_jobs SET stage = COALESCE(?, stage), progress = ?, updated_at = ? "
               "WHERE job_id = ? AND status = ?")
        params: list[Any] = [_opt_text(stage, "stage"), value, self._b.encode_ts(_utcnow()),
                             job_id, JobStatus.RUNNING.value]
        if owner is not None:
            sql += " AND flow_run_id = ?"
            params.append(owner)
        with self._session() as cur:
            cur.execute(sql, params)
            return cur.rowcount == 1

    def delete_finished_before(self, cutoff: datetime) -> int:
        """Delete SUCCESS/FAILURE/DLQ jobs finished before ``cutoff``, with their events.

        Args:
            cutoff: a timezone-aware datetime.

        Returns:
            How many jobs were deleted.

        Raises:
            ValueError: ``cutoff`` is naive.
            NetworkError: the database is unreachable (``LEDGER_UNAVAILABLE``).
            StorageError: another database error (``LEDGER_ERROR``).
        """
        if not isinstance(cutoff, datetime) or cutoff.tzinfo is None:
            raise ValueError("cutoff must be a timezone-aware datetime")
        statuses = sorted(s.value for s in FINISHED_STATUSES)
        marks = ", ".join("?" for _ in statuses)
        condition = f"status IN ({marks}) AND finished_at < ?"
        params = [*statuses, self._b.encode_ts(cutoff)]
        with self._session(write=True) as cur:
            # the events go first (explicitly, on top of ON DELETE CASCADE), same transaction
            cur.execute("DELETE FROM cad_job_events WHERE job_id IN "
                        f"(SELECT job_id FROM cad_jobs WHERE {condition})", params)
            cur.execute(f"DELETE FROM cad_jobs WHERE {condition}", params)
            return cur.rowcount


# --------------------------------------------------------------------------- factory


def open_ledger(
    dsn: str,
    *,
    pool_size: int = 4,
    pool_timeout: float = 30.0,
    connect_timeout: float = 5.0,
    busy_timeout: float = 10.0,
    statement_timeout: float = 30.0,
) -> JobLedger:
    """Open the job ledger at ``dsn`` and check that it can be reached.

    Args:
        dsn: ``postgresql://user@host:port/db`` (``postgres://`` too) or
            ``sqlite:///abs/path.sqlite3`` / ``sqlite:///:memory:``.
        pool_size: connections shared by the threads (``:memory:`` always uses 1).
        pool_timeout: seconds a call waits for a free connection.
        connect_timeout: PostgreSQL connect timeout in seconds (libpq minimum 2), unless the
            DSN sets ``connect_timeout`` itself.
        busy_timeout: SQLite seconds to wait for a locked database.
        statement_timeout: PostgreSQL ``statement_timeout`` in seconds (0: none).

    Returns:
        The ledger (call :meth:`JobLedger.migrate` before first use of a new database).

    Raises:
        ValueError: an unsupported or malformed DSN, or a bad pool size.
        NetworkError: the database cannot be reached (``LEDGER_UNAVAILABLE``).
        StorageError: the SQLite folder cannot be created (``LEDGER_ERROR``).
    """
    if not isinstance(dsn, str):
        raise ValueError("dsn must be a string")
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        raise ValueError(f"pool_size must be an int >= 1, got {pool_size!r}")
    backend: _Backend
    if dsn.startswith(("postgresql://", "postgres://")):
        backend = _PostgresBackend(dsn, connect_timeout, statement_timeout)
    elif dsn.startswith("sqlite:///"):
        rest = dsn[len("sqlite:///"):]
        if rest == ":memory:":
            path, pool_size = ":memory:", 1
        elif re.match(r"^[A-Za-z]:[\\/]", rest):  # sqlite:///C:/dir/jobs.sqlite3
            path = rest
        elif rest.strip("/"):
            path = "/" + rest.lstrip("/")  # sqlite:///abs and sqlite:////abs alike
        else:
            raise ValueError(f"sqlite DSN without a file path: {dsn!r}")
        backend = _SqliteBackend(path, busy_timeout)
    else:
        scheme = dsn.split(":", 1)[0] if ":" in dsn else dsn[:20]
        raise ValueError(
            f"unsupported ledger DSN scheme {scheme!r}: use postgresql://... or sqlite:///...")
    ledger = JobLedger(backend, pool_size=pool_size, pool_timeout=pool_timeout)
    conn = ledger._pool.acquire()  # fail fast on an unreachable database
    ledger._pool.release(conn)
    return ledger
