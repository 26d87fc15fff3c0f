"""PDF drawing -> :class:`~cad2gltf.scene.Scene`, page by page, in bounded memory.

The file is opened from its path (:func:`cad2gltf.pdf.document.open_pdf`: encryption,
active content, empty documents and repairs are dealt with there). Pages are read in
chunks of :data:`CHUNK` pages: each page's content is extracted (and rendered when it is
a scan or when symbols are detected), the PyMuPDF page is dropped, the chunk's renders
go through the detector in one batch, then each page becomes one ``page-N`` node:

* vector pages: :mod:`cad2gltf.pdf.vector` (paths, fills, text, layer semantics);
* scanned pages (little vector content, a big image): :mod:`cad2gltf.pdf.raster`;
* detections (``detect_symbols``): doors and windows are hosted in the nearest wall and
  cut into it by the DXF floor-plan semantics; other classes (stairs, fixtures ...)
  become placeholder nodes with ``extras.category`` = class, ``score`` and ``box_px``.

Peak memory is one chunk's renders plus the scene built so far (the geometry that ends up
in the GLB anyway). Recognised elements carry ``extras.source = {"page": n, "bbox_pt":
[x0, y0, x1, y1], "items": [...]}``: the page, the element's box in PDF points (origin at
the page's top-left corner) and the ids of the PDF paths (``p<page>#<seqno>``) or
detections it came from.
"""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cad2gltf.options import ConvertOptions
from cad2gltf.pdf.document import page_selection, pdf_document
from cad2gltf.pdf.frame import PageFrame
from cad2gltf.pdf.groundplane import GROUND_DPI, GroundPlane, add_ground_planes, encode_texture
from cad2gltf.pdf.intermediate import ExtractedPage
from cad2gltf.pdf.raster import ScanResult, find_walls
from cad2gltf.pdf.scale import PageScale, resolve_scale, scale_from_dimensions
from cad2gltf.pdf.symbols import OPENING_CLASSES, SymbolDetector, load_symbol_detector
from cad2gltf.pdf.vector import (
    PageContent,
    emit_vector_page,
    read_page_content,
    straight_segments,
)
from cad2gltf.scene import Color, Node, Scene, SceneBuilder

__all__ = ["CHUNK", "ExtractedChunk", "PageResult", "PreparedChunk", "PreparedPages", "build_pages", "chunks_of",
           "detect_pages", "extract_chunk", "extract_pages", "iter_pdf_pages", "iter_prepared_pages",
           "pdf_readfile", "prepared_pages"]

#: pages extracted (and rendered) together; their renders share one detector batch
CHUNK = 8
_MAX_WARNINGS = 200
#: placeholder nodes per page and class at most (a detector gone wild must not make
#: a million nodes); further detections are only counted
_MAX_PLACEHOLDERS = 500
_SCAN_WALL: Color = (0.2, 0.2, 0.2, 1.0)
_SYMBOL: Color = (0.85, 0.35, 0.1, 1.0)


@dataclass
class PageResult:
    """One converted page: its node (with all elements as descendants) and facts."""

    node: Node
    frame: PageFrame
    scale: PageScale
    kind: str
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    ground: GroundPlane | None = None


def _render(page: Any, dpi: float, gray: bool) -> np.ndarray:
    import pymupdf

    pix = page.get_pixmap(dpi=int(round(dpi)), colorspace=pymupdf.csGRAY if gray
                          else pymupdf.csRGB, alpha=False)
    n = pix.n
    rows = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.stride)
    arr = rows[:, : pix.width * n].reshape(pix.height, pix.width, n)
    out: np.ndarray = np.ascontiguousarray(arr[:, :, 0] if gray else arr)
    del pix
    return out


