"""``train_detector``: build the synthetic dataset, train the symbol detector, evaluate it.

A thin Prefect wrapper around the pure functions of :mod:`cad2gltf.detect.train`: three
tasks that pass paths and small metrics, never images or models. Seeded and resumable:
the dataset build keeps the pages already written, training resumes from the run's
``last.pt``, so re-running the flow after an interruption continues where it stopped.

Run it locally (CPU, ~45 minutes for the shipped model)::

    PYTHONPATH=. nice -n 10 python -m flows.train --out /tmp/cad2gltf-train

The exported weights land in ``<out>/plan-symbols.pt``; shipping them means copying the
file to ``cad2gltf/detect/weights/`` and updating the model card.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

__all__ = ["build_dataset", "evaluate_model", "train_detector", "train_model"]


@task(name="build-dataset", retries=0)
def build_dataset(
    out_dir: str,
    train_pages: int,
    val_pages: int,
    train_start: int = 0,
    val_start: int = 0,
    dpi: float = 100,
    tile: int = 320,
) -> str:
    """Write (or complete) the YOLO dataset; returns the path of ``data.yaml``."""
    from cad2gltf.detect.train import build_dataset as build

    path = build(
        Path(out_dir) / "data",
        train_pages=train_pages,
        val_pages=val_pages,
        train_start=train_start,
        val_start=val_start,
        dpi=dpi,
        tile=tile,
    )
    get_run_logger().info("dataset ready: %s", path)
    return str(path)


@task(name="train-model", retries=0)
def train_model(
    data_yaml: str,
    out_dir: str,
    epochs: int,
    imgsz: int,
    batch: int = 32,
    seed: int = 0,
    workers: int = 2,
    device: str = "cpu",
    time_hours: float | None = None,
    dpi: float = 100,
) -> str:
    """Train from scratch or resume; returns the exported weights file."""
    from cad2gltf.detect.train import train_model as train

    weights = train(
        data_yaml,
        out_dir,
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        seed=seed,
        workers=workers,
        device=device,
        time_hours=time_hours,
        dpi=dpi,
    )
    get_run_logger().info("weights exported: %s", weights)
    return str(weights)


@task(name="evaluate-model", retries=0)
def evaluate_model(weights: str, pages: int, val_start: int = 0) -> dict[str, Any]:
    """Page-level mAP50 / mAP50-95 per class on held-out pages."""
    from cad2gltf.detect.dataset import heldout_seeds
    from cad2gltf.detect.train import evaluate_model as evaluate

    result = evaluate(weights, seeds=heldout_seeds(pages, val_start)).to_dict()
    get_run_logger().info("held-out evaluation: %s", json.dumps(result, sort_keys=True))
    return result


@flow(name="train-detector", retries=0)
def train_detector(
    out_dir: str = "/tmp/cad2gltf-train",
    train_pages: int = 500,
    val_pages: int = 40,
    eval_pages: int = 30,
    train_start: int = 0,
    val_start: int = 0,
    epochs: int = 30,
    imgsz: int = 320,
    batch: int = 32,
    seed: int = 0,
    workers: int = 2,
    device: str = "cpu",
    time_hours: float | None = None,
    dpi: float = 100,
) -> dict[str, Any]:
    """Build the dataset, train the detector, evaluate it on held-out pages.

    Args:
        out_dir: working directory (dataset in ``data/``, run in ``run/``, weights in
            ``plan-symbols.pt``); keep it out of the repository.
        train_pages: training pages (seeds ``train_start ...``, ``"train"`` profile).
        val_pages: held-out pages used as the validation tiles during training.
        eval_pages: held-out pages of the final page-level evaluation (seeds
            ``val_start ...``, the ``"heldout"`` profile: other seeds and styles).
        train_start: first training seed.
        val_start: first held-out seed offset.
        epochs: training epochs.
        imgsz: training tile size.
        batch: batch size.
        seed: training seed.
        workers: data-loader processes.
        device: ``"cpu"`` or a CUDA device.
        time_hours: optional wall-time budget for training.
        dpi: render DPI of the data (and of the detector at inference).

    Returns:
        ``{"data_yaml", "weights", "evaluation"}``.
    """
    data_yaml = build_dataset(
        out_dir, train_pages, val_pages, train_start, val_start, dpi=dpi, tile=imgsz
    )
    weights = train_model(
        data_yaml,
        out_dir,
        epochs,
        imgsz,
        batch=batch,
        seed=seed,
        workers=workers,
        device=device,
        time_hours=time_hours,
        dpi=dpi,
    )
    evaluation = evaluate_model(weights, eval_pages, val_start)
    return {"data_yaml": data_yaml, "weights": weights, "evaluation": evaluation}


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m flows.train --out DIR [--epochs N] ...``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/tmp/cad2gltf-train")
    ap.add_argument("--train-pages", type=int, default=500)
    ap.add_argument("--val-pages", type=int, default=40)
    ap.add_argument("--eval-pages", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--time-hours", type=float, default=None)
    args = ap.parse_args(argv)
    result = train_detector(
        out_dir=args.out,
        train_pages=args.train_pages,
        val_pages=args.val_pages,
        eval_pages=args.eval_pages,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        seed=args.seed,
        workers=args.workers,
        device=args.device,
        time_hours=args.time_hours,
    )
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
