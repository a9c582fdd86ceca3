"""The budget-fitted schedule: cosine learning rate, planned epochs, patience, stop reasons."""
from __future__ import annotations

import math
import time

import pytest

from engines.training.schedule import LR_FLOOR, budget_patience, cosine_lr, planned_epochs
from engines.training.train import TrainConfig, budget_seconds, stop_reason


def test_cosine_lr_at_known_steps():
    assert cosine_lr(0, 100, 1e-3) == pytest.approx(1e-3)
    assert cosine_lr(50, 100, 1e-3) == pytest.approx(1e-3 * (LR_FLOOR + (1 - LR_FLOOR) / 2))
    assert cosine_lr(25, 100, 1e-3) == pytest.approx(1e-3 * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi / 4))))
    assert cosine_lr(100, 100, 1e-3) == pytest.approx(1e-3 * LR_FLOOR)
    assert cosine_lr(500, 100, 1e-3) == pytest.approx(1e-3 * LR_FLOOR)
    lrs = [cosine_lr(s, 100, 1.0) for s in range(101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_planned_epochs_fit_the_budget():
    assert planned_epochs(15 * 60, 40.0, 100) == 22          # 900 s / 40 s per epoch
    assert planned_epochs(15 * 60, 40.0, 10) == 10           # --epochs caps it
    assert planned_epochs(30, 40.0, 100, done=1) == 1        # never fewer than the epochs run
    assert planned_epochs(None, 40.0, 20) == 20


def test_patience_is_a_third_of_the_planned_epochs_but_never_below_the_given():
    assert budget_patience(22, 3) == 8
    assert budget_patience(6, 3) == 3
    assert budget_patience(30, 12) == 12


def test_stop_reasons_use_the_plan_and_the_cpu_clock():
    now, cpu = time.monotonic(), time.process_time()
    cosine = TrainConfig(model="iicnet", lr_schedule="cosine", budget_patience=True, patience=3)
    assert stop_reason(cosine, epoch=5, best_epoch=2, started=now, cpu_started=cpu, planned=22) is None   # patience 8
    assert "8 epochs" in stop_reason(cosine, epoch=9, best_epoch=2, started=now, cpu_started=cpu, planned=22)
    assert "cosine schedule of 22" in stop_reason(cosine, epoch=21, best_epoch=21, started=now, cpu_started=cpu, planned=22)
    constant = TrainConfig(model="iicnet", patience=3)
    assert "3 epochs" in stop_reason(constant, epoch=5, best_epoch=2, started=now, planned=22)
    spent = TrainConfig(model="iicnet", patience=50, max_cpu_minutes=1e-9)
    assert "CPU budget" in stop_reason(spent, epoch=0, best_epoch=1, started=now, cpu_started=cpu - 1.0)
    assert budget_seconds(spent) == pytest.approx(6e-8) and budget_seconds(constant) is None
    assert budget_seconds(TrainConfig(model="iicnet", max_minutes=2)) == 120
