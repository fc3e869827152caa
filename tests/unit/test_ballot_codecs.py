"""Canonical byte and JSON encodings of every ballot object ([BALLOT-ENC.3]-[BALLOT-ENC.8]).

Round trips for every codec; then decoders fed random and mutated input must
either return an object whose re-encoding is the very input (one encoding per
object) or raise ``InvalidEncoding`` — never another exception.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.ballot.ballot import (
    BallotOpening,
    EncryptedBallot,
    PollParameters,
    encrypt_ballot,
)
from contracts.ballot.elgamal import Ciphertext
from contracts.ballot.errors import InvalidEncoding
from contracts.ballot.group import GROUP_ORDER, INFINITY, encode_point, multiply_generator
from contracts.ballot.proofs import CompactProof, DisjunctiveProof
from contracts.ballot.tally import PartialDecryption, compute_aggregate, compute_partial_decryption
from contracts.ballot.threshold import (
    Dealing,
    DealtShare,
    ElectionKey,
    SecretShare,
    compute_dealt_share,
    compute_election_key,
    compute_secret_share,
    generate_dealing,
)

POLL_ID = b"\x05" * 32
PAIRS = [generate_dealing(POLL_ID, index, 3, 2) for index in (1, 2, 3)]
DEALINGS = [dealing for _, dealing in PAIRS]
ELECTION_KEY = compute_election_key(POLL_ID, 3, 2, DEALINGS)
SHARE = compute_secret_share(
    ELECTION_KEY, DEALINGS, [compute_dealt_share(secret, 1) for secret, _ in PAIRS], 1
)
PARAMS = PollParameters(POLL_ID, ELECTION_KEY.public_key, 4, 0, 2)
BALLOT, OPENING = encrypt_ballot(PARAMS, b"\x0a" * 20, (0, 1, 0, 1))
PARTIAL = compute_partial_decryption(
    POLL_ID, ELECTION_KEY, SHARE, compute_aggregate(PARAMS, [BALLOT])
)

Codec = Any
"""A class with encode/decode/to_json/from_json."""

SAMPLES: list[Codec] = [
    BALLOT,
    OPENING,
    PARAMS,
    BALLOT.selections[0].ciphertext,
    Ciphertext(INFINITY, INFINITY),
    DEALINGS[0],
    compute_dealt_share(PAIRS[0][0], 3),
    ELECTION_KEY,
    SHARE,
    PARTIAL,
]
DECODERS: list[Callable[[bytes], object]] = sorted(
    {type(sample).decode for sample in SAMPLES}, key=lambda decoder: decoder.__qualname__
)

scalars = st.integers(0, GROUP_ORDER - 1)


@st.composite
def ballots(draw: st.DrawFn) -> tuple[PollParameters, EncryptedBallot]:
    """A random valid ballot in a random poll."""
    option_count = draw(st.integers(1, 5))
    maximum = draw(st.integers(0, option_count))
    minimum = draw(st.integers(0, maximum))
    total = draw(st.integers(minimum, maximum))
    choices = tuple(int(index < total) for index in range(option_count))
    params = PollParameters(
        draw(st.binary(min_size=32, max_size=32)),
        ELECTION_KEY.public_key,
        option_count,
        minimum,
        maximum,
    )
    address = draw(st.binary(min_size=20, max_size=20))
    return params, encrypt_ballot(params, address, choices)[0]


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda sample: type(sample).__name__)
def test_every_codec_round_trips_through_bytes_and_json(sample: Codec) -> None:
    """[BALLOT-ENC.3]-[BALLOT-ENC.8] decode(encode(x)) = x; from_json(JSON text of x) = x."""
    assert type(sample).decode(sample.encode()) == sample
    text = json.dumps(sample.to_json())
    assert type(sample).from_json(json.loads(text)) == sample


@settings(max_examples=25, deadline=None)
@given(case=ballots())
def test_random_ballots_round_trip(case: tuple[PollParameters, EncryptedBallot]) -> None:
    """[BALLOT-ENC.4] [BALLOT-ENC.5] Ballots and polls of every shape round-trip."""
    params, ballot = case
    assert EncryptedBallot.decode(ballot.encode()) == ballot
    assert EncryptedBallot.from_json(json.loads(json.dumps(ballot.to_json()))) == ballot
    assert PollParameters.decode(params.encode()) == params
    expected_size = 1 + 32 + 20 + 1 + params.option_count * (66 + 128) + 1
    expected_size += 64 * (params.max_selections - params.min_selections + 1)
    assert len(ballot.encode()) == expected_size


@given(challenges=st.lists(scalars, min_size=1, max_size=6), data=st.data())
def test_proof_codecs_round_trip(challenges: list[int], data: st.DataObject) -> None:
    """[BALLOT-ENC.3] Disjunctive proofs as (c_j ‖ v_j)*, compact proofs as c ‖ v."""
    responses = data.draw(st.lists(scalars, min_size=len(challenges), max_size=len(challenges)))
    proof = DisjunctiveProof(tuple(challenges), tuple(responses))
    assert DisjunctiveProof.from_json(proof.to_json(), 6, "proof") == proof
    assert len(proof.encode()) == 64 * len(challenges)
    compact = CompactProof(challenges[0], responses[0])
    assert CompactProof.from_json(compact.to_json(), "proof") == compact


# --- decoders refuse everything else ------------------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(decoder=st.sampled_from(DECODERS), data=st.binary(max_size=300))
def test_decoders_on_random_bytes_only_raise_invalid_encoding(
    decoder: Callable[[bytes], Any], data: bytes
) -> None:
    """[BALLOT-ENC.1]-[BALLOT-ENC.7] [BALLOT-ERR.1] Garbage → InvalidEncoding or canonical."""
    try:
        decoded = decoder(data)
    except InvalidEncoding:
        return
    assert decoded.encode() == data


@settings(max_examples=300, deadline=None)
@given(
    sample=st.sampled_from(SAMPLES),
    position=st.integers(0, 10_000),
    mutation=st.sampled_from(["flip", "truncate", "extend", "delete"]),
    byte=st.integers(0, 255),
)
def test_decoders_on_mutated_encodings_are_canonical_or_refuse(
    sample: Codec, position: int, mutation: str, byte: int
) -> None:
    """[BALLOT-ENC.1]-[BALLOT-ENC.7] A mutated encoding never decodes to a second form."""
    data = bytearray(sample.encode())
    position %= len(data)
    if mutation == "flip":
        data[position] ^= byte or 1
    elif mutation == "truncate":
        del data[position:]
    elif mutation == "extend":
        data.insert(position, byte)
    else:
        del data[position]
    try:
        decoded = type(sample).decode(bytes(data))
    except InvalidEncoding:
        return
    assert decoded.encode() == bytes(data)
    assert decoded != sample


def _json_values() -> st.SearchStrategy[object]:
    scalars_json = st.one_of(
        st.none(), st.booleans(), st.integers(-5, 300), st.text(max_size=8), st.just("0x")
    )
    return st.recursive(
        scalars_json,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(max_size=12), children, max_size=5),
        ),
        max_leaves=12,
    )


@settings(max_examples=200)
@given(sample=st.sampled_from(SAMPLES), value=_json_values())
def test_json_decoders_on_random_values_only_raise_invalid_encoding(
    sample: Codec, value: object
) -> None:
    """[BALLOT-ENC.8] [BALLOT-ERR.1] Any JSON value → InvalidEncoding or an object."""
    with contextlib.suppress(InvalidEncoding):
        type(sample).from_json(value)


def _mutations(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One-change variants of a JSON object: key dropped, key added, hex altered."""
    variants: list[dict[str, Any]] = [{**document, "extra": 1}]
    for key, value in document.items():
        variants.append({name: item for name, item in document.items() if name != key})
        if isinstance(value, str):
            variants.append({**document, key: value.upper()})
            variants.append({**document, key: value[2:]})
            variants.append({**document, key: value + "00"})
        if isinstance(value, int):
            variants.append({**document, key: True})
            variants.append({**document, key: str(value)})
            variants.append({**document, key: 1000})
    return variants


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda sample: type(sample).__name__)
def test_json_decoders_refuse_every_one_change_variant(sample: Codec) -> None:
    """[BALLOT-ENC.8] Exact keys, lowercase 0x hex of exact length, real integers."""
    for variant in _mutations(sample.to_json()):
        try:
            decoded = type(sample).from_json(variant)
        except InvalidEncoding:
            continue
        assert decoded != sample, variant


