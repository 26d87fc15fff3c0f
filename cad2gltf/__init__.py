"""cad2gltf: 2D CAD drawings (DXF, PDF) to 3D glTF 2.0.

The pure conversion library: it takes paths or bytes and returns bytes plus a report.
It imports no Prefect, no object storage, no database and no message-broker client.

    >>> from cad2gltf import convert_path
    >>> result = convert_path("plan.dxf")          # doctest: +SKIP
    >>> open("plan.glb", "wb").write(result.glb)   # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from cad2gltf.convert import READERS, ConversionResult, convert_bytes, convert_path  # noqa: E402
from cad2gltf.errors import ConversionError, InvalidInputError, ParsingError  # noqa: E402
from cad2gltf.options import ConvertOptions  # noqa: E402

__all__ = [
    "READERS",
    "ConversionError",
    "ConversionResult",
    "ConvertOptions",
    "InvalidInputError",
    "ParsingError",
    "__version__",
    "convert_bytes",
    "convert_path",
]
