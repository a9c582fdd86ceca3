"""Grouped splits never put one group on two sides."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engines.training.splits import grouped_split


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=30), min_size=3, max_size=200), st.integers(0, 10_000))
def test_no_group_on_two_sides_and_every_example_placed(group_ids, seed):
    groups = [f"obj{g}" for g in group_ids]
    split = grouped_split(groups, seed=seed)
    sides = [set(np.asarray(groups)[idx]) for idx in (split.train, split.validation, split.test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    placed = np.sort(np.concatenate([split.train, split.validation, split.test]))
    np.testing.assert_array_equal(placed, np.arange(len(groups)))
    if len(set(groups)) >= 3:
        assert all(len(idx) > 0 for idx in (split.train, split.validation, split.test))


def test_fractions_are_about_right_and_seeded():
    groups = [f"g{i // 4}" for i in range(4000)]
    a = grouped_split(groups, (0.8, 0.1, 0.1), seed=5)
    b = grouped_split(groups, (0.8, 0.1, 0.1), seed=5)
    np.testing.assert_array_equal(a.test, b.test)
    assert 0.75 < len(a.train) / 4000 < 0.85
    assert 0.07 < len(a.test) / 4000 < 0.13


def test_bad_fractions_raise():
    with pytest.raises(ValueError):
        grouped_split(["a", "b"], (0.5, 0.5))
