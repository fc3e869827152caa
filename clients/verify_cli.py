"""``polder verify ...``: check receipts, transactions and accounts with the light client.

Every command prints a verdict a person can read and exits 0 only when the
thing was verified; 1 when verification failed (the reason and each faulty
provider are named); 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from clients.cliargs import UsageError, read_manifest
from clients.light import (
    Fault,
    HeaderStore,
    HttpProvider,
    LightClient,
    load_receipt,
    verify_receipt,
)
from clients.light.client import DEFAULT_MAX_HEAD_AGE
from consensus.errors import PolderError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options every ``polder verify`` command shares."""
    parser.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="[NAME=]URL",
        help="a node's RPC URL (repeat: ask nodes of different municipalities)",
    )
    parser.add_argument(
        "--devnet", type=Path, help="take the nodes and genesis hash from DIR/devnet.json"
    )
    parser.add_argument("--genesis-hash", help="the trusted genesis hash, as published")
    parser.add_argument("--checkpoint", metavar="NUMBER:HASH", help="a trusted later header")
    parser.add_argument("--store", type=Path, help="the verified-header store (a file)")
    parser.add_argument(
        "--min-agree",
        type=int,
        default=2,
        help="providers that must serve the same header (default 2)",
    )
    parser.add_argument(
        "--max-head-age",
        type=float,
        default=DEFAULT_MAX_HEAD_AGE,
        help="seconds after which a node's head counts as withheld (default 60)",
    )
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polder verify", description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    receipt = sub.add_parser("receipt", help="check a saved receipt (ballot, payment, ...)")
    receipt.add_argument("file", type=Path)
    tx = sub.add_parser("tx", help="prove that a transaction is on the chain, with its receipt")
    tx.add_argument("tx_hash")
    account = sub.add_parser("account", help="prove an account (and storage slots)")
    account.add_argument("address")
    account.add_argument("--slot", action="append", default=[], help="a storage slot (repeat)")
    account.add_argument("--block", default="latest", help="a block number (default: head)")
    sub.add_parser("head", help="the verified head and which nodes agree")
    for command in (receipt, tx, account, sub.choices["head"]):
        add_arguments(command)
    return parser


def parse_hash(value: str, what: str) -> bytes:
    digits = value.removeprefix("0x")
    if len(digits) != 64:
        raise UsageError(f"{what} must be 32 bytes of hex, got {value!r}")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise UsageError(f"{what} is not hex: {value!r}") from None


def parse_providers(args: argparse.Namespace) -> list[HttpProvider]:
    providers = []
    for item in args.node:
        name, _, url = item.rpartition("=") if "=" in item.split("//")[0] else ("", "", item)
        providers.append(HttpProvider(url=url, name=name))
    if args.devnet is not None:
        manifest = read_manifest(args.devnet)
        providers += [
            HttpProvider(url=node["rpc"], name=node["name"])
            for node in manifest["nodes"]
            if node.get("role") == "validator"
        ]
    if not providers:
        raise UsageError("name at least one node with --node URL (better two)")
    return providers


def resolve_trust(args: argparse.Namespace) -> tuple[int, bytes, bytes | None] | None:
    """Return (number, hash, genesis hash) to pin, or None to use the store's root."""
    genesis = args.genesis_hash
    if genesis is None and args.devnet is not None:
        genesis = read_manifest(args.devnet).get("genesisHash")
    genesis_hash = None if genesis is None else parse_hash(genesis, "--genesis-hash")
    if args.checkpoint:
        number, _, block_hash = args.checkpoint.partition(":")
        if not number.isdigit():
            raise UsageError("--checkpoint is NUMBER:HASH, e.g. 1200:0xab…")
        return int(number), parse_hash(block_hash, "--checkpoint hash"), genesis_hash
    if genesis_hash is not None:
        return 0, genesis_hash, genesis_hash
    return None


def default_store(root_hash: bytes) -> Path:
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "polder" / "light" / f"{root_hash.hex()[:16]}.sqlite"


