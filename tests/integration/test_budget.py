"""A household's month of budgets on a real 4-validator devnet, compressed into seconds.

Schiedam registers as issuer and creates a fund; rent, energy, insurance and
living money are issued to a fresh holder key; a landlord, an energy
company, a grocery and a DIY store (another category) are the shops. The
scheduler pays the rent and energy mandates (run again, it never pays one
twice); four purchases at the grocery with payment authorisations; refusals
show the contract's reason; a lost phone is recovered; an expired period is
swept; the grocery redeems, cancels one redemption inside the window and
the payout batch is closed after it; ``polder verify books`` passes from
the data of all validators. The CLI steps run the ``polder`` command.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from devnet_tools import Devnet, run_polder
from eth_account import Account

from clients.budget.authorization import (
    InvalidAuthorization,
    compute_call_arguments,
    create_authorization,
    decode_authorization,
    validate_authorization,
)
from clients.budget.chain import BudgetChain, compute_token_id
from clients.budget.scheduler import get_fund_mandates, run_once
from clients.web3tools import TransactionRefused, build_signed, connect, submit, wait

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
RENT, ENERGY, INSURANCE, LIVING, RESERVATION = 1, 2, 3, 4, 5
PERIOD, SHORT_PERIOD = 202601, 202602
WINDOW = 6
"""Seconds a redemption can be cancelled (a fund's window; days in real life)."""
RENT_INTERVAL = 15


def budget(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``polder budget ...`` / ``polder verify books ...`` as a user types it."""
    done = run_polder(*args)
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def new_key(path: Path) -> Any:
    budget("budget", "wallet", "new", "--out", str(path))
    return Account.from_key(path.read_text().strip())


def send_all(chain: BudgetChain, account: Any, calls: list[Any]) -> list[Any]:
    """Several transactions of one sender in consecutive nonces; wait for all receipts."""
    nonce = chain.w3.eth.get_transaction_count(account.address, "pending")
    hashes = [
        submit(chain.w3, build_signed(chain.w3, account, call, nonce + i))
        for i, call in enumerate(calls)
    ]
    receipts = [wait(chain.w3, h) for h in hashes]
    assert all(r["status"] == 1 for r in receipts)
    return receipts


def euros(cents: int) -> str:
    """An amount as ``polder budget wallet statement`` shows it."""
    return f"€ {cents // 100:,}.{cents % 100:02d}"


def refusal(chain: BudgetChain, account: Any, call: Any) -> str:
    with pytest.raises(TransactionRefused) as caught:
        chain.send(account, call)
    return caught.value.message


def till(
    chain: BudgetChain, holder: Any, shop: Any, token: int, ceiling: int, expiry: int = 0
) -> Any:
    """The authorisation the holder's phone shows at ``shop`` (valid 2 minutes by default)."""
    return create_authorization(
        holder,
        chain_id=chain.w3.eth.chain_id,
        book=chain.address,
        merchant=shop.address,
        token_id=token,
        max_amount=ceiling,
        expiry=expiry or int(time.time()) + 120,
    )


def test_a_household_month(net: Devnet, tmp_path: Path) -> None:
    started = time.monotonic()
    devnet = ["--devnet", str(net.directory)]
    schiedam = [*devnet, "--as", "Schiedam"]
    urls = [n["rpc"] for n in net.manifest["nodes"] if n.get("role") == "validator"]
    chain = BudgetChain(connect(urls[0]))
    issuer = Account.from_key((net.directory / "keys" / "schiedam.key").read_text().strip())

    # Schiedam registers as issuer and creates a fund.
    budget("budget", "admin", "register-issuer", *schiedam)
    created = budget("budget", "admin", "create-fund", "--window", str(WINDOW), *schiedam)
    fund = int(re.search(r"fund (\d+) created", created.stdout).group(1))  # type: ignore[union-attr]

    # A fresh holder key; shops with their own keys.
    holder = new_key(tmp_path / "holder.key")
    landlord, energy, grocery, diy = (new_key(tmp_path / f"{n}.key") for n in ("l", "e", "g", "d"))
    shops = ((landlord, 1 << RENT), (energy, 1 << ENERGY), (grocery, 1 << LIVING))
    shops += ((diy, 1 << RESERVATION),)
    rent, power = compute_token_id(fund, RENT, PERIOD), compute_token_id(fund, ENERGY, PERIOD)
    living = compute_token_id(fund, LIVING, PERIOD)
    insurance = compute_token_id(fund, INSURANCE, PERIOD)
    short = compute_token_id(fund, LIVING, SHORT_PERIOD)
    now = int(time.time())
    f = chain.functions
    send_all(chain, issuer, [f.setMerchant(s.address, mask, True) for s, mask in shops])
    send_all(
        chain,
        issuer,
        [f.setMerchantFund(s.address, fund, True) for s, _ in shops]
        + [f.registerHolder(holder.address, fund)],
    )
    send_all(
        chain,
        issuer,
        [
            f.issue(holder.address, rent, 2 * 750_00, now + 900),
            f.issue(holder.address, power, 70_00, now + 900),
            f.issue(holder.address, insurance, 140_00, now + 900),
            f.issue(holder.address, living, 200_00, now + 900),
            f.issue(holder.address, short, 15_00, now + 30),
        ],
    )

    # Mandates: rent twice (RENT_INTERVAL apart), energy once; the scheduler pays each once.
    budget(
        "budget", "admin", "mandate", holder.address, "--shop", landlord.address,
        "--fund", str(fund), "--category", "RENT", "--period", str(PERIOD),
        "--amount", "75000", "--interval", str(RENT_INTERVAL), "--count", "2", *schiedam,
    )  # fmt: skip
    chain.send(issuer, f.createMandate(holder.address, energy.address, power, 70_00, now, 0, 1))
    mandates = get_fund_mandates(chain, fund)
    assert len(mandates) == 2
    first = run_once(chain, issuer, mandates)
    assert sorted(m for m, _ in first.paid) == mandates
    assert not first.refused
    assert run_once(chain, issuer, mandates).paid == [], "run again: nothing is paid twice"
    assert f.balanceOf(landlord.address, rent).call() == 750_00
    assert f.balanceOf(energy.address, power).call() == 70_00

    # Four purchases at the grocery: the holder's authorisation, submitted by the grocery.
    for amount in (42_17, 38_90, 51_05):
        auth = till(chain, holder, grocery, living, 60_00)
        validate_authorization(
            auth, merchant=grocery.address, amount=amount, now=time.time(),
            chain_id=chain.w3.eth.chain_id, book=chain.address,
        )  # fmt: skip
        chain.send(grocery, f.payWithAuthorization(*compute_call_arguments(auth, amount)))
    shown = budget(
        "budget", "wallet", "authorize", grocery.address, "--category", "LIVING",
        "--period", str(PERIOD), "--max", "5000", "--key", str(tmp_path / "holder.key"), *devnet,
    ).stdout.strip()  # fmt: skip
    budget(
        "budget", "merchant", "accept", shown, "--amount", "4444",
        "--key", str(tmp_path / "g.key"), *devnet,
    )  # fmt: skip
    bought = 42_17 + 38_90 + 51_05 + 44_44
    assert f.balanceOf(grocery.address, living).call() == bought

    # The same authorisation again, an expired one, and the wrong shop are refused, with reasons.
    assert "already used" in refusal(
        chain, grocery, f.payWithAuthorization(*compute_call_arguments(auth, 1_00))
    )
    stale = till(chain, holder, grocery, living, 10_00, expiry=int(time.time()) - 1)
    with pytest.raises(InvalidAuthorization, match="expired"):
        validate_authorization(
            stale, merchant=grocery.address, amount=5_00, now=time.time(),
            chain_id=chain.w3.eth.chain_id, book=chain.address,
        )  # fmt: skip
    assert (
        refusal(chain, grocery, f.payWithAuthorization(*compute_call_arguments(stale, 5_00)))
        == "the payment authorisation has expired"
    )
    wrong = budget(
        "budget", "wallet", "pay", diy.address, "--category", "LIVING", "--period", str(PERIOD),
        "--amount", "1999", "--key", str(tmp_path / "holder.key"), *devnet, ok=False,
    )  # fmt: skip
    assert wrong.returncode == 1
    assert "this shop does not accept living money" in wrong.stderr

    # Lost phone: recover to a new key; the new key spends, the old one cannot.
    phone = new_key(tmp_path / "new-phone.key")
    budget(
        "budget", "admin", "recover", holder.address, str(tmp_path / "new-phone.key"),
        "--reason", "KEY_LOST", *schiedam,
    )  # fmt: skip
    fresh = till(chain, phone, grocery, living, 20_00)
    chain.send(grocery, f.payWithAuthorization(*compute_call_arguments(fresh, 15_00)))
    old = till(chain, holder, grocery, living, 20_00)
    assert (
        refusal(chain, grocery, f.payWithAuthorization(*compute_call_arguments(old, 5_00)))
        == "this key was replaced; pay with the holder's new key"
    )
    bought += 15_00

    # Redemption: one payout kept, one cancelled inside the window.
    redeemed = budget(
        "budget", "merchant", "redeem", "--fund", str(fund), "--category", "LIVING",
        "--period", str(PERIOD), "--amount", "10000", "--key", str(tmp_path / "g.key"), *devnet,
    )  # fmt: skip
    kept = int(re.search(r"payout (\d+)", redeemed.stdout).group(1))  # type: ignore[union-attr]
    receipt = chain.send(grocery, f.redeem(living, 20_00))
    undone = next(e for e in chain.get_receipt_events(receipt) if e.name == "Redeemed")
    budget("budget", "merchant", "cancel", str(undone.fields["payout"]), "--key",
           str(tmp_path / "g.key"), *devnet)  # fmt: skip

    # The second rent instalment comes due: the scheduler pays it from the new key, once.
    while time.time() < now + RENT_INTERVAL + 1:
        time.sleep(0.5)
    paid = budget("budget", "scheduler", "--fund", str(fund), "--once", *schiedam).stdout
    assert paid.count("paid an instalment") == 1, paid
    assert "nothing due" in budget("budget", "scheduler", "--fund", str(fund), "--once",
                                   *schiedam).stdout  # fmt: skip
    assert f.balanceOf(landlord.address, rent).call() == 2 * 750_00

    # The short period has expired: its budget is swept back to the fund.
    while chain.get_time() < now + 30:
        time.sleep(0.5)
    chain.send(issuer, f.sweep(phone.address, short))
    assert f.balanceOf(phone.address, short).call() == 0

    # After the window, the payout batch is closed and its hash anchored.
    (tmp_path / "sepa.xml").write_text("<Document>batch of the grocery</Document>")
    closed = budget(
        "budget", "admin", "close-batch", str(kept), "--fund", str(fund),
        "--batch-file", str(tmp_path / "sepa.xml"), *schiedam,
    ).stdout  # fmt: skip
    anchored = re.search(r"anchored hash (0x[0-9a-f]{64})", closed).group(1)  # type: ignore[union-attr]
    assert "0x" + bytes(f.batch_hashes(1).call()).hex() == anchored

    # The holder's view and the books.
    balances = budget("budget", "wallet", "balances", "--key", str(tmp_path / "new-phone.key"),
                      *devnet).stdout  # fmt: skip
    assert "RENT" in balances
    assert "LIVING" in balances
    assert "INSURANCE" in balances
    assert f"{200_00 - bought:>10}" in balances
    books = chain.get_books(fund)
    assert books == {
        "issued": 2 * 750_00 + 70_00 + 140_00 + 200_00 + 15_00,
        "held": 140_00 + 200_00 - bought,
        "spent": 2 * 750_00 + 70_00 + bought - 100_00,
        "pending": 0,
        "redeemed": 100_00,
        "swept": 15_00,
        "clawed_back": 0,
    }
    # The new phone's statement, every line proven through the light client from all nodes.
    statement = budget(
        "budget", "wallet", "statement", "--key", str(tmp_path / "new-phone.key"), *devnet,
        "--store", str(tmp_path / "light.sqlite"),
    ).stdout  # fmt: skip
    old_key, shop = holder.address.lower(), grocery.address.lower()
    moved = f"moved here from your old key {old_key} (recovery)"
    for parts in (
        (f"your budgets were moved to this key from {old_key} (the key was lost or stolen)",),
        ("+ € 750.00", "€ 750.00", moved),
        ("- € 750.00", "€ 0.00", f"mandate instalment to {landlord.address.lower()}",
         f"(mandate {min(mandates)})"),
        ("+ € 140.00", "€ 140.00", moved),
        (euros(200_00 - bought + 15_00), moved),
        ("- € 15.00", euros(200_00 - bought), f"paid to {shop} at the till"),
        ("+ € 15.00", "€ 15.00", moved),
        ("- € 15.00", "€ 0.00", "swept back to the fund (period expired)"),
        (f"ENERGY (fund {fund}, period {PERIOD})",),
        (f"LIVING (fund {fund}, period {SHORT_PERIOD})",),
        ("✓ lines served alike by every node", "identical on 4 node(s)"),
        ("✓ every line is in a proven transaction: 4 transaction(s)",),
        (f"✓ registration proven by storage: active in fund {fund}",),
        ("✓ balances proven by storage equal the lines",),
    ):  # fmt: skip
        assert any(all(p in line for p in parts) for line in statement.splitlines()), (
            parts,
            statement,
        )
    assert statement.endswith("\nVERIFIED\n"), statement
    assert "✗" not in statement, statement

    # The till's QR code: stdout stays the authorisation alone; the code goes to stderr and a PNG.
    shown_qr = budget(
        "budget", "wallet", "authorize", grocery.address, "--category", "LIVING",
        "--period", str(PERIOD), "--max", "500", "--key", str(tmp_path / "new-phone.key"),
        *devnet, "--qr", "--png", str(tmp_path / "till.png"),
    )  # fmt: skip
    assert decode_authorization(shown_qr.stdout.strip()).holder == phone.address.lower()
    assert shown_qr.stdout.count("\n") == 1
    assert "▀" in shown_qr.stderr
    assert (tmp_path / "till.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    verified = budget(
        "verify", "books", str(fund), *devnet, "--store", str(tmp_path / "light.sqlite")
    ).stdout
    assert "\nVERIFIED" in verified, verified
    assert "✗" not in verified, verified
    assert "identical on 4 node(s)" in verified
    assert "storage proof" in verified
    print(verified, f"({time.monotonic() - started:.1f} s)")
