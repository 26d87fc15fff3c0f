"""Synthetic training data for the symbol detector: YOLO-format tiles of rendered plans.

Every page comes from one integer seed: a floor plan with stairs and fixtures
(:func:`cad2gltf.synth.generate_floorplan` with ``symbols=True``) drawn at a seeded
scale, paper, line weight, font and symbol style, rendered by
:func:`cad2gltf.synth.render.plan_to_raster` at the detector's DPI either clean (a
vector PDF page) or as a scan (rotation, blur, contrast, noise, speckle, JPEG). The
labels are :func:`cad2gltf.synth.render.symbol_boxes`.

Two variation profiles keep the held-out set honest: ``"train"`` and ``"heldout"`` draw
from different scales, fonts, room sizes, wall thicknesses, line weights and noise
levels (see :data:`PROFILES`), and the two splits use disjoint seed ranges.

Pages are cut into square tiles with overlap (the detector also runs on tiles); a label
is kept in a tile when at least :data:`MIN_VISIBLE` of its box is inside, clipped to the
tile; tiles without ink are dropped, tiles without labels are kept as negatives at a
seeded rate. :func:`write_yolo_dataset` writes ``images/<split>/*.png``,
``labels/<split>/*.txt`` (``class cx cy w h``, normalised) and ``data.yaml``; the same
seeds and parameters always write the same files.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cad2gltf.detect.classes import CLASSES
from cad2gltf.synth.floorplan import DOOR_STYLES, WINDOW_STYLES, FloorPlan, generate_floorplan
from cad2gltf.synth.render import PageTransform, _paper_mm, plan_to_raster, symbol_boxes

__all__ = [
    "CLASSES",
    "MIN_VISIBLE",
    "PROFILES",
    "Page",
    "PageSpec",
    "heldout_seeds",
    "make_page",
    "page_spec",
    "tile_origins",
    "tile_page",
    "train_seeds",
    "write_blank_negatives",
    "write_yolo_dataset",
]

#: a box must be at least this visible in a tile to be labelled there
MIN_VISIBLE = 0.6

#: variation per split profile: discrete choices are drawn uniformly, (lo, hi) ranges
#: uniformly in between
PROFILES: dict[str, dict[str, Any]] = {
    "train": {
        "scales": (50, 75, 100, 125, 150, 200),
        "papers": (
            ("A3", "landscape"),
            ("A3", "portrait"),
            ("A4", "landscape"),
            ("A2", "landscape"),
        ),
        "fonts": ("DejaVuSans.ttf", "DejaVuSerif.ttf"),
        "room_sizes": (3.6, 4.0, 4.5, 5.0),
        "wall_thickness": (0.1, 0.2, 0.3),
        "lineweight": (0.6, 1.6),
        "scan_rate": 0.6,
        "rotation": 3.0,
        "noise": (0.0, 14.0),
        "blur": (0.0, 1.1),
        "contrast": (0.6, 1.0),
        "speckle": (0.0, 0.002),
        "jpeg": (35, 95),
        "door_styles": DOOR_STYLES,
        "window_styles": WINDOW_STYLES,
    },
    "heldout": {
        "scales": (60, 80, 120, 175),
        "papers": (("A3", "landscape"), ("A2", "portrait")),
        "fonts": ("DejaVuSansCondensed.ttf", "DejaVuSansMono.ttf"),
        "room_sizes": (3.8, 4.2, 4.8),
        "wall_thickness": (0.15, 0.25),
        "lineweight": (0.8, 1.9),
        "scan_rate": 0.5,
        "rotation": 3.0,
        "noise": (4.0, 12.0),
        "blur": (0.3, 0.9),
        "contrast": (0.65, 0.95),
        "speckle": (0.0005, 0.0015),
        "jpeg": (45, 85),
        "door_styles": DOOR_STYLES,
        "window_styles": WINDOW_STYLES,
    },
}

_TRAIN_SEED_BASE = 0
_HELDOUT_SEED_BASE = 1_000_000


def train_seeds(n: int, start: int = 0) -> list[int]:
    """The page seeds of the training split (``start`` ... ``start + n - 1``)."""
    return [_TRAIN_SEED_BASE + start + k for k in range(int(n))]


def heldout_seeds(n: int, start: int = 0) -> list[int]:
    """The page seeds of the held-out split: a range no training seed comes from."""
    return [_HELDOUT_SEED_BASE + start + k for k in range(int(n))]


@dataclass(frozen=True)
class PageSpec:
    """Everything a page render depends on, drawn from its seed and profile."""

    seed: int
    profile: str
    plan_kwargs: dict[str, Any] = field(hash=False)
    render_kwargs: dict[str, Any] = field(hash=False)


@dataclass
class Page:
    """A rendered page and its labels.

    Attributes:
        spec: what it was made from.
        image: uint8 grey page render.
        boxes: ``(class index, (x0, y0, x1, y1))`` in pixels.
        transform: drawing -> page transform.
        plan: the generated plan.
    """

    spec: PageSpec
    image: np.ndarray
    boxes: list[tuple[int, tuple[float, float, float, float]]]
    transform: PageTransform
    plan: FloorPlan


def page_spec(seed: int, profile: str = "train", *, dpi: float = 100) -> PageSpec:
    """Draw the plan and render parameters of page ``seed`` under ``profile``.

    The plan is sized to fit the sheet at the drawn scale (rooms are removed until it
    does; a plan that still does not fit falls back to the smallest scale of the
    profile that fits, else to the largest scale).

    Args:
        seed: page seed.
        profile: ``"train"`` or ``"heldout"`` (see :data:`PROFILES`).
        dpi: render resolution.

    Returns:
        The page specification.

    Raises:
        ValueError: on an unknown profile.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, not {profile!r}")
    p = PROFILES[profile]
    rng = random.Random(f"{profile}:{int(seed)}")
    paper, orientation = rng.choice(p["papers"])
    width_mm, height_mm = _paper_mm(paper, orientation)
    scale = rng.choice(p["scales"])
    room = rng.choice(p["room_sizes"])
    nx, ny = rng.randint(1, 5), rng.randint(1, 4)
    if nx * ny < 2:
        nx = 2
    # sheet space in metres at this scale, minus annotation margins (~4 m of dims/title)
    avail_x = width_mm * scale / 1000.0 - 3.5
    avail_y = height_mm * scale / 1000.0 - 5.0
    while nx > 1 and nx * room > avail_x:
        nx -= 1
    while ny > 1 and ny * room > avail_y:
        ny -= 1
    if nx * room > avail_x or ny * room > avail_y:
        fitting = [
            s
            for s in sorted(p["scales"])
            if nx * room <= width_mm * s / 1000.0 - 3.5
            and ny * room <= height_mm * s / 1000.0 - 5.0
        ]
        scale = fitting[0] if fitting else max(p["scales"])
    plan_kwargs = {
        "seed": int(seed),
        "rooms_x": nx,
        "rooms_y": ny,
        "room_size": room,
        "wall_thickness": rng.choice(p["wall_thickness"]),
        "units": rng.choice(("m", "cm", "mm")),
        "wall_style": rng.choice(("pair", "pair", "outline", "single", "mixed")),
        "layer_style": rng.choice(("aia", "plain")),
        "with_furniture": rng.random() < 0.9,
        "with_text": rng.random() < 0.9,
        "with_dimensions": rng.random() < 0.7,
        "symbols": True,
        "door_style": rng.choice(p["door_styles"]),
        "window_style": rng.choice(p["window_styles"]),
    }
    lo, hi = p["lineweight"]
    render_kwargs: dict[str, Any] = {
        "scale": scale,
        "paper": paper,
        "orientation": orientation,
        "dpi": float(dpi),
        "seed": int(seed),
        "lineweight_scale": round(lo + (hi - lo) * rng.random(), 3),
        "font": rng.choice(p["fonts"]),
    }
    if rng.random() < p["scan_rate"]:
        r = p["rotation"]
        render_kwargs.update(
            rotation_deg=round(rng.uniform(-r, r), 3) if rng.random() < 0.7 else 0.0,
            noise=round(rng.uniform(*p["noise"]), 2),
            blur=round(rng.uniform(*p["blur"]), 2),
            contrast=round(rng.uniform(*p["contrast"]), 3),
            speckle=round(rng.uniform(*p["speckle"]), 5),
            jpeg_quality=rng.randint(*p["jpeg"]) if rng.random() < 0.6 else None,
        )
    return PageSpec(int(seed), profile, plan_kwargs, render_kwargs)


