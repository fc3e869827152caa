"""The VoucherBook contract on a real in-memory chain (docs/spec/vouchers.md).

Every step is a zero-fee transaction from a fresh key in a built, sealed and
committed block; a refusal is read as the builder's exclusion reason, the
error a node's admission returns. After every block the books of every fund
must satisfy the identity, and must equal the books an auditor recomputes
from the committed receipts' logs alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth.abc import SignedTransactionAPI
from eth.db.atomic import AtomicDB
from eth.db.backends.memory import MemoryDB
from eth_abi.abi import decode, encode
from eth_account import Account
from eth_hash.auto import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.genesis import Genesis, decode_genesis
from consensus.seal import compute_quorum
from contracts.loader import load_artifact
from contracts.registry import compute_registry_storage
from node.chain import Chain
from node.governance import run_view
from tests.unit.test_chain import CHAIN_ID, GENESIS_TIMESTAMP, address_of, sign_transaction

BOOK = bytes(18) + b"\x04\x00"
REGISTRY = bytes(18) + b"\x02\x00"
ARTIFACT = load_artifact("VoucherBook")
SCHIEDAM, ROTTERDAM, DELFT = (keccak(b"polder vouchers validator %d" % i) for i in range(3))
VALIDATOR_KEYS = (SCHIEDAM, ROTTERDAM, DELFT)
ZERO = "0x" + "00" * 20
HOUR = 3600
DAY = 24 * HOUR
START = GENESIS_TIMESTAMP + 8 * HOUR
"""The first block of every test: 1 January 2026, 08:00 UTC."""
PERIOD = 202601
"""The household's budget period (January-March 2026), a label the issuer chooses."""
PERIOD_END = GENESIS_TIMESTAMP + 90 * DAY
WINDOW = 3 * DAY
RENT, ENERGY, INSURANCE, LIVING, RESERVATION = 1, 2, 3, 4, 5
HOLDER_REQUEST, KEY_LOST, SUSPECTED_MISUSE, PLAN_CHANGED = 1, 2, 3, 4
ISSUED_IN_ERROR, RESOLVED, BUDGET_ENDED, SET_ASIDE = 5, 6, 7, 8
PENDING, CANCELLED, PAID = 1, 2, 3
BOOK_FIELDS = ("issued", "held", "spent", "pending", "redeemed", "swept", "clawed_back")
BOOK_EFFECTS = {
    "Issued": (("issued", 1), ("held", 1)),
    "Paid": (("held", -1), ("spent", 1)),
    "Redeemed": (("spent", -1), ("pending", 1)),
    "RedemptionCancelled": (("pending", -1), ("spent", 1)),
    "Swept": (("held", -1), ("swept", 1)),
    "ClawedBack": (("held", -1), ("clawed_back", 1)),
}
"""[VOUCHER-AUDIT.1] how each event moves the books of the fund it names."""


def key(label: str) -> bytes:
    return keccak(b"polder vouchers " + label.encode())


def addr(private_key: bytes) -> str:
    return "0x" + address_of(private_key).hex()


def token(fund: int, category: int, period: int = PERIOD) -> int:
    return fund << 64 | category << 32 | period


# --- ABI ------------------------------------------------------------------------------


