"""The Rubin real/bogus study: injections, the training pipeline on a tiny slice, the shipped
card and model on real Rubin packets it never saw (the bundled ones are all test-split)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.export import file_sha256
from engines.networks.realbogus import RealBogusCNN
from engines.registry import WEIGHTS_DIR, load_registry
from research.rubin_realbogus.alerts import load_rubin_alerts, subset_of
from research.rubin_realbogus.injections import (
    BOGUS_KINDS,
    REAL_KINDS,
    as_alert,
    base_from_alert,
    inject,
    injection_set,
)
from research.training.heldout import fast_auc
from schemas.alert import Alert
from schemas.walk import walk_decoded

REPO = Path(__file__).resolve().parents[2]
BUNDLED = (REPO / "schemas" / "samples" / "rubin" / "alerce", REPO / "schemas" / "samples" / "rubin" / "alerce-kafka")
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="module")
def bundled() -> list[Alert]:
    alerts = [item for _e, _i, item in walk_decoded(BUNDLED) if isinstance(item, Alert)]
    assert len(alerts) == 6
    return alerts


def test_injections_are_consistent_triplets_of_every_kind(bundled) -> None:
    """Each kind keeps difference = science - matched template: what the injection adds to the
    science minus what it adds to the difference has the flux it adds to the template."""
    complete = [a for a in bundled if all(np.isfinite(s.data).all() for s in (a.science, a.template, a.difference))]
    base = base_from_alert(complete[0])
    rng = np.random.default_rng(0)
    matched = base.science - base.difference
    for kind in REAL_KINDS + BOGUS_KINDS:
        for _ in range(5):
            inj = inject(base, kind, rng)
            assert inj.label == (1 if kind in REAL_KINDS else 0) and inj.kind == kind
            assert inj.science.shape == inj.template.shape == inj.difference.shape == base.science.shape
            assert all(p.dtype == np.float32 for p in (inj.science, inj.template, inj.difference))
            if kind in ("edge", "blank"):
                continue          # missing pixels by design
            added_matched = (inj.science - inj.difference) - matched
            added_template = inj.template - base.template
            assert np.isfinite(added_matched).all()
            total = float(added_template.sum())
            if total > 0:   # the template's object is the matched template's: same place, same flux
                # (up to the PSF wings the cutout truncates and a bad subtraction's 0.9..1.1 scale)
                assert abs(float(added_matched.sum()) - total) < 0.15 * total
                yy, xx = np.indices(added_template.shape)
                for grid in (yy, xx):
                    assert abs((grid * added_matched).sum() / added_matched.sum() - (grid * added_template).sum() / total) < 0.3
            if kind in ("point", "cosmic_ray", "noise"):
                np.testing.assert_array_equal(inj.template, base.template)        # template untouched
                np.testing.assert_allclose(added_matched, 0, atol=1e-2 * float(base.sigma.max()))
    holed = base_from_alert(next(a for a in bundled if not np.isfinite(a.science.data).all()))
    point = inject(holed, "point", np.random.default_rng(4))    # missing pixels stay missing, no new ones
    np.testing.assert_array_equal(np.isfinite(point.science), np.isfinite(holed.science))
    edge = inject(base, "edge", np.random.default_rng(1))
    assert (~np.isfinite(edge.science) | (edge.science == 0)).any()
    point = inject(base, "point", np.random.default_rng(2))
    assert point.snr >= 5


def test_injection_set_is_reproducible_and_mixes_kinds(bundled) -> None:
    bases = [base_from_alert(a) for a in bundled]
    first, again = injection_set(bases, 12, seed=5), injection_set(bases, 12, seed=5)
    assert len(first) == 72
    assert [i.kind for i in first] == [i.kind for i in again]
    assert all(np.array_equal(a.difference, b.difference, equal_nan=True) for a, b in zip(first, again))
    labels = np.array([i.label for i in first])
    assert 0.3 < labels.mean() < 0.7
    alert = as_alert(first[0], bases[0])
    assert alert.survey == "rubin" and np.array_equal(alert.difference.data, first[0].difference, equal_nan=True)


def test_split_holds_out_dates_and_sources() -> None:
    if not (SHARED / "rubin_pool").is_dir():
        pytest.skip("../shared/rubin_pool not beside the checkout")
    alerts = load_rubin_alerts(SHARED / "rubin_pool", SHARED / "data" / "rubin")
    ids = [int(a.alert.alert_id) for a in alerts]
    assert len(ids) == len(set(ids))                                     # deduplicated by diaSourceId
    train = [a for a in alerts if a.split == "train"]
    test = [a for a in alerts if a.split == "test"]
    assert {a.source for a in train} == {"fink-tutorials"}
    assert max(a.alert.mjd for a in test) < min(a.alert.mjd for a in train)  # other dates
    assert not {a.alert.object_id for a in train} & {a.alert.object_id for a in test if a.alert.object_id != "0"}
    assert all("v7_4" not in str(a.source) for a in alerts)              # simulated packets never read
    assert subset_of(test[0].alert) in ("lsstcam_2025", "hsc_precursor")


def test_training_pipeline_runs_end_to_end_on_a_tiny_slice(tmp_path) -> None:
    if not (SHARED / "rubin_pool").is_dir():
        pytest.skip("../shared/rubin_pool not beside the checkout")
    from research.rubin_realbogus.study import StudyConfig, run_study

    started = time.monotonic()
    results = run_study(StudyConfig(rubin_pool=SHARED / "rubin_pool", rubin_data=SHARED / "data" / "rubin",
                                    out=tmp_path, variants=("injections_teacher",), per_base=3, test_per_base=3,
                                    epochs=1, draws=20, compare=False, max_alerts=4, threads=1))
    assert time.monotonic() - started < 30
    figures = results["variants"]["injections_teacher"]
    assert results["selected"] == "injections_teacher"
    assert figures["train_examples"] == 4 * 3 + 4 * 5 and 0.0 <= figures["threshold"] <= 1.0
    network = RealBogusCNN()
    network.load_state_dict(torch.load(figures["weights"], map_location="cpu", weights_only=True))
    assert (tmp_path / "results.json").is_file()


def test_compare_scores_registered_models_on_the_held_out_test_without_training(tmp_path) -> None:
    if not (SHARED / "rubin_pool").is_dir():
        pytest.skip("../shared/rubin_pool not beside the checkout")
    from research.rubin_realbogus.__main__ import main

    out = tmp_path / "compare.json"
    assert main(["compare", "--rubin-pool", str(SHARED / "rubin_pool"), "--rubin-data", str(SHARED / "data" / "rubin"),
                 "--models", "realbogus@2.2.0-pool-distilled", "nosuch@1.0", "--out", str(out), "--threads", "1",
                 "--max-alerts", "4"]) == 0
    results = json.loads(out.read_text())
    assert len(results["test_alert_ids"]) == 4 and not list(tmp_path.glob("*/weights*"))   # nothing trained
    assert results["config"]["seed"] == 20261206 and "epochs" not in results["config"]   # only what fixes the test
    figures = results["compared"]["realbogus@2.2.0-pool-distilled"]
    assert 0.0 <= figures["test_injections"]["roc_auc"] <= 1.0
    assert "error" in results["compared"]["nosuch@1.0"]   # a model that cannot load is reported, not fatal


# --- the shipped model ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    registry = load_registry()
    card = registry.card("rubin_realbogus")
    runner = registry.load_runner("rubin_realbogus", "torch")
    yield card, runner
    runner.close()


def test_shipped_card_loads_and_its_weights_match(shipped) -> None:
    card, _runner = shipped
    assert card.network == "realbogus" and card.trained and card.surveys == ("rubin",)
    assert card.labels == ("bogus", "real") and card.preprocessing.startswith("rubin_triplet")
    assert file_sha256(WEIGHTS_DIR / card.weights_file) == card.weights_sha256
    assert (WEIGHTS_DIR / card.weights_file).stat().st_size < 8 * 2**20
    assert card.training["command"].startswith("python -m research.rubin_realbogus train")
    assert "agreement, not accuracy" in card.evaluation["reference"]


def test_shipped_model_scores_real_rubin_packets_and_only_rubin(shipped, bundled, real_data_roots) -> None:
    _card, runner = shipped
    assert runner.select(bundled) == list(range(len(bundled)))
    scores = runner.score(bundled)
    assert scores.shape == (len(bundled), 2) and np.isfinite(scores).all()
    np.testing.assert_allclose(scores.sum(1), 1.0, atol=1e-5)
    ztf = [item for _e, _i, item in walk_decoded([real_data_roots[0] / "ztf"]) if isinstance(item, Alert)][:3]
    assert ztf and runner.select(ztf) == []


def test_shipped_model_ranks_injected_point_sources_above_injected_bogus(shipped, bundled) -> None:
    """Injections into the bundled packets (test split: never trained on, other dates and
    sources), a seed the study never used. Measured on the shipped 1.0.0: AUC 0.992 (seed 777;
    0.988 to 0.997 over seeds 1, 2, 3); the bar leaves room for the small sample."""
    _card, runner = shipped
    bases = [base_from_alert(a) for a in bundled]
    injections = injection_set(bases, 40, seed=777)
    by_id = {int(b.alert.alert_id): b for b in bases}
    alerts = [as_alert(i, by_id[i.base_id]) for i in injections]
    real = runner.score(alerts)[:, 1]
    point = np.array([i.kind == "point" for i in injections])
    bogus = np.array([i.label == 0 for i in injections])
    keep = point | bogus
    auc = fast_auc(real[keep], point[keep])
    assert auc is not None and auc > 0.95, auc


def test_serving_code_never_imports_research() -> None:
    """Study code stays out of the service: no module of stream/ or engines/ imports research."""
    import ast

    offenders = []
    for layer in ("stream", "engines", "schemas"):
        for path in sorted((REPO / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
                offenders += [f"{path.relative_to(REPO)}:{node.lineno}" for n in names if n.split(".")[0] == "research"]
    assert offenders == []
