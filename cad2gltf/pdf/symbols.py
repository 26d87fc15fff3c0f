"""The one door to the symbol detector (:mod:`cad2gltf.detect`).

Imported lazily: torch and ultralytics are only loaded when ``detect_symbols`` is on, so
a CPU-only install without them converts PDFs (without symbols) and imports every module.
Pages are batched: the reader renders a chunk of pages and detects them in one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cad2gltf.errors import ConversionError, DetectorError

__all__ = ["OPENING_CLASSES", "PageDetection", "SymbolDetector", "load_symbol_detector"]

#: detector classes that are openings in walls; every other class is a placeholder
OPENING_CLASSES = frozenset({"door", "window"})


@dataclass(frozen=True)
class PageDetection:
    """A detection in page terms: class, score, box in pixels of a ``dpi`` render."""

    label: str
    score: float
    box: tuple[float, float, float, float]
    dpi: float


class SymbolDetector:
    """Wraps a loaded detector: renders resolution, batching, error classification."""

    def __init__(self, detector: Any) -> None:
        self._det = detector

    @property
    def dpi(self) -> float:
        return float(self._det.dpi)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self._det.classes)

    @property
    def device(self) -> str:
        return str(getattr(self._det, "device", "cpu"))

    def detect(self, images: Sequence[np.ndarray], *, conf: float = 0.25,
               batch: int = 16) -> list[list[PageDetection]]:
        """Detect symbols on page renders made at :attr:`dpi`.

        Raises:
            DetectorError: ``DETECT_FAILED`` when the model fails on the batch.
        """
        if not images:
            return []
        try:
            raw = self._det.detect(list(images), conf=conf, batch=batch)
        except ConversionError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            raise DetectorError(f"the symbol detector failed: {type(exc).__name__}: {exc}",
                                subcode="DETECT_FAILED") from exc
        out: list[list[PageDetection]] = []
        for dets in raw:
            page = [PageDetection(str(d.label), float(d.score),
                                  tuple(float(v) for v in d.box),  # type: ignore[arg-type]
                                  self.dpi) for d in dets]
            page.sort(key=lambda d: (d.box, d.label, -d.score))
            out.append(page)
        return out


_CACHE: dict[str, SymbolDetector] = {}


def load_symbol_detector() -> SymbolDetector:
    """Load (once per process) the shipped detector.

    Raises:
        DetectorError: ``NOT_INSTALLED`` when the detector package or its dependencies
            are missing, ``WEIGHTS_MISSING`` (from the loader) without weights.
    """
    cached = _CACHE.get("default")
    if cached is not None:
        return cached
    try:
        from cad2gltf.detect import load_detector  # type: ignore[attr-defined,unused-ignore]
    except ImportError as exc:
        raise DetectorError(f"the symbol detector is not installed: {exc}",
                            subcode="NOT_INSTALLED") from None
    try:
        det = load_detector()
    except ConversionError:
        raise
    except ImportError as exc:
        raise DetectorError(f"the symbol detector's dependencies are missing: {exc}",
                            subcode="NOT_INSTALLED") from None
    except Exception as exc:  # noqa: BLE001
        raise DetectorError(f"the symbol detector cannot be loaded: {exc}",
                            subcode="LOAD_FAILED") from exc
    wrapped = _CACHE["default"] = SymbolDetector(det)
    return wrapped
