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

__all__ = ["LocalPrefect", "free_port", "wait_http"]

REPO = Path(__file__).resolve().parent.parent


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
