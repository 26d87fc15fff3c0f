"""Shared fixtures: the real-drawing corpus, the glTF validator, drawing factories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.gltf_validator import assert_valid_glb

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("CAD2GLTF_CORPUS", REPO.parent / "shared" / "corpus"))


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """``../shared/corpus``: real drawings nobody here wrote. Missing corpus = failure."""
    if not (CORPUS / "dxf").is_dir():
        pytest.fail(f"the drawing corpus is missing at {CORPUS} (set CAD2GLTF_CORPUS)")
    return CORPUS


@pytest.fixture
def valid_glb():
    """Check GLB bytes or a path with the Khronos validator; returns the report."""
    return assert_valid_glb
