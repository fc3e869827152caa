"""The receipt file a resident keeps: which transaction, on which chain, in which block.

Ballots and voucher payments save one of these; ``polder verify receipt FILE``
checks it through the light client. Format (JSON, docs/spec/light-client.md
[LC-RECEIPT.1])::

    {"polderReceipt": 1, "kind": "transaction" | "ballot" | "payment",
     "chainId": 1337, "genesisHash": "0x…", "transactionHash": "0x…",
     "blockNumber": 12, "blockHash": "0x…", "body": {…kind-specific…}}

Nothing in it is trusted: the verifier re-proves the transaction, and the
block named must be the one the proof leads to.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clients.light.client import LightClient, VerifiedTransaction
from clients.light.verify import compute_transaction_chain_id
from consensus.errors import InvalidParams, InvalidProof

FORMAT_VERSION = 1
KINDS = ("transaction", "ballot", "payment")


@dataclass(frozen=True)
class Receipt:
    """A receipt as saved by a client after its transaction was included."""

    kind: str
    chain_id: int
    genesis_hash: bytes
    tx_hash: bytes
    block_number: int
    block_hash: bytes
    body: dict[str, Any] = field(default_factory=dict)
    """Kind-specific: a ballot's tracking code, a payment's amount and merchant."""


@dataclass(frozen=True)
class VerifiedReceipt:
    """A receipt whose every claim was checked."""

    receipt: Receipt
    transaction: VerifiedTransaction
    checks: tuple[str, ...]
    """What was checked, in order, for the verdict a person reads."""


BodyCheck = Callable[[Receipt, VerifiedTransaction], list[str]]
BODY_CHECKS: dict[str, BodyCheck] = {}
"""Kind-specific checks (ballots, payments) registered by their client modules."""
BODY_CHECK_MODULES = {"ballot": "clients.polls.voter"}
"""Where the check of each kind lives; imported on first use (it registers itself)."""


def encode_receipt(receipt: Receipt) -> dict[str, Any]:
    return {
        "polderReceipt": FORMAT_VERSION,
        "kind": receipt.kind,
        "chainId": receipt.chain_id,
        "genesisHash": "0x" + receipt.genesis_hash.hex(),
        "transactionHash": "0x" + receipt.tx_hash.hex(),
        "blockNumber": receipt.block_number,
        "blockHash": "0x" + receipt.block_hash.hex(),
        "body": receipt.body,
    }


def decode_receipt_file(value: Any) -> Receipt:
    """Decode a receipt; raise :class:`InvalidParams` naming the bad field."""
    if not isinstance(value, Mapping) or value.get("polderReceipt") != FORMAT_VERSION:
        raise InvalidParams(f"not a Polder receipt (expected polderReceipt: {FORMAT_VERSION})")
    kind = value.get("kind")
    if kind not in KINDS:
        raise InvalidParams(f"receipt kind must be one of {', '.join(KINDS)}")
    for name in ("chainId", "blockNumber"):
        if not isinstance(value.get(name), int) or value[name] < 0:
            raise InvalidParams(f"receipt {name} must be a non-negative integer")
    body = value.get("body", {})
    if not isinstance(body, dict):
        raise InvalidParams("receipt body must be a JSON object")
    return Receipt(
        kind=kind,
        chain_id=value["chainId"],
        genesis_hash=decode_hash(value.get("genesisHash"), "genesisHash"),
        tx_hash=decode_hash(value.get("transactionHash"), "transactionHash"),
        block_number=value["blockNumber"],
        block_hash=decode_hash(value.get("blockHash"), "blockHash"),
        body=body,
    )


def decode_hash(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 66:
        raise InvalidParams(f"receipt {name} must be 0x and 64 hex digits")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as exc:
        raise InvalidParams(f"receipt {name} is not hex") from exc


def save_receipt(receipt: Receipt, path: Path) -> None:
    """Write ``receipt`` to ``path`` (atomically: a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(json.dumps(encode_receipt(receipt), indent=2) + "\n")
    scratch.replace(path)


def load_receipt(path: Path) -> Receipt:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidParams(f"cannot read receipt {path}: {exc}") from exc
    return decode_receipt_file(value)


def get_body_check(kind: str) -> BodyCheck:
    """Return the check of a receipt kind; refuse a kind this client cannot check."""
    if kind not in BODY_CHECKS and kind in BODY_CHECK_MODULES:
        importlib.import_module(BODY_CHECK_MODULES[kind])
    if kind not in BODY_CHECKS:
        raise InvalidProof(
            f"this client cannot check {kind} receipts yet; the transaction alone is not enough"
        )
    return BODY_CHECKS[kind]


def verify_receipt(receipt: Receipt, client: LightClient) -> VerifiedReceipt:
    """Check every claim of ``receipt`` through ``client`` ([LC-RECEIPT.2]).

    The chain is the one the client trusts; the transaction is proven with
    its receipt in a confirmed block, which is the block the receipt names;
    it succeeded and was signed for the receipt's chain id; then the
    kind-specific checks run.
    """
    genesis = client.get_genesis_hash()
    if genesis != receipt.genesis_hash:
        raise InvalidProof(
            f"the receipt is for chain 0x{receipt.genesis_hash.hex()}, but the trusted genesis"
            f" is 0x{genesis.hex()}"
        )
    checks = [f"chain: genesis 0x{genesis.hex()[:16]}… is the trusted one"]
    verified = client.verify_transaction(receipt.tx_hash)
    checks.append(
        f"transaction 0x{receipt.tx_hash.hex()} is proven at index {verified.proven.index}"
        f" of block #{verified.block.number}, sealed by a quorum and served alike by"
        f" {', '.join(verified.agreed)}"
    )
    if (verified.block.number, verified.block.hash) != (receipt.block_number, receipt.block_hash):
        raise InvalidProof(
            f"the receipt names block #{receipt.block_number} 0x{receipt.block_hash.hex()[:16]}…,"
            f" but the transaction is in #{verified.block.number}"
            f" 0x{verified.block.hash.hex()[:16]}…"
        )
    checks.append(f"block #{receipt.block_number} is the one the receipt names")
    if not verified.proven.receipt.succeeded:
        raise InvalidProof("the transaction is included but failed (status 0)")
    checks.append("the transaction succeeded (status 1)")
    if compute_transaction_chain_id(verified.proven.transaction) != receipt.chain_id:
        raise InvalidProof(f"the transaction is not signed for chain id {receipt.chain_id}")
    checks.append(f"it is signed for chain id {receipt.chain_id}")
    if receipt.kind != "transaction":
        checks.extend(get_body_check(receipt.kind)(receipt, verified))
    return VerifiedReceipt(receipt=receipt, transaction=verified, checks=tuple(checks))
