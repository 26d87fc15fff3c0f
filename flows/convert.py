"""Conversion flows: ``convert_file`` (entry point, routing, job lifecycle) and
``convert_dxf`` (the DXF work, on the ``cad-cpu`` pool); ``convert_pdf`` (the PDF work,
deployed on the ``cad-gpu`` pool) lives in :mod:`flows.pdf` and is re-exported here.

Flows are ``async`` on purpose: Prefect 3.8's synchronous flow engine joins its
heartbeat thread at the end of every run, which sleeps in one-second steps (measured
here: an empty sync flow 1.07 s, the same async flow 0.15 s). The tasks stay
synchronous and are called directly.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run as runtime_flow_run

from cad2gltf.errors import ConversionError, InvalidInputError, classify
from cad2gltf.options import ConvertOptions
from flows.caching import run_fresh
from flows.pdf import convert_pdf, run_pdf_tasks
from tasks.convert import (
    check_callback_url,
    convert_drawing,
    download_source,
    error_fields,
    idempotency_key,
    notify_callback,
    options_hash,
)
from tasks.retry import aretry_transient

__all__ = ["convert_dxf", "convert_file", "convert_pdf"]


def _owner() -> str:
    run_id = runtime_flow_run.id
    return str(run_id) if run_id else f"local-{uuid.uuid4()}"


async def _convert_downloaded(source_uri: str, local_path: str, sha256: str, name: str,
                              options: dict[str, Any] | None = None,
                              job_id: str | None = None,
                              owner: str | None = None) -> dict[str, Any]:
    """Convert a drawing already in local scratch (any type ``cad2gltf`` reads) in one
    task and store the GLB and its preview; the body of ``convert_dxf`` (PDFs go through
    :func:`flows.pdf.run_pdf_tasks`)."""
    from tasks.runtime import cached_task_options, get_store

    store = get_store()
    return await run_fresh(convert_drawing.with_options(**(await cached_task_options())),
                           local_path, sha256, name, options, job_id=job_id, owner=owner,
                           outputs_exist=lambda result: store.exists(result["manifest_uri"]))


@flow(name="convert-dxf", flow_run_name="convert-dxf {name}", retries=0)
async def convert_dxf(source_uri: str, local_path: str, sha256: str, name: str,
                      options: dict[str, Any] | None = None, job_id: str | None = None,
                      owner: str | None = None) -> dict[str, Any]:
    """Convert a downloaded DXF and store the GLB and its preview.

    Runs on the ``cad-cpu`` pool (inline under ``convert_file`` there). Returns the
    result manifest: ``result_uri``, ``preview_uri``, ``manifest_uri``, ``summary``.
    """
    return await _convert_downloaded(source_uri, local_path, sha256, name, options,
                                     job_id=job_id, owner=owner)


async def _gpu_worker_online() -> bool:
    """Whether a worker of the GPU pool has sent a heartbeat recently (no pool, or no
    answer: no)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import WorkerStatus

    from blocks.settings import get_settings

    pool = get_settings().gpu_pool
    try:
        async with get_client() as client:
            workers = await client.read_workers_for_work_pool(pool)
    except Exception as exc:  # noqa: BLE001 - a routing hint, not a reason to fail
        get_run_logger().info("no GPU worker found for pool %s (%s)", pool,
                              str(exc).splitlines()[0][:200])
        return False
    return any(w.status == WorkerStatus.ONLINE for w in workers)


_FAILED_CODE = re.compile(r"\[([A-Z_]+)(?:/([A-Z0-9_]+))?\] (.*)", re.S)


def _error_of_run(run: Any) -> ConversionError:
    """The classified error of a failed PDF run, from its state message (a ConversionError
    prints as ``[CODE/SUBCODE] message``)."""
    from cad2gltf import errors

    classes = {cls.code: cls for cls in (
        errors.InvalidInputError, errors.ParsingError, errors.StorageError,
        errors.NetworkError, errors.TimeoutError_, errors.DetectorError, errors.InternalError)}
    message = (run.state.message or "") if run.state else ""
    found = _FAILED_CODE.search(message)
    if found and found.group(1) in classes:
        cls = classes[found.group(1)]
        return cls(found.group(3).strip(), subcode=found.group(2),
                   details={"pdf_flow_run_id": str(run.id)})
    state = run.state.type.value if run.state else "UNKNOWN"
    return errors.InternalError(f"the PDF run ended {state}: {message[:500]}",
                         subcode=f"PDF_RUN_{state}", details={"pdf_flow_run_id": str(run.id)})


