"""Resolve the pipeline's connections once per process: object store, job ledger, and
the TLS contexts of Prefect's clients.

Blocks win when they exist on the Prefect server (``ObjectStorage`` named
``settings.storage_block``, ``JobStore`` named ``settings.ledger_block``); otherwise the
embedded defaults from :mod:`blocks.settings` apply (local files, SQLite).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any

from blocks.settings import PipelineSettings, get_settings
from tasks.ledger import JobLedger, open_ledger
from tasks.storage import ObjectStore

__all__ = [
    "get_ledger",
    "get_store",
    "ledger_dsn",
    "reset_runtime",
    "retry_options",
    "share_client_tls_contexts",
]

log = logging.getLogger(__name__)
_lock = threading.Lock()
_cache: dict[str, Any] = {}


def _load_block(block_cls: Any, name: str) -> Any | None:
    """Load a saved block if there is one (and a server to ask); None otherwise.

    Without ``PREFECT_API_URL`` there is no server holding blocks, only Prefect's
    ephemeral local API, which would have to be started just to say "no such block".
    """
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        return None
    try:
        # _sync: Prefect dispatches Block.load to its async twin inside an event loop
        return block_cls.load(name, _sync=True)
    except ValueError:  # no such block document
        return None
    except Exception as exc:  # noqa: BLE001 - no API reachable: embedded defaults
        log.debug("block %s not loaded: %s", name, exc)
        return None


def get_store(settings: PipelineSettings | None = None) -> ObjectStore:
    """The object store for results (cached per process)."""
    settings = settings or get_settings()
    key = "store:" + settings.fingerprint()
    with _lock:
        if key in _cache:
            return _cache[key]
    from blocks.storage import ObjectStorage

    block = _load_block(ObjectStorage, settings.storage_block) if settings.storage_url is None \
        else None
    if block is None:
        block = ObjectStorage.from_settings(settings)
    store = ObjectStore(**block.store_kwargs())
    with _lock:
        _cache[key] = store
    return store


def get_ledger(settings: PipelineSettings | None = None) -> JobLedger:
    """The job ledger (migrated on first use, cached per process)."""
    settings = settings or get_settings()
    key = "ledger:" + settings.fingerprint()
    with _lock:
        if key in _cache:
            return _cache[key]
    ledger = open_ledger(ledger_dsn(settings))
    ledger.migrate()
    with _lock:
        _cache[key] = ledger
    return ledger


async def aget_result_storage(settings: PipelineSettings | None = None) -> Any:
    """Where Prefect persists task results and cache records: ``prefect-results/`` in the
    configured object store, so every worker (CPU or GPU pool, any machine) finds the
    cache records of the others.

    Prefect wants result storage saved server-side, so this saves a block named
    ``cad2gltf-results-<hash of the location>`` once per process: a prefect-aws
    ``S3Bucket`` (its ``AwsCredentials`` keep the secret a ``SecretStr``) for ``s3://``
    stores, a ``LocalFileSystem`` for ``file://`` ones.
    """
    from prefect.filesystems import LocalFileSystem

    settings = settings or get_settings()
    key = "results:" + settings.fingerprint()
    with _lock:
        if key in _cache:
            return _cache[key]
    store = get_store(settings)
    location = f"{store.base_url}/prefect-results|{store.endpoint_url or ''}"
    name = "cad2gltf-results-" + hashlib.sha256(location.encode()).hexdigest()[:12]
    if store.protocol == "file":
        from tasks.storage import _file_url_path

        block: Any = LocalFileSystem(basepath=_file_url_path(store.key_url("prefect-results")))
    else:
        from prefect_aws import AwsCredentials, S3Bucket
        from prefect_aws.client_parameters import AwsClientParameters

        opts = store.fsspec_options()
        bucket, _, prefix = store.base_url.removeprefix("s3://").partition("/")
        block = S3Bucket(
            bucket_name=bucket,
            bucket_folder=f"{prefix}/prefect-results" if prefix else "prefect-results",
            credentials=AwsCredentials(
                aws_access_key_id=opts.get("key"), aws_secret_access_key=opts.get("secret"),
                aws_session_token=opts.get("token"), region_name=store.region,
                aws_client_parameters=AwsClientParameters(endpoint_url=store.endpoint_url)))
    await block.asave(name, overwrite=True)
    with _lock:
        _cache[key] = block
    return block


def ledger_dsn(settings: PipelineSettings | None = None) -> str:
    """The ledger's DSN: ``CAD2GLTF_LEDGER_DSN`` (development, tests), else the JobStore
    block, else the embedded SQLite file."""
    import os

    from blocks.jobstore import JobStore

    settings = settings or get_settings()
    dsn = os.environ.get("CAD2GLTF_LEDGER_DSN")
    if dsn:
        return dsn
    block = _load_block(JobStore, settings.ledger_block)
    return block.dsn.get_secret_value() if block is not None else settings.resolved_ledger_dsn()


def reset_runtime() -> None:
    """Forget cached connections (tests switch settings between cases)."""
    with _lock:
        for value in _cache.values():
            close = getattr(value, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001
                    pass
        _cache.clear()
    get_settings.cache_clear()


async def cached_task_options(settings: PipelineSettings | None = None) -> dict[str, Any]:
    """Options of a content-cached task: the retries of :func:`retry_options` and result
    persistence in the configured store (:func:`aget_result_storage`)."""
    return {**retry_options(settings), "result_storage": await aget_result_storage(settings)}


def retry_options(settings: PipelineSettings | None = None) -> dict[str, Any]:
    """Task options for retrying transient errors with exponential backoff and jitter."""
    from tasks.retry import retry_delays, retry_if_transient

    settings = settings or get_settings()
    delays = retry_delays(settings)
    return {
        "retries": settings.task_retries,
        "retry_delay_seconds": delays or 0,
        "retry_jitter_factor": settings.retry_jitter_factor if delays else None,
        "retry_condition_fn": retry_if_transient,
    }


class _ReusedTLSContexts:
    """Stands in for the ``ssl`` module inside Prefect's client module only.

    Prefect builds a new ``SSLContext`` (parsing the whole CA bundle) for every client it
    creates -- three or four per flow run, 40-60 ms each here. A fresh engine process pays
    that once per run anyway; a warm child would pay it again for every run. Contexts
    are built once per set of arguments and shared, which ``SSLContext`` supports (it is
    meant to serve many connections); everything else is the real ``ssl`` module.
    """

    def __init__(self, real: Any) -> None:
        self._real = real
        self._contexts: dict[tuple[Any, ...], Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def create_default_context(self, *args: Any, **kwargs: Any) -> Any:
        key = (args, tuple(sorted(kwargs.items())))
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._contexts[key] = self._real.create_default_context(*args, **kwargs)
        return ctx


def share_client_tls_contexts() -> None:
    """Let every Prefect client of this process share its TLS contexts (idempotent).

    For processes that create many clients: warm worker children, the CLI converting a
    list of files, the listener (a client per ``run_deployment``). Without it each flow
    run pays for building three or four contexts.
    """
    import ssl

    try:
        import prefect.client.orchestration as orchestration
    except ImportError:  # pragma: no cover - Prefect is always there
        return
    if getattr(orchestration, "ssl", None) is ssl:
        orchestration.ssl = _ReusedTLSContexts(ssl)  # type: ignore[attr-defined]
