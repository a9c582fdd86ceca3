"""``survey-classifier inspect PATH...``: decode alert files and print one JSON line per record.

Accepts what :mod:`schemas.walk` reads: files, directories (walked recursively), tarballs, ZTF
container files, Rubin wire payloads, multi-record container files (Spark part files, any
codec), our exposure messages and Fink-style Parquet alert dumps. Prints a summary line last;
exits 1 if any record or file was refused, 2 if a path is missing. A file holding no record
(an empty Spark part file) is zero alerts, not an error.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from stream.errors import UsageError

__all__ = ["register", "describe"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="decode alert/exposure files and print one JSON line per record")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, directories, tarballs or Parquet dumps")
    p.add_argument("--schema-registry", default=os.environ.get("SCHEMA_REGISTRY_URL", ""),
                   help="Confluent-compatible schema registry URL for Rubin ids (default: $SCHEMA_REGISTRY_URL, "
                        "else the schemas shipped in lsst-alert-packet)")
    p.add_argument("--max-inflated-bytes", type=int, default=None, help="gzip cutout cap (default: settings default)")
    p.set_defaults(func=_run)


def describe(item: Any) -> dict[str, Any]:
    """The JSON-able summary of one decoded Alert or Exposure (the one projection, :mod:`schemas.projection`)."""
    from schemas.projection import describe_item, json_ready

    return json_ready(describe_item(item))


def _run(args: argparse.Namespace) -> int:
    from schemas.decode import DecodeError
    from schemas.decode.limits import DecodeSettings
    from schemas.walk import walk_decoded
    from stream.schema_registry import resolver_for

    settings = DecodeSettings() if args.max_inflated_bytes is None else DecodeSettings(max_inflated_bytes=args.max_inflated_bytes)
    resolver = resolver_for(args.schema_registry)
    counts: Counter[str] = Counter()
    ok = failed = 0
    sources: set[str] = set()
    out = sys.stdout
    missing = [p for p in args.paths if not os.path.lexists(p)]
    if missing:
        raise UsageError(f"{missing[0]}: no such file or directory")
    for entry, index, result in walk_decoded([Path(p) for p in args.paths], settings, resolver):
        sources.add(entry.source)
        if isinstance(result, DecodeError):
            failed += 1
            counts[result.reason.value] += 1
            line = {"file": entry.source, "index": index, "error": result.reason.value, "detail": result.detail}
        else:
            try:
                line = {"file": entry.source, "index": index, **describe(result)}
                ok += 1
            except (ValueError, TypeError, ArithmeticError) as exc:  # the record's fault: a line, never a traceback
                failed += 1
                counts["unscorable"] += 1
                line = {"file": entry.source, "index": index, "error": "unscorable", "detail": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(line) + "\n")
    out.write(json.dumps({"summary": True, "files": len(sources), "decoded": ok, "failed": failed, "reasons": dict(counts)}) + "\n")
    out.flush()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Run ``inspect`` alone (``python -m stream.commands.inspect PATH...``)."""
    parser = argparse.ArgumentParser(prog="survey-classifier inspect")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["inspect", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
