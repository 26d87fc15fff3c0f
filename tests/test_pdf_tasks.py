"""The PDF work as Prefect tasks (``flows/pdf.py``, ``tasks/pdf.py``), under
``prefect_test_harness`` against the moto S3 server and PostgreSQL, with real PDFs.

Covers: the three task kinds run (extraction per chunk, detection per batch across
chunks, one build), the stored GLB is byte-identical to ``convert_path``'s and
validator-clean, a second run does no work, results that vanished are converted again,
a transient storage failure is retried, refused PDFs fail at once with their code. The
core steps (pages serialised and read back, prepared pages) are tested without Prefect.
"""

from __future__ import annotations

import asyncio

import pymupdf
import pytest

from cad2gltf.convert import convert_path
from cad2gltf.errors import ConversionError
from cad2gltf.options import ConvertOptions
from cad2gltf.synth.floorplan import generate_floorplan
from cad2gltf.synth.render import plans_to_pdf
from tests import test_pipeline as _pipeline_tests
from tests.gltf_validator import assert_valid_glb
from tests.test_pipeline import _task_runs

# the pipeline fixtures of test_pipeline: moto S3 + PostgreSQL settings, one harness
harness = _pipeline_tests.harness
pipeline = _pipeline_tests.pipeline

PDF_TASKS = ("extract_pdf_pages", "detect_symbols", "build_pdf_scene")


def _plan_set(n: int, seed: int = 40, paper: str = "A3") -> bytes:
    return plans_to_pdf([generate_floorplan(seed=seed + k, rooms_x=2, rooms_y=1 + k % 2)
                         for k in range(n)], scale=100, paper=paper)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 2 pages and detector batches of 2 pages: a 3-page PDF makes two
    extraction and two detection tasks (for ``convert_path`` too: same chunking)."""
    import cad2gltf.pdf.reader as reader

    monkeypatch.setattr(reader, "CHUNK", 2)
    monkeypatch.setenv("CAD2GLTF_PDF_DETECT_BATCH_PAGES", "2")


def _run_pdf(uri: str, options: dict | None = None):
    """Run ``convert_pdf``; returns (result or exception, flow run id)."""
    from flows.pdf import convert_pdf

    async def go():
        state = await convert_pdf(uri, options=options, return_state=True)
        return state, await state.result(raise_on_failure=False)

    state, result = asyncio.run(go())
    return result, str(state.state_details.flow_run_id)


async def _pdf_task_runs(flow_run_id: str, timeout: float = 30.0) -> dict[str, list]:
    """The PDF task runs of a flow run by task, once all of them are final."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        runs = {name: await _task_runs(flow_run_id, name) for name in PDF_TASKS}
        anchor = await _task_runs(flow_run_id, "download_source")
        every = [t for ts in runs.values() for t in ts] + anchor
        if (anchor and all(t.state and t.state.is_final() for t in every)) \
                or time.monotonic() > deadline:
            return runs
        await asyncio.sleep(0.3)


def _reference(tmp_path, data: bytes, name: str, options: dict) -> bytes:
    path = tmp_path / name
    path.write_bytes(data)
    return convert_path(path, ConvertOptions.from_dict(options)).glb


# --------------------------------------------------------------------------- the flow


