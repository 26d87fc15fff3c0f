"""A faster ASCII DXF tag reader feeding ezdxf's document loader.

``ezdxf.readfile`` reads an ASCII DXF with two chained generators: ``ascii_tags_loader``
(one ``readline()`` per line) and ``tag_compiler`` (group code -> Python type, x/y/z
tags -> one vertex). On a floor plan that is about a third of the load time. Here both
run as one loop over blocks of lines read at once; the tags handed to ezdxf are the
same objects with the same values (``DXFTag``, ``DXFVertex``, ``DXFBinaryTag``), and
ezdxf builds the document from them as ``readfile`` would.

Anything unusual (an invalid group code or number, a point without its y, a point at
the very end, comment tags between coordinates) raises :class:`FastPathError`; the
caller then loads the file with ``ezdxf.readfile`` itself, so damaged files meet
exactly ezdxf's own errors and recover mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["FastPathError", "fast_readfile"]

_BLOCK = 1 << 22  # characters per read: memory stays bounded on 100 MB files


class FastPathError(Exception):
    """The fast reader met something it leaves to ezdxf."""


def _lines(stream: Any) -> Iterator[list[str]]:
    """Blocks of complete lines (without ``\\n``), like successive ``readline()`` calls.

    The last line of the file is returned even without a trailing newline; an empty
    last block is never returned.
    """
    carry = ""
    while True:
        text = stream.read(_BLOCK)
        if not text:
            if carry:
                yield [carry]
            return
        lines = (carry + text).split("\n")
        carry = lines.pop()
        if lines:
            yield lines


def _tags(stream: Any) -> Iterator[Any]:
    """``tag_compiler(ascii_tags_loader(stream))`` in one loop (see the module doc)."""
    from ezdxf.lldxf.types import (
        BINARY_DATA,
        POINT_CODES,
        TYPE_TABLE,
        DXFBinaryTag,
        DXFTag,
        DXFVertex,
    )

    type_get = TYPE_TABLE.get
    point_codes = POINT_CODES
    binary = BINARY_DATA
    pending: list[str] = []  # lines held back for the next block (a point's lookahead)
    blocks = _lines(stream)
    final = False
    while not final:
        block = next(blocks, None)
        final = block is None
        if block is None:
            lines = pending
        else:
            lines = pending + block if pending else block
        n = len(lines)
        # hold the last 3 tags back until the next block (a point reads 2 tags ahead);
        # in the last block everything is read: a file ends with the EOF tag
        stop = n - n % 2 if final else n - n % 2 - 6
        i = 0
        try:
            while i < stop:
                code = int(lines[i])
                value = lines[i + 1]
                i += 2
                if code in point_codes:
                    if int(lines[i]) != code + 10:
                        raise FastPathError("missing y coordinate")
                    zcode = int(lines[i + 2])
                    if zcode == code + 20:
                        yield DXFVertex(code, (float(value), float(lines[i + 1]),
                                               float(lines[i + 3])))
                        i += 4
                    elif zcode == 999:  # ezdxf would look behind the comment
                        raise FastPathError("comment tag inside a point")
                    else:
                        yield DXFVertex(code, (float(value), float(lines[i + 1])))
                        i += 2
                elif code == 0:
                    if value == "EOF":  # data beyond EOF is ignored, as ezdxf does
                        yield DXFTag(0, "EOF")
                        return
                    yield DXFTag(0, value.strip())
                elif code in binary:
                    yield DXFBinaryTag.from_string(code, value)
                elif code == 999:
                    continue  # comments are skipped
                else:
                    caster = type_get(code)
                    if caster is None:
                        yield DXFTag(code, value)
                    else:
                        try:
                            yield DXFTag(code, caster(value))
                        except ValueError:
                            if caster is not int:
                                raise
                            yield DXFTag(code, int(float(value)))  # ProE: ints as floats
        except (ValueError, IndexError, TypeError) as exc:
            raise FastPathError(f"{type(exc).__name__}: {exc}") from None
        pending = lines[i:]
    # no EOF tag (truncated file): ezdxf decides what that means
    raise FastPathError("no EOF tag")


def fast_readfile(path: str | Path) -> Any:
    """Load an ASCII DXF file like ``ezdxf.readfile`` (same document), faster.

    Raises:
        FastPathError: binary DXF, not DXF, or anything the fast reader leaves to
            ezdxf; the caller falls back to ``ezdxf.readfile``.
        ezdxf.DXFError: what ezdxf's loader raises for the tags (also to fall back on).
    """
    from ezdxf.document import Drawing
    from ezdxf.filemanagement import dxf_file_info
    from ezdxf.lldxf.validator import is_binary_dxf_file, is_dxf_file

    filename = str(path)
    if is_binary_dxf_file(filename) or not is_dxf_file(filename):
        raise FastPathError("not an ASCII DXF file")
    info = dxf_file_info(filename)
    with open(filename, encoding=info.encoding, errors="surrogateescape") as fp:
        doc = Drawing.from_tags(_tags(fp))
    doc.filename = filename
    return doc
