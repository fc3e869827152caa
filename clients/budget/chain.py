"""The VoucherBook as a client sees it: token ids, balances, books, events, transactions.

Reads go through ``eth_call`` and ``eth_getLogs`` of one node; the books
verifier compares several nodes' events and proves the contract's books
with the light client (:mod:`clients.budget.books`). A refused transaction
raises :class:`clients.web3tools.TransactionRefused` whose ``message`` is
the contract's plain-language reason: show it as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode
from eth_hash.auto import keccak
from eth_utils import to_checksum_address
from web3 import Web3

from clients.web3tools import iterate_logs, send_call
from consensus.errors import InvalidProof
from contracts.loader import load_artifact

BOOK_NAME = "VoucherBook"
DEFAULT_BOOK = "0x0000000000000000000000000000000000000400"
"""Where every devnet genesis places the VoucherBook."""
MASK32 = 0xFFFFFFFF
CATEGORIES = {"RENT": 1, "ENERGY": 2, "INSURANCE": 3, "LIVING": 4, "RESERVATION": 5}
"""[VOUCHER-CATEGORY.1] category values by name."""
CATEGORY_NAMES = {value: name for name, value in CATEGORIES.items()}
REASONS = {
    "HOLDER_REQUEST": 1,
    "KEY_LOST": 2,
    "SUSPECTED_MISUSE": 3,
    "PLAN_CHANGED": 4,
    "ISSUED_IN_ERROR": 5,
    "RESOLVED": 6,
    "BUDGET_ENDED": 7,
    "SET_ASIDE": 8,
}
"""[VOUCHER-REASON.1] the one enumeration of reasons for issuer powers."""
HOLDER_STATUS = {0: "not a holder", 1: "active", 2: "frozen", 3: "recovered (key replaced)"}
BOOK_FIELDS = ("issued", "held", "spent", "pending", "redeemed", "swept", "clawed_back")


@dataclass(frozen=True)
class TokenId:
    """A budget's token id, unpacked ([VOUCHER-ID.1])."""

    fund: int
    """The fund (budget scheme of one issuer)."""
    category: int
    """1 RENT … 5 RESERVATION."""
    period: int
    """The issuer's label of the plan period, e.g. 202601."""


@dataclass(frozen=True)
class BookEvent:
    """One VoucherBook log, decoded by the ABI alone, with where it is in the chain."""

    name: str
    """The event's name."""
    fields: dict[str, Any]
    """Its arguments: ints, lowercase 0x addresses, 0x hex bytes, lists."""
    block: int
    """Block number."""
    index: int
    """Log index within the block."""
    tx: str = ""
    """Hash of the transaction that emitted it, lowercase 0x hex ("" where not known)."""

    def key(self) -> tuple[Any, ...]:
        """What must be identical across nodes (the transaction hash is, too)."""
        return (self.block, self.index, self.tx, self.name, sorted(self.fields.items()))


@dataclass(frozen=True)
class Balance:
    """One budget of an account: token id and amount, with the period's expiry."""

    token: TokenId
    """The budget."""
    amount: int
    """Balance (euro cents by convention)."""
    frozen: int
    """The part that must stay (partial freeze)."""
    expiry: int
    """Unix time the period expires (0: never opened)."""


def compute_token_id(fund: int, category: int, period: int) -> int:
    """Pack (fund, category, period) into a token id; raise ValueError if a part is too big."""
    if not (0 <= fund < 2**192 and 0 <= category <= MASK32 and 0 <= period <= MASK32):
        raise ValueError("a token id packs fund < 2^192, category < 2^32 and period < 2^32")
    return fund << 64 | category << 32 | period


def decode_token_id(token_id: int) -> TokenId:
    """Unpack a token id into (fund, category, period)."""
    if not 0 <= token_id < 2**256:
        raise ValueError("a token id is a 256-bit unsigned integer")
    return TokenId(token_id >> 64, (token_id >> 32) & MASK32, token_id & MASK32)


