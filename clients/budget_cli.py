"""``polder budget ...`` and ``polder verify books``: budgets as vouchers from the command line.

Every command talks to one node (``--node URL``, or a devnet's first node
with ``--devnet DIR``). Issuers (municipalities, i.e. validators) sign with
``--devnet DIR --as NAME`` or ``--key FILE``; holders and shops with
``--key FILE`` (``polder budget wallet new --out FILE``). Refusals print the
contract's plain reason. Exit status: 0 done, 1 refused or not verified,
2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from clients.budget import authorization as till
from clients.budget import qr
from clients.budget.books import collect_events, prove_books, verify_books
from clients.budget.chain import (
    BOOK_NAME,
    CATEGORY_NAMES,
    DEFAULT_BOOK,
    HOLDER_STATUS,
    REASONS,
    BudgetChain,
    compute_category_mask,
    compute_token_id,
    decode_token_id,
    describe_token,
    parse_category,
)
from clients.budget.scheduler import RoundResult, get_fund_mandates, run_forever, run_once
from clients.budget.statement import build_statement, encode_statement, format_statement
from clients.cliargs import UsageError, choose_node_url, load_account, read_manifest, run_command
from clients.cliargs import add_node_arguments as add_shared_arguments
from clients.verify_cli import add_arguments as add_verify_arguments
from clients.verify_cli import open_client, parse_providers
from clients.web3tools import connect
from consensus.errors import PolderError

Handler = Callable[[argparse.Namespace], int]


# --- shared plumbing -------------------------------------------------------------------


def add_node_arguments(parser: argparse.ArgumentParser, signs: bool = True) -> None:
    add_shared_arguments(parser, ("--book", BOOK_NAME, DEFAULT_BOOK), signs=signs)


def book_address(args: argparse.Namespace, manifest: dict[str, Any]) -> str:
    return str(args.book or manifest.get("contracts", {}).get(BOOK_NAME, DEFAULT_BOOK))


def open_chain(args: argparse.Namespace) -> BudgetChain:
    manifest = read_manifest(args.devnet)
    url = choose_node_url(args.node, manifest, getattr(args, "member", None))
    return BudgetChain(connect(url), book_address(args, manifest))


def signer(args: argparse.Namespace) -> Any:
    return load_account(args.key, read_manifest(args.devnet), getattr(args, "member", None))


def address_of(args: argparse.Namespace, value: str) -> str:
    """An address given as 0x…, as a key file, or as the name of a devnet municipality."""
    if value.startswith("0x") and len(value) == 42:
        return to_checksum_address(value)
    if Path(value).is_file():
        return str(load_account(Path(value), {}, None).address)
    manifest = read_manifest(args.devnet)
    if manifest:
        return str(load_account(None, manifest, value).address)
    raise UsageError(f"{value!r} is neither an address, a key file nor a devnet municipality")


def parse_time(value: str) -> int:
    """``+SECONDS`` from now, or a unix time."""
    if value.startswith("+") and value[1:].isdigit():
        return int(time.time()) + int(value[1:])
    if value.isdigit():
        return int(value)
    raise UsageError(f"a time is '+SECONDS' or a unix time, got {value!r}")


def parse_reason(value: str) -> int:
    if value.upper() not in REASONS:
        raise UsageError(f"a reason is one of {', '.join(REASONS)}, got {value!r}")
    return REASONS[value.upper()]


def token_of(args: argparse.Namespace) -> int:
    try:
        return compute_token_id(args.fund, parse_category(args.category), args.period)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def add_budget_arguments(parser: argparse.ArgumentParser, fund: bool = True) -> None:
    if fund:
        parser.add_argument("--fund", type=int, required=True)
    parser.add_argument(
        "--category", required=True, help="RENT ENERGY INSURANCE LIVING RESERVATION"
    )
    parser.add_argument("--period", type=int, required=True, help="the period label, e.g. 202601")


def holder_token(args: argparse.Namespace, chain: BudgetChain, holder: str) -> int:
    """The token id of a holder's own fund, category and period."""
    fund, status = chain.get_holder(holder)
    if status == 0:
        raise UsageError(f"{holder} is not a registered budget holder")
    args.fund = fund
    return token_of(args)


