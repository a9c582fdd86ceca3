"""What a result was measured on: machine, library versions, git commit, device, load.

Every results file carries this stamp so figures from different hosts are never mixed up.
"""
from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["machine_stamp", "cpu_model", "git_commit", "versions", "cuda_device", "tensorrt_usable", "host_label", "load_average"]

_PACKAGES = ("torch", "onnxruntime", "openvino", "confluent-kafka", "fastavro", "astropy", "numpy", "tensorrt", "redis")
REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """HEAD's commit, with ``+dirty`` when the tree has local changes (figures of uncommitted code)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str | None]:
    """Installed versions of the libraries whose speed the figures depend on (None: not installed)."""
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def cuda_device() -> str | None:
    """The CUDA device name when torch sees one, else None."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - a broken CUDA install means no device
        return None
    return None


def tensorrt_usable() -> bool:
    """True when TensorRT's runtime library loads and CUDA is present (bindings alone are not enough)."""
    if cuda_device() is None:
        return False
    try:
        import tensorrt

        tensorrt.Logger(tensorrt.Logger.ERROR)
        return tensorrt.Runtime(tensorrt.Logger(tensorrt.Logger.ERROR)) is not None
    except Exception:  # noqa: BLE001 - libnvinfer missing raises OSError/ImportError/TypeError
        return False


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def host_label() -> str:
    """Folder name for results: the CUDA device when there is one, else the CPU and core count."""
    gpu = cuda_device()
    base = gpu if gpu else f"{cpu_model()}-{os.cpu_count()}cores"
    return "".join(c if c.isalnum() or c in "-." else "-" for c in base).strip("-").lower()[:60]


def machine_stamp() -> dict[str, Any]:
    """The stamp written into every results file."""
    try:
        import psutil

        mem_gib = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        mem_gib = None
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": affinity,
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "cuda_device": cuda_device(),
        "tensorrt_usable": tensorrt_usable(),
        "versions": versions(),
        "git_commit": git_commit(),
        "load_average_1_5_15": load_average(),
    }
