"""Validation before parsing: real type from content, limits, names; stable codes."""

from __future__ import annotations

import gzip
import io
import zipfile

import ezdxf
import pytest

from cad2gltf import convert_bytes, convert_path
from cad2gltf.errors import InvalidInputError
from cad2gltf.validate import BINARY_DXF_SENTINEL, Limits, validate_filename, validate_path


def _dxf_text() -> bytes:
    doc = ezdxf.new("R2010")
    doc.modelspace().add_line((0, 0), (1, 1))
    stream = io.StringIO()
    doc.write(stream)
    return stream.getvalue().encode()


def refused(path, **kw) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        validate_path(path, **kw)
    assert info.value.code == "VALIDATION_ERROR"
    return info.value


def test_empty_and_whitespace_files(tmp_path):
    (tmp_path / "a.dxf").write_bytes(b"")
    (tmp_path / "b.dxf").write_bytes(b"  \r\n\n ")
    assert refused(tmp_path / "a.dxf").subcode == "EMPTY_FILE"
    assert refused(tmp_path / "b.dxf").subcode == "EMPTY_FILE"


def test_size_limit_is_per_type_and_configurable(tmp_path):
    p = tmp_path / "big.dxf"
    p.write_bytes(_dxf_text())
    err = refused(p, limits=Limits(dxf_max_bytes=100))
    assert err.subcode == "FILE_TOO_LARGE" and err.details["limit"] == 100
    assert validate_path(p, limits=Limits(dxf_max_bytes=10**9)).file_type == "dxf"


def test_not_a_drawing(tmp_path):
    p = tmp_path / "notes.dxf"
    p.write_bytes(b"hello, this is text and not a drawing\n" * 10)
    err = refused(p)
    assert err.subcode == "UNSUPPORTED_TYPE" and ".dxf" in err.message


@pytest.mark.parametrize("maker,what", [
    (lambda d: gzip.compress(d), "gzip"),
    (lambda d: _zip(d), "ZIP"),
    (lambda d: b"\x7fELF" + d, "executable"),
])
def test_containers_and_executables_refused(tmp_path, maker, what):
    p = tmp_path / "x.dxf"
    p.write_bytes(maker(_dxf_text()))
    err = refused(p)
    assert err.subcode == "UNSUPPORTED_TYPE" and what in err.message


def _zip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.dxf", data)
    return buf.getvalue()


def test_extension_and_declared_type_mismatch(tmp_path):
    p = tmp_path / "plan.pdf"
    p.write_bytes(_dxf_text())
    assert refused(p).subcode == "TYPE_MISMATCH"
    q = tmp_path / "plan.bin"  # unknown extension: content decides
    q.write_bytes(_dxf_text())
    assert validate_path(q).file_type == "dxf"
    assert refused(q, declared_type="pdf").subcode == "TYPE_MISMATCH"


def test_polyglot_and_active_content(tmp_path):
    p = tmp_path / "poly.dxf"
    p.write_bytes(b"0\nSECTION\n999\n%PDF-1.7\n" + _dxf_text())
    assert refused(p).subcode == "SUSPICIOUS_CONTENT"
    h = tmp_path / "page.dxf"
    h.write_bytes(b"<html><script>alert(1)</script></html>")
    assert refused(h).subcode in ("UNSUPPORTED_TYPE", "SUSPICIOUS_CONTENT")


def test_binary_dxf_sniffed(corpus_dir):
    f = corpus_dir / "dxf/ezdxf/integration_tests/data/bin_dxf_r2000.dxf"
    assert f.read_bytes().startswith(BINARY_DXF_SENTINEL)
    assert validate_path(f).variant == "binary"


@pytest.mark.parametrize("name", ["a\x00b.dxf", "../etc/passwd.dxf", "dir/plan.dxf",
                                  "/abs.dxf", "C:plan.dxf", "~root.dxf", "tab\tname.dxf", "", ".."])
def test_bad_file_names(name):
    with pytest.raises(InvalidInputError) as info:
        validate_filename(name)
    assert info.value.subcode == "BAD_FILENAME"


def test_relative_keys_allowed_when_asked():
    assert validate_filename("jobs/2026/plan.dxf", allow_dirs=True)
    with pytest.raises(InvalidInputError):
        validate_filename("jobs/../../plan.dxf", allow_dirs=True)


def test_convert_bytes_refuses_traversal_names():
    with pytest.raises(InvalidInputError) as info:
        convert_bytes(_dxf_text(), "../../x.dxf")
    assert info.value.subcode == "BAD_FILENAME"


def test_missing_file(tmp_path):
    with pytest.raises(InvalidInputError) as info:
        convert_path(tmp_path / "nope.dxf")
    assert info.value.subcode == "NOT_FOUND"


def test_garbage_after_valid_header_is_a_parsing_error(tmp_path):
    p = tmp_path / "broken.dxf"
    p.write_bytes(b"0\nSECTION\n2\nENTITIES\n0\nLINE\n10\nnot-a-number\n" + b"\xff\xfe" * 50)
    from cad2gltf.errors import ConversionError

    with pytest.raises(ConversionError) as info:
        convert_path(p)
    assert info.value.code == "PARSING_ERROR"
