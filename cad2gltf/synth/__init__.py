"""Synthetic test data: seeded DXF drawings with exactly known ground truth.

Used by the recognition tests, the benchmarks and (later) to train the symbol detector.
Everything here is deterministic for a given seed and parameters and depends only on the
standard library, numpy and ezdxf.
"""

from __future__ import annotations

from cad2gltf.synth.floorplan import (
    DOOR_STYLES,
    SYMBOL_KINDS,
    WINDOW_STYLES,
    FloorPlan,
    FurnitureTruth,
    OpeningTruth,
    RoomTruth,
    SymbolTruth,
    WallTruth,
    encode_floorplan,
    generate_floorplan,
    generate_large_drawing,
    write_floorplan,
)

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
