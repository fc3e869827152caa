"""The municipality's side of budgets: no personal data on chain, a scheduler that survives kills.

Privacy: the whole budget flow, then every byte of the chain searched.

The test writes a household fixture (a name, a BSN, a postal address, five
shops with names and IBANs), runs ``polder demo budget`` with it on a real
4-validator devnet — the municipality's office store holds those, the chain
gets the flow: fund, shops, holder, plan, mandates, purchases, refusals,
recovery, redemption, sweep, a payout batch made from the IBANs — and then
reads every block (header and full transactions) and every receipt with its
logs from a validator. It fails if any of the strings appears, in any
spelling or encoding listed in :func:`needles`, or any common hash of them.

Control: the scanner must find what it looks for on this very chain, so the
test then records one unsalted hash of an IBAN with the Notary and
expects the scan of that block to name it.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from devnet_tools import Devnet, call, call_batch, run_polder
from eth_account import Account
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from clients.budget.chain import BudgetChain, compute_token_id
from clients.web3tools import connect, send_call
from contracts.loader import load_artifact

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOUSEHOLD: dict[str, Any] = {
    "person": {
        "name": "Johanna Wilhelmina Verstappen",
        "bsn": "123456782",
        "address": "Lange Haven 145, 3111 CE Schiedam",
    },
    "shops": {
        "landlord": {"name": "Verhuurder P. Janssen", "iban": "NL18RABO0123459876"},
        "energy": {"name": "Energiebedrijf Stroomlijn", "iban": "NL55INGB0003456789"},
        "insurer": {"name": "Verzekeraar Polderzorg", "iban": "NL96ABNA0450998877"},
        "grocery": {"name": "Supermarkt Broersveld", "iban": "NL63TRIO0212345678"},
        "diy": {"name": "Doe-het-zelf Nieuwlandplein", "iban": "NL27KNAB0255566677"},
    },
    "plan": {"RENT": 2 * 812_50, "ENERGY": 93_00, "INSURANCE": 151_25, "LIVING": 240_00},
    "rent": 812_50,
    "purchases": [31_20, 47_85, 29_99, 55_10],
}
REPO = Path(__file__).resolve().parents[2]
INSTALMENTS = 6
INSTALMENT_INTERVAL = 2
"""Seconds between a mandate's instalments in the scheduler test (a month in real life)."""
NOTARY = "0x0000000000000000000000000000000000000100"
"""Where every devnet genesis places the Notary."""
HASHES = ("keccak256", "sha256", "sha3_256", "sha512", "sha1", "md5", "blake2b", "blake2s")


def digest(name: str, data: bytes) -> bytes:
    if name == "keccak256":
        return keccak(data)
    return hashlib.new(name, data).digest()


def spellings(value: str) -> set[str]:
    """How a value might be written: as given, in either case, without spaces, IBAN groups."""
    forms = {value, value.lower(), value.upper(), value.replace(" ", "")}
    compact = value.replace(" ", "")
    forms.add(" ".join(compact[i : i + 4] for i in range(0, len(compact), 4)))
    return {f for f in forms if f}


def needles(household: dict[str, Any]) -> list[tuple[str, bytes]]:
    """(label, bytes) of every personal value, its encodings and its hashes."""
    person = household["person"]
    values = [("name", person["name"]), ("BSN", person["bsn"]), ("address", person["address"])]
    for role, shop in household["shops"].items():
        values += [(f"{role} IBAN", shop["iban"]), (f"{role} name", shop["name"])]
    found = [("BSN as uint256", int(person["bsn"]).to_bytes(32, "big"))]
    for label, value in values:
        for form in spellings(value):
            for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
                found.append((f"{label} {form!r} in {encoding}", form.encode(encoding)))
            for name in HASHES:
                found.append((f"{name} of {label} {form!r}", digest(name, form.encode())))
    return found


