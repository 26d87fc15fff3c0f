"""The detector runtime: load the shipped weights, detect symbols on page renders.

Weights are a plain dict (``torch.load(weights_only=True)``, no pickled classes, see
:func:`cad2gltf.detect.train.export_weights`); the network is rebuilt from the YAML
stored with them through ultralytics' ``DetectionModel`` and run directly with torch:
tiles of the page, batched, boxes decoded and merged with class-wise NMS. Nothing here
opens a network connection.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cad2gltf.errors import DetectorError

__all__ = ["DEFAULT_WEIGHTS", "Detection", "Detector", "load_detector"]

#: the weights shipped with the package
DEFAULT_WEIGHTS: Path = Path(__file__).with_name("weights") / "plan-symbols.pt"

#: minimum overlap of neighbouring tiles, in pixels
DEFAULT_OVERLAP = 96
#: tiles with fewer dark (< 128) pixels than this are blank paper and are skipped
_MIN_INK_PIXELS = 200
#: a box within this many pixels of a tile edge shared with another tile is "cut"
_EDGE_PX = 3.0

_CACHE: dict[tuple[str, str], Detector] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Detection:
    """One detected symbol.

    Attributes:
        label: one of :data:`CLASSES`.
        score: confidence in [0, 1].
        box: ``(x0, y0, x1, y1)`` in pixels of the image passed to
            :meth:`Detector.detect`.
    """

    label: str
    score: float
    box: tuple[float, float, float, float]


class Detector:
    """A loaded symbol detector.

    Attributes:
        classes: class names, in model output order.
        device: torch device the model runs on.
        tile: tile size in pixels (square).
        dpi: render DPI the model was trained for; pass page renders at this DPI.
        overlap: minimum overlap of neighbouring tiles, in pixels.
        weights: the weights file.
        meta: metadata stored with the weights (training time, metrics...).
    """

    def __init__(
        self,
        model: Any,
        *,
        classes: Sequence[str],
        device: str,
        tile: int,
        dpi: float,
        weights: Path,
        overlap: int = DEFAULT_OVERLAP,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self._model = model
        self._lock = threading.Lock()
        self.classes: tuple[str, ...] = tuple(classes)
        self.device = device
        self.tile = int(tile)
        self.dpi = float(dpi)
        self.overlap = int(overlap)
        self.weights = weights
        self.meta = dict(meta or {})

    def detect(
        self,
        images: Sequence[np.ndarray],
        *,
        conf: float = 0.25,
        iou: float = 0.5,
        batch: int = 16,
    ) -> list[list[Detection]]:
        """Detect symbols on page renders.

        Each image is cut into ``tile`` x ``tile`` tiles overlapping by at least
        :attr:`overlap` pixels (white padding when the image is smaller); blank tiles
        (fewer than 200 pixels darker than 128) are skipped; the other tiles of all
        images run through the network in batches of ``batch``; boxes are mapped back
        to the image, and duplicates across tile borders are merged class by class:
        NMS at ``iou``, plus a box cut by an inner tile edge is dropped when a box of
        the same class mostly contains it.

        Args:
            images: uint8 grey (H x W) or BGR/RGB (H x W x 3) page renders at
                :attr:`dpi`.
            conf: minimum score.
            iou: IoU above which two boxes of a class are one symbol.
            batch: tiles per forward pass.

        Returns:
            One list of detections per image, best score first.

        Raises:
            DetectorError: ``BAD_IMAGE`` for an image that is not uint8 2-D or 3-channel,
                ``DETECT_FAILED`` when the model fails.
        """
        import torch

        tiles: list[tuple[int, int, int]] = []  # (image index, x, y)
        crops: list[np.ndarray] = []
        edges: list[tuple[bool, bool, bool, bool]] = []  # tile has a neighbour at l,t,r,b
        for n, img in enumerate(images):
            gray = _to_gray(img)
            h, w = gray.shape
            xs = _origins(w, self.tile, self.overlap)
            ys = _origins(h, self.tile, self.overlap)
            for y in ys:
                for x in xs:
                    crop = gray[y : y + self.tile, x : x + self.tile]
                    if crop.shape != (self.tile, self.tile):
                        pad = np.full((self.tile, self.tile), 255, dtype=np.uint8)
                        pad[: crop.shape[0], : crop.shape[1]] = crop
                        crop = pad
                    if int(np.count_nonzero(crop < 128)) < _MIN_INK_PIXELS:
                        continue  # blank paper: nothing to find (and never seen in training)
                    tiles.append((n, x, y))
                    crops.append(crop)
                    edges.append((x > xs[0], y > ys[0], x < xs[-1], y < ys[-1]))
        per_image: list[list[tuple[float, float, float, float, float, int, bool]]] = [
            [] for _ in images
        ]
        try:
            with self._lock, torch.inference_mode():
                for start in range(0, len(crops), max(1, int(batch))):
                    chunk = np.stack(crops[start : start + max(1, int(batch))])
                    t = torch.from_numpy(chunk).to(self.device)
                    t = t.unsqueeze(1).expand(-1, 3, -1, -1).float().div_(255.0)
                    out = self._model(t)
                    pred = out[0] if isinstance(out, (tuple, list)) else out
                    for k, p in enumerate(pred):
                        n, ox, oy = tiles[start + k]
                        per_image[n].extend(self._decode(p, ox, oy, edges[start + k], conf, iou))
        except DetectorError:
            raise
        except Exception as exc:
            raise DetectorError(f"detection failed: {exc}", subcode="DETECT_FAILED") from exc
        return [self._merge(found, iou) for found in per_image]

    def _decode(
        self,
        p: Any,
        ox: int,
        oy: int,
        edges: tuple[bool, bool, bool, bool],
        conf: float,
        iou: float,
    ) -> list[tuple[float, float, float, float, float, int, bool]]:
        import torch
        from torchvision.ops import batched_nms

        scores, cls = p[4:].max(0)
        keep = scores >= conf
        if not bool(keep.any()):
            return []
        xywh = p[:4, keep].T
        scores, cls = scores[keep], cls[keep]
        boxes = torch.cat((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), 1)
        boxes = boxes.clamp_(0, self.tile)
        idx = batched_nms(boxes, scores, cls, iou)[:300]
        out = []
        t = float(self.tile)
        for b, s, c in zip(
            boxes[idx].tolist(), scores[idx].tolist(), cls[idx].tolist(), strict=True
        ):
            cut = (
                (edges[0] and b[0] <= _EDGE_PX)
                or (edges[1] and b[1] <= _EDGE_PX)
                or (edges[2] and b[2] >= t - _EDGE_PX)
                or (edges[3] and b[3] >= t - _EDGE_PX)
            )
            out.append((b[0] + ox, b[1] + oy, b[2] + ox, b[3] + oy, float(s), int(c), cut))
        return out

    def _merge(
        self, found: list[tuple[float, float, float, float, float, int, bool]], iou: float
    ) -> list[Detection]:
        """Class-wise NMS over the whole image, whole boxes before boxes cut by a tile
        edge; a cut box mostly inside a kept box of its class is dropped too."""
        import torch
        from torchvision.ops import batched_nms

        if not found:
            return []
        arr = np.array([f[:5] for f in found], dtype=np.float64)
        cls = np.array([f[5] for f in found], dtype=np.int64)
        cut = np.array([f[6] for f in found], dtype=bool)
        rank = arr[:, 4] - cut.astype(np.float64) * 2.0  # whole boxes first, then score
        keep = batched_nms(
            torch.from_numpy(arr[:, :4]).float(),
            torch.from_numpy(rank).float(),
            torch.from_numpy(cls),
            iou,
        ).numpy()
        kept: list[int] = []
        for i in keep:  # in rank order
            if cut[i] and kept:
                others = np.array([j for j in kept if cls[j] == cls[i]], dtype=np.int64)
                if len(others):
                    a, b = arr[i], arr[others]
                    iw = np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0])
                    ih = np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1])
                    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
                    area = max((a[2] - a[0]) * (a[3] - a[1]), 1e-9)
                    if bool((inter / area > 0.6).any()):
                        continue
            kept.append(int(i))
        kept.sort(key=lambda i: -arr[i, 4])
        return [
            Detection(
                label=self.classes[int(cls[i])],
                score=float(arr[i, 4]),
                box=(float(arr[i, 0]), float(arr[i, 1]), float(arr[i, 2]), float(arr[i, 3])),
            )
            for i in kept
        ]


def _to_gray(img: np.ndarray) -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise DetectorError("images must be uint8", subcode="BAD_IMAGE")
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[2] == 1:
        return arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        # plans are black on white: the mean of the colour channels is enough
        return arr[:, :, :3].mean(axis=2).astype(np.uint8)
    raise DetectorError(f"unsupported image shape {arr.shape}", subcode="BAD_IMAGE")


def _origins(length: int, tile: int, min_overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    n = max(2, -(-(length - min_overlap) // (tile - min_overlap)))
    span = length - tile
    return [round(k * span / (n - 1)) for k in range(n)]


def load_detector(weights: str | Path | None = None, device: str | None = None) -> Detector:
    """Load (once per weights file and device) the symbol detector.

    Never touches the network: the weights are a local file, the network is rebuilt
    from the definition stored in it.

    Args:
        weights: weights file; None for :data:`DEFAULT_WEIGHTS` (or the
            ``CAD2GLTF_DETECTOR_WEIGHTS`` environment variable when set).
        device: torch device; None picks ``"cuda"`` when available, else ``"cpu"``.

    Returns:
        The detector (shared: calls are serialised by a lock).

    Raises:
        DetectorError: ``WEIGHTS_MISSING`` when the file does not exist,
            ``WEIGHTS_INVALID`` when it cannot be read as detector weights,
            ``RUNTIME_MISSING`` when torch or ultralytics is not installed.
    """
    if weights is None:
        weights = os.environ.get("CAD2GLTF_DETECTOR_WEIGHTS") or DEFAULT_WEIGHTS
    path = Path(weights).expanduser().resolve()
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - the lock file installs torch
        raise DetectorError(
            "the symbol detector needs torch and ultralytics", subcode="RUNTIME_MISSING"
        ) from exc
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    key = (str(path), str(device))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if not path.is_file():
            raise DetectorError(
                f"detector weights not found: {path}",
                subcode="WEIGHTS_MISSING",
                details={"weights": str(path)},
            )
        det = _load(path, str(device))
        _CACHE[key] = det
        return det


def _load(path: Path, device: str) -> Detector:
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(data, dict) or data.get("format") != "cad2gltf-detector/1":
            raise ValueError("not a cad2gltf detector weights file")
        classes = tuple(data["classes"])
        cfg = dict(data["yaml"])
        if not cfg.get("scale") and cfg.get("scales"):
            cfg["scale"] = next(iter(cfg["scales"]))  # else ultralytics warns
        state = {
            k: v.float() if v.is_floating_point() else v for k, v in data["state_dict"].items()
        }
    except Exception as exc:
        raise DetectorError(
            f"detector weights unreadable: {path}: {exc}",
            subcode="WEIGHTS_INVALID",
            details={"weights": str(path)},
        ) from exc
    from cad2gltf.detect.train import offline_ultralytics

    offline_ultralytics()
    try:
        from ultralytics.nn.tasks import DetectionModel
    except ImportError as exc:  # pragma: no cover
        raise DetectorError(
            "the symbol detector needs ultralytics", subcode="RUNTIME_MISSING"
        ) from exc
    try:
        model = DetectionModel(cfg, nc=len(classes), verbose=False)
        model.load_state_dict(state, strict=True)
        model = model.fuse(verbose=False).eval().to(device)
    except Exception as exc:
        raise DetectorError(
            f"detector weights do not fit the network: {exc}",
            subcode="WEIGHTS_INVALID",
            details={"weights": str(path)},
        ) from exc
    return Detector(
        model,
        classes=classes,
        device=device,
        tile=int(data.get("tile", 640)),
        dpi=float(data.get("dpi", 100)),
        weights=path,
        meta=dict(data.get("extra", {})),
    )
