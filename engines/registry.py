"""The engine registry: which models exist (their cards), which apply to an input kind, and
a loaded :class:`ModelRunner` (preprocessing + engine + provenance) for one of them.

The service calls ``load_registry()`` once, asks ``cards_for(kind)`` and keeps the runners
from ``load_runner(...)`` for its lifetime (weights are never reloaded per batch).
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
from torch import nn

from engines.backends import BACKENDS, ENGINE_CACHE_DIR, open_onnx_engine
from engines.cache_records import record_sha256, why_untrusted
from engines.cards import ModelCard, load_card
from engines.contract import Engine, EngineError, ModelProvenance
from engines.export import export_onnx, file_sha256
from engines.networks import load_weights, seeded_network
from engines.networks.ztf_keras import KERAS_NETWORKS
from engines.preprocess import APPLIES, PREPROCESSORS
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
    "check_cache_dir",
    "files_sha256",
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


def files_sha256(paths: Sequence[Path]) -> str:
    """sha256 over ``"<file name> <file sha256>\n"`` per file, in order: the identity of a model
    made of several weight files (ACAI's five heads and braai d6_m9)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{Path(path).name} {file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _load_keras_network(card: ModelCard, weights_dir: Path) -> nn.Module:
    """An imported Keras network (braai, ACAI) from the card's ``.h5`` files, checked first."""
    if not card.weights_files:
        raise EngineError(f"{card.name}: network {card.network!r} needs [weights] files")
    paths = [weights_dir / name for name in card.weights_files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise EngineError(f"{card.name}: weights files missing: {missing}")
    actual = files_sha256(paths)
    if actual != card.weights_sha256:
        raise EngineError(f"{card.name} {card.version}: weights sha256 {actual} != card {card.weights_sha256}")
    try:
        return KERAS_NETWORKS[card.network](paths).eval()
    except (OSError, KeyError, ValueError) as exc:
        raise EngineError(f"{card.name}: cannot import Keras model {paths}: {exc}") from exc


def load_network(card: ModelCard, weights_dir: Path = WEIGHTS_DIR) -> nn.Module:
    """The card's network with its weights, checked against the card's sha256 (eval mode).

    Three forms: a full state dict file; a delta file (trained tensors and low-rank updates over
    the seeded network, :mod:`engines.networks.delta_weights`), whose seeded base is checked
    against the card's ``base_sha256``; no file, the seeded network itself (untrained).
    Imported Keras networks (``network`` braai / acai) are read from the card's ``.h5`` files
    (:mod:`engines.networks.keras_h5`), checked against :func:`files_sha256`.
    """
    if card.network in KERAS_NETWORKS:
        return _load_keras_network(card, weights_dir)
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


def check_cache_dir(cache_dir: str | Path) -> Path:
    """The directory to keep engines in: ``cache_dir`` itself, made for its owner only where
    missing; where others may write to it (a Kubernetes ``emptyDir`` is mode 0777), a private
    subdirectory ``private-<uid>`` of it, mode 0700, which must be ours and writable by us alone.
    Anything else is refused: anyone could plant an engine there."""
    import os
    import stat

    path = Path(cache_dir)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.stat().st_mode & stat.S_IWOTH:
        return path
    private = path / f"private-{os.getuid()}"
    try:
        private.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(private)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise EngineError(f"engine cache {path} is writable by others and its private directory {private.name} is not ours "
                          f"alone (mode {stat.filemode(info.st_mode)}, uid {info.st_uid}): anyone could plant an engine there; "
                          f"use a directory only this service writes")
    return private


def onnx_path_for(card: ModelCard, cache_dir: str | Path, precision: str = "fp32") -> Path:
    """Where the card's ONNX export lives: keyed by name, version, weights and precision."""
    return Path(cache_dir) / f"{card.name}-{card.version}-{card.weights_sha256[:16]}-{precision}.onnx"


class ModelRunner:
    """One model on one backend: ``preprocess`` -> ``infer`` (probabilities), or ``score``.

    ``select(items)`` says which items the model scores at all: those of the surveys its card
    names (trained and checked on) or the operator added unvalidated, which its preprocessing can
    take (ACAI needs its features); the others get no score from it. One preprocessed row per
    item (a pair of tensors for a model with a feature input). For raw exposures a row holds the exposure's CCD chips side by side, (N, chips,
    H, W) for a (1, H, W) network: ``infer`` scores every chip and returns the mean over an
    exposure's chips, so the output is still (N, K).
    """

    def __init__(self, card: ModelCard, engine: Engine, provenance: ModelProvenance, device: str,
                 unvalidated_surveys: Sequence[str] = ()) -> None:
        self.card = card
        #: Surveys the operator runs this model on although its card does not name them
        #: (``engine.run_unvalidated``): its scores there are marked ``validated = false``.
        self.unvalidated_surveys: tuple[str, ...] = tuple(s for s in unvalidated_surveys if s not in card.surveys)
        self.engine = engine
        self.provenance = provenance
        self.labels: tuple[str, ...] = card.labels
        self.max_batch: int = card.contract.max_batch
        self.device = device
        self._preprocess = PREPROCESSORS[card.preprocessing]
        self._applies = APPLIES.get(card.preprocessing)

    def applies(self, item: Alert | Exposure) -> bool:
        """Whether this model scores ``item``: a survey its card names (or the operator added,
        unvalidated), and what its preprocessing needs."""
        survey = str(getattr(item, "survey", ""))
        if not self.card.applies_to_survey(survey) and survey not in self.unvalidated_surveys:
            return False
        return self._applies is None or bool(self._applies(item))

    def select(self, items: Sequence[Alert | Exposure]) -> list[int]:
        """Indices of the items this model scores."""
        return [i for i, item in enumerate(items) if self.applies(item)]

    def preprocess(self, items: Sequence[Alert | Exposure]) -> Any:
        """The batched network input on this runner's device, one row per item."""
        return self._preprocess(items, self.device)

    def infer(self, batch: Any) -> np.ndarray:
        """(N, K) float32 probabilities (softmax applied) for a preprocessed batch; engine calls
        are chunked to the engine's max batch."""
        if isinstance(batch, (tuple, list)):  # (images, features)
            step = self.card.contract.max_batch
            n = int(batch[0].shape[0])
            rows = [self.engine.infer(tuple(t[i:i + step] for t in batch)) for i in range(0, n, step)]
            out = np.concatenate(rows) if rows else np.empty((0, len(self.labels)), np.float32)
            return out.astype(np.float32, copy=False)
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
    """All model cards, by name (the default version) and by (name, version); builds runners.

    Several versions of a model may ship: exactly one card of a name is its default (``default =
    true``, braai d6_m7 beside d6_m9), which is what a name alone loads and what the service runs.

    ``cards`` are the current version of each model; ``earlier`` are superseded versions kept
    loadable (``engines/cards/versions/``): a model is named ``"name"`` (its current version)
    or ``"name@version"`` (any version), in :meth:`card`, :meth:`load_runner` and
    :meth:`selected` (the service's ``engine.models``)."""

    def __init__(self, cards: Sequence[ModelCard], weights_dir: Path = WEIGHTS_DIR,
                 earlier: Sequence[ModelCard] = ()) -> None:
        self.cards: dict[str, ModelCard] = {}
        self.versions: dict[tuple[str, str], ModelCard] = {}
        for card in cards:
            if (card.name, card.version) in self.versions:
                raise EngineError(f"two model cards are named {card.name!r} version {card.version!r}")
            self.versions[(card.name, card.version)] = card
            if card.default:
                if card.name in self.cards:
                    raise EngineError(f"two model cards named {card.name!r} are both the default version")
                self.cards[card.name] = card
        for card in earlier:  # superseded versions (engines/cards/versions/): loadable, never the default
            if (card.name, card.version) in self.versions:
                raise EngineError(f"two model cards are named {card.name!r} version {card.version!r}")
            self.versions[(card.name, card.version)] = dataclasses.replace(card, default=False)
        orphans = sorted({name for name, _ in self.versions} - set(self.cards))
        if orphans:
            raise EngineError(f"no default version for model(s) {orphans}")
        self.weights_dir = weights_dir

    def card(self, name: str, version: str | None = None) -> ModelCard:
        """The default card of ``name``, or its card of ``version`` (also written ``name@version``)."""
        if version is None and "@" in name:
            name, version = name.split("@", 1)
        if version is not None:
            try:
                return self.versions[(name, version)]
            except KeyError:
                have = sorted(v for n, v in self.versions if n == name)
                raise EngineError(f"no model card {name!r} version {version!r} (have {have})") from None
        try:
            return self.cards[name]
        except KeyError:
            raise EngineError(f"no model card named {name!r} (have {sorted(self.cards)})") from None

    def cards_for(self, kind: InputKind, survey: str | None = None) -> list[ModelCard]:
        """Default cards of the models that score inputs of ``kind`` (of ``survey``, if given), in name order."""
        return [c for _, c in sorted(self.cards.items())
                if kind in c.input_kinds and (survey is None or c.applies_to_survey(survey))]

    def selected(self, kind: InputKind, models: Sequence[str] = ()) -> list[ModelCard]:
        """The cards to run on ``kind``: when ``models`` is empty, the default versions whose cards
        pass the default bar (``passes_bar``, trained weights; engines/cards/README.md), else those named
        (``name`` or ``name@version``, whether or not they pass) that score ``kind``, one
        version per name. The one place that decides what runs by default."""
        if not models:
            return [card for card in self.cards_for(kind) if card.passes_bar and card.trained]
        chosen: dict[str, ModelCard] = {}
        for ref in models:
            card = self.card(ref)
            if kind in card.input_kinds:
                if card.name in chosen and chosen[card.name].version != card.version:
                    raise EngineError(f"two versions of {card.name!r} named in the models list")
                chosen[card.name] = card
        return [chosen[name] for name in sorted(chosen)]

    def export(self, name: str, cache_dir: str | Path = ENGINE_CACHE_DIR, precision: str = "fp32", version: str | None = None) -> Path:
        """The card's ONNX file in ``cache_dir``, exported now if it is not there yet.

        The cache is not trusted blindly: a directory others may write to is used only through a
        private subdirectory (:func:`check_cache_dir`), and a cached
        file is used only if its sha256 matches the one recorded beside it at export
        (``<file>.sha256``); a file without that record, or that differs from it (replaced,
        truncated), is exported again from the card's weights.
        """
        card = self.card(name, version)
        path = onnx_path_for(card, check_cache_dir(cache_dir), precision)
        why = why_untrusted(path)
        if why is None:
            return path
        if why != "missing":
            log.warning("engine_cache_untrusted", path=str(path), note="re-exported from the card's weights", why=why)
        export_onnx(load_network(card, self.weights_dir), card.contract, path, precision)
        record_sha256(path)
        return path

    def load_runner(
        self,
        name: str,
        backend: str,
        device: str = "cpu",
        cache_dir: str = ENGINE_CACHE_DIR,
        allow_untrained: bool = False,
        precision: str | None = None,
        version: str | None = None,
        unvalidated_surveys: Sequence[str] = (),
        **engine_options: Any,
    ) -> ModelRunner:
        """A loaded runner for model ``name`` (its default version, or ``version``) on ``backend``
        (torch, onnxruntime, openvino, tensorrt). Refuses untrained models unless ``allow_untrained``.
        It scores the surveys its card names, plus ``unvalidated_surveys`` (marked so in every record).
        ``precision``: for openvino "f32" (default) or "bf16"; for tensorrt "fp16"/"fp32" (default: by GPU)."""
        card = self.card(name, version)
        if not card.trained and not allow_untrained:
            raise EngineError(f"model {name!r} is not trained (card trained = false); pass allow_untrained to use it anyway")
        if backend != "torch":
            cache_dir = str(check_cache_dir(cache_dir))  # exports and TensorRT plans alike
        if backend not in BACKENDS:
            raise EngineError(f"unknown backend {backend!r}; known: {BACKENDS}")
        extra: dict[str, Any] = {}
        if backend == "torch":
            from engines.backends.torch_backend import TorchEngine

            engine: Engine = TorchEngine(load_network(card, self.weights_dir), card.contract, device=device, **engine_options)
        elif backend == "tensorrt":
            from engines.backends.tensorrt_backend import import_tensorrt, precision_for_device

            if precision is None and card.contract.feature_count:
                # raw catalogue features (ACAI: ra up to 360, ncovhist in the thousands) lose
                # precision in half precision: such models default to fp32 on TensorRT
                precision = "fp32"
            precision = precision_for_device(device, precision)  # raises EngineError without CUDA
            import_tensorrt()  # fail before exporting anything when TensorRT cannot load
            onnx = self.export(name, cache_dir, precision, card.version)
            extra["onnx_sha256"] = file_sha256(onnx)
            engine = open_onnx_engine(
                backend, onnx, card.contract, device=device, precision=precision, cache_dir=cache_dir,
                onnx_sha256=extra["onnx_sha256"], **engine_options,
            )
        else:
            onnx = self.export(name, cache_dir, "fp32", card.version)
            extra["onnx_sha256"] = file_sha256(onnx)
            if backend == "openvino":
                engine_options["precision"] = precision or "f32"
            elif precision not in (None, "fp32", "f32"):
                raise EngineError(f"onnxruntime runs the fp32 export only, not {precision!r}")
            engine = open_onnx_engine(backend, onnx, card.contract, device=device, **engine_options)
        extra["precision"] = getattr(engine, "precision", "fp32")
        extra["class_scores"] = card.class_score_keys
        if card.real_bogus:
            extra["real_bogus"] = True
        provenance = ModelProvenance(card.name, card.version, card.weights_sha256, card.trained, backend, extra,
                                     surveys=card.surveys)
        log.info("runner_loaded", model=name, version=card.version, backend=backend, device=device, trained=card.trained,
                 precision=extra["precision"], onnx_sha256=extra.get("onnx_sha256"))
        return ModelRunner(card, engine, provenance, device, unvalidated_surveys)


def load_registry(cards_dir: str | Path | None = None, weights_dir: str | Path | None = None) -> Registry:
    """Read every ``*.toml`` card in ``cards_dir`` (default: engines/cards) and the superseded
    versions in its ``versions/`` folder."""
    cards_dir = Path(cards_dir) if cards_dir is not None else CARDS_DIR
    paths = sorted(cards_dir.glob("*.toml"))
    if not paths:
        raise EngineError(f"no model cards in {cards_dir}")
    earlier = [load_card(p) for p in sorted((cards_dir / "versions").glob("*.toml"))]
    return Registry([load_card(p) for p in paths], Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR, earlier)
