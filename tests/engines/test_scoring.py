"""The one scoring path (engines/scoring.py): which cards score an input kind, and scores that
equal the registry runner's own on real bundled alerts, chunked by the runner's max batch."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from engines.cards import load_card, write_card
from engines.registry import CARDS_DIR, WEIGHTS_DIR, load_registry
from engines.scoring import load_kind_runners, score_items, select_cards
from schemas.alert import InputKind
from tests.engines.real_stamps import real_alerts


def test_select_cards_by_kind_name_and_trained_flag(tmp_path: Path) -> None:
    shipped = load_registry()
    assert [c.name for c in select_cards(shipped, InputKind.DIFFERENCE_ALERT)] == ["acai", "alertclass", "braai", "realbogus",
                                                                           "rubin_realbogus"]   # those passing the bar
    assert [c.name for c in select_cards(shipped, InputKind.DIFFERENCE_ALERT, ["alertclass"])] == ["alertclass"]
    assert [c.name for c in select_cards(shipped, InputKind.DIFFERENCE_ALERT, ["realbogus"])] == ["realbogus"]
    assert [c.name for c in select_cards(shipped, InputKind.MULTIBAND_CUTOUT, ["iicnet", "realbogus"])] == ["iicnet"]
    assert select_cards(shipped, InputKind.DIFFERENCE_ALERT, ["iicnet"]) == []
    write_card(dataclasses.replace(load_card(CARDS_DIR / "realbogus.toml"), trained=False), tmp_path / "realbogus.toml")
    untrained = load_registry(tmp_path, WEIGHTS_DIR)
    assert select_cards(untrained, InputKind.DIFFERENCE_ALERT, include_untrained=False) == []
    assert load_kind_runners(untrained, InputKind.DIFFERENCE_ALERT, backend="torch", device="cpu", cache_dir=str(tmp_path),
                             skip_untrained=True) == []


def test_score_items_equals_the_runner_and_reports_stage_time(real_data_roots, tmp_path: Path) -> None:
    alerts = list(real_alerts(real_data_roots, 10))
    [runner] = load_kind_runners(load_registry(), InputKind.DIFFERENCE_ALERT, backend="torch", device="cpu",
                                 cache_dir=str(tmp_path), models=["realbogus"])
    runner.max_batch = 4                                   # three chunks: 4 + 4 + 2
    seconds: dict[str, float] = {}
    results = score_items(alerts, [runner], lambda stage, s: seconds.__setitem__(stage, seconds.get(stage, 0.0) + s))
    direct = runner.infer(runner.preprocess(alerts))
    ours = np.array([[scores["bogus"], scores["real"]] for [(provenance, scores)] in results])
    np.testing.assert_allclose(ours, direct, atol=1e-5, rtol=0)
    assert {p.name for [(p, _)] in results} == {"realbogus"} and set(seconds) == {"preprocess", "infer"}
    runner.close()


def test_a_model_runs_on_its_own_backend_with_the_threads_given() -> None:
    # the shared engine cache (var/engines) keeps this fast once the ONNX files exist
    runners = load_kind_runners(load_registry(), InputKind.DIFFERENCE_ALERT, backend="onnxruntime", device="cpu",
                                cache_dir="var/engines", models=["realbogus", "braai"], backends={"braai": "openvino"}, threads=1,
                                infer_batch=16)
    try:
        assert {r.provenance.name: r.provenance.backend for r in runners} == {"braai": "openvino", "realbogus": "onnxruntime"}
        by_name = {r.provenance.name: r for r in runners}
        assert by_name["realbogus"].engine.threads == 1 and by_name["braai"].engine.threads == 1
        assert {r.max_batch for r in runners} == {16}
    finally:
        for r in runners:
            r.close()


def test_a_bug_in_our_preprocessing_stops_the_line_rather_than_dead_lettering_good_inputs():
    """A TypeError / KeyError / IndexError from our code fails every input alike: it is raised,
    never turned into UnscorableInput (which the service dead-letters); a value error is the input's."""
    import pytest

    from engines.preprocess import PreprocessError
    from engines.scoring import UnscorableInput, is_input_fault

    for bug in (TypeError("x"), KeyError("x"), IndexError("x"), AttributeError("x"), RuntimeError("cuda")):
        assert not is_input_fault(bug)
    for bad_input in (PreprocessError("missing bands"), ValueError("shape"), OverflowError("inf")):
        assert is_input_fault(bad_input)

    class Buggy:
        provenance, labels, max_batch = None, ("real",), 4

        def select(self, items):
            return list(range(len(items)))

        def preprocess(self, items):
            raise TypeError("unsupported operand")

        def infer(self, batch):
            raise AssertionError("never reached")

        def close(self):
            pass

    with pytest.raises(TypeError):
        score_items([object(), object()], [Buggy()])
    assert UnscorableInput   # the input's faults take that path (tests/stream/test_after_decode.py)


