"""What a person sees of a run in the Prefect UI: one markdown artifact with the
summary of the conversion and its preview image."""

from __future__ import annotations

import base64
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import acreate_markdown_artifact

__all__ = ["artifact_key", "preview_markdown", "publish_artifacts", "summary_markdown"]

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


def preview_markdown(png: bytes | None, preview_uri: str | None) -> str:
    """The preview section of the summary: the PNG inline (a data URI, so the Prefect UI
    shows it without access to the store), or where it is when it is too large."""
    if not preview_uri:
        return "## Preview\n\nnone (the drawing has no plan view)\n"
    if png is None or len(png) > _MAX_INLINE_PNG:
        return f"## Preview\n\n`{preview_uri}` (too large to show inline)\n"
    return ("## Preview\n\n![plan preview](data:image/png;base64,"
            f"{base64.b64encode(png).decode()})\n")


async def publish_artifacts(job_id: str, source_uri: str, src: dict[str, Any], sha256: str,
                            opt_hash: str, result: dict[str, Any]) -> None:
    """Publish the run's artifact: one markdown document with the summary and the preview
    image (one API call, not one per part). Best effort: never raises."""
    logger = get_run_logger()
    png = None
    uri = result.get("preview_uri")
    try:
        if uri:
            from tasks.runtime import get_store

            png = get_store().read_head(uri, _MAX_INLINE_PNG + 1)
    except Exception as exc:  # noqa: BLE001 - the summary still goes out without it
        logger.warning("preview %s not read for the artifact: %s", uri, exc)
    markdown = (summary_markdown(job_id, source_uri, src, sha256, opt_hash, result)
                + "\n" + preview_markdown(png, uri))
    try:
        await acreate_markdown_artifact(
            markdown=markdown, key=artifact_key(job_id),
            description=f"conversion of {src.get('name', source_uri)}")
    except Exception as exc:  # noqa: BLE001 - an artifact never fails a conversion
        logger.warning("summary artifact not created: %s", exc)
