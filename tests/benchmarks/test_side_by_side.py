"""benchmarks.side_by_side on a few alerts: one bare loop alone, then two at once, in real processes."""
from __future__ import annotations

import json

from benchmarks.side_by_side import main


def test_alone_then_side_by_side_writes_both_and_their_ratio(tmp_path, capsys) -> None:
    out = tmp_path / "sbs.json"
    assert main(["--alerts", "48", "--rounds", "1", "--processes", "2", "--start-delay", "40", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [run["processes"] for run in result["runs"]] == [1, 2]
    assert [len(run["loops"]) for run in result["runs"]] == [1, 2]
    assert len({lp["pid"] for run in result["runs"] for lp in run["loops"]}) == 3       # three processes
    assert all(lp["cpu_ms_per_alert"] > 0 and lp["alerts_per_s"] > 0 for run in result["runs"] for lp in run["loops"])
    assert result["ratio"] == round(result["side_by_side_ms_median"] / result["alone_ms_median"], 3)
    assert "ratio" in capsys.readouterr().out


def test_one_core_has_nothing_to_compare(tmp_path, capsys) -> None:
    assert main(["--processes", "1", "--out", str(tmp_path / "x.json")]) == 2
    assert "fewer than 2" in capsys.readouterr().err
