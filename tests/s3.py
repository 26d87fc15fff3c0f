"""S3 test helpers: a real moto HTTP server and a flaky reverse proxy in front of it.

Both listen on 127.0.0.1 only, on free ports, and stop cleanly. ``tests/conftest.py``
wires them as the ``moto_s3`` (session) and ``flaky_proxy`` (function) fixtures; they
can also be used directly::

    with MotoS3.start() as s3:
        s3.make_bucket("results")
        with FlakyProxy(s3.endpoint_url, fail_first=2) as proxy:
            ...  # point a client at proxy.endpoint_url

The proxy answers the first ``fail_first`` requests whose method is in ``methods``
with ``status`` and an S3-style XML error body (``mode="status"``), or drops the
connection without answering (``mode="refuse"``); everything else is forwarded to the
upstream unchanged, including the ``Host`` header, so SigV4 signatures stay intact.
"""

from __future__ import annotations

import http.client
import logging
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "TEST_KEY",
    "TEST_REGION",
    "TEST_SECRET",
    "FlakyProxy",
    "MotoS3",
    "free_port",
    "unused_endpoint",
]

TEST_KEY = "testing"
TEST_SECRET = "testing"
TEST_REGION = "us-east-1"

# S3 error codes a failing answer carries by default, per status
_DEFAULT_CODES = {
    400: "InvalidRequest",
    403: "AccessDenied",
    404: "NoSuchKey",
    429: "SlowDown",
    500: "InternalError",
    503: "SlowDown",
}
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "expect", "content-length",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unused_endpoint() -> str:
    """An ``http://127.0.0.1:<port>`` URL where connections are refused."""
    return f"http://127.0.0.1:{free_port()}"


# --------------------------------------------------------------------------- moto