def iter_pdf_pages(path: str | os.PathLike[str], options: ConvertOptions,
                   warnings: list[str]) -> Iterator[PageResult]:
    """Convert the selected pages one by one (core API; also for one GLB per page).

    The three steps per chunk of :data:`CHUNK` pages are public, so that a pipeline can
    run them apart (:func:`extract_pages`, :func:`detect_pages`, :func:`build_pages`);
    this function chains them in memory.

    Args:
        path: the PDF file.
        options: conversion options (``scale``, ``dpi``, ``detect_symbols``, ``pages``).
        warnings: document-level warnings (repairs, encryption) are appended here.

    Yields:
        One :class:`PageResult` per selected page, in page order.

    Raises:
        InvalidInputError: ``ENCRYPTED``, ``SUSPICIOUS_CONTENT``, ``NO_PAGES``,
            ``BAD_OPTIONS`` (page selection).
        ParsingError: ``BAD_PDF``.
        DetectorError: when ``detect_symbols`` is on and the detector cannot run.
    """
    detector = load_symbol_detector() if options.detect_symbols else None
    with pdf_document(path, warnings) as doc:
        selected = page_selection(options.pages, doc.page_count)

        def extracted() -> Iterator[ExtractedPage]:
            for start in range(0, len(selected), CHUNK):
                chunk = extract_pages(doc, selected[start:start + CHUNK], options,
                                      detector.dpi if detector is not None else None,
                                      warnings)
                if detector is not None:
                    detect_pages(detector, chunk)
                yield from chunk
                chunk.clear()
                gc.collect()
                _shrink_store()

        yield from build_pages(extracted(), options)


def chunks_of(selected: Sequence[int]) -> list[list[int]]:
    """The selected 0-based pages cut into the reader's chunks of :data:`CHUNK`."""
    return [list(selected[start:start + CHUNK]) for start in range(0, len(selected), CHUNK)]


def extract_pages(doc: Any, indices: Sequence[int], options: ConvertOptions,
                  detector_dpi: float | None, warnings: list[str]) -> list[ExtractedPage]:
    """Read pages of an open document: content, scale and the renders they need.

    A page that cannot be read or rendered is left out with a warning (an empty page of
    its size stands in), never an error.

    Args:
        doc: the open document (:func:`cad2gltf.pdf.document.pdf_document`).
        indices: 0-based pages, in order.
        options: conversion options (``scale``, ``dpi``, ``ground_plane``).
        detector_dpi: the detector's render resolution when symbols are detected
            (each page then carries ``det_image``), None otherwise.
        warnings: page warnings are appended here.

    Returns:
        One :class:`ExtractedPage` per index.
    """
    return [_extract(doc, index, options, detector_dpi, warnings) for index in indices]


@dataclass
class ExtractedChunk:
    """One chunk of a document's selected pages, read on its own (:func:`extract_chunk`).

    Attributes:
        chunks: how many chunks the selection has.
        pages: the chunk's pages, in order.
        warnings: what reading them gave.
        document_warnings: what opening the document gave (the same for every chunk).
    """

    chunks: int
    pages: list[ExtractedPage]
    warnings: list[str]
    document_warnings: list[str]


def extract_chunk(path: str | os.PathLike[str], options: ConvertOptions, chunk: int,
                  detector_dpi: float | None) -> ExtractedChunk:
    """Open the PDF and read chunk ``chunk`` (0-based) of its selected pages, as
    :func:`iter_pdf_pages` would; MuPDF's cache is emptied before returning.

    Raises:
        InvalidInputError: ``ENCRYPTED``, ``SUSPICIOUS_CONTENT``, ``NO_PAGES``,
            ``BAD_OPTIONS`` (page selection, or no such chunk).
        ParsingError: ``BAD_PDF``.
    """
    from cad2gltf.errors import InvalidInputError

    document_warnings: list[str] = []
    warnings: list[str] = []
    with pdf_document(path, document_warnings) as doc:
        chunks = chunks_of(page_selection(options.pages, doc.page_count))
        if not 0 <= chunk < len(chunks):
            raise InvalidInputError(f"chunk {chunk}: the selection has {len(chunks)}",
                                    subcode="BAD_OPTIONS")
        pages = extract_pages(doc, chunks[chunk], options, detector_dpi, warnings)
    gc.collect()
    _shrink_store()
    return ExtractedChunk(len(chunks), pages, warnings, document_warnings)


