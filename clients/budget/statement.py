"""``polder budget wallet statement``: a holder's lines, each proven ([VOUCHER-STATEMENT.1]).

The statement is built from what the nodes serve and then checked through
the light client, so that no node (not even the municipality's own) can
show a holder a private version of their budget:

1. the light client verifies the head; its number ``B`` bounds everything;
2. every node serves the holder's VoucherBook events up to ``B``
   (:func:`get_holder_events`); all must serve the very same events
   (:func:`compare_served`);
3. each transaction those events come from is proven with its receipt in a
   quorum-sealed header other providers confirm; it succeeded, sits in the
   block the events name, and every event is one of the receipt's
   VoucherBook logs (:func:`validate_transaction_lines`);
4. the holder's registration (fund, status) proven by storage equals the
   one the events lead to (:func:`validate_status`);
5. for every budget the lines touch *and* every budget the contract tracks
   for the holder (``held_ids``, proven by storage), the balance proven by
   storage at ``B`` equals the sum of the lines (:func:`validate_balances`):
   a node that leaves a line out, on every node alike, is caught here.

Steps 3-5 read only proven data. The functions that build lines, sum them
and compare them with proofs are pure; :func:`build_statement` does the I/O.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi.exceptions import DecodingError
from eth_hash.auto import keccak

from clients.budget.chain import (
    BOOK_NAME,
    CATEGORY_NAMES,
    HOLDER_STATUS,
    BookEvent,
    BudgetChain,
    decode_log,
    decode_token_id,
    require_same_events,
)
from clients.light.client import LightClient
from clients.report import Report
from consensus.errors import InvalidProof
from consensus.proofs import Receipt
from contracts.loader import load_artifact

ZERO = "0x" + "00" * 20
MAX_HELD = 64
"""The contract tracks at most 64 budgets per holder (``MAX_HELD`` in VoucherBook.vy)."""
STORAGE_SLOTS = load_artifact(BOOK_NAME).storage_slots
ACTIVE, FROZEN, RECOVERED = 1, 2, 3
COMPANIONS = ("Issued", "Paid", "Swept", "ClawedBack", "Recovered")
"""Events that follow a ``TransferSingle`` in its transaction and say what it was."""
NOTICES = (
    "HolderRegistered",
    "HolderFrozen",
    "PartFrozen",
    "SpendingCapSet",
    "Recovered",
    "MandateCreated",
    "AuthorizationUsed",
)
"""The holder's own events that are lines without an amount."""
HOLDER_FIELDS = {
    "Issued": ("holder",),
    "Paid": ("holder",),
    "Swept": ("holder",),
    "ClawedBack": ("holder",),
    "HolderRegistered": ("holder",),
    "HolderFrozen": ("holder",),
    "PartFrozen": ("holder",),
    "SpendingCapSet": ("holder",),
    "MandateCreated": ("holder",),
    "AuthorizationUsed": ("holder",),
    "Recovered": ("old", "replacement"),
    "TransferSingle": ("sender", "receiver"),
}
"""Which fields of an event name the holder it concerns."""
REASON_WORDS = {
    1: "at the holder's request",
    2: "the key was lost or stolen",
    3: "suspected misuse, under review",
    4: "the budget plan changed",
    5: "issued in error",
    6: "the matter was resolved",
    7: "the budget ended",
    8: "set aside for a later bill",
}
"""[VOUCHER-REASON.1] in plain language."""


@dataclass(frozen=True)
class HolderRecord:
    """A holder's events up to ``block``, as every node served them."""

    holder: str
    """Lowercase 0x address."""
    block: int
    """The verified head the record stops at."""
    events: tuple[BookEvent, ...]
    """In chain order, each with its transaction hash."""
    nodes: tuple[str, ...] = ()
    """The nodes that served this very record."""


@dataclass(frozen=True)
class Line:
    """One line of a statement: a movement of a budget, or a notice (amount 0)."""

    event: BookEvent
    """The ``TransferSingle`` of a movement, or the notice's own event."""
    token_id: int | None
    """The budget concerned; None for a notice about the key (registered, frozen)."""
    amount: int
    """Signed change of the holder's balance of ``token_id``; 0 for a notice."""
    text: str
    """What happened, in plain words."""

    @property
    def is_movement(self) -> bool:
        """True for a change of the balance, False for a notice."""
        return self.event.name == "TransferSingle"