def make_page(seed: int, profile: str = "train", *, dpi: float = 100) -> Page:
    """Generate, render and label page ``seed`` (see :func:`page_spec`).

    Args:
        seed: page seed.
        profile: ``"train"`` or ``"heldout"``.
        dpi: render resolution.

    Returns:
        The page with its labels.

    Raises:
        ValueError: on an unknown profile.
    """
    spec = page_spec(seed, profile, dpi=dpi)
    plan = generate_floorplan(**spec.plan_kwargs)
    image, transform = plan_to_raster(plan, **spec.render_kwargs)
    boxes = [
        (CLASSES.index(label), box)
        for label, box in symbol_boxes(plan, transform, spec.render_kwargs["dpi"])
    ]
    return Page(spec, image, boxes, transform, plan)


def tile_origins(length: int, tile: int, min_overlap: int) -> list[int]:
    """Start offsets of tiles covering ``[0, length)`` with at least ``min_overlap``.

    Tiles are spread evenly; the first starts at 0, the last ends at ``length``. A
    length shorter than a tile gives one tile at 0 (the caller pads).

    Args:
        length: image size along one axis, in pixels.
        tile: tile size.
        min_overlap: minimum overlap of neighbouring tiles (< ``tile``).

    Returns:
        Sorted start offsets.

    Raises:
        ValueError: when ``min_overlap`` is not in ``[0, tile)``.
    """
    if not 0 <= min_overlap < tile:
        raise ValueError("min_overlap must be in [0, tile)")
    if length <= tile:
        return [0]
    n = -(-(length - min_overlap) // (tile - min_overlap))
    n = max(n, 2)
    span = length - tile
    return [round(k * span / (n - 1)) for k in range(n)]


def tile_page(
    image: np.ndarray,
    boxes: Sequence[tuple[int, tuple[float, float, float, float]]],
    *,
    tile: int,
    overlap: int,
    min_visible: float = MIN_VISIBLE,
) -> Iterator[tuple[int, int, np.ndarray, list[tuple[int, tuple[float, float, float, float]]]]]:
    """Cut a page into tiles and clip its labels to them.

    Args:
        image: page render (H x W, uint8).
        boxes: ``(class, (x0, y0, x1, y1))`` in page pixels.
        tile: tile size (tiles at the page edges are padded white when the page is
            smaller).
        overlap: minimum overlap between neighbouring tiles.
        min_visible: fraction of a box that must be in the tile to keep its label.

    Yields:
        ``(x, y, tile_image, tile_boxes)`` with boxes in tile pixels.
    """
    h, w = image.shape[:2]
    for y in tile_origins(h, tile, overlap):
        for x in tile_origins(w, tile, overlap):
            crop = image[y : y + tile, x : x + tile]
            if crop.shape[0] != tile or crop.shape[1] != tile:
                pad = np.full((tile, tile, *crop.shape[2:]), 255, dtype=crop.dtype)
                pad[: crop.shape[0], : crop.shape[1]] = crop
                crop = pad
            kept = []
            for cls, (x0, y0, x1, y1) in boxes:
                area = max(x1 - x0, 1e-9) * max(y1 - y0, 1e-9)
                cx0, cy0 = max(x0 - x, 0.0), max(y0 - y, 0.0)
                cx1, cy1 = min(x1 - x, float(tile)), min(y1 - y, float(tile))
                if cx1 <= cx0 or cy1 <= cy0:
                    continue
                if (cx1 - cx0) * (cy1 - cy0) / area < min_visible:
                    continue
                kept.append((cls, (cx0, cy0, cx1, cy1)))
            yield x, y, crop, kept


def _has_ink(crop: np.ndarray) -> bool:
    return bool((crop < 128).mean() > 0.002)


def write_yolo_dataset(
    out_dir: str | Path,
    *,
    train: Sequence[int],
    val: Sequence[int],
    dpi: float = 100,
    tile: int = 320,
    overlap: int = 96,
    negative_rate: float = 0.25,
) -> Path:
    """Write a YOLO detection dataset of tiles of rendered pages.

    ``train`` pages use the ``"train"`` profile, ``val`` pages the ``"heldout"``
    profile. Files already written by an identical call are kept (a manifest records
    the parameters), so an interrupted build resumes where it stopped.

    Args:
        out_dir: dataset root (created).
        train: training page seeds (:func:`train_seeds`).
        val: held-out page seeds (:func:`heldout_seeds`).
        dpi: render resolution.
        tile: tile size in pixels.
        overlap: minimum tile overlap in pixels.
        negative_rate: fraction of inked tiles without any label that are kept.

    Returns:
        The path of ``data.yaml``.

    Raises:
        ValueError: when train and val seeds overlap.
    """
    import cv2

    if set(train) & set(val):
        raise ValueError("train and val seeds must be disjoint")
    root = Path(out_dir)
    params = {
        "dpi": dpi,
        "tile": tile,
        "overlap": overlap,
        "negative_rate": negative_rate,
        "classes": list(CLASSES),
    }
    manifest = root / "manifest.json"
    done: dict[str, Any] = {}
    if manifest.exists():
        old = json.loads(manifest.read_text())
        if old.get("params") == params:
            done = old.get("pages", {})
    root.mkdir(parents=True, exist_ok=True)
    for split, seeds, profile in (("train", train, "train"), ("val", val, "heldout")):
        img_dir = root / "images" / split
        lbl_dir = root / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            key = f"{split}:{seed}"
            if key in done:
                continue
            page = make_page(seed, profile, dpi=dpi)
            rng = random.Random(f"tiles:{profile}:{seed}")
            n = 0
            for x, y, crop, kept in tile_page(page.image, page.boxes, tile=tile, overlap=overlap):
                if not _has_ink(crop):
                    continue
                if not kept and rng.random() >= negative_rate:
                    continue
                stem = f"p{seed:07d}_{x:05d}_{y:05d}"
                cv2.imwrite(str(img_dir / f"{stem}.png"), crop)
                lines = [
                    f"{c} {(a + b) / 2 / tile:.6f} {(d + e) / 2 / tile:.6f} "
                    f"{(b - a) / tile:.6f} {(e - d) / tile:.6f}"
                    for c, (a, d, b, e) in kept
                ]
                (lbl_dir / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
                n += 1
            done[key] = n
            manifest.write_text(json.dumps({"params": params, "pages": done}, sort_keys=True))
    data = root / "data.yaml"
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(CLASSES))
    data.write_text(
        f"path: {root.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}"
    )
    return data


def write_blank_negatives(
    out_dir: str | Path,
    seeds: Sequence[int],
    *,
    per_page: int = 2,
    dpi: float = 100,
    tile: int = 320,
    overlap: int = 96,
) -> int:
    """Add blank-paper tiles (white, or only scan noise and speckle) as negatives.

    :func:`write_yolo_dataset` drops tiles without ink; a model that never sees blank
    paper may fire on it (seen: "stairs" on empty margins). This adds up to
    ``per_page`` such tiles of each ``"train"``-profile page ``seeds`` to the training
    split, with empty label files (names start with ``n``), seeded.

    Args:
        out_dir: dataset root of :func:`write_yolo_dataset`.
        seeds: page seeds (use seeds the training split does not use).
        per_page: tiles per page at most.
        dpi: render resolution.
        tile: tile size.
        overlap: minimum tile overlap.

    Returns:
        The number of tiles written.
    """
    import cv2

    root = Path(out_dir)
    img_dir = root / "images" / "train"
    lbl_dir = root / "labels" / "train"
    img_dir.mkdir(parents=True, exist_ok=True)
    lbl_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for seed in seeds:
        page = make_page(seed, "train", dpi=dpi)
        rng = random.Random(f"neg:{seed}")
        blanks = [
            (x, y, crop)
            for x, y, crop, kept in tile_page(page.image, page.boxes, tile=tile, overlap=overlap)
            if not kept and not _has_ink(crop)
        ]
        rng.shuffle(blanks)
        for x, y, crop in blanks[:per_page]:
            stem = f"n{seed:07d}_{x:05d}_{y:05d}"
            cv2.imwrite(str(img_dir / f"{stem}.png"), crop)
            (lbl_dir / f"{stem}.txt").write_text("")
            n += 1
    return n
