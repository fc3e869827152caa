"""``polder issuer ...``: run a municipality's credential issuance.

  keygen --key FILE                      make the issuer's RSA key (mode 0600)
  add-voters --roll FILE --from CSV      put voters on the roll; print their codes once
  serve --roll FILE --key FILE --poll 0x..  serve credentials for the polls given
  issued --roll FILE --poll 0x..         print how many credentials a poll got

Exit 0 on success, 1 when the command failed (the message says why), 2 for a
usage error.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

from aiohttp import web

from clients.issuer.errors import RollError
from clients.issuer.keys import (
    encode_issuer_public_key,
    generate_issuer_key,
    load_issuer_key,
    save_issuer_key,
)
from clients.issuer.reporter import ReportIssued
from clients.issuer.roll import add_voters, count_issued, load_roll, open_roll
from clients.issuer.service import DEFAULT_PORT, IssuerConfig, decode_poll_id, make_app
from consensus.errors import PolderError
from contracts.ballot.blind import DEFAULT_MODULUS_BITS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polder issuer", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    keygen = commands.add_parser("keygen", help="make the issuer's RSA key")
    keygen.add_argument("--key", type=Path, required=True, help="PEM file to create (0600)")
    keygen.add_argument("--bits", type=int, default=DEFAULT_MODULUS_BITS, help="modulus size")
    voters = commands.add_parser("add-voters", help="put voters on the roll, print their codes")
    voters.add_argument("--roll", type=Path, required=True, help="the SQLite roll")
    voters.add_argument(
        "--from", dest="source", type=Path, required=True, help="CSV (voter_id column) or JSON"
    )
    serve = commands.add_parser("serve", help="serve credentials over HTTP")
    serve.add_argument("--roll", type=Path, required=True, help="the SQLite roll")
    serve.add_argument("--key", type=Path, required=True, help="the issuer's PEM key")
    serve.add_argument(
        "--poll", action="append", required=True, help="a poll id served (repeat for more)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    serve.add_argument("--name", default="issuer", help="the municipality's name")
    serve.add_argument("--node", help="a node's RPC URL: put the issued count on chain")
    serve.add_argument(
        "--account-key", type=Path, help="with --node: the issuer's account key (it signs reports)"
    )
    serve.add_argument(
        "--registry", default=None, help="PollRegistry address (default: the genesis one)"
    )
    issued = commands.add_parser("issued", help="credentials issued for a poll")
    issued.add_argument("--roll", type=Path, required=True, help="the SQLite roll")
    issued.add_argument("--poll", required=True, help="the poll id")
    return parser


def _keygen(args: argparse.Namespace) -> int:
    key = generate_issuer_key(args.bits)
    save_issuer_key(args.key, key)
    print(f"wrote {args.key}; public key (DER, for the poll's issuerKeys):")
    print("0x" + encode_issuer_public_key(key).hex())
    return 0


def _add_voters(args: argparse.Namespace) -> int:
    voter_ids = load_roll(args.source)
    connection = open_roll(args.roll)
    try:
        codes = add_voters(connection, voter_ids)
    finally:
        connection.close()
    # The only time the codes exist in plain: print them for the letters, keep nothing.
    writer = csv.writer(sys.stdout)
    writer.writerow(["voter_id", "code"])
    writer.writerows(codes.items())
    print(f"added {len(codes)} voters to {args.roll}", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    polls = frozenset(decode_poll_id(p) for p in args.poll)
    config = IssuerConfig(
        name=args.name,
        key=load_issuer_key(args.key),
        roll_path=args.roll,
        polls=polls,
        report=make_chain_reporter(args),
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    web.run_app(make_app(config), host=args.host, port=args.port, print=None)
    return 0


def make_chain_reporter(args: argparse.Namespace) -> ReportIssued | None:
    """``reportIssued`` transactions signed by the issuer's account, if a node is named."""
    if args.node is None:
        return None
    if args.account_key is None:
        raise RollError("--node needs --account-key: the issuer's account signs the report")
    from eth_account import Account  # noqa: PLC0415 - web3 only when reporting

    from clients.polls.chain import DEFAULT_REGISTRY, make_issued_reporter  # noqa: PLC0415

    account = Account.from_key(args.account_key.read_text().strip())
    return make_issued_reporter(args.node, args.registry or DEFAULT_REGISTRY, account)


def _issued(args: argparse.Namespace) -> int:
    poll_id = decode_poll_id(args.poll)
    if not args.roll.exists():
        raise RollError(f"voter roll {args.roll} does not exist")
    connection = open_roll(args.roll)
    try:
        print(count_issued(connection, poll_id))
    finally:
        connection.close()
    return 0


COMMANDS = {"keygen": _keygen, "add-voters": _add_voters, "serve": _serve, "issued": _issued}


def main(argv: list[str] | None = None) -> int:
    """Run one ``polder issuer`` command; return the exit status."""
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return COMMANDS[args.command](args)
    except (PolderError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
