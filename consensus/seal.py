"""Header seal format and the quorum-of-seals check (QBFT extraData).

This module is the single place where a header's committed seals are checked.
Block import (``node.chain``) and the light client (``clients``) both call
:func:`validate_committed_seals`, so the two can never disagree about which
header is final. It works on a header given as its list of RLP fields, so it
needs neither py-evm nor a node.

Format (Besu QBFT, see docs/spec/chain.md)::

    extraData = RLP([vanity32, [validator20, ...], vote, round, [seal65, ...]])

* ``vanity`` is ``keccak(RLP(sorted next validator set))`` so that a light
  client can follow set changes header by header.
* ``vote`` is ``[]`` or ``[address20, 0x00|0x01]`` (remove / add).
* the block hash is ``keccak(RLP(header))`` with ``round = 0`` and
  ``seals = []``: nodes holding different (equally valid) sets of seals, or
  a block committed in a later round, still agree on the hash.
* a committed seal is a 65-byte secp256k1 signature ``r ‖ s ‖ v`` (v in
  {0, 1}) over ``keccak(RLP(header))`` with ``seals = []`` and the real round.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import rlp
from coincurve import PrivateKey, PublicKey
from eth_hash.auto import keccak

from consensus.errors import InvalidBlock, InvalidSeal, QuorumNotReached

EXTRA_DATA_INDEX = 12
"""Position of ``extraData`` in an Ethereum header's RLP list."""

HEADER_FIELD_COUNT = 21
"""Number of fields of a Prague header (the only header shape of this chain)."""

SEAL_LENGTH = 65
ADDRESS_LENGTH = 20
VANITY_LENGTH = 32
MAX_EXTRA_DATA_BYTES = 32 * 1024
"""Room for 256 validators and 256 seals."""
MAX_VALIDATORS = 256
"""Upper bound on validators and seals a header may carry; bounds the work an
untrusted header can demand of a verifier."""

Address = bytes
HeaderFields = Sequence[bytes]


@dataclass(frozen=True)
class ExtraData:
    """The decoded QBFT ``extraData`` of a header."""

    vanity: bytes
    """32 bytes: ``keccak(RLP(sorted next validator set))``."""
    validators: tuple[Address, ...]
    """The validator set that seals this block, in proposer order."""
    vote: tuple[bytes, ...]
    """``()`` or ``(address, b"\\x00" | b"\\x01")``: a validator-set vote."""
    round: int
    """The consensus round in which the block was committed."""
    seals: tuple[bytes, ...]
    """Committed seals, 65 bytes each."""


