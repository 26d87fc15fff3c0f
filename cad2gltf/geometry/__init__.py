"""Pure geometry helpers (polygons, triangulation, extrusion)."""
