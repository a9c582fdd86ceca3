"""Head training of a seeded network (the CPU route for HR-CelestialNet): it learns, the prefix
stays the seeded one, the shipped delta is small and rebuilds the trained network, and it resumes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.networks import load_weights, seeded_network
from engines.registry import state_sha256
from engines.training.head import HeadPlan, split_network, train_head
from engines.training.train import TrainConfig, TrainingData
from engines.training.ztf_files import TrainingDataError
from stream.cli import main

#: the smallest HR-CelestialNet input (first pool 1) that keeps every layer: a cheap stand-in
HW = (340, 340)
KWARGS = {"input_hw": list(HW), "first_pool": 1}
SEED = 11


def _to_input(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


@pytest.fixture(scope="module")
def data() -> TrainingData:
    """Noise frames; class 1 carries a faint extended patch (1 sigma over 140 x 140 px)."""
    rng = np.random.default_rng(0)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(0, 1, (n, 1, *HW)).astype(np.float32)
        y = np.arange(n) % 2
        x[y == 1, :, 100:240, 100:240] += 1.0
        return x, y

    (tx, ty), (vx, vy) = make(24), make(8)
    return TrainingData(tx, ty, vx, vy, ("galaxy", "nebula_star_cluster"), description={"note": "test"})


def test_head_training_learns_and_ships_a_small_delta_over_the_seed(data, tmp_path: Path) -> None:
    config = TrainConfig(model="hrcelestialnet", epochs=2, batch_size=8, lr=1e-3, seed=3, threads=2,
                         network_kwargs=KWARGS, patience=5)
    plan = HeadPlan(init_seed=SEED, blocks=2, rank=4, calibration_examples=8)
    first = train_head(data, _to_input, config, plan, tmp_path, progress=False)
    assert [row["epoch"] for row in first.history] == [1, 2]
    assert len(list(tmp_path.glob("prefix-maps-*.pt"))) == 1       # the resumed run reuses the frozen maps
    resumed = train_head(data, _to_input, TrainConfig(**{**config.__dict__, "epochs": 3}), plan, tmp_path,
                         resume=first.checkpoint_path, progress=False)
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert resumed.history[:2] == first.history[:2]

    record = json.loads(resumed.record_path.read_text())
    seeded = seeded_network("hrcelestialnet", SEED, **KWARGS)
    head = record["head"]
    assert head["network_parameters"] == sum(p.numel() for p in seeded.parameters())
    assert head["trained_parameters"] < head["network_parameters"] / 50
    assert head["base_sha256"] == state_sha256(seeded.state_dict())
    assert record["weights_sha256"] and record["config"]["network_kwargs"] == KWARGS

    delta = torch.load(resumed.weights_path, map_location="cpu", weights_only=True)
    assert resumed.weights_path.stat().st_size < 4 << 20
    assert "classifier.1.weight" not in delta and "classifier.1.weight.lora_a" in delta   # the big dense layer: low rank
    assert "classifier.5.weight" in delta                                                 # the output layer: whole
    merged = load_weights("hrcelestialnet", resumed.weights_path, **KWARGS)
    prefix_names = {f"features.{n}" for n, _ in split_network(seeded, 2)[0].named_parameters()}
    merged_params = dict(merged.named_parameters())
    for name, p in seeded.named_parameters():
        if any(name.startswith(prefix + ".") or name == prefix for prefix in prefix_names) and name.endswith("weight"):
            assert torch.equal(merged_params[name], p), f"{name} is in the frozen prefix but changed"
    with torch.inference_mode():
        p_nsc = torch.softmax(merged(torch.from_numpy(data.val_x)), dim=1)[:, 1].numpy()
    accuracy = float(((p_nsc > 0.5).astype(int) == data.val_y).mean())
    assert accuracy >= 0.875, f"the head did not learn an easy pattern: validation accuracy {accuracy}"


def test_head_blocks_out_of_range_is_a_clear_error() -> None:
    with pytest.raises(TrainingDataError, match="head-blocks"):
        split_network(seeded_network("hrcelestialnet", SEED, **KWARGS), 7)


def test_train_command_head_route_on_simulated_raw_frames(tmp_path: Path, capsys) -> None:
    """The route the shipped HR-CelestialNet took, end to end at binning 4 on a few frames."""
    out = tmp_path / "hr"
    code = main(["train", "hrcelestialnet", "--synthetic", "12", "--binning", "4", "--head-blocks", "2", "--rank", "4",
                 "--calibration-examples", "2", "--epochs", "1", "--batch-size", "4", "--out", str(out),
                 "--no-progress", "--threads", "2"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    record = json.loads((out / "hrcelestialnet.train.json").read_text())
    assert record["head"]["blocks"] == 2 and record["config"]["network_kwargs"] == {"input_hw": [512, 1024], "first_pool": 1}
    assert record["data"]["split"]["by"] == "group" and summary["test_examples"] >= 3
    report = json.loads((out / "report" / "test.json").read_text())
    assert set(report["per_class"]) == {"galaxy", "nebula_star_cluster"}