async def _route_pdf(source_uri: str, local_path: str, sha256: str, name: str,
                     options: dict[str, Any] | None, job_id: str | None = None,
                     owner: str | None = None) -> dict[str, Any]:
    """PDF work on the GPU pool when one is served, else inline here on cad-cpu.

    Inline rather than through a cad-cpu deployment on purpose: a convert-file run waiting
    for a run of its own pool could hold every slot while the children wait for one.
    """
    from blocks.settings import get_settings

    settings = get_settings()
    route = settings.pdf_route
    if route == "auto":
        route = "gpu" if await _gpu_worker_online() else "cpu"
    if route == "cpu":
        get_run_logger().info("PDF work runs inline on this worker (route %s)",
                              settings.pdf_route)
        return await run_pdf_tasks(local_path, sha256, name, options, job_id=job_id,
                                   owner=owner)
    import json as _json

    from prefect.deployments import run_deployment

    from tasks.convert import result_prefix
    from tasks.runtime import get_store

    get_run_logger().info("PDF work goes to %s", settings.pdf_deployment)
    run = await run_deployment(
        name=settings.pdf_deployment, as_subflow=True,
        timeout=settings.conversion_timeout_seconds * 2,
        parameters={"source_uri": source_uri, "options": options, "job_id": job_id,
                    "owner": owner, "sha256": sha256})
    if run.state is None or not run.state.is_completed():
        if run.state is not None and not run.state.is_final():
            from cad2gltf.errors import TimeoutError_

            raise TimeoutError_("the PDF run did not finish in time",
                                subcode="PDF_RUN_TIMEOUT",
                                details={"pdf_flow_run_id": str(run.id)})
        raise _error_of_run(run)
    # the GPU run stored the result under its deterministic keys; its manifest says where
    store = get_store(settings)
    manifest_key = f"{result_prefix(sha256, options)}/manifest.json"
    manifest = _json.loads(store.read_head(store.key_url(manifest_key), 1 << 20))
    return {**manifest, "reused": False}


# Routing: DXF work belongs on cad-cpu, where convert-file itself runs, so it is done
# inline (its tasks appear under this run, no extra flow run and no extra API round
# trips). PDF work goes to the GPU pool's deployment when one is served.
ROUTES = {"dxf": _convert_downloaded, "pdf": _route_pdf}


def _job_for(ledger: Any, job_id: str | None, key: str, source_uri: str,
             options: dict[str, Any] | None, callback_url: str | None,
             file_type: str | None) -> Any:
    if job_id:
        existing = ledger.get(job_id)
        if existing is not None:
            return existing
    job, _ = ledger.create_or_get(key, source_uri, job_id=job_id, file_type=file_type,
                                  options=options, callback_url=callback_url)
    return job


async def _claim(ledger: Any, job: Any, owner: str, fields: dict[str, Any]) -> bool:
    """Take the job for this run. A run that crashed may be taken over; a live one not."""
    from tasks.ledger import JobStatus, TransitionRefused

    # the claim is the flow's own decision (take the job or stand down), so it is a direct
    # ledger call rather than a task run (one task run less per file), retried on
    # transient errors like a task; RUNNING -> RUNNING by the same owner is allowed, so a
    # retry after a commit whose answer was lost takes the job again
    try:
        await aretry_transient(
            lambda: ledger.transition(job.job_id, JobStatus.RUNNING, owner=owner, **fields),
            what=f"claiming job {job.job_id}")
        return True
    except TransitionRefused:
        pass
    current = ledger.get(job.job_id)
    if current is None or current.status != JobStatus.RUNNING or not current.flow_run_id:
        return False
    if not await _run_is_dead(current.flow_run_id):
        return False
    get_run_logger().warning("job %s was held by run %s, which ended without finishing; "
                             "taking it over", job.job_id, current.flow_run_id)
    try:
        ledger.transition(job.job_id, JobStatus.RETRY, owner=current.flow_run_id,
                          stage="taken over", error_code="TIMEOUT_ERROR/OWNER_DIED",
                          error_message=f"run {current.flow_run_id} ended while RUNNING")
        ledger.transition(job.job_id, JobStatus.RUNNING, owner=owner, **fields)
        return True
    except TransitionRefused:
        return False


async def _record_success(ledger: Any, job_id: str, owner: str,
                          result: dict[str, Any]) -> None:
    """Mark the job SUCCESS with its result; a direct ledger call retried on transient
    errors (the final decision of the flow, like the claim: no task run for it)."""
    from tasks.ledger import JobStatus, TransitionRefused

    fields = {"stage": "done", "progress": 100.0, "result_uri": result["result_uri"],
              "preview_uri": result.get("preview_uri")}
    try:
        await aretry_transient(
            lambda: ledger.transition(job_id, JobStatus.SUCCESS, owner=owner, **fields),
            what=f"recording job {job_id} SUCCESS")
    except TransitionRefused:
        # fine when the row already holds this result: after a retry, the first attempt
        # committed and only its answer was lost
        current = ledger.get(job_id)
        if current is None or current.status != JobStatus.SUCCESS or \
                current.result_uri != result["result_uri"]:
            raise
    get_run_logger().info("job %s -> SUCCESS (%s)", job_id, result["result_uri"])