def walk_hex(value: Any) -> Iterator[bytes]:
    """Every 0x hex string inside a JSON value, decoded (odd lengths padded)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from walk_hex(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_hex(item)
    elif isinstance(value, str) and value.startswith("0x"):
        digits = value[2:]
        try:
            yield bytes.fromhex(digits if len(digits) % 2 == 0 else "0" + digits)
        except ValueError:
            yield value.encode()


def read_chain(url: str, first: int = 0) -> list[tuple[str, bytes]]:
    """(where, bytes) for every block from ``first`` and every receipt: decoded and as JSON text."""
    head = int(call(url, "eth_blockNumber"), 16)
    blocks = call_batch(
        url, [("eth_getBlockByNumber", [hex(n), True]) for n in range(first, head + 1)]
    )
    hashes = [tx["hash"] for block in blocks for tx in block["transactions"]]
    receipts = call_batch(url, [("eth_getTransactionReceipt", [h]) for h in hashes])
    places = []
    for block in blocks:
        number = int(block["number"], 16)
        places.append((f"block #{number}", b"".join(walk_hex(block))))
        places.append((f"block #{number} as JSON", json.dumps(block).encode()))
    for receipt in receipts:
        where = (
            f"receipt of {receipt['transactionHash']} (block #{int(receipt['blockNumber'], 16)})"
        )
        places.append((where, b"".join(walk_hex(receipt))))
        places.append((f"{where} as JSON", json.dumps(receipt).encode()))
    return places


def find_leaks(places: list[tuple[str, bytes]], searched: list[tuple[str, bytes]]) -> list[str]:
    return [
        f"{label} in {where}"
        for where, data in places
        for label, needle in searched
        if needle in data
    ]


def test_no_personal_data_reaches_the_chain(net: Devnet, tmp_path: Path) -> None:
    fixture = tmp_path / "household.json"
    fixture.write_text(json.dumps(HOUSEHOLD))
    store = tmp_path / "office.sqlite"
    done = run_polder(
        "demo", "budget", "--devnet", str(net.directory), "--household", str(fixture),
        "--db", str(store), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERIFIED" in done.stdout, done.stdout

    # The flow really used the personal data: the store holds it, the bank file names the IBAN.
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT name, bsn FROM persons").fetchall() == [
            (HOUSEHOLD["person"]["name"], HOUSEHOLD["person"]["bsn"])
        ]
        assert len(db.execute("SELECT iban FROM shops").fetchall()) == 5
        (bank_file,) = db.execute("SELECT file FROM batches").fetchone()
    assert HOUSEHOLD["shops"]["grocery"]["iban"] in bank_file
    assert HOUSEHOLD["shops"]["grocery"]["name"] in bank_file
    assert store.stat().st_mode & 0o077 == 0, "the office store is readable by others"

    # The plan is on chain once: issuing it again sends nothing (the store recorded each tx).
    again = run_polder(
        "budget", "office", "issue", "1", "--db", str(store), "--devnet", str(net.directory),
        "--as", "Schiedam",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "0 transaction(s) sent, 7 line(s) were already on chain" in again.stdout
    shown = run_polder("budget", "office", "show", "1", "--db", str(store)).stdout
    assert HOUSEHOLD["person"]["name"] in shown
    assert shown.count("issued in 0x") == 5
    assert "replaced by 0x" in shown

    searched = needles(HOUSEHOLD)
    url = net.url(net.validator_names[0])
    places = read_chain(url)
    assert sum(len(data) for _, data in places) > 50_000, "the scan read too little to mean much"
    assert find_leaks(places, searched) == []

    # Control: a hash of an IBAN written to the chain is found by the same scan.
    schiedam = Account.from_key((net.directory / "keys" / "schiedam.key").read_text().strip())
    leaked = digest("sha256", HOUSEHOLD["shops"]["landlord"]["iban"].encode())
    before = int(call(url, "eth_blockNumber"), 16)
    w3 = connect(url)
    notary = w3.eth.contract(address=to_checksum_address(NOTARY), abi=load_artifact("Notary").abi)
    send_call(w3, schiedam, notary.functions.record(leaked, keccak(b"control")))
    leaks = find_leaks(read_chain(url, before + 1), searched)
    assert any("sha256 of landlord IBAN" in leak for leak in leaks), leaks


def test_the_scheduler_daemon_survives_kills_and_pays_each_instalment_once(
    net: Devnet, tmp_path: Path
) -> None:
    """The scheduler in loop mode, SIGKILLed twice: every instalment paid once, none early."""
    url = net.url(net.validator_names[0])
    chain = BudgetChain(connect(url))
    f = chain.functions
    issuer = Account.from_key((net.directory / "keys" / "schiedam.key").read_text().strip())
    if not f.issuers(issuer.address).call():
        chain.send(issuer, f.registerIssuer())
    receipt = chain.send(issuer, f.createFund(60))
    fund = next(
        e.fields["fund"] for e in chain.get_receipt_events(receipt) if e.name == "FundCreated"
    )
    holder, landlord = Account.create(), Account.create()
    rent = compute_token_id(fund, 1, 202603)
    chain.send(issuer, f.setMerchant(landlord.address, 1 << 1, True))
    chain.send(issuer, f.setMerchantFund(landlord.address, fund, True))
    chain.send(issuer, f.registerHolder(holder.address, fund))
    chain.send(issuer, f.issue(holder.address, rent, 10 * 100_00, int(time.time()) + 600))
    first = chain.get_time() + 2
    receipt = chain.send(
        issuer,
        f.createMandate(
            holder.address, landlord.address, rent, 100_00, first, INSTALMENT_INTERVAL, INSTALMENTS
        ),
    )
    mandate = next(
        e.fields["mandate"] for e in chain.get_receipt_events(receipt) if e.name == "MandateCreated"
    )

    command = [
        str(Path(sys.executable).parent / "polder"), "budget", "scheduler", "--fund", str(fund),
        "--interval", "0.5", "--devnet", str(net.directory), "--as", "Schiedam",
    ]  # fmt: skip
    log = (tmp_path / "scheduler.log").open("w")

    def remaining() -> int:
        return int(chain.get_mandate(mandate)["remaining"])

    def wait_for(done: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting until {what}"
            time.sleep(0.2)

    for left in (INSTALMENTS - 2, INSTALMENTS - 4):  # kill after two instalments, twice
        daemon = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            wait_for(lambda left=left: remaining() <= left, f"{left} instalments are left")  # type: ignore[misc]
        finally:
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(10)
    daemon = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        wait_for(lambda: remaining() == 0, "every instalment is paid")
        time.sleep(2 * INSTALMENT_INTERVAL)  # the daemon keeps running; nothing more is paid
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(10)
    log.close()

    paid = [
        e for e in chain.get_events(fund) if e.name == "Paid" and e.fields["mandate"] == mandate
    ]
    assert len(paid) == INSTALMENTS, (tmp_path / "scheduler.log").read_text()
    assert f.balanceOf(landlord.address, rent).call() == INSTALMENTS * 100_00
    for k, event in enumerate(paid):
        timestamp = chain.w3.eth.get_block(event.block)["timestamp"]
        assert timestamp >= first + k * INSTALMENT_INTERVAL, f"instalment {k} was paid early"
    assert "paid an instalment" in (tmp_path / "scheduler.log").read_text()
