"""The engine registry: which models exist (their cards), which apply to an input kind, and
a loaded :class:`ModelRunner` (preprocessing + engine + provenance) for one of them.

The service calls ``load_registry()`` once, asks ``cards_for(kind)`` and keeps the runners
from ``load_runner(...)`` for its lifetime (weights are never reloaded per batch).
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
from torch import nn

from engines.backends import BACKENDS, open_onnx_engine
from engines.cards import ModelCard, load_card
from engines.contract import Engine, EngineError, ModelProvenance
from engines.export import export_onnx, file_sha256
from engines.networks import load_weights, seeded_network
from engines.preprocess import PREPROCESSORS
from schemas.alert import Alert, Exposure, InputKind

__all__ = [
    "CARDS_DIR",
    "WEIGHTS_DIR",
    "Registry",
    "ModelRunner",
    "load_registry",
    "load_network",
    "state_sha256",
    "onnx_path_for",
]

log = structlog.get_logger(__name__)

ENGINES_DIR = Path(__file__).resolve().parent
CARDS_DIR = ENGINES_DIR / "cards"
WEIGHTS_DIR = ENGINES_DIR / "weights"


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names, dtypes, shapes and bytes, in key order."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def load_network(card: ModelCard, weights_dir: Path = WEIGHTS_DIR) -> nn.Module:
    """The card's network with its weights, checked against the card's sha256 (eval mode).

    Three forms: a full state dict file; a delta file (trained tensors and low-rank updates over
    the seeded network, :mod:`engines.networks.delta_weights`), whose seeded base is checked
    against the card's ``base_sha256``; no file, the seeded network itself (untrained).
    """
    if card.weights_file:
        path = weights_dir / card.weights_file
        if not path.is_file():
            raise EngineError(f"{card.name}: weights file {path} is missing")
        actual = file_sha256(path)
        if actual != card.weights_sha256:
            raise EngineError(f"{card.name}: weights {path} sha256 {actual} != card {card.weights_sha256}")

        def check_base(seed: int, base: nn.Module) -> None:
            if card.init_seed is not None and seed != card.init_seed:
                raise EngineError(f"{card.name}: delta file {path} is over seed {seed}, the card says {card.init_seed}")
            _check_seeded(card, seed, base, card.base_sha256)

        try:
            return load_weights(card.network, path, check_base=check_base, **card.network_args)
        except EngineError:
            raise
        except (RuntimeError, OSError, KeyError) as exc:
            raise EngineError(f"{card.name}: cannot load weights {path}: {exc}") from exc
    if card.init_seed is None:
        raise EngineError(f"{card.name}: card names neither a weights file nor an init_seed")
    network = seeded_network(card.network, card.init_seed, **card.network_args)
    _check_seeded(card, card.init_seed, network, card.weights_sha256)
    return network


def _check_seeded(card: ModelCard, seed: int, network: nn.Module, expected_sha256: str) -> None:
    """A seeded network's state hash must be ``expected_sha256`` (when given): a torch whose
    initialisation differs cannot rebuild the weights silently."""
    if expected_sha256:
        actual = state_sha256(network.state_dict())
        if actual != expected_sha256:
            raise EngineError(f"{card.name}: seeded weights (seed {seed}, torch {torch.__version__}) hash {actual} "
                              f"!= card {expected_sha256}")


def onnx_path_for(card: ModelCard, cache_dir: str | Path, precision: str = "fp32") -> Path:
    """Where the card's ONNX export lives: keyed by name, version, weights and precision."""
    return Path(cache_dir) / f"{card.name}-{card.version}-{card.weights_sha256[:16]}-{precision}.onnx"


