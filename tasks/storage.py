"""Object storage over fsspec: ``file://`` folders and S3-compatible buckets (s3fs).

Plain Python, no Prefect: tasks build an :class:`ObjectStore` from the
``blocks.storage.ObjectStorage`` block (``ObjectStore(**block.store_kwargs())``) and
call it. Every failure leaves as a classified :class:`~cad2gltf.errors.ConversionError`
(see :func:`classify_storage_error`), so the tasks' retry policy and the ledger only
ever see the error taxonomy.

Keys and URLs
    A *key* is a relative ``/``-separated name under the store's ``base_url``
    (``results/job-1/model.glb``); it is checked with
    :func:`cad2gltf.validate.validate_filename` (no null bytes, control characters,
    ``..``/``.`` components or absolute paths). Methods that read (``exists``, ``size``,
    ``read_head``, ``download``, ``sha256``) also take a full URL: ``s3://bucket/key``
    (any bucket, on this store's endpoint and credentials), ``file:///abs/path`` or a
    plain absolute local path. ``delete`` takes a key or a URL with a scheme, never a
    bare local path.

Retries
    There is exactly one retry layer: Prefect's task retries. botocore's retries are
    off by default (``ObjectStore(max_attempts=1)``, passed to botocore as
    ``retries={"total_max_attempts": 1, "mode": "standard"}``: botocore's own
    ``max_attempts`` key counts *retries*, so ``{"max_attempts": 1}`` would still retry
    once) and s3fs's own retry loop (``retries=5``, which
    also retries ``SlowDown``) is always switched off (``fs.retries = 1``), so a 503 or
    a dropped connection reaches the caller at once as a transient error.

Atomicity
    A partial upload never appears under the final key.

    * ``file://``: the bytes go to ``<dir>/.<name>.<uuid>.part`` in the destination
      folder (same file system), are flushed and fsync'ed, then ``os.replace`` renames
      the file into place, which POSIX makes atomic. On any failure the part file is
      removed; readers see the old object or the new one, never a mix.
      :meth:`ObjectStore.list` hides part files left by a killed process.
    * ``s3://``: S3 creates an object only when a request completes. A small file is
      one ``PutObject`` with a ``Content-Length`` and a checksum (botocore sends
      ``x-amz-checksum-crc32``; over plain HTTP also a signed SHA-256 of the payload):
      a body cut short or corrupted is refused and nothing is written. A
      large file is a multipart upload: parts are invisible until
      ``CompleteMultipartUpload`` publishes the whole object at once, and s3fs aborts
      the upload on any failure. If even the abort fails (the network is down), the
      orphaned parts stay invisible; a bucket lifecycle rule
      ``AbortIncompleteMultipartUpload`` should reclaim them.

Errors (see :func:`classify_storage_error`)
    ==============================================  ==========================================
    missing source object (404, NoSuchKey, ENOENT)  ``InvalidInputError/NOT_FOUND`` permanent
    access denied, bad credentials, no such bucket  ``PermanentStorageError/ACCESS_DENIED``
    other refused requests (4xx)                    ``PermanentStorageError/REJECTED``
    5xx, throttling, resets, timeouts, ``OSError``  ``StorageError/UNAVAILABLE`` transient
    connection refused, host unreachable            ``NetworkError/STORAGE_UNREACHABLE``
    ==============================================  ==========================================

    :class:`PermanentStorageError` is a ``StorageError`` (code ``STORAGE_ERROR``) whose
    ``transient`` is ``False``; ``cad2gltf.errors.is_transient(exc)`` honours it because
    it reads the instance, and on a code string it knows ``ACCESS_DENIED`` and
    ``REJECTED`` (:data:`cad2gltf.errors.PERMANENT_SUBCODES`).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

import fsspec

from cad2gltf.errors import (
    ConversionError,
    InvalidInputError,
    NetworkError,
    StorageError,
    classify,
)
from cad2gltf.validate import validate_filename

__all__ = [
    "DEFAULT_CHUNK",
    "ObjectInfo",
    "ObjectStore",
    "PermanentStorageError",
    "classify_storage_error",
]

MiB = 1024 * 1024
DEFAULT_CHUNK = 8 * MiB
HEAD_BYTES = 64 * 1024
# S3 uploads: one PUT below 2 * part size, else multipart with this many parts in flight
UPLOAD_PART_SIZE = 8 * MiB
UPLOAD_CONCURRENCY = 2
PART_SUFFIX = ".part"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class PermanentStorageError(StorageError):
    """A storage failure that retrying will not fix (``transient = False``).

    Same ``STORAGE_ERROR`` code as :class:`~cad2gltf.errors.StorageError` (so the
    ledger and dashboards group them), but the instance says it is not worth a retry:
    access denied, bad credentials, a bucket that does not exist, a refused request.
    """

    transient = False


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object, as listed by :meth:`ObjectStore.list`."""

    key: str
    url: str
    size: int
    modified: datetime | None


