"""``cad2gltf`` command line.

``cad2gltf convert INPUT... --out DIR [--json]`` converts each input to ``DIR/<stem>.glb``
and ``DIR/<stem>.png``. Exit codes: 0 all succeeded, 1 any failed with a classified
error, 2 usage errors. A failing file never stops the others, and no Python traceback
reaches the user (set ``CAD2GLTF_DEBUG=1`` to see one on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterator, Sequence

from cad2gltf.errors import ConversionError, InvalidInputError, TimeoutError_, classify

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise TIMEOUT_ERROR in the main thread after ``seconds`` (0 = no limit)."""
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise TimeoutError_(f"conversion took longer than {seconds:g} s", subcode="TIME_LIMIT")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _load_options(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("options must be a JSON object")
    return data


def _convert_one(src: str, out_dir: Path, options: Any, args: argparse.Namespace,
                 taken: set[str]) -> dict[str, Any]:
    from cad2gltf.convert import convert_path
    from cad2gltf.validate import validate_filename

    started = time.perf_counter()
    record: dict[str, Any] = {"input": src, "status": "error", "output": None, "preview": None,
                              "error_code": None, "message": None, "seconds": 0.0,
                              "warnings": []}
    try:
        name = Path(src).name
        validate_filename(name)
        stem = Path(name).stem
        if stem in taken:
            raise InvalidInputError(f"another input already writes {stem}.glb in this run",
                                    subcode="DUPLICATE_OUTPUT")
        with _time_limit(args.timeout):
            result = convert_path(src, options, preview=not args.no_preview)
        glb_path = out_dir / f"{stem}.glb"
        png_path = out_dir / f"{stem}.png"
        try:
            if result.preview is not None:
                _atomic_write(png_path, result.preview)
            _atomic_write(glb_path, result.glb)
        except OSError as exc:
            raise classify(exc) from exc
        taken.add(stem)
        record.update(status="success", output=str(glb_path),
                      preview=str(png_path) if result.preview is not None else None,
                      warnings=result.warnings, units=result.report.get("units"),
                      nodes_by_category=result.report.get("nodes_by_category"),
                      sha256=result.report.get("source_sha256"))
    except ConversionError as exc:
        record.update(error_code=exc.code, error_subcode=exc.subcode, message=exc.message)
    except Exception as exc:  # noqa: BLE001 - classified below, never a traceback
        err = classify(exc)
        if os.environ.get("CAD2GLTF_DEBUG"):
            traceback.print_exc()
        record.update(error_code=err.code, error_subcode=err.subcode, message=err.message)
    record["seconds"] = round(time.perf_counter() - started, 4)
    return record


def _cmd_convert(args: argparse.Namespace) -> int:
    from cad2gltf.options import ConvertOptions

    try:
        raw = _load_options(args.options)
        if args.units:
            raw["units"] = args.units
        if args.no_semantics:
            raw["semantics"] = False
        options = ConvertOptions.from_dict(raw)
    except (ValueError, OSError, InvalidInputError) as exc:
        print(f"cad2gltf: error: bad --options: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"cad2gltf: error: cannot create {out_dir}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    failed = 0
    taken: set[str] = set()
    for src in args.inputs:
        rec = _convert_one(src, out_dir, options, args, taken)
        if rec["status"] != "success":
            failed += 1
        if args.json:
            print(json.dumps(rec, ensure_ascii=False), flush=True)
        elif rec["status"] == "success":
            warn = f", {len(rec['warnings'])} warning(s)" if rec["warnings"] else ""
            print(f"ok    {src} -> {rec['output']} ({rec['seconds']:.2f} s{warn})", flush=True)
        else:
            code = rec["error_code"] + (f"/{rec['error_subcode']}" if rec.get("error_subcode")
                                        else "")
            print(f"FAIL  {src}: [{code}] {rec['message']}", file=sys.stderr, flush=True)
    if not args.json:
        total = len(args.inputs)
        print(f"{total - failed} of {total} converted", file=sys.stderr if failed else sys.stdout)
    return EXIT_FAILED if failed else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from cad2gltf import __version__

    parser = argparse.ArgumentParser(prog="cad2gltf",
                                     description="Convert 2D CAD drawings to 3D glTF.")
    parser.add_argument("--version", action="version", version=f"cad2gltf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="convert DXF/PDF files to GLB + PNG preview")
    conv.add_argument("inputs", nargs="+", metavar="INPUT")
    conv.add_argument("--out", "-o", required=True, metavar="DIR")
    conv.add_argument("--json", action="store_true", help="one JSON object per input")
    conv.add_argument("--options", metavar="JSON|@FILE", help="conversion options as JSON")
    conv.add_argument("--units", choices=["mm", "cm", "m", "km", "in", "ft", "yd", "mi", "um"],
                      help="force the drawing units (overrides $INSUNITS)")
    conv.add_argument("--no-semantics", action="store_true",
                      help="do not recognise walls/doors/windows; linework only")
    conv.add_argument("--no-preview", action="store_true", help="skip the PNG preview")
    conv.add_argument("--timeout", type=float, default=600.0,
                      help="per-file time limit in seconds (0: none; default 600)")
    conv.set_defaults(func=_cmd_convert)
    return parser


def main(argv: Sequence[str] | None = None, *,
         parser_factory: Any = None) -> int:
    """Run the command line; ``parser_factory`` lets the pipeline CLI add its commands."""
    parser = (parser_factory or build_parser)()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return int(exc.code or 0)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("cad2gltf: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: no tracebacks
        if os.environ.get("CAD2GLTF_DEBUG"):
            traceback.print_exc()
        err = classify(exc)
        print(f"cad2gltf: error: [{err.full_code}] {err.message}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
