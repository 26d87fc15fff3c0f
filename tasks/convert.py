"""The conversion tasks: validate, download, convert + store, call back.

Each task is thin: it loads through the object store or the ledger, calls the pure
``cad2gltf`` core, stores, and returns keys, hashes and small metadata. Retries apply
to transient errors only (see :func:`tasks.runtime.retry_options`); the conversion is
cached by content (source sha256 + converter version + options), and its outputs live
under deterministic keys, so a re-run finds them instead of converting again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from prefect import get_run_logger, task

from cad2gltf import __version__
from cad2gltf.errors import InvalidInputError, NetworkError, classify
from cad2gltf.options import ConvertOptions
from cad2gltf.validate import Limits, sniff_bytes, validate_filename

__all__ = [
    "check_callback_url",
    "check_source",
    "convert_drawing",
    "download_source",
    "idempotency_key",
    "notify_callback",
    "options_hash",
    "result_prefix",
    "store_id",
    "store_result",
    "validate_source",
]

HEAD_BYTES = 64 * 1024


def options_hash(options: dict[str, Any] | None) -> str:
    """Stable hash of the normalised options (defaults filled in)."""
    return hashlib.sha256(ConvertOptions.from_dict(options).canonical_json().encode()
                          ).hexdigest()[:16]


def idempotency_key(source_uri: str, content_version: str, options: dict[str, Any] | None) -> str:
    """Business identity of a request: where, which content, converted how."""
    raw = f"{source_uri}\n{content_version}\n{options_hash(options)}\n{__version__}"
    return hashlib.sha256(raw.encode()).hexdigest()


def result_prefix(sha256: str, options: dict[str, Any] | None) -> str:
    """Deterministic folder of a result: same content + version + options, same place."""
    return f"results/{sha256[:2]}/{sha256}/{__version__}-{options_hash(options)}"


def _source_name(source_uri: str) -> str:
    path = urlparse(source_uri).path if "://" in source_uri else source_uri
    name = os.path.basename(path.rstrip("/")) or "drawing"
    validate_filename(name)
    return name


def _safe_stem(name: str) -> str:
    stem = Path(name).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:80] or "drawing"


def check_source(source_uri: str, declared_type: str | None = None) -> dict[str, Any]:
    """Check name, size and real type from the first bytes, before any download.

    Returns:
        ``{"name", "file_type", "variant", "size"}``.

    Raises:
        InvalidInputError: refused input (permanent).
        StorageError | NetworkError: the store could not be read (transient).
    """
    from blocks.settings import get_settings
    from tasks.runtime import get_store

    settings = get_settings()
    store = get_store(settings)
    name = _source_name(source_uri)
    size = store.size(source_uri)
    head = store.read_head(source_uri, HEAD_BYTES)
    limits = Limits(dxf_max_bytes=settings.dxf_max_bytes, pdf_max_bytes=settings.pdf_max_bytes)
    sniff = sniff_bytes(head, size, name=name, declared_type=declared_type, limits=limits)
    return {"name": name, "file_type": sniff.file_type, "variant": sniff.variant, "size": size}


@task(name="validate_source", task_run_name="validate {source_uri}")
def validate_source(source_uri: str, declared_type: str | None = None) -> dict[str, Any]:
    """Task form of :func:`check_source` (for flows that validate without downloading)."""
    return check_source(source_uri, declared_type)


@task(name="download_source", task_run_name="download {source_uri}")
def download_source(source_uri: str, declared_type: str | None = None) -> dict[str, Any]:
    """Validate the source from its first bytes, then stream it into local scratch space,
    hashing it on the way. Refused inputs fail before anything is downloaded.

    Returns:
        ``{"name", "file_type", "variant", "size", "local_path", "sha256"}``; the path is
        local to this worker.

    Raises:
        InvalidInputError: refused input (permanent).
        StorageError | NetworkError: the store could not be read (transient).
    """
    info = check_source(source_uri, declared_type)
    get_run_logger().info("%s: %s (%s), %d bytes", info["name"], info["file_type"],
                          info["variant"], info["size"])
    expected_size = info["size"]
    from blocks.settings import get_settings
    from tasks.runtime import get_store

    settings = get_settings()
    store = get_store(settings)
    name = _source_name(source_uri)
    folder = settings.resolved_work_dir() / hashlib.sha256(source_uri.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    local = store.download(source_uri, folder / name)
    digest = hashlib.sha256()
    size = 0
    with open(local, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    if size != expected_size:
        raise InvalidInputError(
            f"the source changed while it was read ({expected_size} -> {size} bytes)",
            subcode="SOURCE_CHANGED")
    return {**info, "local_path": str(local), "sha256": digest.hexdigest(), "size": size}


def store_id() -> str:
    """Short hash of where results are stored, part of every cache key: the same request
    against another store must not reuse a record pointing elsewhere."""
    from blocks.settings import get_settings
    from tasks.runtime import get_store

    return hashlib.sha256(get_store(get_settings()).base_url.encode()).hexdigest()[:12]


def _convert_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """Content (sha256) + converter version + options + where results are stored."""
    return (f"cad2gltf-convert-{parameters['sha256']}-{__version__}-"
            f"{options_hash(parameters.get('options'))}-{store_id()}")


@task(name="convert_drawing", task_run_name="convert {name}",
      cache_key_fn=_convert_cache_key, persist_result=True,
      cache_expiration=timedelta(days=7))
def convert_drawing(local_path: str, sha256: str, name: str, options: dict[str, Any] | None,
                    job_id: str | None = None, owner: str | None = None) -> dict[str, Any]:
    """Convert a local drawing and store GLB, preview and manifest under their final keys.

    Skips all work when the manifest of the same content + version + options exists.

    Returns:
        ``{"result_uri", "preview_uri", "manifest_uri", "summary", "reused"}``.

    Raises:
        ConversionError: classified; only transient ones are retried.
    """
    from blocks.settings import get_settings
    from cad2gltf.convert import convert_path
    from tasks.runtime import get_ledger, get_store

    logger = get_run_logger()
    settings = get_settings()
    store = get_store(settings)
    prefix = result_prefix(sha256, options)
    stem = _safe_stem(name)
    keys = {"glb": f"{prefix}/{stem}.glb", "png": f"{prefix}/{stem}.png",
            "manifest": f"{prefix}/manifest.json"}
    if store.exists(keys["manifest"]):
        manifest = json.loads(store.read_head(store.key_url(keys["manifest"]), 1 << 20))
        logger.info("result exists at %s; nothing to convert", store.key_url(keys["manifest"]))
        return {**manifest, "reused": True}

    ledger = get_ledger(settings) if job_id else None

    def progress(stage: str, pct: float) -> None:
        if ledger is not None:
            ledger.update_progress(job_id, stage, pct, owner=owner)

    progress("convert", 20.0)
    opts = ConvertOptions.from_dict(options)
    limits = Limits(dxf_max_bytes=settings.dxf_max_bytes, pdf_max_bytes=settings.pdf_max_bytes)
    t0 = time.perf_counter()
    result = convert_path(local_path, opts, limits=limits)
    seconds = time.perf_counter() - t0
    progress("upload", 70.0)
    manifest = store_result(store, keys, result, sha256, options, seconds)
    progress("stored", 90.0)
    logger.info("converted %s in %.2f s -> %s", name, seconds, manifest["result_uri"])
    return {**manifest, "reused": False}


def store_result(store: Any, keys: dict[str, str], result: Any, sha256: str,
                 options: dict[str, Any] | None, seconds: float) -> dict[str, Any]:
    """Store a conversion's GLB and preview under ``keys`` (``glb``, ``png``,
    ``manifest``), then its manifest -- last: its presence means the result is complete.

    Returns:
        The manifest: ``result_uri``, ``preview_uri``, ``manifest_uri``, provenance and
        a ``summary`` of the conversion report.
    """
    uris = {"result_uri": store.put_bytes(keys["glb"], result.glb, "model/gltf-binary"),
            "preview_uri": None}
    if result.preview is not None:
        uris["preview_uri"] = store.put_bytes(keys["png"], result.preview, "image/png")
    report = result.report
    summary = {
        "file_type": report["file_type"], "units": report["units"],
        "entities": report["stats"].get("entities"),
        "nodes_by_category": report["nodes_by_category"],
        "vertices": report["vertices"], "glb_bytes": report["glb_bytes"],
        "warnings": report["warnings"][:20], "warning_count": len(report["warnings"]),
        "seconds": round(seconds, 4), "timings": report["timings"],
    }
    manifest = {**uris, "manifest_uri": store.key_url(keys["manifest"]),
                "source_sha256": sha256, "converter_version": __version__,
                "options_hash": options_hash(options), "summary": summary}
    store.put_bytes(keys["manifest"], json.dumps(manifest, sort_keys=True).encode(),
                    "application/json")
    return manifest


@task(name="notify_callback", task_run_name="callback {url}")
def notify_callback(url: str, payload: dict[str, Any]) -> int:
    """POST the job outcome to ``url`` (allow-listed hosts only, with a timeout).

    Returns:
        The HTTP status code.

    Raises:
        InvalidInputError: the host is not allowed (permanent).
        NetworkError: the receiver is unreachable or answered 5xx (transient).
    """
    import httpx

    from blocks.settings import get_settings

    settings = get_settings()
    check_callback_url(url)
    parsed = urlparse(url)
    try:
        response = httpx.post(url, json=payload, timeout=settings.callback_timeout_seconds)
    except httpx.HTTPError as exc:
        raise NetworkError(f"callback to {parsed.hostname} failed: {exc}",
                           subcode="CALLBACK_UNREACHABLE") from exc
    if response.status_code >= 500:
        raise NetworkError(f"callback answered {response.status_code}",
                           subcode="CALLBACK_5XX")
    get_run_logger().info("callback %s answered %d", url, response.status_code)
    return response.status_code


def check_callback_url(url: str) -> None:
    """Refuse callback URLs that are not http(s) to an allow-listed host.

    Raises:
        InvalidInputError: ``CALLBACK_NOT_ALLOWED``.
    """
    from blocks.settings import get_settings

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or parsed.hostname not in \
            get_settings().callback_allowed_hosts:
        raise InvalidInputError(f"callback host {parsed.hostname!r} is not allowed",
                                subcode="CALLBACK_NOT_ALLOWED")


def error_fields(exc: BaseException) -> dict[str, Any]:
    """Ledger fields describing a failure (stable code + message)."""
    err = classify(exc)
    return {"error_code": err.code if not err.subcode else f"{err.code}/{err.subcode}",
            "error_message": err.message[:2000]}
