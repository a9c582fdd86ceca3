"""benchmarks.pairs: drains from two trees in turn, compared pair by pair."""
from __future__ import annotations

import json
import subprocess

import pytest

from benchmarks.pairs import REPO, main, pair_figures


def test_pair_figures_compare_each_pair_and_count_the_ones_favouring_after():
    before = [{"throughput_per_s": 100.0, "steady_throughput_per_s": 110.0, "service_cpu_ms_per_alert": 3.0},
              {"throughput_per_s": 100.0, "steady_throughput_per_s": None, "service_cpu_ms_per_alert": 3.0}]
    after = [{"throughput_per_s": 110.0, "steady_throughput_per_s": 99.0, "service_cpu_ms_per_alert": 2.7},
             {"throughput_per_s": 95.0, "steady_throughput_per_s": 120.0, "service_cpu_ms_per_alert": 3.3}]
    figures = pair_figures(before, after)
    assert figures["throughput_per_s"] == {"ratios": [1.1, 0.95], "mean_ratio": 1.025, "pairs_favouring_after": 1, "pairs": 2}
    assert figures["steady_throughput_per_s"]["pairs"] == 1   # a missing figure leaves its pair out
    assert figures["service_cpu_ms_per_alert"]["ratios"] == [0.9, 1.1]
    assert figures["service_cpu_ms_per_alert"]["pairs_favouring_after"] == 1   # less CPU is better


@pytest.mark.integration
def test_a_pair_of_real_drains_from_a_worktree_and_this_checkout(tmp_path):
    worktrees = subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout
    out = tmp_path / "pairs.json"
    assert main(["--before", "HEAD", "--alerts", "120", "--pairs", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    for side in ("before", "after"):
        (run,) = result["runs"][side]
        assert run["complete"] and run["inputs"] == run["outputs"] == 120 and run["service_cpu_ms_per_alert"] > 0
    assert result["compared"]["throughput_per_s"]["pairs"] == 1 and "(this checkout)" in result["after"]
    # the worktree made for the run is gone
    assert subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout == worktrees
