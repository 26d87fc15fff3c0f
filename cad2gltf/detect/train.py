"""Train, export and evaluate the plan-symbol detector (pure functions, no Prefect).

The three steps the ``train_detector`` flow (``flows/train.py``) wraps:

* :func:`build_dataset` writes the YOLO dataset of seeded synthetic pages
  (:mod:`cad2gltf.detect.dataset`);
* :func:`train_model` trains the small YOLO of ``yolo-plan.yaml`` from scratch with
  ultralytics on the CPU (or a GPU), seeded and deterministic, resuming from the run's
  ``last.pt`` when one is there, then exports the weights in the detector's own format
  (:func:`export_weights`: a plain ``state_dict`` loadable with
  ``torch.load(weights_only=True)``, half precision, with classes, DPI and tile size);
* :func:`evaluate_model` runs :class:`cad2gltf.detect.Detector` on whole held-out pages
  (tiling and cross-tile merging included) and reports mAP50 and mAP50-95 per class.

ultralytics never touches the network here: its settings live in a private config
directory with the telemetry ("sync") and integrations switched off, ``YOLO_OFFLINE`` is
set, the model is built from a YAML (no ``*.pt`` download), and plots (which want to
download a font) are off.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cad2gltf.detect.classes import CLASSES
from cad2gltf.errors import DetectorError

__all__ = [
    "MODEL_YAML",
    "EvalResult",
    "build_dataset",
    "evaluate_model",
    "export_weights",
    "offline_ultralytics",
    "train_model",
]

#: the network definition the detector is trained from
MODEL_YAML = Path(__file__).with_name("yolo-plan.yaml")
#: format tag written into exported weights
WEIGHTS_FORMAT = "cad2gltf-detector/1"


def offline_ultralytics(config_dir: str | Path | None = None) -> None:
    """Point ultralytics at a private, offline configuration before it is imported.

    Sets ``YOLO_CONFIG_DIR`` (default ``~/.cache/cad2gltf/ultralytics``) and
    ``YOLO_OFFLINE=1`` unless already set, and switches off telemetry and the
    experiment-tracker integrations in that directory's settings.

    Args:
        config_dir: settings directory for ultralytics.
    """
    default = Path.home() / ".cache" / "cad2gltf" / "ultralytics"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir or default))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)
    from ultralytics.utils import SETTINGS

    wanted = {
        "sync": False,
        "clearml": False,
        "comet": False,
        "dvc": False,
        "mlflow": False,
        "raytune": False,
        "tensorboard": False,
        "wandb": False,
        "hub": False,
        "neptune": False,
    }
    changes = {k: v for k, v in wanted.items() if k in SETTINGS and SETTINGS[k] != v}
    if changes:
        SETTINGS.update(changes)


def build_dataset(
    out_dir: str | Path,
    *,
    train_pages: int = 400,
    val_pages: int = 40,
    train_start: int = 0,
    val_start: int = 0,
    dpi: float = 100,
    tile: int = 320,
    overlap: int = 96,
    blank_pages: int = 0,
    blank_start: int = 500,
) -> Path:
    """Write the YOLO dataset (resumable: pages already written are kept).

    Args:
        out_dir: dataset directory.
        train_pages: number of training pages (seeds ``train_start ...``).
        val_pages: number of held-out pages (held-out seeds ``val_start ...``).
        train_start: first training seed offset.
        val_start: first held-out seed offset.
        dpi: render resolution.
        tile: tile size in pixels.
        overlap: minimum tile overlap in pixels.
        blank_pages: pages (training seeds ``blank_start ...``, outside the training
            pages) that give blank-paper negative tiles
            (:func:`cad2gltf.detect.dataset.write_blank_negatives`).
        blank_start: first seed of the blank-negative pages.

    Returns:
        The path of ``data.yaml``.
    """
    from cad2gltf.detect.dataset import (
        heldout_seeds,
        train_seeds,
        write_blank_negatives,
        write_yolo_dataset,
    )

    data = write_yolo_dataset(
        out_dir,
        train=train_seeds(train_pages, train_start),
        val=heldout_seeds(val_pages, val_start),
        dpi=dpi,
        tile=tile,
        overlap=overlap,
    )
    if blank_pages:
        write_blank_negatives(
            out_dir, train_seeds(blank_pages, blank_start), dpi=dpi, tile=tile, overlap=overlap
        )
    return data


def train_model(
    data_yaml: str | Path,
    out_dir: str | Path,
    *,
    epochs: int = 30,
    imgsz: int = 320,
    batch: int = 32,
    seed: int = 0,
    workers: int = 2,
    device: str = "cpu",
    resume: bool = True,
    time_hours: float | None = None,
    dpi: float = 100,
    tile: int = 640,
    weights_name: str = "plan-symbols.pt",
) -> Path:
    """Train the detector from scratch (or resume) and export its weights.

    The ultralytics run lives in ``out_dir/run`` (``weights/last.pt`` and
    ``best.pt``); when ``resume`` and an unfinished ``last.pt`` exists, training
    continues from it. The best checkpoint is exported to ``out_dir/weights_name``.

    Args:
        data_yaml: dataset description from :func:`build_dataset`.
        out_dir: run directory.
        epochs: number of epochs.
        imgsz: training image size (= dataset tile size).
        batch: batch size.
        seed: training seed (ultralytics ``deterministic`` mode is on).
        workers: data-loader processes.
        device: ``"cpu"``, ``"0"``...
        resume: continue an interrupted run.
        time_hours: optional wall-time budget; ultralytics then fits the epochs (and
            the learning-rate schedule) into it.
        dpi: the render DPI of the dataset, recorded in the weights.
        tile: the inference tile size recorded in the weights.
        weights_name: file name of the exported weights.

    Returns:
        The exported weights file.

    Raises:
        DetectorError: ``TRAINING_FAILED`` when ultralytics fails.
    """
    offline_ultralytics()
    from ultralytics import YOLO

    out = Path(out_dir).resolve()
    run = out / "run"
    last = run / "weights" / "last.pt"
    args: dict[str, Any] = {
        "data": str(Path(data_yaml).resolve()),
        "epochs": int(epochs),
        "imgsz": int(imgsz),
        "batch": int(batch),
        "workers": int(workers),
        "device": device,
        "seed": int(seed),
        "deterministic": True,
        "amp": False,
        "plots": False,
        "pretrained": False,
        "project": str(out),
        "name": "run",
        "exist_ok": True,
        "cache": False,
        "patience": 1000,
        "close_mosaic": max(1, min(3, int(epochs) // 5)),
        "warmup_epochs": 0.5,
        "hsv_h": 0.0,
        "hsv_s": 0.0,
        "hsv_v": 0.2,
        "degrees": 0.0,
        "translate": 0.1,
        "scale": 0.3,
        "fliplr": 0.5,
        "flipud": 0.5,
        "mosaic": 1.0,
        "verbose": True,
    }
    if time_hours:
        args["time"] = float(time_hours)
    try:
        if resume and last.exists() and _unfinished(last):
            YOLO(str(last)).train(resume=True)
        elif not (
            last.exists() and not _unfinished(last) and (run / "weights" / "best.pt").exists()
        ):
            YOLO(str(MODEL_YAML)).train(**args)
    except Exception as exc:  # ultralytics raises plain exceptions of many kinds
        raise DetectorError(f"training failed: {exc}", subcode="TRAINING_FAILED") from exc
    best = run / "weights" / "best.pt"
    if not best.exists():
        best = last
    return export_weights(best, out / weights_name, dpi=dpi, tile=tile, imgsz=imgsz)


def _unfinished(ckpt: Path) -> bool:
    import torch

    data = torch.load(ckpt, map_location="cpu", weights_only=False)
    return data.get("optimizer") is not None


def export_weights(
    checkpoint: str | Path,
    dst: str | Path,
    *,
    dpi: float,
    tile: int,
    imgsz: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Convert an ultralytics checkpoint to the detector's weights file.

    The file is a dict of plain types and tensors (``torch.load(weights_only=True)``
    reads it; no pickled classes): ``format``, ``classes``, ``dpi``, ``tile``,
    ``imgsz``, ``yaml`` (the network definition), ``state_dict`` (half precision),
    ``stride`` and ``extra``.

    Args:
        checkpoint: ``best.pt`` / ``last.pt`` of an ultralytics run (trusted: our own).
        dst: output file.
        dpi: the render DPI the model was trained for.
        tile: the default inference tile size.
        imgsz: the training image size.
        extra: small JSON-friendly metadata (training time, metrics...).

    Returns:
        ``dst``.
    """
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = ckpt.get("ema") or ckpt["model"]
    state = {
        k: v.detach().half() if v.is_floating_point() else v.detach()
        for k, v in model.float().state_dict().items()
    }
    payload = {
        "format": WEIGHTS_FORMAT,
        "classes": list(CLASSES),
        "dpi": float(dpi),
        "tile": int(tile),
        "imgsz": int(imgsz),
        "yaml": json.loads(json.dumps(dict(model.yaml))),
        "state_dict": state,
        "stride": [float(s) for s in model.stride],
        "extra": json.loads(json.dumps(extra or {})),
    }
    out = Path(dst)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, out)
    return out


