"""The RabbitMQ connection as a Prefect block (the URL carries credentials)."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

__all__ = ["RabbitMQConnection"]


class RabbitMQConnection(Block):
    """Broker connection: ``amqp://user:pass@host:5672/vhost`` or ``amqps://...``."""

    _block_type_name = "cad2gltf RabbitMQ Connection"
    _block_type_slug = "cad2gltf-rabbitmq-connection"
    _description = "Connection to the RabbitMQ broker that carries conversion requests."

    url: SecretStr = Field(..., description="amqp:// or amqps:// URL with credentials.")
    heartbeat_seconds: int = Field(30, ge=0, le=600, description="AMQP heartbeat interval.")
