"""Non-secret knobs of the pipeline, from environment variables (``CAD2GLTF_*``).

Secrets (database passwords, object-store keys, broker credentials) never live here:
they live in blocks (:mod:`blocks.storage`, :mod:`blocks.jobstore`) as ``SecretStr``.
The embedded defaults run everything on one machine: local files under
``CAD2GLTF_HOME`` and a SQLite job ledger.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["PipelineSettings", "get_settings"]


def _home() -> Path:
    return Path.home() / ".cad2gltf"


class PipelineSettings(BaseSettings):
    """Pipeline configuration. Every field can be set as ``CAD2GLTF_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="CAD2GLTF_", extra="ignore")

    home: Path = Field(default_factory=_home,
                       description="Folder for the embedded defaults (store, ledger, temp).")
    storage_url: str | None = Field(
        None, description="Where results go: file:///path or s3://bucket/prefix. "
                          "Default: file://<home>/store.")
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, moto ...); None for AWS itself.")
    s3_region: str | None = Field(None, description="S3 region name.")
    storage_block: str = Field("cad2gltf-storage",
                               description="Name of the ObjectStorage block, used when it exists.")
    ledger_block: str = Field("cad2gltf-ledger",
                              description="Name of the JobStore block, used when it exists.")
    work_dir: Path | None = Field(None, description="Local scratch space for conversions.")

    # retries: defaults from the original design (3 retries, 60 s doubling, cap 600 s)
    task_retries: int = Field(3, ge=0, le=20, description="Retries of transient failures.")
    retry_backoff_seconds: float = Field(60.0, ge=0.0, le=3600.0,
                                         description="First retry delay; doubles per retry.")
    retry_backoff_max_seconds: float = Field(600.0, ge=0.0, le=86400.0,
                                             description="Upper bound of one retry delay.")
    retry_jitter_factor: float = Field(0.2, ge=0.0, le=1.0,
                                       description="Random extra delay, as a fraction.")

    # conversion limits and defaults
    dxf_max_bytes: int = Field(100 * 1024 * 1024, gt=0, description="DXF size limit.")
    pdf_max_bytes: int = Field(500 * 1024 * 1024, gt=0, description="PDF size limit.")
    conversion_timeout_seconds: float = Field(600.0, gt=0, description="Per-file time limit.")
    wall_height: float = Field(2.7, gt=0, le=100, description="Default wall height (m).")
    wall_thickness: float = Field(0.15, gt=0, le=5, description="Default wall thickness (m).")

    # retention (used by the cleanup flow)
    result_retention_days: int = Field(30, ge=1, description="Results and previews kept.")
    ledger_retention_days: int = Field(90, ge=1, description="Finished ledger rows kept.")

    # callbacks
    callback_allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1"],
        description="Hosts a callback URL may point at.")
    callback_timeout_seconds: float = Field(5.0, gt=0, le=120)

    # RabbitMQ topology (the connection URL is a secret: block or CAD2GLTF_AMQP_URL)
    amqp_exchange: str = Field("cad2gltf", description="Durable topic exchange for requests.")
    amqp_routing_key: str = Field("convert.request", description="Routing key of requests.")
    amqp_queue: str = Field("cad2gltf.convert", description="Quorum work queue.")
    amqp_delivery_limit: int = Field(5, ge=1, le=100,
                                     description="Deliveries before RabbitMQ dead-letters.")
    amqp_dead_letter_exchange: str = Field("cad2gltf.dlx", description="Dead-letter exchange.")
    amqp_dead_letter_queue: str = Field("cad2gltf.dead-letters",
                                        description="Durable dead-letter queue, no TTL.")
    amqp_prefetch: int = Field(4, ge=1, le=100, description="Unacked deliveries in hand.")
    amqp_block: str = Field("cad2gltf-rabbitmq", description="Name of the RabbitMQ block.")
    listener_deployment: str = Field("convert-file/rabbitmq",
                                     description="Deployment the listener starts runs of.")
    listener_backoff_max_seconds: float = Field(30.0, gt=0, le=3600,
                                                description="Longest wait after a failure.")

    # dead-letter sweep
    dlq_retry_after_transient_seconds: float = Field(
        300.0, ge=0, description="STORAGE/NETWORK errors are requeued after this long.")
    dlq_retry_after_timeout_seconds: float = Field(
        600.0, ge=0, description="TIMEOUT errors are requeued after this long.")
    dlq_max_reprocess: int = Field(1, ge=0, le=10, description="Requeues per job at most.")
    dlq_processing_expiry_days: float = Field(7.0, gt=0,
                                              description="Processing failures kept this long.")

    # routing
    pdf_route: str = Field(
        "auto", pattern="^(auto|gpu|cpu)$",
        description="Where convert-file sends PDF work: gpu (the convert-pdf/gpu deployment "
                    "on cad-gpu), cpu (inline, in the convert-file run on cad-cpu), auto (gpu "
                    "when a worker of the GPU pool is online, else cpu).")
    gpu_pool: str = Field("cad-gpu", description="Work pool of the GPU deployments.")
    pdf_deployment: str = Field("convert-pdf/gpu", description="Deployment for PDF work on "
                                                               "the GPU pool.")
    pdf_detect_batch_pages: int = Field(
        8, ge=1, le=256,
        description="Pages per detector call in the PDF flow's detect_symbols tasks; batches "
                    "span chunk borders so a GPU stays busy. The default equals the reader's "
                    "chunk, so the tasks batch exactly as the plain converter does.")

    def resolved_storage_url(self) -> str:
        return self.storage_url or (self.home / "store").resolve().as_uri()

    def resolved_ledger_dsn(self) -> str:
        return f"sqlite:///{(self.home / 'jobs.sqlite3').resolve()}"

    def resolved_work_dir(self) -> Path:
        return (self.work_dir or self.home / "work").resolve()

    def fingerprint(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]


@lru_cache(maxsize=1)
def get_settings() -> PipelineSettings:
    """The process's settings (read once; tests clear the cache with ``cache_clear``)."""
    return PipelineSettings()
