"""``survey-classifier stamps PATH... --out DIR``: real alerts' stamps as a folder-per-class set.

Decodes alert files, directories, tarballs or Parquet dumps (:mod:`schemas.walk`, as ``inspect`` does), labels each alert from
``--labels CSV`` (``alert_id`` or ``objectId`` + ``label`` columns, e.g. a scanning campaign's
verdicts) or from a score the packets carry (``--label-score drb --threshold 0.5``: a model's
output, recorded as such), and writes ``DIR/<label>/*.fits`` cubes (science, template,
difference) plus ``DIR/metadata.csv`` with the object ids, ready for
``survey-classifier train realbogus --data DIR --group-column objectId``.
Undecodable records and unlabelled alerts are counted in the printed summary.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stream.errors import UsageError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stamps", help="write real alerts' stamps as a folder-per-class training set (labels from a CSV or a score)")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="alert files, directories or tarballs")
    p.add_argument("--out", type=Path, required=True, help="output folder (DIR/<label>/*.fits + DIR/metadata.csv)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", type=Path, help="CSV with 'alert_id' or 'objectId' and a label column")
    source.add_argument("--label-score", metavar="NAME", help="label from the survey score NAME the packets carry (e.g. drb)")
    p.add_argument("--label-column", default="label", help="label column of --labels (default: label)")
    p.add_argument("--threshold", type=float, default=0.5, help="--label-score: 'real' at or above this (default 0.5)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from engines.training.stamp_folder import labels_from_csv, score_label, write_stamp_folder
    from engines.training.ztf_files import TrainingDataError
    from schemas.alert import Alert
    from schemas.decode.errors import DecodeError
    from schemas.walk import walk_decoded

    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or directory: {', '.join(missing)}")
    undecodable: list[str] = []
    skipped_kinds = 0

    def alerts():
        nonlocal skipped_kinds
        for entry, index, result in walk_decoded(args.paths):
            if isinstance(result, DecodeError):
                undecodable.append(f"{entry.source}#{index}: {result.reason.value}")
            elif isinstance(result, Alert):
                yield result
            else:
                skipped_kinds += 1

    try:
        labeller = (labels_from_csv(args.labels, args.label_column) if args.labels is not None
                    else score_label(args.label_score, args.threshold))
        summary = dict(write_stamp_folder(alerts(), labeller, args.out))
    except TrainingDataError as exc:
        print(f"stamps failed: {exc}", file=sys.stderr)
        return 1
    summary.update(undecodable=len(undecodable), undecodable_records=undecodable, not_alerts=skipped_kinds)
    print(json.dumps(summary))
    return 0
