"""The job ledger connection as a Prefect block (the DSN is a secret)."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

__all__ = ["JobStore"]


class JobStore(Block):
    """Where job state lives: ``postgresql://user:pass@host:5432/db`` in production,
    ``sqlite:///path/jobs.sqlite3`` for one machine."""

    _block_type_name = "cad2gltf Job Store"
    _block_type_slug = "cad2gltf-job-store"
    _description = "Connection to the cad2gltf job ledger (PostgreSQL or SQLite)."

    dsn: SecretStr = Field(
        ..., description="Database URL: postgresql://... or sqlite:///absolute/path.sqlite3.")
    connect_timeout_seconds: int = Field(
        5, ge=1, le=120, description="Give up connecting after this many seconds.")
