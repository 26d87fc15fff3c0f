"""The ``cad2gltf`` command of the pipeline: the core CLI, with conversions run as
Prefect flow runs and the job ledger at hand.

* ``cad2gltf convert INPUT... --out DIR [--json]``: each input becomes a
  ``convert-file`` flow run (Prefect's local API by default, the server named by
  ``PREFECT_API_URL`` when set); the GLB and preview are copied from the result store
  into ``DIR``. JSON lines carry ``job_id`` and ``flow_run_id`` besides the core fields.
  ``--direct`` skips Prefect and runs the pure converter (``python -m cad2gltf``).
* ``cad2gltf jobs [--limit N] [--status S] [--json]``: recent jobs from the ledger.

Exit codes as the core CLI: 0 all converted, 1 a classified failure, 2 usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cad2gltf import cli as core_cli
from cad2gltf.errors import ConversionError, InvalidInputError, classify
from cad2gltf.validate import validate_filename

__all__ = ["main"]


def _prepare_prefect(verbose: bool) -> None:
    """Settings before Prefect is imported, then one set of client TLS contexts for the
    whole command (it creates clients per file or per message)."""
    # no internet here or on kiosks' build hosts: the local API must not phone home
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_EXTRA_LEVEL", "WARNING")
    from tasks.runtime import share_client_tls_contexts

    share_client_tls_contexts()


async def _convert_all(args: argparse.Namespace, options: dict[str, Any]) -> int:
    from flows.convert import convert_file
    from tasks.runtime import get_store

    out_dir = Path(args.out)
    failed = 0
    taken: set[str] = set()
    for src in args.inputs:
        started = time.perf_counter()
        rec: dict[str, Any] = {"input": src, "status": "error", "output": None, "preview": None,
                               "error_code": None, "message": None, "seconds": 0.0,
                               "warnings": [], "job_id": None, "flow_run_id": None}
        try:
            path = Path(src)
            validate_filename(path.name)
            stem = path.stem
            if stem in taken:
                raise InvalidInputError(f"another input already writes {stem}.glb in this run",
                                        subcode="DUPLICATE_OUTPUT")
            uri = path.resolve().as_uri()
            result = await convert_file(uri, options=options or None)
            rec.update(job_id=result["job_id"], flow_run_id=result["flow_run_id"])
            if result["status"] != "SUCCESS":
                raise InvalidInputError(f"job {result['job_id']} is already being converted "
                                        f"by another run", subcode="DUPLICATE_REQUEST")
            store = get_store()
            glb_path = store.download(result["result_uri"], out_dir / f"{stem}.glb")
            rec.update(status="success", output=str(glb_path))
            if result.get("preview_uri"):
                rec["preview"] = str(store.download(result["preview_uri"],
                                                    out_dir / f"{stem}.png"))
            summary = result.get("summary") or {}
            rec.update(warnings=summary.get("warnings", []), units=summary.get("units"),
                       nodes_by_category=summary.get("nodes_by_category"),
                       reused=result.get("reused", False))
            taken.add(stem)
        except ConversionError as exc:
            rec.update(error_code=exc.code, error_subcode=exc.subcode, message=exc.message,
                       job_id=rec["job_id"] or exc.details.get("job_id"),
                       flow_run_id=rec["flow_run_id"] or exc.details.get("flow_run_id"))
        except Exception as exc:  # noqa: BLE001 - classified, never a traceback
            if os.environ.get("CAD2GLTF_DEBUG"):
                traceback.print_exc()
            err = classify(exc)
            rec.update(error_code=err.code, error_subcode=err.subcode, message=err.message)
        rec["seconds"] = round(time.perf_counter() - started, 4)
        if rec["status"] != "success":
            failed += 1
        _print_record(rec, args.json)
    if not args.json:
        total = len(args.inputs)
        print(f"{total - failed} of {total} converted", file=sys.stderr if failed else sys.stdout)
    return core_cli.EXIT_FAILED if failed else core_cli.EXIT_OK


def _print_record(rec: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rec, ensure_ascii=False), flush=True)
    elif rec["status"] == "success":
        warn = f", {len(rec['warnings'])} warning(s)" if rec["warnings"] else ""
        print(f"ok    {rec['input']} -> {rec['output']} ({rec['seconds']:.2f} s{warn}, "
              f"job {rec['job_id']})", flush=True)
    else:
        code = rec["error_code"] + (f"/{rec['error_subcode']}" if rec.get("error_subcode")
                                    else "")
        print(f"FAIL  {rec['input']}: [{code}] {rec['message']}", file=sys.stderr, flush=True)


def _cmd_convert(args: argparse.Namespace) -> int:
    if args.direct:
        return core_cli._cmd_convert(args)
    from cad2gltf.options import ConvertOptions

    try:
        raw = core_cli._load_options(args.options)
        if args.units:
            raw["units"] = args.units
        if args.no_semantics:
            raw["semantics"] = False
        ConvertOptions.from_dict(raw)
    except (ValueError, OSError, InvalidInputError) as exc:
        print(f"cad2gltf: error: bad --options: {exc}", file=sys.stderr)
        return core_cli.EXIT_USAGE
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"cad2gltf: error: cannot create {args.out}: {exc.strerror}", file=sys.stderr)
        return core_cli.EXIT_USAGE
    _prepare_prefect(args.verbose)
    return asyncio.run(_convert_all(args, raw))


def _cmd_jobs(args: argparse.Namespace) -> int:
    _prepare_prefect(False)
    from tasks.ledger import JobStatus
    from tasks.runtime import get_ledger

    status = JobStatus(args.status.upper()) if args.status else None
    jobs = get_ledger().list_recent(limit=args.limit, status=status)
    if args.json:
        for job in jobs:
            print(json.dumps(_job_dict(job), default=str))
        return 0
    if not jobs:
        print("no jobs yet")
        return 0
    print(f"{'job':36}  {'status':12} {'type':4} {'seconds':>8}  {'error':28} source")
    for job in jobs:
        d = _job_dict(job)
        secs = f"{d['seconds']:.2f}" if d["seconds"] is not None else "-"
        print(f"{job.job_id:36}  {job.status.value:12} {job.file_type or '-':4} {secs:>8}  "
              f"{(job.error_code or '-')[:28]:28} {job.source_uri}")
    return 0


def _job_dict(job: Any) -> dict[str, Any]:
    seconds = None
    if job.started_at and job.finished_at:
        seconds = (job.finished_at - job.started_at).total_seconds()
    return {"job_id": job.job_id, "status": job.status.value, "file_type": job.file_type,
            "seconds": seconds, "attempts": job.attempts, "error_code": job.error_code,
            "error_message": job.error_message, "source_uri": job.source_uri,
            "result_uri": job.result_uri, "flow_run_id": job.flow_run_id,
            "updated_at": job.updated_at}


def _cmd_listen(args: argparse.Namespace) -> int:
    import logging

    from flows.listener import Listener

    _prepare_prefect(False)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    listener = Listener()
    listener.install_signal_handlers()
    handled = listener.run(max_messages=args.max_messages, idle_exit=args.idle_exit)
    print(f"handled {handled} message(s): {listener.started_runs} run(s) started, "
          f"{listener.dead_lettered} dead-lettered", file=sys.stderr)
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
    import hashlib
    import uuid

    from blocks.settings import get_settings
    from tasks.amqp import amqp_url, connect, declare_topology, publish
    from tasks.messages import ConversionRequest
    from tasks.runtime import get_store

    _prepare_prefect(False)
    settings = get_settings()
    try:
        options = core_cli._load_options(args.options)
    except (ValueError, OSError) as exc:
        print(f"cad2gltf: error: bad --options: {exc}", file=sys.stderr)
        return core_cli.EXIT_USAGE
    conn = connect(amqp_url(settings))
    failed = 0
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        declare_topology(channel, settings)
        for item in args.inputs:
            rec: dict[str, Any] = {"input": item}
            try:
                if "://" in item:
                    uri = item
                else:  # a local file: put it where workers can read it
                    path = Path(item)
                    validate_filename(path.name)
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                    uri = get_store().put_file(f"incoming/{digest[:16]}/{path.name}", path)
                request = ConversionRequest(job_id=str(uuid.uuid4()), source_uri=uri,
                                            options=options, callback_url=args.callback,
                                            priority=args.priority)
                publish(channel, settings.amqp_exchange, settings.amqp_routing_key,
                        request.to_body(), headers={"x-request-id": request.job_id},
                        priority=request.priority, message_id=request.job_id)
                rec.update(status="published", job_id=request.job_id, source_uri=uri)
            except Exception as exc:  # noqa: BLE001 - classified per input
                err = classify(exc)
                rec.update(status="error", error_code=err.full_code, message=err.message)
                failed += 1
            print(json.dumps(rec), flush=True)
    finally:
        conn.close()
    return core_cli.EXIT_FAILED if failed else core_cli.EXIT_OK


def _cmd_dlq(args: argparse.Namespace) -> int:
    """List, requeue or drop dead letters; untouched letters go back to the queue."""
    from blocks.settings import get_settings
    from tasks.amqp import connect, declare_topology
    from tasks.deadletters import requeue_letter, take_letters
    from tasks.runtime import get_ledger

    _prepare_prefect(False)
    settings = get_settings()
    conn = connect()
    found = False
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        declare_topology(channel, settings)
        for letter in take_letters(channel, settings):
            if args.action == "list":
                print(json.dumps(letter.summary()))
                channel.basic_nack(letter.delivery_tag, requeue=True)
            elif letter.job_id == args.job_id and not found:
                found = True
                if args.action == "requeue":
                    requeue_letter(channel, letter, settings, get_ledger(settings))
                channel.basic_ack(letter.delivery_tag)
                print(json.dumps({**letter.summary(), "action": args.action}))
            else:
                channel.basic_nack(letter.delivery_tag, requeue=True)
    finally:
        conn.close()
    if args.action != "list" and not found:
        print(f"cad2gltf: no dead letter for job {args.job_id}", file=sys.stderr)
        return core_cli.EXIT_FAILED
    return core_cli.EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = core_cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    conv = sub.choices["convert"]
    conv.add_argument("--direct", action="store_true",
                      help="run the converter in this process, without Prefect")
    conv.add_argument("--verbose", "-v", action="store_true", help="show Prefect's logs")
    conv.set_defaults(func=_cmd_convert)
    jobs = sub.add_parser("jobs", help="list recent jobs from the ledger")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.add_argument("--status", choices=["pending", "running", "success", "retry",
                                           "failure", "dlq", "reprocessing"])
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(func=_cmd_jobs)
    listen = sub.add_parser("listen", help="consume RabbitMQ requests, one flow run each")
    listen.add_argument("--max-messages", type=int, default=None, help=argparse.SUPPRESS)
    listen.add_argument("--idle-exit", type=float, default=None,
                        help="exit after this many idle seconds (default: never)")
    listen.set_defaults(func=_cmd_listen)
    submit = sub.add_parser("submit", help="publish conversion requests to RabbitMQ")
    submit.add_argument("inputs", nargs="+", metavar="FILE_OR_URI")
    submit.add_argument("--options", metavar="JSON|@FILE")
    submit.add_argument("--callback", metavar="URL")
    submit.add_argument("--priority", type=int, default=5, choices=range(10))
    submit.set_defaults(func=_cmd_submit)
    dlq = sub.add_parser("dlq", help="inspect the dead-letter queue")
    dlq_sub = dlq.add_subparsers(dest="action", required=True)
    dlq_sub.add_parser("list", help="print every dead letter (they stay queued)")
    for action in ("requeue", "drop"):
        p = dlq_sub.add_parser(action, help=f"{action} the dead letter of a job")
        p.add_argument("job_id")
    dlq.set_defaults(func=_cmd_dlq)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return core_cli.main(argv, parser_factory=build_parser)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
