"""The PDF flow ``convert_pdf`` (deployed on the ``cad-gpu`` pool) and the task sequence
that is its body, which ``convert_file`` also runs inline on ``cad-cpu`` when no GPU
worker serves PDFs (:func:`run_pdf_tasks`).

The sequence (:mod:`tasks.pdf`): ``extract_pdf_pages`` per chunk of pages, then
``detect_symbols`` per batch of pages across chunks (submitted as soon as a batch is
extracted, so the detector works while the next chunk is read), then one
``build_pdf_scene`` that writes GLB, preview and manifest. Tasks hand each other storage
keys and small metadata, never pages or renders.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from cad2gltf.errors import InvalidInputError
from flows.caching import is_cached, run_fresh
from tasks.convert import download_source

__all__ = ["convert_pdf", "run_pdf_tasks"]


async def run_pdf_tasks(local_path: str, sha256: str, name: str,
                        options: dict[str, Any] | None = None, job_id: str | None = None,
                        owner: str | None = None) -> dict[str, Any]:
    """Convert a downloaded PDF as a sequence of tasks and store the GLB and its preview.

    A stored result of the same content + version + options is returned at once
    (``reused``), without any task run.

    Returns:
        The result manifest: ``result_uri``, ``preview_uri``, ``manifest_uri``, ``summary``.

    Raises:
        ConversionError: classified; only transient ones were retried.
    """
    from tasks.pdf import (
        build_pdf_scene,
        detect_batch_pages,
        detect_symbols,
        extract_pdf_pages,
        outputs_exist,
        stored_result,
    )
    from tasks.runtime import cached_task_options

    logger = get_run_logger()
    done = stored_result(sha256, name, options)
    if done is not None:
        logger.info("result exists at %s; nothing to convert", done["manifest_uri"])
        return done
    task_options = await cached_task_options()
    extract = extract_pdf_pages.with_options(**task_options)
    detect = detect_symbols.with_options(**task_options)
    build = build_pdf_scene.with_options(**task_options)
    batch = detect_batch_pages()
    chunks: list[dict[str, Any]] = []
    waiting: list[dict[str, Any]] = []  # pages whose renders wait for a full batch
    batches: list[tuple[list[dict[str, Any]], Any]] = []
    total = 1
    while len(chunks) < total:
        got = await run_fresh(extract, local_path, sha256, name, options, len(chunks),
                              job_id=job_id, owner=owner, outputs_exist=outputs_exist)
        total = got["chunks"]
        chunks.append(got)
        waiting += [{"index": p["index"], "det_key": p["det_key"]}
                    for p in got["pages"] if p.get("det_key")]
        while len(waiting) >= batch or (waiting and len(chunks) == total):
            part, waiting = waiting[:batch], waiting[batch:]
            args = (sha256, name, options, part)
            span = {"first_page": part[0]["index"] + 1, "last_page": part[-1]["index"] + 1}
            batches.append((part, (args, span, detect.submit(*args, **span))))
    detections = []
    for _part, (args, span, future) in batches:
        found = future.result()
        if is_cached(future.state) and not outputs_exist(found):
            logger.warning("cached detections %s are missing; detecting again", found["key"])
            found = detect.with_options(refresh_cache=True)(*args, **span)
        detections.append(found["key"])
    return await run_fresh(build, local_path, sha256, name, options, chunks, detections,
                           job_id=job_id, owner=owner, outputs_exist=outputs_exist)


@flow(name="convert-pdf", flow_run_name="convert-pdf {source_uri}", retries=0)
async def convert_pdf(source_uri: str, options: dict[str, Any] | None = None,
                      job_id: str | None = None, owner: str | None = None,
                      sha256: str | None = None) -> dict[str, Any]:
    """Convert a PDF drawing (vector or scanned pages, symbol detection when the options
    ask for it) and store the GLB and its preview.

    Deployed on the ``cad-gpu`` pool (``convert-pdf/gpu``), where the children hold
    torch and the detector; ``convert_file`` routes PDFs here when a GPU worker is online
    and runs the same tasks inline on ``cad-cpu`` otherwise (``CAD2GLTF_PDF_ROUTE``). The
    file is fetched on this worker (the GPU pool may be another machine); the work is
    :func:`run_pdf_tasks`.

    Returns:
        The result manifest: ``result_uri``, ``preview_uri``, ``manifest_uri``, ``summary``.

    Raises:
        ConversionError: classified (``VALIDATION_ERROR/ENCRYPTED``, ``DETECTOR_ERROR``...).
    """
    from tasks.runtime import retry_options

    src = download_source.with_options(**retry_options())(source_uri, "pdf")
    if sha256 is not None and src["sha256"] != sha256:
        raise InvalidInputError("the PDF changed between validation and conversion",
                                subcode="SOURCE_CHANGED",
                                details={"expected": sha256, "found": src["sha256"]})
    return await run_pdf_tasks(src["local_path"], src["sha256"], src["name"], options,
                               job_id=job_id, owner=owner)
