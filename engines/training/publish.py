"""Ship a training run: weights and training record into engines/weights/, reports into
engines/reports/<model>/, and the model card's values (trained, version, weights sha256,
training data, evaluation figures) rewritten through :func:`engines.cards.write_card`.

Only card *values* change; the card format and the registry are the engines package's.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from engines.cards import load_card, write_card
from engines.export import file_sha256

__all__ = ["publish_run"]

log = structlog.get_logger(__name__)

ENGINES_DIR = Path(__file__).resolve().parents[1]


def publish_run(
    card_name: str,
    run_dir: Path,
    version: str,
    training: dict[str, Any],
    evaluation: dict[str, Any],
    description: str | None = None,
    engines_dir: Path = ENGINES_DIR,
    **card_changes: Any,
) -> Path:
    """Copy ``run_dir``'s weights + record + test report into the engines tree and update the card.

    A head run (:mod:`engines.training.head`) ships a delta file: the card keeps its seed and the
    hash of the seeded base, which the registry checks. ``card_changes`` replace other card
    fields (e.g. ``preprocessing``, ``contract``, ``network_args`` of a reduced network)."""
    card_path = engines_dir / "cards" / f"{card_name}.toml"
    card = load_card(card_path)
    record_path = run_dir / f"{card.network}.train.json"
    record = json.loads(record_path.read_text())
    weights_src = run_dir / record["weights_file"]
    weights_dst = engines_dir / "weights" / f"{card_name}.pt"
    if weights_dst.exists() and weights_dst.name != card.weights_file:   # another version's file: keep it
        weights_dst = engines_dir / "weights" / f"{card_name}-{version}.pt"
    shutil.copyfile(weights_src, weights_dst)
    sha = file_sha256(weights_dst)
    if sha != record["weights_sha256"]:
        raise RuntimeError(f"copied weights hash {sha} != training record {record['weights_sha256']}")
    shutil.copyfile(record_path, engines_dir / "weights" / f"{card_name}.train.json")
    reports = engines_dir / "reports" / card_name
    reports.mkdir(parents=True, exist_ok=True)
    for item in (run_dir / "report").iterdir():
        shutil.copyfile(item, reports / item.name)
    head = record.get("head")
    new = replace(card, version=version, trained=True, weights_file=weights_dst.name, weights_sha256=sha,
                  init_seed=int(head["init_seed"]) if head else None, base_sha256=str(head["base_sha256"]) if head else "",
                  training=training, evaluation=evaluation,
                  description=description if description is not None else card.description, **card_changes)
    write_card(new, card_path)
    load_card(card_path)  # round-trip check
    log.info("weights_published", model=card_name, version=version, sha256=sha)
    return card_path
