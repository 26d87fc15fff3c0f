"""The RabbitMQ listener: one ``convert-file`` flow run per conversion request.

For each delivery: validate the message; write or find the job row by its idempotency
key; create the flow run of the listener deployment with that key (Prefect returns the
existing run for a key it has seen, so a redelivered or duplicated message never makes
a second run); only then ack. A malformed message is published, with its reason in the
``x-cad2gltf-reason`` header, to the dead-letter exchange (confirmed) and then acked,
so it is never lost and never retried. When PostgreSQL or Prefect cannot be reached the
message is nacked back to the queue and the listener backs off (exponentially, capped);
the quorum queue's delivery limit dead-letters a message that keeps failing.

Run it as a service (``cad2gltf listen``); a broker restart makes it reconnect and
resume. SIGTERM or SIGINT: the message in hand is finished, nothing else is acked, and
prefetched deliveries go back to the queue when the channel closes.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import datetime, timezone
from typing import Any

from blocks.settings import PipelineSettings, get_settings
from cad2gltf.errors import ConversionError, InvalidInputError, classify
from tasks.amqp import (
    CODE_HEADER,
    FAILED_AT_HEADER,
    REASON_HEADER,
    amqp_url,
    connect,
    declare_topology,
    publish,
)
from tasks.messages import ConversionRequest, MalformedMessage, parse_request

__all__ = ["Listener"]

log = logging.getLogger("cad2gltf.listener")
TRACE_HEADERS = ("x-trace-id", "x-request-id", "traceparent")


class Listener:
    """Consumes conversion requests and starts flow runs (see module docstring)."""

    def __init__(self, settings: PipelineSettings | None = None, *,
                 deployment: str | None = None, url: str | None = None) -> None:
        self.settings = settings or get_settings()
        self.deployment = deployment or self.settings.listener_deployment
        self.url = url
        self.stopping = threading.Event()
        self.handled = 0
        self.started_runs = 0
        self.dead_lettered = 0
        self._backoff = 0.0

    # -- lifecycle ---------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def stop(self) -> None:
        log.info("stopping after the message in hand")
        self.stopping.set()

    def run(self, *, max_messages: int | None = None, idle_exit: float | None = None) -> int:
        """Consume until stopped (or ``max_messages`` handled, or idle ``idle_exit`` s).

        Returns:
            The number of messages handled.
        """
        import pika

        idle_since = time.monotonic()
        while not self.stopping.is_set():
            conn = None
            try:
                conn = connect(self.url or amqp_url(self.settings))
                channel = conn.channel()
                channel.confirm_delivery()
                declare_topology(channel, self.settings)
                channel.basic_qos(prefetch_count=self.settings.amqp_prefetch)
                log.info("consuming %s", self.settings.amqp_queue)
                for method, props, body in channel.consume(self.settings.amqp_queue,
                                                           inactivity_timeout=0.5):
                    if self.stopping.is_set():
                        break
                    if method is None:
                        if idle_exit is not None and time.monotonic() - idle_since > idle_exit:
                            self.stopping.set()
                        continue
                    self.handle(channel, method, props, body)
                    idle_since = time.monotonic()
                    if max_messages is not None and self.handled >= max_messages:
                        self.stopping.set()
                # unacked prefetched deliveries return to the queue with the channel
                channel.cancel()
                conn.close()
            except (pika.exceptions.AMQPError, ConversionError, OSError) as exc:
                log.warning("broker connection lost (%s); reconnecting", exc)
                if conn is not None and conn.is_open:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                self._sleep_backoff()
        return self.handled

    # -- one delivery --------------------------------------------------------------------

    def handle(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        headers = dict(props.headers or {})
        trace = {k: str(headers[k]) for k in TRACE_HEADERS if headers.get(k)}
        try:
            request = parse_request(body)
        except MalformedMessage as exc:
            self._dead_letter(channel, body, props, exc)
            channel.basic_ack(method.delivery_tag)
            self.handled += 1
            return
        try:
            self.start_run(request, trace)
        except InvalidInputError as exc:  # e.g. a job id reused for another request
            self._dead_letter(channel, body, props, exc)
            channel.basic_ack(method.delivery_tag)
            self.handled += 1
            return
        except Exception as exc:  # noqa: BLE001 - PostgreSQL or Prefect unreachable
            err = classify(exc)
            log.warning("cannot start a run for job %s now (%s); message goes back",
                        request.job_id, err)
            channel.basic_nack(method.delivery_tag, requeue=True)
            self._sleep_backoff()
            return
        channel.basic_ack(method.delivery_tag)
        self.handled += 1
        self._backoff = 0.0

    def start_run(self, request: ConversionRequest, trace: dict[str, str]) -> str:
        """Record the job and create its flow run (idempotent); returns the run id."""
        from prefect.deployments import run_deployment

        from tasks.runtime import get_ledger

        key = request.idempotency_key()
        job, _ = get_ledger(self.settings).create_or_get(
            key, request.source_uri, job_id=request.job_id, file_type=request.file_type,
            options=request.options, callback_url=request.callback_url,
            metadata={**request.metadata, "trace": trace, "priority": request.priority},
            trace_id=trace.get("x-trace-id") or trace.get("x-request-id"))
        tags = ["rabbitmq"] + [f"{k}:{v}"[:100] for k, v in trace.items()]
        run = run_deployment(
            name=self.deployment, timeout=0, as_subflow=False,
            idempotency_key=request.run_key(), tags=tags,
            parameters={"source_uri": request.source_uri, "options": request.options or None,
                        "job_id": job.job_id, "callback_url": request.callback_url,
                        "file_type": request.file_type, "dead_letter": True})
        self.started_runs += 1
        log.info("job %s -> flow run %s", job.job_id, run.id)
        return str(run.id)

    def _dead_letter(self, channel: Any, body: bytes, props: Any, exc: ConversionError) -> None:
        headers = dict(props.headers or {})
        headers[REASON_HEADER] = exc.message[:1000]
        headers[CODE_HEADER] = exc.full_code
        headers[FAILED_AT_HEADER] = datetime.now(timezone.utc).isoformat()
        publish(channel, self.settings.amqp_dead_letter_exchange, "", body, headers=headers,
                message_id=props.message_id)
        self.dead_lettered += 1
        log.warning("dead-lettered a message: [%s] %s", exc.full_code, exc.message)

    def _sleep_backoff(self) -> None:
        self._backoff = min(max(self._backoff * 2, 0.5), self.settings.listener_backoff_max_seconds)
        self.stopping.wait(self._backoff)
