"""Dead letters: what is in the dead-letter queue, and what the sweep does with it.

A dead letter is either a request the listener refused (the original body, with
``x-cad2gltf-error-code`` / ``x-cad2gltf-reason`` / ``x-cad2gltf-failed-at`` headers)
or a run that failed for good (the request plus ``error_code``, ``error_message``,
``attempts``, ``failed_at``, ``flow_run_id`` in the body).

Policy (:func:`decide`, thresholds are settings):

* ``VALIDATION_ERROR`` - dropped at once (the ledger keeps the record);
* ``STORAGE_ERROR`` / ``NETWORK_ERROR`` - requeued once, 5 minutes after the failure;
* ``TIMEOUT_ERROR`` - requeued once, 10 minutes after the failure;
* ``PARSING_ERROR`` and everything else - kept for a person;
* kept letters expire: validation failures after 24 hours, processing failures after
  7 days.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from prefect import task

from blocks.settings import PipelineSettings, get_settings
from tasks.ledger import ADVISORY_LOCK_KEYS

__all__ = ["DeadLetter", "Decision", "decide", "read_letter", "requeue_letter", "sweep_once",
           "take_letters"]

TRANSIENT = {"STORAGE_ERROR", "NETWORK_ERROR"}
SWEEP_LOCK_KEY = ADVISORY_LOCK_KEYS["sweep"]


@dataclass
class DeadLetter:
    """One message of the dead-letter queue, parsed as far as it can be."""

    delivery_tag: int
    body: bytes
    headers: dict[str, Any]
    error_code: str
    reason: str
    failed_at: datetime | None
    job_id: str | None
    request: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "error_code": self.error_code, "reason": self.reason,
                "failed_at": self.failed_at.isoformat() if self.failed_at else None,
                "source_uri": self.request.get("source_uri")}


@dataclass(frozen=True)
class Decision:
    action: str  # "requeue" | "drop" | "keep"
    why: str


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def read_letter(delivery_tag: int, headers: dict[str, Any] | None, body: bytes) -> DeadLetter:
    """Parse a dead letter; never raises (an unreadable body is kept for a person)."""
    from tasks.amqp import CODE_HEADER, FAILED_AT_HEADER, REASON_HEADER

    headers = dict(headers or {})
    try:
        data = json.loads(body.decode("utf-8"))
        data = data if isinstance(data, dict) else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = {}
    code = str(data.get("error_code") or headers.get(CODE_HEADER) or "UNKNOWN")
    reason = str(data.get("error_message") or headers.get(REASON_HEADER) or "")
    failed_at = _parse_time(data.get("failed_at") or headers.get(FAILED_AT_HEADER))
    if failed_at is None and headers.get("x-first-death-time"):  # dead-lettered by RabbitMQ
        failed_at = _parse_time(headers["x-first-death-time"])
    if not data.get("error_code") and headers.get("x-death") and code == "UNKNOWN":
        code = "NETWORK_ERROR/DELIVERY_LIMIT"  # RabbitMQ's delivery limit: kept retrying
    request = {k: data[k] for k in ("schema_version", "job_id", "source_uri", "file_type",
                                    "callback_url", "priority", "options", "metadata")
               if k in data}
    return DeadLetter(delivery_tag, body, headers, code.split("/", 1)[0] if code else "UNKNOWN",
                      reason, failed_at, data.get("job_id"), request)


def decide(letter: DeadLetter, reprocess_count: int, now: datetime,
           settings: PipelineSettings) -> Decision:
    """The sweep's policy for one letter (see module docstring)."""
    age = (now - letter.failed_at).total_seconds() if letter.failed_at else 0.0
    code = letter.error_code
    if code == "VALIDATION_ERROR":
        return Decision("drop", "validation failures are not retried; the ledger keeps them")
    if age > settings.dlq_processing_expiry_days * 86400:
        return Decision("drop", f"expired after {settings.dlq_processing_expiry_days:g} days")
    if code in TRANSIENT or code == "TIMEOUT_ERROR":
        wait = settings.dlq_retry_after_timeout_seconds if code == "TIMEOUT_ERROR" \
            else settings.dlq_retry_after_transient_seconds
        if not letter.request.get("source_uri") or not letter.job_id:
            return Decision("keep", "not a complete request; needs a person")
        if reprocess_count >= settings.dlq_max_reprocess:
            return Decision("keep", f"already reprocessed {reprocess_count} time(s)")
        if age < wait:
            return Decision("keep", f"requeue after {wait:g} s (age {age:.0f} s)")
        return Decision("requeue", f"{code}: transient, retried once after {wait:g} s")
    return Decision("keep", f"{code} needs a person")


def take_letters(channel: Any, settings: PipelineSettings,
                 max_messages: int | None = None) -> list[DeadLetter]:
    """Take letters off the dead-letter queue *unacked*: each must then be acked (done
    with) or nacked back; closing the channel returns whatever was neither."""
    taken: list[DeadLetter] = []
    while max_messages is None or len(taken) < max_messages:
        method, props, body = channel.basic_get(settings.amqp_dead_letter_queue, auto_ack=False)
        if method is None:
            break
        taken.append(read_letter(method.delivery_tag, props.headers, body))
    return taken


def requeue_letter(channel: Any, letter: Any, settings: Any, ledger: Any) -> None:
    """Publish the request again (next reprocess round) and mark the job REPROCESSING."""
    from tasks.amqp import publish
    from tasks.ledger import JobStatus
    from tasks.messages import ConversionRequest

    job = ledger.get(letter.job_id) if letter.job_id else None
    rounds = (job.reprocess_count if job else 0) + 1
    req = ConversionRequest(**{**letter.request,
                               "metadata": {**letter.request.get("metadata", {}),
                                            "reprocess": rounds}})
    if job is not None and job.status in (JobStatus.DLQ, JobStatus.FAILURE):
        ledger.transition(job.job_id, JobStatus.REPROCESSING, stage="requeued by sweep")
    publish(channel, settings.amqp_exchange, settings.amqp_routing_key, req.to_body(),
            headers={"x-request-id": req.job_id, "x-cad2gltf-reprocess": rounds},
            priority=req.priority, message_id=req.job_id)


@task(name="sweep_dead_letter_queue")
def sweep_once(max_messages: int = 10_000, now: datetime | None = None) -> dict[str, Any]:
    """Take every letter off the dead-letter queue (unacked), decide, act, and put the
    kept ones back at the end, so none is read twice in one sweep and none is lost."""
    from tasks.amqp import connect, declare_topology
    from tasks.runtime import get_ledger

    settings = get_settings()
    ledger = get_ledger(settings)
    now = now or datetime.now(timezone.utc)
    counts = {"requeue": 0, "drop": 0, "keep": 0, "letters": []}
    conn = connect()
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        declare_topology(channel, settings)
        taken = take_letters(channel, settings, max_messages)
        for letter in taken:
            job = ledger.get(letter.job_id) if letter.job_id else None
            decision = decide(letter, job.reprocess_count if job else 0, now, settings)
            if decision.action == "requeue":
                requeue_letter(channel, letter, settings, ledger)
                channel.basic_ack(letter.delivery_tag)
            elif decision.action == "drop":
                channel.basic_ack(letter.delivery_tag)
            counts[decision.action] += 1
            counts["letters"].append({**letter.summary(), "action": decision.action,
                                      "why": decision.why})
        for letter, done in zip(taken, counts["letters"]):
            if done["action"] == "keep":  # back in the queue, after all were read
                channel.basic_nack(letter.delivery_tag, requeue=True)
    finally:
        conn.close()  # anything not acked returns to the queue
    return counts
