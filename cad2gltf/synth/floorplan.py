"""Seeded synthetic architectural floor plans as DXF, with exactly known ground truth.

:func:`generate_floorplan` draws a grid of ``rooms_x`` by ``rooms_y`` rooms the way a
draughtsman would: walls as pairs of parallel lines (or outlines, or single centre
lines) with gaps at the openings, door and window blocks inserted in the gaps, furniture
blocks (some nested, one with attributes), a solid hatch, room names, a title MTEXT and
rendered linear dimensions. Alongside the drawing it returns the ground truth the
recognisers are tested against: every wall (centreline, thickness, style and the handles
of the entities that draw it), every opening (kind, insert handle, centre, width, wall
direction), every piece of furniture and every room.

:func:`generate_large_drawing` tiles such plans (plus site work: property lines, trees,
paths, hedges) in a grid until modelspace holds exactly the requested number of entities,
for the benchmarks (1k ... 1M entities).

Conventions:
    * all ground-truth coordinates and lengths are in **drawing units** (the ``units``
      of the plan); multiply by :attr:`FloorPlan.unit_scale_m` for metres;
    * internally everything is planned in integer-ish millimetres and divided by the
      number of millimetres per drawing unit only when written, so the DXF holds clean
      numbers (``4.3`` rather than ``4.300000000000001``);
    * the same seed and parameters always give the same drawing, the same handles and,
      through :func:`write_floorplan` / :func:`encode_floorplan`, the same bytes.

Only the standard library and ezdxf are used here (no I/O except writing the DXF file
when asked).
"""

from __future__ import annotations

import io
import math
import random
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import ezdxf
from ezdxf import bbox as _ezbbox
from ezdxf.document import Drawing
from ezdxf.enums import TextEntityAlignment
from ezdxf.lldxf import const as _const

from cad2gltf.gcpause import gc_paused

__all__ = [
    "DOOR_STYLES",
    "SYMBOL_KINDS",
    "WINDOW_STYLES",
    "FloorPlan",
    "FurnitureTruth",
    "OpeningTruth",
    "RoomTruth",
    "SymbolTruth",
    "WallTruth",
    "encode_floorplan",
    "generate_floorplan",
    "generate_large_drawing",
    "write_floorplan",
]

# --------------------------------------------------------------------------- constants

#: units name -> ($INSUNITS code, millimetres per drawing unit)
_UNITS: dict[str, tuple[int, float]] = {"m": (6, 1000.0), "cm": (5, 10.0), "mm": (4, 1.0)}

_LAYER_NAMES: dict[str, dict[str, str]] = {
    "aia": {
        "wall": "A-WALL",
        "door": "A-DOOR",
        "window": "A-GLAZ",
        "furn": "A-FURN",
        "text": "A-ANNO-TEXT",
        "dims": "A-ANNO-DIMS",
        "site": "L-SITE",
        "fixt": "A-FLOR-FIXT",
        "stair": "A-FLOR-STRS",
    },
    "plain": {
        "wall": "WALL",
        "door": "DOOR",
        "window": "WINDOW",
        "furn": "FURNITURE",
        "text": "TEXT",
        "dims": "DIMS",
        "site": "SITE",
        "fixt": "FIXTURES",
        "stair": "STAIRS",
    },
}
#: distinct ACI colours and lineweights (1/100 mm) per layer role
_LAYER_COLORS = {
    "wall": 7,
    "door": 2,
    "window": 4,
    "furn": 30,
    "text": 3,
    "dims": 1,
    "site": 94,
    "fixt": 5,
    "stair": 6,
}
_LAYER_LINEWEIGHTS = {
    "wall": 50,
    "door": 25,
    "window": 25,
    "furn": 18,
    "text": 18,
    "dims": 13,
    "site": 18,
    "fixt": 18,
    "stair": 25,
}
_PLAN_ROLES = ("wall", "door", "window", "furn", "text", "dims")

_WALL_STYLES = ("pair", "outline", "single")
#: opt-in symbol styles (see generate_floorplan); the first one is the historic default
DOOR_STYLES = ("arc", "leaf", "arc_rect")
WINDOW_STYLES = ("glass", "single", "sill")
#: symbol kinds drawn with ``symbols=True`` (doors and windows are always drawn)
SYMBOL_KINDS = ("stairs", "toilet", "sink", "bathtub")
#: symbol block -> (kind, local bounding box in mm around the block origin)
_SYMBOL_BLOCKS: dict[str, tuple[str, tuple[float, float, float, float]]] = {
    "TOILET_A": ("toilet", (-225.0, -350.0, 225.0, 350.0)),
    "TOILET_B": ("toilet", (-200.0, -350.0, 200.0, 350.0)),
    "SINK_ROUND": ("sink", (-300.0, -225.0, 300.0, 225.0)),
    "SINK_RECT": ("sink", (-300.0, -225.0, 300.0, 225.0)),
    "SINK_DOUBLE": ("sink", (-500.0, -225.0, 500.0, 225.0)),
    "BATH_A": ("bathtub", (-850.0, -375.0, 850.0, 375.0)),
    "BATH_B": ("bathtub", (-800.0, -350.0, 800.0, 350.0)),
}
_STAIR_WIDTH_MM = 1000.0
_STAIR_TREAD_MM = 260.0
_STAIR_TREADS = (7, 8, 9, 10, 11)
_STAIR_VARIANTS = ("plain", "arrow", "break")
#: symbols keep this far from furniture, other symbols and the free-area border
_SYMBOL_GAP_MM = 100.0
_DOOR_WIDTHS_MM = (800, 900, 1000)
_WINDOW_WIDTHS_MM = (1000, 1200, 1400, 1500, 1600, 1800, 2000)
#: openings keep at least this far from the faces of the walls at either end
_END_CLEARANCE_MM = 300.0
#: minimum solid wall between two openings
_OPENING_GAP_MM = 300.0
#: furniture keeps this far from walls without an inward-swinging door
_FURN_MARGIN_MM = 100.0
#: positions are snapped to this grid, like a draughtsman would
_SNAP_MM = 50.0

#: local bounding boxes (mm, block frame) of the furniture items; RUG is a hatch
_FURN_BBOX: dict[str, tuple[float, float, float, float]] = {
    "BED_SET": (-1300.0, -1000.0, 1300.0, 1000.0),
    "DINING_SET": (-1150.0, -800.0, 1150.0, 800.0),
    "SOFA": (-1050.0, -450.0, 1050.0, 450.0),
    "DESK": (-700.0, -550.0, 700.0, 600.0),
    "PLANT": (-350.0, -350.0, 350.0, 350.0),
    "RUG": (-900.0, -600.0, 900.0, 600.0),
}
_RUG_HOLE = (-250.0, -150.0, 250.0, 150.0)
_FURN_KIND = {
    "BED_SET": "bed",
    "DINING_SET": "dining",
    "SOFA": "sofa",
    "DESK": "desk",
    "PLANT": "plant",
    "RUG": "rug",
}
_ROOM_NAME: dict[str | None, str] = {
    "BED_SET": "BEDROOM",
    "DINING_SET": "DINING",
    "SOFA": "LIVING",
    "DESK": "OFFICE",
    "PLANT": "HALL",
    "RUG": "LOUNGE",
    None: "STORAGE",
}
#: items every plan gets (in the first rooms they fit), so that nested blocks, ATTRIBs
#: and the hatch are always exercised; the other rooms draw from _RANDOM_ITEMS
_FORCED_ITEMS = ("DESK", "BED_SET", "RUG", "DINING_SET", "SOFA")
_RANDOM_ITEMS: tuple[tuple[str | None, int], ...] = (
    ("BED_SET", 3),
    ("DINING_SET", 2),
    ("SOFA", 2),
    ("DESK", 2),
    ("PLANT", 2),
    (None, 1),
)
_DESK_OWNERS = ("A. LOVELACE", "G. HOPPER", "K. JOHNSON", "M. HAMILTON", "D. KNUTH", "B. LISKOV")

_ROOM_TEXT_MM = 250.0
_TITLE_TEXT_MM = 300.0

_META_LOCK = threading.Lock()

# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class WallTruth:
    """One straight wall segment between two junctions of the room grid.

    Attributes:
        handles: handles of the modelspace entities that draw the wall (LINEs for
            ``pair``/``single``, closed LWPOLYLINEs for ``outline``).
        start: centreline start point, at the centre of the junction (drawing units).
        end: centreline end point (drawing units).
        thickness: wall thickness (drawing units).
        style: ``"pair"`` (two parallel LINEs at +-thickness/2, interrupted at the
            openings), ``"outline"`` (one closed LWPOLYLINE rectangle per solid piece
            between openings) or ``"single"`` (one LINE on the centreline, no gaps).
    """

    handles: tuple[str, ...]
    start: tuple[float, float]
    end: tuple[float, float]
    thickness: float
    style: str