def detect_pages(detector: SymbolDetector, pages: Sequence[ExtractedPage]) -> None:
    """Run the detector once over the pages' renders (one batch) and attach the
    detections; the renders are dropped.

    Raises:
        DetectorError: the detector failed.
    """
    images = [e.det_image for e in pages if e.det_image is not None]
    found = detector.detect(images) if images else []
    it = iter(found)
    for e in pages:
        if e.det_image is not None:
            e.detections = next(it)
            e.det_image = None


def build_pages(pages: Iterable[ExtractedPage], options: ConvertOptions) -> Iterator[PageResult]:
    """Pages (with their detections) -> ``page-N`` nodes, laid out in a row left to right;
    each page's renders are dropped once it is built.

    Yields:
        One :class:`PageResult` per page, in the given order.
    """
    x_cursor = 0.0
    texts = 0
    for e in pages:
        frame = PageFrame(e.index + 1, e.content.width_pt, e.content.height_pt,
                          e.scale.metres_per_point, (round(x_cursor, 6), 0.0))
        w_m = frame.size_m[0]
        x_cursor += w_m + round(0.1 * w_m, 3)
        res = _build_page(e, frame, options, texts)
        texts += res.stats.get("texts", 0)
        yield res


@dataclass
class PreparedChunk:
    """A chunk of pages extracted (and detected) ahead, by another step.

    Attributes:
        warnings: the warnings its extraction gave (in page order).
        load: returns the chunk's pages, in order, with their detections attached;
            called once, when the chunk's turn comes (so one chunk is in memory).
    """

    warnings: list[str]
    load: Callable[[], Iterable[ExtractedPage]]


@dataclass
class PreparedPages:
    """A PDF whose pages were extracted and detected by earlier steps.

    Attributes:
        document_warnings: what opening the document gave (repairs, encryption).
        chunks: the selected pages' chunks, in order (see :func:`chunks_of`).
    """

    document_warnings: list[str]
    chunks: Sequence[PreparedChunk]


_PREPARED: ContextVar[PreparedPages | None] = ContextVar("cad2gltf_pdf_prepared", default=None)


@contextmanager
def prepared_pages(prepared: PreparedPages) -> Iterator[None]:
    """While active, :func:`pdf_readfile` (and so :func:`cad2gltf.convert.convert_path`
    on a PDF) builds the scene from ``prepared`` instead of reading the file's pages:
    the rest of the conversion (validation, provenance, GLB, preview) stays the one
    :func:`~cad2gltf.convert.convert_path` does, so both give the same bytes.
    """
    token = _PREPARED.set(prepared)
    try:
        yield
    finally:
        _PREPARED.reset(token)


def iter_prepared_pages(prepared: PreparedPages, options: ConvertOptions,
                        warnings: list[str]) -> Iterator[PageResult]:
    """:func:`iter_pdf_pages` over pages extracted ahead: the same results, warnings in
    the same order (document, then per chunk: extraction, then its pages)."""
    warnings.extend(prepared.document_warnings)

    def extracted() -> Iterator[ExtractedPage]:
        for chunk in prepared.chunks:
            warnings.extend(chunk.warnings)
            yield from chunk.load()

    yield from build_pages(extracted(), options)


def _shrink_store() -> None:
    """Empty MuPDF's object and font cache: it keeps what every page parsed (about a
    megabyte per page of a plan set) until the document closes."""
    import pymupdf

    try:
        pymupdf.TOOLS.store_shrink(100)
    except Exception:  # noqa: BLE001 - only a cache
        pass


