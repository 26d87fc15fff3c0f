"""Conversion options: one frozen, JSON-serialisable value object.

Options are part of a result's identity (cache keys, provenance in the GLB), so they are
normalised and serialised canonically by :meth:`ConvertOptions.canonical_json`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cad2gltf.errors import InvalidInputError

__all__ = ["DEFAULT_LAYER_RULES", "ConvertOptions"]

# Layer-name rules for floor-plan semantics: (category, regular expression), first match
# wins. Each pattern is searched in the upper-cased layer name; ``(?<![A-Z])`` and
# ``(?![A-Z])`` make words of AIA CAD Layer Guidelines names (A-WALL, A-DOOR, A-GLAZ,
# A-FLOR-STRS), ISO 13567-style and plain English/German/French names match as words.
_W = r"(?<![A-Z])(?:{})(?![A-Z])"
DEFAULT_LAYER_RULES: tuple[tuple[str, str], ...] = (
    ("door", _W.format("DOORS?|DR|TUER|TÜR|TUEREN|TÜREN|PORTES?")),
    ("window", _W.format("GLAZ|WIND|WINDOWS?|WNDW|FENSTER|FENETRES?")),
    ("wall", _W.format("WALLS?|WAND|WAENDE|WÄNDE|MURS?")),
    ("column", _W.format("COLS?|COLUMNS?|STUETZEN?|STÜTZEN?")),
    ("stair", _W.format("STRS|STAIRS?|TREPPEN?")),
)

#: PDF fields and their defaults: left out of ``to_dict()`` while at these values
_PDF_DEFAULTS: dict[str, Any] = {"scale": None, "dpi": 150, "detect_symbols": False,
                                 "pages": None, "ground_plane": False, "glb_per_page": False}

_UNITS = ("mm", "cm", "m", "km", "in", "ft", "yd", "mi", "um")


@dataclass(frozen=True)
class ConvertOptions:
    """Everything that changes a conversion's output.

    Attributes:
        default_units: units assumed when a drawing says it is unitless ($INSUNITS 0).
            The default, millimetres, is what most architectural DXF exports use.
        units: force the drawing units, overriding $INSUNITS.
        chord_tolerance: maximum chord deviation of tessellated curves, relative to the
            drawing's diagonal.
        max_segments: upper bound of segments per curve.
        wall_height: wall height in metres.
        wall_thickness: default thickness (m) of walls drawn as a single line.
        min_wall_thickness / max_wall_thickness: range (m) in which two parallel lines are
            taken as the two faces of one wall.
        door_height: head height of door openings (m).
        window_sill / window_head: window opening from sill to head (m).
        semantics: recognise walls, doors and windows (False: everything is linework).
        layer_rules: (category, regex) pairs searched in the upper-cased layer name;
            the first match wins.
        include_hidden_layers: also convert layers that are off or frozen.
        include_text: emit TEXT/MTEXT/ATTRIB placeholder nodes.
        max_text_nodes: above this many texts, further texts are only counted.
        recenter: move the drawing's centre to the glTF origin (the offset is kept in
            ``extras.origin_offset_m``); large world coordinates lose float32 precision.
        max_block_depth: nesting limit for block references.
        max_vertices: refuse drawings that would produce more vertices (memory guard).
        scale: PDF drawing scale as ``"1:100"`` (None: inferred from a scale note on the
            page, else :data:`cad2gltf.pdf.scale.DEFAULT_SCALE`, 1:100).
        dpi: render resolution of scanned PDF pages (dots per inch).
        detect_symbols: run the symbol detector on PDF pages (doors, windows, stairs...).
        pages: PDF page selection as ``"1-3,7"`` (1-based; None: all pages).
        ground_plane: lay each PDF page's render under the model as a textured plane.
        glb_per_page: with the PDF core API (:func:`cad2gltf.pdf.pdf_pages_to_glb`),
            one GLB per page; the file converter always writes one GLB.
    """

    default_units: str = "mm"
    units: str | None = None
    chord_tolerance: float = 2e-4
    max_segments: int = 256
    wall_height: float = 2.7
    wall_thickness: float = 0.15
    min_wall_thickness: float = 0.04
    max_wall_thickness: float = 0.6
    door_height: float = 2.1
    window_sill: float = 0.9
    window_head: float = 2.1
    semantics: bool = True
    layer_rules: tuple[tuple[str, str], ...] = field(default=DEFAULT_LAYER_RULES)
    include_hidden_layers: bool = False
    include_text: bool = True
    max_text_nodes: int = 5000
    recenter: bool = True
    max_block_depth: int = 24
    max_vertices: int = 60_000_000
    # PDF only (new fields go last and stay out of to_dict() while at their defaults,
    # so that DXF cache keys and provenance do not change)
    scale: str | None = None
    dpi: int = 150
    detect_symbols: bool = False
    pages: str | None = None
    ground_plane: bool = False
    glb_per_page: bool = False

    def __post_init__(self) -> None:
        def bad(msg: str) -> InvalidInputError:
            return InvalidInputError(f"invalid option: {msg}", subcode="BAD_OPTIONS")

        for unit_field in ("default_units", "units"):
            value = getattr(self, unit_field)
            if value is not None and value not in _UNITS:
                raise bad(f"{unit_field} must be one of {', '.join(_UNITS)}, not {value!r}")
        if not (1e-7 <= self.chord_tolerance <= 0.1):
            raise bad("chord_tolerance must be within 1e-7..0.1")
        if not (4 <= self.max_segments <= 100_000):
            raise bad("max_segments must be within 4..100000")
        for name in ("wall_height", "wall_thickness", "door_height", "window_head",
                     "max_wall_thickness"):
            if not (0 < getattr(self, name) <= 1000):
                raise bad(f"{name} must be positive")
        if not (0 <= self.min_wall_thickness < self.max_wall_thickness):
            raise bad("min_wall_thickness must be below max_wall_thickness")
        if not (0 <= self.window_sill < self.window_head):
            raise bad("window_sill must be below window_head")
        if self.max_text_nodes < 0 or self.max_block_depth < 1 or self.max_vertices < 1000:
            raise bad("limits must be positive")
        import re

        if self.scale is not None and not re.fullmatch(r"\s*\d+(\.\d+)?\s*:\s*\d+(\.\d+)?\s*",
                                                       str(self.scale)):
            raise bad(f"scale must look like '1:100', not {self.scale!r}")
        if self.scale is not None and float(str(self.scale).split(":")[0]) <= 0:
            raise bad("scale must be positive")
        if not (36 <= self.dpi <= 600):
            raise bad("dpi must be within 36..600")
        if self.pages is not None and not re.fullmatch(r"\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*",
                                                       str(self.pages)):
            raise bad(f"pages must look like '1-3,7', not {self.pages!r}")
        for rule in self.layer_rules:
            if len(rule) != 2:
                raise bad("layer_rules are (category, regex) pairs")
            try:
                re.compile(rule[1])
            except re.error as exc:
                raise bad(f"layer rule {rule[0]!r}: {exc}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ConvertOptions:
        """Build from a JSON-like mapping; unknown keys are refused (``BAD_OPTIONS``).

        Raises:
            InvalidInputError: ``BAD_OPTIONS`` for unknown keys or bad values.
        """
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"unknown option(s): {', '.join(unknown)}",
                                    subcode="BAD_OPTIONS")
        if "layer_rules" in data and data["layer_rules"] is not None:
            rules = data["layer_rules"]
            if isinstance(rules, dict):
                rules = list(rules.items())
            data["layer_rules"] = tuple((str(c), str(r)) for c, r in rules)
        try:
            return cls(**data)
        except TypeError as exc:
            raise InvalidInputError(f"invalid option: {exc}", subcode="BAD_OPTIONS") from None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layer_rules"] = [list(r) for r in self.layer_rules]
        for name, default in _PDF_DEFAULTS.items():
            if d[name] == default:
                del d[name]  # keeps existing cache keys and provenance stable
        return d

    def canonical_json(self) -> str:
        """Stable serialisation used in cache keys and provenance."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
