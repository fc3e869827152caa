"""A municipality's own off-chain store: people, holder addresses, plans, shops' IBANs.

VOUCHERS.md draws the line: the chain holds pseudonymous addresses, amounts
and enumerated reasons; everything that says who someone is stays here, in
one SQLite file of the municipality (mode 0600): the person (name, BSN), the
link between a person and the fresh holder address of each fund period, the
budget plan and the fixed charges, shops with their IBAN and Chamber of
Commerce number, and the bank batch files with their salts.

What goes from here to the chain, and only that:

* ``registerHolder(address, fund)``, ``issue(address, id, amount, expiry)``
  and ``createMandate(address, shop, id, amount, ...)`` for a person's plan;
* ``setMerchant(address, categories, active)`` for a shop;
* ``closePayoutBatch(fund, payouts, keccak256(salt ‖ bank file))``: the
  batch file names shops and IBANs, so its hash is salted with 32 random
  bytes kept here; an unsalted hash of a file with a small space of
  contents could be recomputed by anyone who guesses it.

Writes that go to the chain are restart-safe: each plan line and charge
records the hash of its signed transaction before it is sent, and a later
run looks that transaction up before signing anything again, so a crash
between sending and recording never issues a budget twice.
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from eth_hash.auto import keccak
from eth_utils import to_checksum_address
from web3.exceptions import TransactionNotFound

from clients.budget.chain import (
    CATEGORY_NAMES,
    BudgetChain,
    compute_category_mask,
    compute_token_id,
    parse_category,
)
from clients.web3tools import build_signed, submit, wait
from consensus.errors import PolderError

SCHEMA = """
CREATE TABLE IF NOT EXISTS persons (
    person INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    bsn TEXT NOT NULL UNIQUE,
    address TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS holders (
    address TEXT PRIMARY KEY,
    person INTEGER NOT NULL REFERENCES persons (person),
    fund INTEGER NOT NULL,
    replaced_by TEXT,
    registered_tx TEXT
);
CREATE TABLE IF NOT EXISTS plan_lines (
    line INTEGER PRIMARY KEY,
    person INTEGER NOT NULL REFERENCES persons (person),
    fund INTEGER NOT NULL,
    period INTEGER NOT NULL,
    category INTEGER NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    expiry INTEGER NOT NULL,
    tx TEXT
);
CREATE TABLE IF NOT EXISTS charges (
    charge INTEGER PRIMARY KEY,
    person INTEGER NOT NULL REFERENCES persons (person),
    shop TEXT NOT NULL REFERENCES shops (address),
    fund INTEGER NOT NULL,
    period INTEGER NOT NULL,
    category INTEGER NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    first_due INTEGER NOT NULL,
    interval INTEGER NOT NULL,
    count INTEGER NOT NULL CHECK (count > 0),
    tx TEXT
);
CREATE TABLE IF NOT EXISTS shops (
    address TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    iban TEXT NOT NULL,
    kvk TEXT NOT NULL DEFAULT '',
    categories TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    batch INTEGER PRIMARY KEY,
    fund INTEGER NOT NULL,
    salt TEXT NOT NULL,
    file TEXT NOT NULL,
    hash TEXT NOT NULL,
    tx TEXT
);
"""

IBAN_PATTERN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}")
BSN_PATTERN = re.compile(r"[0-9]{9}")


class OfficeError(PolderError):
    """A request the office store refuses; ``message`` says what to change."""

    code = -32050


@dataclass(frozen=True)
class Person:
    """A resident in debt assistance, as only the municipality knows them."""

    person: int
    name: str
    bsn: str
    address: str


@dataclass(frozen=True)
class Shop:
    """A shop (or landlord, energy company) with the account the municipality pays."""

    address: str
    """Its chain address (checksummed)."""
    name: str
    iban: str
    kvk: str
    categories: tuple[str, ...]


def normalize_iban(value: str) -> str:
    """An IBAN without spaces, upper case; raise :class:`OfficeError` if its check digits fail."""
    iban = value.replace(" ", "").upper()
    if not IBAN_PATTERN.fullmatch(iban):
        raise OfficeError(f"{value!r} is not an IBAN (two letters, two digits, 10 to 30 more)")
    digits = "".join(str(int(c, 36)) for c in iban[4:] + iban[:4])
    if int(digits) % 97 != 1:
        raise OfficeError(f"IBAN {value!r} has wrong check digits; check for a typing error")
    return iban


def validate_bsn(value: str) -> str:
    """A BSN passes the eleven test (elfproef); raise :class:`OfficeError` if not."""
    if not BSN_PATTERN.fullmatch(value):
        raise OfficeError(f"a BSN is 9 digits, got {value!r}")
    total = sum(int(d) * w for d, w in zip(value[:8], range(9, 1, -1), strict=True))
    if (total - int(value[8])) % 11 != 0:
        raise OfficeError(f"{value!r} fails the BSN eleven test; check for a typing error")
    return value


def category_of(*names: str) -> int:
    """The category number of the last name; raise :class:`OfficeError` on an unknown one."""
    try:
        return [parse_category(name) for name in names][-1]
    except ValueError as exc:
        raise OfficeError(str(exc)) from None


def open_office(path: Path) -> sqlite3.Connection:
    """Open (or create, mode 0600) the office store."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA foreign_keys = ON")
    connection.executescript(SCHEMA)
    return connection


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


