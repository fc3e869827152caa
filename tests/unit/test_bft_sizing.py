"""A proposer sizes its block by what its own recent checks of proposals cost."""

from __future__ import annotations

import pytest

from node.bft import (
    CHECK_COST_WEIGHT,
    MIN_BLOCK_TRANSACTIONS,
    compute_block_budget,
    update_check_cost,
)


def test_without_an_estimate_only_the_build_time_bounds_a_block() -> None:
    assert compute_block_budget(None, 2.0) is None


def test_the_budget_lets_the_checks_fit_in_half_the_round() -> None:
    # 5 ms per transaction, a 2-second round: the checks may take 1 s
    assert compute_block_budget(0.005, 2.0) == 200
    assert compute_block_budget(0.001, 2.0) == 1000


def test_a_very_slow_check_still_leaves_room_for_some_transactions() -> None:
    assert compute_block_budget(10.0, 2.0) == MIN_BLOCK_TRANSACTIONS


def test_the_first_large_enough_check_sets_the_estimate() -> None:
    assert update_check_cost(None, 0.5, 100) == pytest.approx(0.005)


def test_tiny_proposals_leave_the_estimate_alone() -> None:
    assert update_check_cost(None, 0.5, 3) is None
    assert update_check_cost(0.002, 0.5, 3) == 0.002


def test_later_checks_move_the_estimate_by_their_weight() -> None:
    updated = update_check_cost(0.002, 1.0, 100)
    expected = CHECK_COST_WEIGHT * 0.01 + (1 - CHECK_COST_WEIGHT) * 0.002
    assert updated == pytest.approx(expected)
