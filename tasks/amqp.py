"""RabbitMQ plumbing (pika): connection, idempotent topology, confirmed publishing.

Topology (names are settings):

* ``cad2gltf`` - durable topic exchange for requests;
* ``cad2gltf.convert`` - quorum work queue bound to it, ``x-delivery-limit`` deliveries
  before RabbitMQ dead-letters a message into ``cad2gltf.dlx``;
* ``cad2gltf.dlx`` - fanout dead-letter exchange, feeding ``cad2gltf.dead-letters``, a
  durable classic queue without TTL or delivery limit.
"""

from __future__ import annotations

import os
from typing import Any

from blocks.settings import PipelineSettings, get_settings
from cad2gltf.errors import NetworkError

__all__ = ["amqp_url", "connect", "declare_topology", "delete_topology", "publish"]

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
REASON_HEADER = "x-cad2gltf-reason"
CODE_HEADER = "x-cad2gltf-error-code"
FAILED_AT_HEADER = "x-cad2gltf-failed-at"


def amqp_url(settings: PipelineSettings | None = None) -> str:
    """The broker URL: ``CAD2GLTF_AMQP_URL``, else the RabbitMQ block, else localhost."""
    url = os.environ.get("CAD2GLTF_AMQP_URL")
    if url:
        return url
    from tasks.runtime import _load_block

    from blocks.rabbitmq import RabbitMQConnection

    settings = settings or get_settings()
    block = _load_block(RabbitMQConnection, settings.amqp_block)
    return block.url.get_secret_value() if block is not None else DEFAULT_URL


def connect(url: str | None = None, *, heartbeat: int = 30) -> Any:
    """A blocking pika connection (``amqp://`` or ``amqps://``).

    Raises:
        NetworkError: ``BROKER_UNREACHABLE`` (transient).
    """
    import pika

    params = pika.URLParameters(url or amqp_url())
    params.heartbeat = heartbeat
    params.blocked_connection_timeout = 60
    params.connection_attempts = 1
    params.socket_timeout = 5
    try:
        return pika.BlockingConnection(params)
    except pika.exceptions.AMQPError as exc:
        raise NetworkError(f"RabbitMQ unreachable: {type(exc).__name__}: {exc}",
                           subcode="BROKER_UNREACHABLE") from None


def declare_topology(channel: Any, settings: PipelineSettings | None = None) -> None:
    """Declare exchanges and queues; idempotent (same arguments every time)."""
    s = settings or get_settings()
    channel.exchange_declare(s.amqp_exchange, exchange_type="topic", durable=True)
    channel.exchange_declare(s.amqp_dead_letter_exchange, exchange_type="fanout", durable=True)
    # a classic durable queue: no TTL, and no delivery limit (quorum queues bring one),
    # because the sweep reads dead letters and puts back the ones it keeps
    channel.queue_declare(s.amqp_dead_letter_queue, durable=True,
                          arguments={"x-queue-type": "classic"})
    channel.queue_bind(s.amqp_dead_letter_queue, s.amqp_dead_letter_exchange)
    channel.queue_declare(s.amqp_queue, durable=True, arguments={
        "x-queue-type": "quorum",
        "x-delivery-limit": s.amqp_delivery_limit,
        "x-dead-letter-exchange": s.amqp_dead_letter_exchange,
    })
    channel.queue_bind(s.amqp_queue, s.amqp_exchange, routing_key=s.amqp_routing_key)


def delete_topology(channel: Any, settings: PipelineSettings | None = None) -> None:
    """Remove what :func:`declare_topology` declared (tests and benchmarks clean up)."""
    s = settings or get_settings()
    for queue in (s.amqp_queue, s.amqp_dead_letter_queue):
        channel.queue_delete(queue)
    for exchange in (s.amqp_exchange, s.amqp_dead_letter_exchange):
        channel.exchange_delete(exchange)


def publish(channel: Any, exchange: str, routing_key: str, body: bytes, *,
            headers: dict[str, Any] | None = None, priority: int | None = None,
            message_id: str | None = None) -> None:
    """Publish a persistent JSON message; with confirms on, returns once the broker has it.

    Raises:
        NetworkError: the broker refused or lost it (``PUBLISH_NOT_CONFIRMED``).
    """
    import pika

    props = pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                 headers=headers or {}, priority=priority,
                                 message_id=message_id)
    try:
        channel.basic_publish(exchange, routing_key, body, properties=props, mandatory=True)
    except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
        raise NetworkError(f"publish not confirmed: {exc}",
                           subcode="PUBLISH_NOT_CONFIRMED") from None
