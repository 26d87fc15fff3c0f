"""Opening a PDF safely: encryption, active content, empty documents, repairs.

:func:`open_pdf` opens the file with PyMuPDF from its path (PyMuPDF maps pages on demand:
the file is never read whole into Python) and refuses what must not be converted:

* encrypted files that need a password: ``VALIDATION_ERROR/ENCRYPTED`` (files encrypted
  with an empty user password open, with a warning);
* JavaScript, launch actions and embedded-file launchers: ``VALIDATION_ERROR/
  SUSPICIOUS_CONTENT``;
* documents with no pages: ``VALIDATION_ERROR/NO_PAGES``;
* files PyMuPDF cannot open at all: ``PARSING_ERROR/BAD_PDF``.

A broken cross-reference table that PyMuPDF rebuilt is a repairable problem: a warning.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cad2gltf.errors import InvalidInputError, ParsingError

__all__ = ["open_pdf", "page_selection", "pdf_document"]

# name tokens that start code or programs: /JavaScript and /JS actions, /Launch actions,
# /EmbeddedFile launchers via /GoToE, /RichMedia and /XFA forms (which carry scripts)
_ACTIVE = re.compile(rb"/(JavaScript|JS|Launch|GoToE|RichMedia|XFA)(?![A-Za-z0-9])")


def _fitz() -> Any:
    import pymupdf

    return pymupdf


def open_pdf(path: str | os.PathLike[str], warnings: list[str]) -> Any:
    """Open and check a PDF; repairable findings are appended to ``warnings``.

    Args:
        path: the PDF file.
        warnings: list receiving one sentence per repaired or tolerated problem.

    Returns:
        The open ``pymupdf.Document`` (the caller closes it; see :func:`pdf_document`).

    Raises:
        InvalidInputError: ``ENCRYPTED``, ``SUSPICIOUS_CONTENT`` or ``NO_PAGES``.
        ParsingError: ``BAD_PDF`` when the file cannot be opened or repaired.
    """
    fitz = _fitz()
    fitz.TOOLS.mupdf_display_errors(False)
    fitz.TOOLS.mupdf_display_warnings(False)
    fitz.TOOLS.reset_mupdf_warnings()
    try:
        doc = fitz.open(os.fspath(path), filetype="pdf")
    except Exception as exc:  # noqa: BLE001 - FileDataError, RuntimeError ...
        raise ParsingError(f"the PDF cannot be read: {exc}", subcode="BAD_PDF") from None
    try:
        _check(doc, warnings)
    except BaseException:
        doc.close()
        raise
    return doc


def _check(doc: Any, warnings: list[str]) -> None:
    if doc.needs_pass:
        if not doc.authenticate(""):
            raise InvalidInputError("the PDF is password-protected", subcode="ENCRYPTED",
                                    details={"encryption": doc.metadata.get("encryption")
                                             if doc.metadata else None})
    if doc.is_encrypted or (doc.metadata or {}).get("encryption"):
        warnings.append("the PDF is encrypted without a user password; converted anyway")
    if doc.is_repaired:
        warnings.append("the PDF's cross-reference table was broken and has been repaired")
    active = _active_content(doc)
    if active:
        raise InvalidInputError(f"the PDF carries active content ({', '.join(active)})",
                                subcode="SUSPICIOUS_CONTENT", details={"found": active})
    try:
        count = doc.page_count
    except Exception as exc:  # noqa: BLE001
        raise ParsingError(f"the PDF's page tree cannot be read: {exc}",
                           subcode="BAD_PDF") from None
    if count <= 0:
        raise InvalidInputError("the PDF has no pages", subcode="NO_PAGES")
    messages = _fitz().TOOLS.mupdf_warnings()
    if messages and not doc.is_repaired:
        first = messages.splitlines()[0][:200]
        warnings.append(f"PDF reader warnings (repaired while reading): {first}")


def _active_content(doc: Any) -> list[str]:
    """Names of active-content tokens in the object dictionaries (not in streams)."""
    found: set[str] = set()
    try:
        n = doc.xref_length()
    except Exception:  # noqa: BLE001
        return []
    for xref in range(1, n):
        try:
            src = doc.xref_object(xref, compressed=True)
        except Exception:  # noqa: BLE001 - a broken object is not active content
            continue
        if "/J" in src or "/L" in src or "/G" in src or "/R" in src or "/X" in src:
            for m in _ACTIVE.finditer(src.encode("latin-1", "replace")):
                found.add(m.group(1).decode())
    try:
        trailer = doc.pdf_trailer(compressed=True)
        for m in _ACTIVE.finditer(trailer.encode("latin-1", "replace")):
            found.add(m.group(1).decode())
    except Exception:  # noqa: BLE001
        pass
    return sorted(found)


@contextmanager
def pdf_document(path: str | os.PathLike[str], warnings: list[str]) -> Iterator[Any]:
    """:func:`open_pdf` as a context manager that closes the document.

    Raises:
        InvalidInputError: see :func:`open_pdf`.
        ParsingError: see :func:`open_pdf`.
    """
    doc = open_pdf(path, warnings)
    try:
        yield doc
    finally:
        doc.close()


def page_selection(spec: str | None, page_count: int) -> list[int]:
    """0-based page numbers selected by ``"1-3,7"`` (None: all pages), in order, unique.

    Raises:
        InvalidInputError: ``BAD_OPTIONS`` when the selection names no existing page.
    """
    if spec is None:
        return list(range(page_count))
    chosen: list[int] = []
    seen: set[int] = set()
    for part in str(spec).split(","):
        a, _, b = part.strip().partition("-")
        lo, hi = int(a), int(b or a)
        for p in range(max(lo, 1), min(hi, page_count) + 1):
            if p - 1 not in seen:
                seen.add(p - 1)
                chosen.append(p - 1)
    if not chosen:
        raise InvalidInputError(f"pages {spec!r}: the PDF has {page_count} page(s)",
                                subcode="BAD_OPTIONS")
    return chosen
