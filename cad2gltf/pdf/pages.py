"""One GLB per PDF page (``glb_per_page``): the core API for callers that want pages
as separate models. The file converter (:func:`cad2gltf.convert.convert_path`) always
writes one GLB with one ``page-N`` node per page.
"""

from __future__ import annotations

import os
from typing import Any

from cad2gltf.options import ConvertOptions
from cad2gltf.scene import Scene

__all__ = ["pdf_pages_to_glb"]


def pdf_pages_to_glb(path: str | os.PathLike[str], options: ConvertOptions | None = None,
                     *, provenance: dict[str, Any] | None = None) -> list[tuple[int, bytes]]:
    """Convert each selected page to its own GLB, one page in memory at a time.

    Args:
        path: the PDF file.
        options: conversion options.
        provenance: asset extras (source sha256, converter version ...); the page number
            is added.

    Returns:
        ``[(page_number, glb_bytes), ...]`` in page order.

    Raises:
        InvalidInputError: see :func:`cad2gltf.pdf.reader.iter_pdf_pages`.
        ParsingError: see :func:`cad2gltf.pdf.reader.iter_pdf_pages`.
        DetectorError: see :func:`cad2gltf.pdf.reader.iter_pdf_pages`.
    """
    from cad2gltf.gltf import gltf_dumpb
    from cad2gltf.pdf.groundplane import add_ground_planes
    from cad2gltf.pdf.reader import iter_pdf_pages

    options = options or ConvertOptions()
    warnings: list[str] = []
    out: list[tuple[int, bytes]] = []
    for res in iter_pdf_pages(path, options, warnings):
        scene = Scene(nodes=[res.node], warnings=warnings + res.warnings, stats=res.stats,
                      metadata={"source_type": "pdf", "units": "pt", "page": res.frame.number,
                                "unit_scale_m": res.frame.metres_per_point})
        prov = dict(provenance or {})
        prov["page"] = res.frame.number
        glb = gltf_dumpb(scene, provenance=prov, recenter=options.recenter,
                         name=f"page-{res.frame.number}")
        if res.ground is not None:
            glb = add_ground_planes(glb, [res.ground])
        out.append((res.frame.number, glb))
    return out
