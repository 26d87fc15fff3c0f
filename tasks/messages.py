"""Conversion requests as they travel over RabbitMQ: a versioned JSON body.

Current schema 1.1: ``schema_version``, ``job_id``, ``source_uri`` and optional
``file_type``, ``callback_url``, ``priority``, ``options``, ``metadata``. A 1.0 message
(no ``priority``/``metadata``) is upgraded with defaults; a message of another major
version is refused. Trace and request ids travel in AMQP headers, not in the body.

Pure code: no AMQP client, no Prefect.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cad2gltf.errors import InvalidInputError
from cad2gltf.options import ConvertOptions

__all__ = ["CURRENT_SCHEMA", "ConversionRequest", "MalformedMessage", "parse_request"]

CURRENT_SCHEMA = "1.1"
SUPPORTED_MAJOR = 1
MAX_BODY_BYTES = 256 * 1024


class MalformedMessage(InvalidInputError):
    """A message that can never be processed (bad JSON, schema, major version)."""

    def __init__(self, message: str, *, subcode: str = "MALFORMED_MESSAGE") -> None:
        super().__init__(message, subcode=subcode)


class ConversionRequest(BaseModel):
    """One conversion request (schema 1.1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: str = Field(CURRENT_SCHEMA, description="semver of the message schema")
    job_id: str = Field(..., min_length=1, max_length=128)
    source_uri: str = Field(..., min_length=1, max_length=2048)
    file_type: str | None = Field(None, pattern="^(dxf|pdf)$")
    callback_url: str | None = Field(None, max_length=2048)
    priority: int = Field(5, ge=0, le=9)
    options: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("source_uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        if "\x00" in v or not v.startswith(("s3://", "file:///", "/")):
            raise ValueError("source_uri must be s3://..., file:///... or an absolute path")
        return v

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, Any]) -> dict[str, Any]:
        ConvertOptions.from_dict(v)  # raises InvalidInputError for unknown or bad options
        return v

    def idempotency_key(self) -> str:
        """Business identity: source URI + content version + options.

        The content version is the object's ETag/version id when the publisher put it in
        ``metadata`` (``etag`` or ``version_id``), else the job id the publisher chose.
        """
        version = (self.metadata.get("version_id") or self.metadata.get("etag")
                   or f"job:{self.job_id}")
        opts = ConvertOptions.from_dict(self.options).canonical_json()
        raw = f"{self.source_uri}\n{version}\n{opts}"
        return "amqp-" + hashlib.sha256(raw.encode()).hexdigest()

    def run_key(self) -> str:
        """Idempotency key of the flow run: the business identity plus the reprocess
        round (``metadata.reprocess``), so a sweep's requeue makes exactly one new run."""
        return f"{self.idempotency_key()}:r{int(self.metadata.get('reprocess', 0) or 0)}"

    def to_body(self) -> bytes:
        return json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":")).encode()


def parse_request(body: bytes) -> ConversionRequest:
    """Validate a message body, upgrading 1.0 to 1.1.

    Raises:
        MalformedMessage: with subcode ``BAD_JSON``, ``UNSUPPORTED_SCHEMA`` or
            ``BAD_MESSAGE`` and a reason a person can act on.
    """
    if len(body) > MAX_BODY_BYTES:
        raise MalformedMessage(f"message body over {MAX_BODY_BYTES} bytes", subcode="BAD_MESSAGE")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedMessage(f"body is not UTF-8 JSON: {exc}", subcode="BAD_JSON") from None
    if not isinstance(data, dict):
        raise MalformedMessage("body is not a JSON object", subcode="BAD_JSON")
    version = str(data.get("schema_version", ""))
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        raise MalformedMessage(f"schema_version {version!r} is not semver",
                               subcode="UNSUPPORTED_SCHEMA") from None
    if major != SUPPORTED_MAJOR:
        raise MalformedMessage(f"schema major version {major} is not supported (this "
                               f"listener speaks {CURRENT_SCHEMA})", subcode="UNSUPPORTED_SCHEMA")
    if minor == 0:  # 1.0 -> 1.1: optional fields with their defaults
        data = {**data, "schema_version": CURRENT_SCHEMA}
        data.setdefault("priority", 5)
        data.setdefault("metadata", {})
    else:
        data = {**data, "schema_version": CURRENT_SCHEMA}
        # a newer minor may add optional fields this listener does not know: ignore them
        known = set(ConversionRequest.model_fields)
        data = {k: v for k, v in data.items() if k in known}
    try:
        return ConversionRequest(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise MalformedMessage(f"{where}: {first.get('msg')}", subcode="BAD_MESSAGE") from None
    except InvalidInputError as exc:
        raise MalformedMessage(exc.message, subcode="BAD_MESSAGE") from None
