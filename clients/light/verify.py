"""The light client's checks, as pure functions over decoded JSON and bytes.

Nothing here does I/O or trusts a provider: every function takes what a
provider sent plus what the client already verified, and returns a verified
value or raises. The quorum-of-seals check is
:func:`consensus.seal.validate_committed_seals`, the very function block import
uses; proofs are checked with :mod:`consensus.proofs`. The cheap checks come
first and the signature recoveries last, so a junk header costs little
(docs/spec/light-client.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import rlp

from consensus.errors import InvalidBlock, InvalidProof
from consensus.proofs import (
    Receipt,
    compute_index_key,
    compute_proven_value,
    compute_transaction_hash,
    decode_receipt,
)
from consensus.seal import (
    HEADER_FIELD_COUNT,
    ExtraData,
    compute_block_hash,
    compute_validators_hash,
    get_extra_data,
    validate_committed_seals,
)

STATE_ROOT, TRANSACTIONS_ROOT, RECEIPTS_ROOT, NUMBER, TIMESTAMP = 3, 4, 5, 8, 11
MAX_HEADER_BYTES = 40 * 1024


@dataclass(frozen=True)
class LightBlock:
    """A header decoded from its RLP, with its hash computed here (not taken from JSON)."""

    number: int
    hash: bytes
    """The block hash [CHAIN-HASH.1], computed from the header."""
    fields: tuple[bytes, ...]
    """The header's 21 RLP fields, seals included."""
    extra: ExtraData
    """The decoded QBFT extraData."""

    @property
    def timestamp(self) -> int:
        return int.from_bytes(self.fields[TIMESTAMP], "big")

    @property
    def state_root(self) -> bytes:
        return self.fields[STATE_ROOT]

    @property
    def transactions_root(self) -> bytes:
        return self.fields[TRANSACTIONS_ROOT]

    @property
    def receipts_root(self) -> bytes:
        return self.fields[RECEIPTS_ROOT]

    @property
    def next_validators_hash(self) -> bytes:
        """What this header commits the next header's validator set to [CHAIN-VANITY.1]."""
        return self.extra.vanity

    def encode(self) -> bytes:
        """Return the header RLP, seals included."""
        encoded: bytes = rlp.encode(list(self.fields))
        return encoded


@dataclass(frozen=True)
class ProvenTransaction:
    """A transaction and its receipt, proven against a verified header."""

    index: int
    """Position in the block."""
    transaction: bytes
    """The transaction's trie encoding (EIP-2718 envelope or legacy RLP)."""
    receipt: Receipt
    """The decoded receipt."""


def decode_hex(value: Any, what: str, length: int | None = None) -> bytes:
    """Decode ``0x`` hex from a provider; raise :class:`InvalidProof` naming ``what``."""
    if not isinstance(value, str) or not value.startswith("0x"):
        raise InvalidProof(f"{what} is not 0x-prefixed hex")
    try:
        decoded = bytes.fromhex(value[2:])
    except ValueError as exc:
        raise InvalidProof(f"{what} is not hex") from exc
    if length is not None and len(decoded) != length:
        raise InvalidProof(f"{what} must be {length} bytes, got {len(decoded)}")
    return decoded


def decode_quantity(value: Any, what: str) -> int:
    """Decode a ``0x`` quantity from a provider."""
    if not isinstance(value, str) or not value.startswith("0x") or len(value) > 66:
        raise InvalidProof(f"{what} is not a 0x quantity")
    try:
        return int(value, 16)
    except ValueError as exc:
        raise InvalidProof(f"{what} is not a 0x quantity") from exc


def decode_hex_list(value: Any, what: str, limit: int = 64) -> list[bytes]:
    """Decode a bounded list of ``0x`` hex strings."""
    if not isinstance(value, list) or len(value) > limit:
        raise InvalidProof(f"{what} must be a list of at most {limit} hex strings")
    return [decode_hex(item, f"{what}[{i}]") for i, item in enumerate(value)]