def parse_category(value: str) -> int:
    """A category by name (RENT, …) or number."""
    if value.upper() in CATEGORIES:
        return CATEGORIES[value.upper()]
    if value.isdigit() and int(value) in CATEGORY_NAMES:
        return int(value)
    raise ValueError(f"a category is one of {', '.join(CATEGORIES)}, got {value!r}")


def compute_category_mask(names: Sequence[str]) -> int:
    """A shop's bitmask of accepted categories ([VOUCHER-CATEGORY.1])."""
    mask = 0
    for name in names:
        mask |= 1 << parse_category(name)
    return mask


def describe_token(token: TokenId) -> str:
    category = CATEGORY_NAMES.get(token.category, f"category {token.category}")
    return f"{category} fund {token.fund} period {token.period}"


def compute_books_slots(fund: int, base: int | None = None) -> list[int]:
    """Storage slots of ``books(fund)``'s seven counters.

    Vyper 0.4 puts ``HashMap[k, v]`` at slot ``s`` element ``k`` at
    ``keccak256(s ‖ k)`` (slot word first; tested against a real chain),
    and a struct's members in consecutive slots from there.
    """
    slot = load_artifact(BOOK_NAME).storage_slots["books"] if base is None else base
    start = int.from_bytes(keccak(slot.to_bytes(32, "big") + fund.to_bytes(32, "big")), "big")
    return [(start + offset) % 2**256 for offset in range(len(BOOK_FIELDS))]


# --- decoding logs by the ABI ----------------------------------------------------------


def abi_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(abi_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return str(param["type"])


def _event_table() -> dict[bytes, dict[str, Any]]:
    table = {}
    for entry in load_artifact(BOOK_NAME).abi:
        if entry["type"] == "event":
            signature = f"{entry['name']}({','.join(abi_type(i) for i in entry['inputs'])})"
            table[keccak(signature.encode())] = entry
    return table


EVENT_ABI = _event_table()


def _plain(kind: str, value: Any) -> Any:
    if kind == "address":
        return str(value).lower()
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple)):
        return [_plain(kind.removesuffix("[]"), v) for v in value]
    return value


def decode_log(
    topics: Sequence[bytes], data: bytes, block: int, index: int, tx: bytes | None = None
) -> BookEvent | None:
    """Decode one VoucherBook log; None for a topic the ABI does not know.

    ``tx`` is the hash of the transaction that emitted it, where known.
    """
    entry = EVENT_ABI.get(bytes(topics[0])) if topics else None
    if entry is None:
        return None
    indexed = [i for i in entry["inputs"] if i["indexed"]]
    plain = [i for i in entry["inputs"] if not i["indexed"]]
    fields: dict[str, Any] = {}
    for param, topic in zip(indexed, topics[1:], strict=True):
        (value,) = decode([param["type"]], bytes(topic))
        fields[param["name"]] = _plain(param["type"], value)
    values = decode([abi_type(i) for i in plain], bytes(data))
    for param, value in zip(plain, values, strict=True):
        fields[param["name"]] = _plain(param["type"], value)
    return BookEvent(entry["name"], fields, block, index, "" if tx is None else "0x" + tx.hex())


def decode_web3_log(log: Any) -> BookEvent | None:
    """Decode a log as web3.py returns it (``eth_getLogs``, a receipt)."""
    return decode_log(
        log["topics"],
        log["data"],
        log["blockNumber"],
        log["logIndex"],
        bytes(log["transactionHash"]),
    )


def require_same_events(
    served: Sequence[tuple[str, Sequence[BookEvent]]], what: str
) -> tuple[BookEvent, ...]:
    """The events every node served alike; raise naming two nodes that differ.

    ``what`` says whose events they are, for the message ("fund 3's events").
    """
    first_name, first = served[0]
    for name, events in served[1:]:
        if [e.key() for e in events] != [e.key() for e in first]:
            raise InvalidProof(
                f"nodes disagree on {what}: {first_name} and {name} serve different"
                " events; do not trust either until this is explained"
            )
    return tuple(first)