@dataclass
class Statement:
    """A holder's statement and the report of its checks."""

    holder: str
    """Lowercase 0x address."""
    report: Report = field(default_factory=Report)
    """The checks, in order; the statement is verified only if all passed."""
    block: int = 0
    """The verified head ``B``; 0 if not even the head verified."""
    block_hash: bytes = b""
    """The verified head's hash."""
    lines: tuple[Line, ...] = ()
    """In chain order; empty if the nodes did not serve the same events."""
    times: dict[int, int] = field(default_factory=dict)
    """Timestamps of proven headers, by block number."""
    balances: dict[int, int] = field(default_factory=dict)
    """Balances proven by storage at ``block``, by token id."""
    registration: tuple[int, int] = (0, 0)
    """(fund, status) proven by storage at ``block``."""

    @property
    def verified(self) -> bool:
        """True only if every check ran and passed."""
        return self.report.passed


# --- the holder's events ---------------------------------------------------------------


def is_holder_event(event: BookEvent, holder: str) -> bool:
    """True if ``event`` concerns ``holder`` (lowercase 0x) on a statement."""
    names = HOLDER_FIELDS.get(event.name, ())
    return any(event.fields.get(name) == holder for name in names)


def encode_address_topic(address: str) -> bytes:
    """An address as an indexed event argument: a 32-byte word."""
    return bytes(12) + bytes.fromhex(address.removeprefix("0x"))


def get_holder_events(chain: BudgetChain, holder: str, block: int) -> list[BookEvent]:
    """One node's events of ``holder`` up to ``block``: the holder in topic 1, 2 or 3."""
    topic = encode_address_topic(holder)
    found: dict[tuple[int, int], BookEvent] = {}
    for position in (1, 2, 3):
        topics = [None] * position + [topic]
        for event in chain.get_events(to_block=block, topics=topics):
            if is_holder_event(event, holder):
                found[event.block, event.index] = event
    return [found[place] for place in sorted(found)]


def compare_served(
    served: Sequence[tuple[str, Sequence[BookEvent]]], holder: str, block: int
) -> HolderRecord:
    """The record every node served alike; raise naming two nodes that differ."""
    events = require_same_events(served, f"{holder}'s lines up to #{block}")
    return HolderRecord(holder, block, events, tuple(name for name, _ in served))


def collect_holder_events(
    chains: Sequence[tuple[str, BudgetChain]], holder: str, block: int
) -> HolderRecord:
    """Read the holder's events up to ``block`` from every node; raise unless all agree."""
    served = []
    for name, chain in chains:
        try:
            served.append((name, get_holder_events(chain, holder, block)))
        except (DecodingError, ValueError) as exc:
            raise InvalidProof(
                f"{name} serves a VoucherBook log that does not decode: {exc}"
            ) from exc
    return compare_served(served, holder, block)


# --- lines -----------------------------------------------------------------------------


def format_euro(cents: int, signed: bool = False) -> str:
    """Cents as euros, e.g. ``€ 1,234.50`` (``+ € …``/``- € …`` when ``signed``)."""
    text = f"€ {abs(cents) // 100:,}.{abs(cents) % 100:02d}"
    if signed:
        return ("- " if cents < 0 else "+ ") + text
    return ("-" if cents < 0 else "") + text


def describe_budget(token_id: int) -> str:
    """E.g. ``LIVING (fund 1, period 202601)``."""
    token = decode_token_id(token_id)
    category = CATEGORY_NAMES.get(token.category, f"category {token.category}")
    return f"{category} (fund {token.fund}, period {token.period})"


def describe_reason(code: int) -> str:
    return REASON_WORDS.get(code, f"reason {code}")


