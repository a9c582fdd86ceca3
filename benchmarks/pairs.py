"""Did a change make the service faster? ``python -m benchmarks.pairs --before REV [--after REV]
[--alerts N] [--pairs K] [--out FILE]``.

One drain's throughput moves by about 4 % from run to run on a 2-core host, and by more from hour
to hour, which is more than most single changes do. So this runs the same drain from two trees
in turn, K times each: ``--before REV`` (a git worktree made for the run and removed after) and
``--after`` (this checkout as it is on disk, or another REV). Each drain is the night
benchmark's asap run (:func:`benchmarks.service_run.run_service`: a pre-loaded topic on the
embedded broker and Redis, every alert model on ONNX Runtime, default batch settings), in a
process of its own whose imports come from its tree, so the service under test is that tree's.

Prints a line per drain and writes ``--out`` (JSON): alerts/s, steady alerts/s, the service's
CPU ms per alert and cores busy per drain, and per pair the after/before ratios, with how many
pairs agree in sign.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["drain", "main", "pair_figures", "worktree"]

REPO = Path(__file__).resolve().parents[1]

#: The drain, run with its tree as the working directory (so its imports are that tree's).
#: Only public names and :func:`benchmarks.night._engine_env`, which older trees have too.
_DRAIN = """
import json, sys
from benchmarks.night import _engine_env
from benchmarks.night_data import build_night
from benchmarks.service_run import run_service
from stream.stack import EmbeddedStack
night = build_night(int(sys.argv[1]), exposures=0)
with EmbeddedStack() as stack:
    s = run_service("asap", night.alerts, stack=stack, service_env=_engine_env("onnxruntime", "cpu")).summary()
keys = ("inputs", "outputs", "complete", "throughput_per_s", "steady_throughput_per_s", "service_cpu_ms_per_alert")
print("PAIRS-RESULT " + json.dumps({**{k: s.get(k) for k in keys}, "cores_busy": (s.get("cpu_cores_busy") or {}).get("service")}))
"""

#: The figures compared between the trees, and whether more is better.
COMPARED = {"throughput_per_s": True, "steady_throughput_per_s": True, "service_cpu_ms_per_alert": False}


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A detached git worktree of ``rev`` in a temporary folder, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="sc-pairs-"))
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(folder), rev], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)], check=False)


def drain(tree: Path, alerts: int, timeout_s: float = 1800.0) -> dict[str, Any]:
    """One asap drain of ``alerts`` alerts through the service of ``tree``; its figures."""
    proc = subprocess.run([sys.executable, "-c", _DRAIN, str(alerts)], cwd=tree, capture_output=True, text=True,
                          timeout=timeout_s, env={**os.environ, "PYTHONPATH": str(tree)})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PAIRS-RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the drain in {tree} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return dict(json.loads(lines[-1].split(" ", 1)[1]))


def pair_figures(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure: the after / before ratio of each pair, their mean, and how many pairs favour after."""
    out: dict[str, Any] = {}
    for key, more_is_better in COMPARED.items():
        ratios = [a[key] / b[key] for b, a in zip(before, after) if a.get(key) and b.get(key)]
        better = sum((r > 1) if more_is_better else (r < 1) for r in ratios)
        out[key] = {"ratios": [round(r, 4) for r in ratios], "mean_ratio": round(sum(ratios) / len(ratios), 4) if ratios else None,
                    "pairs_favouring_after": better, "pairs": len(ratios)}
    return out


def _describe(rev: str | None) -> str:
    if rev is None:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return f"{head}{'+dirty' if dirty else ''} (this checkout)"
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev], capture_output=True, text=True, check=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pairs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the git revision to compare against")
    parser.add_argument("--after", default=None, help="a git revision (default: this checkout, as it is on disk)")
    parser.add_argument("--alerts", type=int, default=20000, help="alerts per drain (default 20,000: ~30 s each)")
    parser.add_argument("--pairs", type=int, default=3, help="drains per tree, in turn (default 3)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    started, load_start = time.time(), os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    with contextlib.ExitStack() as stack:
        trees = {"before": stack.enter_context(worktree(args.before)),
                 "after": stack.enter_context(worktree(args.after)) if args.after else REPO}
        for i in range(1, args.pairs + 1):
            for side in ("before", "after"):
                figures = drain(trees[side], args.alerts)
                runs[side].append(figures)
                print(f"pair {i} {side:6s} {figures['throughput_per_s']} alerts/s (steady {figures['steady_throughput_per_s']}), "
                      f"{figures['service_cpu_ms_per_alert']} CPU ms per alert, {figures['cores_busy']} cores busy", flush=True)
    result = {"command": "python -m benchmarks.pairs " + " ".join(argv if argv is not None else sys.argv[1:]),
              "before": _describe(args.before), "after": _describe(args.after), "alerts": args.alerts,
              "started_unix": started, "seconds": round(time.time() - started, 1),
              "load_average_start": load_start, "load_average_end": os.getloadavg(),
              "runs": runs, "compared": pair_figures(runs["before"], runs["after"])}
    for key, figures in result["compared"].items():
        print(f"{key}: after / before {figures['ratios']} (mean {figures['mean_ratio']}), "
              f"{figures['pairs_favouring_after']} of {figures['pairs']} pairs favour after")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