# --------------------------------------------------------------------------- errors

# AWS error codes, by what they mean for us
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchVersion"})
_ACCESS_CODES = frozenset({
    "AccessDenied", "AccountProblem", "AllAccessDisabled", "AuthorizationHeaderMalformed",
    "ExpiredToken", "IllegalLocationConstraintException", "InvalidAccessKeyId",
    "InvalidBucketName", "InvalidSecurity", "InvalidToken", "NoSuchBucket", "NotSignedUp",
    "PermanentRedirect", "RequestTimeTooSkewed", "SignatureDoesNotMatch",
    "TokenRefreshRequired", "UnauthorizedAccess", "401", "403",
})
_TRANSIENT_CODES = frozenset({
    "BadDigest", "BandwidthLimitExceeded", "IncompleteBody", "InternalError",
    "OperationAborted", "PriorRequestNotComplete", "ProvisionedThroughputExceededException",
    "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException",
    "RequestTimeout", "RequestTimeoutException", "ServiceUnavailable", "SlowDown",
    "SlowDownRead", "SlowDownWrite", "Throttling", "ThrottlingException",
    "TooManyRequestsException", "XAmzContentSHA256Mismatch",
})
# botocore / aiohttp / fsspec exception class names, matched by name so that this module
# imports neither (a file:// store works without s3fs installed)
_NO_CREDENTIALS = frozenset({"NoCredentialsError", "PartialCredentialsError",
                             "NoRegionError"})
_CANNOT_CONNECT = frozenset({"ClientConnectorError", "ConnectionRefusedError", "gaierror"})
_TIMEOUTS = frozenset({"ReadTimeoutError", "ConnectTimeoutError", "ServerTimeoutError",
                       "FSTimeoutError", "TimeoutError", "timeout"})
_DROPPED = frozenset({"ConnectionClosedError", "ServerDisconnectedError", "ClientPayloadError",
                      "IncompleteRead", "ResponseParserError", "ConnectionError"})
# transport wrappers: "could not connect" when a connect failure is behind them, else
# "dropped"
_WRAPPERS = frozenset({"EndpointConnectionError", "HTTPClientError", "ClientOSError",
                       "ClientConnectionError", "ProxyConnectionError"})


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions behind it (``__cause__``, else ``__context__``)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(seen) < 16:
        seen.add(id(cur))
        yield cur
        if cur.__cause__ is not None:
            cur = cur.__cause__
        elif not cur.__suppress_context__:
            cur = cur.__context__
        else:
            cur = None


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _own_aws_error(err: BaseException) -> tuple[str, int | None] | None:
    """``(code, http_status)`` when ``err`` is a botocore ``ClientError``."""
    response = getattr(err, "response", None)
    if isinstance(response, dict) and isinstance(response.get("Error"), dict):
        code = str(response["Error"].get("Code") or "")
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return code, int(status) if status else None
    return None


