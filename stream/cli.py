"""The ``survey-classifier`` command: one subcommand per module in :mod:`stream.commands`.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int`` as the handler. Heavy imports (torch, engines) happen inside handlers,
so ``--help`` stays fast.

A person's mistake (:class:`stream.errors.UsageError`, which includes configuration errors) is
printed as one line on stderr with exit status 2; its traceback only with ``--log-level debug``.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from stream import __version__
from stream.commands.help import polish
from stream.errors import USAGE_EXIT_STATUS, UsageError
from stream.logs import configure_logging

__all__ = ["main", "build_parser", "COMMANDS"]

#: The explicit registry of subcommands (module names under stream.commands), in help order.
COMMANDS: tuple[str, ...] = (
    "run",
    "demo",
    "stack",
    "inspect",
    "replay",
    "subscribe",
    "status",
    "engines",
    "train",
    "evaluate",
    "classify",
    "stamps",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="survey-classifier",
        description="Classify astronomical alert streams (ZTF, Rubin) and raw exposures from Kafka.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-format", choices=("auto", "json", "console"), default=None, help="log renderer (default: settings, auto)")
    parser.add_argument("--log-level", default=None, type=str.lower, choices=("debug", "info", "warning", "error"),
                        help="log level (default: settings, info); debug also prints tracebacks of user errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"stream.commands.{name}").register(sub)
    polish(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_format or "auto", args.log_level or "info")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except UsageError as exc:
        if args.log_level == "debug":
            traceback.print_exc(file=sys.stderr)
        message = " ".join(str(exc).split())  # one line, whatever the message held
        print(f"{parser.prog} {args.command}: error: {message}", file=sys.stderr, flush=True)
        return USAGE_EXIT_STATUS


if __name__ == "__main__":
    sys.exit(main())