@dataclass(frozen=True)
class OpeningTruth:
    """A door or window INSERT in a wall.

    Attributes:
        kind: ``"door"`` or ``"window"``.
        handle: handle of the INSERT entity.
        center: centre of the opening on the wall centreline (WCS, drawing units).
        width: clear width of the opening along the wall (drawing units).
        angle_deg: direction of the wall, 0 (along X) or 90 (along Y). The INSERT's own
            rotation is either this or this + 180 (doors swinging to the other side).
        wall_index: index into :attr:`FloorPlan.walls` of the host wall.
        block: name of the inserted block (``DOOR_900``, ``WINDOW_1500``...).
        rotation_deg: the INSERT's rotation.
        mirrored: the INSERT has ``xscale == -1`` (hinge on the other jamb).
    """

    kind: str
    handle: str
    center: tuple[float, float]
    width: float
    angle_deg: float
    wall_index: int
    block: str = ""
    rotation_deg: float = 0.0
    mirrored: bool = False


@dataclass(frozen=True)
class SymbolTruth:
    """A plan symbol other than doors and windows: stairs and plumbing fixtures.

    Drawn only when :func:`generate_floorplan` is called with ``symbols=True``.

    Attributes:
        kind: one of :data:`SYMBOL_KINDS` (``stairs``, ``toilet``, ``sink``,
            ``bathtub``).
        handle: handle of the INSERT entity.
        block: block name (``STAIR_9_ARROW``, ``TOILET_A``...), the style variant.
        center: insertion point = centre of the block frame (WCS, drawing units).
        angle_deg: rotation, a multiple of 90.
        bbox: axis-aligned bounding box ``((xmin, ymin), (xmax, ymax))`` of the
            symbol's frame (drawing units).
    """

    kind: str
    handle: str
    block: str
    center: tuple[float, float]
    angle_deg: float
    bbox: tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class FurnitureTruth:
    """A piece of furniture: an INSERT of a furniture block, or the rug HATCH.

    Attributes:
        kind: ``bed``, ``dining``, ``sofa``, ``desk``, ``plant`` or ``rug``.
        handle: handle of the INSERT (or HATCH for the rug).
        block: block name (``BED_SET``...); ``""`` for the rug.
        center: insertion point = centre of the block frame (WCS, drawing units).
        angle_deg: rotation, a multiple of 90.
        bbox: exact axis-aligned bounding box ``((xmin, ymin), (xmax, ymax))``.
    """

    kind: str
    handle: str
    block: str
    center: tuple[float, float]
    angle_deg: float
    bbox: tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class RoomTruth:
    """A room of the grid.

    Attributes:
        name: the room name written in the plan (``BEDROOM 2``...).
        bbox: inner faces of the surrounding walls ``((xmin, ymin), (xmax, ymax))``.
        text_handle: handle of the TEXT with the name, None when drawn without text.
    """

    name: str
    bbox: tuple[tuple[float, float], tuple[float, float]]
    text_handle: str | None


@dataclass
class FloorPlan:
    """A generated drawing and its ground truth.

    Attributes:
        doc: the ezdxf document (not yet written).
        walls: every wall segment.
        openings: every door and window INSERT.
        units: ``"m"``, ``"cm"`` or ``"mm"``.
        unit_scale_m: metres per drawing unit.
        extents: bounding box of all modelspace geometry ``((xmin, ymin), (xmax, ymax))``
            in drawing units (also written to ``$EXTMIN``/``$EXTMAX``).
        entity_count: number of entities in modelspace (an INSERT counts once, its
            ATTRIBs and block content do not).
        furniture: every piece of furniture.
        rooms: every room.
        layers: layer role (``wall``, ``door``, ``window``, ``furn``, ``text``,
            ``dims``, ``site``) -> layer name in this drawing.
        seed: the seed it was generated from.
        symbols: stairs and plumbing fixtures (only with ``symbols=True``).
    """

    doc: Drawing
    walls: list[WallTruth]
    openings: list[OpeningTruth]
    units: str
    unit_scale_m: float
    extents: tuple[tuple[float, float], tuple[float, float]]
    entity_count: int
    furniture: list[FurnitureTruth] = field(default_factory=list)
    rooms: list[RoomTruth] = field(default_factory=list)
    layers: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    symbols: list[SymbolTruth] = field(default_factory=list)


def generate_floorplan(
    *,
    seed: int = 0,
    rooms_x: int = 3,
    rooms_y: int = 2,
    room_size: float = 4.0,
    wall_thickness: float = 0.2,
    units: str = "m",
    wall_style: str = "pair",
    layer_style: str = "aia",
    with_furniture: bool = True,
    with_text: bool = True,
    with_dimensions: bool = True,
    dxfversion: str = "R2010",
    symbols: bool = False,
    door_style: str = "arc",
    window_style: str = "glass",
) -> FloorPlan:
    """Generate one floor plan: a grid of rooms with doors, windows and furnishing.

    Walls run on a grid of ``room_size`` spacing; every interior wall gets one door,
    one exterior wall gets the entrance door (swinging inwards) and the exterior walls
    get windows. Openings never overlap and keep >= 0.3 m from the faces of the walls at
    either end. Doors are inserted with rotation = wall direction (or + 180 to swing to
    the other side) and some are mirrored (``xscale=-1``).

    Args:
        seed: seed of the random generator; same seed + parameters = same drawing.
        rooms_x: number of rooms along X (>= 1).
        rooms_y: number of rooms along Y (>= 1).
        room_size: distance between wall centrelines, in metres (whatever ``units``).
        wall_thickness: wall thickness in metres.
        units: drawing units, ``"m"`` (``$INSUNITS`` 6), ``"cm"`` (5) or ``"mm"`` (4);
            coordinates are scaled accordingly.
        wall_style: ``"pair"``, ``"outline"``, ``"single"`` or ``"mixed"`` (a seeded
            choice of the three per wall).
        layer_style: ``"aia"`` (``A-WALL``, ``A-DOOR``, ``A-GLAZ``...) or ``"plain"``
            (``WALL``, ``DOOR``, ``WINDOW``...).
        with_furniture: draw furniture blocks and the rug hatch.
        with_text: draw room names (TEXT) and a title (MTEXT).
        with_dimensions: draw rendered linear DIMENSIONs.
        dxfversion: DXF version, R2000 or newer (``"R2010"`` by default).
        symbols: opt-in: also draw stairs and plumbing fixtures (toilets, sinks,
            bathtubs) as block INSERTs in free room space, with their ground truth in
            :attr:`FloorPlan.symbols`; style variants (tread counts, arrow or break
            line, fixture shapes) are a seeded choice. They are placed with a random
            generator of their own, so the rest of the plan is the same as without.
        door_style: ``"arc"`` (leaf and quarter-circle swing, the default),
            ``"leaf"`` (a leaf rectangle, no swing) or ``"arc_rect"`` (leaf
            rectangle and swing).
        window_style: ``"glass"`` (frame and 2-3 glass lines, the default),
            ``"single"`` (frame and one line) or ``"sill"`` (frame, two lines and an
            outer sill).

    The defaults of the last three draw exactly what earlier versions drew (same
    bytes).

    Returns:
        The document and its ground truth.

    Raises:
        ValueError: on an unknown option or a room too small for a door and a window.
    """
    if units not in _UNITS:
        raise ValueError(f"units must be one of {sorted(_UNITS)}, not {units!r}")
    if layer_style not in _LAYER_NAMES:
        raise ValueError(f"layer_style must be one of {sorted(_LAYER_NAMES)}, not {layer_style!r}")
    if wall_style not in (*_WALL_STYLES, "mixed"):
        raise ValueError(f"wall_style must be pair, outline, single or mixed, not {wall_style!r}")
    if int(rooms_x) < 1 or int(rooms_y) < 1:
        raise ValueError("rooms_x and rooms_y must be >= 1")
    room_mm = round(float(room_size) * 1000.0, 3)
    t_mm = round(float(wall_thickness) * 1000.0, 3)
    if not t_mm > 0.0:
        raise ValueError("wall_thickness must be > 0")
    if room_mm - t_mm - 2 * _END_CLEARANCE_MM < max(_DOOR_WIDTHS_MM[0], _WINDOW_WIDTHS_MM[0]):
        raise ValueError(
            f"room_size {room_size} m is too small for wall_thickness {wall_thickness} m: "
            f"need at least {(t_mm + 2 * _END_CLEARANCE_MM + 1000.0) / 1000.0:g} m"
        )
    if door_style not in DOOR_STYLES:
        raise ValueError(f"door_style must be one of {DOOR_STYLES}, not {door_style!r}")
    if window_style not in WINDOW_STYLES:
        raise ValueError(f"window_style must be one of {WINDOW_STYLES}, not {window_style!r}")
    _check_version(dxfversion)
    insunits, mm_per_unit = _UNITS[units]

    rng = random.Random(int(seed))
    plan = _plan_building(
        rng,
        nx=int(rooms_x),
        ny=int(rooms_y),
        room=room_mm,
        t=t_mm,
        wall_style=wall_style,
        furniture=bool(with_furniture),
        text=bool(with_text),
        dims=3 if with_dimensions else 0,
        title=f"GROUND FLOOR PLAN\\P{int(rooms_x)} x {int(rooms_y)} ROOMS\\PSCALE 1:100",
        site=False,
    )
    roles: tuple[str, ...] = _PLAN_ROLES
    symbol_truth: list[SymbolTruth] = []
    if symbols:
        roles = (*_PLAN_ROLES, "fixt", "stair")
        # a generator of its own: the plan above is the same with or without symbols
        _plan_symbols(random.Random(int(seed) * 7919 + 104729), plan)
    layers = dict(_LAYER_NAMES[layer_style])
    doc = _new_doc(dxfversion, insunits, mm_per_unit, layers, roles)
    _define_blocks(
        doc,
        mm_per_unit,
        t_mm,
        plan.door_widths,
        plan.window_widths,
        bool(with_furniture),
        door_style=door_style,
        window_style=window_style,
    )
    if plan.symbols:
        _define_symbol_blocks(doc, mm_per_unit, sorted({s[2] for s in plan.symbols}))
    msp = doc.modelspace()
    handles = _emit(msp, plan.ops, 0.0, 0.0, mm_per_unit, layers, "")
    for kind, op, block, (cx, cy), angle, (x0, y0, x1, y1) in plan.symbols:
        d = mm_per_unit
        symbol_truth.append(
            SymbolTruth(
                kind=kind,
                handle=handles[op],
                block=block,
                center=(cx / d, cy / d),
                angle_deg=angle,
                bbox=((x0 / d, y0 / d), (x1 / d, y1 / d)),
            )
        )
    walls: list[WallTruth] = []
    openings: list[OpeningTruth] = []
    furniture: list[FurnitureTruth] = []
    rooms: list[RoomTruth] = []
    _collect_truth(plan, handles, 0.0, 0.0, mm_per_unit, walls, openings, furniture, rooms)

    box = _ezbbox.extents(msp, fast=True)
    extents = (
        (float(box.extmin.x), float(box.extmin.y)),
        (float(box.extmax.x), float(box.extmax.y)),
    )
    _set_extents(doc, extents)
    return FloorPlan(
        doc=doc,
        walls=walls,
        openings=openings,
        units=units,
        unit_scale_m=mm_per_unit / 1000.0,
        extents=extents,
        entity_count=len(msp),
        furniture=furniture,
        rooms=rooms,
        layers={role: layers[role] for role in roles},
        seed=int(seed),
        symbols=symbol_truth,
    )


