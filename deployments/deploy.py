"""Create the work pools and deploy every flow of ``deployments/prefect.yaml``.

    python deployments/deploy.py [--pool-type cad2gltf-prefork] [--skip-deploy]

Runs against the Prefect API of the environment (``PREFECT_API_URL``). Idempotent:
existing pools are kept (their concurrency limits updated), deployments are upserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POOLS = {
    # name: (description, concurrency limit)
    "cad-cpu": ("DXF conversions and maintenance flows (CPU)", 10),
    "cad-gpu": ("PDF conversions with the symbol detector (GPU when present)", 4),
}


async def ensure_pools(pool_type: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        for name, (description, limit) in POOLS.items():
            try:
                await client.read_work_pool(name)
                await client.update_work_pool(name, WorkPoolUpdate(
                    description=description, concurrency_limit=limit))
                print(f"work pool {name}: exists (limit {limit})")
            except ObjectNotFound:
                await client.create_work_pool(WorkPoolCreate(
                    name=name, type=pool_type, description=description,
                    concurrency_limit=limit))
                print(f"work pool {name}: created ({pool_type}, limit {limit})")


def deploy_all() -> int:
    env = dict(os.environ)
    env.setdefault("CAD2GLTF_APP_DIR", str(ROOT))
    cmd = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all",
           "--prefect-file", str(ROOT / "deployments" / "prefect.yaml")]
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool-type", default="cad2gltf-prefork",
                    help="work pool type: cad2gltf-prefork (default: warm children, see "
                         "workers/), process (Prefect's stock worker), docker, kubernetes ...")
    ap.add_argument("--skip-deploy", action="store_true", help="only create the pools")
    args = ap.parse_args()
    asyncio.run(ensure_pools(args.pool_type))
    return 0 if args.skip_deploy else deploy_all()


if __name__ == "__main__":
    sys.exit(main())
