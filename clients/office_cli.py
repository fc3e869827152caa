"""``polder budget office ...`` and ``polder demo budget``: the municipality's own store.

The office store (``--db FILE``, SQLite, mode 0600) is where a
municipality keeps what must never go on chain: the person behind a holder
address, the plan, the shops' IBANs, the bank batch files. Commands that
also act on chain (``add-shop --fund``, ``enrol``, ``issue``, ``recover``,
``pay-out``) take the node and signer options of ``polder budget admin``.
Exit status: 0 done, 1 refused, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from clients import budget_cli
from clients.budget import office
from clients.budget.chain import BOOK_NAME, CATEGORIES, DEFAULT_BOOK, REASONS, BudgetChain
from clients.cliargs import (
    UsageError,
    add_node_arguments,
    run_command,
)


def open_chain(args: argparse.Namespace) -> tuple[BudgetChain, Any]:
    """The VoucherBook on the named node, and the issuer's signing account."""
    return budget_cli.open_chain(args), budget_cli.signer(args)


def run_add_person(args: argparse.Namespace, db: Any) -> int:
    person = office.add_person(db, args.name, args.bsn, args.address)
    print(f"person {person} added")
    return 0


def run_add_shop(args: argparse.Namespace, db: Any) -> int:
    shop = office.add_shop(
        db,
        budget_cli.address_of(args, args.shop),
        name=args.name,
        iban=args.iban,
        categories=args.categories.split(","),
        kvk=args.kvk,
    )
    print(f"shop {shop.address} ({shop.name}, {shop.iban}) stored")
    if args.fund is not None:
        chain, account = open_chain(args)
        office.register_shop(db, chain, account, shop.address, args.fund)
        print(f"  on chain: accepts {','.join(shop.categories)} of fund {args.fund}")
    return 0


def run_enrol(args: argparse.Namespace, db: Any) -> int:
    chain, account = open_chain(args)
    holder = budget_cli.address_of(args, args.holder)
    office.register_holder(db, chain, account, person=args.person, address=holder, fund=args.fund)
    print(f"person {args.person} holds fund {args.fund} as {holder} (registered on chain)")
    return 0


def run_plan(args: argparse.Namespace, db: Any) -> int:
    line = office.add_plan_line(
        db,
        args.person,
        fund=args.fund,
        period=args.period,
        category=args.category,
        amount=args.amount,
        expiry=args.expiry,
    )
    print(f"plan line {line}: {args.amount} {args.category.upper()} (issue it with 'issue')")
    return 0


def run_charge(args: argparse.Namespace, db: Any) -> int:
    charge = office.add_charge(
        db,
        args.person,
        shop=budget_cli.address_of(args, args.shop),
        fund=args.fund,
        period=args.period,
        category=args.category,
        amount=args.amount,
        first_due=args.first_due,
        interval=args.interval,
        count=args.count,
    )
    print(f"charge {charge}: {args.count} x {args.amount} (set it on chain with 'issue')")
    return 0


def run_issue(args: argparse.Namespace, db: Any) -> int:
    chain, account = open_chain(args)
    applied = office.apply_plan(db, chain, account, args.person)
    print(
        f"person {args.person}: {len(applied.sent)} transaction(s) sent,"
        f" {applied.already} line(s) were already on chain"
    )
    return 0


def run_recover(args: argparse.Namespace, db: Any) -> int:
    chain, account = open_chain(args)
    old, new = budget_cli.address_of(args, args.old), budget_cli.address_of(args, args.new)
    office.find_person(db, old)  # refuse before touching the chain
    chain.send(account, chain.functions.recover(old, new, REASONS[args.reason]))
    office.record_recovery(db, old, new)
    print(f"budgets of {old} moved to {new}; the store links the person to the new key")
    return 0


def run_pay_out(args: argparse.Namespace, db: Any) -> int:
    chain, account = open_chain(args)
    batch = office.close_payout_batch(db, chain, account, args.fund, args.payouts)
    args.out.write_text(batch.file)
    print(f"batch {batch.batch}: {len(args.payouts)} payout(s), total {batch.total}")
    print(f"  bank file {args.out} (names and IBANs: give it to the bank, not to the chain)")
    print(f"  anchored keccak256(salt ‖ file) 0x{batch.hash.hex()}; the salt stays in the store")
    return 0