def describe_transfer(transfer: BookEvent, same_tx: Sequence[BookEvent], holder: str) -> str:
    """Plain words for a ``TransferSingle``, from the other events of its transaction.

    The first companion event after it says what it was (``Paid`` follows its
    transfer, ``Recovered`` follows all of its transfers); an
    ``AuthorizationUsed`` before it means it was paid at the till.
    """
    incoming = transfer.fields["receiver"] == holder
    other = transfer.fields["sender"] if incoming else transfer.fields["receiver"]
    if incoming and other == ZERO:
        return "budget issued"
    later = (e for e in same_tx if e.index > transfer.index and e.name in COMPANIONS)
    explained = next(later, None)
    kind = explained.name if explained else ""
    if kind == "Recovered":
        return (
            f"moved here from your old key {other} (recovery)"
            if incoming
            else f"moved to your new key {other} (recovery)"
        )
    if kind == "Paid" and explained is not None and explained.fields["mandate"]:
        return f"mandate instalment to {other} (mandate {explained.fields['mandate']})"
    if kind == "Paid":
        till = any(e.name == "AuthorizationUsed" and not e.fields["cancelled"] for e in same_tx)
        return f"paid to {other}" + (" at the till" if till else "")
    if kind == "Swept":
        return "swept back to the fund (period expired)"
    if kind == "ClawedBack" and explained is not None:
        return f"taken back by the municipality ({describe_reason(explained.fields['reason'])})"
    return f"received from {other}" if incoming else f"sent to {other}"


def describe_notice(event: BookEvent, holder: str) -> str | None:
    """Plain words for one of the holder's own events; None if it is not a notice."""
    fields = event.fields
    if event.name == "HolderRegistered":
        return f"registered as a budget holder of fund {fields['fund']}"
    if event.name == "HolderFrozen":
        verb = "budget frozen" if fields["frozen"] else "freeze lifted"
        return f"{verb} ({describe_reason(fields['reason'])})"
    if event.name == "PartFrozen":
        if not fields["amount"]:
            return f"partial freeze lifted ({describe_reason(fields['reason'])})"
        amount = format_euro(fields["amount"])
        return f"{amount} of this budget frozen ({describe_reason(fields['reason'])})"
    if event.name == "SpendingCapSet":
        cap = fields["cap"]
        return f"spending limit set to {format_euro(cap)}" if cap else "spending limit lifted"
    if event.name == "Recovered":
        why = describe_reason(fields["reason"])
        if fields["old"] == holder:
            return f"this key was replaced by {fields['replacement']} ({why})"
        return f"your budgets were moved to this key from {fields['old']} ({why})"
    if event.name == "MandateCreated":
        return (
            f"fixed charge set up: {fields['count']} x {format_euro(fields['amount'])}"
            f" to {fields['merchant']} (mandate {fields['mandate']})"
        )
    if event.name == "AuthorizationUsed" and fields["cancelled"]:
        return f"you cancelled a till authorisation (nonce {fields['nonce']:#x})"
    return None


def compute_lines(events: Sequence[BookEvent], holder: str) -> list[Line]:
    """The statement's lines from the holder's events (in chain order)."""
    lines = []
    for event in events:
        if not is_holder_event(event, holder):
            continue
        if event.name == "TransferSingle":
            same_tx = [e for e in events if e.tx == event.tx and e is not event]
            sign = 1 if event.fields["receiver"] == holder else -1
            words = describe_transfer(event, same_tx, holder)
            lines.append(Line(event, event.fields["id"], sign * event.fields["value"], words))
            continue
        notice = describe_notice(event, holder) if event.name in NOTICES else None
        if notice is not None:
            lines.append(Line(event, event.fields.get("id"), 0, notice))
    return lines


def compute_balances(lines: Sequence[Line]) -> dict[int, int]:
    """Each budget's balance: the sum of its lines' signed amounts."""
    balances: dict[int, int] = {}
    for line in lines:
        if line.is_movement and line.token_id is not None:
            balances[line.token_id] = balances.get(line.token_id, 0) + line.amount
    return balances


def compute_registration(events: Sequence[BookEvent], holder: str) -> tuple[int, int]:
    """(fund, status) of ``holder`` as its events leave it ([VOUCHER-HOLDER.1])."""
    fund, status = 0, 0
    for event in events:
        fields = event.fields
        if event.name == "HolderRegistered" and fields["holder"] == holder:
            fund, status = fields["fund"], ACTIVE
        elif event.name == "HolderFrozen" and fields["holder"] == holder:
            status = FROZEN if fields["frozen"] else ACTIVE
        elif event.name == "Recovered" and fields["old"] == holder:
            status = RECOVERED
        elif event.name == "Recovered" and fields["replacement"] == holder:
            fund, status = fields["fund"], ACTIVE
    return fund, status


