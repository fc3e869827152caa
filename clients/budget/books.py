"""``polder verify books``: a fund's books recomputed from chain data alone ([VOUCHER-AUDIT.1]).

:func:`collect_events` reads every event of the fund from each node, up to
one block, and requires all nodes to serve the same events (so no single
node can show a private version). :func:`verify_books` is pure: it
recomputes the counters from those events, checks the identity
``issued == held + spent + pending + redeemed + swept + clawed_back``,
the balances, the payout batches, and compares with the contract's own
``books(fund)`` as given (proven by a storage proof, or read by
``eth_call`` from every node). A tampered copy of the events fails,
naming the check.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from clients.budget.chain import (
    BOOK_FIELDS,
    BookEvent,
    BudgetChain,
    compute_books_slots,
    require_same_events,
)
from clients.light.client import LightClient
from clients.report import Report
from consensus.errors import InvalidProof

BOOK_EFFECTS = {
    "Issued": (("issued", 1), ("held", 1)),
    "Paid": (("held", -1), ("spent", 1)),
    "Redeemed": (("spent", -1), ("pending", 1)),
    "RedemptionCancelled": (("pending", -1), ("spent", 1)),
    "Swept": (("held", -1), ("swept", 1)),
    "ClawedBack": (("held", -1), ("clawed_back", 1)),
}
"""[VOUCHER-BOOKS.1] how each event moves the counters of its fund (amount field)."""
ZERO = "0x" + "00" * 20


@dataclass(frozen=True)
class FundRecord:
    """Every event of one fund up to ``block``, as all the nodes served it."""

    fund: int
    """The fund."""
    block: int
    """The last block read."""
    events: tuple[BookEvent, ...]
    """In chain order."""
    nodes: tuple[str, ...] = ()
    """The nodes that served this very record."""


def collect_events(chains: Sequence[tuple[str, BudgetChain]], fund: int, block: int) -> FundRecord:
    """Read the fund's events up to ``block`` from every node; raise unless all agree."""
    records = [(name, chain.get_events(fund, block)) for name, chain in chains]
    events = require_same_events(records, f"fund {fund}'s events")
    return FundRecord(fund, block, events, tuple(name for name, _ in records))


def prove_books(
    client: LightClient, book: str, fund: int, block: int
) -> tuple[dict[str, int], str]:
    """The contract's ``books(fund)`` at ``block``, by a storage proof; and where it came from."""
    slots = compute_books_slots(fund)
    proven = client.verify_account(bytes.fromhex(book.removeprefix("0x")), block, slots)
    values = [proven.storage[slot] for slot in slots]
    return dict(zip(BOOK_FIELDS, values, strict=True)), (
        f"storage proof at #{block}, header agreed by {', '.join(proven.agreed)}"
    )


def compute_books(events: Sequence[BookEvent], fund: int) -> dict[str, int]:
    """The counters of ``fund`` from its events alone; raise if one would go negative."""
    books = dict.fromkeys(BOOK_FIELDS, 0)
    created = False
    for event in events:
        if event.fields.get("fund") != fund:
            continue
        if event.name == "FundCreated":
            created = True
        moves = BOOK_EFFECTS.get(event.name, ())
        amount = event.fields.get("amount", 0)
        if event.name == "PayoutBatchClosed":
            moves, amount = (("pending", -1), ("redeemed", 1)), event.fields["total"]
        if moves and not created:
            raise InvalidProof(f"{event.name} at block {event.block} comes before FundCreated")
        for counter, sign in moves:
            books[counter] += sign * amount
            if books[counter] < 0:
                raise InvalidProof(
                    f"{counter} would go negative at block {event.block} ({event.name})"
                )
    return books


def check_identity(books: dict[str, int]) -> str:
    """[VOUCHER-BOOKS.1] on the contract's books (the recomputed ones hold it by construction)."""
    rest = sum(value for name, value in books.items() if name != "issued")
    if books["issued"] != rest:
        raise InvalidProof(f"issued {books['issued']} ≠ held + spent + … = {rest}")
    return f"issued {books['issued']} = " + " + ".join(
        f"{name} {books[name]}" for name in BOOK_FIELDS[1:]
    )


