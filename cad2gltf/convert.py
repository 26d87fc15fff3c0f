"""The conversion entry points: validate, read, write glTF, render a preview.

``READERS`` maps a sniffed file type to a reader returning a :class:`Scene`; the glTF
writer and the preview never know which reader made the scene.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cad2gltf.errors import ConversionError, ParsingError, classify
from cad2gltf.gcpause import gc_paused
from cad2gltf.options import ConvertOptions
from cad2gltf.scene import Scene
from cad2gltf.validate import DEFAULT_LIMITS, Limits, SniffResult, validate_path

__all__ = ["READERS", "ConversionResult", "convert_bytes", "convert_path", "sha256_file"]


def _read_dxf(path: Path, options: ConvertOptions) -> Scene:
    from cad2gltf.dxf.reader import dxf_readfile

    return dxf_readfile(path, options)


def _read_pdf(path: Path, options: ConvertOptions) -> Scene:
    from cad2gltf.pdf.reader import pdf_readfile

    return pdf_readfile(path, options)


READERS: dict[str, Callable[[Path, ConvertOptions], Scene]] = {
    "dxf": _read_dxf,
    "pdf": _read_pdf,
}


@dataclass
class ConversionResult:
    """What a conversion produced.

    Attributes:
        glb: the GLB file content.
        preview: PNG bytes of the plan thumbnail (None when not requested).
        report: JSON-able summary: type, sha256, units, counts, warnings, timings.
        scene: the intermediate scene (kept for callers that want to inspect it).
    """

    glb: bytes
    preview: bytes | None
    report: dict[str, Any] = field(default_factory=dict)
    scene: Scene | None = None

    @property
    def warnings(self) -> list[str]:
        return list(self.report.get("warnings", []))


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (bounded memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def convert_path(path: str | os.PathLike[str], options: ConvertOptions | None = None, *,
                 limits: Limits = DEFAULT_LIMITS, declared_type: str | None = None,
                 preview: bool = True, keep_scene: bool = False) -> ConversionResult:
    """Convert one drawing file to GLB (+ preview PNG).

    Args:
        path: the DXF or PDF file.
        options: conversion options (defaults when None).
        limits: size limits per type.
        declared_type: a type claimed by the caller, refused when the content disagrees.
        preview: also render the PNG thumbnail.
        keep_scene: keep the intermediate scene on the result.

    Returns:
        The result with GLB bytes, preview and report.

    Raises:
        ConversionError: every failure, classified (``VALIDATION_ERROR``,
            ``PARSING_ERROR``, ``INTERNAL_ERROR`` ...).
    """
    with gc_paused():
        return _convert_path(path, options or ConvertOptions(), limits=limits,
                             declared_type=declared_type, preview=preview, keep_scene=keep_scene)


def _convert_path(path: str | os.PathLike[str], options: ConvertOptions, *, limits: Limits,
                  declared_type: str | None, preview: bool, keep_scene: bool) -> ConversionResult:
    from cad2gltf import __version__
    from cad2gltf.gltf import gltf_dumpb

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        sniff: SniffResult = validate_path(path, declared_type=declared_type, limits=limits)
        digest = sha256_file(path)
        timings["validate"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        scene = READERS[sniff.file_type](Path(path), options)
        timings["read"] = time.perf_counter() - t1
        # a reader's post-processing of the written GLB (PDF ground-plane textures)
        finish_glb = scene.metadata.pop("_finish_glb", None)
        has_text = any(n.category == "text" for n in scene.iter_nodes())
        if not scene.has_geometry and not has_text:
            raise ParsingError("the drawing has no convertible geometry in its model space",
                               subcode="NO_GEOMETRY", details={"stats": scene.stats})
        provenance = {
            "source_sha256": digest,
            "source_name": Path(path).name,
            "source_type": sniff.file_type,
            "source_variant": sniff.variant,
            "source_bytes": sniff.size,
            "converter": "cad2gltf",
            "converter_version": __version__,
            "options": options.to_dict(),
            "units": "m",
            "source_units": scene.metadata.get("units"),
            "layers": scene.metadata.get("layers", []),
        }
        t2 = time.perf_counter()
        bounds = scene.bounds()  # shared by the writer and the preview
        glb = gltf_dumpb(scene, provenance=provenance, recenter=options.recenter,
                         name=Path(path).stem, bounds=bounds)
        if finish_glb is not None:
            glb = finish_glb(glb)
        timings["gltf"] = time.perf_counter() - t2
        png = None
        if preview:
            from cad2gltf.preview import preview_png

            t3 = time.perf_counter()
            png = preview_png(scene, bounds=bounds)
            timings["preview"] = time.perf_counter() - t3
    except ConversionError:
        raise
    except RecursionError:
        raise ParsingError("the drawing nests too deeply to convert",
                           subcode="TOO_DEEP") from None
    except Exception as exc:  # noqa: BLE001 - everything leaves classified
        raise classify(exc) from exc
    timings["total"] = time.perf_counter() - t0
    categories: dict[str, int] = {}
    for node in scene.iter_nodes():
        categories[node.category] = categories.get(node.category, 0) + 1
    report = {
        "file_type": sniff.file_type,
        "variant": sniff.variant,
        "source_sha256": digest,
        "bytes": sniff.size,
        "units": scene.metadata.get("units"),
        "unit_scale_m": scene.metadata.get("unit_scale_m"),
        "layers": len(scene.metadata.get("layers", [])),
        "nodes_by_category": dict(sorted(categories.items())),
        "vertices": scene.vertex_count,
        "stats": scene.stats,
        "warnings": list(scene.warnings),
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "glb_bytes": len(glb),
    }
    return ConversionResult(glb=glb, preview=png, report=report,
                            scene=scene if keep_scene else None)


def convert_bytes(data: bytes, name: str, options: ConvertOptions | None = None,
                  **kwargs: Any) -> ConversionResult:
    """Convert drawing bytes; ``name`` is the original file name (validated, not trusted).

    See :func:`convert_path` for arguments and errors.
    """
    from cad2gltf.validate import validate_filename

    validate_filename(name)
    with tempfile.TemporaryDirectory(prefix="cad2gltf-") as tmp:
        p = Path(tmp) / name
        p.write_bytes(data)
        return convert_path(p, options, **kwargs)
