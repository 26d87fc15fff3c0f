"""PDF refusals and repairs: encryption, active content, no pages, broken and corrupt files,
and the command-line contract for PDF inputs. No tracebacks, every refusal classified."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pymupdf
import pytest

from cad2gltf import ConvertOptions, convert_path
from cad2gltf.errors import ConversionError, InvalidInputError, ParsingError
from tests.gltf_validator import assert_valid_glb, validate_many

REPO = Path(__file__).resolve().parent.parent


def _plan_pdf() -> bytes:
    doc = pymupdf.open()
    page = doc.new_page(width=1191, height=842)
    shape = page.new_shape()
    for x0, y0, x1, y1 in [(100, 100, 700, 100), (100, 106, 700, 106), (100, 100, 100, 500),
                           (106, 106, 106, 500), (100, 500, 700, 500), (100, 494, 700, 494)]:
        shape.draw_line((x0, y0), (x1, y1))
    shape.finish(color=(0, 0, 0), width=0.7)
    shape.commit()
    page.insert_text((300, 300), "SCALE 1:100", fontsize=10)
    data = doc.tobytes()
    doc.close()
    return data


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def zero_page_pdf() -> bytes:
    """A well-formed PDF whose page tree is empty (PyMuPDF cannot save one)."""
    objs = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[]/Count 0>>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def _with_catalog_key(data: bytes, key: str, value: str) -> bytes:
    doc = pymupdf.open(stream=data, filetype="pdf")
    doc.xref_set_key(doc.pdf_catalog(), key, value)
    out = doc.tobytes()
    doc.close()
    return out


def test_password_protected_is_refused(tmp_path):
    doc = pymupdf.open(stream=_plan_pdf(), filetype="pdf")
    p = tmp_path / "locked.pdf"
    doc.save(p, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="secret", owner_pw="owner")
    doc.close()
    with pytest.raises(InvalidInputError) as info:
        convert_path(p)
    assert info.value.subcode == "ENCRYPTED" and info.value.code == "VALIDATION_ERROR"


def test_encrypted_with_empty_user_password_converts_with_warning(tmp_path):
    doc = pymupdf.open(stream=_plan_pdf(), filetype="pdf")
    p = tmp_path / "owner-only.pdf"
    doc.save(p, encryption=pymupdf.PDF_ENCRYPT_AES_128, owner_pw="owner", user_pw="",
             permissions=pymupdf.PDF_PERM_PRINT)
    doc.close()
    res = convert_path(p)
    assert_valid_glb(res.glb)
    assert any("encrypted" in w for w in res.warnings)


@pytest.mark.parametrize("key,value", [
    ("OpenAction", "<</S/JavaScript/JS(app.alert\\(1\\))>>"),
    ("OpenAction", "<</S/Launch/F(calc.exe)>>"),
    ("Names", "<</JavaScript<</Names[(x)<</S/JavaScript/JS(1)>>]>>>>"),
])
def test_active_content_is_refused(tmp_path, key, value):
    p = _write(tmp_path, "active.pdf", _with_catalog_key(_plan_pdf(), key, value))
    with pytest.raises(InvalidInputError) as info:
        convert_path(p)
    assert info.value.subcode == "SUSPICIOUS_CONTENT"


def test_javascript_link_annotation_is_refused(tmp_path):
    doc = pymupdf.open(stream=_plan_pdf(), filetype="pdf")
    page = doc[0]
    annot_xref = doc.get_new_xref()
    doc.update_object(annot_xref, "<</Type/Annot/Subtype/Link/Rect[0 0 50 50]"
                                  "/A<</S/JavaScript/JS(this.print\\(\\))>>>>")
    doc.xref_set_key(page.xref, "Annots", f"[{annot_xref} 0 R]")
    data = doc.tobytes()
    doc.close()
    with pytest.raises(InvalidInputError) as info:
        convert_path(_write(tmp_path, "link.pdf", data))
    assert info.value.subcode == "SUSPICIOUS_CONTENT"


def test_no_pages_is_refused(tmp_path):
    with pytest.raises(InvalidInputError) as info:
        convert_path(_write(tmp_path, "zero.pdf", zero_page_pdf()))
    assert info.value.subcode == "NO_PAGES"


def test_broken_xref_is_repaired_with_a_warning(tmp_path):
    good = _plan_pdf()
    i = good.rfind(b"startxref")
    p = _write(tmp_path, "badxref.pdf", good[:i] + b"startxref\n999999\n%%EOF\n")
    res = convert_path(p)
    assert_valid_glb(res.glb)
    assert any("repaired" in w for w in res.warnings)
    assert res.report["nodes_by_category"]["page"] == 1


def test_corrupt_beyond_repair_is_a_parsing_error(tmp_path):
    p = _write(tmp_path, "garbage.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 40)
    with pytest.raises(ParsingError) as info:
        convert_path(p)
    assert info.value.code == "PARSING_ERROR" and info.value.subcode == "BAD_PDF"


def test_blank_page_has_nothing_to_convert(tmp_path):
    doc = pymupdf.open()
    doc.new_page()
    p = tmp_path / "blank.pdf"
    doc.save(p)
    doc.close()
    with pytest.raises(ConversionError) as info:
        convert_path(p)
    assert info.value.full_code == "PARSING_ERROR/NO_GEOMETRY"


def test_bad_page_selection(tmp_path):
    p = _write(tmp_path, "one.pdf", _plan_pdf())
    with pytest.raises(InvalidInputError) as info:
        convert_path(p, ConvertOptions(pages="5-9"))
    assert info.value.subcode == "BAD_OPTIONS"


def test_detector_unavailable_is_a_detector_error(tmp_path, monkeypatch):
    """With detection on and no usable detector: DETECTOR_ERROR, never a download."""
    import cad2gltf.pdf.symbols as symbols

    monkeypatch.setitem(sys.modules, "cad2gltf.detect", None)  # as if not installed
    symbols._CACHE.clear()
    p = _write(tmp_path, "plan.pdf", _plan_pdf())
    with pytest.raises(ConversionError) as info:
        convert_path(p, ConvertOptions(detect_symbols=True))
    assert info.value.code == "DETECTOR_ERROR"


def test_pdf_options_do_not_change_dxf_cache_keys():
    d = ConvertOptions().to_dict()
    assert not {"scale", "dpi", "detect_symbols", "pages", "ground_plane",
                "glb_per_page"} & set(d)
    assert ConvertOptions(scale="1:50").to_dict()["scale"] == "1:50"
    assert ConvertOptions.from_dict(ConvertOptions(dpi=200).to_dict()).dpi == 200


def test_cli_contract_for_pdf(tmp_path):
    good = _write(tmp_path, "plan.pdf", _plan_pdf())
    zero = _write(tmp_path, "zero.pdf", zero_page_pdf())
    corrupt = _write(tmp_path, "corrupt.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 40)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "cad2gltf", "convert", str(good), str(zero),
                           str(corrupt), "--out", str(out), "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    by_name = {Path(r["input"]).name: r for r in lines}
    assert by_name["plan.pdf"]["status"] == "success"
    assert by_name["plan.pdf"]["nodes_by_category"]["page"] == 1
    assert by_name["zero.pdf"]["error_code"] == "VALIDATION_ERROR"
    assert by_name["zero.pdf"]["error_subcode"] == "NO_PAGES"
    assert by_name["corrupt.pdf"]["error_code"] == "PARSING_ERROR"
    assert (out / "plan.glb").is_file() and (out / "plan.png").is_file()
    reports = validate_many([out / "plan.glb"])
    assert all(r.get("errors", 1) == 0 and not r.get("error") for r in reports.values())