# --- people, shops, plans (off chain only) ---------------------------------------------


def add_person(connection: sqlite3.Connection, name: str, bsn: str, address: str = "") -> int:
    """Record a person; return their number in this store."""
    if not name.strip():
        raise OfficeError("a person needs a name")
    try:
        with transaction(connection):
            cursor = connection.execute(
                "INSERT INTO persons (name, bsn, address) VALUES (?, ?, ?)",
                (name.strip(), validate_bsn(bsn), address),
            )
    except sqlite3.IntegrityError:
        raise OfficeError("a person with this BSN is already in the store") from None
    return int(cursor.lastrowid or 0)


def get_person(connection: sqlite3.Connection, person: int) -> Person:
    row = connection.execute(
        "SELECT person, name, bsn, address FROM persons WHERE person = ?", (person,)
    ).fetchone()
    if row is None:
        raise OfficeError(f"no person {person} in the store")
    return Person(*row)


def add_shop(
    connection: sqlite3.Connection,
    address: str,
    *,
    name: str,
    iban: str,
    categories: Sequence[str],
    kvk: str = "",
) -> Shop:
    """Record a shop's name, IBAN and categories (``register_shop`` puts it on chain)."""
    category_of(*categories)
    shop = Shop(
        to_checksum_address(address),
        name,
        normalize_iban(iban),
        kvk,
        tuple(c.upper() for c in categories),
    )
    with transaction(connection):
        connection.execute(
            "INSERT OR REPLACE INTO shops (address, name, iban, kvk, categories)"
            " VALUES (?, ?, ?, ?, ?)",
            (shop.address, shop.name, shop.iban, shop.kvk, ",".join(shop.categories)),
        )
    return shop


def get_shop(connection: sqlite3.Connection, address: str) -> Shop:
    row = connection.execute(
        "SELECT address, name, iban, kvk, categories FROM shops WHERE address = ?",
        (to_checksum_address(address),),
    ).fetchone()
    if row is None:
        raise OfficeError(f"shop {address} is not in the store; add it with its IBAN first")
    return Shop(row[0], row[1], row[2], row[3], tuple(row[4].split(",")))


def link_holder(connection: sqlite3.Connection, person: int, address: str, fund: int) -> None:
    """Link a fresh holder address (one per fund: a fund per plan period) to a person."""
    get_person(connection, person)
    try:
        with transaction(connection):
            connection.execute(
                "INSERT INTO holders (address, person, fund) VALUES (?, ?, ?)",
                (to_checksum_address(address), person, fund),
            )
    except sqlite3.IntegrityError:
        raise OfficeError(f"address {address} is already linked to a person") from None


