"""ONNX export with a dynamic batch dimension: the one artefact every non-torch backend reads.

Exporter choice (pinned): the torch.export-based exporter (``dynamo=True``, opset 18). With
torch 2.13 here both it and the legacy TorchScript exporter produce graphs that ONNX Runtime
runs to within 1e-7 of PyTorch for all three networks, but the legacy one is deprecated
(DeprecationWarning since 2.9), so we use the supported path. The graph includes the softmax
(:class:`engines.networks.ScoredNetwork`): every backend returns probabilities.

``precision="fp16"`` exports the body in half precision with float32 input and output; that is
how TensorRT 11 (strongly typed only, no FP16 builder flag) is asked for FP16 kernels.
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

import structlog
import torch
from torch import nn

from engines.contract import EngineError, InputContract
from engines.networks import ScoredNetwork

__all__ = ["export_onnx", "file_sha256", "OPSET", "EXPORTER", "PRECISIONS"]

log = structlog.get_logger(__name__)

OPSET = 18
EXPORTER = "torch.onnx.export(dynamo=True)"
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16}


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_onnx(
    network: nn.Module,
    contract: InputContract,
    path: str | Path,
    precision: str = "fp32",
) -> Path:
    """Export ``network`` (logits model) + softmax to ``path`` with a dynamic batch axis.

    The input is named ``contract.input_name`` with shape (batch, C, H, W), the output
    ``contract.output_name`` (batch, K). A contract with a feature input adds a second input
    ``contract.feature_name`` (batch, F) sharing the batch axis. Written to a temporary name and renamed, so a reader
    never sees a half-written file. Raises EngineError if the exporter fails.
    """
    if precision not in PRECISIONS:
        raise EngineError(f"unknown export precision {precision!r}; use one of {sorted(PRECISIONS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scored = ScoredNetwork(_copy_for_export(network), PRECISIONS[precision], contract.output_activation).eval()
    examples = tuple(torch.zeros(shape, dtype=torch.float32) for shape in contract.input_shapes(2))
    batch = torch.export.Dim("batch", min=1, max=contract.max_batch)
    # ScoredNetwork.forward(x, *extra): the extra inputs arrive as one tuple argument
    dynamic = ({0: batch}, tuple({0: batch} for _ in examples[1:])) if len(examples) > 1 else {"x": {0: batch}}
    # this process's own temporary name: members sharing a cache folder may export the same model at once
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    log.info("onnx_export_start", path=str(path), precision=precision, exporter=EXPORTER)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _quiet_exporter_logs()
            torch.onnx.export(
                scored,
                examples,
                str(tmp),
                input_names=list(contract.input_names),
                output_names=[contract.output_name],
                dynamic_shapes=dynamic,
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; one error of ours
        tmp.unlink(missing_ok=True)
        raise EngineError(f"ONNX export to {path} failed: {exc}") from exc
    tmp.replace(path)
    log.info("onnx_export_done", path=str(path), bytes=path.stat().st_size)
    return path


def _copy_for_export(network: nn.Module) -> nn.Module:
    """A copy in eval mode, so casting to fp16 never touches the caller's module."""
    import copy

    return copy.deepcopy(network).eval()


def _quiet_exporter_logs() -> None:
    """The exporter logs a torchvision notice per op on every export; not ours to show."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