def _aws_error(exc: BaseException) -> tuple[str, int | None] | None:
    """``(code, http_status)`` of the first botocore ``ClientError`` behind ``exc``."""
    for err in _chain(exc):
        found = _own_aws_error(err)
        if found is not None:
            return found
    return None


def _verdict(exc: BaseException) -> tuple[str, tuple[str, int | None] | None]:
    """What went wrong, decided by the first telling exception of the chain.

    Walking in order matters: an exception raised while another was being handled has
    that one as ``__context__`` (s3fs tries a listing after a 404 HEAD, for instance),
    and the older one must not decide. A plain ``OSError`` with an explicit
    ``__cause__`` is s3fs's translation of a botocore error: the cause decides.
    """
    chain = list(_chain(exc))
    for i, err in enumerate(chain):
        aws = _own_aws_error(err)
        if aws is not None:
            return "aws", aws
        names = _names(err)
        if names & _NO_CREDENTIALS:
            return "denied", None
        if names & _CANNOT_CONNECT:
            return "unreachable", None
        if names & _WRAPPERS:
            deeper: set[str] = set().union(*(_names(e) for e in chain[i + 1:]))
            return ("unreachable" if deeper & _CANNOT_CONNECT else "unavailable"), None
        if names & (_TIMEOUTS | _DROPPED):
            return "unavailable", None
        if err.__cause__ is not None:
            continue  # a translation (s3fs) or a wrapper: the cause knows better
        if isinstance(err, FileNotFoundError):
            return "not_found", None
        if isinstance(err, PermissionError):
            return "denied", None
        if isinstance(err, (IsADirectoryError, NotADirectoryError)):
            return "rejected", None
        if isinstance(err, OSError):
            return "unavailable", None
        break
    # nothing telling behind it: judge the exception itself
    if isinstance(exc, FileNotFoundError):
        return "not_found", None
    if isinstance(exc, PermissionError):
        return "denied", None
    if isinstance(exc, OSError):
        return "unavailable", None
    return "other", None


def classify_storage_error(exc: BaseException, *, op: str | None = None,
                           url: str | None = None) -> ConversionError:
    """Map a storage failure onto the error taxonomy.

    Args:
        exc: what fsspec, s3fs, botocore, aiohttp or the OS raised.
        op: the operation, for the message (``put``, ``download`` ...).
        url: the object concerned, for the message and ``details`` (never credentials).

    Returns:
        ``exc`` itself when already classified, else a new error:

        * a missing object (HTTP 404, ``NoSuchKey``, ``FileNotFoundError``):
          :class:`~cad2gltf.errors.InvalidInputError` ``NOT_FOUND`` (permanent);
        * access denied, bad or missing credentials, a bucket that does not exist or
          is elsewhere (401/403, ``NoSuchBucket``, ``PermanentRedirect``,
          ``PermissionError``): :class:`PermanentStorageError` ``ACCESS_DENIED``;
        * any other 4xx answer: :class:`PermanentStorageError` ``REJECTED``;
        * 5xx, 429, throttling (``SlowDown``), ``RequestTimeout``, corrupted transfers,
          dropped or reset connections, timeouts and other ``OSError``:
          :class:`~cad2gltf.errors.StorageError` ``UNAVAILABLE`` (transient);
        * a connection that cannot be opened (refused, unknown host, no route):
          :class:`~cad2gltf.errors.NetworkError` ``STORAGE_UNREACHABLE`` (transient);
        * anything else: :func:`cad2gltf.errors.classify` (``INTERNAL_ERROR``).
    """
    if isinstance(exc, ConversionError):
        return exc
    where = " ".join(p for p in (op, url) if p)
    prefix = f"{where}: " if where else ""
    details: dict[str, Any] = {k: v for k, v in (("op", op), ("url", url)) if v}
    detail = str(exc) or type(exc).__name__
    kind, aws = _verdict(exc)

    if kind == "aws" and aws is not None:
        code, status = aws
        details.update(aws_code=code, http_status=status)
        text = f"{prefix}{code or status}: {detail}"
        if code in _NOT_FOUND_CODES or (status == 404 and code not in _ACCESS_CODES):
            return InvalidInputError(f"{prefix}no such object", subcode="NOT_FOUND",
                                     details=details)
        if code in _ACCESS_CODES or status in (401, 403):
            return PermanentStorageError(text, subcode="ACCESS_DENIED", details=details)
        if code in _TRANSIENT_CODES or status is None or status >= 500 or status == 429:
            return StorageError(text, subcode="UNAVAILABLE", details=details)
        return PermanentStorageError(text, subcode="REJECTED", details=details)
    if kind == "not_found":
        return InvalidInputError(f"{prefix}no such object", subcode="NOT_FOUND",
                                 details=details)
    if kind == "denied":
        return PermanentStorageError(f"{prefix}{detail}", subcode="ACCESS_DENIED",
                                     details=details)
    if kind == "rejected":
        return PermanentStorageError(f"{prefix}{detail}", subcode="REJECTED", details=details)
    if kind == "unreachable":
        return NetworkError(f"{prefix}cannot connect to the object store: {detail}",
                            subcode="STORAGE_UNREACHABLE", details=details)
    if kind == "unavailable":
        return StorageError(f"{prefix}{type(exc).__name__}: {detail}", subcode="UNAVAILABLE",
                            details=details)
    return classify(exc)


