"""The QBFT header seal format and the quorum-of-seals check (consensus/seal.py).

Round-trips for the extraData codec, and generate-then-verify for committed
seals: random validator keys and random headers are sealed with
``sign_seal`` and must be accepted by ``validate_committed_seals`` exactly
when a quorum of distinct validators sealed them, and refused with the
specific error otherwise.
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace

import pytest
import rlp
from coincurve import PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from consensus.errors import InvalidBlock, InvalidSeal, QuorumNotReached
from consensus.seal import (
    EXTRA_DATA_INDEX,
    HEADER_FIELD_COUNT,
    MAX_EXTRA_DATA_BYTES,
    MAX_VALIDATORS,
    ExtraData,
    compute_address,
    compute_block_hash,
    compute_quorum,
    compute_seal_digest,
    compute_validators_hash,
    decode_extra_data,
    encode_extra_data,
    get_extra_data,
    recover_seal_signer,
    replace_extra_data,
    sign_seal,
    validate_committed_seals,
)

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

# --- strategies ----------------------------------------------------------------

addresses = st.binary(min_size=20, max_size=20)
rounds = st.integers(min_value=0, max_value=2**32 - 1)
votes = st.one_of(
    st.just(()),
    st.tuples(addresses, st.sampled_from([b"\x00", b"\x01"])),
)
seal_bytes = st.binary(min_size=65, max_size=65)
extras = st.builds(
    ExtraData,
    vanity=st.binary(min_size=32, max_size=32),
    validators=st.lists(addresses, max_size=12).map(tuple),
    vote=votes,
    round=rounds,
    seals=st.lists(seal_bytes, max_size=12).map(tuple),
)
private_keys = st.integers(min_value=1, max_value=SECP256K1_N - 1).map(
    lambda k: k.to_bytes(32, "big")
)
validator_keys = st.lists(private_keys, min_size=1, max_size=10, unique=True)
header_fields = st.lists(st.binary(max_size=40), min_size=21, max_size=21)


def address_of(private_key: bytes) -> bytes:
    return compute_address(PrivateKey(private_key).public_key)


def make_header(
    fields: list[bytes],
    validators: tuple[bytes, ...],
    round_number: int = 0,
    seals: tuple[bytes, ...] = (),
) -> list[bytes]:
    """Random header fields whose extraData is a QBFT extra for ``validators``."""
    extra = ExtraData(
        vanity=compute_validators_hash(validators),
        validators=validators,
        vote=(),
        round=round_number,
        seals=seals,
    )
    return replace_extra_data(fields, extra)


def with_seals(fields: list[bytes], seals: list[bytes]) -> list[bytes]:
    return replace_extra_data(fields, replace(get_extra_data(fields), seals=tuple(seals)))


def with_round(fields: list[bytes], round_number: int) -> list[bytes]:
    return replace_extra_data(fields, replace(get_extra_data(fields), round=round_number))


def seal_with(fields: list[bytes], keys: list[bytes]) -> list[bytes]:
    """Return ``fields`` carrying one committed seal per key, over its own digest."""
    digest = compute_seal_digest(fields)
    return with_seals(fields, [sign_seal(digest, key) for key in keys])


def flip_s(seal: bytes) -> bytes:
    """The other valid signature for the same key and digest: (r, n - s, v ^ 1)."""
    s = int.from_bytes(seal[32:64], "big")
    return seal[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([seal[64] ^ 1])


# --- the extraData codec ---------------------------------------------------------


@given(extras)
def test_extra_data_round_trips(extra: ExtraData) -> None:
    assert decode_extra_data(encode_extra_data(extra)) == extra


@given(st.binary(max_size=300))
def test_decoding_junk_raises_only_invalid_block(raw: bytes) -> None:
    try:
        extra = decode_extra_data(raw)
    except InvalidBlock:
        return
    # Whatever decodes has one encoding only: seals and hashes sign exact bytes.
    assert encode_extra_data(extra) == raw


@given(extras, st.data())
def test_corrupted_extra_data_decodes_canonically_or_raises(
    extra: ExtraData, data: st.DataObject
) -> None:
    raw = bytearray(encode_extra_data(extra))
    index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[index] = data.draw(st.integers(min_value=0, max_value=255))
    try:
        decoded = decode_extra_data(bytes(raw))
    except InvalidBlock:
        return
    assert encode_extra_data(decoded) == bytes(raw)


VANITY = b"\x11" * 32
VALIDATOR = b"\x22" * 20
SEAL = b"\x33" * 65


def good_items() -> list[object]:
    return [VANITY, [VALIDATOR], [], b"\x01", [SEAL]]


def items_with(index: int, value: object) -> bytes:
    items = good_items()
    items[index] = value
    return rlp.encode(items)


def encode_with_non_canonical_round() -> bytes:
    """A QBFT extra whose round 5 is spelt ``0x81 0x05`` instead of ``0x05``."""
    body = rlp.encode(VANITY) + rlp.encode([]) + rlp.encode([]) + b"\x81\x05" + rlp.encode([])
    return bytes([0xC0 + len(body)]) + body


NON_CANONICAL_ROUND = encode_with_non_canonical_round()

MALFORMED_EXTRA_DATA = {
    "empty": b"",
    "legacy 32-byte vanity only": b"\x00" * 32,
    "rlp string": rlp.encode(b"\x01" * 40),
    "empty list": rlp.encode([]),
    "4 items": rlp.encode(good_items()[:4]),
    "6 items": rlp.encode([*good_items(), b""]),
    "truncated": rlp.encode(good_items())[:-1],
    "trailing byte": rlp.encode(good_items()) + b"\x00",
    "non-canonical length prefix": b"\xf8\x03" + rlp.encode([b"", b""])[1:],
    "round 5 as long string": NON_CANONICAL_ROUND,
    "vanity 31 bytes": items_with(0, VANITY[:31]),
    "vanity 33 bytes": items_with(0, VANITY + b"\x00"),
    "vanity is a list": items_with(0, [VANITY]),
    "validators not a list": items_with(1, VALIDATOR),
    "validator 19 bytes": items_with(1, [VALIDATOR[:19]]),
    "validator 21 bytes": items_with(1, [VALIDATOR + b"\x00"]),
    "validator is a list": items_with(1, [[VALIDATOR]]),
    "too many validators": items_with(1, [VALIDATOR] * (MAX_VALIDATORS + 1)),
    "vote not a list": items_with(2, VALIDATOR),
    "vote with 1 item": items_with(2, [VALIDATOR]),
    "vote with 3 items": items_with(2, [VALIDATOR, b"\x01", b"\x01"]),
    "vote address 19 bytes": items_with(2, [VALIDATOR[:19], b"\x01"]),
    "vote type 2": items_with(2, [VALIDATOR, b"\x02"]),
    "vote type empty": items_with(2, [VALIDATOR, b""]),
    "vote type is a list": items_with(2, [VALIDATOR, [b"\x01"]]),
    "round with a leading zero": items_with(3, b"\x00\x01"),
    "round zero as 0x00": items_with(3, b"\x00"),
    "round of 5 bytes": items_with(3, b"\x01\x00\x00\x00\x00"),
    "round is a list": items_with(3, [b"\x01"]),
    "seals not a list": items_with(4, SEAL),
    "seal 64 bytes": items_with(4, [SEAL[:64]]),
    "seal 66 bytes": items_with(4, [SEAL + b"\x00"]),
    "seal is a list": items_with(4, [[SEAL]]),
    "too many seals": items_with(4, [SEAL] * (MAX_VALIDATORS + 1)),
}


@pytest.mark.parametrize("raw", MALFORMED_EXTRA_DATA.values(), ids=MALFORMED_EXTRA_DATA.keys())
def test_malformed_extra_data_is_invalid_block(raw: bytes) -> None:
    with pytest.raises(InvalidBlock):
        decode_extra_data(raw)
    fields = [b""] * HEADER_FIELD_COUNT
    fields[EXTRA_DATA_INDEX] = raw
    with pytest.raises(InvalidBlock):
        validate_committed_seals(fields, [VALIDATOR])
    with pytest.raises(InvalidBlock):
        compute_block_hash(fields)


def encode_nested_lists(depth: int) -> bytes:
    """RLP of ``[[[...[]...]]]`` nested ``depth`` deep, built inside-out."""
    prefixes = []
    length = 1  # the innermost b"\xc0"
    for _ in range(depth):
        if length < 56:
            prefix = bytes([0xC0 + length])
        else:
            size = (length.bit_length() + 7) // 8
            prefix = bytes([0xF7 + size]) + length.to_bytes(size, "big")
        prefixes.append(prefix)
        length += len(prefix)
    return b"".join(reversed(prefixes)) + b"\xc0"


def test_shallow_nesting_is_invalid_block() -> None:
    with pytest.raises(InvalidBlock):
        decode_extra_data(encode_nested_lists(100))


def decode_outcome(raw: bytes) -> str:
    """Name what ``decode_extra_data`` does with ``raw``, without a deep traceback."""
    try:
        decode_extra_data(raw)
    except InvalidBlock:
        return "InvalidBlock"
    except RecursionError:
        return "RecursionError"
    return "decoded"


def test_deeply_nested_extra_data_is_invalid_block() -> None:
    # A light client imports only consensus and runs with Python's default
    # recursion limit, which about 1000 levels (3 KB, within the extraData
    # bound) exhaust. py-evm raises the limit to 100000 when imported, so the
    # limit is set here rather than inherited from other test modules.
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        outcome = decode_outcome(encode_nested_lists(3000))
    finally:
        sys.setrecursionlimit(saved)
    assert outcome == "InvalidBlock"


def test_extra_data_over_the_size_bound_is_invalid_block() -> None:
    fits = encode_extra_data(
        ExtraData(VANITY, (VALIDATOR,) * MAX_VALIDATORS, (), 1, (SEAL,) * MAX_VALIDATORS)
    )
    assert len(fits) <= MAX_EXTRA_DATA_BYTES
    assert decode_extra_data(fits).seals == (SEAL,) * MAX_VALIDATORS
    assert decode_outcome(b"\x00" * (MAX_EXTRA_DATA_BYTES + 1)) == "InvalidBlock"
    assert decode_outcome(encode_nested_lists(MAX_EXTRA_DATA_BYTES)) == "InvalidBlock"


@pytest.mark.parametrize("count", [0, 20, 22])
def test_header_with_wrong_field_count_is_invalid_block(count: int) -> None:
    fields = [b""] * count
    with pytest.raises(InvalidBlock):
        get_extra_data(fields)
    with pytest.raises(InvalidBlock):
        replace_extra_data(fields, decode_extra_data(rlp.encode(good_items())))


# --- generate-then-verify: quorum of committed seals ---------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=validator_keys, fields=header_fields, round_number=rounds, data=st.data())
def test_seals_are_accepted_exactly_at_quorum(
    keys: list[bytes], fields: list[bytes], round_number: int, data: st.DataObject
) -> None:
    validators = tuple(address_of(key) for key in keys)
    header = make_header(fields, validators, round_number)
    signers = data.draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys)))
    signers = data.draw(st.permutations(signers))
    sealed = seal_with(header, signers)
    quorum = compute_quorum(len(validators))
    if len(signers) >= quorum:
        assert validate_committed_seals(sealed, validators) == {address_of(k) for k in signers}
    else:
        with pytest.raises(QuorumNotReached) as info:
            validate_committed_seals(sealed, validators)
        assert info.value.data == {"seals": len(signers), "quorum": quorum}


@settings(max_examples=40, deadline=None)
@given(keys=validator_keys, fields=header_fields, round_number=rounds)
def test_too_few_seals_is_quorum_not_reached(
    keys: list[bytes], fields: list[bytes], round_number: int
) -> None:
    validators = tuple(address_of(key) for key in keys)
    header = make_header(fields, validators, round_number)
    quorum = compute_quorum(len(validators))
    sealed = seal_with(header, keys[: quorum - 1])
    with pytest.raises(QuorumNotReached):
        validate_committed_seals(sealed, validators)


@settings(max_examples=40, deadline=None)
@given(keys=validator_keys, outsider=private_keys, fields=header_fields, data=st.data())
def test_seal_by_a_key_outside_the_set_is_invalid_seal(
    keys: list[bytes], outsider: bytes, fields: list[bytes], data: st.DataObject
) -> None:
    validators = tuple(address_of(key) for key in keys)
    assume(address_of(outsider) not in validators)
    header = make_header(fields, validators)
    quorum = compute_quorum(len(validators))
    signers = [*keys[: quorum - 1], outsider]
    sealed = seal_with(header, data.draw(st.permutations(signers)))
    with pytest.raises(InvalidSeal):
        validate_committed_seals(sealed, validators)


@settings(max_examples=40, deadline=None)
@given(keys=validator_keys, fields=header_fields, data=st.data())
def test_same_validator_sealing_twice_is_invalid_seal(
    keys: list[bytes], fields: list[bytes], data: st.DataObject
) -> None:
    validators = tuple(address_of(key) for key in keys)
    header = make_header(fields, validators)
    quorum = compute_quorum(len(validators))
    digest = compute_seal_digest(header)
    seals = [sign_seal(digest, key) for key in keys[: max(quorum - 1, 1)]]
    original = data.draw(st.sampled_from(seals))
    # The identical bytes again, or the malleated twin (r, n - s, v ^ 1): both
    # recover to the same validator and must not count twice.
    twin = data.draw(st.sampled_from([original, flip_s(original)]))
    assert recover_seal_signer(digest, twin) == recover_seal_signer(digest, original)
    sealed = with_seals(header, data.draw(st.permutations([*seals, twin])))
    with pytest.raises(InvalidSeal):
        validate_committed_seals(sealed, validators)


@settings(max_examples=40, deadline=None)
@given(keys=validator_keys, fields=header_fields, round_number=rounds, data=st.data())
def test_seals_over_another_round_are_refused(
    keys: list[bytes], fields: list[bytes], round_number: int, data: st.DataObject
) -> None:
    validators = tuple(address_of(key) for key in keys)
    other_round = data.draw(rounds.filter(lambda r: r != round_number))
    header = make_header(fields, validators, round_number)
    seals_elsewhere = get_extra_data(seal_with(with_round(header, other_round), keys)).seals
    # Seals made for another round recover to unrelated addresses here.
    with pytest.raises((InvalidSeal, QuorumNotReached)):
        validate_committed_seals(with_seals(header, list(seals_elsewhere)), validators)
    # And one such seal spoils an otherwise valid quorum.
    quorum = compute_quorum(len(validators))
    good = get_extra_data(seal_with(header, keys[1:quorum])).seals
    mixed = with_seals(header, [seals_elsewhere[0], *good])
    with pytest.raises((InvalidSeal, QuorumNotReached)):
        validate_committed_seals(mixed, validators)


@settings(max_examples=40, deadline=None)
@given(
    keys=validator_keys,
    fields=header_fields,
    v=st.integers(min_value=2, max_value=255),
    data=st.data(),
)
def test_seal_with_v_above_one_is_invalid_seal(
    keys: list[bytes], fields: list[bytes], v: int, data: st.DataObject
) -> None:
    validators = tuple(address_of(key) for key in keys)
    header = make_header(fields, validators)
    quorum = compute_quorum(len(validators))
    seals = list(get_extra_data(seal_with(header, keys[:quorum])).seals)
    index = data.draw(st.integers(min_value=0, max_value=quorum - 1))
    seals[index] = seals[index][:64] + bytes([v])
    with pytest.raises(InvalidSeal):
        validate_committed_seals(with_seals(header, seals), validators)
    with pytest.raises(InvalidSeal):
        recover_seal_signer(compute_seal_digest(header), seals[index])


def test_seal_that_recovers_to_no_key_is_invalid_seal() -> None:
    key = (7).to_bytes(32, "big")
    validators = (address_of(key),)
    header = make_header([b""] * HEADER_FIELD_COUNT, validators)
    for junk in (b"\x00" * 65, b"\xff" * 64 + b"\x00"):
        with pytest.raises(InvalidSeal):
            validate_committed_seals(with_seals(header, [junk]), validators)


def test_more_seals_than_validators_is_invalid_seal() -> None:
    keys = [(k + 1).to_bytes(32, "big") for k in range(3)]
    validators = tuple(address_of(key) for key in keys[:2])
    header = seal_with(make_header([b""] * HEADER_FIELD_COUNT, validators), keys)
    with pytest.raises(InvalidSeal):
        validate_committed_seals(header, validators)


def test_empty_validator_set_never_reaches_quorum() -> None:
    header = make_header([b""] * HEADER_FIELD_COUNT, ())
    with pytest.raises(QuorumNotReached):
        validate_committed_seals(header, ())


# --- what the block hash and the seal digest cover -----------------------------------


@settings(max_examples=40, deadline=None)
@given(keys=validator_keys, fields=header_fields, round_number=rounds, other_round=rounds)
def test_block_hash_ignores_seals_and_round(
    keys: list[bytes], fields: list[bytes], round_number: int, other_round: int
) -> None:
    validators = tuple(address_of(key) for key in keys)
    header = make_header(fields, validators, round_number)
    block_hash = compute_block_hash(header)
    assert compute_block_hash(seal_with(header, keys)) == block_hash
    assert compute_block_hash(with_round(header, other_round)) == block_hash
    assert compute_block_hash(seal_with(with_round(header, other_round), keys[:1])) == block_hash
    # With round 0 and no seals, the block hash is the plain keccak of the header.
    assert compute_block_hash(header) == compute_seal_digest(with_round(header, 0))


@settings(max_examples=40, deadline=None)
@given(keys=validator_keys, fields=header_fields, round_number=rounds, other_round=rounds)
def test_seal_digest_covers_round_but_not_seals(
    keys: list[bytes], fields: list[bytes], round_number: int, other_round: int
) -> None:
    validators = tuple(address_of(key) for key in keys)
    header = make_header(fields, validators, round_number)
    digest = compute_seal_digest(header)
    assert compute_seal_digest(seal_with(header, keys)) == digest
    moved = compute_seal_digest(with_round(header, other_round))
    assert (moved == digest) == (other_round == round_number)


@given(fields=header_fields, index=st.integers(min_value=0, max_value=20), extra=st.binary())
def test_block_hash_covers_every_other_field(fields: list[bytes], index: int, extra: bytes) -> None:
    header = make_header(fields, (VALIDATOR,))
    changed = list(header)
    if index == EXTRA_DATA_INDEX:
        # The vanity commits to the next validator set, so it is covered.
        changed = replace_extra_data(header, replace(get_extra_data(header), vanity=b"\x00" * 32))
    else:
        changed[index] = header[index] + b"\x01" + extra
    assert compute_block_hash(changed) != compute_block_hash(header)


# --- quorum size ---------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 11))
def test_quorum_is_ceil_two_thirds(n: int) -> None:
    assert compute_quorum(n) == math.ceil(2 * n / 3)


def test_quorum_tolerates_f_faults_of_3f_plus_1() -> None:
    for n in range(1, MAX_VALIDATORS + 1):
        quorum = compute_quorum(n)
        faulty = (n - 1) // 3
        # Liveness: the honest validators alone reach a quorum.
        assert quorum <= n - faulty, n
        # Safety: any two quorums share more than f validators, so an honest one.
        assert 2 * quorum - n > faulty, n
        if n % 3 == 1:
            assert quorum == 2 * faulty + 1, n


@pytest.mark.parametrize("n", [0, -1])
def test_quorum_of_no_validators_is_refused(n: int) -> None:
    with pytest.raises(QuorumNotReached):
        compute_quorum(n)