def generate_large_drawing(
    *, target_entities: int, seed: int = 0, dxfversion: str = "R2010"
) -> FloorPlan:
    """Tile floor plans in a grid until modelspace holds ``target_entities`` entities.

    Six building variants (2-4 by 2-3 rooms, mixed wall styles, doors, windows,
    furniture, rug hatch, room names, title MTEXT, one rendered dimension) are planned
    once, each with site work around it (property line, trees as circles, a curved bed
    as an ARC, a garden path as a SPLINE, a hedge as an open LWPOLYLINE); tiles pick a
    variant at random and are laid out row by row. The count is topped up to exactly
    ``target_entities`` with small site entities (circles, lines, arcs, polylines,
    splines) below the grid. At least one building is always drawn, so very small
    targets (below ~200) are exceeded. Units are metres, walls 0.2 m thick.

    Every entity costs one ezdxf ``add_*`` call with plain tuples (15-75 us, 40 us on
    average). 100k entities take ~4 s and 17 MB of DXF (~4.5 s to write); ~600k
    entities make a ~100 MB file (~30 s to build, ~30 s to write, ~0.9 GB of RAM).
    The cyclic garbage collector is paused while building.

    Args:
        target_entities: number of modelspace entities wanted (INSERTs count once).
        seed: seed of the random generator.
        dxfversion: DXF version, R2000 or newer.

    Returns:
        The document with the ground truth of every tile (wall indices are global).
    """
    target = int(target_entities)
    if target < 1:
        raise ValueError("target_entities must be >= 1")
    _check_version(dxfversion)
    with gc_paused():
        return _large_drawing(target, int(seed), dxfversion)


def _large_drawing(target: int, seed: int, dxfversion: str) -> FloorPlan:
    rng = random.Random(seed)
    t_mm = 200.0
    mm_per_unit = 1000.0

    variants: list[_Plan] = []
    for _ in range(6):
        vrng = random.Random(rng.getrandbits(64))
        nx = vrng.choice((2, 3, 4))
        ny = vrng.choice((2, 3))
        room = vrng.choice((3600.0, 4000.0, 4500.0, 5000.0))
        variants.append(
            _plan_building(
                vrng,
                nx=nx,
                ny=ny,
                room=room,
                t=t_mm,
                wall_style="mixed",
                furniture=True,
                text=True,
                dims=1,
                title=f"BLDG {{tile}}\\PGROUND FLOOR PLAN\\P{nx} x {ny} ROOMS",
                site=True,
            )
        )

    sequence: list[int] = []
    total = 0
    while total < target:
        v = rng.randrange(len(variants))
        n = len(variants[v].ops)
        if sequence and total + n > target:
            break
        sequence.append(v)
        total += n

    layers = dict(_LAYER_NAMES["aia"])
    doc = _new_doc(dxfversion, 6, mm_per_unit, layers, (*_PLAN_ROLES, "site"))
    door_widths: set[int] = set()
    window_widths: set[int] = set()
    for plan in variants:
        door_widths |= plan.door_widths
        window_widths |= plan.window_widths
    _define_blocks(doc, mm_per_unit, t_mm, door_widths, window_widths, True)
    msp = doc.modelspace()

    pitch_x = max(p.footprint[2] - p.footprint[0] for p in variants) + 3000.0
    pitch_y = max(p.footprint[3] - p.footprint[1] for p in variants) + 3000.0
    cols = max(1, math.ceil(math.sqrt(len(sequence))))

    walls: list[WallTruth] = []
    openings: list[OpeningTruth] = []
    furniture: list[FurnitureTruth] = []
    rooms: list[RoomTruth] = []
    local_boxes: dict[int, tuple[float, float, float, float]] = {}
    ext = [math.inf, math.inf, -math.inf, -math.inf]
    entitydb = doc.entitydb
    for k, v in enumerate(sequence):
        plan = variants[v]
        row, col = divmod(k, cols)
        ox = col * pitch_x - plan.footprint[0]
        oy = row * pitch_y - plan.footprint[1]
        handles = _emit(msp, plan.ops, ox, oy, mm_per_unit, layers, str(k + 1))
        _collect_truth(plan, handles, ox, oy, mm_per_unit, walls, openings, furniture, rooms)
        if v not in local_boxes:
            box = _ezbbox.extents((entitydb[h] for h in handles), fast=True)
            local_boxes[v] = (
                box.extmin.x - ox / mm_per_unit,
                box.extmin.y - oy / mm_per_unit,
                box.extmax.x - ox / mm_per_unit,
                box.extmax.y - oy / mm_per_unit,
            )
        lb = local_boxes[v]
        _grow(ext, lb[0] + ox / mm_per_unit, lb[1] + oy / mm_per_unit)
        _grow(ext, lb[2] + ox / mm_per_unit, lb[3] + oy / mm_per_unit)

    remaining = target - len(msp)
    if remaining > 0:
        fx0, fy0, fx1, fy1 = _emit_filler(
            msp, rng, remaining, cols * pitch_x, mm_per_unit, layers["site"]
        )
        _grow(ext, fx0, fy0)
        _grow(ext, fx1, fy1)

    # the per-variant boxes were shifted back and forth: drop the float dust
    x0, y0, x1, y1 = (round(v, 9) + 0.0 for v in ext)  # + 0.0: no -0.0
    extents = ((x0, y0), (x1, y1))
    _set_extents(doc, extents)
    return FloorPlan(
        doc=doc,
        walls=walls,
        openings=openings,
        units="m",
        unit_scale_m=1.0,
        extents=extents,
        entity_count=len(msp),
        furniture=furniture,
        rooms=rooms,
        layers=layers,
        seed=seed,
    )


def write_floorplan(plan: FloorPlan, path: str | PathLike[str]) -> Path:
    """Write the plan's document as ASCII DXF (``doc.saveas``), reproducibly.

    The creation/update timestamps and GUIDs that ezdxf would otherwise take from the
    clock are replaced by fixed values (ezdxf's ``write_fixed_meta_data_for_testing``
    option, switched on only for the duration of the write), so the same seed and
    parameters give byte-identical files.

    Args:
        plan: a generated plan.
        path: target file; its directory must exist.

    Returns:
        The path written.
    """
    out = Path(path)
    with _fixed_metadata():
        _sort_classes(plan.doc)
        plan.doc.saveas(out)
    return out


def encode_floorplan(plan: FloorPlan) -> bytes:
    """Return the DXF file content :func:`write_floorplan` would write, as bytes."""
    stream = io.StringIO()
    with _fixed_metadata():
        _sort_classes(plan.doc)
        plan.doc.write(stream)
    return plan.doc.encode(stream.getvalue())