def _extract(doc: Any, index: int, options: ConvertOptions, detector_dpi: float | None,
             warnings: list[str]) -> ExtractedPage:
    try:
        page = doc.load_page(index)
        content = read_page_content(page)
    except Exception as exc:  # noqa: BLE001 - one damaged page does not sink the file
        warnings.append(f"page {index + 1} cannot be read and was left out: "
                        f"{type(exc).__name__}: {exc}"[:300])
        return ExtractedPage(index, PageContent(width_pt=842.0, height_pt=595.0),
                          resolve_scale(options.scale, []), False)
    try:
        scale = resolve_scale(options.scale, [(t.text, t.size) for t in content.texts],
                              lambda: scale_from_dimensions(
                                  [(t.text, t.size, t.bbox, t.angle_deg) for t in content.texts],
                                  straight_segments(content.paths)))
        scanned = content.is_scanned
        e = ExtractedPage(index, content, scale, scanned)
        if scanned:
            e.gray = _render(page, options.dpi, gray=True)
            content.paths = []  # the image frame is not linework
        if options.ground_plane and not scanned:
            e.ground = _render(page, GROUND_DPI, gray=True)
        if detector_dpi is not None:
            # the detector works on grey tiles: grey renders are a third of the memory
            if e.gray is not None and abs(detector_dpi - options.dpi) < 1e-6:
                e.det_image = e.gray
            else:
                e.det_image = _render(page, detector_dpi, gray=True)
        return e
    except Exception as exc:  # noqa: BLE001 - e.g. an image stream that cannot be decoded
        warnings.append(f"page {index + 1} cannot be rendered and was left out: "
                        f"{type(exc).__name__}: {exc}"[:300])
        return ExtractedPage(index, PageContent(width_pt=content.width_pt,
                                             height_pt=content.height_pt),
                          resolve_scale(options.scale, []), False)
    finally:
        del page


def _build_page(e: ExtractedPage, frame: PageFrame, options: ConvertOptions,
                texts_before: int = 0) -> PageResult:
    from cad2gltf.dxf.semantics import SemanticCollector

    builder = SceneBuilder()
    collector = SemanticCollector(options) if options.semantics else None
    warnings: list[str] = []
    stats: dict[str, int] = {}
    extras: dict[str, Any] = {
        "page": frame.number, "kind": "scanned" if e.scanned else "vector",
        "scale": e.scale.label, "scale_source": e.scale.source,
        "metres_per_point": round(frame.metres_per_point, 9),
        "size_pt": [round(frame.width_pt, 3), round(frame.height_pt, 3)],
        "offset_m": list(frame.offset_m),
    }
    if e.scale.source in ("note", "dimensions"):
        extras["scale_note"] = e.scale.text
    scan: ScanResult | None = None
    if e.scanned and e.gray is not None:
        scan = find_walls(e.gray, e.scale.metres_per_pixel(options.dpi), options)
        extras.update({"dpi": options.dpi, "deskew_deg": scan.skew_deg,
                       "text_blobs_removed": scan.text_blobs})
        _emit_scan_walls(scan, frame, options.dpi, builder, collector)
        stats["scan_walls"] = int(scan.walls.shape[0])
        if options.ground_plane:
            e.ground = _deskewed_texture(e.gray, scan, options.dpi)
        e.gray = None
    else:
        emit_vector_page(e.content, frame, options, builder, collector, stats, texts_before)
    if e.detections:
        _emit_detections(e, frame, scan, options, builder, collector, stats)
    if collector is not None:
        collector.emit(builder, 1.0, warnings)
    scene = builder.build()
    node = Node(name=f"page-{frame.number}", category="page", children=scene.nodes,
                extras=extras)
    node.extras["source"] = {"page": frame.number,
                             "bbox_pt": [0.0, 0.0, round(frame.width_pt, 2),
                                         round(frame.height_pt, 2)]}
    _sources(node, frame)
    ground = None
    if e.ground is not None:
        (x0, y0), (w_m, h_m) = frame.offset_m, frame.size_m
        ground = GroundPlane(frame.number, encode_texture(e.ground),
                             (x0, y0, x0 + w_m, y0 + h_m))
        e.ground = None
    return PageResult(node=node, frame=frame, scale=e.scale,
                      kind=extras["kind"], warnings=[f"page {frame.number}: {w}" for w in warnings],
                      stats=stats, ground=ground)


