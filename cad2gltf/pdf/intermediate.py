"""A PDF page between extraction and scene building, and its serialised form.

:class:`ExtractedPage` is what a page holds once read (paths, text spans, scale, the
renders it needs); the PyMuPDF page can be dropped afterwards. The reader keeps these in
memory for one chunk of pages; a pipeline that runs extraction, symbol detection and
scene building as separate steps (other processes, other machines) stores them with
:func:`page_dumpb` and reads them back with :func:`page_loadb`. The round trip is exact:
floats keep every bit (JSON writes the shortest repr that reads back to the same
double), renders are PNG (lossless), so a page built from its stored form gives the same
bytes as one built straight from the PDF.

* :func:`page_dumpb` / :func:`page_loadb`: one page as an ``.npz`` container (``meta``:
  JSON with paths, spans, scale, sizes; ``gray``, ``ground``: PNG renders);
* :func:`render_dumpb` / :func:`render_loadb`: a grey render (the detector input) as PNG;
* :func:`detections_dumpb` / :func:`detections_loadb`: detections per page as JSON.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cad2gltf.errors import ParsingError
from cad2gltf.pdf.scale import PageScale
from cad2gltf.pdf.symbols import PageDetection
from cad2gltf.pdf.vector import PageContent, TextSpan

__all__ = ["FORMAT", "ExtractedPage", "detections_dumpb", "detections_loadb", "page_dumpb",
           "page_loadb", "render_dumpb", "render_loadb"]

#: version of the serialised form (part of every storage key built from it)
FORMAT = 1
# fast PNG: the renders are intermediates, read once or twice, not archived
_PNG_LEVEL = 1


@dataclass
class ExtractedPage:
    """One page as read from the PDF, before it becomes a ``page-N`` node.

    Attributes:
        index: 0-based page number.
        content: paths, text spans and size of the page.
        scale: the page's drawing scale.
        scanned: a scan (walls come from :attr:`gray`), not vector content.
        gray: scanned pages: the grey render at ``options.dpi``.
        det_image: the detector's input (grey, at the detector's dpi); consumed by the
            detection step, never serialised with the page.
        ground: vector pages with ``ground_plane``: the grey render used as texture.
        detections: what the detector found (empty without detection).
    """

    index: int
    content: PageContent
    scale: PageScale
    scanned: bool
    gray: np.ndarray | None = None
    det_image: np.ndarray | None = None
    ground: np.ndarray | None = None
    detections: list[PageDetection] = field(default_factory=list)


# ------------------------------------------------------------------------ renders (PNG)


def render_dumpb(image: np.ndarray) -> bytes:
    """A uint8 grey (or colour) render as PNG bytes (lossless).

    Raises:
        ValueError: the array is not an image OpenCV can encode.
    """
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image),
                           [cv2.IMWRITE_PNG_COMPRESSION, _PNG_LEVEL])
    if not ok:
        raise ValueError("cannot encode the render as PNG")
    return buf.tobytes()


def render_loadb(data: bytes) -> np.ndarray:
    """PNG bytes from :func:`render_dumpb` back to the array.

    Raises:
        ParsingError: ``BAD_INTERMEDIATE`` when the bytes are not a PNG.
    """
    import cv2

    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ParsingError("a stored page render cannot be decoded",
                           subcode="BAD_INTERMEDIATE")
    return np.ascontiguousarray(img)


# ------------------------------------------------------------------------ paths (JSON)


def _pt(p: Any) -> list[float]:
    return [p.x, p.y]


def _encode_item(item: tuple[Any, ...]) -> list[Any]:
    op = item[0]
    if op in ("l", "c"):
        return [op, *(v for p in item[1:] for v in _pt(p))]
    if op == "re":
        r = item[1]
        return [op, r.x0, r.y0, r.x1, r.y1, *item[2:]]
    if op == "qu":
        q = item[1]
        return [op, *_pt(q.ul), *_pt(q.ur), *_pt(q.ll), *_pt(q.lr), *item[2:]]
    raise ValueError(f"unknown PDF path item {op!r}")


def _decode_item(row: list[Any]) -> tuple[Any, ...]:
    import pymupdf

    op = row[0]
    if op == "l":
        return (op, pymupdf.Point(row[1], row[2]), pymupdf.Point(row[3], row[4]))
    if op == "c":
        return (op, *(pymupdf.Point(row[i], row[i + 1]) for i in range(1, 9, 2)))
    if op == "re":
        return (op, pymupdf.Rect(*row[1:5]), *row[5:])
    if op == "qu":
        pts = [pymupdf.Point(row[i], row[i + 1]) for i in range(1, 9, 2)]
        return (op, pymupdf.Quad(*pts), *row[9:])
    raise ParsingError(f"unknown stored path item {op!r}", subcode="BAD_INTERMEDIATE")


def _encode_value(value: Any) -> Any:
    if hasattr(value, "x0") and hasattr(value, "y1"):   # Rect / IRect
        return {"rect": [value.x0, value.y0, value.x1, value.y1]}
    if isinstance(value, tuple):
        return {"tuple": [_encode_value(v) for v in value]}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, list):
        return [_encode_value(v) for v in value]
    raise ValueError(f"cannot store a PDF path value of type {type(value).__name__}")


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if "rect" in value:
            import pymupdf

            return pymupdf.Rect(*value["rect"])
        if "tuple" in value:
            return tuple(_decode_value(v) for v in value["tuple"])
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    return value


def _encode_path(path: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in path.items():
        out[key] = ([_encode_item(it) for it in value] if key == "items"
                    else _encode_value(value))
    return out


def _decode_path(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: ([_decode_item(it) for it in value] if key == "items"
                  else _decode_value(value)) for key, value in row.items()}


# ------------------------------------------------------------------------ pages (npz)


def page_dumpb(page: ExtractedPage) -> bytes:
    """Serialise a page (everything but :attr:`ExtractedPage.det_image` and the
    detections, which have their own forms) as ``.npz`` bytes.

    Raises:
        ValueError: the page holds a value that has no stored form (a bug).
    """
    c = page.content
    meta = {
        "format": FORMAT, "index": page.index, "scanned": page.scanned,
        "width_pt": c.width_pt, "height_pt": c.height_pt, "image_cover": c.image_cover,
        "scale": [page.scale.denominator, page.scale.source, page.scale.text],
        "texts": [[t.text, t.size, list(t.bbox), list(t.origin), t.angle_deg]
                  for t in c.texts],
        "paths": [_encode_path(p) for p in c.paths],
    }
    arrays: dict[str, np.ndarray] = {
        "meta": np.frombuffer(json.dumps(meta, separators=(",", ":")).encode(),
                              dtype=np.uint8)}
    if page.gray is not None:
        arrays["gray"] = np.frombuffer(render_dumpb(page.gray), dtype=np.uint8)
    if page.ground is not None:
        arrays["ground"] = np.frombuffer(render_dumpb(page.ground), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def page_loadb(data: bytes) -> ExtractedPage:
    """A page from :func:`page_dumpb` bytes (no pickles are read).

    Raises:
        ParsingError: ``BAD_INTERMEDIATE`` when the bytes are not a stored page of this
            format.
    """
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = json.loads(npz["meta"].tobytes())
            gray = npz["gray"].tobytes() if "gray" in npz.files else None
            ground = npz["ground"].tobytes() if "ground" in npz.files else None
    except Exception as exc:  # noqa: BLE001 - zipfile, json, numpy errors alike
        raise ParsingError(f"a stored page cannot be read: {exc}",
                           subcode="BAD_INTERMEDIATE") from None
    if meta.get("format") != FORMAT:
        raise ParsingError(f"a stored page has format {meta.get('format')}, not {FORMAT}",
                           subcode="BAD_INTERMEDIATE")
    content = PageContent(
        paths=[_decode_path(p) for p in meta["paths"]],
        texts=[TextSpan(t, s, tuple(b), tuple(o), a)  # type: ignore[arg-type]
               for t, s, b, o, a in meta["texts"]],
        image_cover=meta["image_cover"], width_pt=meta["width_pt"],
        height_pt=meta["height_pt"])
    denominator, source, text = meta["scale"]
    return ExtractedPage(
        index=meta["index"], content=content, scale=PageScale(denominator, source, text),
        scanned=meta["scanned"],
        gray=render_loadb(gray) if gray is not None else None,
        ground=render_loadb(ground) if ground is not None else None)


# ------------------------------------------------------------------- detections (JSON)


def detections_dumpb(found: Mapping[int, Sequence[PageDetection]]) -> bytes:
    """Detections per 0-based page index as JSON bytes."""
    doc = {"format": FORMAT, "pages": {
        str(index): [[d.label, d.score, list(d.box), d.dpi] for d in dets]
        for index, dets in sorted(found.items())}}
    return json.dumps(doc, separators=(",", ":")).encode()


def detections_loadb(data: bytes) -> dict[int, list[PageDetection]]:
    """Detections from :func:`detections_dumpb` bytes.

    Raises:
        ParsingError: ``BAD_INTERMEDIATE`` when the bytes are not stored detections.
    """
    try:
        doc = json.loads(data)
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')}")
        return {int(index): [PageDetection(label, score, tuple(box), dpi)  # type: ignore[arg-type]
                             for label, score, box, dpi in dets]
                for index, dets in doc["pages"].items()}
    except Exception as exc:  # noqa: BLE001
        raise ParsingError(f"stored detections cannot be read: {exc}",
                           subcode="BAD_INTERMEDIATE") from None