def _sort_classes(doc: Drawing) -> None:
    """Put the CLASSES section in a fixed order.

    ezdxf adds a class per entity type in use, iterating a ``set`` of type names, so
    the order depends on the process's string hashing and history (seen: samples
    differed after other tests had run). Adding them first and sorting makes the
    section, and so the file, reproducible; ezdxf's own pass at write time then finds
    every class present and keeps the order.
    """
    doc.classes.add_required_classes(doc.dxfversion)
    doc.classes.classes = type(doc.classes.classes)(sorted(doc.classes.classes.items()))


# --------------------------------------------------------------------------- planning
#
# A plan is a list of drawing operations in local millimetres, one per modelspace
# entity, so it can be emitted many times with an offset (the large drawing) at the
# cost of the ezdxf calls only:
#
#   ("L", role, x1, y1, x2, y2)                         LINE
#   ("P", role, points, closed)                         LWPOLYLINE
#   ("C", role, x, y, r)                                CIRCLE
#   ("A", role, x, y, r, start_deg, end_deg)            ARC
#   ("S", role, control_points)                         open uniform cubic SPLINE
#   ("I", role, block, x, y, rotation, xscale, attribs) INSERT (+ ATTRIBs)
#   ("T", role, text, x, y, height)                     TEXT, middle-centre aligned
#   ("M", role, text, x, y, height, width)              MTEXT, top-left attached
#   ("D", role, bx, by, x1, y1, x2, y2, angle)          linear DIMENSION, rendered
#   ("H", role, outer, hole, aci)                       solid HATCH with an island
#
# "{tile}" in MTEXT and ATTRIB texts is replaced by the tile label when emitted.

Op = tuple[Any, ...]
Box = tuple[float, float, float, float]


@dataclass
class _Plan:
    ops: list[Op]
    #: (start, end, thickness, style, op indices)
    walls: list[tuple[tuple[float, float], tuple[float, float], float, str, list[int]]]
    #: (kind, op index, center, width, angle, wall index, block, rotation, mirrored)
    openings: list[tuple[str, int, tuple[float, float], float, float, int, str, float, bool]]
    #: (kind, op index, block, center, angle, bbox)
    furniture: list[tuple[str, int, str, tuple[float, float], float, Box]]
    #: (name, interior box, text op index or -1)
    rooms: list[tuple[str, Box, int]]
    door_widths: set[int]
    window_widths: set[int]
    footprint: Box
    #: per room cell: the area free for furniture (x0, y0, x1, y1) and the furniture box
    free: dict[tuple[int, int], tuple[Box, Box | None]] = field(default_factory=dict)
    #: opt-in symbols: (kind, op index, block, center, angle, bbox)
    symbols: list[tuple[str, int, str, tuple[float, float], float, Box]] = field(
        default_factory=list
    )


