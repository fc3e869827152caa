"""Merkle-Patricia proof checks shared by the node's tests and the light client.

A light client holds only verified headers. Everything else it learns — that a
transaction is in a block, what its receipt says, an account's balance or a
storage slot — it checks against a root in such a header with the functions
here (docs/spec/light-client.md, ``[LC-PROOF-…]``). They take bytes and
return decoded values or raise :class:`InvalidProof`; they never trust a
field the prover sent beside the proof.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import rlp
from eth_hash.auto import keccak
from trie import HexaryTrie
from trie.exceptions import BadTrieProof, MissingTrieNode

from consensus.errors import InvalidProof

MAX_PROOF_NODES = 64
"""A path in a 256-bit-keyed trie has at most 64 nodes (one per nibble)."""
MAX_PROOF_BYTES = 64 * 1024
"""Upper bound on one proof's encoded size; bounds an untrusted prover's cost."""
BLANK_ROOT = keccak(rlp.encode(b""))
EMPTY_CODE_HASH = keccak(b"")


@dataclass(frozen=True)
class Log:
    """One event log of a receipt."""

    address: bytes
    """20-byte address of the contract that emitted it."""
    topics: tuple[bytes, ...]
    """Up to four 32-byte topics."""
    data: bytes
    """The non-indexed payload."""


@dataclass(frozen=True)
class Receipt:
    """A transaction receipt decoded from the receipts trie."""

    type: int
    """EIP-2718 transaction type (0 for legacy)."""
    succeeded: bool
    """Status 1: the transaction executed without reverting."""
    cumulative_gas_used: int
    """Gas used by this and all earlier transactions of the block."""
    bloom: bytes
    """256-byte log bloom."""
    logs: tuple[Log, ...]
    """The logs, in order."""


@dataclass(frozen=True)
class Account:
    """An account as the state trie holds it (EIP-1186)."""

    nonce: int
    balance: int
    storage_root: bytes
    """Root of the account's storage trie."""
    code_hash: bytes
    """keccak256 of the account's code."""


EMPTY_ACCOUNT = Account(nonce=0, balance=0, storage_root=BLANK_ROOT, code_hash=EMPTY_CODE_HASH)


def compute_proven_value(root: bytes, key: bytes, proof: Sequence[bytes]) -> bytes:
    """Return the value stored at ``key`` in the trie with ``root``; ``b""`` if absent.

    ``proof`` is the list of RLP-encoded trie nodes on the path to ``key``, as
    ``eth_getProof`` returns them. [LC-PROOF-TRIE.1] Only nodes reached by
    hash from ``root`` are used; a missing or altered node raises
    :class:`InvalidProof`. An empty result is itself proven: the path ends
    before ``key``.
    """
    if len(proof) > MAX_PROOF_NODES or sum(len(node) for node in proof) > MAX_PROOF_BYTES:
        raise InvalidProof(f"proof of {len(proof)} nodes is over the bound of a trie path")
    nodes = {keccak(node): bytes(node) for node in proof}
    try:
        value: bytes = HexaryTrie(nodes, root).get(key)
    except (MissingTrieNode, BadTrieProof) as exc:
        raise InvalidProof(f"proof does not lead from root 0x{root.hex()} to the key") from exc
    except (rlp.exceptions.DecodingError, ValueError, TypeError, IndexError) as exc:
        raise InvalidProof(f"proof holds a malformed trie node: {exc}") from exc
    return value


def compute_index_key(index: int) -> bytes:
    """Return the trie key of the ``index``-th transaction or receipt of a block."""
    key: bytes = rlp.encode(index)
    return key


def compute_transaction_hash(encoded: bytes) -> bytes:
    """Return a transaction's hash from its trie encoding (typed or legacy)."""
    return keccak(encoded)


def decode_receipt(encoded: bytes) -> Receipt:
    """Decode a receipt as the receipts trie holds it (EIP-2718 envelope or legacy RLP)."""
    if not encoded:
        raise InvalidProof("receipt is empty")
    receipt_type = 0
    payload = encoded
    if encoded[0] < 0x80:
        receipt_type, payload = encoded[0], encoded[1:]
    try:
        status, cumulative, bloom, logs = rlp.decode(payload)
        decoded_logs = tuple(
            Log(address=address, topics=tuple(topics), data=data) for address, topics, data in logs
        )
    except (rlp.exceptions.DecodingError, ValueError, TypeError) as exc:
        raise InvalidProof(f"receipt does not decode: {exc}") from exc
    if not isinstance(status, bytes) or not isinstance(cumulative, bytes):
        raise InvalidProof("receipt status and gas must be byte strings")
    return Receipt(
        type=receipt_type,
        succeeded=status == b"\x01",
        cumulative_gas_used=int.from_bytes(cumulative, "big"),
        bloom=bloom,
        logs=decoded_logs,
    )


def decode_account(encoded: bytes) -> Account:
    """Decode an account leaf of the state trie; ``b""`` is the empty account."""
    if not encoded:
        return EMPTY_ACCOUNT
    try:
        nonce, balance, storage_root, code_hash = rlp.decode(encoded)
    except (rlp.exceptions.DecodingError, ValueError, TypeError) as exc:
        raise InvalidProof(f"account does not decode: {exc}") from exc
    return Account(
        nonce=int.from_bytes(nonce, "big"),
        balance=int.from_bytes(balance, "big"),
        storage_root=storage_root,
        code_hash=code_hash,
    )


def compute_proven_account(state_root: bytes, address: bytes, proof: Sequence[bytes]) -> Account:
    """Return the account at ``address`` proven against ``state_root`` [LC-PROOF-ACCOUNT.1]."""
    return decode_account(compute_proven_value(state_root, keccak(address), proof))


def compute_proven_storage(storage_root: bytes, slot: int, proof: Sequence[bytes]) -> int:
    """Return the storage value at ``slot`` proven against ``storage_root`` [LC-PROOF-STORAGE.1]."""
    if not 0 <= slot < 2**256:
        raise InvalidProof(f"storage slot {slot} is not a 256-bit word")
    encoded = compute_proven_value(storage_root, keccak(slot.to_bytes(32, "big")), proof)
    if not encoded:
        return 0
    try:
        value = rlp.decode(encoded)
    except rlp.exceptions.DecodingError as exc:
        raise InvalidProof(f"storage value does not decode: {exc}") from exc
    if not isinstance(value, bytes) or len(value) > 32:
        raise InvalidProof("storage value is not a word")
    return int.from_bytes(value, "big")
