"""The one scoring path: pick the runners for an input kind, score items with them.

The stream service (per batch) and the offline ``classify`` command (per file chunk) both call
:func:`load_kind_runners` and :func:`score_items`, so a record scored offline carries the same
numbers and the same provenance as one scored in the stream. Each runner preprocesses its chunk
(torch, on its device), infers, and its probabilities become ``label -> probability`` per item.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, wait
from functools import partial
from typing import Any, Protocol

import numpy as np

from engines.cards import ModelCard
from schemas.alert import InputKind, Item
from schemas.provenance import ModelProvenance

__all__ = ["Runner", "ModelRegistry", "UnscorableInput", "is_input_fault", "ModelResults", "StageClock", "THREADED_BACKENDS",
           "select_cards", "load_kind_runners", "survey_scope", "score_items"]

#: Per item: one (provenance, label -> probability) pair per model that ran on it.
ModelResults = list[tuple[ModelProvenance, dict[str, float]]]

#: Called with (stage name, seconds) after each preprocess / infer call.
StageClock = Callable[[str, float], None]


class UnscorableInput(ValueError):
    """Preprocessing refused the chunk's inputs (a band or geometry a model needs is missing): the
    inputs' fault, not ours. ``__cause__`` is the preprocessor's error. Inference failures and a
    wrong output shape are ours and are never wrapped in this."""


def is_input_fault(exc: BaseException) -> bool:
    """Whether a preprocessor's exception says the input is unusable (:class:`PreprocessError` and
    the other value errors of array code: a shape, a NaN, an overflow) rather than that we are:
    memory, a device (torch raises RuntimeError for CUDA faults), or a bug in our code, which
    raises TypeError, KeyError, IndexError or AttributeError on every input alike and must stop
    the line, not dead-letter good alerts."""
    return isinstance(exc, (ValueError, ArithmeticError)) and not isinstance(exc, MemoryError)


class Runner(Protocol):
    """One model on one backend (:class:`engines.registry.ModelRunner` is the real one).

    ``select(items)`` gives the indices of the items it applies to (a model for one survey's
    alerts skips the others); :func:`score_items` scores only those.
    """

    provenance: ModelProvenance
    labels: tuple[str, ...]
    max_batch: int

    def select(self, items: Sequence[Item]) -> list[int]: ...

    def preprocess(self, items: Sequence[Item]) -> Any: ...

    def infer(self, batch: Any) -> np.ndarray: ...

    def close(self) -> None: ...


class ModelRegistry(Protocol):
    """What scoring needs of the model registry (:class:`engines.registry.Registry` is the real one)."""

    def selected(self, kind: InputKind, models: Sequence[str] = ...) -> list[ModelCard]: ...

    def load_runner(self, name: str, backend: str, device: str = ..., cache_dir: str = ..., allow_untrained: bool = ...,
                    precision: str | None = ..., version: str | None = ..., **engine_options: Any) -> Runner: ...


def select_cards(registry: ModelRegistry, kind: InputKind, models: Iterable[str] = (), *, include_untrained: bool = True) -> list[ModelCard]:
    """The cards that score ``kind``: every default one, or only those named in ``models``
    (``name`` or ``name@version``); untrained cards are left out unless ``include_untrained``."""
    return [card for card in registry.selected(kind, list(models)) if card.trained or include_untrained]


#: Backends that take a CPU thread count (``threads=``): ONNX Runtime's intra-op pool, OpenVINO's
#: inference threads. torch's is process-wide (``torch.set_num_threads``, set by the caller).
THREADED_BACKENDS = ("onnxruntime", "openvino")


def load_kind_runners(registry: ModelRegistry, kind: InputKind, *, backend: str, device: str, cache_dir: str,
                      models: Iterable[str] = (), allow_untrained: bool = False, skip_untrained: bool = False,
                      backends: Mapping[str, str] | None = None, threads: int = 0, infer_batch: int = 0,
                      unvalidated: Mapping[str, Sequence[str]] | None = None) -> list[Runner]:
    """Loaded runners for every selected card of ``kind`` (each at the version selected).

    Each model runs on ``backends[name]`` where named there, else on ``backend`` (the fastest
    CPU engine differs by model). ``threads`` > 0 sets the CPU threads of ONNX Runtime and
    OpenVINO engines; ``infer_batch`` > 0 caps each runner's ``max_batch`` (the chunk
    :func:`score_items` preprocesses and infers at once). An untrained card is refused by the
    registry unless ``allow_untrained``; ``skip_untrained`` leaves such cards out instead
    (offline scoring of whatever trained models there are). Each model scores the surveys its
    card names; ``unvalidated[name]`` adds surveys it runs on unchecked (its scores say so).
    """
    cards = select_cards(registry, kind, models, include_untrained=allow_untrained or not skip_untrained)
    runners = []
    for card in cards:
        chosen = (backends or {}).get(card.name, backend)
        options: dict[str, Any] = {"threads": threads} if threads > 0 and chosen in THREADED_BACKENDS and not device.startswith("cuda") else {}
        extra_surveys = tuple((unvalidated or {}).get(card.name, ()))
        if extra_surveys:
            options["unvalidated_surveys"] = extra_surveys
        runner = registry.load_runner(card.name, chosen, device=device, cache_dir=cache_dir,
                                      allow_untrained=allow_untrained, version=card.version, **options)
        if infer_batch > 0:
            runner.max_batch = min(int(runner.max_batch), infer_batch)
        runners.append(runner)
    return runners


def survey_scope(runners: Iterable[Any]) -> list[dict[str, Any]]:
    """Per loaded runner: the surveys it was trained and checked on, and those the operator added
    unvalidated (what the service and ``classify`` log at start-up)."""
    scope = []
    for runner in runners:
        provenance = runner.provenance
        scope.append({"model": provenance.name, "version": provenance.version,
                      "validated_surveys": list(provenance.surveys or ()),
                      "unvalidated_surveys": list(getattr(runner, "unvalidated_surveys", ()))})
    return scope


def _timed(clock: StageClock | None, stage: str, fn: Callable[[], Any]) -> Any:
    if clock is None:
        return fn()
    t0 = time.perf_counter()
    try:
        return fn()
    finally:
        clock(stage, time.perf_counter() - t0)


def score_items(items: Sequence[Item], runners: Sequence[Runner], clock: StageClock | None = None,
                pool: Executor | None = None) -> list[ModelResults]:
    """Run every runner on the items it applies to (items share a kind), in chunks of the
    runner's max batch. An item a runner's ``select`` leaves out gets no score from it, never a
    made-up one. A runner that returns the wrong shape is our fault, never the input's: it raises.
    Inputs that its preprocessing refuses raise :class:`UnscorableInput` (the caller may score
    the chunk's items one by one to find which).

    With a ``pool`` (threads), the chunks (every runner's) are preprocessed and inferred on its
    threads at once: engines release the GIL, so on the CPU each thread keeps a core busy with
    one-thread engines instead of one thread driving multi-threaded ones. The chunks of a runner
    whose engine takes one call at a time (``concurrent_calls`` false: OpenVINO, TensorRT) are
    one task that runs them one after another, submitted first; every other chunk is a task of
    its own. (One task per chunk behind a lock left a pool thread waiting on the lock while
    another ran the same engine: with ACAI on OpenVINO first, the two threads of a 2-core
    machine took its chunks in turn and one core idled for half the batch.) The results are the
    same, in the same order; every chunk is finished before the first failure (in runner and
    chunk order) is raised. ``clock`` is then called from the pool's threads.
    """
    chunks: list[tuple[Runner, list[int]]] = []
    for runner in runners:
        step = max(1, int(runner.max_batch))
        chosen = list(runner.select(items))
        chunks += [(runner, chosen[start:start + step]) for start in range(0, len(chosen), step)]

    def run_chunk(runner: Runner, indices: list[int]) -> np.ndarray:
        chunk = [items[i] for i in indices]
        try:
            batch = _timed(clock, "preprocess", partial(runner.preprocess, chunk))
        except Exception as exc:
            if is_input_fault(exc):
                raise UnscorableInput(f"{runner.provenance.name}: {type(exc).__name__}: {exc}") from exc
            raise
        probs = np.asarray(_timed(clock, "infer", partial(runner.infer, batch)))
        if probs.shape != (len(chunk), len(runner.labels)):
            raise RuntimeError(f"model {runner.provenance.name} returned shape {probs.shape} for {len(chunk)} inputs")
        return probs

    if pool is None or len(chunks) < 2:
        outputs = [run_chunk(runner, indices) for runner, indices in chunks]
    else:
        outputs = _run_pooled(chunks, run_chunk, pool)
    results: list[ModelResults] = [[] for _ in items]
    for (runner, indices), probs in zip(chunks, outputs):
        for i, row in zip(indices, probs):
            results[i].append((runner.provenance, {label: float(p) for label, p in zip(runner.labels, row)}))
    return results


def _run_pooled(chunks: Sequence[tuple[Runner, list[int]]], run_chunk: Callable[[Runner, list[int]], np.ndarray],
                pool: Executor) -> list[np.ndarray]:
    """``run_chunk`` on every chunk on ``pool``'s threads, the outputs in chunk order: a runner whose
    engine takes one call at a time gets one task for all its chunks (submitted first, the longest
    chains before the short ones), every other chunk a task of its own. Every task is finished
    before the first failure, in chunk order, is raised."""
    serial: dict[int, list[int]] = {}
    tasks: list[list[int]] = []
    for position, (runner, _) in enumerate(chunks):
        if getattr(getattr(runner, "engine", None), "concurrent_calls", False):
            tasks.append([position])
        else:
            serial.setdefault(id(runner), []).append(position)
    tasks = sorted(serial.values(), key=len, reverse=True) + tasks
    outcomes: list[Any] = [None] * len(chunks)

    def run_task(positions: list[int]) -> None:
        for position in positions:
            runner, indices = chunks[position]
            try:
                outcomes[position] = run_chunk(runner, indices)
            except Exception as exc:  # noqa: BLE001 - held, then re-raised below in chunk order
                outcomes[position] = exc

    futures = [pool.submit(run_task, positions) for positions in tasks]
    wait(futures)
    for future in futures:
        future.result()  # what run_task could not hold (not an Exception) raises here
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes
