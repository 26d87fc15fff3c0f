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


# PDF drawings of the same plans (cad2gltf.synth.render): a vector A3 sheet at 1:100, as
# a CAD program prints it, and a scanned A3 sheet (150 dpi, slightly rotated, noisy)
PDF_SAMPLES = {
    "house-sheet.pdf": dict(kind="vector", plan="house.dxf", scale=100),
    "office-scan.pdf": dict(kind="scan", plan="office.dxf", scale=100, dpi=150,
                            rotation_deg=1.2, noise=2.0, blur=0.6, seed=7),
}


def encode_pdf_sample(name: str) -> bytes:
    """The bytes of a PDF sample (deterministic)."""
    from cad2gltf.synth import render

    spec = dict(PDF_SAMPLES[name])
    plan = generate_floorplan(**SAMPLES[spec.pop("plan")])
    if spec.pop("kind") == "vector":
        return render.plan_to_pdf(plan, **spec)[0]
    dpi = spec["dpi"]
    image, _ = render.plan_to_raster(plan, **spec)
    return render.raster_to_pdf([image], dpi=dpi)


def main() -> None:
    for name, params in SAMPLES.items():
        path = write_floorplan(generate_floorplan(**params), HERE / name)
        print(f"{path.relative_to(HERE.parent)}: {path.stat().st_size // 1024} KiB")
    for name in PDF_SAMPLES:
        path = HERE / name
        path.write_bytes(encode_pdf_sample(name))
        print(f"{path.relative_to(HERE.parent)}: {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
