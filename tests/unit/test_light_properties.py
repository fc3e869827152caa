"""Generate-then-verify properties of the light client's proof and seal checks."""

from __future__ import annotations

import pytest
import rlp
from eth_hash.auto import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trie import HexaryTrie

from clients.light.verify import decode_light_block, validate_light_block
from consensus.errors import InvalidBlock, InvalidProof, InvalidSeal, QuorumNotReached
from consensus.proofs import compute_proven_storage, compute_proven_value, decode_receipt
from consensus.seal import compute_block_hash, compute_quorum, compute_validators_hash
from tests.light_tools import SyntheticChain, address_of, make_keys, make_receipt, seal

keys32 = st.binary(min_size=32, max_size=32)
values = st.binary(min_size=1, max_size=120)
tries = st.dictionaries(keys32, values, min_size=1, max_size=40)


def build(entries: dict[bytes, bytes]) -> HexaryTrie:
    trie = HexaryTrie({})
    for key, value in entries.items():
        trie[key] = value
    return trie


def encoded_proof(trie: HexaryTrie, key: bytes) -> list[bytes]:
    return [rlp.encode(node) for node in trie.get_proof(key)]


@settings(max_examples=60, deadline=None)
@given(tries, st.data())
def test_every_member_proves_its_value(entries: dict[bytes, bytes], data: st.DataObject) -> None:
    """[LC-PROOF-TRIE.1]"""
    trie = build(entries)
    key = data.draw(st.sampled_from(sorted(entries)))
    assert compute_proven_value(trie.root_hash, key, encoded_proof(trie, key)) == entries[key]


@settings(max_examples=60, deadline=None)
@given(tries, keys32)
def test_absence_is_proven_too(entries: dict[bytes, bytes], key: bytes) -> None:
    trie = build(entries)
    expected = entries.get(key, b"")
    assert compute_proven_value(trie.root_hash, key, encoded_proof(trie, key)) == expected


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tries, st.data())
def test_any_tampered_or_missing_node_is_refused(
    entries: dict[bytes, bytes], data: st.DataObject
) -> None:
    trie = build(entries)
    key = data.draw(st.sampled_from(sorted(entries)))
    proof = encoded_proof(trie, key)
    position = data.draw(st.integers(0, len(proof) - 1))
    node = bytearray(proof[position])
    offset = data.draw(st.integers(0, len(node) - 1))
    node[offset] ^= data.draw(st.integers(1, 255))
    tampered = [*proof[:position], bytes(node), *proof[position + 1 :]]
    try:
        proven = compute_proven_value(trie.root_hash, key, tampered)
    except InvalidProof:
        return
    # a changed node has another hash, so only a node the path never used may change
    raise AssertionError(f"tampered proof still proved {proven!r}")


@settings(max_examples=40, deadline=None)
@given(tries, st.data())
def test_dropping_a_node_is_refused(entries: dict[bytes, bytes], data: st.DataObject) -> None:
    trie = build(entries)
    key = data.draw(st.sampled_from(sorted(entries)))
    proof = encoded_proof(trie, key)
    position = data.draw(st.integers(0, len(proof) - 1))
    try:
        compute_proven_value(trie.root_hash, key, proof[:position] + proof[position + 1 :])
    except InvalidProof:
        return
    raise AssertionError("a proof with a node missing verified")


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**256 - 1), st.integers(1, 2**256 - 1))
def test_storage_words_round_trip(slot: int, value: int) -> None:
    trie = HexaryTrie({})
    key = keccak(slot.to_bytes(32, "big"))
    trie[key] = rlp.encode(value)
    proof = [rlp.encode(node) for node in trie.get_proof(key)]
    assert compute_proven_storage(trie.root_hash, slot, proof) == value


def test_receipts_decode_with_their_logs() -> None:
    receipt = decode_receipt(make_receipt(logs=3))
    assert receipt.type == 2
    assert receipt.succeeded
    assert len(receipt.logs) == 3
    for junk in (b"", b"\x02", b"\x02\xc0"):
        try:
            decode_receipt(junk)
        except InvalidProof:
            continue
        raise AssertionError(f"{junk!r} decoded as a receipt")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 10), st.data())
def test_headers_verify_exactly_at_quorum(size: int, data: st.DataObject) -> None:
    """[LC-SEAL-QUORUM.1] a quorum of distinct members verifies; anything less does not."""
    keys = make_keys(size)
    chain = SyntheticChain(keys)
    committed = compute_validators_hash(address_of(k) for k in keys)
    quorum = compute_quorum(size)
    count = data.draw(st.integers(0, size))
    signers = data.draw(st.permutations(keys))[:count]
    block = chain.make_block(1, keys, keys, sealers=signers)
    light = decode_light_block(chain.light_block(block))
    if count >= quorum:
        assert validate_light_block(light, committed) == {address_of(k) for k in signers}
        return
    try:
        validate_light_block(light, committed)
    except QuorumNotReached:
        return
    raise AssertionError(f"{count} seals of {size} verified")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 7), st.integers(0, 20), st.data())
def test_any_changed_header_field_breaks_the_seals(
    size: int, field: int, data: st.DataObject
) -> None:
    """[LC-SEAL-QUORUM.1] seals cover every field but the seals themselves."""
    if field == 12:
        field = 11
    keys = make_keys(size)
    chain = SyntheticChain(keys)
    block = chain.make_block(1, keys, keys)
    fields = list(block.fields)
    fields[field] = fields[field] + data.draw(st.binary(min_size=1, max_size=4))
    light = decode_light_block(
        {
            "number": hex(int.from_bytes(fields[8], "big")),
            "hash": "0x" + compute_block_hash(fields).hex(),
            "header": "0x" + rlp.encode(fields).hex(),
        }
    )
    committed = compute_validators_hash(address_of(k) for k in keys)
    try:
        validate_light_block(light, committed)
    except (InvalidSeal, QuorumNotReached):
        return
    raise AssertionError(f"changing header field {field} kept the seals valid")


def test_outsider_and_duplicate_seals_are_refused() -> None:
    keys = make_keys(4)
    chain = SyntheticChain(keys)
    committed = compute_validators_hash(address_of(k) for k in keys)
    outsider = make_keys(1)
    for sealers, error in (
        ([*keys[:2], *outsider], "not in the validator set"),
        ([keys[0], keys[0], keys[1]], "two seals"),
    ):
        block = chain.make_block(1, keys, keys, sealers=sealers)
        with pytest.raises(InvalidSeal, match=error):
            validate_light_block(decode_light_block(chain.light_block(block)), committed)


def test_a_set_the_chain_never_committed_to_is_refused() -> None:
    keys, others = make_keys(4), make_keys(4)
    chain = SyntheticChain(keys)
    block = chain.make_block(1, others, others)
    committed = compute_validators_hash(address_of(k) for k in keys)
    with pytest.raises(InvalidBlock, match="did not commit"):
        validate_light_block(decode_light_block(chain.light_block(block)), committed)


def test_resealing_keeps_the_hash() -> None:
    keys = make_keys(4)
    chain = SyntheticChain(keys)
    block = chain.make_block(1, keys, keys, sealers=keys[:3])
    resealed = seal(block.fields, keys[1:])
    assert (
        decode_light_block(chain.light_block(block)).hash
        == (
            decode_light_block(
                {**chain.light_block(block), "header": "0x" + rlp.encode(resealed).hex()}
            )
        ).hash
    )
