"""Pausing Python's cyclic garbage collector around bulk object creation."""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator

__all__ = ["gc_paused"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic collector for the block (restored after, if it was on).

    Building or converting a drawing allocates millions of small containers and frees
    few cycles; with the collector running, its generational passes rescan them again
    and again and the work becomes superlinear (measured: a 100k-entity conversion
    29.5 s -> 19.0 s paused; the synthetic generator 10-25 % of its build time).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