async def _run_is_dead(flow_run_id: str) -> bool:
    """True when the run that holds a job is over (crashed, failed, cancelled) or unknown."""
    from prefect.client.orchestration import get_client

    try:
        run_uuid = uuid.UUID(flow_run_id)
    except ValueError:
        return False  # a local, non-Prefect owner: cannot tell, so do not take over
    try:
        async with get_client() as client:
            run = await client.read_flow_run(run_uuid)
    except Exception:  # noqa: BLE001 - not found on this server: the owner is gone
        return True
    return bool(run.state and run.state.is_final())


@flow(name="convert-file", flow_run_name="convert {source_uri}", retries=0)
async def convert_file(source_uri: str, options: dict[str, Any] | None = None,
                       job_id: str | None = None, callback_url: str | None = None,
                       file_type: str | None = None,
                       dead_letter: bool = False) -> dict[str, Any]:
    """Convert one drawing: validate, record the job, route by real type, store, call back.

    Args:
        source_uri: ``s3://bucket/key``, ``file:///path`` or an absolute local path.
        options: conversion options (see ``cad2gltf.options.ConvertOptions``).
        job_id: the ledger job to update (created when absent or unknown).
        callback_url: POSTed the outcome when the job succeeds or fails for good.
        file_type: the type the requester claims; refused when the content disagrees.
        dead_letter: on final failure, publish the request and its error context to the
            dead-letter queue and mark the job DLQ (the RabbitMQ listener sets this).

    Returns:
        ``{"job_id", "flow_run_id", "status", "result_uri", "preview_uri", "summary"}``.

    Raises:
        ConversionError: the conversion failed for good (the job is FAILURE).
    """
    from tasks.artifacts import publish_artifacts
    from tasks.ledger import JobStatus
    from tasks.runtime import get_ledger, retry_options

    logger = get_run_logger()
    owner = _owner()
    ro = retry_options()
    ledger = get_ledger()
    job = None
    try:
        ConvertOptions.from_dict(options)  # refuse bad requests before touching anything
        if callback_url:
            check_callback_url(callback_url)
        dl = src = download_source.with_options(**ro)(source_uri, file_type)
        route = ROUTES.get(src["file_type"])
        if route is None:
            raise InvalidInputError(f"{src['file_type'].upper()} drawings are recognised but "
                                    f"not converted by this version", subcode="UNSUPPORTED_TYPE")
        key = idempotency_key(source_uri, dl["sha256"], options)
        job = _job_for(ledger, job_id, key, source_uri, options, callback_url, src["file_type"])
        if job.status == JobStatus.SUCCESS:
            from tasks.runtime import get_store

            if job.result_uri and get_store().exists(job.result_uri):
                logger.info("job %s already succeeded; returning its result", job.job_id)
                return {"job_id": job.job_id, "flow_run_id": owner, "status": "SUCCESS",
                        "result_uri": job.result_uri, "preview_uri": job.preview_uri,
                        "summary": None, "reused": True}
            # the result expired (cleanup) while the job row lived on: convert again into
            # the same deterministic keys; the finished job keeps its state
            logger.info("job %s succeeded but its result is gone; converting again",
                        job.job_id)
            result = await route(source_uri, dl["local_path"], dl["sha256"], src["name"],
                                 options, job_id=None, owner=owner)
            return {"job_id": job.job_id, "flow_run_id": owner, "status": "SUCCESS",
                    "result_uri": result["result_uri"],
                    "preview_uri": result.get("preview_uri"),
                    "summary": result.get("summary"), "reused": False}
        claimed = await _claim(ledger, job, owner, {
            "stage": "validated", "progress": 10.0, "file_type": src["file_type"],
            "source_sha256": dl["sha256"]})
        if not claimed:
            current = ledger.get(job.job_id)
            logger.warning("job %s is handled by run %s; this run does nothing", job.job_id,
                           current.flow_run_id if current else "?")
            return {"job_id": job.job_id, "flow_run_id": owner, "status": "DUPLICATE",
                    "result_uri": None, "preview_uri": None, "summary": None, "reused": False}
        result = await route(source_uri, dl["local_path"], dl["sha256"], src["name"], options,
                             job_id=job.job_id, owner=owner)
        await _record_success(ledger, job.job_id, owner, result)
        outcome = {"job_id": job.job_id, "flow_run_id": owner, "status": "SUCCESS",
                   "result_uri": result["result_uri"], "preview_uri": result.get("preview_uri"),
                   "summary": result.get("summary"), "reused": result.get("reused", False)}
        await publish_artifacts(job.job_id, source_uri, src, dl["sha256"], options_hash(options),
                          result)
    except BaseException as exc:
        err = classify(exc) if isinstance(exc, Exception) else None
        if err is None:
            raise
        job = _record_failure(ledger, job, key_hint=(source_uri, options, callback_url),
                              owner=owner, exc=err)
        err.details.update({"job_id": job.job_id if job else None, "flow_run_id": owner})
        if dead_letter and job is not None:
            job = _send_to_dead_letters(ledger, job, err, owner)
        if callback_url and err.subcode != "CALLBACK_NOT_ALLOWED":
            _callback_quietly(callback_url, {
                "job_id": job.job_id if job else None, "status": "FAILURE",
                "source_uri": source_uri, **err.to_dict()})
        logger.error("conversion of %s failed: [%s] %s", source_uri, err.full_code, err.message)
        raise err from None
    if callback_url:
        _callback_quietly(callback_url, {k: v for k, v in outcome.items() if k != "summary"})
    return outcome


