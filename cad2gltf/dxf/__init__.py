"""DXF reading (ezdxf) and floor-plan semantics."""

from __future__ import annotations

from cad2gltf.dxf.reader import dxf_loadb, dxf_readfile, read_document

__all__ = ["dxf_loadb", "dxf_readfile", "read_document"]
