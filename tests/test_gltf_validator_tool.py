"""Tests proving the glTF validator wrapper runs and can fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pygltflib
import pytest

from tests.gltf_validator import (
    ValidatorUnavailable,
    assert_valid_glb,
    validate_glb,
    validate_many,
)

TRIANGLE = np.array(
    [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32
)


def make_triangle_glb(*, with_min_max: bool = True, accessor_count: int = 3) -> bytes:
    """Build a one-triangle GLB with pygltflib.

    ``with_min_max=False`` omits the POSITION bounds required by the spec;
    ``accessor_count`` larger than 3 makes the accessor read past the buffer.
    """
    blob = TRIANGLE.tobytes()
    blob += b"\x00" * (-len(blob) % 4)  # pad the BIN chunk to 4 bytes
    accessor = pygltflib.Accessor(
        bufferView=0,
        componentType=pygltflib.FLOAT,
        count=accessor_count,
        type=pygltflib.VEC3,
    )
    if with_min_max:
        accessor.min = TRIANGLE.min(axis=0).tolist()
        accessor.max = TRIANGLE.max(axis=0).tolist()
    gltf = pygltflib.GLTF2(
        asset=pygltflib.Asset(version="2.0", generator="cad2gltf tests"),
        scene=0,
        scenes=[pygltflib.Scene(nodes=[0])],
        nodes=[pygltflib.Node(mesh=0)],
        meshes=[
            pygltflib.Mesh(
                primitives=[
                    pygltflib.Primitive(attributes=pygltflib.Attributes(POSITION=0))
                ]
            )
        ],
        accessors=[accessor],
        bufferViews=[
            pygltflib.BufferView(
                buffer=0,
                byteOffset=0,
                byteLength=TRIANGLE.nbytes,
                target=pygltflib.ARRAY_BUFFER,
            )
        ],
        buffers=[pygltflib.Buffer(byteLength=len(blob))],
    )
    gltf.set_binary_blob(blob)
    return b"".join(gltf.save_to_bytes())


def codes(report: dict) -> set[str]:
    """Return the issue codes listed in a report."""
    return {m["code"] for m in report["messages"]}


def test_valid_triangle_passes(tmp_path: Path) -> None:
    path = tmp_path / "triangle.glb"
    path.write_bytes(make_triangle_glb())
    report = assert_valid_glb(path)
    assert report["errors"] == 0
    assert report["file"] == str(path)
    assert "error" not in report


def test_valid_triangle_bytes_pass() -> None:
    report = assert_valid_glb(make_triangle_glb())
    assert report["errors"] == 0
    assert report["file"] == "<bytes>"


def test_accessor_past_buffer_end_fails() -> None:
    report = validate_glb(make_triangle_glb(accessor_count=6))
    assert report["errors"] > 0
    assert "ACCESSOR_TOO_LONG" in codes(report)
    with pytest.raises(AssertionError, match="ACCESSOR_TOO_LONG"):
        assert_valid_glb(make_triangle_glb(accessor_count=6))


def test_position_without_min_max_fails() -> None:
    report = validate_glb(make_triangle_glb(with_min_max=False))
    assert report["errors"] > 0
    assert "MESH_PRIMITIVE_POSITION_ACCESSOR_WITHOUT_BOUNDS" in codes(report)


def test_random_bytes_report_error_without_crash(tmp_path: Path) -> None:
    rng = np.random.default_rng(1234)
    path = tmp_path / "noise.glb"
    path.write_bytes(rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes())
    report = validate_glb(path)
    assert report["errors"] > 0
    assert report["messages"]
    with pytest.raises(AssertionError):
        assert_valid_glb(path)


def test_truncated_glb_reports_error() -> None:
    report = validate_glb(make_triangle_glb()[:40])
    assert report["errors"] > 0


def test_missing_file_reports_error(tmp_path: Path) -> None:
    report = validate_glb(tmp_path / "does-not-exist.glb")
    assert report["errors"] > 0
    assert "error" in report


def test_validate_many_returns_one_report_per_file(tmp_path: Path) -> None:
    good = tmp_path / "good.glb"
    unbounded = tmp_path / "unbounded.glb"
    noise = tmp_path / "noise.bin"
    good.write_bytes(make_triangle_glb())
    unbounded.write_bytes(make_triangle_glb(with_min_max=False))
    noise.write_bytes(b"\x00\xffnot a gltf file")
    reports = validate_many([good, unbounded, noise])
    assert list(reports) == [good, unbounded, noise]
    assert reports[good]["errors"] == 0
    assert reports[unbounded]["errors"] > 0
    assert reports[noise]["errors"] > 0
    assert [r["file"] for r in reports.values()] == [
        str(good),
        str(unbounded),
        str(noise),
    ]


def test_missing_node_modules_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool_dir = tmp_path / "gltf-validator"
    tool_dir.mkdir()
    (tool_dir / "validate.mjs").write_text("// placeholder\n")
    monkeypatch.setenv("CAD2GLTF_GLTF_VALIDATOR_DIR", str(tool_dir))
    with pytest.raises(
        ValidatorUnavailable, match="npm ci --prefix tools/gltf-validator"
    ):
        validate_glb(make_triangle_glb())
