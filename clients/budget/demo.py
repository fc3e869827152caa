"""``polder demo budget``: one household's month of budgets against a running devnet.

The devnet's first validator plays the municipality (the issuer). Its
off-chain store (:mod:`clients.budget.office`, one SQLite file) holds the
resident's name and BSN, the plan, and the shops' names and IBANs; the chain
gets only fresh addresses and amounts. The month, compressed into about a
minute (a week is a few seconds):

1. the municipality registers as issuer, creates a fund, registers the
   shops (landlord, energy company, insurer, grocery, a DIY store) and a
   fresh holder key, and issues the plan: rent, energy, insurance, living
   money, and a short-lived extra living budget;
2. the mandate scheduler pays rent and energy (run again, it pays nothing);
3. four weekly purchases at the grocery, each with a payment authorisation
   the holder's phone signs and the grocery submits;
4. a purchase at the DIY store is refused (wrong category), a replayed and
   an expired authorisation are refused, each with the contract's reason;
5. the phone is lost: the key is recovered to a new one, which spends; the
   old key is refused;
6. the grocery redeems twice and cancels one redemption inside the window;
7. the second rent instalment comes due and is paid once; the short budget
   expires and is swept back to the fund;
8. the payout batch (a bank file made from the stored IBANs) is closed and
   only its salted hash is anchored;
9. the books are verified from every validator's events, with the
   contract's counters proven by the light client.

The README's budget-holder, merchant and auditor sections walk the same
steps by hand.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account

from clients.budget import office
from clients.budget.authorization import (
    Authorization,
    InvalidAuthorization,
    compute_call_arguments,
    create_authorization,
    validate_authorization,
)
from clients.budget.books import collect_events, prove_books, verify_books
from clients.budget.chain import BudgetChain, compute_category_mask, compute_token_id
from clients.budget.scheduler import get_fund_mandates, run_once
from clients.light.client import LightClient
from clients.light.provider import HttpProvider
from clients.light.store import HeaderStore
from clients.report import Report
from clients.web3tools import TransactionRefused, build_signed, connect, submit, wait

PERIOD, SHORT_PERIOD = 202601, 202602
WINDOW = 6
"""Seconds a redemption can be cancelled (days in real life)."""
WEEK = 3
"""Seconds between the weekly purchases."""
RENT_INTERVAL = 15
"""Seconds between the two rent instalments (a month in real life)."""
SHORT_LIFE = 30
"""Seconds until the short period's budget expires."""
HOUSEHOLD: dict[str, Any] = {
    "person": {"name": "Fatima de Groot-El Amrani", "bsn": "111222333", "address": "Hoogstraat 1"},
    "shops": {
        "landlord": {"name": "Woonstichting Maasoever", "iban": "NL91ABNA0417164300"},
        "energy": {"name": "Zuid-Holland Energie B.V.", "iban": "NL20INGB0001234567"},
        "insurer": {"name": "Zorgverzekeraar Waterweg", "iban": "NL39RABO0300065264"},
        "grocery": {"name": "Buurtsuper De Brug", "iban": "NL02ABNA0123456789"},
        "diy": {"name": "Bouwmarkt Havenkwartier", "iban": "NL44RABO0123456789"},
    },
    "plan": {"RENT": 2 * 750_00, "ENERGY": 70_00, "INSURANCE": 140_00, "LIVING": 200_00},
    "rent": 750_00,
    "purchases": [42_17, 38_90, 51_05, 44_44],
}
"""The built-in household (fictional; its BSN passes the eleven test); ``--household`` FILE."""
SHOP_CATEGORIES = {
    "landlord": ("RENT",),
    "energy": ("ENERGY",),
    "insurer": ("INSURANCE",),
    "grocery": ("LIVING",),
    "diy": ("RESERVATION",),
}


@dataclass(frozen=True)
class BudgetDemoResult:
    fund: int
    books: dict[str, int]
    report: Report
    folder: Path
    """Keys and the office store."""


