"""``survey-classifier classify PATH...``: score alert / exposure files offline.

The same decode (:mod:`schemas.decode`), preprocessing and engines (:mod:`engines.registry`) as
the service, without Kafka or Redis. Prints one JSON line per alert or exposure: every model's
scores for its kind, each model's provenance (name, version, weights sha256, trained, backend)
and, where the packet has them, the survey's own scores (ZTF ``rb`` / ``drb``, Rubin
``reliability``) beside ours. Undecodable records print a line with ``error``.

``--agreement-report DIR`` also writes the agreement of the real/bogus score with ZTF's ``drb``
(ROC AUC against drb >= 0.5, confusion at 0.5) as JSON / Markdown / PNG: agreement with ZTF's
model, not accuracy. Alerts that served as injection bases of the shipped weights (listed in
the weights' training record) are left out and counted.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["register", "classify_paths"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="score alert/exposure files offline (no Kafka, no Redis); one JSON line each")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, directories or tarballs")
    p.add_argument("--backend", default="torch", help="torch, onnxruntime, openvino, tensorrt (default: torch)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--models", default="", help="comma-separated model names (default: every model for each input kind)")
    p.add_argument("--allow-untrained", action="store_true", help="also run models whose card says trained = false")
    p.add_argument("--cache-dir", default="var/engines", help="ONNX / engine cache for non-torch backends")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--agreement-report", type=Path, default=None, metavar="DIR",
                   help="also write the real/bogus agreement with ZTF drb to DIR")
    p.add_argument("--agreement-model", default="realbogus", help="model compared with drb (default: realbogus)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--max-file-bytes", type=int, default=256 * 1024 * 1024,
                   help="largest input file decoded (default 256 MiB: raw HST frames are tens of MB; the service's "
                        "decode.max_message_bytes applies to Kafka messages)")
    p.set_defaults(func=_run)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _identity(item: Any) -> dict[str, Any]:
    from schemas.alert import Alert  # noqa: PLC0415

    if isinstance(item, Alert):
        return {"survey": item.survey, "alert_id": item.alert_id, "object_id": item.object_id, "kind": item.kind.value,
                "schema_version": item.schema_version, "mjd": _finite(item.mjd), "band": item.band,
                "survey_scores": {k: _finite(float(v)) for k, v in item.survey_scores.items()},
                "survey_score_versions": dict(item.survey_score_versions)}
    return {"survey": item.survey, "alert_id": item.exposure_id, "object_id": item.object_id, "kind": item.kind.value,
            "schema_version": item.schema_version, "instrument": item.instrument, "filter": item.filter,
            "mjd": _finite(item.mjd), "survey_scores": {}, "survey_score_versions": {}}


def classify_paths(paths: list[Path], registry: Any, backend: str, device: str, models: list[str],
                   allow_untrained: bool, cache_dir: str, batch_size: int, decode_settings: Any = None):
    """Yield one JSON-able record per decoded item (or decode error), in file order."""
    from stream.commands.inspect import iter_inputs  # noqa: PLC0415
    from schemas.decode.message import decode_results  # noqa: PLC0415
    from schemas.decode.errors import DecodeError  # noqa: PLC0415

    runners: dict[str, Any] = {}

    def runner(name: str):
        if name not in runners:
            runners[name] = registry.load_runner(name, backend, device=device, cache_dir=cache_dir,
                                                 allow_untrained=allow_untrained)
        return runners[name]

    pending: list[tuple[str, Any]] = []

    def flush():
        by_kind: dict[Any, list[int]] = {}
        for index, (_, item) in enumerate(pending):
            by_kind.setdefault(item.kind, []).append(index)
        scores: dict[int, dict[str, dict[str, float]]] = {i: {} for i in range(len(pending))}
        provenance: dict[int, dict[str, Any]] = {i: {} for i in range(len(pending))}
        for kind, indices in by_kind.items():
            cards = [c for c in registry.cards_for(kind) if (not models or c.name in models)
                     and (c.trained or allow_untrained)]
            for card in cards:
                run = runner(card.name)
                # only the items the model applies to (survey, required features): no made-up scores
                chosen = [indices[j] for j in run.select([pending[i][1] for i in indices])]
                probabilities = run.score([pending[i][1] for i in chosen])
                for row, index in zip(probabilities, chosen, strict=True):
                    scores[index][card.name] = {label: float(p) for label, p in zip(run.labels, row, strict=True)}
                    prov = run.provenance
                    provenance[index][card.name] = {"name": prov.name, "version": prov.version,
                                                    "weights_sha256": prov.weights_sha256, "trained": prov.trained,
                                                    "backend": prov.backend, **prov.extra}
        for index, (source, item) in enumerate(pending):
            yield {"source": source, **_identity(item), "scores": scores[index], "models": provenance[index]}
        pending.clear()

    for path in paths:
        for label, value in iter_inputs(path):
            for record_index, result in decode_results(value, decode_settings):
                if isinstance(result, DecodeError):
                    yield from flush()
                    yield {"source": label, "record": record_index, "error": result.reason.value, "detail": result.detail}
                    continue
                pending.append((label, result))
                if len(pending) >= batch_size:
                    yield from flush()
    yield from flush()


def _injection_bases(registry: Any, model: str) -> tuple[set[str], str]:
    """Keys of the alerts the shipped weights used as injection bases, from their training record."""
    from engines.registry import WEIGHTS_DIR  # noqa: PLC0415

    card = registry.card(model)
    record_path = Path(registry.weights_dir if hasattr(registry, "weights_dir") else WEIGHTS_DIR) / (
        Path(card.weights_file).stem + ".train.json")
    if not card.weights_file or not record_path.is_file():
        return set(), f"no training record beside the weights ({record_path.name}); overlap unknown"
    record = json.loads(record_path.read_text())
    keys = set(record.get("data", {}).get("base_source_ids", []))
    return keys, f"{len(keys)} injection-base alerts listed in {record_path.name}; any of them in the input is left out"


def _run(args: argparse.Namespace) -> int:
    import torch  # noqa: PLC0415

    from engines.contract import EngineError  # noqa: PLC0415
    from engines.registry import load_registry  # noqa: PLC0415

    torch.set_num_threads(max(1, args.threads))
    paths = [Path(p) for p in args.paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    models = [m for m in args.models.split(",") if m]
    from stream.config import DecodeSettings  # noqa: PLC0415

    decode_settings = DecodeSettings(max_message_bytes=args.max_file_bytes)
    try:
        registry = load_registry()
        records = []
        errors = 0
        for record in classify_paths(paths, registry, args.backend, args.device, models, args.allow_untrained,
                                     args.cache_dir, args.batch_size, decode_settings):
            print(json.dumps(record), flush=False)
            errors += "error" in record
            if args.agreement_report is not None:
                records.append(record)
        sys.stdout.flush()
    except EngineError as exc:
        print(f"engine error: {exc}", file=sys.stderr)
        return 3
    if args.agreement_report is not None:
        from engines.training.agreement import agreement_pairs, write_agreement_report  # noqa: PLC0415

        excluded_keys, overlap_note = _injection_bases(registry, args.agreement_model)
        ours, theirs, keys, excluded = agreement_pairs(records, args.agreement_model, exclude_keys=excluded_keys)
        if len(ours) == 0:
            print("agreement report: no alert carries both drb and our score", file=sys.stderr)
            return 1
        provenance = next((r["models"][args.agreement_model] for r in records
                           if args.agreement_model in r.get("models", {})), {})
        summary = write_agreement_report(args.agreement_report, ours, theirs, args.agreement_model, provenance,
                                         excluded, overlap_note)
        print(json.dumps({"agreement_report": str(args.agreement_report), **{k: summary[k] for k in (
            "alerts", "drb_real", "drb_bogus", "roc_auc_vs_drb", "excluded_as_injection_bases")}}), file=sys.stderr)
    return 1 if errors else 0