def run_show(args: argparse.Namespace, db: Any) -> int:
    person = office.find_person(db, args.who).person if args.who.startswith("0x") else int(args.who)
    for line in office.describe_plan(db, person):
        print(line)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from clients.budget.demo import load_household  # noqa: PLC0415
    from clients.budget.demo import run_demo as demo  # noqa: PLC0415

    if not (args.devnet / "devnet.json").is_file():
        raise UsageError(f"no devnet in {args.devnet}: start one with 'make run'")
    result = demo(args.devnet, load_household(args.household), args.db)
    print(f"fund {result.fund}")
    return 0 if result.report.passed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polder", description=__doc__)
    top = parser.add_subparsers(dest="top", required=True)
    budget = top.add_parser("budget").add_subparsers(dest="role", required=True)
    commands = budget.add_parser(
        "office", help="the municipality's off-chain store"
    ).add_subparsers(dest="command", required=True)
    person = commands.add_parser("add-person", help="a resident (name and BSN stay here)")
    person.add_argument("--name", required=True)
    person.add_argument("--bsn", required=True)
    person.add_argument("--address", default="", help="postal address")
    shop = commands.add_parser("add-shop", help="a shop's name and IBAN (with --fund: on chain)")
    shop.add_argument("shop", help="its address or key file")
    shop.add_argument("--name", required=True)
    shop.add_argument("--iban", required=True)
    shop.add_argument("--kvk", default="", help="Chamber of Commerce number")
    shop.add_argument("--categories", required=True, help=",".join(CATEGORIES))
    shop.add_argument("--fund", type=int, help="register it on chain, accepting this fund")
    enrol = commands.add_parser("enrol", help="link a fresh holder key, register it on chain")
    enrol.add_argument("person", type=int)
    enrol.add_argument("--holder", required=True, help="the holder's address or key file")
    enrol.add_argument("--fund", type=int, required=True)
    plan = commands.add_parser("plan", help="a budget line of a person's plan")
    charge = commands.add_parser("charge", help="a fixed charge (rent, energy, insurance)")
    for parser_ in (plan, charge):
        parser_.add_argument("person", type=int)
        parser_.add_argument("--fund", type=int, required=True)
        parser_.add_argument("--period", type=int, required=True)
        parser_.add_argument("--category", required=True, choices=sorted(CATEGORIES))
        parser_.add_argument("--amount", type=int, required=True, help="euro cents")
    plan.add_argument("--expiry", type=int, required=True, help="unix time the period ends")
    charge.add_argument("--shop", required=True, help="the payee's address")
    charge.add_argument("--first-due", type=int, required=True, help="unix time")
    charge.add_argument("--interval", type=int, default=0, help="seconds between instalments")
    charge.add_argument("--count", type=int, default=1)
    issue = commands.add_parser("issue", help="put a person's plan on chain (once)")
    issue.add_argument("person", type=int)
    recover = commands.add_parser("recover", help="a lost phone: move budgets to a new key")
    recover.add_argument("old")
    recover.add_argument("new", help="the new address or key file")
    recover.add_argument("--reason", default="KEY_LOST", choices=sorted(REASONS))
    pay_out = commands.add_parser("pay-out", help="bank file of payouts; anchor its hash")
    pay_out.add_argument("payouts", type=int, nargs="+")
    pay_out.add_argument("--fund", type=int, required=True)
    pay_out.add_argument("--out", type=Path, required=True, help="where to write the bank file")
    show = commands.add_parser("show", help="a person's plan and keys (by number or address)")
    show.add_argument("who")
    handlers = {
        "add-person": (person, run_add_person),
        "add-shop": (shop, run_add_shop),
        "enrol": (enrol, run_enrol),
        "plan": (plan, run_plan),
        "charge": (charge, run_charge),
        "issue": (issue, run_issue),
        "recover": (recover, run_recover),
        "pay-out": (pay_out, run_pay_out),
        "show": (show, run_show),
    }
    for parser_, handler in handlers.values():
        parser_.add_argument("--db", type=Path, required=True, help="the office store (SQLite)")
        add_node_arguments(parser_, ("--book", BOOK_NAME, DEFAULT_BOOK))
        parser_.set_defaults(handler=handler)
    demo = (
        top.add_parser("demo")
        .add_subparsers(dest="what", required=True)
        .add_parser("budget", help="a household's month against a running devnet")
    )
    demo.add_argument("--devnet", type=Path, default=Path(".devnet"))
    demo.add_argument("--household", type=Path, help="a household fixture (JSON)")
    demo.add_argument("--db", type=Path, help="the office store (default: in the demo folder)")
    demo.set_defaults(handler=None)
    return parser


def main(argv: list[str]) -> int:
    """``argv`` is ``budget office ...`` or ``demo budget ...``."""
    args = build_parser().parse_args(argv)

    def run() -> int:
        if args.handler is None:
            return run_demo(args)
        db = office.open_office(args.db)
        try:
            return int(args.handler(args, db))
        finally:
            db.close()

    return run_command(args.top, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