def compute_quorum(validator_count: int) -> int:
    """Return ceil(2n/3), the number of seals that finalize a block."""
    if validator_count < 1:
        raise QuorumNotReached("an empty validator set can never reach a quorum")
    return -(-2 * validator_count // 3)


def compute_validators_hash(validators: Iterable[Address]) -> bytes:
    """Return the vanity commitment to a validator set (order-independent)."""
    return keccak(rlp.encode(sorted(validators)))


def encode_extra_data(extra: ExtraData) -> bytes:
    """Encode ``extra`` as the header's ``extraData`` bytes."""
    encoded: bytes = rlp.encode(
        [extra.vanity, list(extra.validators), list(extra.vote), extra.round, list(extra.seals)]
    )
    return encoded


def decode_extra_data(raw: bytes) -> ExtraData:
    """Decode ``extraData``; raise :class:`InvalidBlock` if it is not QBFT-shaped."""
    if len(raw) > MAX_EXTRA_DATA_BYTES:
        raise InvalidBlock(f"extraData is {len(raw)} bytes, over {MAX_EXTRA_DATA_BYTES}")
    try:
        items = rlp.decode(raw)
    except (rlp.exceptions.DecodingError, RecursionError) as exc:
        # deeply nested junk makes the RLP decoder recurse: refuse it, never crash
        raise InvalidBlock(f"extraData is not valid RLP: {type(exc).__name__}") from exc
    if not isinstance(items, list) or len(items) != 5:
        raise InvalidBlock(
            "extraData must be a list of 5 items [vanity, validators, vote, round, seals]"
        )
    vanity, validators, vote, round_bytes, seals = items
    validate_bytes(vanity, VANITY_LENGTH, "vanity")
    validate_bytes_list(validators, ADDRESS_LENGTH, "validator")
    validate_bytes_list(seals, SEAL_LENGTH, "seal")
    if not isinstance(vote, list) or len(vote) not in (0, 2):
        raise InvalidBlock("extraData vote must be [] or [address, 0|1]")
    if vote:
        validate_bytes(vote[0], ADDRESS_LENGTH, "vote address")
        if vote[1] not in (b"\x00", b"\x01"):
            raise InvalidBlock("extraData vote type must be 0x00 (remove) or 0x01 (add)")
    if not isinstance(round_bytes, bytes) or round_bytes[:1] == b"\x00" or len(round_bytes) > 4:
        raise InvalidBlock("extraData round must be a canonical integer below 2**32")
    return ExtraData(
        vanity=vanity,
        validators=tuple(validators),
        vote=tuple(vote),
        round=int.from_bytes(round_bytes, "big"),
        seals=tuple(seals),
    )


def validate_bytes(value: object, length: int, what: str) -> None:
    """Raise :class:`InvalidBlock` unless ``value`` is ``length`` bytes."""
    if not isinstance(value, bytes) or len(value) != length:
        raise InvalidBlock(f"extraData {what} must be {length} bytes")


def validate_bytes_list(values: object, length: int, what: str) -> None:
    """Raise :class:`InvalidBlock` unless ``values`` is a bounded list of ``length``-byte items."""
    if not isinstance(values, list) or len(values) > MAX_VALIDATORS:
        raise InvalidBlock(f"extraData {what}s must be a list of at most {MAX_VALIDATORS}")
    for value in values:
        validate_bytes(value, length, what)


def replace_extra_data(fields: HeaderFields, extra: ExtraData) -> list[bytes]:
    """Return a copy of ``fields`` with ``extraData`` replaced by ``extra``."""
    if len(fields) != HEADER_FIELD_COUNT:
        raise InvalidBlock(f"a header has {HEADER_FIELD_COUNT} fields, got {len(fields)}")
    copied = list(fields)
    copied[EXTRA_DATA_INDEX] = encode_extra_data(extra)
    return copied


def get_extra_data(fields: HeaderFields) -> ExtraData:
    """Decode the ``extraData`` field of a header given as RLP fields."""
    if len(fields) != HEADER_FIELD_COUNT:
        raise InvalidBlock(f"a header has {HEADER_FIELD_COUNT} fields, got {len(fields)}")
    return decode_extra_data(fields[EXTRA_DATA_INDEX])


def validate_validator_set(extra: ExtraData, validators: Sequence[Address]) -> None:
    """Raise :class:`InvalidBlock` unless the header names the set in force.

    [CHAIN-SEAL-SET.1] its ``validators`` equal the trusted set for its height.
    """
    if list(extra.validators) != list(validators):
        raise InvalidBlock(
            "header lists a validator set other than the one in force",
            expected=["0x" + v.hex() for v in validators],
        )


def validate_next_validators(extra: ExtraData, next_validators: Sequence[Address]) -> None:
    """Raise :class:`InvalidBlock` unless the vanity commits to the next set.

    [CHAIN-VANITY.1] the next set is the one the chain's state says seals the
    next block: the current one until governance changes it.
    """
    if extra.vanity != compute_validators_hash(next_validators):
        raise InvalidBlock(
            "header vanity does not commit to the next validator set",
            expected=["0x" + v.hex() for v in next_validators],
        )


def compute_block_hash(fields: HeaderFields) -> bytes:
    """Return the block hash: the header hashed without seals and round."""
    extra = replace(get_extra_data(fields), round=0, seals=())
    return keccak(rlp.encode(replace_extra_data(fields, extra)))


def compute_seal_digest(fields: HeaderFields) -> bytes:
    """Return what a committed seal signs: the header without seals, real round."""
    extra = replace(get_extra_data(fields), seals=())
    return keccak(rlp.encode(replace_extra_data(fields, extra)))


def sign_seal(digest: bytes, private_key: bytes) -> bytes:
    """Sign ``digest`` as a 65-byte committed seal ``r ‖ s ‖ v``."""
    return PrivateKey(private_key).sign_recoverable(digest, hasher=None)


def compute_address(public_key: PublicKey) -> Address:
    """Return the Ethereum address of a secp256k1 public key."""
    return keccak(public_key.format(compressed=False)[1:])[-20:]


def recover_seal_signer(digest: bytes, seal: bytes) -> Address:
    """Return the address that produced ``seal`` over ``digest``."""
    if len(seal) != SEAL_LENGTH or seal[64] > 1:
        raise InvalidSeal("a seal is 65 bytes r ‖ s ‖ v with v in {0, 1}")
    try:
        public_key = PublicKey.from_signature_and_message(seal, digest, hasher=None)
    except Exception as exc:  # coincurve raises bare Exception/ValueError on bad input
        raise InvalidSeal(f"seal does not recover to a public key: {exc}") from exc
    return compute_address(public_key)


def validate_committed_seals(
    fields: HeaderFields, validators: Sequence[Address]
) -> frozenset[Address]:
    """Check the header's seals against a *trusted* validator set.

    Returns the set of validators that sealed it. Raises :class:`InvalidSeal`
    for a malformed seal, a seal by a key outside ``validators`` or a second
    seal by one validator, and :class:`QuorumNotReached` when fewer than
    ``compute_quorum(len(validators))`` distinct validators sealed it. The
    cheap structural checks run before any signature is recovered.
    """
    extra = get_extra_data(fields)
    members = frozenset(validators)
    quorum = compute_quorum(len(members))
    if len(extra.seals) < quorum:
        raise QuorumNotReached(
            f"header has {len(extra.seals)} seals, quorum is {quorum} of {len(members)}",
            seals=len(extra.seals),
            quorum=quorum,
        )
    if len(extra.seals) > len(members):
        raise InvalidSeal(f"header has {len(extra.seals)} seals for {len(members)} validators")
    digest = compute_seal_digest(fields)
    signers: set[Address] = set()
    for seal in extra.seals:
        signer = recover_seal_signer(digest, seal)
        if signer not in members:
            raise InvalidSeal(f"seal by 0x{signer.hex()}, which is not in the validator set")
        if signer in signers:
            raise InvalidSeal(f"two seals by validator 0x{signer.hex()}")
        signers.add(signer)
    return frozenset(signers)