class ModelRunner:
    """One model on one backend: ``preprocess`` -> ``infer`` (probabilities), or ``score``.

    One preprocessed row per item. For raw exposures a row holds the exposure's CCD chips
    side by side, (N, chips, H, W) for a (1, H, W) network: ``infer`` scores every chip and
    returns the mean over an exposure's chips, so the output is still (N, K).
    """

    def __init__(self, card: ModelCard, engine: Engine, provenance: ModelProvenance, device: str) -> None:
        self.card = card
        self.engine = engine
        self.provenance = provenance
        self.labels: tuple[str, ...] = card.labels
        self.max_batch: int = card.contract.max_batch
        self.device = device
        self._preprocess = PREPROCESSORS[card.preprocessing]

    def preprocess(self, items: Sequence[Alert | Exposure]) -> torch.Tensor:
        """The batched network input on this runner's device, one row per item."""
        return self._preprocess(items, self.device)

    def infer(self, batch: torch.Tensor) -> np.ndarray:
        """(N, K) float32 probabilities (softmax applied) for a preprocessed batch; engine calls
        are chunked to the engine's max batch."""
        channels = self.card.contract.shape[0]
        n = int(batch.shape[0])
        groups = 1
        if batch.ndim == 4 and batch.shape[1] != channels and channels == 1:
            groups = int(batch.shape[1])           # chips per exposure, scored separately
            batch = batch.reshape(n * groups, 1, *batch.shape[2:])
        step = self.card.contract.max_batch
        rows = [self.engine.infer(batch[i:i + step]) for i in range(0, int(batch.shape[0]), step)]
        probabilities = np.concatenate(rows) if rows else np.empty((0, len(self.labels)), np.float32)
        if groups > 1:
            probabilities = probabilities.reshape(n, groups, -1).mean(axis=1)
        return probabilities.astype(np.float32, copy=False)

    def score(self, items: Sequence[Alert | Exposure]) -> np.ndarray:
        """(len(items), K) probabilities: preprocess + infer in chunks of ``max_batch`` items."""
        chunks = [self.infer(self.preprocess(items[i:i + self.max_batch])) for i in range(0, len(items), self.max_batch)]
        return np.concatenate(chunks) if chunks else np.empty((0, len(self.labels)), np.float32)

    def close(self) -> None:
        self.engine.close()