def load_household(path: Path | None) -> dict[str, Any]:
    """The household fixture: the built-in one, or a JSON file of the same shape."""
    if path is None:
        return HOUSEHOLD
    data: dict[str, Any] = json.loads(path.read_text())
    for key in ("person", "shops", "plan", "rent", "purchases"):
        if key not in data:
            raise office.OfficeError(f"{path}: the household has no {key!r}")
    if set(data["shops"]) != set(SHOP_CATEGORIES):
        raise office.OfficeError(f"{path}: shops are {', '.join(SHOP_CATEGORIES)}")
    return data


def new_key(path: Path) -> Any:
    """A fresh key saved with mode 0600 (a phone's, a shop's)."""
    account = Account.create()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("0x" + bytes(account.key).hex() + "\n")
    path.chmod(0o600)
    return account


class BudgetWalkthrough:
    """The month, step by step; each step prints what happened."""

    def __init__(
        self,
        devnet: Path,
        household: dict[str, Any],
        store: Path | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        manifest = json.loads((devnet / "devnet.json").read_text())
        self.validators = [n for n in manifest["nodes"] if n.get("role") == "validator"]
        self.genesis_hash = bytes.fromhex(manifest["genesisHash"][2:])
        first = self.validators[0]
        keys = Path(manifest["genesis"]).parent / "keys"
        self.name = first["name"]
        self.issuer = Account.from_key((keys / f"{self.name.lower()}.key").read_text().strip())
        self.chain = BudgetChain(connect(first["rpc"]))
        self.household = household
        self.folder = devnet / "demo-budget" / time.strftime("%Y%m%d-%H%M%S")
        self.office = office.open_office(store or self.folder / "office.sqlite")
        self.say = say
        self.fund = 0
        self.person = 0
        self.shops: dict[str, Any] = {}
        self.holder: Any = None
        self.started = 0
        self.last_auth: Authorization | None = None

    # -- helpers ---------------------------------------------------------------------

    def send_all(self, account: Any, calls: Sequence[Any]) -> list[Any]:
        """Send calls of one sender in consecutive nonces; wait for every receipt."""
        w3 = self.chain.w3
        nonce = w3.eth.get_transaction_count(account.address, "pending")
        hashes = [
            submit(w3, build_signed(w3, account, call, nonce + i)) for i, call in enumerate(calls)
        ]
        return [wait(w3, h) for h in hashes]

    def token(self, category: int, period: int = PERIOD) -> int:
        return compute_token_id(self.fund, category, period)

    def authorize(self, holder: Any, ceiling: int, expiry: int = 0) -> Authorization:
        """What the holder's phone shows at the grocery's till (valid 2 minutes)."""
        return create_authorization(
            holder,
            chain_id=self.chain.w3.eth.chain_id,
            book=self.chain.address,
            merchant=self.shops["grocery"].address,
            token_id=self.token(4),
            max_amount=ceiling,
            expiry=expiry or int(time.time()) + 120,
        )

    def charge(self, auth: Authorization, amount: int) -> Any:
        """The grocery checks the authorisation at the till, then submits it."""
        validate_authorization(
            auth,
            merchant=self.shops["grocery"].address,
            amount=amount,
            now=time.time(),
            chain_id=self.chain.w3.eth.chain_id,
            book=self.chain.address,
        )
        call = self.chain.functions.payWithAuthorization(*compute_call_arguments(auth, amount))
        return self.chain.send(self.shops["grocery"], call)

    def used(self) -> Authorization:
        if self.last_auth is None:
            raise office.OfficeError("no authorisation was used yet")
        return self.last_auth

    def refused(self, account: Any, call: Any) -> str:
        try:
            self.chain.send(account, call)
        except TransactionRefused as exc:
            return exc.message
        raise office.OfficeError("the chain accepted what it must refuse")

    # -- the month -------------------------------------------------------------------

    def set_up(self) -> None:
        chain, f = self.chain, self.chain.functions
        if not f.issuers(self.issuer.address).call():
            chain.send(self.issuer, f.registerIssuer())
        receipt = chain.send(self.issuer, f.createFund(WINDOW))
        self.fund = next(
            e.fields["fund"] for e in chain.get_receipt_events(receipt) if e.name == "FundCreated"
        )
        person = self.household["person"]
        self.person = office.add_person(
            self.office, person["name"], person["bsn"], person.get("address", "")
        )
        for role, shop in self.household["shops"].items():
            self.shops[role] = new_key(self.folder / f"{role}.key")
            office.add_shop(
                self.office,
                self.shops[role].address,
                name=shop["name"],
                iban=shop["iban"],
                categories=SHOP_CATEGORIES[role],
            )
        self.send_all(
            self.issuer,
            [
                f.setMerchant(account.address, compute_category_mask(SHOP_CATEGORIES[role]), True)
                for role, account in self.shops.items()
            ],
        )
        self.send_all(
            self.issuer,
            [f.setMerchantFund(a.address, self.fund, True) for a in self.shops.values()],
        )
        self.holder = new_key(self.folder / "phone.key")
        office.register_holder(
            self.office,
            chain,
            self.issuer,
            person=self.person,
            address=self.holder.address,
            fund=self.fund,
        )
        self.started = int(time.time())
        expiry = self.started + 900
        for category, amount in self.household["plan"].items():
            office.add_plan_line(
                self.office,
                self.person,
                fund=self.fund,
                period=PERIOD,
                category=category,
                amount=amount,
                expiry=expiry,
            )
        office.add_plan_line(
            self.office,
            self.person,
            fund=self.fund,
            period=SHORT_PERIOD,
            category="LIVING",
            amount=15_00,
            expiry=self.started + SHORT_LIFE,
        )
        rent = self.household["rent"]
        office.add_charge(
            self.office,
            self.person,
            shop=self.shops["landlord"].address,
            fund=self.fund,
            period=PERIOD,
            category="RENT",
            amount=rent,
            first_due=self.started,
            interval=RENT_INTERVAL,
            count=self.household["plan"]["RENT"] // rent,
        )
        office.add_charge(
            self.office,
            self.person,
            shop=self.shops["energy"].address,
            fund=self.fund,
            period=PERIOD,
            category="ENERGY",
            amount=self.household["plan"]["ENERGY"],
            first_due=self.started,
            interval=0,
            count=1,
        )
        applied = office.apply_plan(self.office, chain, self.issuer, self.person)
        self.say(f"1. {self.name} created fund {self.fund}; registered 5 shops and holder")
        self.say(f"   {self.holder.address}; the plan went on chain in {len(applied.sent)} tx")
        self.say(f"   (the person, BSN and IBANs stay in {self.office_path()})")

    def office_path(self) -> str:
        row = self.office.execute("PRAGMA database_list").fetchone()
        return str(row[2])

    def pay_mandates(self) -> None:
        mandates = get_fund_mandates(self.chain, self.fund)
        first = run_once(self.chain, self.issuer, mandates)
        again = run_once(self.chain, self.issuer, mandates)
        if first.refused or again.paid or len(first.paid) != len(mandates):
            raise office.OfficeError(f"the scheduler misbehaved: {first}, then {again}")
        self.say(
            f"2. the scheduler paid {len(first.paid)} due instalments (rent, energy);"
            " run again, it paid nothing"
        )

    def shop_weekly(self) -> None:
        for week, amount in enumerate(self.household["purchases"], start=1):
            if week > 1:
                time.sleep(WEEK)
            self.last_auth = self.authorize(self.holder, amount + 10_00)
            self.charge(self.last_auth, amount)
            self.say(f"3. week {week}: {amount / 100:.2f} paid at the grocery (authorisation)")

    def refusals(self) -> None:
        f = self.chain.functions
        wrong = self.refused(self.holder, f.pay(self.shops["diy"].address, self.token(4), 19_99))
        self.say(f"4. at the DIY store: refused, {wrong!r}")
        replay = self.refused(
            self.shops["grocery"],
            f.payWithAuthorization(*compute_call_arguments(self.used(), 1_00)),
        )
        self.say(f"   the last authorisation replayed: refused, {replay!r}")
        stale = self.authorize(self.holder, 10_00, expiry=int(time.time()) - 1)
        try:
            self.charge(stale, 5_00)
        except InvalidAuthorization as exc:
            self.say(f"   an expired authorisation, at the till: refused, {exc.message!r}")
        call = f.payWithAuthorization(*compute_call_arguments(stale, 5_00))
        self.say(f"   and on chain: refused, {self.refused(self.shops['grocery'], call)!r}")

    def lose_phone(self) -> None:
        phone = new_key(self.folder / "new-phone.key")
        self.chain.send(
            self.issuer,
            self.chain.functions.recover(self.holder.address, phone.address, 2),  # KEY_LOST
        )
        office.record_recovery(self.office, self.holder.address, phone.address)
        self.charge(self.authorize(phone, 20_00), 15_00)
        old = self.authorize(self.holder, 20_00)
        call = self.chain.functions.payWithAuthorization(*compute_call_arguments(old, 5_00))
        reason = self.refused(self.shops["grocery"], call)
        self.say(f"5. phone lost: budgets moved to {phone.address} (KEY_LOST);")
        self.say(f"   the new key paid 15.00; the old key: refused, {reason!r}")
        self.holder = phone

    def redeem(self) -> int:
        f, grocery = self.chain.functions, self.shops["grocery"]
        kept, undone = (
            next(
                e.fields["payout"] for e in self.chain.get_receipt_events(r) if e.name == "Redeemed"
            )
            for r in self.send_all(
                grocery, [f.redeem(self.token(4), 100_00), f.redeem(self.token(4), 20_00)]
            )
        )
        self.chain.send(grocery, f.cancelRedemption(undone))
        self.say(f"6. the grocery redeemed 100.00 (payout {kept}) and 20.00 (payout {undone});")
        self.say(f"   it cancelled payout {undone} inside the {WINDOW} s window")
        return int(kept)

    def month_end(self, kept: int) -> None:
        while time.time() < self.started + RENT_INTERVAL + 1:
            time.sleep(0.5)
        paid = run_once(self.chain, self.issuer, get_fund_mandates(self.chain, self.fund))
        self.say(f"7. the second rent instalment came due: paid {len(paid.paid)} instalment")
        while self.chain.get_time() < self.started + SHORT_LIFE:
            time.sleep(0.5)
        self.chain.send(
            self.issuer,
            self.chain.functions.sweep(self.holder.address, self.token(4, SHORT_PERIOD)),
        )
        self.say("   the short living budget expired and was swept back to the fund")
        while self.chain.get_time() < self.chain.get_payout(kept)["window_end"]:
            time.sleep(0.5)
        batch = office.close_payout_batch(self.office, self.chain, self.issuer, self.fund, [kept])
        self.say(
            f"8. payout batch {batch.batch} closed: {batch.total / 100:.2f} to the grocery's"
            f" IBAN; on chain only keccak256(salt ‖ bank file) = 0x{batch.hash.hex()[:16]}…"
        )

    def audit(self) -> tuple[dict[str, int], Report]:
        """Every validator's events, the counters proven through the light client."""
        providers = [HttpProvider(url=n["rpc"], name=n["name"]) for n in self.validators]
        client = LightClient(providers, HeaderStore(self.folder / "light.sqlite"), min_agree=2)
        client.trust(0, self.genesis_hash, self.genesis_hash)
        block = client.verify_head().block.number
        chains = [(p.name, BudgetChain(connect(p.url), self.chain.address)) for p in providers]
        record = collect_events(chains, self.fund, block)
        claimed, source = prove_books(client, self.chain.address, self.fund, block)
        report = verify_books(record, claimed, source)
        self.say(
            f"9. the books of fund {self.fund}: {len(record.events)} events up to #{block},"
            f" identical on {len(record.nodes)} validators"
        )
        for name, ok, detail in report.checks:
            self.say(f"   {'✓' if ok else '✗'} {name}: {detail}")
        self.say("   VERIFIED" if report.passed else "   NOT VERIFIED")
        return claimed, report


def run_demo(
    devnet: Path,
    household: dict[str, Any] | None = None,
    store: Path | None = None,
    say: Callable[[str], None] = print,
) -> BudgetDemoResult:
    """Run the month; see the module docstring."""
    walk = BudgetWalkthrough(devnet, household or HOUSEHOLD, store, say)
    walk.set_up()
    walk.pay_mandates()
    walk.shop_weekly()
    walk.refusals()
    walk.lose_phone()
    kept = walk.redeem()
    walk.month_end(kept)
    books, report = walk.audit()
    return BudgetDemoResult(walk.fund, books, report, walk.folder)
