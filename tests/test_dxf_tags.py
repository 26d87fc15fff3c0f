"""The fast ASCII tag reader (cad2gltf/dxf/tags.py) hands ezdxf exactly the tags ezdxf's
own loader would, or steps aside (FastPathError) so that ezdxf.readfile decides."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from ezdxf.filemanagement import dxf_file_info
from ezdxf.lldxf.tagger import ascii_tags_loader, tag_compiler
from ezdxf.lldxf.validator import is_binary_dxf_file, is_dxf_file

from cad2gltf.dxf import tags as fast
from cad2gltf.synth.floorplan import encode_floorplan, generate_floorplan
from tests.conftest import CORPUS

REPO = Path(__file__).resolve().parent.parent
FILES = sorted(p for p in (CORPUS / "dxf").rglob("*") if p.suffix.lower() == ".dxf")
FILES += sorted((REPO / "samples").glob("*.dxf"))


def _reference(text: str) -> list[tuple[str, int, object]] | None:
    # newline=None: universal newlines, as open() reads the file
    try:
        return [(type(t).__name__, t.code, t.value)
                for t in tag_compiler(ascii_tags_loader(io.StringIO(text, newline=None)))]
    except Exception:  # noqa: BLE001 - ezdxf refuses the stream: the fast path must too
        return None


def _fast(text: str) -> list[tuple[str, int, object]] | None:
    try:
        return [(type(t).__name__, t.code, t.value) for t in fast._tags(io.StringIO(text, newline=None))]
    except fast.FastPathError:
        return None


def _text(path: Path) -> str:
    with open(path, encoding=dxf_file_info(str(path)).encoding,
              errors="surrogateescape") as fh:
        return fh.read()


def test_corpus_tags_equal_ezdxf_or_fall_back():
    assert len(FILES) > 80, "the corpus is missing"
    same = fallback = 0
    for path in FILES:
        if is_binary_dxf_file(str(path)) or not is_dxf_file(str(path)):
            with pytest.raises(fast.FastPathError):
                fast.fast_readfile(path)
            continue
        text = _text(path)
        got = _fast(text)
        if got is None:
            fallback += 1
            continue
        assert got == _reference(text), path.name
        same += 1
    # almost every real file takes the fast path (two ezdxf itself cannot load cleanly)
    assert same >= len(FILES) - 10 and fallback <= 5, (same, fallback)


def _plan() -> str:
    return encode_floorplan(generate_floorplan(seed=4, rooms_x=2, rooms_y=2)).decode("cp1252")


@pytest.mark.parametrize("variant", ["lf", "crlf", "cr", "no-final-newline", "after-eof",
                                     "comments", "tiny-blocks"])
def test_line_ending_and_layout_variants(variant, monkeypatch):
    text = _plan()
    if variant == "crlf":
        text = text.replace("\n", "\r\n")
    elif variant == "cr":
        text = text.replace("\n", "\r")
    elif variant == "no-final-newline":
        text = text.rstrip("\n")
    elif variant == "after-eof":
        text += "junk after the end\n0\nEOF\n"
    elif variant == "comments":
        text = "999\nmade by a test\n" + text
    elif variant == "tiny-blocks":
        monkeypatch.setattr(fast, "_BLOCK", 7)  # block borders inside lines and tags
    got, ref = _fast(text), _reference(text)
    assert got is None or got == ref  # same tags, or leave it to ezdxf
    if variant in ("lf", "crlf", "no-final-newline", "comments", "tiny-blocks"):
        assert got is not None and got == ref


@pytest.mark.parametrize("damage", [
    ("\n10\n", "\n10\nnot-a-number\n"),       # bad coordinate
    ("\n8\n", "\nxx\n"),                      # bad group code
])
def test_damaged_files_are_left_to_ezdxf(damage, tmp_path):
    old, new = damage
    text = _plan().replace(old, new, 1)
    assert _fast(text) is None
    path = tmp_path / "damaged.dxf"
    path.write_text(text, encoding="cp1252")
    with pytest.raises(Exception):  # noqa: B017,PT011 - FastPathError or ezdxf's own error
        fast.fast_readfile(path)


def test_fast_readfile_builds_the_same_document(tmp_path):
    import ezdxf

    path = tmp_path / "plan.dxf"
    path.write_text(_plan(), encoding="cp1252")
    a, b = fast.fast_readfile(path), ezdxf.readfile(path)
    assert a.dxfversion == b.dxfversion and a.encoding == b.encoding
    assert [(e.dxftype(), e.dxf.handle, e.dxf.layer) for e in a.modelspace()] == \
        [(e.dxftype(), e.dxf.handle, e.dxf.layer) for e in b.modelspace()]
    assert sorted(a.layers.entries.keys()) == sorted(b.layers.entries.keys())
