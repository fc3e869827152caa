"""The books verifier is pure: it passes on a real chain's events and fails, naming the check,
on tampered copies ([VOUCHER-AUDIT.1])."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from clients.budget.books import FundRecord, compute_books, verify_books
from clients.budget.chain import BookEvent
from tests.unit.test_vouchers_contract import (
    GROCER,
    HOLDER,
    LIVING,
    SCHIEDAM,
    Town,
    addr,
    issue_budgets,
    set_up_town,
    token,
)


def plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def record_of(town: Town) -> FundRecord:
    events = tuple(
        BookEvent(name, {k: plain(v) for k, v in fields.items()}, block=i, index=0)
        for i, (name, fields) in enumerate(town.events)
    )
    return FundRecord(1, len(events), events, ("memory",))


@pytest.fixture(scope="module")
def town() -> Town:
    """A fund with payments, a cancelled redemption and a closed batch."""
    town = set_up_town()
    issue_budgets(town)
    living = token(1, LIVING)
    town.do(HOLDER, "pay", addr(GROCER), living, 50_00)
    town.do(GROCER, "redeem", living, 20_00)
    town.do(GROCER, "redeem", living, 10_00)
    town.do(GROCER, "cancelRedemption", 2)
    town.do(SCHIEDAM, "closePayoutBatch", 1, [1], b"\x01" * 32, at=town.now + 4 * 86400)
    return town


def failed(record: FundRecord, claimed: dict[str, int]) -> list[str]:
    return [name for name, ok, _ in verify_books(record, claimed, "test").checks if not ok]


def test_the_honest_record_passes(town: Town) -> None:
    record = record_of(town)
    books = compute_books(record.events, 1)
    assert books == town.books(1)
    assert books["redeemed"] == 20_00
    assert books["spent"] == 30_00
    report = verify_books(record, town.books(1), "test")
    assert report.passed, report.checks
    assert len(report.checks) == 6


def test_a_dropped_cancellation_fails(town: Town) -> None:
    record = record_of(town)
    events = tuple(e for e in record.events if e.name != "RedemptionCancelled")
    assert failed(replace(record, events=events), town.books(1)) == [
        "balances from transfers",
        "contract books(fund)",
    ]


def test_an_inflated_issuance_fails(town: Town) -> None:
    record = record_of(town)
    events = tuple(
        replace(e, fields={**e.fields, "amount": e.fields["amount"] + 1})
        if e.name == "Issued"
        else e
        for e in record.events
    )
    assert failed(replace(record, events=events), town.books(1)) == [
        "balances from transfers",
        "contract books(fund)",
    ]


def test_a_wrong_batch_total_fails(town: Town) -> None:
    record = record_of(town)
    events = tuple(
        replace(e, fields={**e.fields, "total": 10_00}) if e.name == "PayoutBatchClosed" else e
        for e in record.events
    )
    names = failed(replace(record, events=events), town.books(1))
    assert "payout batches" in names
    assert "contract books(fund)" in names


def test_a_batched_cancelled_payout_fails(town: Town) -> None:
    record = record_of(town)
    events = tuple(
        replace(e, fields={**e.fields, "payouts": [1, 2]}) if e.name == "PayoutBatchClosed" else e
        for e in record.events
    )
    assert "payout batches" in failed(replace(record, events=events), town.books(1))


def test_a_counter_going_negative_names_the_recompute(town: Town) -> None:
    record = record_of(town)
    events = tuple(e for e in record.events if e.name != "Issued")
    assert failed(replace(record, events=events), town.books(1)) == ["books recomputed from events"]


def test_contract_books_that_do_not_add_up_fail(town: Town) -> None:
    claimed = {**town.books(1), "held": town.books(1)["held"] + 1}
    assert failed(record_of(town), claimed) == [
        "issued = held + spent + pending + redeemed + swept + clawed back",
        "contract books(fund)",
    ]


def test_missing_fund_and_contract_mismatch(town: Town) -> None:
    record = record_of(town)
    assert failed(replace(record, fund=2), town.books(1))[0] == "fund created"
    books = town.books(1)
    claimed = {**books, "held": books["held"] - 1, "swept": books["swept"] + 1}
    assert failed(record, claimed) == ["contract books(fund)"]
    assert failed(record, None) == ["contract books(fund)"]
