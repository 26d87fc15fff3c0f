"""The PDF tasks: extract pages, detect symbols, build the scene and store the result.

The PDF work is three kinds of task, each thin around a pure step of
:mod:`cad2gltf.pdf.reader`, passing storage keys and small metadata between them:

1. :func:`extract_pdf_pages`, once per chunk of :data:`~cad2gltf.pdf.reader.CHUNK`
   pages: opens the local PDF (refusals fail here), reads each page's paths and texts,
   renders what the page needs (scans, ground planes, the detector input) and stores
   each page (:func:`cad2gltf.pdf.intermediate.page_dumpb`) under
   ``<work>/chunk-NNNN/pNNNN.npz``, the detector input as ``pNNNN-det.png``, and last a
   marker ``chunk-NNNN.json`` holding what the task returns.
2. :func:`detect_symbols` (``detect_symbols`` option), once per batch of pages across
   chunks (:func:`detect_batch_pages`): loads the batch's renders, runs the detector
   once, stores the detections as JSON under ``<work>/detect-<pages>.json``.
3. :func:`build_pdf_scene`: builds the ``page-N`` nodes from the stored pages and
   detections, one chunk in memory at a time, and stores GLB, preview and manifest under
   the result keys of :func:`tasks.convert.result_prefix`, like ``convert_drawing``
   (manifest last: its presence means the result is complete). The GLB is the one
   :func:`cad2gltf.convert.convert_path` writes for the same file and options.

``<work>`` is ``results/<sha[:2]>/<sha>/pdf-work/<version>-<hash of the options that
change extraction>``: under ``results/`` so that the daily cleanup expires what a failed
run left; removed once the result is stored. Every task is content-cached (source
sha256 + converter version + options + pages + store) with its record in the configured
store, retried on transient errors only, and skips its work when its outputs are already
stored; the flow checks that a cached task's outputs still exist and runs it again when
they are gone (:func:`outputs_exist`).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import timedelta
from typing import Any

from prefect import get_run_logger, task

from cad2gltf import __version__
from cad2gltf.errors import InternalError
from cad2gltf.options import ConvertOptions
from tasks.convert import _safe_stem, options_hash, result_prefix, store_id, store_result

__all__ = ["build_pdf_scene", "detect_batch_pages", "detect_symbols", "detection_batches",
           "extract_pdf_pages", "outputs_exist", "stored_result", "work_prefix"]

#: options that change what extraction stores (the rest only change the building)
_EXTRACT_OPTIONS = ("pages", "scale", "dpi", "ground_plane", "detect_symbols")
_CACHE_DAYS = 7


def detect_batch_pages() -> int:
    """Pages per detector call: ``PipelineSettings.pdf_detect_batch_pages``
    (``CAD2GLTF_PDF_DETECT_BATCH_PAGES``, default 8: the reader's chunk, so the tasks
    batch the detector exactly as ``convert_path`` does)."""
    from blocks.settings import get_settings

    return get_settings().pdf_detect_batch_pages


def _extract_hash(options: dict[str, Any] | None) -> str:
    from cad2gltf.pdf.intermediate import FORMAT

    opts = ConvertOptions.from_dict(options)
    raw = json.dumps({"format": FORMAT, **{k: getattr(opts, k) for k in _EXTRACT_OPTIONS}},
                     sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def work_prefix(sha256: str, options: dict[str, Any] | None) -> str:
    """Where the intermediates of a PDF live: content + version + extraction options."""
    return f"results/{sha256[:2]}/{sha256}/pdf-work/{__version__}-{_extract_hash(options)}"


def _result_keys(sha256: str, name: str, options: dict[str, Any] | None) -> dict[str, str]:
    prefix = result_prefix(sha256, options)
    stem = _safe_stem(name)
    return {"glb": f"{prefix}/{stem}.glb", "png": f"{prefix}/{stem}.png",
            "manifest": f"{prefix}/manifest.json"}


def _pages_hash(pages: list[int]) -> str:
    return hashlib.sha256(",".join(map(str, pages)).encode()).hexdigest()[:12]


def _extract_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    return (f"cad2gltf-pdf-extract-{parameters['sha256']}-{__version__}-"
            f"{_extract_hash(parameters.get('options'))}-c{parameters['chunk']}-{store_id()}")


def _detect_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    pages = [p["index"] for p in parameters["pages"]]
    return (f"cad2gltf-pdf-detect-{parameters['sha256']}-{__version__}-"
            f"{_extract_hash(parameters.get('options'))}-{_pages_hash(pages)}-{store_id()}")


def _build_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    return (f"cad2gltf-pdf-build-{parameters['sha256']}-{__version__}-"
            f"{options_hash(parameters.get('options'))}-{store_id()}")


def _read_json(key: str) -> dict[str, Any]:
    from tasks.runtime import get_store

    store = get_store()
    return json.loads(store.read_head(store.key_url(key), 64 << 20))


def _progress(job_id: str | None, owner: str | None, stage: str, pct: float) -> None:
    if job_id:
        from tasks.runtime import get_ledger

        get_ledger().update_progress(job_id, stage, pct, owner=owner)


def stored_result(sha256: str, name: str, options: dict[str, Any] | None) -> dict[str, Any] | None:
    """The manifest of a finished conversion of this content + version + options, or
    None (the flow's shortcut: a stored result means no task has anything to do).

    Raises:
        StorageError | NetworkError: the store could not tell.
    """
    from tasks.runtime import get_store

    key = _result_keys(sha256, name, options)["manifest"]
    if not get_store().exists(key):
        return None
    return {**_read_json(key), "reused": True}


def outputs_exist(result: dict[str, Any]) -> bool:
    """Whether what a (possibly cached) PDF task returned is still in the store."""
    from tasks.runtime import get_store

    store = get_store()
    keys = [result.get("marker_key") or result.get("key") or result.get("manifest_uri")]
    if isinstance(result.get("pages"), list):  # a chunk: its first page too
        keys += [p["key"] for p in result["pages"][:1]]
    return all(key and store.exists(key) for key in keys)


@task(name="extract_pdf_pages", task_run_name="extract {name} chunk {chunk}",
      cache_key_fn=_extract_cache_key, persist_result=True,
      cache_expiration=timedelta(days=_CACHE_DAYS))
def extract_pdf_pages(local_path: str, sha256: str, name: str, options: dict[str, Any] | None,
                      chunk: int, job_id: str | None = None,
                      owner: str | None = None) -> dict[str, Any]:
    """Read and render one chunk of the selected pages and store them.

    Returns:
        ``{"chunk", "chunks", "pages": [{"index", "key", "det_key", "scanned"}],
        "warnings", "document_warnings", "marker_key"}``: ``chunks`` is the number of
        chunks of the selection, ``det_key`` the detector input (None without detection).

    Raises:
        InvalidInputError: refused (``ENCRYPTED``, ``SUSPICIOUS_CONTENT``, ``NO_PAGES``,
            ``BAD_OPTIONS``...); permanent.
        ParsingError: ``BAD_PDF``; permanent.
        DetectorError: detection asked for and the detector cannot load; permanent.
        StorageError | NetworkError: the store failed (transient: retried).
    """
    from blocks.settings import get_settings
    from cad2gltf.pdf.intermediate import page_dumpb, render_dumpb
    from cad2gltf.pdf.reader import extract_chunk
    from cad2gltf.pdf.symbols import load_symbol_detector
    from cad2gltf.validate import Limits, validate_path
    from tasks.runtime import get_store

    logger = get_run_logger()
    settings = get_settings()
    store = get_store(settings)
    work = work_prefix(sha256, options)
    marker = f"{work}/chunk-{chunk:04d}.json"
    if store.exists(marker):
        logger.info("chunk %d of %s is stored already", chunk, name)
        return _read_json(marker)
    opts = ConvertOptions.from_dict(options)
    limits = Limits(dxf_max_bytes=settings.dxf_max_bytes, pdf_max_bytes=settings.pdf_max_bytes)
    t0 = time.perf_counter()
    validate_path(local_path, limits=limits)
    detector = load_symbol_detector() if opts.detect_symbols else None
    got = extract_chunk(local_path, opts, chunk, detector.dpi if detector else None)
    _progress(job_id, owner, "extract", 20.0 + 30.0 * (chunk + 1) / got.chunks)
    pages = []
    for page in got.pages:
        key = f"{work}/chunk-{chunk:04d}/p{page.index + 1:04d}"
        det_key = None
        if page.det_image is not None:
            det_key = store.key_url(f"{key}-det.png")
            store.put_bytes(f"{key}-det.png", render_dumpb(page.det_image), "image/png")
            page.det_image = None
        url = store.put_bytes(f"{key}.npz", page_dumpb(page), "application/octet-stream")
        pages.append({"index": page.index, "key": url, "det_key": det_key,
                      "scanned": page.scanned})
    out = {"chunk": chunk, "chunks": got.chunks, "pages": pages, "warnings": got.warnings,
           "document_warnings": got.document_warnings, "marker_key": store.key_url(marker)}
    # the marker goes last: its presence means the chunk is complete
    store.put_bytes(marker, json.dumps(out, sort_keys=True).encode(), "application/json")
    logger.info("extracted chunk %d/%d of %s (%d pages) in %.2f s", chunk + 1, got.chunks,
                name, len(pages), time.perf_counter() - t0)
    return out


def detection_batches(chunks: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    """The pages with a detector input, in order, in batches of ``size`` (across chunks)."""
    pages = [{"index": p["index"], "det_key": p["det_key"]}
             for c in chunks for p in c["pages"] if p.get("det_key")]
    return [pages[i:i + size] for i in range(0, len(pages), size)]


@task(name="detect_symbols", task_run_name="detect {name} pages {first_page}-{last_page}",
      cache_key_fn=_detect_cache_key, persist_result=True,
      cache_expiration=timedelta(days=_CACHE_DAYS))
def detect_symbols(sha256: str, name: str, options: dict[str, Any] | None,
                   pages: list[dict[str, Any]], first_page: int = 0,
                   last_page: int = 0) -> dict[str, Any]:
    """Run the symbol detector once over a batch of stored page renders.

    Args:
        pages: ``[{"index", "det_key"}]`` from :func:`extract_pdf_pages`.
        first_page / last_page: 1-based, for the run's name.

    Returns:
        ``{"key", "pages", "detections"}``: where the detections (JSON per page) are.

    Raises:
        DetectorError: the detector cannot load or failed (permanent).
        StorageError | NetworkError: the store failed (transient: retried).
    """
    from cad2gltf.pdf.intermediate import detections_dumpb, render_loadb
    from cad2gltf.pdf.symbols import load_symbol_detector
    from tasks.runtime import get_store

    logger = get_run_logger()
    store = get_store()
    indices = [p["index"] for p in pages]
    key = (f"{work_prefix(sha256, options)}/detect-{indices[0] + 1:04d}-"
           f"{_pages_hash(indices)}.json")
    if store.exists(key):
        found = _read_json(key)["pages"]
        return {"key": store.key_url(key), "pages": len(found),
                "detections": sum(len(v) for v in found.values())}
    detector = load_symbol_detector()
    t0 = time.perf_counter()
    images = [render_loadb(b"".join(store.iter_chunks(p["det_key"]))) for p in pages]
    t1 = time.perf_counter()
    found = detector.detect(images)
    del images
    url = store.put_bytes(key, detections_dumpb(dict(zip(indices, found, strict=True))),
                          "application/json")
    count = sum(len(d) for d in found)
    logger.info("detected %d symbols on %d pages of %s on %s (load %.2f s, detect %.2f s)",
                count, len(pages), name, detector.device, t1 - t0, time.perf_counter() - t1)
    return {"key": url, "pages": len(pages), "detections": count}


@task(name="build_pdf_scene", task_run_name="build {name}",
      cache_key_fn=_build_cache_key, persist_result=True,
      cache_expiration=timedelta(days=_CACHE_DAYS))
def build_pdf_scene(local_path: str, sha256: str, name: str, options: dict[str, Any] | None,
                    chunks: list[dict[str, Any]], detections: list[str],
                    job_id: str | None = None, owner: str | None = None) -> dict[str, Any]:
    """Build the scene from the stored pages and detections, store GLB, preview and
    manifest (like ``convert_drawing``), then remove the intermediates.

    Args:
        chunks: what :func:`extract_pdf_pages` returned, in chunk order.
        detections: keys of the stored detections (:func:`detect_symbols`).

    Returns:
        ``{"result_uri", "preview_uri", "manifest_uri", "summary", "reused", ...}``.

    Raises:
        ParsingError: ``NO_GEOMETRY`` (nothing convertible), ``BAD_INTERMEDIATE``.
        StorageError | NetworkError: the store failed (transient: retried).
    """
    from blocks.settings import get_settings
    from cad2gltf.convert import convert_path
    from cad2gltf.pdf.intermediate import detections_loadb, page_loadb
    from cad2gltf.pdf.reader import PreparedChunk, PreparedPages, prepared_pages
    from cad2gltf.validate import Limits
    from tasks.runtime import get_store

    logger = get_run_logger()
    settings = get_settings()
    store = get_store(settings)
    keys = _result_keys(sha256, name, options)
    if store.exists(keys["manifest"]):
        logger.info("result exists at %s; nothing to build", store.key_url(keys["manifest"]))
        return {**_read_json(keys["manifest"]), "reused": True}
    _progress(job_id, owner, "build", 55.0)
    found: dict[int, Any] = {}
    for key in detections:
        found.update(detections_loadb(b"".join(store.iter_chunks(key))))

    def loader(chunk: dict[str, Any]) -> Any:
        def load() -> Any:
            for p in chunk["pages"]:
                page = page_loadb(b"".join(store.iter_chunks(p["key"])))
                page.detections = found.get(page.index, [])
                yield page
        return load

    if not chunks:
        raise InternalError("no extracted pages to build", subcode="NO_CHUNKS")
    prepared = PreparedPages(
        document_warnings=list(chunks[0]["document_warnings"]),
        chunks=[PreparedChunk(list(c["warnings"]), loader(c)) for c in chunks])
    opts = ConvertOptions.from_dict(options)
    limits = Limits(dxf_max_bytes=settings.dxf_max_bytes, pdf_max_bytes=settings.pdf_max_bytes)
    t0 = time.perf_counter()
    with prepared_pages(prepared):
        result = convert_path(local_path, opts, limits=limits, declared_type="pdf")
    seconds = time.perf_counter() - t0
    _progress(job_id, owner, "upload", 70.0)
    manifest = store_result(store, keys, result, sha256, options, seconds)
    _progress(job_id, owner, "stored", 90.0)
    logger.info("built %s in %.2f s -> %s", name, seconds, manifest["result_uri"])
    _remove_intermediates(store, chunks, detections)
    return {**manifest, "reused": False}


def _remove_intermediates(store: Any, chunks: list[dict[str, Any]], detections: list[str]) -> None:
    """Delete the stored pages, renders and detections of a finished result (best effort:
    what stays behind expires with the daily cleanup)."""
    keys = [k for c in chunks for p in c["pages"] for k in (p["key"], p.get("det_key")) if k]
    keys += list(detections) + [c["marker_key"] for c in chunks]  # markers last
    try:
        for key in keys:
            store.delete(key)
    except Exception as exc:  # noqa: BLE001 - the result is stored; this is housekeeping
        get_run_logger().warning("intermediates not removed (%s); cleanup will expire them",
                                 str(exc).splitlines()[0][:200])
