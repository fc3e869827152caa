"""Test support for the light client: a synthetic sealed chain and a real JSON-RPC server.

:class:`SyntheticChain` makes real headers (21 RLP fields, QBFT extraData,
secp256k1 seals by generated keys) with real transaction and receipt tries,
and can change its validator set at a chosen height. :class:`RpcServer` serves
any ``method -> function`` table over HTTP on 127.0.0.1, so the light client
talks to it exactly as to a node. Tests use them to build honest and lying
providers.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import rlp
from coincurve import PrivateKey
from eth_hash.auto import keccak
from trie import HexaryTrie

from consensus.seal import (
    EXTRA_DATA_INDEX,
    HEADER_FIELD_COUNT,
    ExtraData,
    compute_address,
    compute_block_hash,
    compute_quorum,
    compute_seal_digest,
    compute_validators_hash,
    encode_extra_data,
    get_extra_data,
    sign_seal,
)

ZERO32 = b"\x00" * 32
BLANK_ROOT = keccak(rlp.encode(b""))


def make_keys(count: int) -> list[bytes]:
    return [os.urandom(32) for _ in range(count)]


def address_of(key: bytes) -> bytes:
    return compute_address(PrivateKey(key).public_key)


def hexed(value: bytes) -> str:
    return "0x" + value.hex()


@dataclass
class Block:
    """One synthetic block: its header fields and what its tries hold."""

    fields: list[bytes]
    transactions: list[bytes] = field(default_factory=list)
    receipts: list[bytes] = field(default_factory=list)

    @property
    def number(self) -> int:
        return int.from_bytes(self.fields[8], "big")

    @property
    def hash(self) -> bytes:
        return compute_block_hash(self.fields)


def make_trie(values: Sequence[bytes]) -> HexaryTrie:
    trie = HexaryTrie({})
    for index, value in enumerate(values):
        trie[rlp.encode(index)] = value
    return trie


def make_receipt(logs: int = 1) -> bytes:
    """A type-2 receipt with ``logs`` logs, as the receipts trie holds it."""
    entries = [[os.urandom(20), [os.urandom(32)], os.urandom(40)] for _ in range(logs)]
    return b"\x02" + rlp.encode([b"\x01", (21_000).to_bytes(3, "big"), b"\x00" * 256, entries])


def make_transaction(chain_id: int = 1337) -> bytes:
    """A type-2 transaction envelope (the signature is filler; only the hash matters)."""
    body = [chain_id, 0, 0, 0, 100_000, os.urandom(20), 0, os.urandom(36), [], 0, 1, 1]
    return b"\x02" + rlp.encode(body)


def seal(fields: list[bytes], keys: Sequence[bytes]) -> list[bytes]:
    """Return ``fields`` with committed seals by ``keys`` in its extraData."""
    extra = decode_extra(fields)
    digest = compute_seal_digest(fields)
    sealed = replace(extra, seals=tuple(sign_seal(digest, key) for key in keys))
    copied = list(fields)
    copied[EXTRA_DATA_INDEX] = encode_extra_data(sealed)
    return copied


def decode_extra(fields: Sequence[bytes]) -> ExtraData:
    return get_extra_data(fields)


@dataclass
class SyntheticChain:
    """A sealed chain whose validator set may change at chosen heights."""

    keys: list[bytes]
    """The keys of the set in force at the head."""
    blocks: list[Block] = field(default_factory=list)
    changes: list[int] = field(default_factory=list)
    """Heights whose header commits to a new next set."""
    timestamp: int = 1_767_225_600
    page_size: int = 64
    """Most changes one polder_getValidatorChanges answer holds, as on a node."""

    def __post_init__(self) -> None:
        self.blocks.append(self.make_block(0, self.keys, self.keys, sealers=[]))

    @property
    def validators(self) -> list[bytes]:
        return [address_of(key) for key in self.keys]

    def make_block(
        self,
        number: int,
        keys: Sequence[bytes],
        next_keys: Sequence[bytes],
        sealers: Sequence[bytes] | None = None,
        transactions: Sequence[bytes] = (),
        receipts: Sequence[bytes] = (),
        salt: bytes = b"",
    ) -> Block:
        validators = [address_of(key) for key in keys]
        extra = ExtraData(
            vanity=compute_validators_hash(address_of(key) for key in next_keys),
            validators=tuple(validators),
            vote=(),
            round=0,
            seals=(),
        )
        parent = self.blocks[-1].hash if self.blocks else ZERO32
        fields: list[bytes] = [b""] * HEADER_FIELD_COUNT
        fields[0] = parent
        fields[1] = keccak(rlp.encode([]))
        fields[2] = validators[0]
        fields[3] = keccak(b"state" + number.to_bytes(8, "big") + salt)
        fields[4] = make_trie(transactions).root_hash
        fields[5] = make_trie(receipts).root_hash
        fields[6] = b"\x00" * 256
        fields[8] = rlp.sedes.big_endian_int.serialize(number)
        fields[9] = (30_000_000).to_bytes(4, "big")
        fields[11] = (self.timestamp + number).to_bytes(8, "big")
        fields[12] = encode_extra_data(extra)
        fields[13] = ZERO32
        fields[14] = b"\x00" * 8
        fields[16] = BLANK_ROOT
        fields[19] = ZERO32
        fields[20] = keccak(b"")
        chosen = keys[: compute_quorum(len(keys))] if sealers is None else sealers
        return Block(seal(fields, chosen), list(transactions), list(receipts))

    def extend(self, count: int, transactions: int = 0) -> None:
        """Append ``count`` blocks sealed by a quorum of the current set."""
        for _ in range(count):
            number = len(self.blocks)
            txs = [make_transaction() for _ in range(transactions)]
            receipts = [make_receipt() for _ in txs]
            self.blocks.append(self.make_block(number, self.keys, self.keys, None, txs, receipts))

    def change_set(self, new_keys: list[bytes]) -> None:
        """Append a change header (sealed by the old set) committing to ``new_keys``."""
        number = len(self.blocks)
        self.blocks.append(self.make_block(number, self.keys, new_keys))
        self.changes.append(number)
        self.keys = new_keys

    # -- what a node would answer -----------------------------------------------------

    def light_block(self, block: Block) -> dict[str, Any]:
        return {
            "number": hex(block.number),
            "hash": hexed(block.hash),
            "header": hexed(rlp.encode(block.fields)),
        }

    def get_light_block(self, tag: str) -> dict[str, Any] | None:
        if tag == "latest":
            return self.light_block(self.blocks[-1])
        number = int(tag, 16)
        return self.light_block(self.blocks[number]) if number < len(self.blocks) else None

    def find_transaction(self, tx_hash: bytes) -> tuple[Block, int] | None:
        for block in self.blocks:
            for index, tx in enumerate(block.transactions):
                if keccak(tx) == tx_hash:
                    return block, index
        return None

    def get_transaction_proof(self, tx_hash: str) -> dict[str, Any] | None:
        found = self.find_transaction(bytes.fromhex(tx_hash[2:]))
        if found is None:
            return None
        block, index = found
        key = rlp.encode(index)
        tx_trie, receipt_trie = make_trie(block.transactions), make_trie(block.receipts)
        return {
            "transactionHash": tx_hash,
            "blockNumber": hex(block.number),
            "blockHash": hexed(block.hash),
            "transactionIndex": hex(index),
            "lightBlock": self.light_block(block),
            "transaction": hexed(block.transactions[index]),
            "transactionProof": [hexed(rlp.encode(n)) for n in tx_trie.get_proof(key)],
            "receipt": hexed(block.receipts[index]),
            "receiptProof": [hexed(rlp.encode(n)) for n in receipt_trie.get_proof(key)],
        }

    def get_validator_changes(self, first: str, last: str = "latest") -> dict[str, Any]:
        low = int(first, 16)
        high = len(self.blocks) - 1 if last == "latest" else int(last, 16)
        heights = [h for h in self.changes if low <= h <= high]
        if len(heights) > self.page_size:
            heights = heights[: self.page_size]
            high = heights[-1]
        return {
            "fromBlock": hex(low),
            "toBlock": hex(high),
            "changes": [
                {"number": hex(h), "lightBlock": self.light_block(self.blocks[h])} for h in heights
            ],
        }

    def methods(self) -> dict[str, Callable[..., Any]]:
        return {
            "polder_getLightBlock": self.get_light_block,
            "polder_getTransactionProof": self.get_transaction_proof,
            "polder_getValidatorChanges": self.get_validator_changes,
        }


class RpcServer:
    """A JSON-RPC server on 127.0.0.1 in a thread, answering from a method table."""

    def __init__(self, methods: dict[str, Callable[..., Any]]) -> None:
        self.methods = methods
        self.calls: list[str] = []
        handler = self._make_handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> RpcServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        method = request.get("method", "")
        self.calls.append(method)
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request.get("id")}
        function = self.methods.get(method)
        if function is None:
            reply["error"] = {"code": -32601, "message": f"method {method} not found"}
            return reply
        try:
            reply["result"] = function(*request.get("params", []))
        except Exception as exc:
            reply["error"] = {"code": -32000, "message": f"{type(exc).__name__}: {exc}"}
        return reply

    def _make_handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.dumps(server.answer(json.loads(self.rfile.read(length)))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                del args

        return Handler
