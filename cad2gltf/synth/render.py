"""Render generated floor plans to vector PDF, to "scanned" rasters and to image-only PDF.

The test fixtures and the training data of the PDF side come from here:

* :func:`plan_to_pdf` draws a :class:`~cad2gltf.synth.floorplan.FloorPlan` at a
  drawing scale (1:``scale``) on an ISO A-size sheet through ezdxf's drawing add-on and
  its PyMuPDF backend, and returns the PDF bytes with a :class:`PageTransform` that
  maps drawing coordinates to PDF points and to pixels of a render at any DPI;
* :func:`plans_to_pdf` makes a multi-page plan set;
* :func:`plan_to_raster` rasterises the page with PyMuPDF and applies scan effects
  (rotation, blur, contrast loss, noise, speckle, JPEG degradation), deterministically
  from a seed;
* :func:`raster_to_pdf` wraps rasters into an image-only ("scanned") PDF;
* :func:`symbol_boxes` gives the pixel boxes of the doors, windows, stairs and fixtures
  of a plan from its ground truth and the real extents of their INSERTs.

Conventions: PDF points and pixels have their origin in the top-left corner of the page
with y pointing down (PyMuPDF's convention); a pixel coordinate is ``points * dpi / 72``
(continuous, so pixel ``i`` covers ``[i, i + 1)``). Everything is pure: no files are
written, the same arguments give the same bytes.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cad2gltf.synth.floorplan import FloorPlan

__all__ = [
    "PAPER_SIZES_MM",
    "PageTransform",
    "plan_to_pdf",
    "plan_to_raster",
    "plans_to_pdf",
    "raster_to_pdf",
    "symbol_boxes",
]

#: ISO 216 A sizes, (short side, long side) in millimetres
PAPER_SIZES_MM: dict[str, tuple[float, float]] = {
    "A0": (841.0, 1189.0),
    "A1": (594.0, 841.0),
    "A2": (420.0, 594.0),
    "A3": (297.0, 420.0),
    "A4": (210.0, 297.0),
}
_MM_PER_INCH = 25.4
_PT_PER_INCH = 72.0

#: fonts that can be given as ``font=`` (DejaVu ships with most Linux systems; ezdxf
#: falls back to its default font when one is missing)
_FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSansCondensed.ttf")


@dataclass(frozen=True)
class PageTransform:
    """Maps drawing coordinates of a plan to a rendered page.

    The drawing point ``origin`` (left, top) lands on the top-left corner of the page;
    x grows to the right, y downwards on the page and upwards in the drawing.

    Attributes:
        origin: drawing coordinates (x, y) of the page's top-left corner.
        points_per_unit: PDF points per drawing unit.
        page_size_pt: page (width, height) in PDF points, as written in the PDF.
        paper: paper name (``"A3"``) and orientation, e.g. ``"A3 landscape"``.
        paper_size_mm: nominal paper (width, height) in millimetres.
        scale_denominator: the drawing scale 1:``scale_denominator``.
        unit_scale_m: metres per drawing unit (from the plan).
        rotation_deg: counter-clockwise rotation of a raster about the page centre (as
            seen on screen), 0 for the vector page; :meth:`to_pixels` applies it.
    """

    origin: tuple[float, float]
    points_per_unit: float
    page_size_pt: tuple[float, float]
    paper: str
    paper_size_mm: tuple[float, float]
    scale_denominator: float
    unit_scale_m: float
    rotation_deg: float = 0.0

    def to_points(self, xy: Sequence[float]) -> tuple[float, float]:
        """Drawing coordinates -> PDF points (top-left origin, y down), unrotated."""
        k = self.points_per_unit
        return ((float(xy[0]) - self.origin[0]) * k, (self.origin[1] - float(xy[1])) * k)

    def to_pixels(self, xy: Sequence[float], dpi: float) -> tuple[float, float]:
        """Drawing coordinates -> pixels of a render at ``dpi`` (with the raster rotation).

        Args:
            xy: a point in drawing units.
            dpi: the render's resolution.

        Returns:
            Continuous pixel coordinates (x right, y down).
        """
        px, py = self.to_points(xy)
        f = float(dpi) / _PT_PER_INCH
        x, y = px * f, py * f
        if self.rotation_deg:
            m = self.rotation_matrix(dpi)
            x, y = (m[0][0] * x + m[0][1] * y + m[0][2], m[1][0] * x + m[1][1] * y + m[1][2])
        return (x, y)

    def pixel_size(self, dpi: float) -> tuple[int, int]:
        """(width, height) in pixels of the page rendered at ``dpi`` by PyMuPDF."""
        f = float(dpi) / _PT_PER_INCH
        # MuPDF rounds the page rectangle outwards to whole pixels
        return (
            math.ceil(self.page_size_pt[0] * f - 1e-3),
            math.ceil(self.page_size_pt[1] * f - 1e-3),
        )

    def rotation_matrix(self, dpi: float) -> tuple[tuple[float, float, float], ...]:
        """The 2x3 affine pixel matrix of the raster rotation (OpenCV's convention)."""
        f = float(dpi) / _PT_PER_INCH
        cx, cy = self.page_size_pt[0] * f / 2.0, self.page_size_pt[1] * f / 2.0
        a = math.cos(math.radians(self.rotation_deg))
        b = math.sin(math.radians(self.rotation_deg))
        return ((a, b, (1 - a) * cx - b * cy), (-b, a, b * cx + (1 - a) * cy))

    @property
    def mm_per_unit_on_paper(self) -> float:
        """Paper millimetres per drawing unit."""
        return self.points_per_unit * _MM_PER_INCH / _PT_PER_INCH


def _paper_mm(paper: str, orientation: str) -> tuple[float, float]:
    key = paper.strip().upper()
    if key not in PAPER_SIZES_MM:
        raise ValueError(f"paper must be one of {sorted(PAPER_SIZES_MM)}, not {paper!r}")
    short, long_ = PAPER_SIZES_MM[key]
    if orientation == "landscape":
        return (long_, short)
    if orientation == "portrait":
        return (short, long_)
    raise ValueError(f"orientation must be 'landscape' or 'portrait', not {orientation!r}")


def plan_to_pdf(
    plan: FloorPlan,
    *,
    scale: float = 100,
    paper: str = "A3",
    orientation: str = "landscape",
    lineweight_scale: float = 1.0,
    min_lineweight_mm: float = 0.05,
    font: str | None = None,
    center: tuple[float, float] | None = None,
) -> tuple[bytes, PageTransform]:
    """Draw a plan on one PDF page at 1:``scale`` (vector content, black on white).

    The plan's extents are centred on the sheet (or ``center``, in drawing units);
    anything beyond the sheet is cut off by the page edge.

    Args:
        plan: a generated plan (its document is only read; a ``font`` is set on its
            text styles for the duration of the call and restored afterwards).
        scale: the scale denominator (100 = 1:100): paper millimetres per
            ``scale`` real millimetres.
        paper: ``"A0"`` ... ``"A4"``.
        orientation: ``"landscape"`` (default) or ``"portrait"``.
        lineweight_scale: factor on every line weight (layer lineweights in the plan:
            walls 0.50 mm, openings 0.25 mm, furniture 0.18 mm...).
        min_lineweight_mm: thinnest stroke drawn, in paper millimetres.
        font: a TrueType font file name for all texts (e.g. ``"DejaVuSerif.ttf"``),
            None for the document's own.
        center: drawing point put at the centre of the page; the extents' centre when
            None.

    Returns:
        The PDF file as bytes and the transform from drawing units to the page.

    Raises:
        ValueError: on an unknown paper or orientation, a non-positive scale or line
            weight factor.
    """
    import ezdxf.addons.drawing.pymupdf as ezpdf
    from ezdxf.addons.drawing import Frontend, RenderContext, config, layout
    from ezdxf.math import BoundingBox2d

    if not scale > 0:
        raise ValueError("scale must be > 0")
    if not lineweight_scale > 0:
        raise ValueError("lineweight_scale must be > 0")
    width_mm, height_mm = _paper_mm(paper, orientation)
    mm_per_unit = plan.unit_scale_m * 1000.0 / float(scale)  # paper mm per drawing unit
    if center is None:
        (x0, y0), (x1, y1) = plan.extents
        center = ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
    cx, cy = float(center[0]), float(center[1])
    half_w, half_h = width_mm / mm_per_unit / 2.0, height_mm / mm_per_unit / 2.0
    render_box = BoundingBox2d([(cx - half_w, cy - half_h), (cx + half_w, cy + half_h)])

    page = layout.Page(width_mm, height_mm, layout.Units.mm, margins=layout.Margins.all(0))
    settings = layout.Settings(fit_page=False, scale=mm_per_unit, output_layers=False)
    cfg = config.Configuration(
        color_policy=config.ColorPolicy.BLACK,
        background_policy=config.BackgroundPolicy.OFF,
        lineweight_policy=config.LineweightPolicy.ABSOLUTE,
        lineweight_scaling=float(lineweight_scale),
        min_lineweight=float(min_lineweight_mm),
        hatch_policy=config.HatchPolicy.NORMAL,
    )
    doc = plan.doc
    saved: list[tuple[Any, str]] = []
    if font is not None:
        for style in doc.styles:
            saved.append((style, style.dxf.font))
            style.dxf.font = font
    try:
        backend = ezpdf.PyMuPdfBackend()
        ctx = RenderContext(doc)
        Frontend(ctx, backend, config=cfg).draw_layout(doc.modelspace(), finalize=True)
        pdf = _fixed_id(backend.get_pdf_bytes(page, settings=settings, render_box=render_box))
    finally:
        for style, old in saved:
            style.dxf.font = old

    # the backend maps paper mm to points with its own (integer) output space
    final = layout.Page(width_mm, height_mm, layout.Units.mm, margins=layout.Margins.all(0))
    pt_per_mm = ezpdf.get_coordinate_output_space(final) / max(width_mm, height_mm)
    page_size_pt = _pdf_page_size(pdf)
    transform = PageTransform(
        origin=(cx - half_w, cy + half_h),
        points_per_unit=mm_per_unit * pt_per_mm,
        page_size_pt=page_size_pt,
        paper=f"{paper.strip().upper()} {orientation}",
        paper_size_mm=(width_mm, height_mm),
        scale_denominator=float(scale),
        unit_scale_m=float(plan.unit_scale_m),
    )
    return pdf, transform


#: one trailer /ID string: hex ``<...>`` or literal ``(...)`` (MuPDF writes either)
_ID_STR = rb"(?:<[0-9A-Fa-f\s]*>|\((?:\\.|[^\\()])*\))"
_ID_RE = re.compile(rb"/ID\s*\[\s*" + _ID_STR + rb"\s*" + _ID_STR + rb"\s*\]", re.DOTALL)


def _fixed_id(pdf: bytes) -> bytes:
    """Replace the random trailer ``/ID`` MuPDF writes by a hash of the content.

    The trailer follows the cross-reference table, so no offset changes.
    """
    matches = list(_ID_RE.finditer(pdf))
    if not matches:
        return pdf
    m = matches[-1]
    digest = hashlib.md5(pdf[: m.start()], usedforsecurity=False).hexdigest().upper().encode()
    return pdf[: m.start()] + b"/ID[<" + digest + b"><" + digest + b">]" + pdf[m.end() :]


def _pdf_page_size(pdf: bytes) -> tuple[float, float]:
    import pymupdf

    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        rect = doc[0].rect
        return (float(rect.width), float(rect.height))


def plans_to_pdf(
    plans: Sequence[FloorPlan],
    *,
    scale: float | Sequence[float] = 100,
    paper: str = "A3",
    orientation: str = "landscape",
    lineweight_scale: float = 1.0,
    font: str | None = None,
) -> bytes:
    """A multi-page vector PDF: one page per plan (a plan set).

    Args:
        plans: the plans, in page order.
        scale: one scale denominator for all pages, or one per plan.
        paper: sheet size of every page.
        orientation: ``"landscape"`` or ``"portrait"``.
        lineweight_scale: factor on every line weight.
        font: TrueType font file name for all texts, None for the documents' own.

    Returns:
        The PDF file as bytes.

    Raises:
        ValueError: on no plans, a scale list of the wrong length, or bad options.
    """
    import pymupdf

    if not plans:
        raise ValueError("plans_to_pdf needs at least one plan")
    scales = [scale] * len(plans) if isinstance(scale, (int, float)) else list(scale)
    if len(scales) != len(plans):
        raise ValueError("give one scale, or one scale per plan")
    out = pymupdf.open()
    try:
        for plan, s in zip(plans, scales, strict=True):
            pdf, _ = plan_to_pdf(
                plan,
                scale=s,
                paper=paper,
                orientation=orientation,
                lineweight_scale=lineweight_scale,
                font=font,
            )
            with pymupdf.open(stream=pdf, filetype="pdf") as one:
                out.insert_pdf(one)
        return _fixed_id(out.tobytes(garbage=3, deflate=True))
    finally:
        out.close()


def plan_to_raster(
    plan: FloorPlan,
    *,
    scale: float = 100,
    paper: str = "A3",
    orientation: str = "landscape",
    dpi: float = 100,
    seed: int = 0,
    rotation_deg: float = 0.0,
    noise: float = 0.0,
    blur: float = 0.0,
    contrast: float = 1.0,
    speckle: float = 0.0,
    jpeg_quality: int | None = None,
    lineweight_scale: float = 1.0,
    font: str | None = None,
) -> tuple[np.ndarray, PageTransform]:
    """Render a plan's page to a grey raster and make it look scanned.

    The vector page of :func:`plan_to_pdf` is rasterised by PyMuPDF at ``dpi`` (so the
    image is the paper size times the DPI), then, in this order: rotated about the page
    centre (white fill), blurred, its contrast reduced, gaussian noise added, speckle
    (isolated black and white dots) sprinkled, and JPEG-compressed. All randomness comes
    from ``seed``.

    Args:
        plan: a generated plan.
        scale: scale denominator.
        paper: sheet size.
        orientation: ``"landscape"`` or ``"portrait"``.
        dpi: raster resolution.
        seed: seed of the noise and speckle.
        rotation_deg: counter-clockwise rotation, scanners skew by up to ~3 degrees.
        noise: standard deviation of gaussian noise, in grey levels (0-255).
        blur: sigma of a gaussian blur, in pixels (0 = none).
        contrast: 1 keeps black ink black; 0.6 makes it a grey of ~100.
        speckle: fraction of pixels flipped to black or white dots.
        jpeg_quality: JPEG-compress and decompress at this quality (None = no).
        lineweight_scale: factor on every line weight.
        font: TrueType font for texts (see :func:`plan_to_pdf`).

    Returns:
        The uint8 grey image (H x W) and the transform, whose ``rotation_deg`` is set so
        that :meth:`PageTransform.to_pixels` lands on the rotated raster.

    Raises:
        ValueError: on bad options (see :func:`plan_to_pdf`), a non-positive DPI or a
            JPEG quality outside 1..100.
    """
    import cv2
    import pymupdf

    if not dpi > 0:
        raise ValueError("dpi must be > 0")
    if jpeg_quality is not None and not 1 <= int(jpeg_quality) <= 100:
        raise ValueError("jpeg_quality must be in 1..100")
    pdf, transform = plan_to_pdf(
        plan,
        scale=scale,
        paper=paper,
        orientation=orientation,
        lineweight_scale=lineweight_scale,
        font=font,
    )
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        f = float(dpi) / _PT_PER_INCH
        pix = doc[0].get_pixmap(matrix=pymupdf.Matrix(f, f), colorspace=pymupdf.csGRAY, alpha=False)
        raw = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.stride)
        img: Any = raw[:, : pix.width].copy()
    transform = replace(transform, rotation_deg=float(rotation_deg))
    rng = np.random.default_rng(int(seed))
    if rotation_deg:
        m = np.array(transform.rotation_matrix(dpi), dtype=np.float64)
        img = cv2.warpAffine(
            img,
            m,
            (img.shape[1], img.shape[0]),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=255,
        )
    if blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=float(blur))
    work = img.astype(np.float32)
    if contrast != 1.0:
        work = 255.0 - (255.0 - work) * float(contrast)
    if noise > 0:
        work += rng.normal(0.0, float(noise), size=work.shape).astype(np.float32)
    img = np.clip(work, 0, 255).astype(np.uint8)
    if speckle > 0:
        mask = rng.random(img.shape) < float(speckle)
        dots = rng.random(img.shape) < 0.5
        img[mask & dots] = 0
        img[mask & ~dots] = 255
    if jpeg_quality is not None:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return img, transform