def get_holder(connection: sqlite3.Connection, person: int, fund: int) -> str:
    """The person's current holder address in ``fund`` (after any recovery)."""
    row = connection.execute(
        "SELECT address FROM holders WHERE person = ? AND fund = ? AND replaced_by IS NULL",
        (person, fund),
    ).fetchone()
    if row is None:
        raise OfficeError(f"person {person} has no holder address in fund {fund}")
    return str(row[0])


def find_person(connection: sqlite3.Connection, address: str) -> Person:
    """Who a holder address belongs to (the question only the municipality can answer)."""
    row = connection.execute(
        "SELECT person FROM holders WHERE address = ?", (to_checksum_address(address),)
    ).fetchone()
    if row is None:
        raise OfficeError(f"address {address} is not linked to anyone in this store")
    return get_person(connection, int(row[0]))


def add_plan_line(
    connection: sqlite3.Connection,
    person: int,
    *,
    fund: int,
    period: int,
    category: str,
    amount: int,
    expiry: int,
) -> int:
    """One budget of a person's plan; :func:`apply_plan` issues it."""
    get_person(connection, person)
    with transaction(connection):
        cursor = connection.execute(
            "INSERT INTO plan_lines (person, fund, period, category, amount, expiry)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (person, fund, period, category_of(category), amount, expiry),
        )
    return int(cursor.lastrowid or 0)


def add_charge(
    connection: sqlite3.Connection,
    person: int,
    *,
    shop: str,
    fund: int,
    period: int,
    category: str,
    amount: int,
    first_due: int,
    interval: int,
    count: int,
) -> int:
    """A fixed charge (rent, energy, insurance) of a person's plan; :func:`apply_plan` sets it."""
    get_person(connection, person)
    payee = get_shop(connection, shop)
    with transaction(connection):
        cursor = connection.execute(
            "INSERT INTO charges (person, shop, fund, period, category, amount, first_due,"
            " interval, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                person,
                payee.address,
                fund,
                period,
                category_of(category),
                amount,
                first_due,
                interval,
                count,
            ),
        )
    return int(cursor.lastrowid or 0)


# --- to the chain: only addresses, amounts, times ---------------------------------------


@dataclass
class Applied:
    """What :func:`apply_plan` did: transactions sent now, and lines already on chain."""

    sent: list[str]
    """Transaction hashes of this run."""
    already: int
    """Lines and charges a previous run had already put on chain."""

    def count(self, sent: str | None) -> None:
        if sent is None:
            self.already += 1
        else:
            self.sent.append(sent)


def _send_once(
    connection: sqlite3.Connection,
    chain: BudgetChain,
    account: Any,
    *,
    table: str,
    key: str,
    row: int,
    recorded: str | None,
    call: Any,
) -> str | None:
    """Send ``call`` unless the recorded transaction of this row made it; return a new hash."""
    if recorded is not None:
        try:
            receipt = chain.w3.eth.get_transaction_receipt(recorded)  # type: ignore[arg-type]
        except TransactionNotFound:
            receipt = None
        if receipt is not None and receipt["status"] == 1:
            return None
        if receipt is None:
            try:
                chain.w3.eth.get_transaction(recorded)  # type: ignore[arg-type]
                wait(chain.w3, bytes.fromhex(recorded[2:]))
                return None
            except TransactionNotFound:
                pass  # dropped: sign again
    raw = build_signed(chain.w3, account, call)
    tx = "0x" + keccak(raw).hex()
    with transaction(connection):
        connection.execute(f"UPDATE {table} SET tx = ? WHERE {key} = ?", (tx, row))  # noqa: S608
    receipt = wait(chain.w3, submit(chain.w3, raw))
    if receipt["status"] != 1:
        raise OfficeError(f"transaction {tx} for {table} {row} failed")
    return tx


