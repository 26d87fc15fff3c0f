"""Register the block types and create the pipeline's blocks from the environment.

    python -m blocks [--overwrite]

Reads (besides the ``CAD2GLTF_*`` settings):

* ``CAD2GLTF_STORAGE_URL`` (``s3://bucket/prefix`` or ``file:///path``),
  ``CAD2GLTF_S3_ENDPOINT_URL``, ``CAD2GLTF_S3_REGION`` and the standard
  ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``
  -> an ``AwsCredentials`` block ``cad2gltf-aws`` and an ``ObjectStorage`` block;
* ``CAD2GLTF_LEDGER_DSN`` (``postgresql://...``) -> a ``JobStore`` block.

Secrets go into the blocks as ``SecretStr``; nothing secret is printed.
"""

from __future__ import annotations

import argparse
import os
import sys

from blocks.jobstore import JobStore
from blocks.settings import get_settings
from blocks.storage import ObjectStorage


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="register cad2gltf blocks")
    ap.add_argument("--overwrite", action="store_true", help="replace existing blocks")
    args = ap.parse_args(argv)
    from prefect_aws import AwsCredentials

    for block_cls in (AwsCredentials, ObjectStorage, JobStore):
        block_cls.register_type_and_schema()
        print(f"registered block type {block_cls.get_block_type_slug()}")
    settings = get_settings()
    storage = ObjectStorage.from_settings(settings)
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        creds = AwsCredentials(aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                               aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
                               aws_session_token=os.environ.get("AWS_SESSION_TOKEN"),
                               region_name=settings.s3_region)
        creds.save("cad2gltf-aws", overwrite=args.overwrite)
        storage.aws_credentials = creds
        print("saved AwsCredentials block cad2gltf-aws")
    storage.save(settings.storage_block, overwrite=args.overwrite)
    print(f"saved ObjectStorage block {settings.storage_block}: {storage.base_url}")
    dsn = os.environ.get("CAD2GLTF_LEDGER_DSN")
    if dsn:
        JobStore(dsn=dsn).save(settings.ledger_block, overwrite=args.overwrite)
        print(f"saved JobStore block {settings.ledger_block}")
    else:
        print("CAD2GLTF_LEDGER_DSN not set: the embedded SQLite ledger stays in use")
    return 0


if __name__ == "__main__":
    sys.exit(main())
