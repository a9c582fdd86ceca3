"""``survey-classifier demo``: the whole loop on the embedded stack with the bundled real night."""
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
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from stream.demo import run_demo  # noqa: PLC0415

    summary = run_demo(Path(args.out), backend=args.backend, png_count=args.pngs)
    return 0 if summary.records > 0 else 1
