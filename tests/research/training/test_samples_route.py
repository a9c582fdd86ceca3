"""The real/bogus teacher route on the bundled samples alone (no ``../shared`` needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.training.train import TrainConfig
from schemas.alert import Alert
from schemas.decode import iter_file

SAMPLES = Path(__file__).resolve().parents[3] / "schemas" / "samples"


def _alerts_of(path: Path) -> list[Alert]:
    return [item for _, item in iter_file(path) if isinstance(item, Alert)]


def test_teacher_route_on_the_bundled_samples_alone(tmp_path) -> None:
    """The realbogus route without the pool: bundled ZTF packets, their own drb as the teacher,
    their folder as the source; alerts without drb are left out of training."""
    from engines.training.recipes import load_trained
    from research.training.pool_realbogus import (
        heldout_report,
        split_by_source,
        train_on_pool,
    )
    from research.training.ztf_pool import pool_arrays_from_alerts

    alerts, labels, teacher = [], {}, {}
    for path in sorted((SAMPLES / "ztf").rglob("*.avro")):
        for alert in _alerts_of(path):
            alerts.append(alert)
            labels[int(alert.alert_id)] = {"source": path.relative_to(SAMPLES / "ztf").parts[0], "weak_label": ""}
            if "drb" in alert.survey_scores:
                teacher[int(alert.alert_id)] = {"braai_d6_m7": str(alert.survey_scores["drb"])}
    pool = pool_arrays_from_alerts(alerts, labels, teacher)
    assert set(pool.source) == {"alerce", "fink", "kowalski"} and np.isnan(pool.teacher).any()
    split = split_by_source(pool, ["alerce"], validation_fraction=0.3)
    run = train_on_pool(pool, split, "teacher", TrainConfig(model="realbogus", epochs=1, batch_size=16, threads=1),
                        tmp_path / "run")
    assert run.description["pool_train_alerts"] == int(np.isfinite(pool.teacher[split.train]).sum())
    report = heldout_report(load_trained("realbogus", run.weights), pool, split, draws=10)
    assert report["vs_braai_d6_m7"]["all"]["alerts"] == int(np.isfinite(pool.teacher[split.test]).sum())


def test_pool_inputs_follow_the_preprocessing_asked_for() -> None:
    """The pool's real/bogus inputs are the named preprocessing's, for every alert, and the
    name travels with subsets; a name the service does not know is refused."""
    import pytest

    from engines.preprocess import PREPROCESSORS
    from engines.training.adapters import realbogus_inputs
    from engines.training.ztf_files import TrainingDataError
    from research.training.ztf_pool import pool_arrays_from_alerts

    alerts = [a for path in sorted((SAMPLES / "ztf").rglob("*.avro")) for a in _alerts_of(path)][:12]
    minmax = pool_arrays_from_alerts(alerts, {}, {})
    rownorm = pool_arrays_from_alerts(alerts, {}, {}, realbogus_preprocessing="difference_stamps_rownorm_69")
    assert minmax.realbogus_preprocessing == "difference_stamps_69"
    assert rownorm.subset(np.arange(3)).realbogus_preprocessing == "difference_stamps_rownorm_69"
    np.testing.assert_array_equal(rownorm.realbogus_inputs, PREPROCESSORS["difference_stamps_rownorm_69"](alerts, "cpu").numpy())
    assert not np.allclose(rownorm.realbogus_inputs, minmax.realbogus_inputs)
    np.testing.assert_array_equal(rownorm.arcsec_inputs, minmax.arcsec_inputs)   # the alert-class inputs do not change
    triplets = np.stack([np.stack([a.science.data, a.template.data, a.difference.data]) for a in alerts
                         if a.science.shape == (63, 63)])
    np.testing.assert_allclose(realbogus_inputs(triplets, preprocessing="difference_stamps_rownorm_69"),
                               PREPROCESSORS["difference_stamps_rownorm_69"](
                                   [a for a in alerts if a.science.shape == (63, 63)], "cpu").numpy(), atol=1e-6)
    with pytest.raises(TrainingDataError, match="unknown preprocessing"):
        pool_arrays_from_alerts(alerts, {}, {}, realbogus_preprocessing="no_such_input")