def abi_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(abi_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return str(param["type"])


FUNCTIONS = {e["name"]: e for e in ARTIFACT.abi if e["type"] == "function"}
EVENTS = {
    int.from_bytes(
        keccak(f"{e['name']}({','.join(abi_type(i) for i in e['inputs'])})".encode()), "big"
    ): e
    for e in ARTIFACT.abi
    if e["type"] == "event"
}


def calldata(name: str, *args: Any) -> bytes:
    types = [abi_type(i) for i in FUNCTIONS[name]["inputs"]]
    selector = keccak(f"{name}({','.join(types)})".encode())[:4]
    return selector + encode(types, list(args))


def decode_topic(kind: str, topic: int) -> Any:
    raw = topic.to_bytes(32, "big")
    if kind == "address":
        return "0x" + raw[12:].hex()
    if kind == "bytes32":
        return raw
    return topic


def decode_log(topics: Sequence[int], data: bytes) -> tuple[str, dict[str, Any]]:
    """Return an event's name and fields from its topics and data, by the ABI alone."""
    entry = EVENTS[topics[0]]
    indexed = [i for i in entry["inputs"] if i["indexed"]]
    plain = [i for i in entry["inputs"] if not i["indexed"]]
    fields = {
        i["name"]: decode_topic(i["type"], t) for i, t in zip(indexed, topics[1:], strict=True)
    }
    values = decode([abi_type(i) for i in plain], data)
    for param, value in zip(plain, values, strict=True):
        fields[param["name"]] = value
    return entry["name"], fields


# --- a chain with the contract -------------------------------------------------------


def make_genesis() -> Genesis:
    storage = compute_registry_storage([address_of(k) for k in VALIDATOR_KEYS[:2]])
    return decode_genesis(
        {
            "chainId": CHAIN_ID,
            "timestamp": GENESIS_TIMESTAMP,
            "gasLimit": 30_000_000,
            "validators": [
                {
                    "name": name,
                    "address": addr(k),
                    "p2p": f"ws://127.0.0.1:{9000 + i}",
                    "rpc": f"http://127.0.0.1:{8545 + i}",
                }
                for i, (name, k) in enumerate((("Schiedam", SCHIEDAM), ("Rotterdam", ROTTERDAM)))
            ],
            "admins": [],
            "alloc": {
                "0x" + REGISTRY.hex(): {
                    "code": "0x" + load_artifact("ValidatorRegistry").runtime_bytecode.hex(),
                    "storage": {hex(k): hex(v) for k, v in storage.items()},
                },
                "0x" + BOOK.hex(): {"code": "0x" + ARTIFACT.runtime_bytecode.hex()},
            },
            "contracts": {
                "ValidatorRegistry": "0x" + REGISTRY.hex(),
                "VoucherBook": "0x" + BOOK.hex(),
            },
        }
    )


GENESIS = make_genesis()


@dataclass
class Town:
    """One node building every block, with the books checked after each."""

    db: AtomicDB
    chain: Chain
    now: int = START
    nonces: dict[bytes, int] = field(default_factory=dict)
    """Next nonce by sender address."""
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Every VoucherBook event of the committed blocks, in order."""
    refusals: list[str] = field(default_factory=list)
    """Why the last block attempted left transactions out."""

    def copy(self) -> Town:
        """An independent node with the same database (a snapshot)."""
        db = AtomicDB(MemoryDB(dict(self.db.wrapped_db.kv_store)))
        return Town(db, Chain(db, GENESIS), self.now, dict(self.nonces), list(self.events))

    def tx(self, private_key: bytes, name: str, *args: Any) -> SignedTransactionAPI:
        sender = address_of(private_key)
        nonce = self.nonces.get(sender, 0)
        self.nonces[sender] = nonce + 1
        data = calldata(name, *args)
        return sign_transaction(private_key, to=BOOK, data=data, nonce=nonce, gas=3_000_000)

    def block(
        self, transactions: Sequence[SignedTransactionAPI], at: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Build, seal and commit a block at ``at`` (or a second later); return its events."""
        events = self.attempt(transactions, at)
        assert events is not None, f"refused: {self.refusals}"
        return events

    def attempt(
        self, transactions: Sequence[SignedTransactionAPI], at: int | None = None
    ) -> list[tuple[str, dict[str, Any]]] | None:
        """Like :meth:`block`, but commit nothing and return None if any is refused."""
        number = self.chain.head.block_number + 1
        members = self.chain.get_validators_at(number)
        timestamp = max(self.now + 1, at or 0)
        built = self.chain.build_block(transactions, timestamp=timestamp, coinbase=members[0])
        self.refusals = [excluded.reason for excluded in built.excluded]
        if built.excluded:
            for transaction in transactions:
                self.nonces[bytes(transaction.sender)] -= 1
            return None
        self.now = timestamp
        keys = [k for k in VALIDATOR_KEYS if address_of(k) in members]
        block = built.block
        seals = [self.chain.sign_block(block, k) for k in keys[: compute_quorum(len(keys))]]
        self.chain.commit_built_block(self.chain.seal_block(block, seals))
        added = [
            decode_log(log.topics, log.data)
            for receipt in built.receipts
            for log in receipt.logs
            if log.address == BOOK
        ]
        self.events.extend(added)
        self.check_books()
        return added

    def do(self, private_key: bytes, name: str, *args: Any, at: int | None = None) -> Any:
        """Send one transaction in its own block; return its events."""
        return self.block([self.tx(private_key, name, *args)], at)

    def refused(self, private_key: bytes, name: str, *args: Any) -> str:
        """The reason a block built now leaves the transaction out (nothing is committed)."""
        transaction = self.tx(private_key, name, *args)
        self.nonces[address_of(private_key)] -= 1
        built = self.chain.build_block(
            [transaction], timestamp=self.now + 1, coinbase=address_of(SCHIEDAM)
        )
        assert len(built.excluded) == 1, "the transaction was not refused"
        return built.excluded[0].reason

    def view(self, name: str, *args: Any) -> Any:
        output = run_view(self.chain.get_state(self.chain.head), BOOK, calldata(name, *args))
        values = decode([abi_type(o) for o in FUNCTIONS[name]["outputs"]], output)
        return values[0] if len(values) == 1 else values

    def books(self, fund: int) -> dict[str, int]:
        return dict(zip(BOOK_FIELDS, self.view("books", fund), strict=True))

    def check_books(self) -> None:
        """[VOUCHER-BOOKS.1] [VOUCHER-AUDIT.1] after every block, for every fund."""
        recomputed = recompute_books(self.events)
        for fund in range(1, self.view("fund_count") + 1):
            books = self.books(fund)
            assert books["issued"] == sum(v for k, v in books.items() if k != "issued"), books
            assert books == recomputed.get(fund, dict.fromkeys(BOOK_FIELDS, 0))


def recompute_books(events: Sequence[tuple[str, dict[str, Any]]]) -> dict[int, dict[str, int]]:
    """The auditor's books: every fund's counters from the events alone."""
    books: dict[int, dict[str, int]] = {}
    for name, fields in events:
        if name == "FundCreated":
            books[fields["fund"]] = dict.fromkeys(BOOK_FIELDS, 0)
        elif name == "PayoutBatchClosed":
            books[fields["fund"]]["pending"] -= fields["total"]
            books[fields["fund"]]["redeemed"] += fields["total"]
        for counter, sign in BOOK_EFFECTS.get(name, ()):
            books[fields["fund"]][counter] += sign * fields["amount"]
    return books


def recompute_balances(events: Sequence[tuple[str, dict[str, Any]]]) -> Counter[tuple[str, int]]:
    """Every (account, id) balance from the TransferSingle events alone."""
    balances: Counter[tuple[str, int]] = Counter()
    for name, fields in events:
        if name == "TransferSingle":
            balances[fields["sender"], fields["id"]] -= fields["value"]
            balances[fields["receiver"], fields["id"]] += fields["value"]
    return balances


def names(events: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    return [name for name, _ in events]


def authorise(
    holder: bytes,
    merchant: bytes,
    id_: int,
    max_amount: int,
    nonce: int,
    expiry: int,
) -> tuple[Any, ...]:
    """The holder's EIP-712 Payment authorisation, signed by eth-account (the QR code)."""
    signed = Account.sign_typed_data(
        holder,
        {
            "name": "Polder VoucherBook",
            "version": "1",
            "chainId": CHAIN_ID,
            "verifyingContract": "0x" + BOOK.hex(),
        },
        {
            "Payment": [
                {"name": "merchant", "type": "address"},
                {"name": "id", "type": "uint256"},
                {"name": "maxAmount", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "expiry", "type": "uint256"},
            ]
        },
        {
            "merchant": addr(merchant),
            "id": id_,
            "maxAmount": max_amount,
            "nonce": nonce,
            "expiry": expiry,
        },
    )
    return (
        signed.v,
        signed.r.to_bytes(32, "big"),
        signed.s.to_bytes(32, "big"),
    )


def till(
    town: Town,
    holder: bytes,
    merchant: bytes,
    id_: int,
    amount: int,
    *,
    max_amount: int | None = None,
    nonce: int = 1,
    lifetime: int = 300,
) -> tuple[Any, ...]:
    """``payWithAuthorization`` arguments for an authorisation made now."""
    ceiling = amount if max_amount is None else max_amount
    expiry = town.now + lifetime
    v, r, s = authorise(holder, merchant, id_, ceiling, nonce, expiry)
    return (addr(holder), addr(merchant), id_, amount, ceiling, nonce, expiry, v, r, s)


# --- the household's town --------------------------------------------------------------

HOLDER = key("household phone")
NEW_PHONE = key("household new phone")
NEIGHBOUR = key("neighbour phone")
LANDLORD = key("woonstichting")
UTILITY = key("energy company")
INSURER = key("health insurer")
GROCER = key("grocer")
SCHEDULER = key("mandate scheduler")
PASSER_BY = key("passer-by")


def new_town() -> Town:
    db = AtomicDB()
    return Town(db, Chain(db, GENESIS))


def set_up_town() -> Town:
    """Schiedam registers, creates fund 1, shops and two holders (no budgets yet)."""
    town = new_town()
    town.do(SCHIEDAM, "registerIssuer", at=START)
    town.do(SCHIEDAM, "createFund", WINDOW)
    shops = (
        (LANDLORD, 1 << RENT),
        (UTILITY, 1 << ENERGY),
        (INSURER, 1 << INSURANCE),
        (GROCER, 1 << LIVING),
    )
    town.block(
        [town.tx(SCHIEDAM, "setMerchant", addr(k), mask, True) for k, mask in shops]
        + [town.tx(SCHIEDAM, "setMerchantFund", addr(k), 1, True) for k, _ in shops]
        + [town.tx(SCHIEDAM, "registerHolder", addr(k), 1) for k in (HOLDER, NEIGHBOUR)]
    )
    return town


def issue_budgets(town: Town) -> None:
    """The household's quarter: rent, energy, insurance and weekly living money."""
    budgets = ((RENT, 3 * 750_00), (ENERGY, 450_00), (INSURANCE, 3 * 140_00), (LIVING, 780_00))
    town.block(
        [
            town.tx(SCHIEDAM, "issue", addr(HOLDER), token(1, c), amount, PERIOD_END)
            for c, amount in budgets
        ]
        + [town.tx(SCHIEDAM, "issue", addr(NEIGHBOUR), token(1, LIVING), 100_00, PERIOD_END)]
    )


@pytest.fixture(scope="module")
def town_template() -> Town:
    town = set_up_town()
    issue_budgets(town)
    return town


@pytest.fixture
def town(town_template: Town) -> Town:
    return town_template.copy()


# --- the month of one household --------------------------------------------------------


def test_a_household_month() -> None:
    """The issue's scenario, step by step; the books are checked after every block.

    [VOUCHER-ISSUE.1] [VOUCHER-RULES.1] [VOUCHER-PAY.1] [VOUCHER-TILL.1] [VOUCHER-CAP.1]
    [VOUCHER-FREEZE.1] [VOUCHER-RECOVER.1] [VOUCHER-MANDATE.1] [VOUCHER-REDEEM.1]
    [VOUCHER-BATCH.1] [VOUCHER-EXPIRY.1] [VOUCHER-SWEEP.1] [VOUCHER-CLAWBACK.1]
    [VOUCHER-REVERT.1] [VOUCHER-BOOKS.1] [VOUCHER-AUDIT.1]
    """
    town = set_up_town()
    assert "sender is not a current validator" in town.refused(PASSER_BY, "registerIssuer")
    issue_budgets(town)
    living, rent, energy = token(1, LIVING), token(1, RENT), token(1, ENERGY)
    insurance = token(1, INSURANCE)
    assert town.view("balanceOf", addr(HOLDER), living) == 780_00
    assert town.view("expiry", 1, PERIOD) == PERIOD_END
    assert town.books(1)["issued"] == town.books(1)["held"] == 3900_00 + 100_00

    # Mandates for the fixed charges: rent monthly, energy fortnightly.
    events = town.block(
        [
            town.tx(
                SCHIEDAM,
                "createMandate",
                addr(HOLDER),
                addr(LANDLORD),
                rent,
                750_00,
                START + DAY + HOUR,
                30 * DAY,
                3,
            ),
            town.tx(
                SCHIEDAM,
                "createMandate",
                addr(HOLDER),
                addr(UTILITY),
                energy,
                70_00,
                START + 2 * DAY,
                14 * DAY,
                6,
            ),
        ]
    )
    assert names(events) == ["MandateCreated", "MandateCreated"]
    assert "not due yet" in town.refused(SCHEDULER, "payMandate", 1)

    # Day 1: rent is due, paid once; again at once is refused.
    events = town.do(SCHEDULER, "payMandate", 1, at=START + DAY + HOUR)
    assert [n for n in names(events) if n == "Paid"] == ["Paid"]
    paid = dict(events)["Paid"]
    assert (paid["holder"], paid["merchant"], paid["amount"], paid["mandate"]) == (
        addr(HOLDER),
        addr(LANDLORD),
        750_00,
        1,
    )
    assert "the next instalment is not due yet" in town.refused(SCHEDULER, "payMandate", 1)
    assert town.view("balanceOf", addr(LANDLORD), rent) == 750_00

    # Day 2: the first energy instalment; then the scheduler is down for four weeks.
    town.do(SCHEDULER, "payMandate", 2, at=START + 2 * DAY)

    # Day 3: the first weekly purchase at the grocer, paid at the till with a QR code.
    authorisation = till(town, HOLDER, GROCER, living, 42_50, max_amount=60_00, nonce=7)
    town.do(GROCER, "payWithAuthorization", *authorisation, at=town.now)
    assert town.view("used_nonces", addr(HOLDER), 7)
    assert "this payment authorisation was already used" in town.refused(
        GROCER, "payWithAuthorization", *authorisation
    )
    stale = till(town, HOLDER, GROCER, living, 10_00, nonce=8, lifetime=60)
    town.now += 120
    assert "the payment authorisation has expired" in town.refused(
        GROCER, "payWithAuthorization", *stale
    )
    static = till(town, HOLDER, GROCER, living, 10_00, nonce=9, lifetime=2 * HOUR)
    assert "valid for too long" in town.refused(GROCER, "payWithAuthorization", *static)
    above = (*authorisation[:3], 60_01, *till(town, HOLDER, GROCER, living, 60_00, nonce=10)[4:])
    assert "above the authorised maximum" in town.refused(GROCER, "payWithAuthorization", *above)
    forged = (addr(HOLDER), *till(town, NEIGHBOUR, GROCER, living, 5_00, nonce=11)[1:])
    assert "not signed by the holder" in town.refused(GROCER, "payWithAuthorization", *forged)
    someone_elses = till(town, HOLDER, GROCER, living, 5_00, nonce=12)
    assert "only the shop named" in town.refused(LANDLORD, "payWithAuthorization", *someone_elses)

    # A purchase at a shop of the wrong category, and a holder paying a holder.
    assert town.view("detectTransferRestriction", addr(HOLDER), addr(LANDLORD), living, 5_00) == 24
    assert town.view("messageForTransferRestriction", 24) == (
        "this shop does not accept living money"
    )
    assert "this shop does not accept living money" in town.refused(
        HOLDER, "pay", addr(LANDLORD), living, 5_00
    )
    assert "holders cannot pay each other" in town.refused(
        HOLDER, "pay", addr(NEIGHBOUR), living, 5_00
    )
    assert "not enough budget" in town.refused(HOLDER, "pay", addr(GROCER), living, 900_00)

    # Day 5: insurance, paid by the holder; day 6: a freeze, refused, unfrozen, paid.
    town.do(HOLDER, "pay", addr(INSURER), insurance, 140_00, at=START + 5 * DAY)
    events = town.do(SCHIEDAM, "freeze", addr(HOLDER), SUSPECTED_MISUSE, at=START + 6 * DAY)
    assert dict(events)["HolderFrozen"]["reason"] == SUSPECTED_MISUSE
    assert "the holder's budget is frozen" in town.refused(HOLDER, "pay", addr(GROCER), living, 1)
    assert "the holder's budget is frozen" in town.refused(
        GROCER, "payWithAuthorization", *till(town, HOLDER, GROCER, living, 1_00, nonce=13)
    )
    town.do(SCHIEDAM, "unfreeze", addr(HOLDER), RESOLVED)
    town.do(HOLDER, "pay", addr(GROCER), living, 2_00)

    # Day 8: part of the living money is set aside; week 2's purchase needs it released.
    town.do(SCHIEDAM, "freezePart", addr(HOLDER), living, 700_00, SET_ASIDE, at=START + 8 * DAY)
    assert town.view("balanceOf", addr(HOLDER), living) == 735_50
    week_2 = till(town, HOLDER, GROCER, living, 55_10, max_amount=60_00, nonce=14)
    assert "this part of the budget is frozen" in town.refused(
        GROCER, "payWithAuthorization", *week_2
    )
    town.do(HOLDER, "pay", addr(GROCER), living, 35_50)
    town.do(SCHIEDAM, "freezePart", addr(HOLDER), living, 500_00, PLAN_CHANGED)
    town.now = START + 10 * DAY
    week_2 = till(town, HOLDER, GROCER, living, 55_10, max_amount=60_00, nonce=15)
    town.do(GROCER, "payWithAuthorization", *week_2)

    # A spending limit for the period's living money.
    town.do(SCHIEDAM, "setSpendingCap", addr(HOLDER), living, 250_00)
    assert town.view("period_spent", addr(HOLDER), living) == 135_10
    town.now = START + 17 * DAY
    week_3 = till(town, HOLDER, GROCER, living, 38_75, max_amount=60_00, nonce=16)
    town.do(GROCER, "payWithAuthorization", *week_3)
    assert "over the spending limit for this period" in town.refused(
        HOLDER, "pay", addr(GROCER), living, 76_16
    )

    # Day 20: the phone is lost; the issuer freezes, then recovers to a new key.
    town.do(SCHIEDAM, "freeze", addr(HOLDER), KEY_LOST, at=START + 20 * DAY)
    before = {i: town.view("balanceOf", addr(HOLDER), i) for i in (rent, energy, living)}
    events = town.do(SCHIEDAM, "recover", addr(HOLDER), addr(NEW_PHONE), KEY_LOST)
    assert dict(events)["Recovered"]["reason"] == KEY_LOST
    assert names(events).count("TransferSingle") == 4
    for i, amount in before.items():
        assert town.view("balanceOf", addr(NEW_PHONE), i) == amount
        assert town.view("balanceOf", addr(HOLDER), i) == 0
    assert town.view("holders", addr(HOLDER))[1] == 3
    assert town.view("holders", addr(NEW_PHONE)) == (1, 1)
    assert town.view("heldIds", addr(NEW_PHONE)) == town.view("heldIds", addr(HOLDER))
    assert town.view("frozen", addr(NEW_PHONE), living) == 500_00
    assert town.view("caps", addr(NEW_PHONE), living) == 250_00
    assert "this key was replaced" in town.refused(HOLDER, "pay", addr(GROCER), living, 1_00)
    assert "this key was replaced" in town.refused(
        GROCER, "payWithAuthorization", *till(town, HOLDER, GROCER, living, 1_00, nonce=17)
    )
    assert "not an active or frozen holder" in town.refused(
        SCHIEDAM, "recover", addr(HOLDER), addr(PASSER_BY), KEY_LOST
    )

    # Day 24: the fourth weekly purchase, with the new phone, still under the cap.
    town.now = START + 24 * DAY
    week_4 = till(town, NEW_PHONE, GROCER, living, 51_00, max_amount=60_00, nonce=1)
    town.do(GROCER, "payWithAuthorization", *week_4)
    assert town.view("balanceOf", addr(GROCER), living) == 224_85
    assert town.view("period_spent", addr(NEW_PHONE), living) == 224_85

    # Day 25: redemption; a cancellation inside the window; a batch after it.
    earned = town.view("balanceOf", addr(GROCER), living)
    events = town.do(GROCER, "redeem", living, earned, at=START + 25 * DAY)
    assert dict(events)["Redeemed"]["windowEnd"] == town.now + WINDOW
    assert town.view("balanceOf", addr(GROCER), living) == 0
    events = town.do(GROCER, "cancelRedemption", 1)
    assert dict(events)["RedemptionCancelled"]["amount"] == earned
    assert town.view("balanceOf", addr(GROCER), living) == earned
    town.block(
        [town.tx(GROCER, "redeem", living, earned), town.tx(LANDLORD, "redeem", rent, 750_00)]
    )
    batch_hash = keccak(b"pain.001 batch 2026-01-29 with its secret salt")
    assert "still in its cancellation window" in town.refused(
        SCHIEDAM, "closePayoutBatch", 1, [2, 3], batch_hash
    )
    assert "not the fund's issuer" in town.refused(
        ROTTERDAM, "closePayoutBatch", 1, [2, 3], batch_hash
    )
    events = town.do(SCHIEDAM, "closePayoutBatch", 1, [2, 3], batch_hash, at=START + 29 * DAY)
    closed = dict(events)["PayoutBatchClosed"]
    assert (closed["batchHash"], closed["payouts"], closed["total"]) == (
        batch_hash,
        (2, 3),
        earned + 750_00,
    )
    assert town.view("batch_hashes", 1) == batch_hash
    assert [town.view("payouts", p)[6] for p in (1, 2, 3)] == [CANCELLED, PAID, PAID]
    assert "the payout is not pending" in town.refused(GROCER, "cancelRedemption", 2)
    assert "not a pending payout of this fund" in town.refused(
        SCHIEDAM, "closePayoutBatch", 1, [2], batch_hash
    )
    assert town.books(1)["redeemed"] == earned + 750_00

    # Day 30: the scheduler is back: two energy instalments are due, never a third.
    town.now = START + 30 * DAY
    for _ in range(2):
        town.do(SCHEDULER, "payMandate", 2)
    assert "the next instalment is not due yet" in town.refused(SCHEDULER, "payMandate", 2)
    assert town.view("mandates", 2)[4] == START + 2 * DAY + 3 * 14 * DAY
    assert town.view("balanceOf", addr(UTILITY), energy) == 3 * 70_00

    # Day 31: the second rent instalment follows the recovered key.
    events = town.do(SCHEDULER, "payMandate", 1, at=START + 31 * DAY + HOUR)
    assert dict(events)["Paid"]["holder"] == addr(NEW_PHONE)
    assert town.view("mandates", 1)[0] == addr(NEW_PHONE)

    # A clawback of an insurance budget issued in error; a payout cancelled too late.
    town.do(SCHIEDAM, "issue", addr(NEW_PHONE), insurance, 99_00, PERIOD_END)
    events = town.do(SCHIEDAM, "clawback", addr(NEW_PHONE), insurance, 99_00, ISSUED_IN_ERROR)
    assert dict(events)["ClawedBack"]["reason"] == ISSUED_IN_ERROR
    town.do(UTILITY, "redeem", energy, 140_00)
    town.now += WINDOW
    assert "the cancellation window has passed" in town.refused(UTILITY, "cancelRedemption", 4)

    # The period expires: payments and mandates are refused, anyone sweeps.
    assert "has not expired" in town.refused(PASSER_BY, "sweep", addr(NEW_PHONE), living)
    town.now = PERIOD_END
    assert "the budget for this period has expired" in town.refused(
        NEW_PHONE, "pay", addr(GROCER), living, 1_00
    )
    assert "the budget for this period has expired" in town.refused(SCHEDULER, "payMandate", 1)
    remaining = town.view("balanceOf", addr(NEW_PHONE), living)
    events = town.do(PASSER_BY, "sweep", addr(NEW_PHONE), living)
    assert dict(events)["Swept"]["amount"] == remaining == 780_00 - 224_85
    assert "nothing to sweep" in town.refused(PASSER_BY, "sweep", addr(NEW_PHONE), living)
    assert "not a registered holder" in town.refused(PASSER_BY, "sweep", addr(GROCER), living)

    books = town.books(1)
    assert books == {
        "issued": 3900_00 + 100_00 + 99_00,
        "held": 750_00 + 240_00 + 280_00 + 100_00,  # rent, energy, insurance; the neighbour
        "spent": 750_00 + 70_00 + 140_00,  # landlord, utility, insurer
        "pending": 140_00,
        "redeemed": 224_85 + 750_00,
        "swept": 555_15,
        "clawed_back": 99_00,
    }
    balances = recompute_balances(town.events)
    for (account, id_), amount in balances.items():
        if account != ZERO:
            assert town.view("balanceOf", account, id_) == amount


# --- registries and the issuer's powers --------------------------------------------------


def test_issuers_follow_the_validator_set() -> None:
    """[VOUCHER-ISSUER.1] [VOUCHER-FUND.1] registration by validators; removal by a vote."""
    town = new_town()
    assert "sender is not a current validator" in town.refused(DELFT, "registerIssuer")
    assert "not a registered issuer" in town.refused(SCHIEDAM, "createFund", WINDOW)
    town.block([town.tx(SCHIEDAM, "registerIssuer"), town.tx(ROTTERDAM, "registerIssuer")])
    assert town.view("issuers", addr(ROTTERDAM))
    assert "already an issuer" in town.refused(ROTTERDAM, "registerIssuer")
    assert "longer than 90 days" in town.refused(ROTTERDAM, "createFund", 91 * DAY)
    town.do(ROTTERDAM, "createFund", 0)
    assert "only the issuer can deregister itself" in town.refused(
        SCHIEDAM, "deregisterIssuer", addr(ROTTERDAM)
    )

    # The validator set votes Rotterdam out; then anyone ends its registration.
    propose = keccak(b"propose(bool,address,string,string)")[:4]
    approve = keccak(b"approve(uint256)")[:4]
    for private_key, data in (
        (
            SCHIEDAM,
            propose
            + encode(["bool", "address", "string", "string"], [False, addr(ROTTERDAM), "", ""]),
        ),
        (ROTTERDAM, approve + encode(["uint256"], [1])),
    ):
        nonce = town.nonces.get(address_of(private_key), 0)
        town.nonces[address_of(private_key)] = nonce + 1
        vote = sign_transaction(private_key, to=REGISTRY, data=data, nonce=nonce, gas=1_000_000)
        town.block([vote])
    town.block([])
    town.block([])
    assert town.chain.get_validators_at(town.chain.head.block_number + 1) == (address_of(SCHIEDAM),)
    events = town.do(PASSER_BY, "deregisterIssuer", addr(ROTTERDAM))
    assert dict(events)["IssuerDeregistered"]["by"] == addr(PASSER_BY)
    assert not town.view("issuers", addr(ROTTERDAM))
    assert "not a registered issuer" in town.refused(ROTTERDAM, "createFund", 0)
    assert "sender is not a current validator" in town.refused(ROTTERDAM, "registerIssuer")
    events = town.do(SCHIEDAM, "deregisterIssuer", addr(SCHIEDAM))
    assert dict(events)["IssuerDeregistered"]["by"] == addr(SCHIEDAM)


def test_a_shared_shop_registry_between_municipalities(town: Town) -> None:
    """[VOUCHER-MERCHANT.1] [VOUCHER-HOLDER.1] one shop registry; each fund's issuer decides."""
    living_2 = token(2, LIVING)
    resident = key("rotterdam resident")
    town.do(ROTTERDAM, "registerIssuer")
    town.do(ROTTERDAM, "createFund", DAY)
    town.block(
        [
            town.tx(ROTTERDAM, "registerHolder", addr(resident), 2),
            town.tx(ROTTERDAM, "issue", addr(resident), living_2, 50_00, PERIOD_END),
        ]
    )
    assert "this shop does not accept budgets of this fund" in town.refused(
        resident, "pay", addr(GROCER), living_2, 10_00
    )
    assert "only the issuer that registered the shop" in town.refused(
        ROTTERDAM, "setMerchant", addr(GROCER), 1 << LIVING, False
    )
    assert "not the fund's issuer" in town.refused(
        ROTTERDAM, "setMerchantFund", addr(GROCER), 1, False
    )
    town.do(ROTTERDAM, "setMerchantFund", addr(GROCER), 2, True)
    town.do(resident, "pay", addr(GROCER), living_2, 10_00)
    assert "the holder has no such budget" in town.refused(
        resident, "pay", addr(GROCER), token(1, LIVING), 1_00
    )
    town.do(SCHIEDAM, "setMerchant", addr(GROCER), 1 << LIVING, False)
    assert "this shop is not active" in town.refused(resident, "pay", addr(GROCER), living_2, 1_00)
    assert "invalid categories bitmask" in town.refused(
        SCHIEDAM, "setMerchant", addr(GROCER), 1, True
    )
    assert "the address is a budget holder" in town.refused(
        SCHIEDAM, "setMerchant", addr(NEIGHBOUR), 1 << LIVING, True
    )
    assert "the address is a shop" in town.refused(ROTTERDAM, "registerHolder", addr(GROCER), 2)
    assert "not the fund's issuer" in town.refused(
        ROTTERDAM, "freeze", addr(HOLDER), SUSPECTED_MISUSE
    )
    assert "the receiver is not a registered shop" in town.refused(
        resident, "pay", addr(PASSER_BY), living_2, 1_00
    )
    assert town.books(2)["spent"] == 10_00


def test_issuer_powers_take_enumerated_reasons(town: Town) -> None:
    """[VOUCHER-REASON.1] [VOUCHER-FREEZE.1] [VOUCHER-CLAWBACK.1]"""
    living = token(1, LIVING)
    for bad in (0, 9):
        assert "unknown reason code" in town.refused(SCHIEDAM, "freeze", addr(HOLDER), bad)
    assert "unknown reason code" in town.refused(SCHIEDAM, "clawback", addr(HOLDER), living, 1, 0)
    assert "the holder is not frozen" in town.refused(SCHIEDAM, "unfreeze", addr(HOLDER), RESOLVED)
    assert "above the holder's balance" in town.refused(
        SCHIEDAM, "clawback", addr(HOLDER), living, 780_01, PLAN_CHANGED
    )
    assert "not the fund's issuer" in town.refused(
        GROCER, "clawback", addr(HOLDER), living, 1, PLAN_CHANGED
    )
    town.do(SCHIEDAM, "freeze", addr(HOLDER), HOLDER_REQUEST)
    assert "already frozen" in town.refused(SCHIEDAM, "freeze", addr(HOLDER), HOLDER_REQUEST)
    town.do(SCHIEDAM, "clawback", addr(HOLDER), living, 780_00, BUDGET_ENDED)
    assert town.view("balanceOf", addr(HOLDER), living) == 0
    assert town.books(1)["clawed_back"] == 780_00


def test_issuing_rules(town: Town) -> None:
    """[VOUCHER-ISSUE.1] [VOUCHER-EXPIRY.1]"""
    assert "the period has another expiry" in town.refused(
        SCHIEDAM, "issue", addr(HOLDER), token(1, LIVING), 1, PERIOD_END + 1
    )
    assert "unknown category" in town.refused(
        SCHIEDAM, "issue", addr(HOLDER), token(1, 6), 1, PERIOD_END
    )
    assert "not the fund's issuer" in town.refused(
        ROTTERDAM, "issue", addr(HOLDER), token(1, LIVING), 1, PERIOD_END
    )
    assert "no such fund" in town.refused(
        SCHIEDAM, "issue", addr(HOLDER), token(7, LIVING), 1, PERIOD_END
    )
    assert "the expiry is not in the future" in town.refused(
        SCHIEDAM, "issue", addr(HOLDER), token(1, LIVING, 202602), 1, town.now
    )
    assert "the amount is zero" in town.refused(
        SCHIEDAM, "issue", addr(HOLDER), token(1, LIVING), 0, PERIOD_END
    )
    assert "not an active or frozen holder" in town.refused(
        SCHIEDAM, "issue", addr(PASSER_BY), token(1, LIVING), 1, PERIOD_END
    )
    events = town.do(SCHIEDAM, "issue", addr(HOLDER), token(1, RESERVATION, 2026), 1, PERIOD_END)
    assert names(events) == ["PeriodOpened", "TransferSingle", "Issued"]
    town.now = PERIOD_END
    assert "the budget for this period has expired" in town.refused(
        SCHIEDAM, "issue", addr(HOLDER), token(1, LIVING), 1, PERIOD_END
    )


def test_a_cancelled_mandate_pays_nothing(town: Town) -> None:
    """[VOUCHER-MANDATE.1]"""
    rent = token(1, RENT)
    town.do(SCHIEDAM, "createMandate", addr(HOLDER), addr(LANDLORD), rent, 750_00, town.now, DAY, 2)
    town.do(PASSER_BY, "payMandate", 1)
    assert "not the fund's issuer" in town.refused(GROCER, "cancelMandate", 1)
    events = town.do(SCHIEDAM, "cancelMandate", 1)
    assert dict(events)["MandateCancelled"]["remaining"] == 1
    town.now += 2 * DAY
    assert "finished, cancelled or unknown" in town.refused(PASSER_BY, "payMandate", 1)
    assert "a repeated mandate needs an interval" in town.refused(
        SCHIEDAM, "createMandate", addr(HOLDER), addr(LANDLORD), rent, 1, town.now, 0, 2
    )
    assert "the payee is not a registered shop" in town.refused(
        SCHIEDAM, "createMandate", addr(HOLDER), addr(PASSER_BY), rent, 1, town.now, DAY, 2
    )
    town.do(SCHIEDAM, "createMandate", addr(HOLDER), addr(GROCER), rent, 100_00, town.now, DAY, 1)
    assert "this shop does not accept rent money" in town.refused(PASSER_BY, "payMandate", 2)


def test_authorisations_can_be_cancelled_by_the_holder(town: Town) -> None:
    """[VOUCHER-TILL.1]"""
    living = token(1, LIVING)
    payment = till(town, HOLDER, GROCER, living, 20_00, nonce=99)
    events = town.do(HOLDER, "cancelAuthorization", 99)
    assert dict(events)["AuthorizationUsed"]["cancelled"]
    assert "already used" in town.refused(GROCER, "payWithAuthorization", *payment)
    domain = keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                keccak(
                    b"EIP712Domain(string name,string version,uint256 chainId,"
                    b"address verifyingContract)"
                ),
                keccak(b"Polder VoucherBook"),
                keccak(b"1"),
                CHAIN_ID,
                "0x" + BOOK.hex(),
            ],
        )
    )
    assert town.view("domainSeparator") == domain