def compute_balances(events: Sequence[BookEvent], fund: int) -> Counter[str]:
    """Every account's total balance in ``fund`` from ``TransferSingle`` events alone."""
    balances: Counter[str] = Counter()
    for event in events:
        if event.name == "TransferSingle" and event.fields["id"] >> 64 == fund:
            balances[event.fields["sender"]] -= event.fields["value"]
            balances[event.fields["receiver"]] += event.fields["value"]
    balances.pop(ZERO, None)
    return balances


def check_balances(events: Sequence[BookEvent], fund: int, books: dict[str, int]) -> str:
    """Holders' balances sum to ``held``, every other account's to ``spent``."""
    holders = {e.fields["holder"] for e in events if e.name == "HolderRegistered"}
    holders |= {e.fields["replacement"] for e in events if e.name == "Recovered"}
    balances = compute_balances(events, fund)
    negative = [a for a, v in balances.items() if v < 0]
    if negative:
        raise InvalidProof(f"account {negative[0]} would hold a negative balance")
    held = sum(v for a, v in balances.items() if a in holders)
    spent = sum(v for a, v in balances.items() if a not in holders)
    if (held, spent) != (books["held"], books["spent"]):
        raise InvalidProof(
            f"transfers give held {held} and spent {spent}, the counters {books['held']}"
            f" and {books['spent']}"
        )
    return f"{len(holders)} holder(s) hold {held}; shops hold {spent}"


def check_batches(events: Sequence[BookEvent], fund: int) -> str:
    """Each batched payout was redeemed in the fund, not cancelled, batched once; totals add up."""
    redeemed = {e.fields["payout"]: e for e in events if e.name == "Redeemed"}
    cancelled = {e.fields["payout"] for e in events if e.name == "RedemptionCancelled"}
    batched: set[int] = set()
    batches = [e for e in events if e.name == "PayoutBatchClosed" and e.fields["fund"] == fund]
    for batch in batches:
        total = 0
        for payout in batch.fields["payouts"]:
            source = redeemed.get(payout)
            if source is None or source.fields["fund"] != fund or source.block > batch.block:
                raise InvalidProof(
                    f"batch {batch.fields['batch']}: payout {payout} was not redeemed"
                )
            if payout in cancelled or payout in batched:
                raise InvalidProof(
                    f"batch {batch.fields['batch']}: payout {payout} was cancelled or paid before"
                )
            batched.add(payout)
            total += source.fields["amount"]
        if total != batch.fields["total"]:
            raise InvalidProof(
                f"batch {batch.fields['batch']}: total {batch.fields['total']} ≠ sum {total}"
            )
    return f"{len(batches)} batch(es), {len(batched)} payout(s), each redeemed and paid once"


def check_contract(recomputed: dict[str, int], claimed: dict[str, int], source: str) -> str:
    if recomputed != claimed:
        differ = [
            f"{k} {claimed[k]} ≠ {recomputed[k]}"
            for k in BOOK_FIELDS
            if claimed[k] != recomputed[k]
        ]
        raise InvalidProof(f"the contract's books ({source}) differ: {', '.join(differ)}")
    return f"equal ({source})"


def verify_books(record: FundRecord, claimed: dict[str, int] | None, source: str) -> Report:
    """Re-check the fund's books from its record; see the module docstring."""
    report = Report()
    events, fund = record.events, record.fund
    state: dict[str, dict[str, int]] = {}

    def created() -> str:
        made = [e for e in events if e.name == "FundCreated" and e.fields["fund"] == fund]
        if len(made) != 1:
            raise InvalidProof(f"the record has {len(made)} FundCreated events for fund {fund}")
        return f"by {made[0].fields['issuer']} at block {made[0].block}"

    def recompute() -> str:
        state["books"] = compute_books(events, fund)
        return ", ".join(f"{k} {v}" for k, v in state["books"].items())

    if not report.check("fund created", created) or not report.check(
        "books recomputed from events", recompute
    ):
        return report
    books = state["books"]
    report.check(
        "issued = held + spent + pending + redeemed + swept + clawed back",
        lambda: check_identity(books if claimed is None else claimed),
    )
    report.check("balances from transfers", lambda: check_balances(events, fund, books))
    report.check("payout batches", lambda: check_batches(events, fund))
    if claimed is None:
        report.checks.append(("contract books(fund)", False, f"not available: {source}"))
    else:
        report.check("contract books(fund)", lambda: check_contract(books, claimed, source))
    return report