# --- checks against proven data --------------------------------------------------------


def event_key(event: BookEvent) -> tuple[str, str]:
    """What a served event and a proven log must have in common: name and fields."""
    return event.name, repr(sorted(event.fields.items()))


def validate_transaction_lines(
    events: Sequence[BookEvent], block: int, receipt: Receipt, book: bytes, head: int
) -> None:
    """The served ``events`` of one transaction are logs of its proven ``receipt``.

    ``block`` is the number of the verified header the transaction is proven
    in; ``book`` the VoucherBook address. Raise :class:`InvalidProof` if the
    transaction is after ``head`` or elsewhere than the events say, failed,
    or lacks one of the events.
    """
    tx = events[0].tx
    if block > head:
        raise InvalidProof(f"transaction {tx} is proven in #{block}, after the head #{head}")
    misplaced = [e.block for e in events if e.block != block]
    if misplaced:
        raise InvalidProof(
            f"a node puts transaction {tx} in block #{misplaced[0]}, the proof in #{block}"
        )
    if not receipt.succeeded:
        raise InvalidProof(f"transaction {tx} failed (status 0), yet a node serves its logs")
    proven: Counter[tuple[str, str]] = Counter()
    for index, log in enumerate(receipt.logs):
        if log.address == book:
            decoded = decode_log(log.topics, log.data, block, index)
            if decoded is not None:
                proven[event_key(decoded)] += 1
    served = Counter(event_key(e) for e in events)
    for key, count in served.items():
        if proven[key] < count:
            raise InvalidProof(
                f"a node serves a {key[0]} line of transaction {tx} that its proven receipt"
                " does not hold"
            )


def validate_registration(computed: tuple[int, int], proven: tuple[int, int]) -> str:
    """The holder's (fund, status) from its events equals the one proven by storage."""
    if computed != proven:
        raise InvalidProof(
            f"the events leave the key {describe_registration(computed)}, but storage proves"
            f" {describe_registration(proven)}: the nodes left out a registration, freeze or"
            " recovery event"
        )
    return describe_registration(proven)


def describe_registration(registration: tuple[int, int]) -> str:
    fund, status = registration
    text = HOLDER_STATUS.get(status, f"status {status}")
    return f"{text} in fund {fund}" if fund else text


def validate_balances(computed: dict[int, int], proven: dict[int, int]) -> str:
    """Every budget's proven balance equals the sum of its lines (missing lines show here)."""
    for token_id in sorted(set(computed) | set(proven)):
        if token_id not in proven:
            raise InvalidProof(f"{describe_budget(token_id)}: no storage proof of its balance")
        if computed.get(token_id, 0) != proven[token_id]:
            raise InvalidProof(
                f"{describe_budget(token_id)}: the lines add up to"
                f" {format_euro(computed.get(token_id, 0))}, but the balance proven by storage"
                f" is {format_euro(proven[token_id])}: the nodes left out lines"
            )
    parts = [f"{describe_budget(t)} {format_euro(v)}" for t, v in sorted(proven.items())]
    return "; ".join(parts) or "no budgets"


# --- storage slots ---------------------------------------------------------------------


def compute_mapping_slot(slot: int, *keys: int) -> int:
    """Vyper 0.4: ``HashMap`` at ``slot``, element ``k`` at keccak256(slot ‖ k), nested per key."""
    for key in keys:
        slot = int.from_bytes(keccak(slot.to_bytes(32, "big") + key.to_bytes(32, "big")), "big")
    return slot


def compute_balance_slot(holder: str, token_id: int) -> int:
    """``balanceOf[holder][token_id]``."""
    return compute_mapping_slot(STORAGE_SLOTS["balanceOf"], int(holder, 16), token_id)


def compute_registration_slots(holder: str) -> list[int]:
    """``holders[holder]``: the struct's ``fund`` and ``status``, one slot each."""
    start = compute_mapping_slot(STORAGE_SLOTS["holders"], int(holder, 16))
    return [start, start + 1]


def compute_held_slots(holder: str, count: int | None = None) -> list[int]:
    """``held_ids[holder]``: a DynArray's length slot, or (``count``) its first items' slots."""
    start = compute_mapping_slot(STORAGE_SLOTS["held_ids"], int(holder, 16))
    if count is None:
        return [start]
    return [start + 1 + i for i in range(count)]


