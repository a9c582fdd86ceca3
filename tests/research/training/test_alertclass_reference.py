"""The alert-class 3.x route on the real-alert pool: the pool's reference-source fields are what the
service reads from the same packets, the head learns them, and the whole fit (seconds) gives
back the shipped card's choice of w and, within a few alerts, its held-out figures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.research.training.pool_path import POOL

pytestmark = pytest.mark.skipif(not (POOL / "alerts.parquet").is_file(), reason=f"the real-alert pool is absent ({POOL})")


@pytest.fixture(scope="module")
def targets(pool):
    from research.training.alertclass_targets import load_targets

    return load_targets(POOL, pool.candid, acai_from="csv")


def test_pool_fields_are_what_the_service_reads_from_the_same_packets(pool) -> None:
    from engines.preprocess import reference_source_features
    from research.training.pool_alertclass import reference_fields
    from schemas.alert import Alert
    from schemas.decode.parquet import iter_parquet

    alerts = [item for _, item in iter_parquet(POOL / "alerts.parquet", limit=40) if isinstance(item, Alert)]
    served = np.stack([reference_source_features(a) for a in alerts])
    rows = [int(np.flatnonzero(pool.candid == int(a.alert_id))[0]) for a in alerts]
    fields = reference_fields(pool)
    assert np.isfinite(fields).all() and (fields[:, :4] > 0).all()    # every pool alert gives a usable reference source
    assert np.allclose(fields[rows], served[:, 1:], rtol=1e-6)


def test_the_head_alone_learns_star_from_galaxy_host_on_training_alerts(pool) -> None:
    from research.training.alertclass_reference import ReferenceConfig, fit_head
    from research.training.heldout import fast_auc
    from research.training.pool_alertclass import alert_classes, reference_fields
    from research.training.pool_realbogus import HELDOUT_SOURCES, split_by_source

    split = split_by_source(pool, HELDOUT_SOURCES, seed=0)
    labels = alert_classes(pool)
    train = split.train[labels[split.train] >= 1]
    fields = reference_fields(pool)
    head = fit_head(fields[train], np.zeros((len(train), 3), np.float32), labels[train] - 1, 0.0,
                    ReferenceConfig(steps=150))
    import torch

    with torch.no_grad():
        logits = head(torch.from_numpy(fields[train])).numpy()
    pair = np.isin(labels[train], [1, 3])         # galaxy_host, star
    assert fast_auc(logits[pair, 2] - logits[pair, 0], labels[train][pair] == 3) > 0.9
    with pytest.raises(ValueError, match="every stamp class"):
        fit_head(fields[train][:5], np.zeros((5, 3), np.float32), np.zeros(5, np.int64), 0.0, ReferenceConfig(steps=1))


def test_the_fit_gives_back_the_shipped_cards_choice_and_figures(pool, targets, tmp_path: Path) -> None:
    from engines.registry import load_registry
    from research.training.alertclass_reference import ReferenceConfig, fit_reference_model
    from research.training.alertclass_study import REPO, _load, evaluate
    from research.training.pool_realbogus import HELDOUT_SOURCES, split_by_source

    card = load_registry().card("alertclass")
    split = split_by_source(pool, HELDOUT_SOURCES, seed=0)
    record = fit_reference_model(pool, targets, split, ReferenceConfig(), tmp_path, REPO)
    assert record["family"] == "reference" and record["stamp_weight"] == card.network_args["stamp_weight"]
    assert record["body_sha256"] in card.training["body"] and record["train_alerts"] == card.training["train_alerts"]
    assert not set(record["train_sources"]) & set(HELDOUT_SOURCES)
    results = evaluate(_load(tmp_path), pool, targets, split, draws=0)
    ours = results["test"]["vs_weak_labels"]
    assert ours["macro_recall"] == pytest.approx(card.evaluation["heldout_macro_recall_asteroid_galaxy_host_star"], abs=0.02)
    head_only = results["test"]["reference_only_vs_weak_labels"]
    stamps_only = results["test"]["stamp_only_vs_weak_labels"]
    assert head_only["macro_recall"] > stamps_only["macro_recall"]    # the report's point: the catalogue carries it


def test_weak_label_is_the_pools_rule_on_every_pool_alert(pool) -> None:
    from research.training.alertclass_targets import weak_label

    def candidate(i: int) -> dict:
        return {k: (None if np.isnan(pool.fields[k][i]) else float(pool.fields[k][i])) for k in ("ssdistnr", "distpsnr1", "sgscore1")}

    assert [weak_label(candidate(i)) for i in range(len(pool))] == pool.weak_label.tolist()
    assert weak_label({"distpsnr1": -999.0, "sgscore1": -999.0}) == "ambiguous" and weak_label({}) == "ambiguous"


def test_the_second_held_out_set_gives_the_cards_figures(pool) -> None:
    import torch

    from engines.networks import build_network
    from engines.registry import WEIGHTS_DIR, load_registry
    from research.training.alertclass_study import extra_set

    data = POOL.parent / "data" / "ztf"
    if not data.is_dir():
        pytest.skip(f"no {data}")
    card = load_registry().card("alertclass")
    network = build_network(card.network, **card.network_args)
    state = torch.load(WEIGHTS_DIR / card.weights_file, map_location="cpu", weights_only=True)
    network.load_state_dict({k: v.float() for k, v in state.items()})
    extra = extra_set(network, data, pool, draws=0)
    assert extra["left_out_in_pool"] == 0 and extra["labelled"] == int(card.evaluation["second_set"].split(": ")[1].split()[0])
    per_class = extra["vs_weak_labels"]["per_class"]
    assert {c: round(per_class[c]["recall"], 4) for c in card.labels} == {
        c: card.evaluation[f"second_set_{c}_recall"] for c in card.labels}
    assert extra["not_scored"] > 0    # packets without a usable reference source: no class, counted against recall


def test_each_training_source_left_out_in_turn_gives_the_reports_figures(pool, targets) -> None:
    import json

    from engines.registry import WEIGHTS_DIR, load_registry
    from research.training.alertclass_study import REPO, _source_folds
    from research.training.pool_alertclass import alert_classes
    from research.training.pool_realbogus import HELDOUT_SOURCES, split_by_source

    card = load_registry().card("alertclass")
    record = json.loads((WEIGHTS_DIR / f"alertclass-{card.version}.train.json").read_text())
    split = split_by_source(pool, HELDOUT_SOURCES, seed=0)
    rows = _source_folds(pool, targets, split, record)
    seen = np.concatenate([split.train, split.validation])
    assert [r["source"] for r in rows] == sorted(set(pool.source[seen].tolist()))
    assert not {r["source"] for r in rows} & set(HELDOUT_SOURCES)
    assert sum(r["alerts"] for r in rows) == int((alert_classes(pool)[seen] >= 0).sum())
    report = json.loads((REPO / card.evaluation["report"]).with_name("heldout.json").read_text())
    for ours, theirs in zip(rows, report["source_folds"]):
        assert ours["source"] == theirs["source"] and ours["macro_recall"] == pytest.approx(theirs["macro_recall"], abs=0.02)
