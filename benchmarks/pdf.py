"""PDF conversion benchmark: seconds, peak memory, and the ratio to PyMuPDF's own reading.

    PYTHONPATH=. python benchmarks/pdf.py [--cases vector10,scan3,pages300] [--repeat 1]

Generates (seeded, cached in benchmarks/data/) with cad2gltf.synth.render:

* ``vector10``: a 10-page A3 set of vector floor plans at 1:100;
* ``scan3``: 3 scanned A3 pages (150 dpi rasters with rotation, blur, noise, JPEG);
* ``pages300``: a 300-page file (the vector set repeated, every tenth page a scan);
* ``detect10`` (only when asked for): the vector set with ``detect_symbols`` on (the
  shipped detector weights, CPU unless CUDA is present).

Each case runs in fresh child processes so that peak RSS is the job's own:

* ``pymupdf``: open the file and call ``get_drawings()``/``get_text("dict")`` on every
  page (for scans: render every page at the default DPI): the floor;
* ``convert``: ``cad2gltf.convert_path`` (validate + read + semantics + GLB + preview),
  default options (150 dpi, no symbol detection).

Times are for the call only (interpreter start and imports excluded); peak RSS is the
child's maximum resident set (imports included; the import baseline is printed too).
Targets (issue 5, 2-core CPU): vector10 <= 15 s; scanned A3 page <= 3 s at the default
DPI; pages300 <= 1.5 GB peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data"
CASES = ("vector10", "scan3", "pages300")
#: case -> (seconds target, per page?, peak RSS MB target)
TARGETS: dict[str, tuple[float | None, bool, float | None]] = {
    "vector10": (15.0, False, None),
    "scan3": (3.0, True, None),
    "pages300": (None, False, 1536.0),
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(mode: str, path: str) -> None:
    import pymupdf

    from cad2gltf import convert_path

    base = _rss_mb()
    t0 = time.perf_counter()
    out: dict[str, object] = {}
    if mode == "pymupdf":
        doc = pymupdf.open(path)
        paths = 0
        for page in doc:
            drawings = page.get_drawings()
            paths += len(drawings)
            page.get_text("dict", flags=pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES)
            if page.get_image_info() and len(drawings) < 50:
                page.get_pixmap(dpi=150, colorspace=pymupdf.csGRAY)
        out["pages"] = doc.page_count
        out["paths"] = paths
        doc.close()
    else:
        from cad2gltf.options import ConvertOptions

        res = convert_path(path, ConvertOptions(detect_symbols=mode == "convert-detect"))
        out["glb_mb"] = len(res.glb) / 1e6
        out["vertices"] = res.report["vertices"]
        out["nodes"] = res.report["nodes_by_category"]
        out["timings"] = res.report["timings"]
        out["pages"] = res.report["stats"].get("pages")
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mb"] = _rss_mb()
    out["import_rss_mb"] = base
    print(json.dumps(out))


def _plans(n: int) -> list:
    from cad2gltf.synth.floorplan import generate_floorplan

    return [generate_floorplan(seed=100 + k, rooms_x=3 + k % 2, rooms_y=2 + (k // 2) % 2,
                               units="mm") for k in range(n)]


def _scans(n: int) -> list:
    from cad2gltf.synth.render import plan_to_raster

    images = []
    for k, plan in enumerate(_plans(n)):
        img, _ = plan_to_raster(plan, scale=100, paper="A3", dpi=150, seed=k,
                                rotation_deg=(-1.5, 0.0, 2.0)[k % 3], noise=8.0, blur=0.6,
                                speckle=0.001, jpeg_quality=75)
        images.append(img)
    return images


def drawing(case: str) -> Path:
    import pymupdf

    from cad2gltf.synth.render import plans_to_pdf, raster_to_pdf

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"pdf_{case}.pdf"
    if path.exists():
        return path
    t0 = time.perf_counter()
    if case == "detect10":
        return drawing("vector10")
    if case == "vector10":
        data = plans_to_pdf(_plans(10), scale=100, paper="A3")
    elif case == "scan3":
        data = raster_to_pdf(_scans(3), dpi=150)
    else:
        vec = pymupdf.open(stream=drawing("vector10").read_bytes(), filetype="pdf")
        scan = pymupdf.open(stream=drawing("scan3").read_bytes(), filetype="pdf")
        out = pymupdf.open()
        for k in range(300):
            if k % 10 == 9:
                out.insert_pdf(scan, from_page=k % 3, to_page=k % 3)
            else:
                out.insert_pdf(vec, from_page=k % 10, to_page=k % 10)
        data = out.tobytes(garbage=1, deflate=True)
        out.close()
        vec.close()
        scan.close()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.rename(path)
    print(f"  generated {path.name}: {path.stat().st_size / 1e6:.1f} MB in "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return path


def run_child(mode: str, path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(path)],
                          capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement (best kept)")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0
    rows = []
    for case in args.cases.split(","):
        path = drawing(case)
        best: dict[str, dict] = {}
        for mode in ("pymupdf", "convert-detect" if case == "detect10" else "convert"):
            for _ in range(args.repeat):
                r = run_child(mode, path)
                if mode not in best or r.get("seconds", 1e9) < best[mode].get("seconds", 1e9):
                    best[mode] = r
        rows.append((case, path, best["pymupdf"], best.get("convert") or best["convert-detect"]))
    print(f"\n{'case':>9} {'pages':>5} {'MB':>6} | {'pymupdf s':>9} {'convert s':>9} "
          f"{'s/page':>6} {'ratio':>6} | {'peak RSS MB':>11} {'(imports)':>9} | "
          f"{'GLB MB':>6} | target")
    print("-" * 112)
    failed = False
    for case, path, pm, cv in rows:
        if "error" in cv or "error" in pm:
            print(f"{case:>9} ERROR: {cv.get('error') or pm.get('error')}")
            failed = True
            continue
        pages = int(pm["pages"])
        ratio = cv["seconds"] / pm["seconds"]
        secs, per_page, rss = TARGETS.get(case, (None, False, None))
        checks = []
        ok = True
        if secs is not None:
            value = cv["seconds"] / pages if per_page else cv["seconds"]
            ok &= value <= secs
            checks.append(f"<= {secs} s" + ("/page" if per_page else ""))
        if rss is not None:
            ok &= cv["peak_rss_mb"] <= rss
            checks.append(f"<= {rss:.0f} MB")
        verdict = (("met" if ok else "MISSED") + f" ({', '.join(checks)})") if checks else ""
        print(f"{case:>9} {pages:>5} {path.stat().st_size / 1e6:>6.1f} | "
              f"{pm['seconds']:>9.2f} {cv['seconds']:>9.2f} {cv['seconds'] / pages:>6.2f} "
              f"{ratio:>6.2f} | {cv['peak_rss_mb']:>11.0f} {cv['import_rss_mb']:>9.0f} | "
              f"{cv['glb_mb']:>6.1f} | {verdict}")
    print("\nconvert stage split (s):")
    for case, _, _, cv in rows:
        if "timings" in cv:
            print(f"{case:>9} " + ", ".join(f"{k} {v:.2f}" for k, v in cv["timings"].items()))
    print("\nnodes by category:")
    for case, _, _, cv in rows:
        if "nodes" in cv:
            print(f"{case:>9} {cv['nodes']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