def test_score_items_on_a_thread_pool_equals_it_on_one_thread(real_data_roots) -> None:
    """Every model's chunks scored on two threads at once (the service on the CPU) give the same
    numbers, in the same order, as one thread; OpenVINO's engine is shared by both threads (one
    infer request per thread); a refused chunk still raises UnscorableInput once all are done."""
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    import pytest

    from engines.scoring import UnscorableInput

    alerts = list(real_alerts(real_data_roots, 12))
    runners = load_kind_runners(load_registry(), InputKind.DIFFERENCE_ALERT, backend="onnxruntime", device="cpu",
                                cache_dir="var/engines", models=["realbogus", "braai", "rubin_realbogus"],
                                backends={"braai": "openvino"}, threads=1, infer_batch=3)
    try:
        alone = score_items(alerts, runners)
        seconds: dict[str, float] = {}
        with ThreadPoolExecutor(2) as pool:
            pooled = score_items(alerts, runners, lambda stage, s: seconds.__setitem__(stage, seconds.get(stage, 0.0) + s), pool)
        assert any(len(r) > 1 for r in alone), "several models scored some alerts"
        assert [[(p.name, sorted(s)) for p, s in r] for r in pooled] == [[(p.name, sorted(s)) for p, s in r] for r in alone]
        for a, b in zip(alone, pooled):
            for (_, sa), (_, sb) in zip(a, b):
                np.testing.assert_allclose([sa[k] for k in sorted(sa)], [sb[k] for k in sorted(sb)], atol=1e-6, rtol=0)
        assert set(seconds) == {"preprocess", "infer"}

        class Refusing:
            provenance, labels, max_batch = SimpleNamespace(name="refusing"), ("real",), 2

            def select(self, items):
                return list(range(len(items)))

            def preprocess(self, items):
                raise ValueError("a band is missing")

            def infer(self, batch):
                raise AssertionError("never reached")

        with ThreadPoolExecutor(2) as pool, pytest.raises(UnscorableInput):
            score_items(alerts, [*runners, Refusing()], None, pool)
    finally:
        for r in runners:
            r.close()


def test_a_one_call_at_a_time_engine_never_holds_a_second_pool_thread() -> None:
    """The chunks of an engine that takes one call at a time (OpenVINO, TensorRT) run as one task,
    so the pool's other thread scores the other models meanwhile. Before, each chunk was a task
    behind the engine's lock: with two threads both took that engine's chunks, one waited on the
    lock, and a core idled (here the serial engine's first chunk waits for a concurrent chunk to
    run, which then never happened: the second thread sat on the lock)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    other_ran = threading.Event()
    calls = {"serial_inside": 0, "serial_most": 0, "waited_for_other": []}
    guard = threading.Lock()

    class Fake:
        labels, max_batch = ("real",), 2

        def __init__(self, name: str, concurrent: bool) -> None:
            self.provenance = SimpleNamespace(name=name)
            self.engine = SimpleNamespace(concurrent_calls=concurrent)

        def select(self, items):
            return list(range(len(items)))

        def preprocess(self, items):
            return np.asarray(items, dtype=np.float32)

        def infer(self, batch):
            if self.engine.concurrent_calls:
                other_ran.set()
            else:
                with guard:
                    calls["serial_inside"] += 1
                    calls["serial_most"] = max(calls["serial_most"], calls["serial_inside"])
                calls["waited_for_other"].append(other_ran.wait(5))
                with guard:
                    calls["serial_inside"] -= 1
            return batch[:, None] / 10 + (0.5 if self.engine.concurrent_calls else 0.0)

    items = [float(i) for i in range(8)]
    serial, concurrent = Fake("serial", False), Fake("concurrent", True)
    with ThreadPoolExecutor(2) as pool:
        results = score_items(items, [serial, concurrent], None, pool)
    assert calls["waited_for_other"] == [True] * 4, "the other thread scored the concurrent model meanwhile"
    assert calls["serial_most"] == 1, "the one-call engine was never called twice at once"
    assert [[(p.name, s["real"]) for p, s in r] for r in results] == [
        [("serial", pytest.approx(i / 10)), ("concurrent", pytest.approx(i / 10 + 0.5))] for i in range(8)]
