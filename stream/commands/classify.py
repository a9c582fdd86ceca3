"""``survey-classifier classify PATH...``: score alert / exposure files offline.

The same decode (:mod:`schemas.decode`) and the same scoring path (:mod:`engines.scoring`:
runners per input kind, preprocessing, engines) as the service, without Kafka or Redis. Prints
one JSON line per alert or exposure: ``source`` (the file) and the fields of the classified
record the service would publish for it (:func:`schemas.classified_record.classification_fields`:
``alert_id`` as a string, ``real_bogus``, ``class_scores``, ``models`` with each model's scores
and provenance, and, where the packet has them, the survey's own scores beside ours: ZTF
``rb`` / ``drb``, Rubin ``reliability``). Undecodable records print a line with ``error``.

``--agreement-report DIR`` also writes the agreement of the real/bogus score with ZTF's ``drb``
(ROC AUC against drb >= 0.5, confusion at 0.5) as JSON / Markdown / PNG: agreement with ZTF's
model, not accuracy. Alerts that served as injection bases of the shipped weights (listed in
the weights' training record) are left out and counted.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engines.scoring import ModelRegistry

from engines.backends import BACKENDS, ENGINE_CACHE_DIR
from schemas.alert import SURVEYS
from stream.errors import UsageError

__all__ = ["register", "classify_paths"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="score alert/exposure files offline (no Kafka, no Redis); one JSON line each")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, directories or tarballs")
    p.add_argument("--backend", default="torch", choices=BACKENDS, help="engine backend (default: torch)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--models", default="", help="comma-separated model names (default: every model for each input kind)")
    p.add_argument("--allow-untrained", action="store_true", help="also run models whose card says trained = false")
    p.add_argument("--cache-dir", default=ENGINE_CACHE_DIR, help=f"ONNX / engine cache for non-torch backends (default {ENGINE_CACHE_DIR})")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--agreement-report", type=Path, default=None, metavar="DIR",
                   help="also write the real/bogus agreement with ZTF drb to DIR")
    p.add_argument("--agreement-model", default="realbogus", help="model compared with drb (default: realbogus)")
    p.add_argument("--run-unvalidated", action="append", default=[], metavar="MODEL:SURVEY",
                   help="also run MODEL on SURVEY, which its card does not name (never checked there); its scores are "
                        "marked validated = false and stay out of real_bogus and class_scores (repeatable)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--max-file-bytes", type=int, default=256 * 1024 * 1024,
                   help="largest input file decoded (default 256 MiB: raw HST frames are tens of MB; the service's "
                        "decode.max_message_bytes applies to Kafka messages)")
    p.set_defaults(func=_run)


def classify_paths(paths: list[Path], registry: ModelRegistry, backend: str, device: str, models: list[str],
                   allow_untrained: bool, cache_dir: str, batch_size: int, decode_settings: Any = None,
                   unvalidated: dict[str, tuple[str, ...]] | None = None):
    """Yield one JSON-able line per decoded item (or decode error), in file order.

    Items are scored by the service's scoring path (:mod:`engines.scoring`); a line holds the
    source file and the classified record's fields (:func:`schemas.classified_record.classification_fields`).
    Models whose card says ``trained = false`` are skipped unless ``allow_untrained``. Each model
    scores only the surveys its card names, plus ``unvalidated[name]`` (marked so in the line).
    """
    from engines.scoring import UnscorableInput, load_kind_runners, score_items
    from schemas.classified_record import classification_fields
    from schemas.decode.errors import DecodeError
    from schemas.projection import json_ready
    from schemas.walk import WalkLimits, walk_decoded

    runners: dict[Any, list[Any]] = {}
    pending: list[tuple[str, Any]] = []

    def flush():
        by_kind: dict[Any, list[int]] = {}
        for index, (_, item) in enumerate(pending):
            by_kind.setdefault(item.kind, []).append(index)
        results: dict[int, list] = {}
        for kind, indices in by_kind.items():
            if kind not in runners:
                runners[kind] = load_kind_runners(registry, kind, backend=backend, device=device, cache_dir=cache_dir,
                                                  models=models, allow_untrained=allow_untrained, skip_untrained=True,
                                                  unvalidated=unvalidated)
            try:
                scored = score_items([pending[i][1] for i in indices], runners[kind])
            except UnscorableInput:  # score each alone: the others are scored, the culprit says why
                for i in indices:
                    try:
                        results[i] = score_items([pending[i][1]], runners[kind])[0]
                    except UnscorableInput as exc:
                        results[i] = exc
                continue
            results.update(zip(indices, scored, strict=True))
        for index, (source, item) in enumerate(pending):
            result = results[index]
            if isinstance(result, UnscorableInput):
                yield {"source": source, "alert_id": str(item.alert_id), "error": "unscorable", "detail": str(result)}
                continue
            try:
                fields = classification_fields(item, result)
            except (ValueError, TypeError, ArithmeticError) as exc:
                yield {"source": source, "alert_id": str(item.alert_id), "error": "unscorable",
                       "detail": f"{type(exc).__name__}: {exc}"}
                continue
            yield {"source": source, **json_ready(fields)}
        pending.clear()

    limits = WalkLimits(max_file_bytes=decode_settings.max_message_bytes) if decode_settings is not None else None
    try:
        for entry, record_index, result in walk_decoded(paths, decode_settings, limits=limits):
            if isinstance(result, DecodeError):
                yield from flush()
                yield {"source": entry.source, "record": record_index, "error": result.reason.value, "detail": result.detail}
                continue
            pending.append((entry.origin, result))
            if len(pending) >= batch_size:
                yield from flush()
        yield from flush()
    finally:
        for loaded in runners.values():
            for runner in loaded:
                runner.close()


def _run(args: argparse.Namespace) -> int:
    import torch

    from engines.contract import EngineError
    from engines.registry import load_registry

    torch.set_num_threads(max(1, args.threads))
    paths = [Path(p) for p in args.paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or directory: {', '.join(missing)}")
    models = [m for m in args.models.split(",") if m]
    unvalidated: dict[str, tuple[str, ...]] = {}
    for pair in args.run_unvalidated:
        model, _, survey = pair.partition(":")
        if not model or survey not in SURVEYS:
            raise UsageError(f"--run-unvalidated takes MODEL:SURVEY with SURVEY one of {', '.join(SURVEYS)}, got {pair!r}")
        unvalidated[model] = unvalidated.get(model, ()) + (survey,)
        print(f"warning: running {model} on {survey}, where it was never checked: its scores are marked validated = false",
              file=sys.stderr)
    from schemas.decode.limits import DecodeSettings

    decode_settings = DecodeSettings(max_message_bytes=args.max_file_bytes)
    try:
        registry = load_registry()
        records = []
        errors = 0
        for record in classify_paths(paths, registry, args.backend, args.device, models, args.allow_untrained,
                                     args.cache_dir, args.batch_size, decode_settings, unvalidated):
            print(json.dumps(record), flush=False)
            errors += "error" in record
            if args.agreement_report is not None:
                records.append(record)
        sys.stdout.flush()
    except EngineError as exc:
        print(f"engine error: {exc}", file=sys.stderr)
        return 3
    if args.agreement_report is not None:
        from engines.training.agreement import agreement_pairs, injection_bases, write_agreement_report

        excluded_keys, overlap_note = injection_bases(registry, args.agreement_model)
        ours, theirs, keys, excluded = agreement_pairs(records, args.agreement_model, exclude_keys=excluded_keys)
        if len(ours) == 0:
            print("agreement report: no alert carries both drb and our score", file=sys.stderr)
            return 1
        provenance: dict[str, Any] = next((m for r in records for m in r.get("models", []) if m["name"] == args.agreement_model), {})
        provenance = {k: v for k, v in provenance.items() if k != "scores"}
        summary = write_agreement_report(args.agreement_report, ours, theirs, args.agreement_model, provenance,
                                         excluded, overlap_note)
        print(json.dumps({"agreement_report": str(args.agreement_report), **{k: summary[k] for k in (
            "alerts", "drb_real", "drb_bogus", "roc_auc_vs_drb", "excluded_as_injection_bases")}}), file=sys.stderr)
    return 1 if errors else 0
