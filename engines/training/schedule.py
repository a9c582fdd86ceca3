"""A run's length, learning rate and patience, fitted to its time budget.

A budget (``--max-cpu-minutes``, process CPU time: what a shared machine really gives a run, unlike
wall time; or ``--max-minutes``, wall time) is turned into a number of epochs once the first epoch
has shown what one costs: :func:`planned_epochs`. Then

* the learning rate follows a cosine from ``lr`` down to ``lr * floor`` over those epochs
  (:func:`cosine_lr`, per batch step; the first epoch, before the plan exists, runs at ``lr``,
  which the cosine barely leaves in its first steps), and the run ends when the plan is done;
* patience is counted in those epochs: ``max(--patience, ceil(fraction * planned))``
  (:func:`budget_patience`), since a cosine run improves late, when the rate is small, and an
  early stop after 3 epochs of a 40-epoch plan would stop it at the high rate.
"""
from __future__ import annotations

import math

__all__ = ["cosine_lr", "planned_epochs", "budget_patience", "LR_FLOOR", "PATIENCE_FRACTION"]

#: the cosine ends at this fraction of the starting learning rate
LR_FLOOR = 0.01
#: patience as a fraction of the epochs the budget affords
PATIENCE_FRACTION = 0.34


def cosine_lr(step: int, total_steps: int, base_lr: float, floor: float = LR_FLOOR) -> float:
    """The learning rate at batch ``step`` of ``total_steps``: ``base_lr`` at 0, ``base_lr * floor``
    at ``total_steps`` and after, half-cosine between."""
    if total_steps <= 0:
        return base_lr
    t = min(max(step, 0), total_steps) / total_steps
    return base_lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def planned_epochs(budget_s: float | None, first_epoch_s: float, max_epochs: int, done: int = 1) -> int:
    """Epochs the run will make: as many whole epochs of ``first_epoch_s`` as ``budget_s`` holds
    (no budget: ``max_epochs``), at most ``max_epochs`` and at least the ``done`` already run."""
    if budget_s is None:
        return max_epochs
    fits = int(budget_s // max(first_epoch_s, 1e-9))
    return max(done, min(max_epochs, fits))


def budget_patience(planned: int, patience: int, fraction: float = PATIENCE_FRACTION) -> int:
    """Epochs without a better validation loss before stopping: a ``fraction`` of the ``planned``
    epochs, never fewer than ``patience``."""
    return max(patience, math.ceil(fraction * planned))
