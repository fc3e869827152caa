"""QBFT consensus messages: payloads, signing digests and the wire encoding.

Every message a validator sends is a :class:`SignedMessage`: a payload and a
65-byte secp256k1 signature ``r ‖ s ‖ v`` (the same format as a committed seal,
made by :func:`consensus.seal.sign_seal`) over::

    keccak256(RLP([b"polder-qbft-v1", chain_id, kind, signed_fields]))

``signed_fields`` are the fields that say what the sender votes for. The
*justification* a message carries (the round changes and prepares that justify
a proposal, the prepared block and prepares behind a round change) is not
signed by the sender: each piece is itself a signed message that is checked on
its own, and leaving it out of the digest keeps a proposal from having to embed
a quorum of blocks (Besu's QBFT does the same). Two messages with equal signed
fields are the same vote; two with different signed fields from one validator
for one (kind, height, round) are an equivocation.

Wire format (RLP, canonical; see docs/spec/consensus.md)::

    message = [kind, signed_fields, signature, justification]

This module only checks shapes (lengths, ranges, nesting). Who may send what,
and whether a justification is a quorum, is decided in :mod:`consensus.qbft`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Generic, TypeVar

import rlp
from eth_hash.auto import keccak

from consensus.errors import InvalidSeal, PolderError
from consensus.seal import MAX_VALIDATORS, SEAL_LENGTH, recover_seal_signer, sign_seal

DOMAIN = b"polder-qbft-v1"
"""Domain tag of every signed consensus digest (never a header, never a transaction)."""

HASH_LENGTH = 32
SIGNATURE_LENGTH = 65
MAX_HEIGHT = 2**64 - 1
MAX_ROUND = 2**32 - 1
"""Rounds are stored in extraData as integers below 2**32 ([CHAIN-EXTRA.1])."""
MAX_BLOCK_BYTES = 8 * 1024 * 1024
"""Largest RLP-encoded block a proposal or a round change may carry."""
MAX_MESSAGE_BYTES = MAX_BLOCK_BYTES + 1024 * 1024
"""Largest encoded message: one block plus two justifications of at most
``MAX_VALIDATORS`` small messages each."""
MAX_JUSTIFICATION = MAX_VALIDATORS
"""Most messages one justification list may hold."""


class InvalidMessage(PolderError):
    """A consensus message is malformed, oversized or does not verify."""

    code = -32013


class MessageKind(IntEnum):
    """Message kind codes (Besu's QBFT codes)."""

    PROPOSAL = 0x12
    PREPARE = 0x13
    COMMIT = 0x14
    ROUND_CHANGE = 0x15


@dataclass(frozen=True)
class Proposal:
    """The round's proposer proposes a block (the paper's PRE-PREPARE)."""

    height: int
    """Block number being decided."""
    round: int
    """Round of the proposal (0 first)."""
    block: bytes
    """RLP of the full block; opaque to consensus, checked by the node."""
    block_hash: bytes
    """32-byte block hash (without seals and round, [CHAIN-HASH.1])."""
    round_changes: tuple[SignedMessage[RoundChange], ...] = ()
    """Justification for round > 0: a quorum of round changes for this round,
    without their own justification. Not signed by the proposer."""
    prepares: tuple[SignedMessage[Prepare], ...] = ()
    """Justification of a re-proposal: a quorum of prepares for the highest
    prepared (round, block) among ``round_changes``. Not signed by the proposer."""


@dataclass(frozen=True)
class Prepare:
    """The sender accepted the round's proposal of ``block_hash``."""

    height: int
    """Block number being decided."""
    round: int
    """Round of the proposal."""
    block_hash: bytes
    """Hash of the proposed block."""


@dataclass(frozen=True)
class Commit:
    """The sender saw a quorum of prepares and seals the block for this round."""

    height: int
    """Block number being decided."""
    round: int
    """Round of the prepares (and of the header's extraData round)."""
    block_hash: bytes
    """Hash of the prepared block."""
    commit_seal: bytes
    """65-byte seal over the header's seal digest for this round ([CHAIN-SEAL.1])."""


@dataclass(frozen=True)
class RoundChange:
    """The sender wants to move to ``round``, reporting what it prepared last."""

    height: int
    """Block number being decided."""
    round: int
    """The round the sender moves to."""
    prepared_round: int | None = None
    """Highest round in which the sender saw a quorum of prepares, if any."""
    prepared_block_hash: bytes | None = None
    """Hash of the block prepared in ``prepared_round``."""
    prepared_block: bytes | None = None
    """That block, so the next proposer can re-propose it. Not signed."""
    prepares: tuple[SignedMessage[Prepare], ...] = ()
    """The prepared certificate: a quorum of prepares. Not signed."""


Payload = Proposal | Prepare | Commit | RoundChange
P_co = TypeVar("P_co", bound=Payload, covariant=True)
T = TypeVar("T", bound=Payload)


@dataclass(frozen=True)
class SignedMessage(Generic[P_co]):
    """A payload with its sender's signature over its signing digest."""

    payload: P_co
    """The message."""
    signature: bytes
    """65-byte recoverable secp256k1 signature ``r ‖ s ‖ v`` (v in {0, 1})."""


# --- signing ----------------------------------------------------------------------


def compute_message_kind(payload: Payload) -> MessageKind:
    """Return the kind code of ``payload``."""
    if isinstance(payload, Proposal):
        return MessageKind.PROPOSAL
    if isinstance(payload, Prepare):
        return MessageKind.PREPARE
    if isinstance(payload, Commit):
        return MessageKind.COMMIT
    return MessageKind.ROUND_CHANGE


def compute_signed_fields(payload: Payload) -> list[Any]:
    """Return the RLP structure of the fields the sender signs (no justification)."""
    if isinstance(payload, Proposal):
        return [payload.height, payload.round, payload.block, payload.block_hash]
    if isinstance(payload, Prepare):
        return [payload.height, payload.round, payload.block_hash]
    if isinstance(payload, Commit):
        return [payload.height, payload.round, payload.block_hash, payload.commit_seal]
    prepared: list[Any] = []
    if payload.prepared_round is not None:
        prepared = [payload.prepared_round, payload.prepared_block_hash]
    return [payload.height, payload.round, prepared]


def compute_signing_digest(payload: Payload, chain_id: int) -> bytes:
    """Return what the sender signs: keccak of domain, chain id, kind and signed fields."""
    kind = compute_message_kind(payload)
    return keccak(rlp.encode([DOMAIN, chain_id, int(kind), compute_signed_fields(payload)]))


def is_same_vote(first: Payload, second: Payload) -> bool:
    """Return True if both payloads are of one kind and sign the same fields."""
    return compute_message_kind(first) == compute_message_kind(second) and (
        compute_signed_fields(first) == compute_signed_fields(second)
    )


def sign_message(payload: T, private_key: bytes, chain_id: int) -> SignedMessage[T]:
    """Sign ``payload`` for ``chain_id``; raise :class:`InvalidMessage` if it is malformed."""
    validate_payload(payload)
    digest = compute_signing_digest(payload, chain_id)
    return SignedMessage(payload=payload, signature=sign_seal(digest, private_key))


def recover_sender(signed: SignedMessage[Payload], chain_id: int) -> bytes:
    """Return the address that signed ``signed`` for ``chain_id``.

    A message signed for another chain or another kind recovers to some other
    address, never to its signer's: callers compare against the validator set.
    """
    if len(signed.signature) != SIGNATURE_LENGTH:
        raise InvalidMessage("a message signature is 65 bytes r ‖ s ‖ v")
    try:
        return recover_seal_signer(
            compute_signing_digest(signed.payload, chain_id), signed.signature
        )
    except InvalidSeal as exc:
        raise InvalidMessage(f"message signature does not verify: {exc.message}") from exc


def strip_justification(signed: SignedMessage[RoundChange]) -> SignedMessage[RoundChange]:
    """Return a round change without its (unsigned) prepared block and prepares."""
    payload = signed.payload
    bare = RoundChange(
        height=payload.height,
        round=payload.round,
        prepared_round=payload.prepared_round,
        prepared_block_hash=payload.prepared_block_hash,
    )
    return SignedMessage(payload=bare, signature=signed.signature)


# --- shape checks -----------------------------------------------------------------


def validate_uint(value: object, maximum: int, what: str) -> None:
    """Raise :class:`InvalidMessage` unless ``value`` is an int in [0, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise InvalidMessage(f"{what} must be an integer in [0, {maximum}]")


def validate_length(value: object, length: int, what: str) -> None:
    """Raise :class:`InvalidMessage` unless ``value`` is ``length`` bytes."""
    if not isinstance(value, bytes) or len(value) != length:
        raise InvalidMessage(f"{what} must be {length} bytes")


def validate_block(value: object, what: str) -> None:
    """Raise :class:`InvalidMessage` unless ``value`` is a non-empty bounded block."""
    if not isinstance(value, bytes) or not 0 < len(value) <= MAX_BLOCK_BYTES:
        raise InvalidMessage(f"{what} must be 1 to {MAX_BLOCK_BYTES} bytes")


def validate_justification(messages: Sequence[SignedMessage[Payload]], kind: type) -> None:
    """Raise :class:`InvalidMessage` unless ``messages`` is a bounded list of ``kind``."""
    if len(messages) > MAX_JUSTIFICATION:
        raise InvalidMessage(f"a justification holds at most {MAX_JUSTIFICATION} messages")
    for signed in messages:
        if not isinstance(signed.payload, kind):
            raise InvalidMessage(f"a justification entry must be a {kind.__name__}")
        validate_length(signed.signature, SIGNATURE_LENGTH, "signature")
        validate_payload(signed.payload)


def validate_payload(payload: Payload) -> None:
    """Raise :class:`InvalidMessage` unless ``payload`` has a well-formed shape."""
    validate_uint(payload.height, MAX_HEIGHT, "height")
    validate_uint(payload.round, MAX_ROUND, "round")
    if isinstance(payload, Proposal):
        validate_block(payload.block, "proposal block")
        validate_length(payload.block_hash, HASH_LENGTH, "block hash")
        validate_justification(payload.round_changes, RoundChange)
        validate_justification(payload.prepares, Prepare)
        if any(is_justified(rc.payload) for rc in payload.round_changes):
            raise InvalidMessage("round changes inside a proposal carry no justification")
    elif isinstance(payload, Prepare):
        validate_length(payload.block_hash, HASH_LENGTH, "block hash")
    elif isinstance(payload, Commit):
        validate_length(payload.block_hash, HASH_LENGTH, "block hash")
        validate_length(payload.commit_seal, SEAL_LENGTH, "commit seal")
    else:
        validate_round_change_shape(payload)


def is_justified(payload: RoundChange) -> bool:
    """Return True if a round change carries a prepared block or prepares."""
    return payload.prepared_block is not None or bool(payload.prepares)


def validate_round_change_shape(payload: RoundChange) -> None:
    """Raise :class:`InvalidMessage` unless the prepared fields are all set or all unset."""
    if payload.prepared_round is None:
        if payload.prepared_block_hash is not None or is_justified(payload):
            raise InvalidMessage("a round change without a prepared round carries nothing prepared")
        return
    validate_uint(payload.prepared_round, MAX_ROUND, "prepared round")
    validate_length(payload.prepared_block_hash, HASH_LENGTH, "prepared block hash")
    if payload.prepared_block is not None:
        validate_block(payload.prepared_block, "prepared block")
    validate_justification(payload.prepares, Prepare)


# --- wire encoding ----------------------------------------------------------------


def encode_signed(signed: SignedMessage[Payload]) -> bytes:
    """Encode ``signed`` for the wire; raise :class:`InvalidMessage` if it is malformed."""
    validate_length(signed.signature, SIGNATURE_LENGTH, "signature")
    validate_payload(signed.payload)
    encoded: bytes = rlp.encode(compute_message_items(signed))
    if len(encoded) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"an encoded message is at most {MAX_MESSAGE_BYTES} bytes")
    return encoded


def compute_message_items(signed: SignedMessage[Payload]) -> list[Any]:
    """Return the RLP structure ``[kind, signed_fields, signature, justification]``."""
    payload = signed.payload
    justification: list[Any] = []
    if isinstance(payload, Proposal):
        justification = [
            [compute_message_items(rc) for rc in payload.round_changes],
            [compute_message_items(prepare) for prepare in payload.prepares],
        ]
    elif isinstance(payload, RoundChange):
        block = [] if payload.prepared_block is None else [payload.prepared_block]
        justification = [block, [compute_message_items(prepare) for prepare in payload.prepares]]
    kind = int(compute_message_kind(payload))
    return [kind, compute_signed_fields(payload), signed.signature, justification]


def decode_signed(raw: bytes) -> SignedMessage[Payload]:
    """Decode a wire message; raise :class:`InvalidMessage` on anything malformed."""
    if not isinstance(raw, bytes) or len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"a message is at most {MAX_MESSAGE_BYTES} bytes")
    try:
        items = rlp.decode(raw, strict=True)
    except (rlp.exceptions.DecodingError, RecursionError) as exc:
        raise InvalidMessage(f"message is not canonical RLP: {exc}") from exc
    signed = decode_message_items(items)
    validate_payload(signed.payload)
    return signed


def decode_message_items(
    items: object, expected: MessageKind | None = None
) -> SignedMessage[Payload]:
    """Decode ``[kind, signed_fields, signature, justification]`` (shape checks only).

    With ``expected``, any other kind is refused before its fields are read, so
    nesting is at most proposal → round change → prepare.
    """
    if not isinstance(items, list) or len(items) != 4:
        raise InvalidMessage("a message is [kind, fields, signature, justification]")
    kind_raw, fields, signature, justification = items
    validate_length(signature, SIGNATURE_LENGTH, "signature")
    kind = decode_kind(kind_raw)
    if expected is not None and kind != expected:
        raise InvalidMessage(f"a justification entry must be a {expected.name}")
    if not isinstance(fields, list) or not isinstance(justification, list):
        raise InvalidMessage("message fields and justification must be lists")
    if kind == MessageKind.PROPOSAL:
        return SignedMessage(decode_proposal(fields, justification), signature)
    if justification and kind != MessageKind.ROUND_CHANGE:
        raise InvalidMessage("prepares and commits carry no justification")
    if kind == MessageKind.PREPARE:
        return SignedMessage(decode_prepare(fields), signature)
    if kind == MessageKind.COMMIT:
        return SignedMessage(decode_commit(fields), signature)
    return SignedMessage(decode_round_change(fields, justification), signature)


def decode_kind(raw: object) -> MessageKind:
    """Decode a kind code."""
    code = decode_uint(raw, 0xFF, "message kind")
    try:
        return MessageKind(code)
    except ValueError as exc:
        raise InvalidMessage(f"unknown message kind 0x{code:02x}") from exc


def decode_uint(raw: object, maximum: int, what: str) -> int:
    """Decode a canonical RLP integer (no leading zero byte) no larger than ``maximum``."""
    if not isinstance(raw, bytes) or raw[:1] == b"\x00":
        raise InvalidMessage(f"{what} must be a canonical integer")
    value = int.from_bytes(raw, "big")
    if value > maximum:
        raise InvalidMessage(f"{what} must be at most {maximum}")
    return value


def decode_bytes(raw: object, what: str) -> bytes:
    """Return ``raw`` if it is a byte string (not a list)."""
    if not isinstance(raw, bytes):
        raise InvalidMessage(f"{what} must be a byte string")
    return raw


def decode_fields(fields: list[Any], count: int, what: str) -> tuple[int, int, list[Any]]:
    """Check a field list's length and decode its leading height and round."""
    if len(fields) != count:
        raise InvalidMessage(f"a {what} has {count} signed fields")
    height = decode_uint(fields[0], MAX_HEIGHT, "height")
    return height, decode_uint(fields[1], MAX_ROUND, "round"), fields[2:]


def decode_prepare(fields: list[Any]) -> Prepare:
    """Decode ``[height, round, block_hash]``."""
    height, round_number, rest = decode_fields(fields, 3, "prepare")
    return Prepare(height, round_number, decode_bytes(rest[0], "block hash"))


def decode_commit(fields: list[Any]) -> Commit:
    """Decode ``[height, round, block_hash, commit_seal]``."""
    height, round_number, rest = decode_fields(fields, 4, "commit")
    block_hash = decode_bytes(rest[0], "block hash")
    return Commit(height, round_number, block_hash, decode_bytes(rest[1], "commit seal"))


def decode_proposal(fields: list[Any], justification: list[Any]) -> Proposal:
    """Decode ``[height, round, block, block_hash]`` and ``[[round_change…], [prepare…]]``."""
    height, round_number, rest = decode_fields(fields, 4, "proposal")
    if len(justification) != 2:
        raise InvalidMessage("a proposal's justification is [round_changes, prepares]")
    return Proposal(
        height=height,
        round=round_number,
        block=decode_bytes(rest[0], "block"),
        block_hash=decode_bytes(rest[1], "block hash"),
        round_changes=decode_list(justification[0], RoundChange, MessageKind.ROUND_CHANGE),
        prepares=decode_list(justification[1], Prepare, MessageKind.PREPARE),
    )


def decode_round_change(fields: list[Any], justification: list[Any]) -> RoundChange:
    """Decode ``[height, round, [] | [prepared_round, hash]]``, ``[[] | [block], [prepare…]]``."""
    height, round_number, rest = decode_fields(fields, 3, "round change")
    prepared = rest[0]
    if not isinstance(prepared, list) or len(prepared) not in (0, 2):
        raise InvalidMessage("a round change's prepared field is [] or [round, block_hash]")
    block = justification[0] if len(justification) == 2 else None
    if not isinstance(block, list) or len(block) > 1:
        raise InvalidMessage("a round change's justification is [[] | [block], prepares]")
    return RoundChange(
        height=height,
        round=round_number,
        prepared_round=decode_uint(prepared[0], MAX_ROUND, "prepared round") if prepared else None,
        prepared_block_hash=decode_bytes(prepared[1], "prepared block hash") if prepared else None,
        prepared_block=decode_bytes(block[0], "prepared block") if block else None,
        prepares=decode_list(justification[1], Prepare, MessageKind.PREPARE),
    )


def decode_list(raw: object, kind: type[T], code: MessageKind) -> tuple[SignedMessage[T], ...]:
    """Decode a bounded list of nested messages that must all be ``kind``."""
    if not isinstance(raw, list) or len(raw) > MAX_JUSTIFICATION:
        raise InvalidMessage(f"a justification is a list of at most {MAX_JUSTIFICATION}")
    decoded: list[SignedMessage[T]] = []
    for items in raw:
        signed = decode_message_items(items, code)
        payload = signed.payload
        if not isinstance(payload, kind):
            raise InvalidMessage(f"a justification entry must be a {kind.__name__}")
        decoded.append(SignedMessage(payload=payload, signature=signed.signature))
    return tuple(decoded)
