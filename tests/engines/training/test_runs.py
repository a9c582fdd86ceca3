"""What ``train`` / ``evaluate`` run (engines/training/runs.py): one rule for the data of a run,
one set of network arguments, the evaluate command calling it on a simulated set."""
from __future__ import annotations

import json

import pytest

from engines.training.runs import network_kwargs, run_data
from stream.cli import main


def test_network_kwargs_bin_hrcelestialnet_only():
    assert network_kwargs("realbogus", 4) == {} and network_kwargs("iicnet", 1) == {}
    assert network_kwargs("hrcelestialnet", 4)["first_pool"] == 1
    with pytest.raises(ValueError, match="binning"):
        network_kwargs("hrcelestialnet", 3)


def test_run_data_simulates_wise_cutouts_with_the_synthetic_note_and_refuses_no_data():
    run = run_data("iicnet", purpose="evaluate", synthetic=12, seed=5)
    assert len(run.data) == 12 and not run.preprocessed and "synthetic" in run.notes[0].lower()
    again = run_data("iicnet", purpose="train", synthetic=12, seed=5)
    assert again.data.data_sha256 == run.data.data_sha256      # same rule, same seed, same set
    with pytest.raises(ValueError, match="--data PATH"):
        run_data("iicnet", purpose="train")


def test_evaluate_command_scores_the_shipped_iicnet_on_a_fresh_simulated_set(tmp_path, capsys):
    code = main(["evaluate", "iicnet", "--synthetic", "12", "--seed", "7", "--report", str(tmp_path), "--threads", "1"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= summary["accuracy"] <= 1.0 and set(summary["per_class"]) == {"galaxy", "quasar", "star"}
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert report["run"]["examples"] == 12
    assert main(["evaluate", "iicnet"]) == 2 and "--synthetic N" in capsys.readouterr().err


def test_realbogus_synthetic_needs_a_data_path_no_default_outside_the_checkout(capsys):
    with pytest.raises(ValueError, match="--data PATH"):
        run_data("realbogus", purpose="train", synthetic=10)
    assert main(["train", "realbogus", "--synthetic", "10"]) == 2
    assert "give --data PATH" in capsys.readouterr().err