def test_token_ids_and_restriction_messages(town: Town) -> None:
    """[VOUCHER-ID.1] [VOUCHER-CATEGORY.1] [VOUCHER-CODE.1] [VOUCHER-RULES.1]"""
    assert town.view("tokenId", 3, LIVING, 202601) == (3 << 64) | (4 << 32) | 202601
    assert "too large" in town.refused(PASSER_BY, "tokenId", 1, 1 << 32, 1)
    messages = {
        0: "no restriction",
        1: "the amount is zero",
        2: "the payer is not a registered budget holder",
        3: "this key was replaced; pay with the holder's new key",
        4: "the holder's budget is frozen",
        5: "holders cannot pay each other",
        6: "the receiver is not a registered shop",
        7: "this shop is not active",
        8: "the holder has no such budget",
        9: "this shop does not accept budgets of this fund",
        10: "the budget for this period has expired",
        11: "not enough budget",
        12: "this part of the budget is frozen",
        13: "over the spending limit for this period",
        21: "this shop does not accept rent money",
        22: "this shop does not accept energy money",
        23: "this shop does not accept insurance money",
        24: "this shop does not accept living money",
        25: "this shop does not accept reservation money",
        14: "unknown restriction code",
    }
    for code, message in messages.items():
        assert town.view("messageForTransferRestriction", code) == message
    living = token(1, LIVING)
    detect = {
        (HOLDER, GROCER, living, 0): 1,
        (GROCER, HOLDER, living, 1): 2,
        (HOLDER, NEIGHBOUR, living, 1): 5,
        (HOLDER, PASSER_BY, living, 1): 6,
        (HOLDER, GROCER, token(1, LIVING, 1), 1): 8,
        (HOLDER, GROCER, living, 780_01): 11,
        (HOLDER, UTILITY, living, 1): 24,
        (HOLDER, GROCER, living, 780_00): 0,
    }
    for (sender, receiver, id_, amount), code in detect.items():
        found = town.view("detectTransferRestriction", addr(sender), addr(receiver), id_, amount)
        assert found == code, (sender, receiver, id_, amount)


