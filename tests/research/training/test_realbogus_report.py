"""research.training.realbogus_report: the ensemble paragraph reads its figures from the runs."""
from __future__ import annotations

from research.training.realbogus_report import _ensemble_check


def _run(auc: float, science: float) -> dict:
    return {"vs_braai_d6_m7": {"all": {"roc_auc": auc, "roc_auc_95ci": [auc - 0.03, auc + 0.02]},
                               "github:astrolabsoftware/fink-science": {"roc_auc": science}}}


def test_the_ensemble_paragraph_needs_both_ensembles_and_quotes_their_figures():
    results = {"consistent-rownorm": _run(0.923, 0.86), "consistent-mixup-rownorm": _run(0.953, 0.91),
               "ensemble-consistent-mixup-x2": _run(0.934, 0.877)}
    assert _ensemble_check(results) == []
    results["ensemble-consistent-x6"] = _run(0.935, 0.878)
    text = "".join(_ensemble_check(results))
    assert "0.934 (0.904-0.954)" in text and "0.935 (0.905-0.955)" in text
    assert "best 0.953" in text and "0.877 and 0.878" in text
