"""``survey-classifier engines build|list|describe``: export and build engines, show what is built.

* ``build``: export each model's ONNX (dynamic batch) into the cache dir and load it on every
  backend this host can run (ONNX Runtime, OpenVINO; TensorRT where CUDA and TensorRT load),
  with one smoke batch each; prints progress. ``--backend`` picks one backend.
* ``list``: the built artefacts (ONNX files, TensorRT engines) with the provenance of each.
* ``describe``: JSON with each network's parameter count, multiply-accumulates and input and
  output shapes (HR-CelestialNet is measured on the meta device: no memory is allocated).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from engines.backends import BACKENDS, ENGINE_CACHE_DIR

__all__ = ["register"]

_DEFAULT_MODELS = "realbogus,iicnet"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("engines", help="export ONNX and build engines; list and describe them")
    p.add_argument("action", choices=("build", "list", "describe"))
    p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS), help="auto (every ONNX backend this host can run) or one backend")
    p.add_argument("--models", default=_DEFAULT_MODELS, help=f"comma-separated model names or 'all' (default {_DEFAULT_MODELS})")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda for tensorrt, else cpu)")
    p.add_argument("--cache-dir", default=ENGINE_CACHE_DIR, help=f"where ONNX files and engines go (default {ENGINE_CACHE_DIR})")
    p.set_defaults(func=_run)


def _models(registry, spec: str) -> list[str]:
    from stream.errors import UsageError, did_you_mean

    names = sorted(registry.cards) if spec == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    for name in names:
        if name not in registry.cards:  # a typo is the user's to fix: one line, exit status 2
            raise UsageError(f"--models: no model named {name!r}{did_you_mean(name, registry.cards)} "
                             f"(known: {', '.join(sorted(registry.cards))}, or 'all')")
    return names


def _host_backends() -> list[str]:
    from engines.contract import EngineError

    backends = ["onnxruntime", "openvino"]
    try:
        from engines.backends.tensorrt_backend import _require_cuda, import_tensorrt

        _require_cuda("cuda")
        import_tensorrt()
        backends.append("tensorrt")
    except EngineError as exc:
        print(f"# tensorrt: skipped on this host ({exc})", flush=True)
    return backends


def _build(args: argparse.Namespace) -> int:
    import numpy as np

    from engines.contract import EngineError
    from engines.registry import load_registry

    registry = load_registry()
    backends = _host_backends() if args.backend == "auto" else [args.backend]
    failures = 0
    for name in _models(registry, args.models):
        card = registry.card(name)
        if not card.trained:
            print(f"# {name}: card says trained = false (seeded weights); building anyway", flush=True)
        for backend in backends:
            device = args.device or ("cuda" if backend == "tensorrt" else "cpu")
            started = time.perf_counter()
            print(f"{name} {backend}: building ...", flush=True)
            try:
                runner = registry.load_runner(name, backend, device=device, cache_dir=args.cache_dir, allow_untrained=True)
                smoke = tuple(np.zeros(shape, dtype=np.float32) for shape in card.contract.input_shapes(1))  # + features (ACAI)
                probabilities = runner.infer(smoke if len(smoke) > 1 else smoke[0])
                runner.close()
            except EngineError as exc:
                failures += 1
                print(f"{name} {backend}: FAILED: {exc}", flush=True)
                continue
            extra = runner.provenance.extra
            print(f"{name} {backend}: ok in {time.perf_counter() - started:.1f}s precision={extra.get('precision')} "
                  f"onnx_sha256={extra.get('onnx_sha256', '-')[:16]} smoke={np.round(probabilities[0], 4).tolist()}", flush=True)
    return 1 if failures else 0


def _list(args: argparse.Namespace) -> int:
    from engines.registry import load_registry, onnx_path_for

    registry = load_registry()
    cache = Path(args.cache_dir)
    # trained_on: real (survey alerts), simulated, imported (another team's trained model) or
    # untrained; surveys: those the card says it was trained and checked on (the only ones it
    # scores); default: whether the service runs it when engine.models is empty (yes: the current
    # version, trained, and its card passes the bar on held-out data; by-name: loadable as
    # NAME or NAME@VERSION only; older: a superseded version)
    rows = [("model", "version", "default", "trained_on", "surveys", "weights_sha256", "artefact")]
    for _ref, card in sorted(registry.versions.items()):  # current and superseded versions
        current = registry.cards.get(card.name) is card
        name = card.name if current else f"{card.name}@{card.version}"
        default = "older" if not current else "yes" if card.passes_bar and card.trained else "by-name"
        artefacts = []
        for precision in ("fp32", "fp16"):
            onnx = onnx_path_for(card, cache, precision)
            if onnx.is_file():
                artefacts.append(f"{onnx.name} ({onnx.stat().st_size / 1e6:.1f} MB)")
                artefacts += [f"{e.name} ({e.stat().st_size / 1e6:.1f} MB)" for e in sorted(cache.glob(f"{onnx.stem}-*.engine"))]
        for artefact in artefacts or ["(not built)"]:
            rows.append((name, card.version, default, _trained_on(card), ",".join(card.surveys) or "-",
                         card.weights_sha256[:16], artefact))
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("".join(cell.ljust(width) for cell, width in zip(row, widths)) + row[-1])
    return 0


def _trained_on(card: Any) -> str:
    """What the card says the weights were trained on, in one word."""
    if not card.trained:
        return "untrained"
    if card.training.get("synthetic") is True:
        return "simulated"
    if str(card.training.get("data", "")).startswith("Not ours"):
        return "imported"
    return "real"


def _describe(_args: argparse.Namespace) -> int:
    import torch

    from engines.macs import count_macs, count_params, output_shape
    from engines.networks import NETWORKS, build_network
    from engines.registry import load_registry

    cards = {card.network: card for card in load_registry().cards.values()}
    out = {}
    for name, spec in NETWORKS.items():
        device = "meta" if name == "hrcelestialnet" else "cpu"
        with torch.device(device):
            network = build_network(name)
        shape = (1, *spec.input_shape)
        out[name] = {
            "parameters": count_params(network),
            "macs": count_macs(network, shape, device, spec.extra_inputs),
            "input_shape": list(spec.input_shape),
            "output_shape": list(output_shape(network, shape, device, spec.extra_inputs)[1:]),
            "labels": list(spec.labels),
            # which inputs the model scores (difference_alert: ZTF and Rubin alert topics; the others: exposure topics)
            "input_kinds": [kind.value for kind in cards[name].input_kinds] if name in cards else [],
        }
    print(json.dumps(out, indent=2))
    return 0


def _run(args: argparse.Namespace) -> int:
    return {"build": _build, "list": _list, "describe": _describe}[args.action](args)