@dataclass
class EvalResult:
    """Page-level evaluation of a detector on held-out pages.

    Attributes:
        pages: number of pages.
        seconds_per_page: mean detection time per page (rendering excluded).
        map50: mean AP at IoU 0.5 over the classes with ground truth.
        map50_95: mean AP at IoU 0.5:0.95.
        per_class: class -> {"ap50", "ap50_95", "instances"}.
    """

    pages: int
    seconds_per_page: float
    map50: float
    map50_95: float
    per_class: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def evaluate_model(
    weights: str | Path | None = None,
    *,
    seeds: Sequence[int] | None = None,
    pages: int = 20,
    conf: float = 0.001,
    device: str | None = None,
) -> EvalResult:
    """Detect symbols on held-out pages and compute AP per class.

    Each page of the ``"heldout"`` profile (:func:`cad2gltf.detect.dataset.make_page`)
    is rendered at the detector's DPI and passed whole to
    :meth:`cad2gltf.detect.Detector.detect`; predictions are matched to ground truth
    greedily by score at IoU thresholds 0.50, 0.55 ... 0.95, and AP is the area under the
    interpolated precision-recall curve (101-point, COCO style).

    Args:
        weights: detector weights (None = the shipped ones).
        seeds: held-out page seeds (default: the first ``pages`` held-out seeds).
        pages: number of pages when ``seeds`` is None.
        conf: score threshold of the predictions kept for the curves.
        device: torch device (None = auto).

    Returns:
        The evaluation.
    """
    from cad2gltf.detect import load_detector
    from cad2gltf.detect.dataset import heldout_seeds, make_page

    det = load_detector(weights, device=device)
    seeds = list(seeds) if seeds is not None else heldout_seeds(pages)
    thresholds = np.linspace(0.5, 0.95, 10)
    records: dict[int, list[tuple[float, np.ndarray]]] = {c: [] for c in range(len(CLASSES))}
    counts = dict.fromkeys(range(len(CLASSES)), 0)
    seconds = 0.0
    for seed in seeds:
        page = make_page(seed, "heldout", dpi=det.dpi)
        t0 = time.perf_counter()
        found = det.detect([page.image], conf=conf)[0]
        seconds += time.perf_counter() - t0
        for c in range(len(CLASSES)):
            gt = np.array([b for k, b in page.boxes if k == c], dtype=np.float64).reshape(-1, 4)
            counts[c] += len(gt)
            preds = sorted((d for d in found if d.label == CLASSES[c]), key=lambda d: -d.score)
            matched = np.zeros((len(thresholds), len(gt)), dtype=bool)
            for d in preds:
                tp = np.zeros(len(thresholds), dtype=bool)
                if len(gt):
                    ious = _iou(np.array(d.box, dtype=np.float64), gt)
                    for t, thr in enumerate(thresholds):
                        cand = np.where((ious >= thr) & ~matched[t])[0]
                        if len(cand):
                            j = cand[np.argmax(ious[cand])]
                            matched[t, j] = True
                            tp[t] = True
                records[c].append((d.score, tp))
    per_class: dict[str, dict[str, float]] = {}
    for c, name in enumerate(CLASSES):
        if counts[c] == 0:
            continue
        recs = sorted(records[c], key=lambda r: -r[0])
        tps = np.array([r[1] for r in recs], dtype=np.float64).reshape(-1, len(thresholds))
        aps = [_ap(tps[:, t], counts[c]) for t in range(len(thresholds))]
        per_class[name] = {
            "ap50": float(aps[0]),
            "ap50_95": float(np.mean(aps)),
            "instances": float(counts[c]),
        }
    maps50 = [v["ap50"] for v in per_class.values()]
    maps = [v["ap50_95"] for v in per_class.values()]
    return EvalResult(
        pages=len(seeds),
        seconds_per_page=seconds / max(1, len(seeds)),
        map50=float(np.mean(maps50)) if maps50 else 0.0,
        map50_95=float(np.mean(maps)) if maps else 0.0,
        per_class=per_class,
    )


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    a = (box[2] - box[0]) * (box[3] - box[1])
    b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(a + b - inter, 1e-9)


def _ap(tp: np.ndarray, n_gt: int) -> float:
    """COCO-style 101-point interpolated AP of predictions sorted by score."""
    if n_gt == 0:
        return 0.0
    if len(tp) == 0:
        return 0.0
    ctp = np.cumsum(tp)
    cfp = np.cumsum(1.0 - tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-9)
    # precision envelope
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    grid = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, grid, side="left")
    vals = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(np.mean(vals))