def _deskewed_texture(gray: np.ndarray, scan: ScanResult, dpi: float) -> np.ndarray:
    """The scan turned like its walls (deskewed), at the ground-plane resolution."""
    import cv2

    h, w = gray.shape
    img = gray
    if not np.allclose(scan.matrix, [[1, 0, 0], [0, 1, 0]]):
        img = cv2.warpAffine(gray, scan.matrix, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=255)
    f = GROUND_DPI / dpi
    if f < 1.0:
        img = cv2.resize(img, (max(1, int(round(w * f))), max(1, int(round(h * f)))),
                         interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


def _emit_scan_walls(scan: ScanResult, frame: PageFrame, dpi: float, builder: SceneBuilder,
                     collector: Any) -> None:
    layer = "scan-walls"
    key = "layer:" + layer
    builder.node(key, name=layer, category="layer", layer=layer)
    for n, (x0, y0, x1, y1, _kind) in enumerate(scan.walls.tolist(), 1):
        rect = frame.px_to_m(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]), dpi)
        handle = f"p{frame.number}#scan{n}"
        if collector is not None:
            ekey = collector.element_key("wall", layer, handle, builder)
            if collector.take_polyline("wall", ekey, rect, True, handle, _SCAN_WALL):
                continue
        builder.add_polyline(key, _SCAN_WALL, rect, closed=True)


def _emit_detections(e: ExtractedPage, frame: PageFrame, scan: ScanResult | None,
                     options: ConvertOptions, builder: SceneBuilder, collector: Any,
                     stats: dict[str, int]) -> None:
    layer = "symbols"
    key = "layer:" + layer
    if not builder.has_node(key):
        builder.node(key, name=layer, category="layer", layer=layer)
    layered_openings = any(k.split("|", 1)[0] in OPENING_CLASSES
                           for k in (collector.elements if collector is not None else {}))
    counts: dict[str, int] = {}
    for n, d in enumerate(e.detections, 1):
        x0, y0, x1, y1 = d.box
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
        dpi = d.dpi
        if scan is not None:
            # into the deskewed scan's pixels, where the walls are
            px = corners * (options.dpi / d.dpi)
            corners = px @ scan.matrix[:, :2].T + scan.matrix[:, 2]
            dpi = options.dpi
        rect = frame.px_to_m(corners, dpi)
        handle = f"p{frame.number}#det{n}"
        stats["detections"] = stats.get("detections", 0) + 1
        label = d.label
        if label in OPENING_CLASSES and layered_openings:
            # the page's door/window layers already gave the openings: the detector's
            # doors and windows would only duplicate them
            stats["detections_superseded"] = stats.get("detections_superseded", 0) + 1
            continue
        if (label in OPENING_CLASSES and collector is not None and not layered_openings):
            ekey = collector.element_key(label, layer, handle, builder)
            collector.take_polyline(label, ekey, rect, True, handle, _SYMBOL)
            collector.elements[ekey].__dict__.setdefault("_det", (d.score, list(d.box)))
            continue
        counts[label] = counts.get(label, 0) + 1
        if counts[label] > _MAX_PLACEHOLDERS:
            stats["detections_dropped"] = stats.get("detections_dropped", 0) + 1
            continue
        nkey = f"symbol:{label}:{counts[label]}"
        centre = rect.mean(axis=0)
        node = builder.node(nkey, name=f"{label} {counts[label]}", category=label,
                            parent=key, label=label, score=round(d.score, 4),
                            box_px=[round(v, 1) for v in d.box], dpi=d.dpi,
                            center_m=[round(float(centre[0]), 4), round(float(centre[1]), 4)])
        node.source = [handle]
        builder.add_polyline(nkey, _SYMBOL, rect, closed=True)


