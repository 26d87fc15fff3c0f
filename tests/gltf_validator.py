"""Run the Khronos glTF validator (via ``tools/gltf-validator/validate.mjs``) from tests.

Every GLB the test suite produces should go through :func:`assert_valid_glb`
(or :func:`validate_many` for large batches, which starts node only once).

The validator is a node package pinned in ``tools/gltf-validator``; install it
with ``npm ci --prefix tools/gltf-validator``. When node or the package is
missing, :class:`ValidatorUnavailable` is raised: tests fail, they never skip.

Environment overrides (optional):

* ``CAD2GLTF_NODE`` -- path of the node executable (default: ``node`` on PATH,
  then ``/usr/bin/node``).
* ``CAD2GLTF_GLTF_VALIDATOR_DIR`` -- folder holding ``validate.mjs`` and
  ``node_modules`` (default: ``<repo>/tools/gltf-validator``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

PathLike = Union[str, "os.PathLike[str]"]
Report = dict[str, Any]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VALIDATOR_DIR = REPO_ROOT / "tools" / "gltf-validator"
INSTALL_HINT = "run `npm ci --prefix tools/gltf-validator` from the repository root"

#: Seconds allowed for one node run (validate_many may cover hundreds of files).
DEFAULT_TIMEOUT = 600.0


class ValidatorUnavailable(RuntimeError):
    """Raised when node or the ``gltf-validator`` npm package cannot be found."""


@dataclass(frozen=True)
class _Tool:
    """Resolved locations needed to run the validator CLI."""

    node: str
    script: Path


def _find_node() -> str:
    """Return the node executable, or raise :class:`ValidatorUnavailable`."""
    override = os.environ.get("CAD2GLTF_NODE")
    if override:
        found = shutil.which(override)
        if found is None:
            raise ValidatorUnavailable(
                f"CAD2GLTF_NODE={override!r} is not an executable node; "
                f"install node (v18+) and {INSTALL_HINT}"
            )
        return found
    for candidate in ("node", "/usr/bin/node"):
        found = shutil.which(candidate)
        if found is not None:
            return found
    raise ValidatorUnavailable(
        f"node was not found on PATH; install node (v18+) and {INSTALL_HINT}"
    )


def _find_tool() -> _Tool:
    """Locate node and ``validate.mjs`` with its installed ``node_modules``."""
    folder = Path(
        os.environ.get("CAD2GLTF_GLTF_VALIDATOR_DIR") or DEFAULT_VALIDATOR_DIR
    )
    script = folder / "validate.mjs"
    if not script.is_file():
        raise ValidatorUnavailable(f"glTF validator CLI not found at {script}")
    package = folder / "node_modules" / "gltf-validator" / "package.json"
    if not package.is_file():
        raise ValidatorUnavailable(
            f"the gltf-validator npm package is not installed in {folder / 'node_modules'}; "
            f"{INSTALL_HINT}"
        )
    return _Tool(node=_find_node(), script=script)


def _run(paths: Sequence[str], timeout: float) -> list[Report]:
    """Validate ``paths`` with one node process and return the reports in order."""
    tool = _find_tool()
    for path in paths:
        if "\n" in path or "\r" in path:
            raise ValueError(
                f"path contains a line break, cannot be validated: {path!r}"
            )
    try:
        proc = subprocess.run(
            [tool.node, str(tool.script), "--stdin-list"],
            input="".join(f"{path}\n" for path in paths),
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ValidatorUnavailable(
            f"cannot start node ({exc}); {INSTALL_HINT}"
        ) from exc

    reports: list[Report] = []
    for line in proc.stdout.splitlines():
        if line.strip():
            try:
                reports.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise RuntimeError(
                    f"glTF validator printed a non-JSON line: {line!r}"
                ) from exc
    if proc.returncode not in (0, 1, 2) or len(reports) != len(paths):
        raise RuntimeError(
            f"glTF validator failed (exit {proc.returncode}, {len(reports)} reports "
            f"for {len(paths)} files): {proc.stderr.strip()}"
        )
    return reports


def validate_many(
    paths: Iterable[PathLike], *, timeout: float = DEFAULT_TIMEOUT
) -> dict[Any, Report]:
    """Validate many files with a single node process.

    Returns a dict mapping each path exactly as given to its report (see
    :func:`validate_glb`). Unreadable files get a report with an ``"error"``
    field and ``errors >= 1``; they do not raise.
    """
    originals = list(paths)
    resolved = [os.path.abspath(os.fspath(p)) for p in originals]
    if not resolved:
        _find_tool()  # still fail loudly when the validator is missing
        return {}
    reports = _run(resolved, timeout)
    return dict(zip(originals, reports))


def validate_glb(data: PathLike | bytes, *, timeout: float = DEFAULT_TIMEOUT) -> Report:
    """Validate one GLB (or .gltf) given as a path or as raw bytes.

    The report is a dict with ``file``, ``errors``, ``warnings``, ``infos``,
    ``hints``, ``truncated`` and ``messages`` (errors and warnings, each with
    ``code``, ``message``, ``severity`` and ``pointer``), plus ``error`` when
    the file could not be read. Bytes are validated via a temporary file and
    reported with ``file`` set to ``"<bytes>"``.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        with tempfile.TemporaryDirectory(prefix="cad2gltf-validate-") as tmp:
            path = Path(tmp) / "asset.glb"
            path.write_bytes(bytes(data))
            report = _run([str(path)], timeout)[0]
        report["file"] = "<bytes>"
        return report
    return _run([os.path.abspath(os.fspath(data))], timeout)[0]


def format_report(report: Report) -> str:
    """Render a report's counts and messages as readable text."""
    header = (
        f"{report.get('file')}: {report.get('errors')} error(s), "
        f"{report.get('warnings')} warning(s), {report.get('infos')} info(s)"
    )
    lines = [header]
    if report.get("error"):
        lines.append(f"  error: {report['error']}")
    for msg in report.get("messages", []):
        kind = "ERROR" if msg.get("severity") == 0 else "WARNING"
        lines.append(
            f"  [{kind}] {msg.get('code')} at {msg.get('pointer')}: {msg.get('message')}"
        )
    if report.get("truncated"):
        lines.append("  ... (message list truncated)")
    return "\n".join(lines)


def assert_valid_glb(
    data: PathLike | bytes, *, timeout: float = DEFAULT_TIMEOUT
) -> Report:
    """Validate ``data`` and raise ``AssertionError`` if the validator reports errors.

    Warnings are allowed. Returns the report so callers can check further.
    """
    report = validate_glb(data, timeout=timeout)
    if report.get("errors", 1) > 0 or report.get("error"):
        raise AssertionError(
            "glTF validator reported errors:\n" + format_report(report)
        )
    return report