def _plan_building(
    rng: random.Random,
    *,
    nx: int,
    ny: int,
    room: float,
    t: float,
    wall_style: str,
    furniture: bool,
    text: bool,
    dims: int,
    title: str,
    site: bool,
) -> _Plan:
    """Plan one building of nx by ny rooms in local millimetres (origin = SW junction).

    ``dims``: 0 no dimensions, 1 the overall width, 2 also the overall depth, 3 also a
    chain of the room widths along the north side.
    """
    h = t / 2.0
    big_w, big_h = nx * room, ny * room
    ops: list[Op] = []

    def present(ix: int, iy: int, direction: str) -> bool:
        # every edge of the grid is a wall, so a junction has a wall in a direction
        # unless it lies on that side of the boundary
        if direction == "E":
            return ix < nx
        if direction == "W":
            return ix > 0
        if direction == "N":
            return iy < ny
        return iy > 0

    # walls: horizontal edges row by row, then vertical edges column by column
    edges: list[tuple[bool, int, int]] = [(True, i, j) for j in range(ny + 1) for i in range(nx)]
    edges += [(False, i, j) for i in range(nx + 1) for j in range(ny)]

    def exterior(edge: tuple[bool, int, int]) -> bool:
        horiz, i, j = edge
        return (j in (0, ny)) if horiz else (i in (0, nx))

    # ---- openings, in wall coordinates: s along the wall from its start
    lo, hi = h + _END_CLEARANCE_MM, room - h - _END_CLEARANCE_MM
    span = hi - lo
    doors_fit = [w for w in _DOOR_WIDTHS_MM if w <= span]
    windows_fit = [w for w in _WINDOW_WIDTHS_MM if w <= span]
    ext_ids = [k for k, e in enumerate(edges) if exterior(e)]
    entrance = rng.choice(ext_ids)
    #: wall index -> [(a, width, kind, swing, hinge_at_end)]
    wall_openings: dict[int, list[tuple[float, int, str, int, bool]]] = {}
    margins: dict[tuple[int, int], dict[str, float]] = {
        (i, j): {
            "W": _FURN_MARGIN_MM,
            "E": _FURN_MARGIN_MM,
            "S": _FURN_MARGIN_MM,
            "N": _FURN_MARGIN_MM,
        }
        for j in range(ny)
        for i in range(nx)
    }
    for k, edge in enumerate(edges):
        horiz, i, j = edge
        items: list[tuple[str, int]] = []
        if not exterior(edge):
            items.append(("door", rng.choice(doors_fit)))
        else:
            if k == entrance:
                items.append(("door", rng.choice(doors_fit)))
                n_win = rng.choice((0, 1))
            else:
                n_win = rng.choices((0, 1, 2), weights=(1, 6, 3))[0]
            items += [("window", rng.choice(windows_fit)) for _ in range(n_win)]
        while items and sum(w for _, w in items) + _OPENING_GAP_MM * (len(items) - 1) > span:
            # drop the last window that does not fit (doors always fit on their own)
            last_window = max(n for n, (kind, _) in enumerate(items) if kind == "window")
            items.pop(last_window)
        rng.shuffle(items)
        positions = _place_openings(rng, lo, hi, [w for _, w in items])
        placed = []
        for (kind, w), a in zip(items, positions, strict=True):
            swing, hinge_end = 0, False
            if kind == "door":
                if exterior(edge):  # the entrance swings inwards
                    if horiz:
                        swing = 1 if j == 0 else -1
                    else:
                        swing = -1 if i == 0 else 1
                else:
                    swing = rng.choice((1, -1))
                hinge_end = rng.random() < 0.5
                # the room the leaf swings into keeps its furniture clear of the arc
                if horiz:
                    cell, side = ((i, j), "S") if swing > 0 else ((i, j - 1), "N")
                else:
                    cell, side = ((i - 1, j), "E") if swing > 0 else ((i, j), "W")
                m = margins[cell]
                m[side] = max(m[side], w - h + 150.0)
            placed.append((a, w, kind, swing, hinge_end))
        wall_openings[k] = placed

    # ---- wall geometry
    walls: list[tuple[tuple[float, float], tuple[float, float], float, str, list[int]]] = []
    openings: list[tuple[str, int, tuple[float, float], float, float, int, str, float, bool]] = []
    door_widths: set[int] = set()
    window_widths: set[int] = set()
    for k, edge in enumerate(edges):
        horiz, i, j = edge
        x0, y0 = i * room, j * room
        if horiz:
            ux, uy, px, py = 1.0, 0.0, 0.0, 1.0
            j0, j1 = (i, j), (i + 1, j)
            back, fwd, pos_side, neg_side = "W", "E", "N", "S"
            angle = 0.0
        else:
            ux, uy, px, py = 0.0, 1.0, -1.0, 0.0
            j0, j1 = (i, j), (i, j + 1)
            back, fwd, pos_side, neg_side = "S", "N", "W", "E"
            angle = 90.0
        length = room

        def pt(s: float, n: float) -> tuple[float, float]:
            return (x0 + s * ux + n * px, y0 + s * uy + n * py)  # noqa: B023

        style = rng.choice(_WALL_STYLES) if wall_style == "mixed" else wall_style
        cuts = sorted((a, a + w) for a, w, *_ in wall_openings[k])
        idx: list[int] = []
        if style == "single":
            idx.append(len(ops))
            ops.append(("L", "wall", *pt(0.0, 0.0), *pt(length, 0.0)))
        elif style == "pair":
            for sigma in (1.0, -1.0):
                same, other = (pos_side, neg_side) if sigma > 0 else (neg_side, pos_side)
                if present(*j0, same):
                    s0 = h  # stop at the face of the wall coming in on this side
                elif present(*j0, back):
                    s0 = 0.0  # meet the collinear wall
                elif present(*j0, other):
                    s0 = -h  # outer corner
                else:
                    s0 = 0.0
                if present(*j1, same):
                    s1 = length - h
                elif present(*j1, fwd):
                    s1 = length
                elif present(*j1, other):
                    s1 = length + h
                else:
                    s1 = length
                for sa, sb in _pieces(s0, s1, cuts):
                    idx.append(len(ops))
                    ops.append(("L", "wall", *pt(sa, sigma * h), *pt(sb, sigma * h)))
        else:  # outline: horizontal walls run through junctions, vertical ones butt in
            if horiz:
                s0 = (
                    0.0
                    if present(*j0, back)
                    else (-h if present(*j0, "N") or present(*j0, "S") else 0.0)
                )
                s1 = (
                    length
                    if present(*j1, fwd)
                    else (length + h if present(*j1, "N") or present(*j1, "S") else length)
                )
            else:
                s0 = h if present(*j0, "E") or present(*j0, "W") else 0.0
                s1 = length - h if present(*j1, "E") or present(*j1, "W") else length
            for sa, sb in _pieces(s0, s1, cuts):
                idx.append(len(ops))
                ops.append(("P", "wall", (pt(sa, -h), pt(sb, -h), pt(sb, h), pt(sa, h)), True))
        wall_index = len(walls)
        walls.append(((x0, y0), pt(length, 0.0), t, style, idx))

        for a, w, kind, swing, hinge_end in wall_openings[k]:
            center = pt(a + w / 2.0, 0.0)
            if kind == "door":
                door_widths.add(w)
                block = f"DOOR_{w}"
                rotation = angle if swing > 0 else angle + 180.0
                xscale = -1.0 if hinge_end == (swing > 0) else 1.0
                ins = pt(a + w, 0.0) if hinge_end else pt(a, 0.0)
                role = "door"
            else:
                window_widths.add(w)
                block = f"WINDOW_{w}"
                rotation, xscale, ins, role = angle, 1.0, pt(a, 0.0), "window"
            openings.append(
                (kind, len(ops), center, float(w), angle, wall_index, block, rotation, xscale < 0)
            )
            ops.append(("I", role, block, ins[0], ins[1], rotation, xscale, None))

    # ---- rooms: furniture, names
    furn: list[tuple[str, int, str, tuple[float, float], float, Box]] = []
    cells = [(i, j) for j in range(ny) for i in range(nx)]
    order = list(cells)
    rng.shuffle(order)
    pending = list(_FORCED_ITEMS) if furniture else []
    chosen: dict[tuple[int, int], str | None] = {}
    text_pos: dict[tuple[int, int], tuple[float, float]] = {}
    desk_no = 0
    free: dict[tuple[int, int], tuple[Box, Box | None]] = {}
    for cell in order:
        i, j = cell
        m = margins[cell]
        ix0, iy0, ix1, iy1 = i * room + h, j * room + h, (i + 1) * room - h, (j + 1) * room - h
        ax0, ay0, ax1, ay1 = ix0 + m["W"], iy0 + m["S"], ix1 - m["E"], iy1 - m["N"]
        roomy = ax1 - ax0 >= 600.0 and ay1 - ay0 >= 600.0
        # the name sits in a band at the bottom of the area the door leaves sweep
        # clear of, furniture above it; a cramped room gets its name in the middle and
        # no furniture
        if roomy:
            text_pos[cell] = (_snap((ax0 + ax1) / 2.0), ay0 + 300.0)
        else:
            text_pos[cell] = ((ix0 + ix1) / 2.0, (iy0 + iy1) / 2.0)
        fy0 = ay0 + 600.0 if text else ay0
        item: str | None = None
        fit: list[float] = []
        if furniture and roomy:
            for name in pending:
                fit = _fitting_rotations(name, ax1 - ax0, ay1 - fy0)
                if fit:
                    item = name
                    pending.remove(name)
                    break
            else:
                options = [
                    (name, wgt)
                    for name, wgt in _RANDOM_ITEMS
                    if name is None or _fitting_rotations(name, ax1 - ax0, ay1 - fy0)
                ]
                item = rng.choices([o[0] for o in options], weights=[o[1] for o in options])[0]
                fit = _fitting_rotations(item, ax1 - ax0, ay1 - fy0) if item else []
        chosen[cell] = item
        free[cell] = ((ax0, fy0, ax1, ay1) if roomy else (0.0, 0.0, 0.0, 0.0), None)
        if item is None:
            continue
        rot = rng.choice(fit)
        bx0, by0, bx1, by1 = _rotate_box(_FURN_BBOX[item], rot)
        cx = _pick(rng, ax0 - bx0, ax1 - bx1)
        cy = _pick(rng, fy0 - by0, ay1 - by1)
        wbox = (cx + bx0, cy + by0, cx + bx1, cy + by1)
        free[cell] = (free[cell][0], wbox)
        if item == "RUG":
            ox0, oy0, ox1, oy1 = wbox
            hx0, hy0, hx1, hy1 = _rotate_box(_RUG_HOLE, rot)
            outer = ((ox0, oy0), (ox1, oy0), (ox1, oy1), (ox0, oy1))
            hole = (
                (cx + hx0, cy + hy0),
                (cx + hx1, cy + hy0),
                (cx + hx1, cy + hy1),
                (cx + hx0, cy + hy1),
            )
            furn.append(("rug", len(ops), "", (cx, cy), rot, wbox))
            ops.append(("H", "furn", outer, hole, 253))
            continue
        attribs = None
        if item == "DESK":
            desk_no += 1
            attribs = {"ASSET": f"D{{tile}}-{desk_no:02d}", "OWNER": rng.choice(_DESK_OWNERS)}
        furn.append((_FURN_KIND[item], len(ops), item, (cx, cy), rot, wbox))
        ops.append(("I", "furn", item, cx, cy, rot, 1.0, attribs))

    names: dict[tuple[int, int], str] = {}
    totals: dict[str, int] = {}
    for cell in cells:
        base = _ROOM_NAME[chosen.get(cell)]
        totals[base] = totals.get(base, 0) + 1
    counters: dict[str, int] = {}
    for cell in cells:
        base = _ROOM_NAME[chosen.get(cell)]
        counters[base] = counters.get(base, 0) + 1
        names[cell] = f"{base} {counters[base]}" if totals[base] > 1 else base
    rooms: list[tuple[str, Box, int]] = []
    for cell in cells:
        i, j = cell
        box = (i * room + h, j * room + h, (i + 1) * room - h, (j + 1) * room - h)
        text_op = -1
        if text:
            text_op = len(ops)
            ops.append(("T", "text", names[cell], *text_pos[cell], _ROOM_TEXT_MM))
        rooms.append((names[cell], box, text_op))

    # ---- annotation
    if text:
        ops.append(("M", "text", title, -h, -h - 1900.0, _TITLE_TEXT_MM, 6000.0))
    if dims >= 1:
        ops.append(("D", "dims", 0.0, -h - 1000.0, -h, -h, big_w + h, -h, 0.0))
    if dims >= 2:
        ops.append(("D", "dims", -h - 1000.0, 0.0, -h, -h, -h, big_h + h, 90.0))
    if dims >= 3:
        for i in range(nx):
            y = big_h + h
            ops.append(("D", "dims", 0.0, y + 800.0, i * room, y, (i + 1) * room, y, 0.0))

    footprint = (
        -h - 2000.0,
        -h - 4000.0,
        big_w + h + (8000.0 if site else 500.0),
        big_h + h + 2000.0,
    )
    if site:
        ops.extend(_site_ops(rng, footprint, big_w + h, big_h + h))
    return _Plan(
        ops=ops,
        walls=walls,
        openings=openings,
        furniture=furn,
        rooms=rooms,
        door_widths=door_widths,
        window_widths=window_widths,
        footprint=footprint,
        free=free,
    )