@contextmanager
def _classified(op: str, url: str | None) -> Iterator[None]:
    try:
        yield
    except ConversionError:
        raise
    except Exception as exc:
        raise classify_storage_error(exc, op=op, url=url) from exc


# --------------------------------------------------------------------------- paths


def _bad_url(url: str, why: str) -> InvalidInputError:
    return InvalidInputError(f"URL refused: {why}", subcode="BAD_URL",
                             details={"url": repr(url)[:300]})


def _check_local_path(path: str, url: str) -> str:
    if "\x00" in path:
        raise _bad_url(url, "contains a null byte")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise _bad_url(url, "contains control characters")
    if not path.startswith("/"):
        raise _bad_url(url, "not an absolute path")
    if any(part in ("..", ".") for part in path.split("/")):
        raise _bad_url(url, "contains a relative path component ('..' or '.')")
    return path


def _file_url_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise _bad_url(url, "a file:// URL must be file:///absolute/path")
    return _check_local_path(unquote(parts.path), url)


def _split_s3_url(url: str) -> tuple[str, str]:
    rest = url[len("s3://"):]
    bucket, _, key = rest.partition("/")
    if not bucket or "\x00" in bucket or any(ch in bucket for ch in "?#\\"):
        raise _bad_url(url, "no valid bucket")
    return bucket, key


