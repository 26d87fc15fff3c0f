"""The ``ObjectStorage`` block: where results go, and the credentials to get there.

Blocks sit below tasks, so this module does not build the store itself: tasks call
``ObjectStore(**block.store_kwargs())`` (``tasks.storage.ObjectStore``). Secrets live in
the nested ``prefect_aws.AwsCredentials`` block and are unwrapped only by
:meth:`ObjectStorage.store_kwargs`; ``repr()``/``str()`` of the block never show them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from prefect.blocks.core import Block
from prefect_aws import AwsCredentials
from pydantic import Field, SecretStr

from blocks.settings import PipelineSettings, get_settings

__all__ = ["ObjectStorage"]

_MASK = "**********"


class _Redacted:
    """Stands in for a value in ``repr()``: prints ``text`` as is."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _redacted_credentials(creds: AwsCredentials) -> _Redacted:
    key_id = creds.aws_access_key_id
    shown = {
        "aws_access_key_id": repr(f"...{key_id[-4:]}") if key_id and len(key_id) > 8
        else (repr(_MASK) if key_id else "None"),
        "aws_secret_access_key": f"SecretStr('{_MASK}')" if creds.aws_secret_access_key
        else "None",
        "aws_session_token": repr(_MASK) if creds.aws_session_token else "None",
        "profile_name": repr(creds.profile_name),
        "region_name": repr(creds.region_name),
    }
    return _Redacted("AwsCredentials(" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")")


class ObjectStorage(Block):
    """Object storage for inputs and results: a ``file://`` folder or an S3 bucket."""

    _block_type_name = "cad2gltf Object Storage"
    _block_type_slug = "cad2gltf-object-storage"
    _description = ("Where cad2gltf reads drawings and writes glTF results: "
                    "file:///abs/dir or s3://bucket/prefix on AWS or an S3-compatible "
                    "endpoint (MinIO ...), with credentials from an AWS Credentials block.")

    base_url: str = Field(
        ..., description="Base URL of the store: file:///absolute/dir or s3://bucket/prefix.")
    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, moto ...); empty for AWS S3.")
    region: str | None = Field(
        None, description="S3 region name; empty to use the credentials' region or "
                          "botocore's default.")
    aws_credentials: AwsCredentials | None = Field(
        None, description="Access key, secret key and optional session token; empty to "
                          "let botocore find credentials (environment, profile, role).")

    def __repr_args__(self) -> list[tuple[str | None, Any]]:
        args = super().__repr_args__()
        return [(k, _redacted_credentials(v) if k == "aws_credentials" and v is not None
                 else v) for k, v in args]

    def store_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``tasks.storage.ObjectStore``, secrets unwrapped.

        The only place secrets leave their wrappers: pass the result straight to
        ``ObjectStore`` and never log it.
        """
        creds = self.aws_credentials
        key = secret = token = None
        region = self.region
        endpoint_url = self.endpoint_url
        if creds is not None:
            key = creds.aws_access_key_id
            if creds.aws_secret_access_key is not None:
                secret = creds.aws_secret_access_key.get_secret_value()
            token = creds.aws_session_token
            region = region or creds.region_name
            endpoint_url = endpoint_url or creds.aws_client_parameters.endpoint_url
        return {"base_url": self.base_url, "endpoint_url": endpoint_url or None,
                "key": key or None, "secret": secret or None, "token": token or None,
                "region": region or None}

    @classmethod
    def from_settings(cls, settings: PipelineSettings | None = None,
                      environ: Mapping[str, str] | None = None) -> ObjectStorage:
        """An unsaved block for the embedded default.

        Args:
            settings: pipeline settings (default: :func:`blocks.settings.get_settings`):
                ``storage_url`` (else ``file://<home>/store``), ``s3_endpoint_url``,
                ``s3_region``.
            environ: where to read ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
                ``AWS_SESSION_TOKEN`` and ``AWS_REGION``/``AWS_DEFAULT_REGION``
                (default: ``os.environ``). Without an access key the block has no
                credentials and botocore's own chain applies.
        """
        settings = settings or get_settings()
        env = os.environ if environ is None else environ
        region = settings.s3_region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        creds = None
        if env.get("AWS_ACCESS_KEY_ID"):
            secret = env.get("AWS_SECRET_ACCESS_KEY")
            creds = AwsCredentials(
                aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=SecretStr(secret) if secret else None,
                aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
                region_name=region or None)
        return cls(base_url=settings.resolved_storage_url(),
                   endpoint_url=settings.s3_endpoint_url, region=region or None,
                   aws_credentials=creds)
