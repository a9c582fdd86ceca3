"""``survey-classifier inspect PATH...``: decode alert files and print one JSON line per record.

Accepts files, directories (walked recursively) and tarballs (``.tar``, ``.tar.gz``, ``.tgz``):
ZTF container files, Rubin wire payloads, multi-record container files, our exposure messages.
Prints a summary line last; exits 1 if any record failed to decode, 2 if a path is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["register", "iter_inputs", "describe"]

#: Files in directories/tarballs that are documentation, not messages.
_SKIP_NAMES = ("license", "readme", "notice", "copying")
_SKIP_SUFFIXES = (".md", ".txt", ".rst", ".json", ".avsc", ".py", ".toml", ".yaml", ".yml")
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="decode alert/exposure files and print one JSON line per record")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, directories or tarballs")
    p.add_argument("--schema-registry", default=os.environ.get("SCHEMA_REGISTRY_URL", ""),
                   help="Confluent-compatible schema registry URL for Rubin ids (default: $SCHEMA_REGISTRY_URL, "
                        "else the schemas shipped in lsst-alert-packet)")
    p.add_argument("--max-inflated-bytes", type=int, default=None, help="gzip cutout cap (default: settings default)")
    p.set_defaults(func=_run)


def _is_message_name(name: str) -> bool:
    low = name.rsplit("/", 1)[-1].lower()
    return not low.startswith(".") and not low.startswith(_SKIP_NAMES) and not low.endswith(_SKIP_SUFFIXES)


def _is_tar(path: Path) -> bool:
    return path.name.lower().endswith(_TAR_SUFFIXES)


def iter_inputs(path: Path) -> Iterator[tuple[str, bytes]]:
    """(label, bytes) of every message file under ``path`` (tar members as ``tar:member``)."""
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            if _is_tar(child):
                yield from iter_inputs(child)
            elif _is_message_name(child.name):
                yield str(child), child.read_bytes()
    elif _is_tar(path):
        with tarfile.open(path) as tar:
            for member in sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name):
                if _is_message_name(member.name):
                    handle = tar.extractfile(member)
                    if handle is not None:
                        yield f"{path}:{member.name}", handle.read()
    else:
        yield str(path), path.read_bytes()


def describe(item: Any) -> dict[str, Any]:
    """The JSON-able summary of one decoded Alert or Exposure (the one projection, :mod:`schemas.projection`)."""
    from schemas.projection import describe_item, json_ready  # noqa: PLC0415

    return json_ready(describe_item(item))


def _run(args: argparse.Namespace) -> int:
    from schemas.decode import DecodeError
    from schemas.decode.limits import DecodeSettings
    from stream.schema_registry import resolver_for
    from schemas.decode.message import decode_results

    settings = DecodeSettings() if args.max_inflated_bytes is None else DecodeSettings(max_inflated_bytes=args.max_inflated_bytes)
    resolver = resolver_for(args.schema_registry)
    counts: Counter[str] = Counter()
    files = ok = failed = 0
    out = sys.stdout
    for raw_path in args.paths:
        path = Path(raw_path)
        if not path.exists():
            print(f"survey-classifier inspect: {path}: no such file or directory", file=sys.stderr)
            return 2
        for label, value in iter_inputs(path):
            files += 1
            for index, result in decode_results(value, settings, resolver):
                if isinstance(result, DecodeError):
                    failed += 1
                    counts[result.reason.value] += 1
                    line = {"file": label, "index": index, "error": result.reason.value, "detail": result.detail}
                else:
                    ok += 1
                    line = {"file": label, "index": index, **describe(result)}
                out.write(json.dumps(line) + "\n")
    out.write(json.dumps({"summary": True, "files": files, "decoded": ok, "failed": failed, "reasons": dict(counts)}) + "\n")
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