# --- the statement, with I/O -----------------------------------------------------------


def prove_transactions(
    client: LightClient, record: HolderRecord, book: bytes, times: dict[int, int]
) -> str:
    """Prove every transaction of the record (step 3); note the proven headers' times."""
    by_tx: dict[str, list[BookEvent]] = {}
    for event in record.events:
        by_tx.setdefault(event.tx, []).append(event)
    agreed: set[str] = set()
    for tx, events in by_tx.items():
        if not tx.startswith("0x") or len(tx) != 66:
            raise InvalidProof(f"a line of block #{events[0].block} comes without its transaction")
        verified = client.verify_transaction(bytes.fromhex(tx[2:]))
        validate_transaction_lines(
            events, verified.block.number, verified.proven.receipt, book, record.block
        )
        times[verified.block.number] = verified.block.timestamp
        agreed.update(verified.agreed)
    if not by_tx:
        return "no lines to prove"
    return (
        f"{len(by_tx)} transaction(s) proven with their receipts (all succeeded) in headers"
        f" sealed by a quorum and served alike by {', '.join(sorted(agreed))}"
    )


def get_proven_storage(
    client: LightClient, book: bytes, block: int, slots: Sequence[int]
) -> dict[int, int]:
    """The VoucherBook's ``slots`` at ``block``, each value proven against its state root."""
    proven = client.verify_account(book, block, slots)
    if proven.block.number != block:
        raise InvalidProof(f"the storage proof is of #{proven.block.number}, not #{block}")
    return proven.storage


def prove_balances(
    client: LightClient, statement: Statement, book: bytes, computed: dict[int, int]
) -> str:
    """Step 5: the tracked budgets and their balances, proven; compared with the lines."""
    holder, block = statement.holder, statement.block
    (count_slot,) = compute_held_slots(holder)
    count = min(get_proven_storage(client, book, block, [count_slot])[count_slot], MAX_HELD)
    item_slots = compute_held_slots(holder, count)
    held = get_proven_storage(client, book, block, item_slots) if count else {}
    tokens = sorted(set(computed) | {held[slot] for slot in item_slots})
    slots = {token_id: compute_balance_slot(holder, token_id) for token_id in tokens}
    values = get_proven_storage(client, book, block, list(slots.values())) if slots else {}
    statement.balances = {token_id: values[slot] for token_id, slot in slots.items()}
    return validate_balances(computed, statement.balances) + f" (storage proof at #{block})"


def build_statement(
    chains: Sequence[tuple[str, BudgetChain]], client: LightClient, book: str, holder: str
) -> Statement:
    """Read the holder's lines from every node and check them (module docstring, 1-5)."""
    holder = holder.lower()
    book_bytes = bytes.fromhex(book.removeprefix("0x"))
    statement = Statement(holder)
    report = statement.report
    record: list[HolderRecord] = []

    def head() -> str:
        verified = client.verify_head()
        statement.block, statement.block_hash = verified.block.number, verified.block.hash
        statement.times[verified.block.number] = verified.block.timestamp
        return f"#{verified.block.number}, header served alike by {', '.join(verified.agreed)}"

    def served() -> str:
        record.append(collect_holder_events(chains, holder, statement.block))
        statement.lines = tuple(compute_lines(record[0].events, holder))
        return (
            f"{len(record[0].events)} event(s) up to #{statement.block}, identical on"
            f" {len(record[0].nodes)} node(s)"
        )

    def registration() -> str:
        slots = compute_registration_slots(holder)
        values = get_proven_storage(client, book_bytes, statement.block, slots)
        statement.registration = (values[slots[0]], values[slots[1]])
        computed = compute_registration(record[0].events, holder)
        return validate_registration(computed, statement.registration) + " (storage proof)"

    if not report.check("verified head", head) or not report.check(
        "lines served alike by every node", served
    ):
        return statement
    checks: tuple[tuple[str, Callable[[], str]], ...] = (
        (
            "every line is in a proven transaction",
            lambda: prove_transactions(client, record[0], book_bytes, statement.times),
        ),
        ("registration proven by storage", registration),
        (
            "balances proven by storage equal the lines",
            lambda: prove_balances(
                client, statement, book_bytes, compute_balances(statement.lines)
            ),
        ),
    )
    for name, run in checks:
        report.check(name, run)
    return statement