def test_the_runtime_code_fits_eip170() -> None:
    """[VOUCHER-ADDR.1] [VOUCHER-PRIVACY.1] no function takes text."""
    assert len(ARTIFACT.runtime_bytecode) <= 24_576
    inputs = [i["type"] for f in FUNCTIONS.values() for i in f["inputs"]]
    assert "string" not in inputs
    assert "bytes" not in inputs


# --- random operations keep the identity ------------------------------------------------

SHOPS = {RENT: LANDLORD, ENERGY: UTILITY, LIVING: GROCER}
ROUND = (
    "pay",
    "pay",
    "issue",
    "redeem",
    "redeem",
    "cancel",
    "close",
    "clawback",
    "freeze",
    "unfreeze",
    "sweep",
    "recover",
    "wait",
    "wait",
)
"""One round of operations; each example runs up to three rounds in random orders."""
CHOICES = st.tuples(st.integers(0, 1), st.sampled_from(sorted(SHOPS)), st.integers(1, 100))
"""Which holder, which category, and a percentage of the balance concerned."""
OPERATIONS = st.lists(
    st.tuples(st.permutations(ROUND), st.lists(CHOICES, min_size=len(ROUND), max_size=len(ROUND))),
    min_size=1,
    max_size=3,
).map(
    lambda rounds: [
        (kind, *choice)
        for kinds, choices in rounds
        for kind, choice in zip(kinds, choices, strict=True)
    ]
)