def test_pdf_flow_runs_three_task_kinds_and_matches_convert_path(pipeline, small_chunks,
                                                                tmp_path):
    data = _plan_set(3, paper="A4")
    options = {"detect_symbols": True, "ground_plane": True}
    out, run_id = _run_pdf(pipeline.upload("set.pdf", data), options)
    assert out["reused"] is False and out["result_uri"].endswith("/set.glb")
    runs = asyncio.run(_pdf_task_runs(run_id))
    assert {k: len(v) for k, v in runs.items()} == {
        "extract_pdf_pages": 2, "detect_symbols": 2, "build_pdf_scene": 1}
    assert sorted(t.name for t in runs["extract_pdf_pages"]) == [
        "extract set.pdf chunk 0", "extract set.pdf chunk 1"]
    assert sorted(t.name for t in runs["detect_symbols"]) == [
        "detect set.pdf pages 1-2", "detect set.pdf pages 3-3"]
    assert all(t.state.name == "Completed" and t.run_count == 1
               for ts in runs.values() for t in ts)
    glb = pipeline.fetch(out["result_uri"])
    assert_valid_glb(glb)
    reference = _reference(tmp_path, data, "set.pdf", options)
    assert_valid_glb(reference)
    assert glb == reference
    assert out["summary"]["file_type"] == "pdf" and out["summary"]["nodes_by_category"]["page"] == 3
    # the manifest is the one convert_drawing writes; the intermediates are gone
    manifest = pipeline.fetch(out["manifest_uri"])
    assert b'"options_hash"' in manifest and b'"source_sha256"' in manifest
    assert not [k for k in pipeline.keys("store/results/") if "/pdf-work/" in k]


def test_second_pdf_run_does_no_work_and_lost_results_are_redone(pipeline, small_chunks,
                                                                 tmp_path):
    data = _plan_set(3, seed=50)
    uri = pipeline.upload("again.pdf", data)
    first, _ = _run_pdf(uri)
    again, run_id = _run_pdf(uri)
    assert again["reused"] is True and again["result_uri"] == first["result_uri"]
    runs = asyncio.run(_pdf_task_runs(run_id))
    assert all(v == [] for v in runs.values()), runs  # the stored result answers
    # the result expires (cleanup) while the task cache records live on: the cached
    # records point at intermediates that are gone, so every step runs again
    for key in pipeline.keys("store/results/"):
        pipeline.s3.client.delete_object(Bucket=pipeline.bucket, Key=key)
    redo, run_id = _run_pdf(uri)
    assert redo["reused"] is False and redo["result_uri"] == first["result_uri"]
    runs = asyncio.run(_pdf_task_runs(run_id))
    assert len(runs["build_pdf_scene"]) >= 1 and len(runs["extract_pdf_pages"]) >= 2
    glb = pipeline.fetch(redo["result_uri"])
    assert_valid_glb(glb)
    assert glb == _reference(tmp_path, data, "again.pdf", {})


def test_inline_cpu_route_runs_the_same_tasks(pipeline, monkeypatch, tmp_path):
    from flows.convert import convert_file

    monkeypatch.setenv("CAD2GLTF_PDF_ROUTE", "cpu")
    from tasks.runtime import reset_runtime

    reset_runtime()
    data = _plan_set(1, seed=60)
    out = asyncio.run(convert_file(pipeline.upload("inline.pdf", data)))
    assert out["status"] == "SUCCESS"
    runs = asyncio.run(_pdf_task_runs(out["flow_run_id"]))
    assert {k: len(v) for k, v in runs.items()} == {
        "extract_pdf_pages": 1, "detect_symbols": 0, "build_pdf_scene": 1}
    glb = pipeline.fetch(out["result_uri"])
    assert_valid_glb(glb)
    assert glb == _reference(tmp_path, data, "inline.pdf", {})


def test_transient_storage_failure_in_a_task_is_retried(pipeline, flaky_proxy, monkeypatch):
    from tasks.runtime import reset_runtime

    uri = pipeline.upload("flaky.pdf", _plan_set(1, seed=70))
    proxy = flaky_proxy(pipeline.s3.endpoint_url, fail_first=2, methods=("PUT",), status=503)
    monkeypatch.setenv("CAD2GLTF_S3_ENDPOINT_URL", proxy.url)
    reset_runtime()
    out, run_id = _run_pdf(uri)
    assert not isinstance(out, BaseException), out
    assert proxy.failed == 2
    runs = asyncio.run(_pdf_task_runs(run_id))
    # the first writes are the extraction's: two transient failures, then success
    assert [t.run_count for t in runs["extract_pdf_pages"]] == [3]
    assert [t.run_count for t in runs["build_pdf_scene"]] == [1]
    assert_valid_glb(pipeline.fetch(out["result_uri"]))