@dataclass
class MotoS3:
    """A running ``moto.server.ThreadedMotoServer`` and a boto3 client for it."""

    endpoint_url: str
    key: str = TEST_KEY
    secret: str = TEST_SECRET
    region: str = TEST_REGION
    server: Any = field(default=None, repr=False)
    _client: Any = field(default=None, repr=False)

    @classmethod
    def start(cls, port: int | None = None) -> MotoS3:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        port = port or free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        s3 = cls(endpoint_url=f"http://127.0.0.1:{port}", server=server)
        s3.client.list_buckets()  # wait until it answers
        return s3

    @classmethod
    def start_process(cls, port: int | None = None, timeout: float = 30.0) -> MotoS3:
        """Run moto in a child process instead (for tests that measure this process's
        memory, which an in-process server would distort)."""
        port = port or free_port()
        proc = subprocess.Popen(
            [sys.executable, "-c", "from moto.server import main; main()",
             "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        s3 = cls(endpoint_url=f"http://127.0.0.1:{port}", server=proc)
        deadline = time.monotonic() + timeout
        while True:
            try:
                s3.client.list_buckets()
                return s3
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    s3.stop()
                    raise RuntimeError("the moto server process did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        if isinstance(server, subprocess.Popen):
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
        else:
            server.stop()

    def __enter__(self) -> MotoS3:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def client(self) -> Any:
        """A boto3 S3 client for the server (its own retries off, short timeouts)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region,
                aws_access_key_id=self.key, aws_secret_access_key=self.secret,
                config=Config(retries={"max_attempts": 1, "mode": "standard"},
                              connect_timeout=5, read_timeout=30))
        return self._client

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a unique name when none is given) and return its name."""
        name = name or f"t-{uuid.uuid4().hex[:16]}"
        try:
            self.client.create_bucket(Bucket=name)
        except self.client.exceptions.BucketAlreadyOwnedByYou:
            pass
        return name

    def store_kwargs(self, base_url: str, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for ``tasks.storage.ObjectStore`` pointing at this server."""
        return {"base_url": base_url, "endpoint_url": self.endpoint_url, "key": self.key,
                "secret": self.secret, "region": self.region, **extra}


# --------------------------------------------------------------------------- proxy


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, proxy: FlakyProxy) -> None:
        self.proxy = proxy
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections give up after this
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_GET

    # -- body ---------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers, up to the empty line
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)  # CRLF after each chunk
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # -- one request --------------------------------------------------------------
    def _handle(self) -> None:
        proxy = self.server.proxy
        fail = proxy._should_fail(self.command)
        if fail and proxy.mode == "refuse":
            proxy._record(self.command, self.path, None)
            # drop the connection without an answer (RST, like a crashed peer)
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
            except OSError:
                pass
            return
        body = self._read_body()
        if fail:
            self._answer_error(proxy)
            return
        self._forward(proxy, body)

    def _answer_error(self, proxy: FlakyProxy) -> None:
        code = proxy.code or _DEFAULT_CODES.get(proxy.status, "ServiceUnavailable")
        payload = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>flaky proxy: injected {proxy.status}"
            f"</Message><Resource>{self.path.split('?', 1)[0]}</Resource>"
            f"<RequestId>flaky-{uuid.uuid4().hex[:8]}</RequestId></Error>"
        ).encode()
        proxy._record(self.command, self.path, proxy.status)
        self.send_response(proxy.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amz-request-id", "flaky")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _forward(self, proxy: FlakyProxy, body: bytes) -> None:
        up = http.client.HTTPConnection(proxy._up_host, proxy._up_port, timeout=60)
        try:
            up.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    up.putheader(name, value)
            if body or self.command in ("PUT", "POST"):
                up.putheader("Content-Length", str(len(body)))
            up.endheaders(body if body else None)
            resp = up.getresponse()
            # recorded before answering: once the client has its answer, counts are final
            proxy._record(self.command, self.path, resp.status)
            self.send_response_only(resp.status, resp.reason)
            length = resp.getheader("Content-Length")
            data = None
            if length is None and self.command != "HEAD":
                data = resp.read()  # upstream was chunked: buffer and re-frame
                length = str(len(data))
            for name, value in resp.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                if data is not None:
                    self.wfile.write(data)
                else:
                    while chunk := resp.read(1 << 16):
                        self.wfile.write(chunk)
        finally:
            up.close()


class FlakyProxy:
    """A threaded reverse proxy that fails the first N matching requests.

    Args:
        upstream_url: where everything else goes (the moto endpoint).
        fail_first: how many matching requests fail.
        methods: the HTTP methods that count as matching.
        status: the status of a failing answer (``mode="status"``).
        mode: ``"status"`` answers with ``status`` and an S3 XML error body;
            ``"refuse"`` drops the connection without answering.
        code: the S3 error code in the body (default: from the status, ``SlowDown``
            for 503).

    Attributes:
        requests: all requests seen, as ``(method, path, status or None)``.
        matched: how many requests matched ``methods``.
        failed: how many of them were failed on purpose.
    """

    def __init__(self, upstream_url: str, *, fail_first: int = 2,
                 methods: tuple[str, ...] | list[str] = ("PUT",), status: int = 503,
                 mode: str = "status", code: str | None = None) -> None:
        if mode not in ("status", "refuse"):
            raise ValueError(f"mode must be 'status' or 'refuse', not {mode!r}")
        parts = urlsplit(upstream_url)
        self.upstream_url = upstream_url
        self._up_host = parts.hostname or "127.0.0.1"
        self._up_port = parts.port or 80
        self.fail_first = fail_first
        self.methods = {m.upper() for m in methods}
        self.status = status
        self.mode = mode
        self.code = code
        self.requests: list[tuple[str, str, int | None]] = []
        self.matched = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------
    def start(self) -> FlakyProxy:
        self._server = _ProxyServer(self)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="flaky-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.close_all()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FlakyProxy:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        return int(self._server.server_address[1])

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    url = endpoint_url

    # -- counting -----------------------------------------------------------------
    def _should_fail(self, method: str) -> bool:
        with self._lock:
            if method.upper() not in self.methods:
                return False
            self.matched += 1
            if self.failed < self.fail_first:
                self.failed += 1
                return True
            return False

    def _record(self, method: str, path: str, status: int | None) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    def count(self, method: str | None = None) -> int:
        """How many requests (of one method) went through or were failed."""
        with self._lock:
            return sum(1 for m, _, _ in self.requests if method is None or m == method.upper())