def _sources(page: Node, frame: PageFrame) -> None:
    """``extras.source`` of every element under a page: page, bbox (points), item ids."""
    for node in page.iter_nodes():
        if node is page:
            continue
        items = list(node.source)
        node.source = []
        pts = [p.positions for p in node.primitives if p.positions.shape[0]]
        src: dict[str, Any] = {"page": frame.number}
        if pts:
            src["bbox_pt"] = frame.bbox_pt(np.concatenate(pts))
        elif node.translation is not None:
            src["bbox_pt"] = node.extras.get("bbox_pt") or frame.bbox_pt(
                np.asarray([node.translation]))
        if items:
            src["items"] = items
        node.extras["source"] = src


def pdf_readfile(path: str | os.PathLike[str], options: ConvertOptions | None = None) -> Scene:
    """Read a PDF drawing into one scene: one ``page-N`` node per page, metres.

    Args:
        path: the PDF file.
        options: conversion options (defaults when None).

    Returns:
        The scene.

    Raises:
        InvalidInputError: ``ENCRYPTED``, ``SUSPICIOUS_CONTENT``, ``NO_PAGES``,
            ``BAD_OPTIONS``.
        ParsingError: ``BAD_PDF``.
        DetectorError: the detector was asked for and cannot run.
    """
    options = options or ConvertOptions()
    warnings: list[str] = []
    nodes: list[Node] = []
    pages: list[dict[str, Any]] = []
    stats: dict[str, Any] = {"pages": 0, "vector_pages": 0, "scanned_pages": 0}
    layers: set[str] = set()
    first: PageResult | None = None
    grounds: list[GroundPlane] = []
    prepared = _PREPARED.get()
    results = (iter_prepared_pages(prepared, options, warnings) if prepared is not None
               else iter_pdf_pages(path, options, warnings))
    for res in results:
        first = first or res
        if res.ground is not None:
            grounds.append(res.ground)
            res.ground = None
        nodes.append(res.node)
        warnings.extend(res.warnings)
        stats["pages"] += 1
        stats[f"{res.kind}_pages"] += 1
        for k, v in res.stats.items():
            stats[k] = stats.get(k, 0) + v
        layers.update(n.name for n in res.node.iter_nodes() if n.category == "layer")
        pages.append({"page": res.frame.number, "kind": res.kind, "scale": res.scale.label,
                      "scale_source": res.scale.source})
    if stats.get("detections_dropped"):
        warnings.append(f"{stats['detections_dropped']} detections beyond "
                        f"{_MAX_PLACEHOLDERS} per class and page were not made into nodes")
    if stats.get("texts", 0) > options.max_text_nodes:
        warnings.append(f"{stats['texts']} texts; only the first {options.max_text_nodes} "
                        f"became placeholder nodes")
    if len(warnings) > _MAX_WARNINGS:
        extra = len(warnings) - _MAX_WARNINGS
        warnings = warnings[:_MAX_WARNINGS] + [f"... and {extra} more warnings"]
    metadata: dict[str, Any] = {
        "source_type": "pdf",
        "units": "pt",
        "unit_scale_m": first.frame.metres_per_point if first else None,
        "layers": sorted(layers),
        "pages": pages,
    }
    if grounds:
        # the scene has no textures: the planes are added to the written GLB
        # (:func:`cad2gltf.convert.convert_path` applies ``_finish_glb``)
        metadata["_finish_glb"] = functools.partial(add_ground_planes, planes=grounds)
        stats["ground_planes"] = len(grounds)
    return Scene(nodes=nodes, metadata=metadata, warnings=warnings, stats=stats)


def pdf_loadb(data: bytes, options: ConvertOptions | None = None) -> Scene:
    """:func:`pdf_readfile` for bytes (written to a temporary file: PyMuPDF reads pages
    from the file on demand).

    Raises:
        See :func:`pdf_readfile`.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cad2gltf-pdf-") as tmp:
        p = Path(tmp) / "drawing.pdf"
        p.write_bytes(data)
        return pdf_readfile(p, options)