def register_holder(
    connection: sqlite3.Connection,
    chain: BudgetChain,
    account: Any,
    *,
    person: int,
    address: str,
    fund: int,
) -> None:
    """Link the address to the person here, and register it as a holder of ``fund`` on chain."""
    link_holder(connection, person, address, fund)
    fund_on_chain, _ = chain.get_holder(address)
    if fund_on_chain == 0:
        receipt = chain.send(account, chain.functions.registerHolder(address, fund))
        with transaction(connection):
            connection.execute(
                "UPDATE holders SET registered_tx = ? WHERE address = ?",
                ("0x" + bytes(receipt["transactionHash"]).hex(), to_checksum_address(address)),
            )


def register_shop(
    connection: sqlite3.Connection, chain: BudgetChain, account: Any, address: str, fund: int
) -> None:
    """Put a stored shop on chain: its categories, and that it accepts ``fund``."""
    shop = get_shop(connection, address)
    mask = compute_category_mask(shop.categories)
    chain.send(account, chain.functions.setMerchant(shop.address, mask, True))
    chain.send(account, chain.functions.setMerchantFund(shop.address, fund, True))


def apply_plan(
    connection: sqlite3.Connection, chain: BudgetChain, account: Any, person: int
) -> Applied:
    """Issue every plan line and create every fixed charge of a person not yet on chain."""
    applied = Applied([], 0)
    lines = connection.execute(
        "SELECT line, fund, period, category, amount, expiry, tx FROM plan_lines"
        " WHERE person = ? ORDER BY line",
        (person,),
    ).fetchall()
    for line, fund, period, category, amount, expiry, recorded in lines:
        holder = get_holder(connection, person, fund)
        token = compute_token_id(fund, category, period)
        call = chain.functions.issue(holder, token, amount, expiry)
        sent = _send_once(
            connection,
            chain,
            account,
            table="plan_lines",
            key="line",
            row=line,
            recorded=recorded,
            call=call,
        )
        applied.count(sent)
    charges = connection.execute(
        "SELECT charge, shop, fund, period, category, amount, first_due, interval, count, tx"
        " FROM charges WHERE person = ? ORDER BY charge",
        (person,),
    ).fetchall()
    for charge, shop, fund, period, category, amount, first, interval, count, recorded in charges:
        holder = get_holder(connection, person, fund)
        token = compute_token_id(fund, category, period)
        call = chain.functions.createMandate(holder, shop, token, amount, first, interval, count)
        sent = _send_once(
            connection,
            chain,
            account,
            table="charges",
            key="charge",
            row=charge,
            recorded=recorded,
            call=call,
        )
        applied.count(sent)
    return applied


def record_recovery(connection: sqlite3.Connection, old: str, new: str) -> None:
    """After ``recover(old, new)`` on chain: the person's new holder address."""
    row = connection.execute(
        "SELECT person, fund FROM holders WHERE address = ?", (to_checksum_address(old),)
    ).fetchone()
    if row is None:
        raise OfficeError(f"address {old} is not linked to anyone in this store")
    with transaction(connection):
        connection.execute(
            "INSERT INTO holders (address, person, fund) VALUES (?, ?, ?)",
            (to_checksum_address(new), *row),
        )
        connection.execute(
            "UPDATE holders SET replaced_by = ? WHERE address = ?",
            (to_checksum_address(new), to_checksum_address(old)),
        )


# --- paying shops in euros ---------------------------------------------------------------


