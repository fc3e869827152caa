"""The budget client's pure parts against the real contract: token ids, books slots, decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clients.budget.chain import (
    BOOK_FIELDS,
    TokenId,
    compute_books_slots,
    compute_category_mask,
    compute_token_id,
    decode_token_id,
    parse_category,
)
from tests.unit.test_vouchers_contract import (
    BOOK,
    GROCER,
    HOLDER,
    LIVING,
    addr,
    issue_budgets,
    set_up_town,
    token,
)


@given(
    st.integers(0, 2**192 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)
def test_token_ids_round_trip(fund: int, category: int, period: int) -> None:
    packed = compute_token_id(fund, category, period)
    assert decode_token_id(packed) == TokenId(fund, category, period)
    assert packed == token(fund, category, period)


def test_token_id_parts_are_bounded() -> None:
    with pytest.raises(ValueError, match="token id"):
        compute_token_id(2**192, 1, 1)
    with pytest.raises(ValueError, match="token id"):
        compute_token_id(1, 2**32, 1)


def test_categories_and_masks() -> None:
    assert [parse_category(n) for n in ("rent", "ENERGY", "3", "Living", "RESERVATION")] == [
        1,
        2,
        3,
        4,
        5,
    ]
    assert compute_category_mask(["RENT", "LIVING"]) == 2 | 16
    with pytest.raises(ValueError, match="category"):
        parse_category("TOBACCO")


def test_books_slots_hold_the_books_on_a_real_chain() -> None:
    """Vyper 0.4's HashMap slot order (keccak256(slot ‖ key)), checked on the committed state."""
    town = set_up_town()
    issue_budgets(town)
    town.do(HOLDER, "pay", addr(GROCER), token(1, LIVING), 12_34)
    town.do(GROCER, "redeem", token(1, LIVING), 10_00)
    state = town.chain.get_state(town.chain.head)
    stored = [state.get_storage(BOOK, slot) for slot in compute_books_slots(1)]
    books = town.books(1)
    assert stored == [books[name] for name in BOOK_FIELDS]
    assert books["spent"] == 2_34
    assert books["pending"] == 10_00
    assert [state.get_storage(BOOK, slot) for slot in compute_books_slots(2)] == [0] * 7