# --- showing it ------------------------------------------------------------------------


def format_time(timestamp: int | None, block: int) -> str:
    """A proven header's time in the local zone, or the block number if not proven."""
    if timestamp is None:
        return f"block #{block}"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def group_lines(statement: Statement) -> tuple[list[Line], dict[int, list[Line]]]:
    """The key's notices, and each budget's lines (every proven or tracked budget)."""
    general: list[Line] = []
    budgets: dict[int, list[Line]] = {t: [] for t in statement.balances}
    for line in statement.lines:
        if line.token_id is None:
            general.append(line)
        else:
            budgets.setdefault(line.token_id, []).append(line)
    ordered = sorted(budgets, key=lambda t: (t >> 64, (t >> 32) & 0xFFFFFFFF, t & 0xFFFFFFFF))
    return general, {token_id: budgets[token_id] for token_id in ordered}


def format_line(line: Line, statement: Statement, balance: int | None) -> str:
    """Date, amount and running balance (blank for a notice), then the words."""
    when = format_time(statement.times.get(line.event.block), line.event.block)
    amount = "" if balance is None else format_euro(line.amount, signed=True)
    total = "" if balance is None else format_euro(balance)
    return f"  {when:<16}  {amount:>16}  {total:>14}  {line.text}"


def format_statement(statement: Statement) -> str:
    """The statement as a holder reads it, then each check and the verdict."""
    out = [f"Statement of {statement.holder}"]
    if statement.block:
        when = format_time(statement.times.get(statement.block), statement.block)
        out.append(f"  up to block #{statement.block} ({when})")
    if statement.registration != (0, 0):
        out.append(f"  {describe_registration(statement.registration)}")
    general, budgets = group_lines(statement)
    out.extend(format_line(line, statement, None) for line in general)
    for token_id, lines in budgets.items():
        out += ["", describe_budget(token_id)]
        balance = 0
        for line in lines:
            balance += line.amount
            out.append(format_line(line, statement, balance if line.is_movement else None))
        out.append(f"  {'balance':<16}  {'':>16}  {format_euro(balance):>14}")
    out += ["", "Checks"]
    out += [
        f"  {'✓' if ok else '✗'} {name}: {detail}" for name, ok, detail in statement.report.checks
    ]
    out.append("VERIFIED" if statement.verified else "NOT VERIFIED")
    return "\n".join(out)


def encode_line(line: Line, statement: Statement, balance: int | None) -> dict[str, Any]:
    return {
        "block": line.event.block,
        "time": statement.times.get(line.event.block),
        "transactionHash": line.event.tx,
        "event": line.event.name,
        "amount": line.amount,
        "balance": balance,
        "text": line.text,
    }


def encode_statement(statement: Statement) -> dict[str, Any]:
    """The statement as JSON-ready data (amounts in cents)."""
    general, budgets = group_lines(statement)
    encoded_budgets = []
    for token_id, lines in budgets.items():
        token, balance, encoded = decode_token_id(token_id), 0, []
        for line in lines:
            balance += line.amount
            encoded.append(encode_line(line, statement, balance if line.is_movement else None))
        encoded_budgets.append(
            {
                "tokenId": hex(token_id),
                "fund": token.fund,
                "category": CATEGORY_NAMES.get(token.category, str(token.category)),
                "period": token.period,
                "balance": balance,
                "provenBalance": statement.balances.get(token_id),
                "lines": encoded,
            }
        )
    fund, status = statement.registration
    return {
        "verdict": "VERIFIED" if statement.verified else "NOT VERIFIED",
        "holder": statement.holder,
        "block": statement.block,
        "blockHash": "0x" + statement.block_hash.hex(),
        "time": statement.times.get(statement.block),
        "fund": fund,
        "status": HOLDER_STATUS.get(status, str(status)),
        "notices": [encode_line(line, statement, None) for line in general],
        "budgets": encoded_budgets,
        "checks": [
            {"name": name, "ok": ok, "detail": detail}
            for name, ok, detail in statement.report.checks
        ],
    }
