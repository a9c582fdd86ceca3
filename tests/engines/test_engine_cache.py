"""The engine cache is not trusted blindly (issue #23, case 10).

A zero-weight ONNX planted in the cache under the name of a model's export scored every alert
with the same P(real) while the provenance still showed the card's weights hash: the cached
file was loaded without comparing it with anything. Now the sha256 of each export is recorded
beside it, a cached file that differs from its record (or has none) is exported again from the
card's weights, and a cache directory others may write to is used only through a private
subdirectory that must be ours alone.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engines.contract import EngineError
from engines.export import export_onnx, file_sha256
from engines.registry import load_network, load_registry, onnx_path_for
from tests.engines.real_stamps import real_alerts


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def alerts(real_data_roots: tuple[Path, ...]) -> list:
    return list(real_alerts(real_data_roots, 16))


def _scores(registry, backend: str, cache_dir: Path, alerts: list) -> tuple[np.ndarray, dict]:
    runner = registry.load_runner("realbogus", backend, cache_dir=str(cache_dir), allow_untrained=True)
    try:
        return runner.infer(runner.preprocess(alerts)), dict(runner.provenance.extra)
    finally:
        runner.close()


def test_a_planted_onnx_is_not_loaded_but_exported_again(registry, alerts, tmp_path):
    cache = tmp_path / "engines"
    cache.mkdir(mode=0o700)
    expected, _ = _scores(registry, "torch", cache, alerts)
    honest, extra = _scores(registry, "onnxruntime", cache, alerts)
    card = registry.card("realbogus")
    path = onnx_path_for(card, cache)
    honest_sha = file_sha256(path)
    assert honest_sha == extra["onnx_sha256"]
    np.testing.assert_allclose(honest, expected, atol=1e-5, rtol=0)

    # plant the same network with every weight zeroed, under the export's name
    network = load_network(card, registry.weights_dir)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
    export_onnx(network, card.contract, path)
    assert file_sha256(path) != honest_sha
    got, extra = _scores(registry, "onnxruntime", cache, alerts)
    assert np.ptp(got[:, 1]) > 1e-4, "not the planted constant scores"
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert extra["onnx_sha256"] == file_sha256(path) == path.with_name(path.name + ".sha256").read_text().strip()


def test_a_cache_without_a_record_is_exported_again(registry, alerts, tmp_path):
    cache = tmp_path / "engines"
    cache.mkdir(mode=0o700)
    path = onnx_path_for(registry.card("realbogus"), cache)
    path.write_bytes(b"not an onnx file at all")  # as an older release left it, or anyone
    got, extra = _scores(registry, "onnxruntime", cache, alerts)
    assert extra["onnx_sha256"] == file_sha256(path) and path.with_name(path.name + ".sha256").is_file()


def test_a_cache_directory_others_may_write_is_used_only_through_a_private_one(registry, tmp_path):
    import os

    cache = tmp_path / "shared"
    cache.mkdir()
    cache.chmod(0o777)  # a Kubernetes emptyDir
    runner = registry.load_runner("realbogus", "onnxruntime", cache_dir=str(cache), allow_untrained=True)
    runner.close()
    private = cache / f"private-{os.getuid()}"
    assert [p.name for p in cache.iterdir()] == [private.name] and oct(private.stat().st_mode & 0o777) == "0o700"
    assert onnx_path_for(registry.card("realbogus"), private).is_file(), "nothing exported where others write"

    # someone else's (or a group-writable) directory under that name is refused
    other = tmp_path / "other"
    other.mkdir()
    other.chmod(0o777)
    planted = other / f"private-{os.getuid()}"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    with pytest.raises(EngineError, match="writable by others"):
        registry.load_runner("realbogus", "onnxruntime", cache_dir=str(other), allow_untrained=True)
    assert not list(planted.iterdir())


def test_a_tensorrt_plan_is_used_only_while_it_matches_its_record(tmp_path):
    """#23 case 10: TensorRT plans are checked like the ONNX exports. The build step is a stand-in
    (TensorRT cannot run here; the GPU check exercises the real build), the cache logic is real."""
    from engines.backends.tensorrt_backend import cached_or_built
    from engines.cache_records import record_path

    plan = tmp_path / "engines" / "m-abc-trt10-sm90-fp16.engine"
    builds: list[int] = []

    def build() -> bytes:
        builds.append(1)
        return b"plan bytes %d" % len(builds)

    assert cached_or_built(plan, build) == b"plan bytes 1" and record_path(plan).is_file()
    assert cached_or_built(plan, build) == b"plan bytes 1" and len(builds) == 1      # cached, verified
    plan.write_bytes(b"a plan someone planted")                                      # replaced in the cache
    assert cached_or_built(plan, build) == b"plan bytes 2" and len(builds) == 2      # rebuilt, not deserialized
    record_path(plan).unlink()                                                       # no record: not ours
    assert cached_or_built(plan, build) == b"plan bytes 3" and plan.read_bytes() == b"plan bytes 3"


def test_the_default_cache_is_absolute_under_the_state_directory(tmp_path, monkeypatch):
    """#23 case 10: not ``var/engines`` relative to wherever a command starts."""
    import engines.backends as backends

    assert Path(backends.ENGINE_CACHE_DIR).is_absolute() and Path(backends.ENGINE_CACHE_DIR).name == "engines"
    monkeypatch.setenv("SC_STATE_DIR", str(tmp_path / "state"))
    assert backends.state_dir() == tmp_path / "state"
    monkeypatch.delenv("SC_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")
    monkeypatch.chdir(tmp_path)
    assert backends.state_dir() == tmp_path / "relative" / "state" / "survey-classifier" and backends.state_dir().is_absolute()