def raster_to_pdf(images: Sequence[np.ndarray], dpi: float) -> bytes:
    """An image-only ("scanned") PDF, one page per image, page size = pixels / DPI.

    Args:
        images: uint8 grey (H x W) or BGR (H x W x 3) images.
        dpi: their resolution; a 100 DPI image of 1654 px is 1191 pt wide.

    Returns:
        The PDF file as bytes (images stored losslessly as PNG).

    Raises:
        ValueError: on no images, a non-positive DPI or an image that cannot be encoded.
    """
    import cv2
    import pymupdf

    if not images:
        raise ValueError("raster_to_pdf needs at least one image")
    if not dpi > 0:
        raise ValueError("dpi must be > 0")
    out = pymupdf.open()
    try:
        for img in images:
            arr = np.ascontiguousarray(img)
            if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
                raise ValueError("images must be uint8 HxW or HxWx3 arrays")
            ok, buf = cv2.imencode(".png", arr)
            if not ok:
                raise ValueError("could not encode an image as PNG")
            h, w = arr.shape[:2]
            f = _PT_PER_INCH / float(dpi)
            page = out.new_page(width=w * f, height=h * f)
            page.insert_image(page.rect, stream=buf.tobytes())
        return _fixed_id(out.tobytes(garbage=3, deflate=True))
    finally:
        out.close()