def make_operation(
    town: Town, kind: str, holder: bytes, category: int, percent: int
) -> tuple[bytes, str, tuple[Any, ...]]:
    """The sender, function and arguments of one random operation."""
    id_, shop = token(1, category), SHOPS[category]
    held = town.view("balanceOf", addr(holder), id_) * percent // 100
    earned = town.view("balanceOf", addr(shop), id_) * percent // 100
    payouts = [(p, town.view("payouts", p)) for p in range(1, town.view("payout_count") + 1)]
    pending = [p for p, payout in payouts if payout[6] == PENDING and payout[0] == addr(shop)]
    due = [p for p, payout in payouts if payout[6] == PENDING and payout[5] <= town.now + 1]
    return {
        "pay": (holder, "pay", (addr(shop), id_, held)),
        "issue": (SCHIEDAM, "issue", (addr(holder), id_, percent * 10_00, PERIOD_END)),
        "redeem": (shop, "redeem", (id_, earned)),
        "cancel": (shop, "cancelRedemption", (pending[-1] if pending else 0,)),
        "close": (SCHIEDAM, "closePayoutBatch", (1, due, keccak(bytes(percent)))),
        "clawback": (SCHIEDAM, "clawback", (addr(holder), id_, held, PLAN_CHANGED)),
        "freeze": (SCHIEDAM, "freeze", (addr(holder), SUSPECTED_MISUSE)),
        "unfreeze": (SCHIEDAM, "unfreeze", (addr(holder), RESOLVED)),
        "sweep": (PASSER_BY, "sweep", (addr(holder), id_)),
        "recover": (SCHIEDAM, "recover", (addr(holder), addr(key(f"new {percent}")), KEY_LOST)),
    }[kind]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS)
def test_random_operations_keep_the_books(town_template: Town, operations: list[Any]) -> None:
    """[VOUCHER-BOOKS.1] [VOUCHER-AUDIT.1] whatever happens, in whichever order."""
    town = town_template.copy()
    holders = [HOLDER, NEIGHBOUR]
    for kind, who, category, percent in operations:
        if kind == "wait":
            town.now += percent * 12 * HOUR
            continue
        sender, name, args = make_operation(town, kind, holders[who], category, percent)
        if town.attempt([town.tx(sender, name, *args)]) is not None and kind == "recover":
            holders[who] = key(f"new {percent}")
    books = town.books(1)
    shops = {addr(k) for k in (*SHOPS.values(), INSURER)}
    balances = recompute_balances(town.events)
    assert books["held"] == sum(v for (a, _), v in balances.items() if a not in shops | {ZERO})
    assert books["spent"] == sum(v for (a, _), v in balances.items() if a in shops)
    payouts = [town.view("payouts", p) for p in range(1, town.view("payout_count") + 1)]
    assert books["pending"] == sum(p[3] for p in payouts if p[6] == PENDING)
    assert books["redeemed"] == sum(p[3] for p in payouts if p[6] == PAID)
