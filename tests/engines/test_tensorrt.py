"""TensorRT: the API names used exist in the installed bindings; no silent CPU fallback; and,
on a GPU host, parity with PyTorch on real stamps (marked ``gpu``, skipped with the reason here).

The bindings wheel here (tensorrt-cu12-bindings 11.4) has no libnvinfer, so its ``tensorrt.so``
cannot be imported; its strings still name the real Python API (pybind11 keeps every bound
name as a C string, sometimes merged into the tail of a longer identifier by the linker).
"""
from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import engines.backends.tensorrt_backend as trt_backend
from engines.contract import EngineError
from engines.registry import load_registry
from tests.engines.real_stamps import real_alerts


def _bindings_identifiers() -> set[str]:
    spec = importlib.util.find_spec("tensorrt_bindings")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tensorrt_bindings is not installed (pip install tensorrt-cu12-bindings)")
    libraries = sorted(Path(next(iter(spec.submodule_search_locations))).glob("tensorrt*.so"))
    if not libraries:
        pytest.skip("tensorrt_bindings has no tensorrt*.so")
    try:
        text = subprocess.run(["strings", str(libraries[0])], capture_output=True, text=True, check=True).stdout
    except FileNotFoundError:
        pytest.skip("the 'strings' program (binutils) is not installed")
    return {line for line in text.splitlines() if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", line)}


def _exists(name: str, identifiers: set[str]) -> bool:
    return name in identifiers or any(i.endswith(name) for i in identifiers)


def test_every_tensorrt_name_the_backend_uses_is_in_the_bindings() -> None:
    identifiers = _bindings_identifiers()
    missing = [n for n in trt_backend.TENSORRT_API_NAMES if n != "__version__" and not _exists(n, identifiers)]
    assert not missing, f"not in the installed TensorRT bindings: {missing}"


def test_the_check_can_fail_for_removed_apis() -> None:
    identifiers = _bindings_identifiers()
    for removed in ("build_engine", "platform_has_fast_fp16", "nptype", "EXPLICIT_BATCH"):
        assert not _exists(removed, identifiers), removed


def test_name_list_covers_the_code() -> None:
    """Every attribute the module reads from trt objects is in TENSORRT_API_NAMES."""
    tree = ast.parse(Path(trt_backend.__file__).read_text())
    trt_objects = {"trt", "builder", "network", "parser", "config", "profile", "timing_cache", "logger"}
    private = {"_runtime", "_engine", "_context", "_logger"}
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            base = node.value
            if isinstance(base, ast.Name) and base.id in trt_objects:
                used.add(node.attr)
            elif isinstance(base, ast.Attribute) and base.attr in private:
                used.add(node.attr)
            elif isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == "trt" and base.attr != "__version__":
                used.add(node.attr)  # trt.Logger.WARNING, trt.DataType.HALF, ...
            elif isinstance(base, ast.Call) and isinstance(base.func, ast.Attribute) and base.func.attr == "get_timing_cache":
                used.add(node.attr)
    assert used - set(trt_backend.TENSORRT_API_NAMES) == set()
    assert {"build_serialized_network", "execute_async_v3", "set_tensor_address"} <= used


def test_engine_file_name_carries_everything_it_was_built_from() -> None:
    name = trt_backend.engine_file_name("realbogus-fp16", "ab" * 32, "11.4.0.106", (9, 0), "fp16")
    assert name == f"realbogus-fp16-{'ab' * 32}-trt11.4.0.106-sm90-fp16.engine"


def test_without_cuda_or_tensorrt_loading_fails_loudly(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this host has CUDA; the no-CUDA failure path is not reachable here")
    registry = load_registry()
    with pytest.raises(EngineError, match="CUDA"):
        registry.load_runner("realbogus", "tensorrt", device="cuda", cache_dir=str(tmp_path), allow_untrained=True)
    with pytest.raises(EngineError, match="CUDA device"):
        registry.load_runner("realbogus", "tensorrt", device="cpu", cache_dir=str(tmp_path), allow_untrained=True, precision="fp32")
    assert not list(tmp_path.glob("*.engine"))


def _tensorrt_or_skip() -> None:
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this host")
    try:
        trt_backend.import_tensorrt()
    except EngineError as exc:
        pytest.skip(str(exc))


@pytest.mark.gpu
@pytest.mark.parametrize("precision,tolerance", [("fp32", 1e-3), ("fp16", 2e-2)])
def test_tensorrt_matches_torch_on_real_stamps(real_data_roots: tuple[Path, ...], tmp_path: Path, precision: str,
                                                tolerance: float) -> None:
    _tensorrt_or_skip()
    registry = load_registry()
    alerts = list(real_alerts(real_data_roots, 48))
    reference = registry.load_runner("realbogus", "torch", device="cuda", allow_untrained=True)
    batch = reference.preprocess(alerts)
    assert batch.device.type == "cuda"          # preprocessing stays on the GPU
    expected = reference.infer(batch)
    runner = registry.load_runner("realbogus", "tensorrt", device="cuda", cache_dir=str(tmp_path), allow_untrained=True, precision=precision)
    try:
        got = runner.infer(batch)               # CUDA tensor in, no host round trip
        np.testing.assert_allclose(got, expected, atol=tolerance, rtol=0)
        np.testing.assert_allclose(runner.infer(batch.cpu().numpy()), got, atol=1e-6)
        engines_built = list(tmp_path.glob("*.engine"))
        assert len(engines_built) == 1 and precision in engines_built[0].name
        assert list(tmp_path.glob("timing-*.cache"))
    finally:
        runner.close()
        reference.close()
    again = registry.load_runner("realbogus", "tensorrt", device="cuda", cache_dir=str(tmp_path), allow_untrained=True, precision=precision)
    assert again.engine.engine_path == engines_built[0]   # cached engine reused
    again.close()


@pytest.mark.gpu
def test_tensorrt_runs_acai_with_its_feature_input_and_braai(tmp_path: Path) -> None:
    """Two named inputs (triplets, features) bound by name; ACAI defaults to fp32 on TensorRT.
    Bundled ZTF samples; parity with the torch engine on the same preprocessed batch."""
    _tensorrt_or_skip()
    from schemas import SAMPLES_DIR
    from schemas.alert import Alert
    from schemas.decode import iter_file

    registry = load_registry()
    alerts = [a for p in sorted((SAMPLES_DIR / "ztf").rglob("*.avro")) for _, a in iter_file(p) if isinstance(a, Alert)]
    for name, tolerance in (("acai", 1e-5), ("braai", 2e-2)):
        reference = registry.load_runner(name, "torch", device="cuda")
        runner = registry.load_runner(name, "tensorrt", device="cuda", cache_dir=str(tmp_path))
        try:
            chosen = [alerts[i] for i in runner.select(alerts)]
            batch = reference.preprocess(chosen)
            np.testing.assert_allclose(runner.infer(batch), reference.infer(batch), atol=tolerance, rtol=0)
            if name == "acai":
                assert runner.provenance.extra["precision"] == "fp32"
        finally:
            runner.close()
            reference.close()