def done(receipt: Any, what: str) -> int:
    print(
        f"{what} (block {receipt['blockNumber']}, tx 0x{bytes(receipt['transactionHash']).hex()})"
    )
    return 0


def first_event(chain: BudgetChain, receipt: Any, name: str) -> dict[str, Any]:
    return next(e.fields for e in chain.get_receipt_events(receipt) if e.name == name)


# --- admin: the municipality ----------------------------------------------------------


def admin_register_issuer(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    return done(chain.send(signer(args), chain.functions.registerIssuer()), "registered as issuer")


def admin_create_fund(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    receipt = chain.send(signer(args), chain.functions.createFund(args.window))
    fund = first_event(chain, receipt, "FundCreated")["fund"]
    return done(receipt, f"fund {fund} created (cancellation window {args.window} s)")


def admin_add_shop(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    mask = compute_category_mask(args.categories.split(","))
    shop = address_of(args, args.shop)
    call = chain.functions.setMerchant(shop, mask, not args.inactive)
    return done(chain.send(signer(args), call), f"shop {shop} accepts {args.categories.upper()}")


def admin_accept_fund(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    shop = address_of(args, args.shop)
    call = chain.functions.setMerchantFund(shop, args.fund, not args.refuse)
    verb = "no longer accepts" if args.refuse else "accepts"
    return done(chain.send(signer(args), call), f"shop {shop} {verb} fund {args.fund}")


def admin_add_holder(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    holder = address_of(args, args.holder)
    call = chain.functions.registerHolder(holder, args.fund)
    return done(chain.send(signer(args), call), f"holder {holder} registered in fund {args.fund}")


def admin_issue(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    holder, token = address_of(args, args.holder), token_of(args)
    call = chain.functions.issue(holder, token, args.amount, parse_time(args.expiry))
    return done(
        chain.send(signer(args), call), f"issued {args.amount} {args.category.upper()} to {holder}"
    )


def admin_mandate(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    holder, shop, token = address_of(args, args.holder), address_of(args, args.shop), token_of(args)
    call = chain.functions.createMandate(
        holder, shop, token, args.amount, parse_time(args.first_due), args.interval, args.count
    )
    receipt = chain.send(signer(args), call)
    mandate = first_event(chain, receipt, "MandateCreated")["mandate"]
    return done(receipt, f"mandate {mandate}: {args.count} x {args.amount} to {shop}")


def admin_power(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    holder, reason = address_of(args, args.holder), parse_reason(args.reason)
    if args.power == "recover":
        replacement = address_of(args, args.replacement)
        call = chain.functions.recover(holder, replacement, reason)
        what = f"budgets of {holder} moved to {replacement}"
    else:
        call = getattr(chain.functions, args.power)(holder, reason)
        what = f"{holder} {args.power}d ({args.reason.upper()})"
    return done(chain.send(signer(args), call), what)


def admin_sweep(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    holder = address_of(args, args.holder)
    call = chain.functions.sweep(holder, token_of(args))
    return done(chain.send(signer(args), call), f"expired budget of {holder} swept to the fund")


def admin_close_batch(args: argparse.Namespace) -> int:
    """Anchor keccak256(salt ‖ batch file): a commitment, never a hash of the file alone."""
    chain = open_chain(args)
    salt = secrets.token_bytes(32)
    batch_hash = keccak(salt + args.batch_file.read_bytes())
    call = chain.functions.closePayoutBatch(args.fund, args.payouts, batch_hash)
    receipt = chain.send(signer(args), call)
    closed = first_event(chain, receipt, "PayoutBatchClosed")
    print(f"batch {closed['batch']}: {len(args.payouts)} payout(s), total {closed['total']}")
    print(f"  anchored hash 0x{batch_hash.hex()}")
    print(f"  salt          0x{salt.hex()}  (keep it off chain with the bank file)")
    return done(receipt, "batch closed")


# --- wallet: the holder ---------------------------------------------------------------


def wallet_new(args: argparse.Namespace) -> int:
    if args.out.exists():
        raise UsageError(f"{args.out} exists; not overwriting a key")
    account = Account.create()
    args.out.write_text("0x" + bytes(account.key).hex() + "\n")
    args.out.chmod(0o600)
    print(f"new key {account.address} saved to {args.out}")
    return 0


def wallet_balances(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    who = address_of(args, args.holder) if args.holder else signer(args).address
    fund, status = chain.get_holder(who)
    now = chain.get_time()
    print(f"{who}: {HOLDER_STATUS.get(status, status)}" + (f", fund {fund}" if fund else ""))
    for balance in chain.get_balances(who):
        name = CATEGORY_NAMES.get(balance.token.category, str(balance.token.category))
        state = (
            "expired"
            if balance.expiry and now >= balance.expiry
            else f"until {time.ctime(balance.expiry)}"
        )
        frozen = f" ({balance.frozen} frozen)" if balance.frozen else ""
        print(f"  {name:<12} {balance.amount:>10}{frozen}  period {balance.token.period}, {state}")
    return 0


def wallet_pay(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    account = signer(args)
    shop, token = address_of(args, args.shop), holder_token(args, chain, account.address)
    call = chain.functions.pay(shop, token, args.amount)
    return done(chain.send(account, call), f"paid {args.amount} to {shop}")


def terminal_columns(stream: Any) -> int:
    """The width of the terminal ``stream`` writes to (a large number if it is no terminal)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return sys.maxsize


def wallet_authorize(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    account = signer(args)
    if not 0 < args.valid <= till.MAX_VALIDITY:
        raise UsageError(f"--valid is 1 to {till.MAX_VALIDITY} seconds")
    auth = till.create_authorization(
        account,
        chain_id=chain.w3.eth.chain_id,
        book=chain.address,
        merchant=address_of(args, args.shop),
        token_id=holder_token(args, chain, account.address),
        max_amount=args.max,
        expiry=int(time.time()) + args.valid,
    )
    text = till.encode_authorization(auth)
    if args.png is not None:
        try:
            qr.save_png(text, args.png)
        except OSError as exc:
            raise UsageError(f"cannot write {args.png}: {exc}") from None
    print(text)
    if args.qr:
        print(qr.render_terminal(text), end="", file=sys.stderr)
        width, columns = qr.compute_width(text), terminal_columns(sys.stderr)
        if columns < width:
            print(
                f"(the QR code is {width} columns wide and this terminal has {columns}:"
                " widen it, or show the --png FILE)",
                file=sys.stderr,
            )
    shown = "shown above" if args.qr else "pass --qr to show it here"
    saved = f", saved to {args.png}" if args.png is not None else ""
    print(
        f"(up to {args.max} for {describe_token(decode_token_id(auth.token_id))},"
        f" valid {args.valid} s; the QR code of this text is {shown}{saved})",
        file=sys.stderr,
    )
    return 0


def wallet_statement(args: argparse.Namespace) -> int:
    """The holder's lines and balances, each proven through the light client."""
    if (args.holder is None) == (args.key is None):
        raise UsageError("name the holder: --holder ADDR or --key FILE (one of them)")
    holder = address_of(args, args.holder) if args.holder else signer(args).address
    providers = parse_providers(args)
    try:
        client = open_client(args)
    except PolderError as exc:  # the trust root could not be fetched or does not hash right
        verdict = {"verdict": "NOT VERIFIED", "holder": holder.lower(), "error": exc.message}
        print(json.dumps(verdict, indent=2) if args.json else f"NOT VERIFIED  {exc.message}")
        return 1
    book = book_address(args, read_manifest(args.devnet))
    chains = [(p.name or p.url, BudgetChain(connect(p.url), book)) for p in providers]
    statement = build_statement(chains, client, book, holder)
    if args.json:
        print(json.dumps(encode_statement(statement), indent=2))
    else:
        print(format_statement(statement))
    return 0 if statement.verified else 1


# --- merchant: the shop ---------------------------------------------------------------


def merchant_accept(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    account = signer(args)
    auth = till.decode_authorization(args.authorization)
    till.validate_authorization(
        auth,
        merchant=account.address,
        amount=args.amount,
        now=time.time(),
        chain_id=chain.w3.eth.chain_id,
        book=chain.address,
    )
    call = chain.functions.payWithAuthorization(*till.compute_call_arguments(auth, args.amount))
    return done(chain.send(account, call), f"received {args.amount} from {auth.holder}")


def merchant_redeem(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    receipt = chain.send(signer(args), chain.functions.redeem(token_of(args), args.amount))
    redeemed = first_event(chain, receipt, "Redeemed")
    print(
        f"payout {redeemed['payout']}: {args.amount},"
        f" cancellable until {time.ctime(redeemed['windowEnd'])}"
    )
    return done(receipt, "redeemed")


def merchant_cancel(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    call = chain.functions.cancelRedemption(args.payout)
    return done(chain.send(signer(args), call), f"payout {args.payout} cancelled")


# --- scheduler and verifier -----------------------------------------------------------


def print_round(result: RoundResult) -> None:
    for mandate, tx in result.paid:
        print(f"  paid an instalment of mandate {mandate} (tx {tx})")
    for mandate, reason in result.refused:
        print(f"  mandate {mandate} refused: {reason}")
    if not result.paid and not result.refused:
        print("  nothing due")


def run_scheduler(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    account = signer(args)

    def mandates() -> list[int]:
        return list(args.mandate) or get_fund_mandates(chain, args.fund)

    if args.fund is None and not args.mandate:
        raise UsageError("name --fund N or one or more --mandate ID")
    if args.once:
        result = run_once(chain, account, mandates())
        print_round(result)
        return 1 if result.refused else 0
    run_forever(chain, account, mandates, interval=args.interval, report=print_round)
    return 0


def read_contract_books(
    args: argparse.Namespace, urls: list[str], book: str, block: int
) -> tuple[dict[str, int] | None, str]:
    """``books(fund)`` at ``block``: proven by a storage proof if a trust root is known."""
    try:
        client = open_client(args)
    except UsageError as exc:
        client = None
        why = str(exc)
    if client is not None:
        return prove_books(client, book, args.fund, block)
    answers = {url: BudgetChain(connect(url), book).get_books(args.fund, block) for url in urls}
    if len({tuple(a.values()) for a in answers.values()}) != 1:
        return None, "the nodes' eth_call answers differ"
    return next(
        iter(answers.values())
    ), f"eth_call at #{block} from {len(urls)} node(s), not proven ({why})"


def run_verify_books(args: argparse.Namespace) -> int:
    providers = parse_providers(args)
    manifest = read_manifest(args.devnet)
    book = book_address(args, manifest).lower()
    chains = [(p.name or p.url, BudgetChain(connect(p.url), book)) for p in providers]
    block = min(chain.w3.eth.block_number for _, chain in chains)
    claimed, source = read_contract_books(args, [p.url for p in providers], book, block)
    record = collect_events(chains, args.fund, block)
    report = verify_books(record, claimed, source)
    print(
        f"fund {args.fund}: {len(record.events)} events up to #{block},"
        f" identical on {len(record.nodes)} node(s)"
    )
    for name, ok, detail in report.checks:
        print(f"  {'✓' if ok else '✗'} {name}: {detail}")
    print("VERIFIED" if report.passed else "NOT VERIFIED")
    return 0 if report.passed else 1


# --- the parser -----------------------------------------------------------------------


def build_admin(sub: Any) -> None:
    admin = sub.add_parser("admin", help="the municipality: funds, shops, holders, budgets, powers")
    commands = admin.add_subparsers(dest="command", required=True)
    parsers = {}
    parsers["register-issuer"] = commands.add_parser(
        "register-issuer", help="register as issuer (a validator)"
    )
    fund = parsers["create-fund"] = commands.add_parser("create-fund", help="create a fund")
    fund.add_argument(
        "--window", type=int, default=3 * 86400, help="redemption cancellation window, s"
    )
    shop = parsers["add-shop"] = commands.add_parser("add-shop", help="register or change a shop")
    shop.add_argument("shop")
    shop.add_argument("--categories", required=True, help="comma-separated, e.g. RENT,LIVING")
    shop.add_argument("--inactive", action="store_true")
    accept = parsers["accept-fund"] = commands.add_parser(
        "accept-fund", help="let a shop take a fund"
    )
    accept.add_argument("shop")
    accept.add_argument("--fund", type=int, required=True)
    accept.add_argument("--refuse", action="store_true", help="withdraw the acceptance")
    holder = parsers["add-holder"] = commands.add_parser("add-holder", help="register a holder")
    holder.add_argument("holder")
    holder.add_argument("--fund", type=int, required=True)
    issue = parsers["issue"] = commands.add_parser("issue", help="issue a budget to a holder")
    issue.add_argument("holder")
    add_budget_arguments(issue)
    issue.add_argument("--amount", type=int, required=True, help="euro cents")
    issue.add_argument("--expiry", required=True, help="+SECONDS or unix time the period expires")
    mandate = parsers["mandate"] = commands.add_parser("mandate", help="a fixed charge")
    mandate.add_argument("holder")
    mandate.add_argument("--shop", required=True)
    add_budget_arguments(mandate)
    mandate.add_argument("--amount", type=int, required=True)
    mandate.add_argument("--first-due", default="+0", help="+SECONDS or unix time")
    mandate.add_argument("--interval", type=int, default=0, help="seconds between instalments")
    mandate.add_argument("--count", type=int, default=1)
    for power in ("freeze", "unfreeze", "recover"):
        parser = parsers[power] = commands.add_parser(power, help=f"{power} a holder")
        parser.add_argument("holder")
        if power == "recover":
            parser.add_argument("replacement", help="the holder's new address or key file")
        parser.add_argument("--reason", required=True, help=", ".join(REASONS))
        parser.set_defaults(power=power)
    sweep = parsers["sweep"] = commands.add_parser("sweep", help="return an expired budget")
    sweep.add_argument("holder")
    add_budget_arguments(sweep)
    batch = parsers["close-batch"] = commands.add_parser(
        "close-batch", help="anchor a payout batch"
    )
    batch.add_argument("payouts", type=int, nargs="+")
    batch.add_argument("--fund", type=int, required=True)
    batch.add_argument("--batch-file", type=Path, required=True, help="the SEPA batch file")
    handlers: dict[str, Handler] = {
        "register-issuer": admin_register_issuer,
        "create-fund": admin_create_fund,
        "add-shop": admin_add_shop,
        "accept-fund": admin_accept_fund,
        "add-holder": admin_add_holder,
        "issue": admin_issue,
        "mandate": admin_mandate,
        "freeze": admin_power,
        "unfreeze": admin_power,
        "recover": admin_power,
        "sweep": admin_sweep,
        "close-batch": admin_close_batch,
    }
    for name, parser in parsers.items():
        add_node_arguments(parser)
        parser.set_defaults(handler=handlers[name])


def build_wallet(sub: Any) -> None:
    wallet = sub.add_parser("wallet", help="the holder: balances, paying, authorising, statements")
    commands = wallet.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="create a key file")
    new.add_argument("--out", type=Path, required=True)
    new.set_defaults(handler=wallet_new)
    balances = commands.add_parser("balances", help="budgets per category")
    balances.add_argument("--holder", help="an address (default: the --key's)")
    pay = commands.add_parser("pay", help="pay a shop from the wallet")
    pay.add_argument("shop")
    authorize = commands.add_parser("authorize", help="a payment authorisation for the till")
    authorize.add_argument("shop")
    authorize.add_argument("--max", type=int, required=True, help="the most the shop may charge")
    authorize.add_argument("--valid", type=int, default=300, help="seconds (at most 900)")
    authorize.add_argument(
        "--qr", action="store_true", help="also draw the QR code (on stderr; stdout stays the text)"
    )
    authorize.add_argument("--png", type=Path, metavar="FILE", help="also save the QR code as PNG")
    for parser, handler in (
        (balances, wallet_balances),
        (pay, wallet_pay),
        (authorize, wallet_authorize),
    ):
        add_node_arguments(parser)
        parser.set_defaults(handler=handler)
    for parser in (pay, authorize):
        add_budget_arguments(parser, fund=False)
    pay.add_argument("--amount", type=int, required=True)
    statement = commands.add_parser(
        "statement", help="a holder's lines and balances, proven through the light client"
    )
    statement.add_argument("--holder", help="an address, key file or devnet name")
    statement.add_argument("--key", type=Path, help="the holder's key file (its address)")
    statement.add_argument("--book", help=f"VoucherBook address (default {DEFAULT_BOOK})")
    add_verify_arguments(statement)
    statement.set_defaults(handler=wallet_statement, member=None)


def build_merchant(sub: Any) -> None:
    merchant = sub.add_parser("merchant", help="the shop: take authorisations, redeem")
    commands = merchant.add_subparsers(dest="command", required=True)
    accept = commands.add_parser("accept", help="check and submit a holder's authorisation")
    accept.add_argument("authorization", help="the QR code's text")
    accept.add_argument("--amount", type=int, required=True, help="what to charge")
    redeem = commands.add_parser("redeem", help="redeem budgets for euros (a pending payout)")
    add_budget_arguments(redeem)
    redeem.add_argument("--amount", type=int, required=True)
    cancel = commands.add_parser("cancel", help="cancel a redemption inside its window")
    cancel.add_argument("payout", type=int)
    for parser, handler in (
        (accept, merchant_accept),
        (redeem, merchant_redeem),
        (cancel, merchant_cancel),
    ):
        add_node_arguments(parser)
        parser.set_defaults(handler=handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polder", description=__doc__)
    top = parser.add_subparsers(dest="top", required=True)
    budget = top.add_parser("budget", help="budgets as vouchers")
    sub = budget.add_subparsers(dest="role", required=True)
    build_admin(sub)
    build_wallet(sub)
    build_merchant(sub)
    scheduler = sub.add_parser("scheduler", help="pay due mandates (fixed charges)")
    scheduler.add_argument("--fund", type=int)
    scheduler.add_argument("--mandate", type=int, action="append", default=[])
    scheduler.add_argument("--once", action="store_true", help="one round, then exit")
    scheduler.add_argument("--interval", type=float, default=60.0, help="seconds between rounds")
    add_node_arguments(scheduler)
    scheduler.set_defaults(handler=run_scheduler)
    verify = top.add_parser("verify", help="verify from chain data")
    what = verify.add_subparsers(dest="what", required=True)
    books = what.add_parser("books", help="recompute a fund's books from every node's events")
    books.add_argument("fund", type=int)
    books.add_argument("--book", help=f"VoucherBook address (default {DEFAULT_BOOK})")
    add_verify_arguments(books)
    books.set_defaults(handler=run_verify_books)
    return parser


def main(argv: list[str]) -> int:
    """``argv`` starts with ``budget`` or ``verify books`` (the words after ``polder``)."""
    args = build_parser().parse_args(argv)
    return run_command(args.top, lambda: args.handler(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
