"""Input validation before any parser sees a byte.

The real type comes from the content (magic bytes), never from the extension alone.
Every refusal is an :class:`~cad2gltf.errors.InvalidInputError` with a stable subcode:

``EMPTY_FILE``, ``FILE_TOO_LARGE``, ``UNSUPPORTED_TYPE``, ``TYPE_MISMATCH``,
``SUSPICIOUS_CONTENT``, ``BAD_FILENAME``, ``NOT_FOUND``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cad2gltf.errors import InvalidInputError

__all__ = [
    "DEFAULT_LIMITS",
    "BINARY_DXF_SENTINEL",
    "Limits",
    "SniffResult",
    "sniff_bytes",
    "validate_filename",
    "validate_path",
]

BINARY_DXF_SENTINEL = b"AutoCAD Binary DXF\r\n\x1a\x00"
_MB = 1024 * 1024
HEAD_SIZE = 64 * 1024

# a DXF's first tag: optional comments (999), then 0 / SECTION; group codes may be padded
_DXF_HEAD = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:999\r?\n[^\n]*\n\s*)*0\s*\r?\n\s*SECTION\s*\r?\n", re.IGNORECASE
)
_DXF_EOF_ONLY = re.compile(rb"^(?:\xef\xbb\xbf)?\s*0\s*\r?\n\s*EOF\s*(\r?\n)?\s*$")
_ACTIVE_MARKERS = (b"<script", b"<html", b"<?php", b"<!doctype html", b"#!/")
_CONTAINER_MAGIC = {
    b"PK\x03\x04": "a ZIP archive",
    b"\x1f\x8b": "a gzip stream",
    b"BZh": "a bzip2 stream",
    b"\xfd7zXZ\x00": "an xz stream",
    b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive",
    b"Rar!": "a RAR archive",
    b"\x7fELF": "an executable",
    b"MZ": "a Windows executable",
}
_KNOWN_EXT = {".dxf": "dxf", ".pdf": "pdf"}


@dataclass(frozen=True)
class Limits:
    """Per-type size limits in bytes (configurable; defaults from the service levels)."""

    dxf_max_bytes: int = 100 * _MB
    pdf_max_bytes: int = 500 * _MB

    def for_type(self, file_type: str) -> int:
        return self.dxf_max_bytes if file_type == "dxf" else self.pdf_max_bytes


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class SniffResult:
    """What validation found: the real type and the variant (``ascii``/``binary``)."""

    file_type: str
    variant: str
    size: int


def validate_filename(name: str, *, allow_dirs: bool = False) -> str:
    """Refuse names with null bytes, control characters or path tricks.

    Args:
        name: a file name or, with ``allow_dirs``, a relative key such as ``a/b.dxf``.
        allow_dirs: accept ``/``-separated relative keys.

    Returns:
        The name, unchanged.

    Raises:
        InvalidInputError: ``BAD_FILENAME``.
    """
    def bad(why: str) -> InvalidInputError:
        return InvalidInputError(f"file name refused: {why}", subcode="BAD_FILENAME",
                                 details={"name": repr(name)[:200]})

    if not name or not name.strip():
        raise bad("empty name")
    if "\x00" in name:
        raise bad("contains a null byte")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise bad("contains control characters")
    if len(name.encode("utf-8", "surrogatepass")) > 1024:
        raise bad("longer than 1024 bytes")
    parts = re.split(r"[\\/]", name)
    if not allow_dirs and len(parts) > 1:
        raise bad("contains a path separator")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise bad("is an absolute path")
    if any(part in ("..", ".") for part in parts) or name.startswith("~"):
        raise bad("contains a relative path component ('..', '.' or '~')")
    return name


def _declared_type(name: str | None) -> str | None:
    if not name:
        return None
    return _KNOWN_EXT.get(os.path.splitext(name)[1].lower())


def sniff_bytes(head: bytes, size: int, *, name: str | None = None,
                declared_type: str | None = None, limits: Limits = DEFAULT_LIMITS) -> SniffResult:
    """Decide the real type of a file from its first bytes.

    Args:
        head: the first bytes of the file (at least 64 KiB when the file is that big).
        size: the full size in bytes.
        name: the original file name, used only to detect a contradicting extension.
        declared_type: a type stated by the caller (``dxf``/``pdf``), checked likewise.
        limits: size limits per type.

    Returns:
        The sniffed type.

    Raises:
        InvalidInputError: ``EMPTY_FILE``, ``UNSUPPORTED_TYPE``, ``TYPE_MISMATCH``,
            ``SUSPICIOUS_CONTENT`` or ``FILE_TOO_LARGE``.
    """
    if size == 0 or not head.strip(b" \t\r\n\x00"):
        raise InvalidInputError("the file is empty", subcode="EMPTY_FILE", details={"size": size})

    lowered = head[:4096].lower()
    file_type: str | None = None
    variant = ""
    if head.startswith(BINARY_DXF_SENTINEL):
        file_type, variant = "dxf", "binary"
    elif _DXF_HEAD.match(head[:4096]) or _DXF_EOF_ONLY.match(head[:4096]):
        file_type, variant = "dxf", "ascii"
    elif b"%PDF-" in head[:1024]:
        file_type, variant = "pdf", "pdf"

    if file_type is None:
        for magic, what in _CONTAINER_MAGIC.items():
            if head.startswith(magic):
                raise InvalidInputError(
                    f"the content is {what}, not a DXF or PDF drawing", subcode="UNSUPPORTED_TYPE",
                    details={"detected": what})
        ext = _declared_type(name)
        hint = f" although its name ends in .{ext}" if ext else ""
        raise InvalidInputError(
            f"the content is neither DXF nor PDF{hint}", subcode="UNSUPPORTED_TYPE",
            details={"head": head[:16].hex()})

    # polyglots: a DXF that also carries a PDF header, or markup/scripts in the head
    if file_type == "dxf" and b"%pdf-" in lowered:
        raise InvalidInputError("the DXF also carries a PDF header (polyglot file)",
                                subcode="SUSPICIOUS_CONTENT")
    if file_type == "pdf" and (head.startswith(b"PK\x03\x04") or _DXF_HEAD.match(head[:4096])):
        raise InvalidInputError("the PDF also carries another format's header (polyglot file)",
                                subcode="SUSPICIOUS_CONTENT")
    for marker in _ACTIVE_MARKERS:
        if lowered.lstrip().startswith(marker):
            raise InvalidInputError("the file starts with active content (markup or script)",
                                    subcode="SUSPICIOUS_CONTENT")

    for claimed, source in ((declared_type, "declared type"), (_declared_type(name), "extension")):
        if claimed and claimed != file_type:
            raise InvalidInputError(
                f"the {source} says {claimed.upper()} but the content is {file_type.upper()}",
                subcode="TYPE_MISMATCH", details={"claimed": claimed, "detected": file_type})

    limit = limits.for_type(file_type)
    if size > limit:
        raise InvalidInputError(
            f"{file_type.upper()} file is {size / _MB:.1f} MB, the limit is {limit / _MB:.0f} MB",
            subcode="FILE_TOO_LARGE", details={"size": size, "limit": limit})
    return SniffResult(file_type=file_type, variant=variant, size=size)


def validate_path(path: str | os.PathLike[str], *, declared_type: str | None = None,
                  limits: Limits = DEFAULT_LIMITS) -> SniffResult:
    """Validate a local file: name, existence, size and real type.

    Raises:
        InvalidInputError: see :func:`sniff_bytes`, plus ``NOT_FOUND`` and ``BAD_FILENAME``.
    """
    p = Path(path)
    validate_filename(p.name)
    try:
        if not p.is_file():
            raise InvalidInputError(f"no such file: {p}", subcode="NOT_FOUND")
        size = p.stat().st_size
        with p.open("rb") as fh:
            head = fh.read(HEAD_SIZE)
    except InvalidInputError:
        raise
    except OSError as exc:
        raise InvalidInputError(f"cannot read {p.name}: {exc.strerror or exc}",
                                subcode="NOT_FOUND") from exc
    return sniff_bytes(head, size, name=p.name, declared_type=declared_type, limits=limits)