def _record_failure(ledger: Any, job: Any, *, key_hint: tuple[str, Any, Any], owner: str,
                    exc: ConversionError) -> Any:
    """Mark the job FAILURE (creating a row for a request that never got one)."""
    from tasks.ledger import JobStatus, TransitionRefused

    try:
        if job is None:
            source_uri, options, callback_url = key_hint
            try:
                version = f"unread-{options_hash(options)}"
            except ConversionError:
                version, options = "bad-options", None
            job, _ = ledger.create_or_get(idempotency_key(source_uri, version, options),
                                          source_uri, options=options,
                                          callback_url=callback_url)
        current = ledger.get(job.job_id)
        if current is not None and current.status in (JobStatus.PENDING, JobStatus.RUNNING,
                                                      JobStatus.RETRY,
                                                      JobStatus.REPROCESSING):
            job = ledger.transition(job.job_id, JobStatus.FAILURE,
                                    owner=owner if current.status == JobStatus.RUNNING else None,
                                    stage="failed", **error_fields(exc))
    except TransitionRefused:
        pass
    except Exception as ledger_exc:  # noqa: BLE001 - the original error matters more
        get_run_logger().error("could not record the failure in the ledger: %s", ledger_exc)
    return job


def _send_to_dead_letters(ledger: Any, job: Any, err: ConversionError, owner: str) -> Any:
    """Publish the original request plus its error context to the dead-letter exchange
    (confirmed), then mark the job DLQ. Failing here leaves the job FAILURE, never lost."""
    from datetime import datetime

    from blocks.settings import get_settings
    from tasks.amqp import CODE_HEADER, REASON_HEADER, connect, declare_topology, publish
    from tasks.ledger import JobStatus
    from tasks.messages import ConversionRequest

    current = ledger.get(job.job_id) or job
    request = ConversionRequest(job_id=current.job_id, source_uri=current.source_uri,
                                file_type=current.file_type, callback_url=current.callback_url,
                                options=current.options or {},
                                metadata={k: v for k, v in (current.metadata or {}).items()
                                          if k not in ("trace", "priority")})
    letter = {**request.model_dump(), "error_code": err.code, "error_subcode": err.subcode,
              "error_message": err.message, "attempts": current.attempts,
              "failed_at": datetime.now(UTC).isoformat(), "flow_run_id": owner}
    settings = get_settings()
    try:
        conn = connect()
        try:
            channel = conn.channel()
            channel.confirm_delivery()
            declare_topology(channel, settings)
            publish(channel, settings.amqp_dead_letter_exchange, "",
                    json.dumps(letter, default=str).encode(),
                    headers={CODE_HEADER: err.full_code, REASON_HEADER: err.message[:1000]},
                    message_id=current.job_id)
        finally:
            conn.close()
        return ledger.transition(current.job_id, JobStatus.DLQ, stage="dead-lettered")
    except Exception as exc:  # noqa: BLE001
        get_run_logger().error("job %s could not be dead-lettered (%s); it stays FAILURE",
                               current.job_id, exc)
        return current


def _callback_quietly(url: str, payload: dict[str, Any]) -> None:
    from tasks.runtime import retry_options

    try:
        notify_callback.with_options(**retry_options())(url, payload)
    except Exception as exc:  # noqa: BLE001 - a failed callback does not undo a conversion
        get_run_logger().warning("callback to %s failed: %s", url, exc)
