"""Shared fixtures: the real-drawing corpus, the glTF validator, drawing factories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.gltf_validator import assert_valid_glb

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("CAD2GLTF_CORPUS", REPO.parent / "shared" / "corpus"))


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """``../shared/corpus``: real drawings nobody here wrote. Missing corpus = failure."""
    if not (CORPUS / "dxf").is_dir():
        pytest.fail(f"the drawing corpus is missing at {CORPUS} (set CAD2GLTF_CORPUS)")
    return CORPUS


@pytest.fixture
def valid_glb():
    """Check GLB bytes or a path with the Khronos validator; returns the report."""
    return assert_valid_glb


# --------------------------------------------------------------------------- PostgreSQL

PG_ADMIN_DSN = os.environ.get(
    "CAD2GLTF_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_dsn():
    """DSN of a throw-away database ``cad2gltf_test_<random>`` on the local PostgreSQL.

    The database is created through the maintenance database of ``CAD2GLTF_TEST_PG_DSN``
    (default ``postgresql://postgres@127.0.0.1:5432/postgres``) and dropped at the end of
    the session. An unreachable server is a failure, never a skip.
    """
    import uuid
    from urllib.parse import urlsplit

    try:
        import psycopg2
    except ImportError as exc:
        pytest.fail(f"psycopg2 is needed for the PostgreSQL tests: {exc}")
    name = f"cad2gltf_test_{uuid.uuid4().hex[:12]}"

    def admin():
        try:
            conn = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=5)
        except psycopg2.OperationalError as exc:
            pytest.fail(f"PostgreSQL is unreachable at {PG_ADMIN_DSN} (set "
                        f"CAD2GLTF_TEST_PG_DSN): {str(exc).strip()}")
        conn.autocommit = True
        return conn

    conn = admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    yield urlsplit(PG_ADMIN_DSN)._replace(path=f"/{name}").geturl()
    conn = admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


# --------------------------------------------------------------------------- S3 (moto)


@pytest.fixture(scope="session")
def moto_s3():
    """A real moto S3 HTTP server on 127.0.0.1 for the whole session.

    Yields a :class:`tests.s3.MotoS3`: ``endpoint_url``, ``key``/``secret``
    (``"testing"``), ``region``, ``client`` (boto3) and ``make_bucket(name=None)``
    (a unique name when none is given: tests share the server, not buckets).
    """
    from tests.s3 import MotoS3

    server = MotoS3.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def flaky_proxy(moto_s3):
    """Factory of flaky reverse proxies in front of an S3 endpoint (moto's by default).

    ``flaky_proxy(upstream_url=None, fail_first=2, methods=("PUT",), status=503,
    mode="status"|"refuse", code=None)`` returns a started :class:`tests.s3.FlakyProxy`
    (``endpoint_url``, ``requests``, ``matched``, ``failed``, ``count(method)``); all are
    stopped when the test ends.
    """
    from tests.s3 import FlakyProxy

    started: list[FlakyProxy] = []

    def make(upstream_url: str | None = None, fail_first: int = 2,
             methods: tuple[str, ...] = ("PUT",), status: int = 503,
             mode: str = "status", code: str | None = None) -> FlakyProxy:
        proxy = FlakyProxy(upstream_url or moto_s3.endpoint_url, fail_first=fail_first,
                           methods=methods, status=status, mode=mode, code=code)
        started.append(proxy.start())
        return proxy

    try:
        yield make
    finally:
        for proxy in started:
            proxy.stop()


@pytest.fixture
def broker(monkeypatch):
    """A channel to the real RabbitMQ on 127.0.0.1 with this test's own exchange and
    queue names (deleted afterwards); fails, never skips, when RabbitMQ is down."""

    from deployments.local import LOCAL_AMQP_URL, amqp_names
    from tasks.amqp import connect
    from tasks.runtime import reset_runtime

    names = amqp_names("t")
    for k, v in names.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("CAD2GLTF_AMQP_URL", LOCAL_AMQP_URL)
    reset_runtime()
    try:
        conn = connect()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"RabbitMQ is not reachable on 127.0.0.1:5672: {exc}")
    channel = conn.channel()
    channel.confirm_delivery()
    yield channel, names
    from blocks.settings import PipelineSettings
    from tasks.amqp import delete_topology

    delete_topology(channel, PipelineSettings())  # the names are still in the environment
    conn.close()
    reset_runtime()


def fresh_schema_dsn(pg_dsn: str, prefix: str = "t") -> str:
    """A DSN whose search_path is a new, empty schema of the test database."""
    from deployments.local import fresh_schema_dsn as make

    return make(pg_dsn, prefix)


@pytest.fixture
def callback_server():
    """A local HTTP receiver for job callbacks: ``.url`` and the JSON bodies it got."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    class Receiver:
        url = f"http://127.0.0.1:{server.server_port}/callback"

    receiver = Receiver()
    receiver.received = received
    yield receiver
    server.shutdown()
