"""PDF drawings: vector and scanned pages to a :class:`~cad2gltf.scene.Scene`.

``pdf_readfile(path, options)`` is the reader registered in
:data:`cad2gltf.convert.READERS`; :func:`iter_pdf_pages` is the page-by-page core API
(one GLB per page: :func:`pdf_pages_to_glb`).
"""

from __future__ import annotations

from cad2gltf.pdf.pages import pdf_pages_to_glb
from cad2gltf.pdf.reader import PageResult, iter_pdf_pages, pdf_loadb, pdf_readfile

__all__ = ["PageResult", "iter_pdf_pages", "pdf_loadb", "pdf_pages_to_glb", "pdf_readfile"]