def _plan_symbols(rng: random.Random, plan: _Plan) -> None:
    """Place stairs and plumbing fixtures in free room space (opt-in symbols).

    One stair run per building (when a room has the space), a bathroom group
    (toilet, sink, sometimes a bathtub) and a kitchen sink, each in a seeded room
    and position that keeps clear of the furniture, the door swings, the room name and
    the other symbols. Appends INSERT ops to ``plan.ops`` and truth to ``plan.symbols``.
    """
    cells = sorted(plan.free)
    taken: dict[tuple[int, int], list[Box]] = {}
    for c in cells:
        furn_box = plan.free[c][1]
        taken[c] = [furn_box] if furn_box is not None else []
    wanted: list[tuple[str, tuple[float, float, float, float]]] = []
    treads = rng.choice(_STAIR_TREADS)
    length = treads * _STAIR_TREAD_MM
    stair_box = (-_STAIR_WIDTH_MM / 2, -length / 2, _STAIR_WIDTH_MM / 2, length / 2)
    wanted.append((f"STAIR_{treads}_{rng.choice(_STAIR_VARIANTS).upper()}", stair_box))
    for _ in range(rng.choice((1, 1, 2))):
        wanted.append((rng.choice(("TOILET_A", "TOILET_B")), (0.0, 0.0, 0.0, 0.0)))
        wanted.append((rng.choice(("SINK_ROUND", "SINK_RECT")), (0.0, 0.0, 0.0, 0.0)))
        if rng.random() < 0.6:
            wanted.append((rng.choice(("BATH_A", "BATH_B")), (0.0, 0.0, 0.0, 0.0)))
    if rng.random() < 0.7:
        wanted.append((rng.choice(("SINK_DOUBLE", "SINK_RECT", "SINK_ROUND")), (0, 0, 0, 0)))
    g = _SYMBOL_GAP_MM
    for block, box in wanted:
        if block in _SYMBOL_BLOCKS:
            kind, box = _SYMBOL_BLOCKS[block]
        else:
            kind = "stairs"
        order = list(cells)
        rng.shuffle(order)
        placed = False
        for cell in order:
            (fx0, fy0, fx1, fy1), _ = plan.free[cell]
            for _attempt in range(12):
                rot = float(rng.choice((0, 90, 180, 270)))
                bx0, by0, bx1, by1 = _rotate_box(box, rot)
                lo_x, hi_x = fx0 + g - bx0, fx1 - g - bx1
                lo_y, hi_y = fy0 + g - by0, fy1 - g - by1
                if hi_x < lo_x or hi_y < lo_y:
                    continue
                cx = _pick(rng, lo_x, hi_x)
                cy = _pick(rng, lo_y, hi_y)
                wbox = (cx + bx0, cy + by0, cx + bx1, cy + by1)
                if any(
                    wbox[0] < o[2] + g
                    and o[0] < wbox[2] + g
                    and wbox[1] < o[3] + g
                    and o[1] < wbox[3] + g
                    for o in taken[cell]
                ):
                    continue
                taken[cell].append(wbox)
                role = "stair" if kind == "stairs" else "fixt"
                plan.symbols.append((kind, len(plan.ops), block, (cx, cy), rot, wbox))
                plan.ops.append(("I", role, block, cx, cy, rot, 1.0, None))
                placed = True
                break
            if placed:
                break


def _site_ops(rng: random.Random, footprint: Box, east: float, north: float) -> list[Op]:
    """Site work around a building: property line, trees, a bed, a path, a hedge."""
    fx0, fy0, fx1, fy1 = footprint
    strip0, strip1 = east + 1000.0, fx1 - 500.0  # the garden east of the building
    ops: list[Op] = [("P", "site", ((fx0, fy0), (fx1, fy0), (fx1, fy1), (fx0, fy1)), True)]
    n_trees = 3
    band = (north - fy0) / n_trees
    for k in range(n_trees):
        r = _snap(1000.0 + 800.0 * rng.random())
        cx = _pick(rng, strip0 + r, strip1 - r)
        cy = (
            _pick(rng, fy0 + k * band + r, fy0 + (k + 1) * band - r)
            if band > 2 * r
            else fy0 + (k + 0.5) * band
        )
        ops.append(("C", "site", cx, cy, r))
        ops.append(("C", "site", cx, cy, 150.0))
    bed_r = 1200.0
    ops.append(("A", "site", _snap((strip0 + strip1) / 2.0), north + 200.0, bed_r, 0.0, 180.0))
    # a garden path from the south-east corner of the plot up along the garden
    path = [(strip1 - 300.0, fy0 + 300.0)]
    steps = 5
    for k in range(1, steps + 1):
        y = fy0 + 300.0 + k * (north - fy0 - 300.0) / steps
        path.append((_snap(strip0 + (strip1 - strip0) * (0.3 + 0.4 * rng.random())), _snap(y)))
    ops.append(("S", "site", tuple(path)))
    hedge = []
    x, k = fx0 + 500.0, 0
    while x <= fx1 - 500.0:
        hedge.append((x, fy1 - 600.0 + (150.0 if k % 2 else -150.0)))
        x += 1500.0
        k += 1
    if len(hedge) >= 2:
        ops.append(("P", "site", tuple(hedge), False))
    return ops


def _place_openings(rng: random.Random, lo: float, hi: float, widths: Sequence[int]) -> list[float]:
    """Start positions of openings of ``widths`` (in order) within ``[lo, hi]``.

    Consecutive openings keep at least ``_OPENING_GAP_MM`` apart; the spare length is
    split at random and snapped to the drawing grid, never exceeding ``hi``.
    """
    k = len(widths)
    if not k:
        return []
    slack = (hi - lo) - sum(widths) - _OPENING_GAP_MM * (k - 1)
    cuts = sorted(rng.random() for _ in range(k))
    positions = []
    base = lo
    for w, c in zip(widths, cuts, strict=True):
        positions.append(base + math.floor(slack * c / _SNAP_MM) * _SNAP_MM)
        base += w + _OPENING_GAP_MM
    return positions


