"""What a person sees of a run in the Prefect UI: a markdown summary and the preview."""

from __future__ import annotations

import base64
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import acreate_image_artifact, acreate_markdown_artifact

__all__ = ["artifact_key", "publish_artifacts", "summary_markdown"]

_MAX_INLINE_PNG = 400 * 1024


def artifact_key(job_id: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes."""
    return "job-" + "".join(ch if ch.isalnum() else "-" for ch in job_id.lower())[:60]


def summary_markdown(job_id: str, source_uri: str, src: dict[str, Any], sha256: str,
                     opt_hash: str, result: dict[str, Any]) -> str:
    s = result.get("summary") or {}
    cats = s.get("nodes_by_category") or {}
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(cats.items()))
    timings = ", ".join(f"{k} {v:.2f} s" for k, v in (s.get("timings") or {}).items())
    warnings = "\n".join(f"- {w}" for w in (s.get("warnings") or [])) or "- none"
    reused = " (reused: same content and options were converted before)" \
        if result.get("reused") else ""
    return f"""# {src.get('name', source_uri)}{reused}

| | |
|---|---|
| job | `{job_id}` |
| source | `{source_uri}` ({src.get('file_type', '?').upper()}, {src.get('size', 0):,} bytes) |
| sha256 | `{sha256}` |
| units | {s.get('units')} |
| entities | {s.get('entities')} |
| vertices | {s.get('vertices')} |
| GLB | [{result.get('result_uri')}]({result.get('result_uri')}) ({s.get('glb_bytes', 0):,} bytes) |
| preview | {result.get('preview_uri')} |
| options | `{opt_hash}` |
| timings | {timings or '-'} |

## Elements

| category | nodes |
|---|---|
{rows}

## Warnings ({s.get('warning_count', 0)})

{warnings}
"""


async def publish_artifacts(job_id: str, source_uri: str, src: dict[str, Any], sha256: str,
                            opt_hash: str, result: dict[str, Any]) -> None:
    """Create the summary and preview artifacts of a run, concurrently (best effort,
    never raises)."""
    import asyncio

    logger = get_run_logger()
    key = artifact_key(job_id)

    async def summary() -> None:
        try:
            await acreate_markdown_artifact(
                markdown=summary_markdown(job_id, source_uri, src, sha256, opt_hash, result),
                key=key, description=f"conversion of {src.get('name', source_uri)}")
        except Exception as exc:  # noqa: BLE001 - an artifact never fails a conversion
            logger.warning("summary artifact not created: %s", exc)

    async def preview() -> None:
        uri = result.get("preview_uri")
        if not uri:
            return
        try:
            from tasks.runtime import get_store

            store = get_store()
            url = store.public_url(uri) if hasattr(store, "public_url") else None
            if url and url.startswith(("http://", "https://")):
                await acreate_image_artifact(image_url=url, key=f"{key}-preview",
                                             description="plan preview")
            else:
                png = store.read_head(uri, _MAX_INLINE_PNG + 1)
                if len(png) <= _MAX_INLINE_PNG:
                    data = base64.b64encode(png).decode()
                    await acreate_markdown_artifact(
                        markdown=f"![preview](data:image/png;base64,{data})",
                        key=f"{key}-preview", description="plan preview")
        except Exception as exc:  # noqa: BLE001
            logger.warning("preview artifact not created: %s", exc)

    await asyncio.gather(summary(), preview())