class Registry:
    """All model cards, by name; builds runners on demand.

    ``cards`` are the current version of each model; ``earlier`` are superseded versions kept
    loadable (``engines/cards/versions/``): a model is named ``"name"`` (its current version)
    or ``"name@version"`` (any version), in :meth:`card`, :meth:`load_runner` and
    :meth:`selected` (the service's ``engine.models``)."""

    def __init__(self, cards: Sequence[ModelCard], weights_dir: Path = WEIGHTS_DIR,
                 earlier: Sequence[ModelCard] = ()) -> None:
        self.cards: dict[str, ModelCard] = {}
        for card in cards:
            if card.name in self.cards:
                raise EngineError(f"two model cards are named {card.name!r}")
            self.cards[card.name] = card
        self.versions: dict[str, ModelCard] = {f"{c.name}@{c.version}": c for c in self.cards.values()}
        for card in earlier:
            ref = f"{card.name}@{card.version}"
            if ref in self.versions:
                raise EngineError(f"two model cards are {ref!r}")
            self.versions[ref] = card
        self.weights_dir = weights_dir

    def card(self, name: str) -> ModelCard:
        """The card of ``name`` (current version) or ``name@version``."""
        found = self.versions.get(name) if "@" in name else self.cards.get(name)
        if found is None:
            raise EngineError(f"no model card named {name!r} (have {sorted(self.cards)}; versions {sorted(self.versions)})")
        return found

    def cards_for(self, kind: InputKind) -> list[ModelCard]:
        """Cards of the models that score inputs of ``kind``, in name order (current versions)."""
        return [c for _, c in sorted(self.cards.items()) if kind in c.input_kinds]

    def selected(self, kind: InputKind, models: Sequence[str] = ()) -> list[ModelCard]:
        """The cards to run on ``kind``: every current one when ``models`` is empty, else those
        named (``name`` or ``name@version``) that score ``kind``, one version per name."""
        if not models:
            return self.cards_for(kind)
        chosen: dict[str, ModelCard] = {}
        for ref in models:
            card = self.card(ref)
            if kind in card.input_kinds:
                if card.name in chosen and chosen[card.name].version != card.version:
                    raise EngineError(f"two versions of {card.name!r} named in the models list")
                chosen[card.name] = card
        return [chosen[name] for name in sorted(chosen)]

    def export(self, name: str, cache_dir: str | Path = "var/engines", precision: str = "fp32") -> Path:
        """The card's ONNX file in ``cache_dir``, exported now if it is not there yet."""
        card = self.card(name)
        path = onnx_path_for(card, cache_dir, precision)
        if not path.is_file():
            export_onnx(load_network(card, self.weights_dir), card.contract, path, precision)
        return path

    def load_runner(
        self,
        name: str,
        backend: str,
        device: str = "cpu",
        cache_dir: str = "var/engines",
        allow_untrained: bool = False,
        precision: str | None = None,
        **engine_options: Any,
    ) -> ModelRunner:
        """A loaded runner for model ``name`` on ``backend`` (torch, onnxruntime, openvino,
        tensorrt). Refuses untrained models unless ``allow_untrained``. ``precision``: for
        openvino "f32" (default) or "bf16"; for tensorrt "fp16"/"fp32" (default: by GPU)."""
        card = self.card(name)
        if not card.trained and not allow_untrained:
            raise EngineError(f"model {name!r} is not trained (card trained = false); pass allow_untrained to use it anyway")
        if backend not in BACKENDS:
            raise EngineError(f"unknown backend {backend!r}; known: {BACKENDS}")
        extra: dict[str, Any] = {}
        if backend == "torch":
            from engines.backends.torch_backend import TorchEngine  # noqa: PLC0415

            engine: Engine = TorchEngine(load_network(card, self.weights_dir), card.contract, device=device, **engine_options)
        elif backend == "tensorrt":
            from engines.backends.tensorrt_backend import import_tensorrt, precision_for_device  # noqa: PLC0415

            precision = precision_for_device(device, precision)  # raises EngineError without CUDA
            import_tensorrt()  # fail before exporting anything when TensorRT cannot load
            onnx = self.export(name, cache_dir, precision)
            extra["onnx_sha256"] = file_sha256(onnx)
            engine = open_onnx_engine(
                backend, onnx, card.contract, device=device, precision=precision, cache_dir=cache_dir,
                onnx_sha256=extra["onnx_sha256"], **engine_options,
            )
        else:
            onnx = self.export(name, cache_dir, "fp32")
            extra["onnx_sha256"] = file_sha256(onnx)
            if backend == "openvino":
                engine_options["precision"] = precision or "f32"
            elif precision not in (None, "fp32", "f32"):
                raise EngineError(f"onnxruntime runs the fp32 export only, not {precision!r}")
            engine = open_onnx_engine(backend, onnx, card.contract, device=device, **engine_options)
        extra["precision"] = getattr(engine, "precision", "fp32")
        provenance = ModelProvenance(card.name, card.version, card.weights_sha256, card.trained, backend, extra)
        log.info("runner_loaded", model=name, backend=backend, device=device, trained=card.trained, **extra)
        return ModelRunner(card, engine, provenance, device)


def load_registry(cards_dir: str | Path | None = None, weights_dir: str | Path | None = None) -> Registry:
    """Read every ``*.toml`` card in ``cards_dir`` (default: engines/cards) and the superseded
    versions in its ``versions/`` folder."""
    cards_dir = Path(cards_dir) if cards_dir is not None else CARDS_DIR
    paths = sorted(cards_dir.glob("*.toml"))
    if not paths:
        raise EngineError(f"no model cards in {cards_dir}")
    earlier = [load_card(p) for p in sorted((cards_dir / "versions").glob("*.toml"))]
    return Registry([load_card(p) for p in paths], Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR, earlier)
