"""``survey-classifier demo``: the whole loop on the embedded stack with the bundled real night.

The terminal gets the human summary only: every log line (the service's, librdkafka's) goes to
``<out>/demo.log`` as JSON, and the demo names that file at the start and the end.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from engines.backends import BACKENDS

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="replay the bundled real alerts through the service on the embedded stack and summarise",
                       description="Starts the embedded broker + Redis, replays the bundled real ZTF and Rubin packets "
                                   "(and one truncated on purpose), runs the service until the topic is drained, "
                                   "subscribes to the classified topic, prints a summary and writes PNG triplets.")
    p.add_argument("--out", default="var/demo", help="where summary.json, PNGs and built engines go (default var/demo)")
    p.add_argument("--backend", default="onnxruntime", choices=BACKENDS)
    p.add_argument("--pngs", type=int, default=3, help="how many cutout triplets to draw")
    p.add_argument("--log-file", default=None, metavar="FILE", help="where the log lines go (default: OUT/demo.log)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from stream.demo import run_demo
    from stream.logs import configure_logging

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = Path(args.log_file) if args.log_file else out / "demo.log"
    with log_path.open("a", encoding="utf-8") as log_file:
        configure_logging("json", args.log_level or "info", file=log_file)
        print(f"logs: {log_path} (JSON lines; this terminal shows the summary)", flush=True)
        try:
            summary = run_demo(out, backend=args.backend, png_count=args.pngs)
        finally:
            configure_logging(args.log_format or "auto", args.log_level or "info")
        print(f"logs: {log_path}", flush=True)
    return 0 if summary.records > 0 else 1