def compose_bank_file(shops: Sequence[tuple[Shop, int, int]], batch_id: str) -> str:
    """A SEPA credit transfer file (pain.001-shaped) paying ``(shop, payout, cents)``."""
    total = sum(cents for _, _, cents in shops)
    transfers = "".join(
        f"<CdtTrfTxInf><PmtId><EndToEndId>POLDER-PAYOUT-{payout}</EndToEndId></PmtId>"
        f'<Amt><InstdAmt Ccy="EUR">{cents // 100}.{cents % 100:02d}</InstdAmt></Amt>'
        f"<Cdtr><Nm>{escape(shop.name)}</Nm></Cdtr>"
        f"<CdtrAcct><Id><IBAN>{shop.iban}</IBAN></Id></CdtrAcct></CdtTrfTxInf>"
        for shop, payout, cents in shops
    )
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"><CstmrCdtTrfInitn>'
        f"<GrpHdr><MsgId>{escape(batch_id)}</MsgId><CreDtTm>{created}</CreDtTm>"
        f"<NbOfTxs>{len(shops)}</NbOfTxs><CtrlSum>{total // 100}.{total % 100:02d}</CtrlSum>"
        f"</GrpHdr><PmtInf>{transfers}</PmtInf></CstmrCdtTrfInitn></Document>\n"
    )


@dataclass(frozen=True)
class Batch:
    """A closed payout batch: the bank file stays here, its salted hash went on chain."""

    batch: int
    """The contract's batch number."""
    file: str
    """The bank file."""
    salt: bytes
    hash: bytes
    """keccak256(salt ‖ file), anchored on chain."""
    total: int


def close_payout_batch(
    connection: sqlite3.Connection,
    chain: BudgetChain,
    account: Any,
    fund: int,
    payouts: Sequence[int],
) -> Batch:
    """Compose the bank file of pending payouts from the stored IBANs; anchor its salted hash."""
    lines = []
    for payout in payouts:
        record = chain.get_payout(payout)
        if record["fund"] != fund:
            raise OfficeError(f"payout {payout} is not a payout of fund {fund}")
        lines.append((get_shop(connection, record["merchant"]), payout, int(record["amount"])))
    salt = secrets.token_bytes(32)
    document = compose_bank_file(lines, f"POLDER-FUND-{fund}-{secrets.token_hex(4)}")
    digest = keccak(salt + document.encode())
    receipt = chain.send(account, chain.functions.closePayoutBatch(fund, list(payouts), digest))
    closed = next(
        e.fields for e in chain.get_receipt_events(receipt) if e.name == "PayoutBatchClosed"
    )
    with transaction(connection):
        connection.execute(
            "INSERT INTO batches (batch, fund, salt, file, hash, tx) VALUES (?, ?, ?, ?, ?, ?)",
            (
                closed["batch"],
                fund,
                salt.hex(),
                document,
                digest.hex(),
                "0x" + bytes(receipt["transactionHash"]).hex(),
            ),
        )
    return Batch(closed["batch"], document, salt, digest, closed["total"])


def describe_plan(connection: sqlite3.Connection, person: int) -> list[str]:
    """The municipality's view of a person's plan, a line each."""
    found = get_person(connection, person)
    out = [f"person {found.person}: {found.name} (BSN {found.bsn})"]
    for address, fund, replaced in connection.execute(
        "SELECT address, fund, replaced_by FROM holders WHERE person = ? ORDER BY rowid",
        (person,),
    ):
        state = f", replaced by {replaced}" if replaced else ""
        out.append(f"  holder {address} fund {fund}{state}")
    for category, amount, period, tx in connection.execute(
        "SELECT category, amount, period, tx FROM plan_lines WHERE person = ? ORDER BY line",
        (person,),
    ):
        state = f"issued in {tx}" if tx else "not issued yet"
        out.append(f"  budget {CATEGORY_NAMES[category]:<10} {amount:>8} period {period}: {state}")
    for shop, amount, count, tx in connection.execute(
        "SELECT shops.name, amount, count, tx FROM charges JOIN shops ON shops.address = shop"
        " WHERE person = ? ORDER BY charge",
        (person,),
    ):
        state = f"mandate set in {tx}" if tx else "not set yet"
        out.append(f"  charge {count} x {amount} to {shop}: {state}")
    return out