def symbol_boxes(
    plan: FloorPlan,
    transform: PageTransform,
    dpi: float,
    *,
    min_visible: float = 0.5,
) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Pixel boxes of the plan's symbols on a render at ``dpi``.

    Each door and window (:attr:`FloorPlan.openings`) and each stair or fixture
    (:attr:`FloorPlan.symbols`) is boxed by the real extents of its INSERT (door
    swing arcs and window sills included), mapped through ``transform`` (with its
    rotation: the box is the axis-aligned hull of the mapped corners), and clipped to
    the page; boxes with less than ``min_visible`` of their area on the page are left
    out.

    Args:
        plan: the rendered plan.
        transform: its page transform (from :func:`plan_to_pdf` or
            :func:`plan_to_raster`).
        dpi: the render's resolution.
        min_visible: minimum fraction of a box that must be on the page.

    Returns:
        ``(label, (x0, y0, x1, y1))`` in pixels, labels ``door``, ``window``,
        ``stairs``, ``toilet``, ``sink``, ``bathtub``, in ground-truth order.
    """
    from ezdxf import bbox as ezbbox

    db = plan.doc.entitydb
    items = [(o.kind, o.handle) for o in plan.openings]
    items += [(s.kind, s.handle) for s in plan.symbols]
    width, height = transform.pixel_size(dpi)
    cache = ezbbox.Cache()
    out: list[tuple[str, tuple[float, float, float, float]]] = []
    for label, handle in items:
        entity = db.get(handle)
        if entity is None:
            continue
        box = ezbbox.extents([entity], fast=False, cache=cache)
        if not box.has_data:
            continue
        (ax, ay), (bx, by) = (box.extmin.x, box.extmin.y), (box.extmax.x, box.extmax.y)
        corners = [transform.to_pixels(p, dpi) for p in ((ax, ay), (bx, ay), (bx, by), (ax, by))]
        xs = [c[0] for c in corners]
        ys = [c[1] for c in corners]
        x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
        area = max(x1 - x0, 1e-9) * max(y1 - y0, 1e-9)
        cx0, cy0 = max(x0, 0.0), max(y0, 0.0)
        cx1, cy1 = min(x1, float(width)), min(y1, float(height))
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        if (cx1 - cx0) * (cy1 - cy0) / area < min_visible:
            continue
        out.append((label, (cx0, cy0, cx1, cy1)))
    return out