def test_json_hex_must_be_lowercase_with_prefix() -> None:
    """[BALLOT-ENC.8] The JSON form of a point is exactly "0x" + 66 lowercase hex digits."""
    document = BALLOT.selections[0].ciphertext.to_json()
    assert isinstance(document["a"], str)
    assert document["a"] == "0x" + encode_point(BALLOT.selections[0].ciphertext.a).hex()
    with pytest.raises(InvalidEncoding, match="lowercase 0x-prefixed hex"):
        Ciphertext.from_json({**document, "a": document["a"].upper().replace("0X", "0x")})
    with pytest.raises(InvalidEncoding, match="expected 33 bytes"):
        Ciphertext.from_json({**document, "a": "0x00"})


def test_structural_limits_are_enforced() -> None:
    """[BALLOT-ENC.4] [BALLOT-ENC.5] Counts outside the format's bounds are refused."""
    encoded = bytearray(BALLOT.encode())
    encoded[53] = 0  # option count 0
    with pytest.raises(InvalidEncoding, match="option count"):
        EncryptedBallot.decode(bytes(encoded))
    encoded[53] = 65  # above MAX_OPTIONS
    with pytest.raises(InvalidEncoding, match="option count"):
        EncryptedBallot.decode(bytes(encoded))
    with pytest.raises(InvalidEncoding, match="min_selections <= max_selections"):
        PollParameters(POLL_ID, ELECTION_KEY.public_key, 2, 2, 1)
    with pytest.raises(InvalidEncoding, match="election key is the point at infinity"):
        PollParameters(POLL_ID, INFINITY, 2, 0, 1)
    with pytest.raises(InvalidEncoding, match="dealer index"):
        Dealing(5, 4, DEALINGS[0].commitments, DEALINGS[0].proof)
    with pytest.raises(InvalidEncoding, match="dealers must be distinct"):
        ElectionKey(3, (2, 1), ELECTION_KEY.commitments)
    with pytest.raises(InvalidEncoding, match="K is the point at infinity"):
        ElectionKey(3, (1, 2), (INFINITY, multiply_generator(1)))
    with pytest.raises(InvalidEncoding, match="one challenge per response"):
        DisjunctiveProof((1, 2), (3,))
    assert DealtShare.decode(compute_dealt_share(PAIRS[1][0], 2).encode()).dealer_index == 2
    assert SecretShare.from_json(SHARE.to_json()) == SHARE
    assert PartialDecryption.from_json(PARTIAL.to_json()) == PARTIAL
    assert BallotOpening.decode(OPENING.encode()) == OPENING
