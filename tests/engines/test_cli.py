"""``survey-classifier engines describe|build|list`` through the real CLI entry point."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from stream.cli import main


@pytest.fixture(autouse=True)
def _reset_logging():
    """main() points structlog at this test's captured stderr; undo that for later tests."""
    yield
    structlog.reset_defaults()


def test_describe_prints_counts_and_shapes(capsys) -> None:
    assert main(["engines", "describe"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["realbogus"]["parameters"] == 1_420_738
    assert described["hrcelestialnet"]["parameters"] == 97_048_130
    assert described["hrcelestialnet"]["input_shape"] == [1, 2048, 4096]
    assert described["iicnet"]["output_shape"] == [3]
    assert described["realbogus"]["input_kinds"] == ["difference_alert"] and described["iicnet"]["input_kinds"] == ["multiband_cutout"]
    assert abs(described["iicnet"]["macs"] / 218.66e6 - 1) < 0.1


def test_build_then_list(tmp_path: Path, capsys) -> None:
    cache = tmp_path / "engines"
    assert main(["engines", "build", "--backend", "onnxruntime", "--models", "realbogus", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "realbogus onnxruntime: ok" in out
    assert len(list(cache.glob("realbogus-*-fp32.onnx"))) == 1
    assert main(["engines", "list", "--cache-dir", str(cache)]) == 0
    listing = capsys.readouterr().out
    assert "realbogus" in listing and "-fp32.onnx" in listing and "(not built)" in listing  # iicnet not built
    header, *lines = listing.splitlines()
    assert header.split() == ["model", "version", "default", "trained_on", "surveys", "weights_sha256", "artefact"]
    rows = {line.split()[0]: line.split() for line in lines}
    assert all(len(row) >= 7 for row in rows.values()), "long names and versions keep their columns apart"
    assert rows["realbogus"][4] == "ztf" and rows["acai"][4] == "ztf" and rows["iicnet"][4] == "exposure"
    assert rows["rubin_realbogus"][3:5] == ["real", "rubin"] and rows["iicnet"][3] == "simulated"
    assert rows["braai"][3] == "imported" and rows["realbogus@1.0.0-synthetic"][3] == "simulated"
    from engines.registry import load_registry

    registry = load_registry()
    for name, row in rows.items():
        card = registry.versions[tuple(name.split("@"))] if "@" in name else registry.cards[name]
        assert row[1] == card.version
        assert row[2] == ("older" if "@" in name else "yes" if card.passes_bar and card.trained else "by-name"), name
    assert rows["rubin_realbogus"][2] == "yes" and rows["alertclass"][2] == "yes"   # 3.0.0 passes its bar
    assert rows["iicnet"][2] == "by-name" and rows["alertclass@2.0.0-pool-distilled"][2] == "older"


def test_build_of_tensorrt_without_gpu_reports_failure(tmp_path: Path, capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has CUDA; the failure path is not reachable here")
    assert main(["engines", "build", "--backend", "tensorrt", "--models", "realbogus", "--cache-dir", str(tmp_path)]) == 1
    assert "FAILED" in capsys.readouterr().out