def open_client(args: argparse.Namespace) -> LightClient:
    providers = parse_providers(args)
    trust = resolve_trust(args)
    if args.store is None and trust is None:
        raise UsageError(
            "no trust root. Pass --genesis-hash (published by the municipalities)"
            " or --checkpoint NUMBER:HASH, or --store of an earlier run"
        )
    store = HeaderStore(args.store or default_store(trust[1] if trust else b""))
    client = LightClient(providers, store, min_agree=args.min_agree, max_head_age=args.max_head_age)
    if trust is not None:
        client.trust(*trust)
    return client


def describe_faults(faults: tuple[Fault, ...] | Any) -> list[str]:
    if not faults:
        return ["  faulty nodes  none"]
    lines = ["  faulty nodes"]
    for fault in faults:
        if isinstance(fault, Fault):
            lines.append(f"    - {fault.provider}: {fault.kind}: {fault.message}")
    return lines


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Verify what ``args`` asks; return the verdict as JSON-ready data."""
    client = open_client(args)
    if args.what == "receipt":
        verified = verify_receipt(load_receipt(args.file), client)
        tx = verified.transaction
        return {
            "verdict": "VERIFIED",
            "what": f"{verified.receipt.kind} receipt {args.file}",
            "block": tx.block.number,
            "blockHash": "0x" + tx.block.hash.hex(),
            "checks": list(verified.checks),
            "agreed": list(tx.agreed),
            "faults": tx.faults,
        }
    if args.what == "tx":
        result = client.verify_transaction(parse_hash(args.tx_hash, "transaction hash"))
        receipt = result.proven.receipt
        return {
            "verdict": "VERIFIED",
            "what": f"transaction 0x{result.tx_hash.hex()}",
            "block": result.block.number,
            "blockHash": "0x" + result.block.hash.hex(),
            "index": result.proven.index,
            "status": "success" if receipt.succeeded else "failed",
            "logs": len(receipt.logs),
            "agreed": list(result.agreed),
            "faults": result.faults,
        }
    if args.what == "account":
        address = bytes.fromhex(args.address.removeprefix("0x"))
        slots = [int(slot, 0) for slot in args.slot]
        account = client.verify_account(address, args.block, slots)
        return {
            "verdict": "VERIFIED",
            "what": f"account 0x{address.hex()}",
            "block": account.block.number,
            "blockHash": "0x" + account.block.hash.hex(),
            "nonce": account.account.nonce,
            "balance": account.account.balance,
            "storage": {hex(k): hex(v) for k, v in account.storage.items()},
            "agreed": list(account.agreed),
            "faults": account.faults,
        }
    head = client.verify_head()
    return {
        "verdict": "VERIFIED",
        "what": "head",
        "block": head.block.number,
        "blockHash": "0x" + head.block.hash.hex(),
        "agreed": list(head.agreed),
        "faults": head.faults,
    }


def print_verdict(verdict: dict[str, Any], as_json: bool) -> None:
    faults = verdict.pop("faults", ())
    if as_json:
        verdict["faults"] = [fault.__dict__ for fault in faults if isinstance(fault, Fault)]
        print(json.dumps(verdict, indent=2))
        return
    print(f"{verdict.pop('verdict')}  {verdict.pop('what')}")
    checks = verdict.pop("checks", [])
    for key, value in verdict.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        print(f"  {key:<13} {shown}")
    for check in checks:
        print(f"  ✓ {check}")
    print("\n".join(describe_faults(faults)))


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        print_verdict(run(args), args.json)
    except UsageError as exc:
        print(f"polder verify: {exc}", file=sys.stderr)
        return 2
    except PolderError as exc:
        if args.json:
            print(
                json.dumps(
                    {
                        "verdict": "NOT VERIFIED",
                        "error": type(exc).__name__,
                        "code": exc.code,
                        "message": exc.message,
                    },
                    indent=2,
                )
            )
        else:
            print(f"NOT VERIFIED  {type(exc).__name__}: {exc.data.get('summary', exc.message)}")
            print("\n".join(describe_faults(exc.data.get("faults", ()))))
        return 1
    return 0
