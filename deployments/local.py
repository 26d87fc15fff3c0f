"""A throw-away local Prefect server (and workers) for tests and benchmarks.

    with LocalPrefect(tmp_dir, extra_env, database="sqlite") as stack:
        stack.env            # environment pointing at the server
        stack.start_worker("cad-cpu", "cad2gltf-prefork")

Each stack has its own ``PREFECT_HOME`` and port, and its own database: SQLite in that
home (Prefect's embedded default), or with ``database="postgres"`` a fresh PostgreSQL
database on 127.0.0.1 (dropped afterwards), as a production server would use -- under
concurrent runs SQLite's single writer makes the API itself the bottleneck (measured in
benchmarks/e2e.py: publish -> SUCCESS p50 5.9 s on SQLite, 1.7 s on PostgreSQL). Runs of
the test suite and benchmarks never share state. Processes are stopped with SIGTERM, then
SIGKILL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["LocalPrefect", "amqp_names", "drop_schema", "free_port", "fresh_schema_dsn", "pipeline_env",
           "wait_http"]

REPO = Path(__file__).resolve().parent.parent
LOCAL_PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
LOCAL_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def fresh_schema_dsn(pg_dsn: str = LOCAL_PG_DSN, prefix: str = "t") -> str:
    """A DSN whose search_path is a new, empty schema of ``pg_dsn``'s database (a ledger
    of its own for one test or benchmark run)."""
    import uuid
    from urllib.parse import urlencode, urlsplit

    import psycopg2

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(pg_dsn, connect_timeout=5)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
    conn.close()
    parts = urlsplit(pg_dsn)
    return parts._replace(query=urlencode({"options": f"-csearch_path={schema}"})).geturl()


def drop_schema(dsn: str) -> None:
    """Drop the schema a :func:`fresh_schema_dsn` DSN points at (with its tables)."""
    from urllib.parse import parse_qs, urlsplit

    import psycopg2

    parts = urlsplit(dsn)
    options = parse_qs(parts.query).get("options", [""])[0]
    schema = options.partition("search_path=")[2].split()[0] if "search_path=" in options \
        else ""
    if not schema.replace("_", "").isalnum():
        raise ValueError(f"not a fresh-schema DSN: {dsn!r}")
    conn = psycopg2.connect(parts._replace(query="").geturl(), connect_timeout=5)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    conn.close()


def amqp_names(prefix: str, tag: str | None = None) -> dict[str, str]:
    """RabbitMQ exchange and queue names of their own (``CAD2GLTF_AMQP_*``), so that runs
    on the shared local broker never see each other's messages."""
    import uuid

    tag = tag or uuid.uuid4().hex[:8]
    return {"CAD2GLTF_AMQP_EXCHANGE": f"{prefix}-{tag}",
            "CAD2GLTF_AMQP_QUEUE": f"{prefix}-{tag}.q",
            "CAD2GLTF_AMQP_DEAD_LETTER_EXCHANGE": f"{prefix}-{tag}.dlx",
            "CAD2GLTF_AMQP_DEAD_LETTER_QUEUE": f"{prefix}-{tag}.dlq"}


