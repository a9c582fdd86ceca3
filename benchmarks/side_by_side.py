"""Do the cores slow each other? ``python -m benchmarks.side_by_side [--alerts N] [--rounds R]``.

The machine limit (:func:`benchmarks.limits.machine_limit`) spreads one-core stage costs over the
usable cores, so it assumes a core runs as fast beside busy neighbours as alone. This checks
that assumption with the least machinery there is: the one-process bare loop
(:func:`benchmarks.limits.bare_loop`: decode, preprocess, infer, one thread, the service's engine
batch, every alert model on ONNX Runtime) in one process alone, then in one process per usable
core at once, alternating ``--rounds`` times. Each process times only its own loop (after
loading and a warm-up, from a shared start time), so the figure is CPU milliseconds per alert
of the same work alone and beside its neighbours. A ratio near 1 says the cores do not slow
each other, and whatever the service spends over the limit is its own work; well above 1 says
shared caches or memory bandwidth make the limit unreachable by any design on this machine.

Writes ``--out`` (JSON) and prints one line per run.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue as queue_module
import statistics
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["loop_in_process", "main", "run_round"]

#: seconds between starting the processes and their common start: loading the models, the
#: night and one warm-up pass must fit (the slowest process waits for none: a late one is reported)
START_DELAY_S = 60.0


def loop_in_process(start_at: float, alerts: int, queue: Any) -> None:
    """One process: the night, the runners on one thread, a warm-up, then the timed bare loop."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    from benchmarks import limits
    from benchmarks.night import CPU_INFER_BATCH, _load_alert_runners, _settings
    from benchmarks.night_data import build_night
    from schemas.alert import InputKind

    torch.set_num_threads(1)
    values = build_night(alerts, exposures=0).values
    runners = _load_alert_runners("onnxruntime", "cpu")
    for runner in runners:
        runner.max_batch = min(int(runner.max_batch), CPU_INFER_BATCH)
    settings = _settings("onnxruntime", "cpu")
    by_kind = {InputKind.DIFFERENCE_ALERT: runners}
    limits.bare_loop(values[:256], by_kind, settings, 256)
    late = time.time() > start_at
    while time.time() < start_at:
        time.sleep(0.01)
    cpu0 = time.process_time()
    timing, _ = limits.bare_loop(values, by_kind, settings, 256)
    queue.put({"pid": os.getpid(), "alerts_per_s": round(timing.per_s, 1),
               "cpu_ms_per_alert": round((time.process_time() - cpu0) * 1000 / len(values), 4), "late": late})


def run_round(processes: int, alerts: int, start_delay_s: float = START_DELAY_S) -> list[dict[str, Any]]:
    """``processes`` bare loops started together; each one's figures."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + start_delay_s
    procs = [ctx.Process(target=loop_in_process, args=(start_at, alerts, queue)) for _ in range(processes)]
    for p in procs:
        p.start()
    results: list[dict[str, Any]] = []
    try:
        while len(results) < processes:
            try:
                results.append(queue.get(timeout=1.0))
            except queue_module.Empty:
                failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if failed:
                    raise RuntimeError(f"a bare-loop process exited with {failed[0]} (its error is above)") from None
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return results


def main(argv: list[str] | None = None) -> int:
    from benchmarks.limits import usable_cores

    parser = argparse.ArgumentParser(prog="python -m benchmarks.side_by_side", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=5000, help="alerts per loop (default 5000)")
    parser.add_argument("--rounds", type=int, default=2, help="alone / side by side pairs, alternating (default 2)")
    parser.add_argument("--processes", type=int, default=None, help="side by side (default: the usable cores)")
    parser.add_argument("--start-delay", type=float, default=START_DELAY_S,
                        help=f"seconds for loading before the common start (default {START_DELAY_S:g})")
    parser.add_argument("--out", type=Path, default=Path("var/side_by_side.json"))
    args = parser.parse_args(argv)
    beside = args.processes or usable_cores()
    if beside < 2:
        print("side_by_side: fewer than 2 usable cores: nothing to compare", file=sys.stderr)
        return 2
    runs: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for processes in (1, beside):
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            loops = run_round(processes, args.alerts, args.start_delay)
            runs.append({"round": r + 1, "processes": processes, "started_utc": started,
                         "load_average": os.getloadavg(), "loops": loops})
            ms = [lp["cpu_ms_per_alert"] for lp in loops]
            print(f"round {r + 1}: {processes} process(es): CPU ms per alert {', '.join(f'{m:.3f}' for m in ms)}"
                  + ("  (a process was late: loading outlasted --start-delay)" if any(lp["late"] for lp in loops) else ""),
                  flush=True)
    alone = [lp["cpu_ms_per_alert"] for run in runs if run["processes"] == 1 for lp in run["loops"]]
    together = [lp["cpu_ms_per_alert"] for run in runs if run["processes"] > 1 for lp in run["loops"]]
    summary = {"alerts": args.alerts, "processes_side_by_side": beside, "alone_ms_median": statistics.median(alone),
               "side_by_side_ms_median": statistics.median(together),
               "ratio": round(statistics.median(together) / statistics.median(alone), 3), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(f"median CPU ms per alert: alone {summary['alone_ms_median']:.3f}, {beside} side by side "
          f"{summary['side_by_side_ms_median']:.3f}: ratio {summary['ratio']:.3f} ({args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
