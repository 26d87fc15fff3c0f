"""Regenerate the bundled sample drawings (deterministic: same bytes every time).

    PYTHONPATH=. python samples/generate.py
"""

from __future__ import annotations

from pathlib import Path

from cad2gltf.synth.floorplan import generate_floorplan, write_floorplan

HERE = Path(__file__).resolve().parent

SAMPLES = {
    # AIA layer names, walls as parallel line pairs, millimetres (the common export)
    "house.dxf": dict(seed=11, rooms_x=3, rooms_y=2, wall_style="pair", units="mm"),
    # plain layer names, walls as closed outlines, centimetres
    "office.dxf": dict(seed=5, rooms_x=4, rooms_y=2, room_size=5.0, wall_style="outline",
                       layer_style="plain", units="cm"),
    # a mix of line pairs, outlines and single lines, metres
    "apartment.dxf": dict(seed=23, rooms_x=2, rooms_y=2, wall_style="mixed", units="m",
                          wall_thickness=0.25),
}


def main() -> None:
    for name, params in SAMPLES.items():
        path = write_floorplan(generate_floorplan(**params), HERE / name)
        print(f"{path.relative_to(HERE.parent)}: {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