@pytest.mark.parametrize("kind", ["encrypted", "corrupt"])
def test_refused_pdf_fails_at_once_with_its_code(pipeline, kind):
    if kind == "encrypted":
        doc = pymupdf.open()
        doc.new_page().insert_text((72, 72), "secret plan")
        data = doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="o", user_pw="u")
        expected = "VALIDATION_ERROR/ENCRYPTED"
    else:
        data = b"%PDF-1.7\n" + bytes(range(256)) * 64 + b"\n%%EOF\n"
        expected = "PARSING_ERROR/BAD_PDF"
    err, run_id = _run_pdf(pipeline.upload(f"{kind}.pdf", data))
    assert isinstance(err, ConversionError) and err.full_code == expected, err
    runs = asyncio.run(_pdf_task_runs(run_id))
    assert [t.run_count for t in runs["extract_pdf_pages"]] == [1]  # permanent: no retry
    assert runs["build_pdf_scene"] == [] and runs["detect_symbols"] == []
    assert not pipeline.keys("store/results/")


# --------------------------------------------------------------------------- the core


def test_pages_round_trip_exactly(tmp_path):
    """A page read back from its stored form equals the page read from the PDF."""
    from cad2gltf.pdf.document import pdf_document
    from cad2gltf.pdf.intermediate import (
        detections_dumpb,
        detections_loadb,
        page_dumpb,
        page_loadb,
        render_dumpb,
        render_loadb,
    )
    from cad2gltf.pdf.reader import extract_pages
    from cad2gltf.pdf.symbols import PageDetection

    doc = pymupdf.open(stream=_plan_set(1, seed=80), filetype="pdf")
    doc[0].set_rotation(90)  # rectangles come out as quads, texts rotated
    path = tmp_path / "rotated.pdf"
    doc.save(path)
    opts = ConvertOptions(ground_plane=True)
    with pdf_document(path, []) as pdf:
        (page,) = extract_pages(pdf, [0], opts, 100.0, [])
    back = page_loadb(page_dumpb(page))
    assert back.content.paths == page.content.paths
    assert back.content.texts == page.content.texts
    assert back.scale == page.scale and back.scanned == page.scanned
    assert (back.ground == page.ground).all() and back.det_image is None
    assert (render_loadb(render_dumpb(page.det_image)) == page.det_image).all()
    dets = {0: [PageDetection("door", 0.875, (1.5, 2.25, 30.0, 41.125), 100.0)]}
    assert detections_loadb(detections_dumpb(dets)) == dets


def test_prepared_pages_give_the_same_glb_as_reading(tmp_path, monkeypatch):
    """convert_path over pages extracted chunk by chunk (each chunk opening the file on
    its own, pages stored and read back) writes the bytes it writes reading the file."""
    import cad2gltf.pdf.reader as reader
    from cad2gltf.pdf.intermediate import page_dumpb, page_loadb

    monkeypatch.setattr(reader, "CHUNK", 2)
    path = tmp_path / "set.pdf"
    path.write_bytes(_plan_set(5, seed=90))
    opts = ConvertOptions(pages="1-3,5", ground_plane=True)
    direct = convert_path(path, opts)
    chunks = []
    for n in range(2):
        got = reader.extract_chunk(path, opts, n, None)
        assert got.chunks == 2
        stored = [page_dumpb(p) for p in got.pages]
        chunks.append(reader.PreparedChunk(
            got.warnings, lambda stored=stored: (page_loadb(b) for b in stored)))
    prepared = reader.PreparedPages(got.document_warnings, chunks)
    with reader.prepared_pages(prepared):
        staged = convert_path(path, opts)
    assert staged.glb == direct.glb and staged.preview == direct.preview
    assert_valid_glb(staged.glb)