def decode_light_block(value: Any) -> LightBlock:
    """Decode a ``polder_getLightBlock`` answer from its header RLP alone.

    [LC-HEADER.1] The number and hash are computed from the RLP; a JSON
    ``hash`` or ``number`` that disagrees with them makes the answer invalid.
    """
    if not isinstance(value, Mapping):
        raise InvalidBlock("light block must be a JSON object")
    raw = decode_hex(value.get("header"), "light block header")
    if len(raw) > MAX_HEADER_BYTES:
        raise InvalidBlock(f"header is {len(raw)} bytes, over {MAX_HEADER_BYTES}")
    try:
        fields = rlp.decode(raw)
    except (rlp.exceptions.DecodingError, RecursionError) as exc:
        raise InvalidBlock(f"header is not valid RLP: {type(exc).__name__}") from exc
    if (
        not isinstance(fields, list)
        or len(fields) != HEADER_FIELD_COUNT
        or not all(isinstance(item, bytes) for item in fields)
    ):
        raise InvalidBlock(f"header must be a list of {HEADER_FIELD_COUNT} byte strings")
    extra = get_extra_data(fields)
    block = LightBlock(
        number=int.from_bytes(fields[NUMBER], "big"),
        hash=compute_block_hash(fields),
        fields=tuple(fields),
        extra=extra,
    )
    if decode_hex(value.get("hash"), "light block hash", 32) != block.hash:
        raise InvalidBlock(f"light block #{block.number}: JSON hash is not the header's hash")
    if decode_quantity(value.get("number"), "light block number") != block.number:
        raise InvalidBlock(f"light block #{block.number}: JSON number is not the header's")
    return block


def validate_light_block(block: LightBlock, committed_set_hash: bytes) -> frozenset[bytes]:
    """Check ``block`` against the validator set the trusted chain committed to.

    [LC-SET.1] ``block`` lists a validator set whose hash equals
    ``committed_set_hash`` (the vanity of the last trusted header before it, or
    of the change header that introduced the set); [LC-SEAL-QUORUM.1] seals of
    at least ceil(2n/3) distinct members of that set, checked last. Returns the
    signers.
    """
    if compute_validators_hash(block.extra.validators) != committed_set_hash:
        raise InvalidBlock(
            f"block #{block.number} lists a validator set the trusted chain did not commit to"
            " (a validator-set change is missing, or the header is forged)",
            number=block.number,
        )
    return validate_committed_seals(block.fields, block.extra.validators)


def is_validator_change(block: LightBlock) -> bool:
    """Return whether ``block`` commits its successor to another validator set."""
    return block.extra.vanity != compute_validators_hash(block.extra.validators)


def validate_transaction_proof(
    value: Mapping[str, Any], block: LightBlock, tx_hash: bytes
) -> ProvenTransaction:
    """Check a ``polder_getTransactionProof`` answer against a verified header.

    [LC-PROOF-TX.1] the transaction is in ``block``'s transactions trie at the
    claimed index and hashes to ``tx_hash``; [LC-PROOF-RECEIPT.1] the receipt
    at the same index is in its receipts trie. The encodings sent beside the
    proofs are only compared with what the proofs yield.
    """
    index = decode_quantity(value.get("transactionIndex"), "transactionIndex")
    key = compute_index_key(index)
    transaction = compute_proven_value(
        block.transactions_root,
        key,
        decode_hex_list(value.get("transactionProof"), "transactionProof"),
    )
    if not transaction:
        raise InvalidProof(f"block #{block.number} has no transaction at index {index}")
    if compute_transaction_hash(transaction) != tx_hash:
        raise InvalidProof(
            f"the transaction proven at index {index} of block #{block.number}"
            f" is not 0x{tx_hash.hex()}"
        )
    encoded_receipt = compute_proven_value(
        block.receipts_root, key, decode_hex_list(value.get("receiptProof"), "receiptProof")
    )
    if not encoded_receipt:
        raise InvalidProof(f"block #{block.number} has no receipt at index {index}")
    claimed = (value.get("transaction"), value.get("receipt"))
    if claimed != ("0x" + transaction.hex(), "0x" + encoded_receipt.hex()):
        raise InvalidProof("the transaction or receipt sent is not the one the proofs hold")
    return ProvenTransaction(
        index=index, transaction=transaction, receipt=decode_receipt(encoded_receipt)
    )


def compute_transaction_chain_id(transaction: bytes) -> int | None:
    """Return the EIP-155 chain id a transaction is signed for, if it names one."""
    try:
        if transaction[0] >= 0xC0:  # legacy: v = 35 + 2 * chain_id (+1)
            v = int.from_bytes(rlp.decode(transaction)[6], "big")
            return (v - 35) // 2 if v >= 35 else None
        return int.from_bytes(rlp.decode(transaction[1:])[0], "big")
    except (rlp.exceptions.DecodingError, IndexError, TypeError) as exc:
        raise InvalidProof(f"transaction does not decode: {exc}") from exc
