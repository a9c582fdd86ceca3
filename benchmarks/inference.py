"""Per-backend inference throughput: ``python -m benchmarks.inference``.

For realbogus and iicnet, at batch 1, 64 and 256: torch eager, ONNX Runtime, OpenVINO f32 and
OpenVINO bf16, all on the CPU, in the same run. Each measurement warms up, then times
``infer`` calls with ``perf_counter`` for about ``--seconds`` (at least 3 calls) and reports
p50 / p95 latency per batch and throughput (inputs per second at p50). Inputs are uniform
[0, 1) batches of the network's input shape (preprocessing is not timed). Untrained seeded
weights do not change the cost of a forward pass.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

__all__ = ["main", "measure"]

CONFIGS: tuple[tuple[str, str | None], ...] = (
    ("torch", None),
    ("onnxruntime", None),
    ("openvino", "f32"),
    ("openvino", "bf16"),
)


def measure(infer, batch: np.ndarray, seconds: float, warmup: int = 2) -> tuple[float, float, int]:
    """(p50 s, p95 s, calls) of ``infer(batch)`` over about ``seconds`` after ``warmup`` calls."""
    for _ in range(warmup):
        infer(batch)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        infer(batch)
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), len(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CPU inference throughput per backend")
    parser.add_argument("--models", default="realbogus,iicnet")
    parser.add_argument("--batches", default="1,64,256")
    parser.add_argument("--seconds", type=float, default=1.0, help="timing budget per measurement")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per backend (0: backend default)")
    parser.add_argument("--cache-dir", default=None, help="ONNX cache (default: a temporary directory)")
    args = parser.parse_args(argv)

    import torch

    from engines.registry import load_registry
    from stream.logs import configure_logging

    configure_logging("console", "warning")  # logs to stderr; the table alone on stdout

    if args.threads:
        torch.set_num_threads(args.threads)
    registry = load_registry()
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="bench-engines-")
    batches = [int(b) for b in args.batches.split(",")]
    load = os.getloadavg()
    print(f"# host: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"torch {torch.__version__} threads={torch.get_num_threads()}; {args.seconds}s per cell")
    print(f"{'model':<10} {'backend':<16} {'batch':>5} {'p50 ms':>9} {'p95 ms':>9} {'inputs/s':>10} {'calls':>6}")
    rng = np.random.default_rng(0)
    for name in args.models.split(","):
        contract = registry.card(name).contract
        for backend, precision in CONFIGS:
            options = {"threads": args.threads} if args.threads and backend != "torch" else {}
            runner = registry.load_runner(name, backend, cache_dir=cache_dir, allow_untrained=True, precision=precision, **options)
            label = backend if precision is None else f"{backend}-{runner.provenance.extra['precision']}"
            for n in batches:
                inputs = [rng.random(shape, dtype=np.float32) for shape in contract.input_shapes(n)]  # + features (ACAI)
                inputs = [torch.from_numpy(a) for a in inputs] if backend == "torch" else inputs
                x = tuple(inputs) if len(inputs) > 1 else inputs[0]
                p50, p95, calls = measure(runner.infer, x, args.seconds)
                print(f"{name:<10} {label:<16} {n:>5} {p50 * 1e3:>9.2f} {p95 * 1e3:>9.2f} {n / p50:>10.0f} {calls:>6}", flush=True)
            runner.close()
    load = os.getloadavg()
    print(f"# load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
