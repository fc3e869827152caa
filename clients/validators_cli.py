"""``polder validators ...``: municipalities vote validators in and out.

``list`` shows the set in force, a change waiting for its height, and the
proposals with their approvals. ``propose-add``, ``propose-remove`` and
``approve`` send a zero-fee transaction to the ValidatorRegistry with a
validator's key; the node refuses one that would revert and says why (not a
current validator, already approved, expired, ...). Exit status: 0 done,
1 refused or failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.exceptions import ContractLogicError, Web3Exception
from web3.logs import DISCARD

from clients.cliargs import UsageError, choose_node_url, load_account, read_manifest
from clients.web3tools import TransactionRefused, connect, send_call
from contracts.loader import load_artifact
from contracts.registry import REGISTRY_NAME

DEFAULT_REGISTRY = "0x0000000000000000000000000000000000000200"
"""Where genesis places the registry (genesis.json ``contracts``)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polder validators", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    commands = {
        "list": sub.add_parser("list", help="the set, a pending change, the proposals"),
        "propose-add": sub.add_parser("propose-add", help="propose a new validator"),
        "propose-remove": sub.add_parser("propose-remove", help="propose removing one"),
        "approve": sub.add_parser("approve", help="approve a proposal by its number"),
    }
    commands["propose-add"].add_argument("--name", required=True)
    commands["propose-add"].add_argument("--address", required=True)
    commands["propose-add"].add_argument("--endpoint", required=True, help="its P2P ws:// URL")
    commands["propose-remove"].add_argument("--address", required=True)
    commands["approve"].add_argument("proposal", type=int)
    for command in commands.values():
        command.add_argument("--node", help="a node's RPC URL")
        command.add_argument("--key", type=Path, help="the validator's key file (votes only)")
        command.add_argument("--devnet", type=Path, help="a devnet folder (nodes, keys)")
        command.add_argument("--as", dest="member", help="with --devnet: vote as this node")
        command.add_argument("--registry", help=f"registry address (default {DEFAULT_REGISTRY})")
    return parser


def open_registry(args: argparse.Namespace) -> tuple[Web3, Any, dict[str, Any]]:
    manifest = read_manifest(args.devnet)
    w3 = connect(choose_node_url(args.node, manifest, args.member))
    address = args.registry or manifest.get("contracts", {}).get(REGISTRY_NAME, DEFAULT_REGISTRY)
    registry = w3.eth.contract(
        address=Web3.to_checksum_address(address), abi=load_artifact(REGISTRY_NAME).abi
    )
    return w3, registry, manifest


def describe_proposal(registry: Any, number: int, head: int, size: int) -> str:
    (add, validator, name, endpoint, proposer, created, expires, approvals, adopted) = (
        registry.functions.get_proposal(number).call()
    )
    members = set(registry.functions.validators_at(head + 1).call())
    counted = sum(1 for a in approvals if a in members)
    needed = size * 2 // 3 + 1
    what = f"add {name} {validator} ({endpoint})" if add else f"remove {validator}"
    if adopted:
        state = f"adopted with {len(approvals)} approvals"
    elif head >= expires:
        state = f"expired after block {expires} with {counted} of {needed} approvals"
    else:
        state = f"open until block {expires}, {counted} of {needed} approvals"
    return f"  #{number} {what}: {state} (proposed by {proposer} at block {created})"


def show(w3: Web3, registry: Any) -> None:
    head = w3.eth.block_number
    current = registry.functions.validators_at(head + 1).call()
    print(f"validators sealing block {head + 1} ({len(current)}):")
    for member in current:
        name = registry.functions.names(member).call()
        print(f"  {member}{'  ' + name if name else ''}")
    pending_height = registry.functions.pending_height().call()
    if pending_height > head + 1:
        pending = registry.functions.validators_at(pending_height).call()
        print(f"from block {pending_height}: {', '.join(pending)}")
    count = registry.functions.proposal_count().call()
    print(f"proposals ({count}):" if count else "no proposals")
    for number in range(1, count + 1):
        print(describe_proposal(registry, number, head, len(current)))


def send(w3: Web3, registry: Any, account: Any, call: Any) -> None:
    receipt = send_call(w3, account, call)
    tx_hash = bytes(receipt["transactionHash"])
    print(f"sent 0x{tx_hash.hex()} in block {receipt['blockNumber']}")
    for event in registry.events.Proposed().process_receipt(receipt, errors=DISCARD):
        print(f"proposal #{event['args']['id']} (expires after block {event['args']['expires']})")
    for event in registry.events.Approved().process_receipt(receipt, errors=DISCARD):
        args = event["args"]
        print(f"approved #{args['id']}: {args['approvals']} of {args['needed']} needed")
    for event in registry.events.Adopted().process_receipt(receipt, errors=DISCARD):
        args = event["args"]
        verb = "joins" if args["add"] else "leaves"
        print(
            f"ADOPTED #{args['id']}: {args['validator']} {verb} the set at block {args['height']}"
        )


def run(args: argparse.Namespace) -> None:
    w3, registry, manifest = open_registry(args)
    if args.action == "list":
        show(w3, registry)
        return
    account = load_account(args.key, manifest, args.member)
    if args.action == "approve":
        call = registry.functions.approve(args.proposal)
    else:
        try:
            validator = Web3.to_checksum_address(args.address)
        except ValueError as exc:
            raise UsageError(f"--address is not an address: {args.address}") from exc
        if args.action == "propose-add":
            call = registry.functions.propose(True, validator, args.name, args.endpoint)
        else:
            call = registry.functions.propose(False, validator, "", "")
    send(w3, registry, account, call)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except UsageError as exc:
        print(f"polder validators: {exc}", file=sys.stderr)
        return 2
    except TransactionRefused as exc:
        print(f"refused: {exc.message}", file=sys.stderr)
        return 1
    except ContractLogicError as exc:
        print(f"refused: {exc.message or exc}", file=sys.stderr)
        return 1
    except (Web3Exception, OSError) as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    return 0
