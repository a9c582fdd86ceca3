"""Grouped train / validation / test splits: one group (object, sky field, celestial body) never
sits on two sides. HR-CelestialNet's paper splits by celestial body for this reason: images of
the same body share structure, and a network tested on a body it trained on is graded on
memory, not on generalisation.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Split", "grouped_split"]


@dataclass(frozen=True)
class Split:
    """Indices into the dataset for each side."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def grouped_split(
    groups: Sequence[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> Split:
    """Assign whole groups to train / validation / test, by shuffled group order, so each side
    gets about its fraction of *examples*. With fewer than 3 groups, sides may be empty."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError(f"fractions must be three non-negative numbers, got {fractions}")
    total = float(sum(fractions))
    groups_arr = np.asarray([str(g) for g in groups])
    unique, inverse, counts = np.unique(groups_arr, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(unique))
    n = len(groups_arr)
    bounds = (fractions[0] / total * n, (fractions[0] + fractions[1]) / total * n)
    side_of_group = np.empty(len(unique), dtype=np.int64)
    running = 0
    for g in order:
        # A group goes to the side where its first example falls in the running count.
        side_of_group[g] = 0 if running < bounds[0] else (1 if running < bounds[1] else 2)
        running += counts[g]
    # Every side asked for gets at least one group when there are enough groups: take the
    # last-placed group of the side with the most groups.
    wanted = [s for s in range(3) if fractions[s] > 0]
    if len(unique) >= len(wanted):
        for side in wanted:
            if not (side_of_group == side).any():
                donor = int(np.argmax([(side_of_group == s).sum() for s in range(3)]))
                donor_groups = [g for g in order if side_of_group[g] == donor]
                side_of_group[donor_groups[-1]] = side
    example_side = side_of_group[inverse]
    return Split(
        train=np.flatnonzero(example_side == 0),
        validation=np.flatnonzero(example_side == 1),
        test=np.flatnonzero(example_side == 2),
    )