def _pieces(s0: float, s1: float, cuts: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """``[s0, s1]`` minus the sorted, disjoint intervals ``cuts``."""
    out = []
    cur = s0
    for a, b in cuts:
        if a > cur:
            out.append((cur, a))
        cur = max(cur, b)
    if s1 > cur:
        out.append((cur, s1))
    return out


def _rotate_box(box: Box, rot: float) -> Box:
    """Axis-aligned box rotated about the origin by a multiple of 90 degrees."""
    x0, y0, x1, y1 = box
    r = int(round(rot)) % 360
    if r == 0:
        return box
    if r == 90:
        return (-y1, x0, -y0, x1)
    if r == 180:
        return (-x1, -y1, -x0, -y0)
    return (y0, -x1, y1, -x0)


def _fitting_rotations(item: str, width: float, height: float) -> list[float]:
    out = []
    for rot in (0.0, 90.0, 180.0, 270.0):
        x0, y0, x1, y1 = _rotate_box(_FURN_BBOX[item], rot)
        if x1 - x0 <= width and y1 - y0 <= height:
            out.append(rot)
    return out


def _snap(v: float) -> float:
    return round(v / _SNAP_MM) * _SNAP_MM


def _pick(rng: random.Random, lo: float, hi: float) -> float:
    """A random value in ``[lo, hi]``, on the snap grid above ``lo``."""
    if hi <= lo:
        return lo
    return lo + math.floor((hi - lo) * rng.random() / _SNAP_MM) * _SNAP_MM


def _grow(ext: list[float], x: float, y: float) -> None:
    if x < ext[0]:
        ext[0] = x
    if y < ext[1]:
        ext[1] = y
    if x > ext[2]:
        ext[2] = x
    if y > ext[3]:
        ext[3] = y


# --------------------------------------------------------------------------- document


def _check_version(dxfversion: str) -> None:
    acad = _const.acad_release_to_dxf_version.get(dxfversion, dxfversion)
    if acad not in _const.versions_supported_by_new:
        raise ValueError(f"unsupported dxfversion {dxfversion!r}")
    if acad <= _const.DXF12:
        raise ValueError("DXF R12 has no LWPOLYLINE/HATCH/MTEXT/SPLINE; use R2000 or newer")


def _new_doc(
    dxfversion: str,
    insunits: int,
    mm_per_unit: float,
    layers: dict[str, str],
    roles: Sequence[str],
) -> Drawing:
    with _fixed_metadata():  # no clock-based "created by ezdxf" marker
        doc = ezdxf.new(dxfversion, setup=False, units=insunits)
    doc.header["$INSUNITS"] = insunits
    doc.header["$MEASUREMENT"] = 1  # metric
    doc.header["$LUNITS"] = 2  # decimal
    for role in roles:
        doc.layers.add(layers[role], color=_LAYER_COLORS[role], lineweight=_LAYER_LINEWEIGHTS[role])
    d = mm_per_unit
    doc.dimstyles.new(
        "PLAN",
        dxfattribs={
            "dimtxt": 200.0 / d,
            "dimasz": 150.0 / d,
            "dimtsz": 100.0 / d,  # architectural ticks instead of arrows
            "dimexe": 100.0 / d,
            "dimexo": 100.0 / d,
            "dimgap": 50.0 / d,
            "dimtad": 1,
            "dimtih": 0,
            "dimtoh": 0,
            "dimlunit": 2,
            "dimdec": 2 if d >= 1000.0 else 0,
        },
    )
    return doc


def _define_blocks(
    doc: Drawing,
    mm_per_unit: float,
    t: float,
    door_widths: set[int],
    window_widths: set[int],
    furniture: bool,
    *,
    door_style: str = "arc",
    window_style: str = "glass",
) -> None:
    """Define the door, window and furniture blocks (entities on layer 0, BYLAYER)."""
    d = mm_per_unit
    h = t / 2.0

    def q(x: float, y: float) -> tuple[float, float]:
        return (x / d, y / d)

    def rect(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
        return [q(x0, y0), q(x1, y0), q(x1, y1), q(x0, y1)]

    for w in sorted(door_widths):
        # origin: hinge-side jamb on the wall centreline, x along the wall
        blk = doc.blocks.new(f"DOOR_{w}")
        if door_style == "arc":
            blk.add_line(q(0, 0), q(0, w))  # leaf, open at 90 degrees
        else:
            blk.add_lwpolyline(rect(0, 0, 40, w), close=True)  # leaf with a thickness
        if door_style != "leaf":
            blk.add_arc(q(0, 0), w / d, 0.0, 90.0)  # swing, from the closed position
        blk.add_line(q(0, -h), q(0, h))  # hinge-side jamb
        blk.add_line(q(w, -h), q(w, h))  # latch-side jamb
    for w in sorted(window_widths):
        # origin: one jamb on the wall centreline, x along the wall
        blk = doc.blocks.new(f"WINDOW_{w}")
        blk.add_lwpolyline(rect(0, -h, w, h), close=True)  # frame across the wall
        n = 3 if w >= 1500 else 2
        if window_style == "single":
            n = 1
        elif window_style == "sill":
            n = 2
            # sill outside the wall face (the -y side), projecting past the jambs
            blk.add_lwpolyline(rect(-60, -h - 60, w + 60, -h), close=True)
        for k in range(n):
            y = -h + t * (k + 1) / (n + 1)
            blk.add_line(q(0, y), q(w, y))  # glass
    if not furniture:
        return

    # furniture blocks are centred on their origin; bounding boxes in _FURN_BBOX
    blk = doc.blocks.new("CHAIR")  # back towards +y
    blk.add_lwpolyline(rect(-225, -225, 225, 225), close=True)
    blk.add_lwpolyline(rect(-225, 150, 225, 225), close=True)

    blk = doc.blocks.new("TABLE")  # table with four stools
    blk.add_lwpolyline(rect(-700, -400, 700, 400), close=True)
    for sx in (-350, 350):
        for sy in (-600, 600):
            blk.add_circle(q(sx, sy), 200.0 / d)

    blk = doc.blocks.new("DINING_SET")  # nested: TABLE + 2 CHAIRs
    blk.add_blockref("TABLE", q(0, 0))
    blk.add_blockref("CHAIR", q(-925, 0), dxfattribs={"rotation": 90.0})
    blk.add_blockref("CHAIR", q(925, 0), dxfattribs={"rotation": 270.0})

    blk = doc.blocks.new("BED")  # head towards +y
    blk.add_lwpolyline(rect(-800, -1000, 800, 1000), close=True)
    blk.add_lwpolyline(rect(-720, 650, -60, 950), close=True)
    blk.add_lwpolyline(rect(60, 650, 720, 950), close=True)
    blk.add_line(q(-800, 300), q(800, 300))
    blk.add_line(q(800, 300), q(500, 0))

    blk = doc.blocks.new("NIGHTSTAND")
    blk.add_lwpolyline(rect(-225, -200, 225, 200), close=True)
    blk.add_circle(q(0, 0), 120.0 / d)

    blk = doc.blocks.new("BED_SET")  # nested: BED + 2 NIGHTSTANDs
    blk.add_blockref("BED", q(0, 0))
    blk.add_blockref("NIGHTSTAND", q(-1075, 800))
    blk.add_blockref("NIGHTSTAND", q(1075, 800))

    blk = doc.blocks.new("SOFA")  # back towards +y
    blk.add_lwpolyline(rect(-1050, -450, 1050, 450), close=True)
    blk.add_lwpolyline(rect(-850, -450, 850, 250), close=True)
    blk.add_line(q(-285, -450), q(-285, 250))
    blk.add_line(q(285, -450), q(285, 250))

    blk = doc.blocks.new("DESK")  # nested CHAIR + ATTDEFs
    blk.add_lwpolyline(rect(-700, -50, 700, 600), close=True)
    blk.add_line(q(-300, 500), q(300, 500))
    blk.add_blockref("CHAIR", q(0, -325), dxfattribs={"rotation": 180.0})
    blk.add_attdef(
        "ASSET", q(-650, 50), "D-00", dxfattribs={"height": 80.0 / d, "prompt": "Asset tag"}
    )
    blk.add_attdef("OWNER", q(-650, 180), "", dxfattribs={"height": 80.0 / d, "prompt": "Owner"})

    blk = doc.blocks.new("PLANT")  # pot with leaves as splines
    blk.add_circle(q(0, 0), 300.0 / d)
    blk.add_circle(q(0, 0), 80.0 / d)
    leaf = [(-250, -150), (-100, 200), (100, -200), (250, 150)]
    blk.add_open_spline([q(x, y) for x, y in leaf], degree=3)
    blk.add_open_spline([q(-y, x) for x, y in leaf], degree=3)


def _define_symbol_blocks(doc: Drawing, mm_per_unit: float, names: Sequence[str]) -> None:
    """Define the stair and fixture blocks in ``names`` (centred on their origin)."""
    d = mm_per_unit

    def q(x: float, y: float) -> tuple[float, float]:
        return (x / d, y / d)

    def rect(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
        return [q(x0, y0), q(x1, y0), q(x1, y1), q(x0, y1)]

    for name in names:
        blk = doc.blocks.new(name)
        if name.startswith("STAIR_"):
            _, n_s, variant = name.split("_")
            n = int(n_s)
            w2 = _STAIR_WIDTH_MM / 2.0
            half = n * _STAIR_TREAD_MM / 2.0
            blk.add_lwpolyline(rect(-w2, -half, w2, half), close=True)  # stringers
            for k in range(1, n):
                y = -half + k * _STAIR_TREAD_MM
                blk.add_line(q(-w2, y), q(w2, y))  # treads
            if variant in ("ARROW", "BREAK"):
                # walking line with an arrow head pointing up the run
                y0, y1 = -half + _STAIR_TREAD_MM / 2.0, half - _STAIR_TREAD_MM / 2.0
                blk.add_line(q(0, y0), q(0, y1))
                blk.add_circle(q(0, y0), 40.0 / d)
                blk.add_lwpolyline([q(-100, y1 - 180), q(0, y1), q(100, y1 - 180)])
            if variant == "BREAK":
                yb = -half + 0.6 * n * _STAIR_TREAD_MM
                blk.add_lwpolyline(
                    [
                        q(-w2, yb - 150),
                        q(-80, yb - 150),
                        q(0, yb + 60),
                        q(60, yb - 60),
                        q(w2, yb + 150),
                    ]
                )
        elif name == "TOILET_A":  # tank towards +y, elliptic bowl
            blk.add_lwpolyline(rect(-225, 150, 225, 350), close=True)
            blk.add_ellipse(q(0, -75), major_axis=q(0, 275), ratio=0.7)
            blk.add_ellipse(q(0, -100), major_axis=q(0, 190), ratio=0.65)
        elif name == "TOILET_B":  # rounded tank, bowl as a bulged outline
            blk.add_lwpolyline(
                [
                    (*q(-200, 170), 0.0),
                    (*q(200, 170), 0.0),
                    (*q(200, 350), 0.0),
                    (*q(-200, 350), 0.0),
                ],
                format="xyb",
                close=True,
            )
            blk.add_lwpolyline(
                [
                    (*q(-180, 150), 0.0),
                    (*q(180, 150), 0.0),
                    (*q(180, -150), 1.0),
                    (*q(-180, -150), 0.0),
                ],
                format="xyb",
                close=True,
            )
        elif name == "SINK_ROUND":
            blk.add_lwpolyline(rect(-300, -225, 300, 225), close=True)
            blk.add_circle(q(0, -30), 170.0 / d)
            blk.add_circle(q(0, 160), 30.0 / d)
        elif name == "SINK_RECT":
            blk.add_lwpolyline(rect(-300, -225, 300, 225), close=True)
            blk.add_lwpolyline(rect(-220, -170, 220, 110), close=True)
            blk.add_circle(q(0, -30), 25.0 / d)
            blk.add_line(q(0, 160), q(0, 225))
        elif name == "SINK_DOUBLE":  # kitchen sink: two bowls
            blk.add_lwpolyline(rect(-500, -225, 500, 225), close=True)
            blk.add_lwpolyline(rect(-450, -170, -30, 130), close=True)
            blk.add_lwpolyline(rect(30, -170, 450, 130), close=True)
            blk.add_circle(q(0, 180), 25.0 / d)
        elif name == "BATH_A":  # rounded inner tub
            blk.add_lwpolyline(rect(-850, -375, 850, 375), close=True)
            r = 200.0
            x0, y0, x1, y1 = -780.0, -305.0, 780.0, 305.0
            b = math.tan(math.pi / 8.0)  # bulge of a quarter circle
            blk.add_lwpolyline(
                [
                    (*q(x0 + r, y0), 0.0),
                    (*q(x1 - r, y0), b),
                    (*q(x1, y0 + r), 0.0),
                    (*q(x1, y1 - r), b),
                    (*q(x1 - r, y1), 0.0),
                    (*q(x0 + r, y1), b),
                    (*q(x0, y1 - r), 0.0),
                    (*q(x0, y0 + r), b),
                ],
                format="xyb",
                close=True,
            )
            blk.add_circle(q(600, 0), 35.0 / d)
        elif name == "BATH_B":  # oval inner tub
            blk.add_lwpolyline(rect(-800, -350, 800, 350), close=True)
            blk.add_ellipse(q(0, 0), major_axis=q(720, 0), ratio=0.38)
            blk.add_circle(q(560, 0), 35.0 / d)
        else:  # pragma: no cover - planning bug
            raise AssertionError(f"unknown symbol block {name!r}")


def _emit(
    msp: Any,
    ops: Sequence[Op],
    ox: float,
    oy: float,
    d: float,
    layers: dict[str, str],
    label: str,
) -> list[str]:
    """Add one entity per op to modelspace at offset (ox, oy) mm; return the handles."""
    attrs = {role: {"layer": name} for role, name in layers.items()}
    handles: list[str] = []
    keep = handles.append
    add_line = msp.add_line
    add_lwpolyline = msp.add_lwpolyline
    add_circle = msp.add_circle
    add_arc = msp.add_arc
    add_blockref = msp.add_blockref
    for op in ops:
        kind = op[0]
        if kind == "L":
            _, role, x1, y1, x2, y2 = op
            e = add_line(
                ((x1 + ox) / d, (y1 + oy) / d),
                ((x2 + ox) / d, (y2 + oy) / d),
                dxfattribs=attrs[role],
            )
        elif kind == "I":
            _, role, block, x, y, rotation, xscale, attribs = op
            da: dict[str, Any] = {"layer": layers[role]}
            if rotation:
                da["rotation"] = rotation
            if xscale != 1.0:
                da["xscale"] = xscale
            e = add_blockref(block, ((x + ox) / d, (y + oy) / d), dxfattribs=da)
            if attribs:
                e.add_auto_attribs({k: v.replace("{tile}", label) for k, v in attribs.items()})
                for attrib in e.attribs:
                    attrib.dxf.layer = layers[role]
        elif kind == "P":
            _, role, points, closed = op
            e = add_lwpolyline(
                [((x + ox) / d, (y + oy) / d) for x, y in points],
                close=closed,
                dxfattribs=attrs[role],
            )
        elif kind == "C":
            _, role, x, y, r = op
            e = add_circle(((x + ox) / d, (y + oy) / d), r / d, dxfattribs=attrs[role])
        elif kind == "A":
            _, role, x, y, r, a0, a1 = op
            e = add_arc(((x + ox) / d, (y + oy) / d), r / d, a0, a1, dxfattribs=attrs[role])
        elif kind == "S":
            _, role, points = op
            e = msp.add_open_spline(
                [((x + ox) / d, (y + oy) / d) for x, y in points], degree=3, dxfattribs=attrs[role]
            )
        elif kind == "T":
            _, role, text, x, y, height = op
            e = msp.add_text(text, height=height / d, dxfattribs=attrs[role])
            e.set_placement(((x + ox) / d, (y + oy) / d), align=TextEntityAlignment.MIDDLE_CENTER)
        elif kind == "M":
            _, role, text, x, y, height, width = op
            e = msp.add_mtext(
                text.replace("{tile}", label),
                dxfattribs={
                    "layer": layers[role],
                    "insert": ((x + ox) / d, (y + oy) / d),
                    "char_height": height / d,
                    "width": width / d,
                },
            )
        elif kind == "D":
            _, role, bx, by, x1, y1, x2, y2, angle = op
            dim = msp.add_linear_dim(
                base=((bx + ox) / d, (by + oy) / d),
                p1=((x1 + ox) / d, (y1 + oy) / d),
                p2=((x2 + ox) / d, (y2 + oy) / d),
                angle=angle,
                dimstyle="PLAN",
                dxfattribs=attrs[role],
            )
            dim.render()
            e = dim.dimension
        elif kind == "H":
            _, role, outer, hole, aci = op
            e = msp.add_hatch(color=aci, dxfattribs=attrs[role])
            e.paths.add_polyline_path(
                [((x + ox) / d, (y + oy) / d) for x, y in outer],
                is_closed=True,
                flags=_const.BOUNDARY_PATH_EXTERNAL,
            )
            e.paths.add_polyline_path(
                [((x + ox) / d, (y + oy) / d) for x, y in hole],
                is_closed=True,
                flags=_const.BOUNDARY_PATH_OUTERMOST,
            )
        else:  # pragma: no cover - planning bug
            raise AssertionError(f"unknown op {kind!r}")
        keep(e.dxf.handle)
    return handles


def _emit_filler(
    msp: Any, rng: random.Random, count: int, row_width: float, d: float, layer: str
) -> Box:
    """Add exactly ``count`` small site entities in rows below the tile grid.

    Returns their bounding box in drawing units.
    """
    attrs = {"layer": layer}
    cell = 2500.0
    per_row = max(1, int(row_width // cell))
    top = -3000.0
    for k in range(count):
        row, col = divmod(k, per_row)
        x = col * cell + cell / 2.0
        y = top - row * cell - cell / 2.0
        kind = k % 5
        if kind == 0:  # tree
            msp.add_circle(
                (x / d, y / d), _snap(400.0 + 600.0 * rng.random()) / d, dxfattribs=attrs
            )
        elif kind == 1:  # hedge / fence segment
            msp.add_line(
                ((x - 1000.0) / d, (y - 500.0) / d),
                ((x + 1000.0) / d, (y + 500.0) / d),
                dxfattribs=attrs,
            )
        elif kind == 2:  # planting bed edge
            a0 = float(rng.randrange(0, 360, 15))
            msp.add_arc((x / d, y / d), 900.0 / d, a0, a0 + 180.0, dxfattribs=attrs)
        elif kind == 3:  # paving slab
            msp.add_lwpolyline(
                [
                    ((x - 800.0) / d, (y - 500.0) / d),
                    ((x + 800.0) / d, (y - 500.0) / d),
                    ((x + 800.0) / d, (y + 500.0) / d),
                    ((x - 800.0) / d, (y + 500.0) / d),
                ],
                close=True,
                dxfattribs=attrs,
            )
        else:  # stepping-stone path
            msp.add_open_spline(
                [
                    ((x - 1000.0) / d, (y - 600.0) / d),
                    ((x - 300.0) / d, (y + 600.0) / d),
                    ((x + 300.0) / d, (y - 600.0) / d),
                    ((x + 1000.0) / d, (y + 600.0) / d),
                ],
                degree=3,
                dxfattribs=attrs,
            )
    rows = (count - 1) // per_row + 1
    cols_used = min(count, per_row)
    return (
        0.0,
        (top - rows * cell) / d,
        (cols_used * cell) / d,
        top / d,
    )


def _collect_truth(
    plan: _Plan,
    handles: Sequence[str],
    ox: float,
    oy: float,
    d: float,
    walls: list[WallTruth],
    openings: list[OpeningTruth],
    furniture: list[FurnitureTruth],
    rooms: list[RoomTruth],
) -> None:
    """Append the plan's truth, translated by (ox, oy) mm and in drawing units."""
    base = len(walls)
    for (sx, sy), (ex, ey), t, style, idx in plan.walls:
        walls.append(
            WallTruth(
                handles=tuple(handles[i] for i in idx),
                start=((sx + ox) / d, (sy + oy) / d),
                end=((ex + ox) / d, (ey + oy) / d),
                thickness=t / d,
                style=style,
            )
        )
    for kind, op, (cx, cy), width, angle, wall, block, rotation, mirrored in plan.openings:
        openings.append(
            OpeningTruth(
                kind=kind,
                handle=handles[op],
                center=((cx + ox) / d, (cy + oy) / d),
                width=width / d,
                angle_deg=angle,
                wall_index=base + wall,
                block=block,
                rotation_deg=rotation,
                mirrored=mirrored,
            )
        )
    for kind, op, block, (cx, cy), angle, (x0, y0, x1, y1) in plan.furniture:
        furniture.append(
            FurnitureTruth(
                kind=kind,
                handle=handles[op],
                block=block,
                center=((cx + ox) / d, (cy + oy) / d),
                angle_deg=angle,
                bbox=(((x0 + ox) / d, (y0 + oy) / d), ((x1 + ox) / d, (y1 + oy) / d)),
            )
        )
    for name, (x0, y0, x1, y1), op in plan.rooms:
        rooms.append(
            RoomTruth(
                name=name,
                bbox=(((x0 + ox) / d, (y0 + oy) / d), ((x1 + ox) / d, (y1 + oy) / d)),
                text_handle=handles[op] if op >= 0 else None,
            )
        )


def _set_extents(doc: Drawing, extents: tuple[tuple[float, float], tuple[float, float]]) -> None:
    (x0, y0), (x1, y1) = extents
    doc.header["$EXTMIN"] = (x0, y0, 0.0)
    doc.header["$EXTMAX"] = (x1, y1, 0.0)
    # ezdxf copies the modelspace layout extents over the header ones when saving
    msp = doc.modelspace()
    msp.dxf.extmin = (x0, y0, 0.0)
    msp.dxf.extmax = (x1, y1, 0.0)


@contextmanager
def _fixed_metadata() -> Iterator[None]:
    """Make ezdxf write fixed timestamps and GUIDs (process-wide, hence the lock)."""
    with _META_LOCK:
        old = ezdxf.options.write_fixed_meta_data_for_testing
        ezdxf.options.write_fixed_meta_data_for_testing = True
        try:
            yield
        finally:
            ezdxf.options.write_fixed_meta_data_for_testing = old