def is_event_of_fund(event: BookEvent, fund: int) -> bool:
    """True if the event belongs to ``fund`` (by its ``fund`` field or its token id)."""
    if "fund" in event.fields:
        return bool(event.fields["fund"] == fund)
    if event.name == "TransferSingle":
        return bool(event.fields["id"] >> 64 == fund)
    return False


# --- one node's view -------------------------------------------------------------------


class BudgetChain:
    """One node's view of the VoucherBook, and transactions to it."""

    def __init__(self, w3: Web3, address: str = DEFAULT_BOOK) -> None:
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.contract = w3.eth.contract(address=self.address, abi=load_artifact(BOOK_NAME).abi)

    @property
    def functions(self) -> Any:
        return self.contract.functions

    def send(self, account: Any, call: Any) -> Any:
        """Send a transaction to the VoucherBook; return its receipt."""
        return send_call(self.w3, account, call)

    def get_events(
        self,
        fund: int | None = None,
        to_block: int | None = None,
        topics: Sequence[bytes | None] = (),
    ) -> list[BookEvent]:
        """Every event (of ``fund``, if given) in chain order, up to ``to_block`` (head).

        ``topics`` narrows the node's search as in ``eth_getLogs`` (per position
        a topic, or None for any).
        """
        head = self.w3.eth.block_number if to_block is None else to_block
        log_filter: dict[str, Any] = {"address": self.address}
        if topics:
            log_filter["topics"] = [None if t is None else "0x" + t.hex() for t in topics]
        found: list[BookEvent] = []
        for log in iterate_logs(self.w3, log_filter, head):
            event = decode_web3_log(log)
            if event is not None and (fund is None or is_event_of_fund(event, fund)):
                found.append(event)
        return sorted(found, key=lambda e: (e.block, e.index))

    def get_receipt_events(self, receipt: Any) -> list[BookEvent]:
        """The VoucherBook events of one receipt."""
        events = []
        for log in receipt["logs"]:
            if to_checksum_address(log["address"]) == self.address:
                event = decode_web3_log(log)
                if event is not None:
                    events.append(event)
        return events

    def get_books(self, fund: int, block: int | str = "latest") -> dict[str, int]:
        values = self.functions.books(fund).call(block_identifier=block)
        return dict(zip(BOOK_FIELDS, values, strict=True))

    def get_holder(self, holder: str) -> tuple[int, int]:
        """(fund, status) of a holder address."""
        fund, status = self.functions.holders(to_checksum_address(holder)).call()
        return int(fund), int(status)

    def get_balances(self, account: str) -> list[Balance]:
        """Every budget a holder ever held, with balance, frozen part and expiry."""
        who = to_checksum_address(account)
        balances = []
        for token_id in self.functions.heldIds(who).call():
            token = decode_token_id(token_id)
            balances.append(
                Balance(
                    token=token,
                    amount=self.functions.balanceOf(who, token_id).call(),
                    frozen=self.functions.frozen(who, token_id).call(),
                    expiry=self.functions.expiry(token.fund, token.period).call(),
                )
            )
        return balances

    def get_mandate(self, mandate: int) -> dict[str, Any]:
        names = ("holder", "merchant", "id", "amount", "next_due", "interval", "remaining")
        return dict(zip(names, self.functions.mandates(mandate).call(), strict=True))

    def get_payout(self, payout: int) -> dict[str, Any]:
        names = ("merchant", "fund", "id", "amount", "created", "window_end", "status")
        return dict(zip(names, self.functions.payouts(payout).call(), strict=True))

    def get_restriction(self, payer: str, merchant: str, token_id: int, amount: int) -> str:
        """'' if a payment would pass, else the contract's plain reason."""
        code = self.functions.detectTransferRestriction(
            to_checksum_address(payer), to_checksum_address(merchant), token_id, amount
        ).call()
        return "" if code == 0 else str(self.functions.messageForTransferRestriction(code).call())

    def get_time(self) -> int:
        """The latest block's timestamp."""
        return int(self.w3.eth.get_block("latest")["timestamp"])
