"""ONNX export: dynamic batch, softmax in the graph, fp16 body with float32 input/output."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from engines.contract import EngineError, InputContract
from engines.export import export_onnx
from engines.networks import ScoredNetwork, build_network

CONTRACT = InputContract("input", "probabilities", (3, 69, 69), ("bogus", "real"), max_batch=64)


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(1)
    return build_network("realbogus")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_export_has_dynamic_batch_and_float32_io(network, tmp_path: Path, precision: str) -> None:
    path = export_onnx(network, CONTRACT, tmp_path / f"rb-{precision}.onnx", precision)
    model = onnx.load(str(path))
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("input", "probabilities")
    assert inp.type.tensor_type.elem_type == out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert inp.type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    weight_types = {t.data_type for t in model.graph.initializer if len(t.dims) > 1}
    assert weight_types == {onnx.TensorProto.FLOAT16 if precision == "fp16" else onnx.TensorProto.FLOAT}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((5, 3, 69, 69), dtype=np.float32)
    (got,) = session.run(None, {"input": x})
    with torch.no_grad():
        expected = ScoredNetwork(network).eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5 if precision == "fp32" else 5e-3, rtol=0)
    assert not network.training and next(network.parameters()).dtype == torch.float32  # caller's module untouched


def test_unknown_precision_is_refused(network, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="precision"):
        export_onnx(network, CONTRACT, tmp_path / "x.onnx", "int8")


def test_another_writers_temporary_files_are_left_alone(network, tmp_path: Path) -> None:
    """Members sharing a cache folder may export the same model at once: each writes through its
    own temporary name, so neither takes or overwrites the other's half-written file."""
    from engines.cache_records import record_path, record_sha256, why_untrusted

    path = tmp_path / "rb.onnx"
    others = [path.with_name(path.name + ".tmp"), path.with_name(path.name + ".999999.tmp"),
              record_path(path).with_name(record_path(path).name + ".999999.tmp")]
    for other in others:
        other.write_bytes(b"half written by another process")
    export_onnx(network, CONTRACT, path, "fp32")
    record_sha256(path)
    assert why_untrusted(path) is None and onnx.load(str(path)).graph.input[0].name == "input"
    assert all(other.read_bytes() == b"half written by another process" for other in others)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, record_path(path).name, *(o.name for o in others)])
