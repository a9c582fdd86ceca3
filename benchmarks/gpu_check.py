"""``python -m benchmarks.gpu_check``: the GPU run, one command, under ten minutes on any CUDA host.

Steps, each timed, each written to ``benchmarks/results/<gpu>/gpu_check.{json,md}``:

1. ``device``: the CUDA device, its compute capability, torch and TensorRT versions;
2. ``build``: a TensorRT engine for every registered model, in fp32 and fp16 (TensorRT 11 takes its
   precision from the ONNX types: the registry exports an fp16 body for fp16);
3. ``parity``: each TensorRT engine against ONNX Runtime on the CPU, on the same inputs (real
   bundled alerts for difference-alert models; seeded random inputs of the contract's shape for the
   others), with the tolerances in :data:`TOLERANCE`;
4. ``preprocess``: GPU preprocessing against CPU preprocessing on the bundled alerts;
5. ``limits``: inference throughput of each engine at batch 1, 64, 256 and 1024 (CUDA synchronised,
   warm-up first, p50 of the timed runs);
6. ``service``: a short night through the real service with the TensorRT backend
   (``python -m benchmarks.night --quick --service-backend tensorrt``), in a subprocess.

``--dry-run`` (what CI runs, on a machine without a GPU) resolves every step without CUDA: the
registry loads, the bundled inputs decode, each model's preprocessing runs on the CPU, the TensorRT
bindings name every API the backend calls, the service benchmark's arguments parse, and the
results folder is writable. It exits non-zero if any step cannot resolve.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import REPO, host_label, machine_stamp

__all__ = ["main", "TOLERANCE", "BATCHES", "PRECISIONS"]

#: Largest absolute difference of output probabilities allowed against ONNX Runtime (CPU, fp32).
TOLERANCE: dict[str, float] = {"fp32": 1e-4, "fp16": 2e-2}
#: Largest absolute difference of GPU against CPU preprocessing (same float32 arithmetic, other order).
PREPROCESS_TOLERANCE = 1e-5
BATCHES: tuple[int, ...] = (1, 64, 256, 1024)
PRECISIONS: tuple[str, ...] = ("fp32", "fp16")
RESULTS = REPO / "benchmarks" / "results"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="resolve every step without a GPU (CI)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/<gpu>/)")
    p.add_argument("--models", default="all", help="comma-separated model names, or all (default all)")
    p.add_argument("--budget-s", type=float, default=540.0, help="stop starting new steps after this many seconds (default 540)")
    p.add_argument("--cache-dir", default="var/engines-gpu-check", help="where ONNX files and engines are built")
    p.add_argument("--service-alerts", type=int, default=3000, help="alerts in the short service run (default 3000)")
    p.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    return p.parse_args(argv)


class Steps:
    """Runs named steps against a time budget, recording each one's result or failure."""

    def __init__(self, budget_s: float) -> None:
        self.started = time.perf_counter()
        self.budget_s = budget_s
        self.results: dict[str, Any] = {}
        self.failures: list[str] = []

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        elapsed = time.perf_counter() - self.started
        if elapsed > self.budget_s:
            self.results[name] = {"skipped": f"time budget spent ({elapsed:.0f} s of {self.budget_s:.0f} s)"}
            print(f"[{name}] skipped: time budget spent", flush=True)
            return None
        print(f"[{name}] ...", flush=True)
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001 - a failed step is recorded and the next one still runs
            self.failures.append(name)
            self.results[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            print(f"[{name}] FAILED: {type(exc).__name__}: {exc}", flush=True)
            return None
        self.results[name] = {"seconds": round(time.perf_counter() - t0, 2), "result": value}
        print(f"[{name}] ok in {time.perf_counter() - t0:.1f} s", flush=True)
        return value


def _bundled_alerts() -> list[Any]:
    """Every decodable alert of the bundled real packets (ZTF and Rubin)."""
    import schemas
    from schemas.alert import Alert
    from schemas.decode.message import iter_file

    alerts = []
    for path in sorted(schemas.SAMPLES_DIR.rglob("*.avro")):
        alerts.extend(item for _, item in iter_file(path) if isinstance(item, Alert))
    return alerts


def _inputs_for(card: Any, alerts: list[Any]) -> list[Any] | None:
    """Real inputs for a difference-alert model (the alerts its card applies to); None for others."""
    from schemas.alert import InputKind

    if InputKind.DIFFERENCE_ALERT not in card.input_kinds:
        return None
    surveys = getattr(card, "surveys", None)
    chosen = [a for a in alerts if not surveys or a.survey in surveys]
    return chosen or None


def _random_batch(card: Any, n: int, seed: int = 0) -> Any:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.rand((n, *card.contract.shape), generator=generator, dtype=torch.float32)


def _models(registry: Any, spec: str) -> list[str]:
    names = sorted(registry.cards) if spec == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    for name in names:
        registry.card(name)
    return names


def _tile(items: list[Any], n: int) -> list[Any]:
    return [items[i % len(items)] for i in range(n)]


def _probabilities(runner: Any, card: Any, items: list[Any] | None, n: int) -> np.ndarray:
    if items is not None:
        return runner.score(_tile(items, n))
    return runner.infer(_random_batch(card, n).to(runner.device))


def _tensorrt_runner(registry: Any, name: str, precision: str, args: argparse.Namespace) -> Any:
    """Model ``name`` on TensorRT at ``precision`` (the engine is built on first use and cached)."""
    return registry.load_runner(name, "tensorrt", device=args.device, cache_dir=args.cache_dir,
                                allow_untrained=True, precision=precision)


def step_device(device: str) -> dict[str, Any]:
    import torch

    from engines.backends.tensorrt_backend import import_tensorrt

    if not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device")
    trt = import_tensorrt()
    index = torch.device(device).index or 0
    return {
        "name": torch.cuda.get_device_name(index),
        "capability": list(torch.cuda.get_device_capability(index)),
        "memory_gib": round(torch.cuda.get_device_properties(index).total_memory / 2**30, 1),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "tensorrt": trt.__version__,
    }


def step_build(registry: Any, names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    built: dict[str, Any] = {}
    for name in names:
        for precision in PRECISIONS:
            t0 = time.perf_counter()
            runner = _tensorrt_runner(registry, name, precision, args)
            built[f"{name}/{precision}"] = {"seconds": round(time.perf_counter() - t0, 1), **runner.provenance.extra}
            runner.close()
    return built


def step_parity(registry: Any, names: list[str], alerts: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        card = registry.card(name)
        items = _inputs_for(card, alerts)
        n = min(len(items), 256) if items else min(card.contract.max_batch, 16)
        reference_runner = registry.load_runner(name, "onnxruntime", device="cpu", cache_dir=args.cache_dir, allow_untrained=True)
        reference = _probabilities(reference_runner, card, items, n)
        reference_runner.close()
        for precision in PRECISIONS:
            runner = _tensorrt_runner(registry, name, precision, args)
            got = _probabilities(runner, card, items, n)
            runner.close()
            diff = float(np.max(np.abs(got - reference))) if got.size else 0.0
            out[f"{name}/{precision}"] = {
                "inputs": "bundled alerts" if items else "seeded random, contract shape",
                "n": n,
                "max_abs_diff": diff,
                "tolerance": TOLERANCE[precision],
                "ok": diff <= TOLERANCE[precision],
            }
    bad = [k for k, v in out.items() if not v["ok"]]
    if bad:
        raise AssertionError(f"parity beyond tolerance: {bad}: {json.dumps({k: out[k] for k in bad})}")
    return out


def step_preprocess(registry: Any, names: list[str], alerts: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    from engines.preprocess import PREPROCESSORS

    out: dict[str, Any] = {}
    for key in sorted({registry.card(n).preprocessing for n in names}):
        cards = [registry.card(n) for n in names if registry.card(n).preprocessing == key]
        items = _inputs_for(cards[0], alerts)
        if items is None:
            out[key] = {"skipped": "no bundled inputs of this kind"}
            continue
        cpu = PREPROCESSORS[key](items, "cpu")
        gpu = PREPROCESSORS[key](items, args.device)
        pairs = zip(cpu, gpu, strict=True) if isinstance(cpu, (tuple, list)) else [(cpu, gpu)]
        diff = max(float((g.float().cpu() - c.float()).abs().max()) for c, g in pairs)
        out[key] = {"n": len(items), "max_abs_diff": diff, "tolerance": PREPROCESS_TOLERANCE, "ok": diff <= PREPROCESS_TOLERANCE}
    bad = [k for k, v in out.items() if v.get("ok") is False]
    if bad:
        raise AssertionError(f"GPU preprocessing differs from CPU beyond {PREPROCESS_TOLERANCE}: {bad}")
    return out


def step_limits(registry: Any, names: list[str], alerts: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {}
    for name in names:
        card = registry.card(name)
        items = _inputs_for(card, alerts)
        for precision in PRECISIONS:
            runner = _tensorrt_runner(registry, name, precision, args)
            for batch_size in BATCHES:
                if batch_size > card.contract.max_batch:
                    continue
                batch = runner.preprocess(_tile(items, batch_size)) if items else _random_batch(card, batch_size).to(args.device)
                for _ in range(3):
                    runner.infer(batch)
                torch.cuda.synchronize()
                times = []
                for _ in range(10):
                    t0 = time.perf_counter()
                    runner.infer(batch)
                    torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
                p50 = statistics.median(times)
                out[f"{name}/{precision}/b{batch_size}"] = {"p50_ms": round(p50 * 1e3, 3), "items_per_s": round(batch_size / p50, 1)}
            runner.close()
    return out


def _service_command(args: argparse.Namespace, out: Path) -> list[str]:
    return [sys.executable, "-m", "benchmarks.night", "--quick", "--alerts", str(args.service_alerts),
            "--service-backend", "tensorrt", "--backends", "tensorrt", "onnxruntime", "--out", str(out / "service")]


def step_service(args: argparse.Namespace, out: Path, remaining_s: float) -> dict[str, Any]:
    command = _service_command(args, out)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=max(60.0, remaining_s))
    tail = (done.stdout + done.stderr)[-3000:]
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {tail}")
    summary = out / "service" / "night.json"
    return {"command": " ".join(command[1:]), "results": str(summary), "tail": tail[-1500:]}


def dry_run(args: argparse.Namespace, out: Path) -> int:
    """Resolve every step without a GPU; non-zero if one cannot resolve."""
    from benchmarks import night
    from engines.backends.tensorrt_backend import TENSORRT_API_NAMES
    from engines.preprocess import PREPROCESSORS
    from engines.registry import load_registry

    steps = Steps(args.budget_s)
    registry = steps.run("registry", load_registry)
    names = steps.run("models", lambda: _models(registry, args.models)) if registry else None
    alerts = steps.run("bundled_inputs", _bundled_alerts)

    def preprocessing() -> dict[str, Any]:
        shapes = {}
        for name in names or []:
            card = registry.card(name)
            if card.preprocessing not in PREPROCESSORS:
                raise KeyError(f"{name}: preprocessing {card.preprocessing!r} is not registered")
            items = _inputs_for(card, alerts or [])
            if items:
                batch = PREPROCESSORS[card.preprocessing](items[:4], "cpu")
                shapes[name] = [list(t.shape) for t in batch] if isinstance(batch, (tuple, list)) else list(batch.shape)
        return shapes

    def tensorrt_names() -> dict[str, Any]:
        import importlib.util

        # The names themselves are checked against the bindings' strings by tests/engines/test_tensorrt.py.
        return {"bindings_installed": importlib.util.find_spec("tensorrt_bindings") is not None,
                "api_names": len(TENSORRT_API_NAMES)}

    def service_args() -> list[str]:
        command = _service_command(args, out)
        night.parse_args(command[3:])
        return command[1:]

    def writable() -> str:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".gpu_check_probe"
        probe.write_text("ok")
        probe.unlink()
        return str(out)

    steps.run("preprocess_cpu", preprocessing)
    steps.run("tensorrt_api", tensorrt_names)
    steps.run("service_args", service_args)
    steps.run("results_folder", writable)
    print(json.dumps({"dry_run": True, "failures": steps.failures, "steps": list(steps.results)}, indent=None))
    return 1 if steps.failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or RESULTS / host_label()
    if args.dry_run:
        return dry_run(args, out)
    from engines.registry import load_registry

    steps = Steps(args.budget_s)
    registry = load_registry()
    names = _models(registry, args.models)
    alerts = _bundled_alerts()
    if steps.run("device", lambda: step_device(args.device)) is None:
        print("no usable CUDA device / TensorRT: nothing else can run", flush=True)
    else:
        steps.run("build", lambda: step_build(registry, names, args))
        steps.run("parity", lambda: step_parity(registry, names, alerts, args))
        steps.run("preprocess", lambda: step_preprocess(registry, names, alerts, args))
        steps.run("limits", lambda: step_limits(registry, names, alerts, args))
        remaining = args.budget_s - (time.perf_counter() - steps.started)
        steps.run("service", lambda: step_service(args, out, remaining))
    out.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine_stamp(), "models": names, "tolerance": TOLERANCE, "steps": steps.results, "failures": steps.failures}
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "gpu_check.md").write_text(_markdown(report))
    print(f"results: {out}/gpu_check.{{json,md}}; failures: {steps.failures or 'none'}", flush=True)
    return 1 if steps.failures else 0


def _markdown(report: dict[str, Any]) -> str:
    lines = [f"# GPU check on {report['machine'].get('cuda_device')}", "",
             f"commit {report['machine'].get('git_commit')}, models: {', '.join(report['models'])}", ""]
    for name, step in report["steps"].items():
        lines.append(f"## {name}")
        lines.append("")
        if "result" in step and isinstance(step["result"], dict):
            for key, value in step["result"].items():
                lines.append(f"- `{key}`: {json.dumps(value, default=str)[:300]}")
        else:
            lines.append(f"- {json.dumps(step, default=str)[:500]}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