class ObjectStore:
    """Objects under one base URL, ``file:///abs/dir`` or ``s3://bucket/prefix``.

    Args:
        base_url: where keys live.
        endpoint_url: S3-compatible endpoint (MinIO, moto ...); None for AWS.
        key, secret, token: S3 credentials; None lets botocore find them (env, profile).
        region: S3 region name.
        max_attempts: botocore attempts per request, the first included (botocore's
            ``total_max_attempts``); 1 (no botocore retries) because
            Prefect task retries are the single retry layer.

    Raises:
        ValueError: a base URL that is neither ``file:///...`` nor ``s3://bucket/...``
            (a configuration error, not a bad input).
    """

    def __init__(self, base_url: str, *, endpoint_url: str | None = None,
                 key: str | None = None, secret: str | None = None,
                 token: str | None = None, region: str | None = None,
                 max_attempts: int = 1) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.endpoint_url = endpoint_url
        self.region = region
        self.max_attempts = max_attempts
        self.__credentials = (key, secret, token)  # name-mangled; never in repr
        self._s3: Any = None
        self._s3_lock = threading.Lock()
        self._local = fsspec.filesystem("file", auto_mkdir=True)

        base = base_url.strip()
        try:
            if base.startswith("file://"):
                self.protocol = "file"
                root = _file_url_path(base).rstrip("/") or "/"
                self._root = root
                self.base_url = Path(root).as_uri()
            elif base.startswith("s3://"):
                self.protocol = "s3"
                bucket, prefix = _split_s3_url(base)
                prefix = prefix.strip("/")
                if prefix:
                    validate_filename(prefix, allow_dirs=True)
                self._root = f"{bucket}/{prefix}" if prefix else bucket
                self.base_url = f"s3://{self._root}"
            else:
                raise ValueError("base_url must be file:///abs/dir or s3://bucket/prefix")
        except InvalidInputError as exc:
            raise ValueError(f"bad base_url {base_url!r}: {exc.message}") from exc

    def __repr__(self) -> str:
        endpoint = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"ObjectStore({self.base_url!r}{endpoint})"

    # -- file systems --------------------------------------------------------------
    @property
    def s3(self) -> Any:
        """The ``s3fs.S3FileSystem`` with this store's endpoint and credentials."""
        with self._s3_lock:
            return self._s3 or self._make_s3()

    def _make_s3(self) -> Any:
        import s3fs

        key, secret, token = self.__credentials
        client_kwargs = {k: v for k, v in (("endpoint_url", self.endpoint_url),
                                           ("region_name", self.region)) if v}
        fs = s3fs.S3FileSystem(
            key=key, secret=secret, token=token, client_kwargs=client_kwargs,
            # total_max_attempts counts the first try; botocore's "max_attempts" key
            # counts *retries* (max_attempts=1 would still retry once)
            config_kwargs={"retries": {"total_max_attempts": self.max_attempts,
                                       "mode": "standard"}},
            skip_instance_cache=True, use_listings_cache=False)
        fs.retries = 1  # s3fs's own retry loop off: one retry layer (see module doc)
        self._s3 = fs
        return fs

    def fsspec_options(self) -> dict[str, Any]:
        """Storage options an fsspec file system needs for this store (credentials
        included: hand them to in-memory objects only, never log or save them)."""
        if self.protocol == "file":
            return {"auto_mkdir": True}
        key, secret, token = self.__credentials
        client_kwargs = {k: v for k, v in (("endpoint_url", self.endpoint_url),
                                           ("region_name", self.region)) if v}
        opts: dict[str, Any] = {"client_kwargs": client_kwargs}
        for name, value in (("key", key), ("secret", secret), ("token", token)):
            if value:
                opts[name] = value
        return opts

    def for_url(self, url: str) -> Any:
        """The fsspec file system that serves ``url`` (a key, URL or absolute path)."""
        return self.resolve(url)[0]

    def resolve(self, key_or_url: str, *, allow_path: bool = True) -> tuple[Any, str]:
        """``(filesystem, path)`` for a key under the base, a URL or a local path.

        Raises:
            InvalidInputError: ``BAD_FILENAME`` (a bad key) or ``BAD_URL``.
        """
        if not isinstance(key_or_url, str):
            key_or_url = os.fspath(key_or_url)
        if key_or_url.startswith("s3://"):
            bucket, key = _split_s3_url(key_or_url)
            if not key:
                raise _bad_url(key_or_url, "no key after the bucket")
            validate_filename(key, allow_dirs=True)
            return self.s3, f"{bucket}/{key}"
        if key_or_url.startswith("file://"):
            return self._local, _file_url_path(key_or_url)
        if _SCHEME.match(key_or_url):
            raise _bad_url(key_or_url, "only s3:// and file:// URLs are supported")
        if allow_path and key_or_url.startswith("/"):
            return self._local, _check_local_path(key_or_url, key_or_url)
        return self._fs, self._path(key_or_url)

    @property
    def _fs(self) -> Any:
        return self.s3 if self.protocol == "s3" else self._local

    def _path(self, key: str) -> str:
        validate_filename(key, allow_dirs=True)
        return f"{self._root.rstrip('/')}/{key}"

    def _url(self, fs: Any, path: str) -> str:
        return f"s3://{path}" if fs is self._s3 else Path(path).as_uri()

    def key_url(self, key: str) -> str:
        """The full URL of ``key`` under the base URL."""
        return self._url(self._fs, self._path(key))

    # -- reading -------------------------------------------------------------------
    def _info(self, fs: Any, path: str) -> dict[str, Any]:
        info = fs.info(path)
        if info.get("type") != "file":
            raise FileNotFoundError(f"not a file: {path}")
        return info

    def exists(self, key_or_url: str) -> bool:
        """Whether an object (or a folder of objects) is there.

        Raises:
            StorageError, NetworkError: the store could not tell (never False then).
        """
        fs, path = self.resolve(key_or_url)
        try:
            fs.info(path)
            return True
        except Exception as exc:
            err = classify_storage_error(exc, op="exists", url=self._url(fs, path))
            if isinstance(err, InvalidInputError) and err.subcode == "NOT_FOUND":
                return False
            raise err from exc

    def size(self, url: str) -> int:
        """Size in bytes. Raises ``InvalidInputError/NOT_FOUND`` when missing."""
        fs, path = self.resolve(url)
        with _classified("size", self._url(fs, path)):
            return int(self._info(fs, path)["size"])

    def read_head(self, url: str, n: int = HEAD_BYTES) -> bytes:
        """The first ``n`` bytes (fewer when the object is smaller), in one ranged read."""
        fs, path = self.resolve(url)
        with _classified("read_head", self._url(fs, path)):
            if fs is self._local:
                with open(path, "rb") as fh:
                    return fh.read(n)
            try:
                return bytes(fs.cat_file(path, start=0, end=n))
            except OSError as exc:
                aws = _aws_error(exc)
                if aws and aws[0] == "InvalidRange":  # a 0-byte object has no byte 0
                    return b""
                raise

    def iter_chunks(self, url: str, chunk: int = DEFAULT_CHUNK) -> Iterator[bytes]:
        """Stream an object in pieces of at most ``chunk`` bytes (one GET on S3)."""
        fs, path = self.resolve(url)
        full = self._url(fs, path)
        with _classified("read", full):
            if fs is self._local:
                yield from _iter_local(path, chunk)
            else:
                yield from _iter_s3(fs, path, chunk)

    def download(self, url: str, local_path: str | os.PathLike[str],
                 chunk: int = DEFAULT_CHUNK) -> Path:
        """Copy an object to a local file, streamed with bounded memory.

        The bytes go to a hidden part file beside ``local_path``, renamed into place
        when complete: ``local_path`` is either absent, the old file, or complete.
        """
        fs, path = self.resolve(url)
        dest = Path(local_path)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex}{PART_SUFFIX}"
        with _classified("download", self._url(fs, path)):
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(tmp, "wb") as out:
                    for data in self.iter_chunks(url, chunk):
                        out.write(data)
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
        return dest

    def sha256(self, url: str, chunk: int = DEFAULT_CHUNK) -> str:
        """Hex SHA-256 of an object, streamed."""
        digest = hashlib.sha256()
        for data in self.iter_chunks(url, chunk):
            digest.update(data)
        return digest.hexdigest()

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Objects whose key starts with ``prefix`` (a plain string prefix, like S3),
        recursively, sorted by key. Part files of unfinished writes are not listed."""
        if prefix:
            validate_filename(prefix, allow_dirs=True)
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        fs = self._fs
        root = self._root.rstrip("/")
        search = f"{root}/{folder}" if folder else root
        out: list[ObjectInfo] = []
        with _classified("list", self.base_url + "/" + prefix):
            try:
                found = fs.find(search, detail=True)
            except FileNotFoundError as exc:
                if _aws_error(exc) is not None:  # e.g. NoSuchBucket: misconfigured
                    raise
                found = {}
            for path, info in found.items():
                if info.get("type", "file") != "file":
                    continue
                path = path.removeprefix("s3://")
                key = path[len(root) + 1:] if path.startswith(root + "/") else None
                if key is None or not key.startswith(prefix):
                    continue
                name = key.rsplit("/", 1)[-1]
                if name.startswith(".") and name.endswith(PART_SUFFIX):
                    continue
                out.append(ObjectInfo(key=key, url=self._url(fs, path),
                                      size=int(info.get("size") or 0),
                                      modified=_modified(info)))
        return sorted(out, key=lambda o: o.key)

    # -- writing -------------------------------------------------------------------
    def put_file(self, key: str, local_path: str | os.PathLike[str],
                 content_type: str | None = None) -> str:
        """Upload a local file under ``key``, atomically; returns its URL.

        ``content_type`` is stored on S3 (guessed from the name when None) and ignored
        by ``file://`` stores.
        """
        fs, path = self._fs, self._path(key)
        url = self._url(fs, path)
        src = os.fspath(local_path)
        with _classified("put", url):
            if not os.path.isfile(src):
                raise FileNotFoundError(f"no such local file: {src}")
            if fs is self._local:
                def write(out: BinaryIO) -> None:
                    with open(src, "rb") as fh:
                        _copy_chunks(fh, out, DEFAULT_CHUNK)
                _write_atomic(path, write)
            else:
                extra = {"ContentType": content_type} if content_type else {}
                fs.put_file(src, path, chunksize=UPLOAD_PART_SIZE,
                            max_concurrency=UPLOAD_CONCURRENCY, **extra)
        return url

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
        """Store ``data`` under ``key``, atomically; returns its URL."""
        fs, path = self._fs, self._path(key)
        url = self._url(fs, path)
        with _classified("put", url):
            if fs is self._local:
                _write_atomic(path, lambda out: out.write(data))
            else:
                extra = {"ContentType": content_type} if content_type else {}
                fs.pipe_file(path, bytes(data), chunksize=UPLOAD_PART_SIZE,
                             max_concurrency=UPLOAD_CONCURRENCY, **extra)
        return url

    def delete(self, key_or_url: str) -> None:
        """Remove an object; removing a missing object is not an error."""
        fs, path = self.resolve(key_or_url, allow_path=False)
        try:
            with _classified("delete", self._url(fs, path)):
                fs.rm_file(path)
        except InvalidInputError as exc:
            if exc.subcode != "NOT_FOUND":
                raise


# --------------------------------------------------------------------------- helpers


def _modified(info: dict[str, Any]) -> datetime | None:
    value = info.get("LastModified") or info.get("mtime") or info.get("created")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=UTC)
    return None


def _copy_chunks(src: BinaryIO, dst: BinaryIO, chunk: int) -> None:
    while data := src.read(chunk):
        dst.write(data)


def _write_atomic(final_path: str, write: Callable[[BinaryIO], Any]) -> None:
    """Write through ``<dir>/.<name>.<uuid>.part`` then ``os.replace`` into place."""
    final = Path(final_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}{PART_SUFFIX}"
    try:
        with open(tmp, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _iter_local(path: str, chunk: int) -> Iterator[bytes]:
    if os.path.isdir(path):
        raise FileNotFoundError(f"not a file: {path}")
    with open(path, "rb") as fh:
        while data := fh.read(chunk):
            yield data


def _iter_s3(fs: Any, path: str, chunk: int) -> Iterator[bytes]:
    """One streamed GetObject, read ``chunk`` bytes at a time on s3fs's event loop."""
    from fsspec.asyn import sync

    bucket, key, version = fs.split_path(path)

    async def open_body() -> Any:
        extra = {"VersionId": version} if version else {}
        resp = await fs._call_s3("get_object", Bucket=bucket, Key=key, **extra)
        return resp["Body"]

    async def close(body: Any) -> None:
        body.close()

    body = sync(fs.loop, open_body)
    try:
        while True:
            data = sync(fs.loop, body.read, chunk)
            if not data:
                break
            yield data
    finally:
        sync(fs.loop, close, body)