def pipeline_env(tmp: Path, prefix: str, pg_dsn: str = LOCAL_PG_DSN) -> dict[str, str]:
    """The pipeline's environment for one run of a test or benchmark: home and file
    store under ``tmp``, a fresh ledger schema on the local PostgreSQL, own AMQP names on
    the local RabbitMQ."""
    return {"CAD2GLTF_HOME": str(tmp / "home"),
            "CAD2GLTF_STORAGE_URL": (tmp / "store").as_uri(),
            "CAD2GLTF_LEDGER_DSN": fresh_schema_dsn(pg_dsn, prefix),
            "CAD2GLTF_AMQP_URL": LOCAL_AMQP_URL, **amqp_names(prefix)}


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    """Wait until ``url`` answers 200.

    Raises:
        RuntimeError: the process exited, or the URL did not answer in time.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


class LocalPrefect:
    """A Prefect server on a free port with its own home; workers started on demand."""

    def __init__(self, home: Path, env: dict[str, str] | None = None, *,
                 database: str = "sqlite",
                 postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432") -> None:
        if database not in ("sqlite", "postgres"):
            raise ValueError(f"database must be sqlite or postgres, not {database!r}")
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        base.update({
            "PREFECT_HOME": str(self.home / "prefect"),
            "PREFECT_API_URL": f"http://127.0.0.1:{self.port}/api",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "CAD2GLTF_APP_DIR": str(REPO),
        })
        self.postgres_dsn = postgres_dsn
        self.database_name: str | None = None
        if database == "postgres":
            self.database_name = f"prefect_{self.port}_{os.getpid()}"
            base["PREFECT_API_DATABASE_CONNECTION_URL"] = (
                f"postgresql+asyncpg://{postgres_dsn.split('://', 1)[1]}/{self.database_name}")
        base.update(env or {})
        self.env = base
        self.logs = self.home / "logs"
        self.logs.mkdir(exist_ok=True)
        self.procs: list[subprocess.Popen[Any]] = []
        self.server: subprocess.Popen[Any] | None = None

    @property
    def api_url(self) -> str:
        return self.env["PREFECT_API_URL"]

    def _admin(self, sql: str) -> None:
        import psycopg2

        conn = psycopg2.connect(f"{self.postgres_dsn}/postgres")
        try:
            conn.autocommit = True
            conn.cursor().execute(sql)
        finally:
            conn.close()

    def __enter__(self) -> LocalPrefect:
        if self.database_name:
            self._admin(f"CREATE DATABASE {self.database_name}")
        self.server = self._popen([sys.executable, "-m", "prefect", "server", "start",
                                   "--host", "127.0.0.1", "--port", str(self.port)], "server")
        try:
            wait_http(f"http://127.0.0.1:{self.port}/api/health", 120, self.server)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self, name: str, cmd: list[str],
              env: dict[str, str] | None = None) -> subprocess.Popen[Any]:
        """Start another process of the stack (a listener...), logged to ``<name>.log``
        and stopped with the stack."""
        return self._popen(cmd, name, {**self.env, **(env or {})})

    def _popen(self, cmd: list[str], log_name: str,
               env: dict[str, str] | None = None) -> subprocess.Popen[Any]:
        log = open(self.logs / f"{log_name}.log", "ab")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(cmd, env=env or self.env, cwd=self.home, stdout=log,
                                stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        """Run ``python -m prefect ARGS`` against the server; return its stdout."""
        out = subprocess.run([sys.executable, "-m", "prefect", *args], env=self.env,
                             cwd=REPO, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def start_worker(self, pool: str, worker_type: str, *, name: str | None = None,
                     env: dict[str, str] | None = None,
                     extra_args: tuple[str, ...] = ()) -> subprocess.Popen[Any]:
        """Start ``prefect worker start`` for ``pool`` (created when missing)."""
        name = name or f"{worker_type}-{len(self.procs)}"
        cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool,
               "--type", worker_type, "--name", name, *extra_args]
        return self._popen(cmd, f"worker-{name}", {**self.env, **(env or {})})

    def wait_for_log(self, name: str, text: str, timeout: float = 180.0) -> None:
        """Wait until ``text`` appears in a process's log (e.g. a prefork worker's
        ``warm children ready``).

        Raises:
            TimeoutError: it did not appear in time (the log's tail is in the message).
        """
        deadline = time.monotonic() + timeout
        while text not in self.log_text(name):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not in the {name} log after {timeout:.0f} s:\n"
                                   f"{self.log_text(name)[-3000:]}")
            time.sleep(0.2)

    def log_text(self, name: str) -> str:
        """Contents of a log file (``server``, ``worker-<name>``)."""
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_process(self, proc: subprocess.Popen[Any], timeout: float = 30) -> int | None:
        """SIGTERM, wait, SIGKILL; return the exit code."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode

    def stop(self) -> None:
        for proc in reversed(self.procs):
            self.stop_process(proc, timeout=20)
        self.procs.clear()
        if self.database_name:
            self._admin(f"DROP DATABASE IF EXISTS {self.database_name} WITH (FORCE)")
            self.database_name = None
