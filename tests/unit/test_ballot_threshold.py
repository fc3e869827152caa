"""Threshold key generation, partial decryption and the tally (threshold.py, tally.py).

The full flow of a poll with 4 trustees and threshold 3, one trustee absent at
tally time ([BALLOT-DKG.1]-[BALLOT-DKG.4], [BALLOT-PARTIAL.1],
[BALLOT-TALLY.1], [BALLOT-TALLY.2]); then each way a trustee can misbehave,
which must be caught with an error naming the trustee (and option).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.ballot.ballot import EncryptedBallot, PollParameters, encrypt_ballot, validate_ballot
from contracts.ballot.elgamal import ZERO_CIPHERTEXT, Ciphertext
from contracts.ballot.errors import (
    InvalidBallot,
    InvalidDecryption,
    InvalidKeyGeneration,
    TallyOutOfRange,
)
from contracts.ballot.group import GROUP_ORDER, INFINITY, multiply_generator, random_scalar
from contracts.ballot.proofs import CompactProof
from contracts.ballot.tally import (
    PartialDecryption,
    compute_aggregate,
    compute_partial_decryption,
    compute_small_discrete_log,
    compute_tally,
    validate_partial_decryption,
)
from contracts.ballot.threshold import (
    DealerSecret,
    Dealing,
    DealtShare,
    ElectionKey,
    SecretShare,
    compute_dealt_share,
    compute_election_key,
    compute_lagrange_coefficient,
    compute_polynomial_value,
    compute_secret_share,
    compute_share_public_key,
    generate_dealing,
    validate_dealing,
    validate_dealt_share,
)

POLL_ID = b"\x42" * 32
TRUSTEES, THRESHOLD = 4, 3
CHOICES = ((1, 0, 0), (0, 1, 1), (1, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 0), (1, 0, 0))
EXPECTED = tuple(sum(column) for column in zip(*CHOICES, strict=True))


@dataclass(frozen=True)
class Ceremony:
    """The outcome of an honest key generation."""

    secrets: tuple[DealerSecret, ...]
    dealings: tuple[Dealing, ...]
    election_key: ElectionKey
    shares: dict[int, SecretShare]


def run_key_generation(dealers: tuple[int, ...] = (1, 2, 3, 4)) -> Ceremony:
    """Every dealer in ``dealers`` deals; every trustee checks its shares and adds them up."""
    pairs = [generate_dealing(POLL_ID, index, TRUSTEES, THRESHOLD) for index in dealers]
    secrets = tuple(secret for secret, _ in pairs)
    dealings = tuple(dealing for _, dealing in pairs)
    for dealing in dealings:
        validate_dealing(POLL_ID, TRUSTEES, THRESHOLD, dealing)
    election_key = compute_election_key(POLL_ID, TRUSTEES, THRESHOLD, dealings)
    shares = {
        j: compute_secret_share(
            election_key, dealings, [compute_dealt_share(secret, j) for secret in secrets], j
        )
        for j in range(1, TRUSTEES + 1)
    }
    return Ceremony(secrets, dealings, election_key, shares)


CEREMONY = run_key_generation()
PARAMS = PollParameters(POLL_ID, CEREMONY.election_key.public_key, 3, 1, 2)
BALLOTS = tuple(
    encrypt_ballot(PARAMS, bytes([index]) * 20, choices)[0] for index, choices in enumerate(CHOICES)
)
AGGREGATE = compute_aggregate(PARAMS, BALLOTS)
PARTIALS = {
    j: compute_partial_decryption(POLL_ID, CEREMONY.election_key, CEREMONY.shares[j], AGGREGATE)
    for j in (1, 2, 3, 4)
}


# --- the full flow ------------------------------------------------------------------------


def test_four_trustees_threshold_three_one_absent() -> None:
    """[BALLOT-DKG.3] [BALLOT-PARTIAL.1] [BALLOT-TALLY.1] [BALLOT-TALLY.2] End to end."""
    for index, ballot in enumerate(BALLOTS):
        validate_ballot(PARAMS, bytes([index]) * 20, ballot)
    present = [PARTIALS[1], PARTIALS[2], PARTIALS[4]]  # trustee 3 does not show up
    for partial in present:
        validate_partial_decryption(POLL_ID, CEREMONY.election_key, AGGREGATE, partial)
    counts = compute_tally(POLL_ID, CEREMONY.election_key, AGGREGATE, present, len(BALLOTS))
    assert counts == EXPECTED


def test_any_threshold_subset_gives_the_same_tally() -> None:
    """[BALLOT-TALLY.2] Every set of ≥ t trustees decrypts to the same counts."""
    for size in (3, 4):
        for subset in itertools.combinations(PARTIALS.values(), size):
            tally = compute_tally(POLL_ID, CEREMONY.election_key, AGGREGATE, subset, len(BALLOTS))
            assert tally == EXPECTED


def test_fewer_than_threshold_partials_cannot_tally() -> None:
    """[BALLOT-TALLY.2] Two partial decryptions of a 3-of-4 key are not enough."""
    with pytest.raises(InvalidDecryption, match="2 partial decryptions, 3 are needed"):
        compute_tally(
            POLL_ID, CEREMONY.election_key, AGGREGATE, [PARTIALS[1], PARTIALS[2]], len(BALLOTS)
        )
    with pytest.raises(InvalidDecryption, match="two partial decryptions from one trustee"):
        compute_tally(
            POLL_ID,
            CEREMONY.election_key,
            AGGREGATE,
            [PARTIALS[1], PARTIALS[2], PARTIALS[1]],
            len(BALLOTS),
        )


def test_share_public_keys_come_from_public_data() -> None:
    """[BALLOT-DKG.4] S_j = s_j·G from the commitments alone; K = Σ C_{i,0}."""
    for j, share in CEREMONY.shares.items():
        assert compute_share_public_key(CEREMONY.election_key, j) == multiply_generator(share.value)
    assert CEREMONY.election_key.public_key == sum(
        (dealing.commitments[0] for dealing in CEREMONY.dealings), INFINITY
    )
    secret = sum(secret.coefficients[0] for secret in CEREMONY.secrets) % GROUP_ORDER
    assert multiply_generator(secret) == CEREMONY.election_key.public_key
    indices = [1, 3, 4]
    interpolated = sum(
        compute_lagrange_coefficient(j, indices) * CEREMONY.shares[j].value for j in indices
    )
    assert interpolated % GROUP_ORDER == secret


def test_tally_of_no_ballots_is_all_zero() -> None:
    """[BALLOT-TALLY.1] The aggregate of nothing is (O, O) per option and decrypts to 0."""
    aggregate = compute_aggregate(PARAMS, [])
    assert aggregate == (ZERO_CIPHERTEXT,) * 3
    partials = [
        compute_partial_decryption(POLL_ID, CEREMONY.election_key, CEREMONY.shares[j], aggregate)
        for j in (2, 3, 4)
    ]
    assert compute_tally(POLL_ID, CEREMONY.election_key, aggregate, partials, 0) == (0, 0, 0)


def test_disqualified_dealer_is_left_out_but_keeps_its_share() -> None:
    """[BALLOT-DKG.3] A key from dealers 1, 2, 4 still lets trustee 3 decrypt."""
    ceremony = run_key_generation(dealers=(1, 2, 4))
    assert ceremony.election_key.dealers == (1, 2, 4)
    params = PollParameters(POLL_ID, ceremony.election_key.public_key, 3, 1, 2)
    ballots = [encrypt_ballot(params, b"\x01" * 20, (0, 1, 1))[0]]
    aggregate = compute_aggregate(params, ballots)
    partials = [
        compute_partial_decryption(POLL_ID, ceremony.election_key, ceremony.shares[j], aggregate)
        for j in (1, 3, 4)
    ]
    assert compute_tally(POLL_ID, ceremony.election_key, aggregate, partials, 1) == (0, 1, 1)
    with pytest.raises(InvalidKeyGeneration, match="at least 3 are needed"):
        compute_election_key(POLL_ID, TRUSTEES, THRESHOLD, ceremony.dealings[:2])


# --- misbehaving trustees ---------------------------------------------------------------------


def test_partial_decryption_with_a_wrong_share_is_refused() -> None:
    """[BALLOT-PARTIAL.1] A trustee using s_j + 1 cannot prove its shares against S_j."""
    wrong = replace(CEREMONY.shares[2], value=(CEREMONY.shares[2].value + 1) % GROUP_ORDER)
    partial = compute_partial_decryption(POLL_ID, CEREMONY.election_key, wrong, AGGREGATE)
    with pytest.raises(InvalidDecryption) as error:
        validate_partial_decryption(POLL_ID, CEREMONY.election_key, AGGREGATE, partial)
    assert error.value.message == "trustee 2, option 0: partial decryption proof does not verify"
    assert error.value.data == {"reason": "partial-proof", "trustee": 2, "option": 0}
    with pytest.raises(InvalidDecryption, match="trustee 2"):
        compute_tally(
            POLL_ID, CEREMONY.election_key, AGGREGATE, [PARTIALS[1], partial, PARTIALS[4]], 7
        )


@settings(max_examples=40, deadline=None)
@given(
    trustee=st.sampled_from([1, 2, 3, 4]),
    option=st.integers(0, 2),
    field=st.sampled_from(["share", "challenge", "response"]),
    delta=st.integers(min_value=1, max_value=GROUP_ORDER - 1),
)
def test_tampered_partial_decryption_is_refused_naming_trustee_and_option(
    trustee: int, option: int, field: str, delta: int
) -> None:
    """[BALLOT-PARTIAL.1] [BALLOT-ERR.1] Any share, challenge or response changed → located."""
    partial = PARTIALS[trustee]
    shares, proofs = list(partial.shares), list(partial.proofs)
    if field == "share":
        shares[option] = shares[option] + multiply_generator(delta)
    else:
        value = (getattr(proofs[option], field) + delta) % GROUP_ORDER
        proofs[option] = replace(proofs[option], **{field: value})
    tampered = replace(partial, shares=tuple(shares), proofs=tuple(proofs))
    with pytest.raises(InvalidDecryption) as error:
        validate_partial_decryption(POLL_ID, CEREMONY.election_key, AGGREGATE, tampered)
    assert error.value.data == {"reason": "partial-proof", "trustee": trustee, "option": option}


def test_partial_decryption_does_not_transfer() -> None:
    """[BALLOT-PARTIAL.1] Bound to poll, trustee index and option: no replay elsewhere."""
    with pytest.raises(InvalidDecryption, match="option 0"):
        validate_partial_decryption(b"\x43" * 32, CEREMONY.election_key, AGGREGATE, PARTIALS[1])
    with pytest.raises(InvalidDecryption, match="trustee 3, option 0"):
        validate_partial_decryption(
            POLL_ID, CEREMONY.election_key, AGGREGATE, replace(PARTIALS[1], trustee_index=3)
        )
    swapped = replace(
        PARTIALS[1],
        shares=(PARTIALS[1].shares[1], PARTIALS[1].shares[0], PARTIALS[1].shares[2]),
        proofs=(PARTIALS[1].proofs[1], PARTIALS[1].proofs[0], PARTIALS[1].proofs[2]),
    )
    with pytest.raises(InvalidDecryption, match="trustee 1, option 0"):
        validate_partial_decryption(POLL_ID, CEREMONY.election_key, AGGREGATE, swapped)
    with pytest.raises(InvalidDecryption, match="not a trustee"):
        validate_partial_decryption(
            POLL_ID, CEREMONY.election_key, AGGREGATE, replace(PARTIALS[1], trustee_index=5)
        )
    with pytest.raises(InvalidDecryption, match="2 shares and 2 proofs for 3 options"):
        validate_partial_decryption(
            POLL_ID,
            CEREMONY.election_key,
            AGGREGATE,
            replace(PARTIALS[1], shares=PARTIALS[1].shares[:2], proofs=PARTIALS[1].proofs[:2]),
        )


def test_count_above_the_bound_is_reported() -> None:
    """[BALLOT-TALLY.2] A count above the bound is reported, not silently wrapped."""
    with pytest.raises(TallyOutOfRange, match=r"option 0: decrypted value is not in 0\.\.2"):
        compute_tally(
            POLL_ID, CEREMONY.election_key, AGGREGATE, [PARTIALS[1], PARTIALS[2], PARTIALS[3]], 2
        )


def test_dealt_share_that_does_not_match_the_commitments_is_refused() -> None:
    """[BALLOT-DKG.2] Feldman check: f_i(j)·G = Σ j^k C_{i,k}; a wrong value is named."""
    share = compute_dealt_share(CEREMONY.secrets[1], 3)
    validate_dealt_share(CEREMONY.dealings[1], share)
    bad = replace(share, value=(share.value + 1) % GROUP_ORDER)
    with pytest.raises(InvalidKeyGeneration) as error:
        validate_dealt_share(CEREMONY.dealings[1], bad)
    assert error.value.message == (
        "share from dealer 2 to trustee 3 does not match the dealer's commitments"
    )
    with pytest.raises(InvalidKeyGeneration, match="share is from dealer 2, dealing from 1"):
        validate_dealt_share(CEREMONY.dealings[0], share)
    shares = [compute_dealt_share(secret, 3) for secret in CEREMONY.secrets]
    shares[1] = bad
    with pytest.raises(InvalidKeyGeneration, match="dealer 2 to trustee 3"):
        compute_secret_share(CEREMONY.election_key, CEREMONY.dealings, shares, 3)
    with pytest.raises(InvalidKeyGeneration, match="exactly one share from each of dealers"):
        compute_secret_share(CEREMONY.election_key, CEREMONY.dealings, shares[:3], 3)


@settings(max_examples=20, deadline=None)
@given(
    dealer=st.integers(0, 3),
    field=st.sampled_from(["commitment", "challenge", "response"]),
    delta=st.integers(min_value=1, max_value=GROUP_ORDER - 1),
)
def test_tampered_dealing_is_refused(dealer: int, field: str, delta: int) -> None:
    """[BALLOT-DKG.1] [BALLOT-ERR.1] Any commitment or proof field changed → PoK fails."""
    dealing = CEREMONY.dealings[dealer]
    if field == "commitment":
        commitments = list(dealing.commitments)
        commitments[delta % THRESHOLD] = commitments[delta % THRESHOLD] + multiply_generator(delta)
        tampered = replace(dealing, commitments=tuple(commitments))
    else:
        value = (getattr(dealing.proof, field) + delta) % GROUP_ORDER
        tampered = replace(dealing, proof=replace(dealing.proof, **{field: value}))
    with pytest.raises(InvalidKeyGeneration) as error:
        validate_dealing(POLL_ID, TRUSTEES, THRESHOLD, tampered)
    assert error.value.data == {"reason": "dealing-proof", "dealer": dealer + 1}


def test_rogue_key_without_proof_of_knowledge_is_refused() -> None:
    """[BALLOT-DKG.1] Dealer 4 cannot cancel the others' keys: it cannot prove C_0's log."""
    target = multiply_generator(1234)
    others = sum((dealing.commitments[0] for dealing in CEREMONY.dealings[:3]), INFINITY)
    rogue = replace(
        CEREMONY.dealings[3],
        commitments=(target - others, *CEREMONY.dealings[3].commitments[1:]),
    )
    with pytest.raises(InvalidKeyGeneration, match="dealer 4: proof of knowledge"):
        compute_election_key(POLL_ID, TRUSTEES, THRESHOLD, (*CEREMONY.dealings[:3], rogue))


def test_dealings_for_other_parameters_or_polls_are_refused() -> None:
    """[BALLOT-DKG.1] [BALLOT-DKG.3] The proof binds poll, n and t; duplicates are refused."""
    dealing = CEREMONY.dealings[0]
    with pytest.raises(InvalidKeyGeneration, match="dealer 1: proof of knowledge"):
        validate_dealing(b"\x00" * 32, TRUSTEES, THRESHOLD, dealing)
    with pytest.raises(InvalidKeyGeneration, match="not 2 of 4"):
        validate_dealing(POLL_ID, TRUSTEES, 2, dealing)
    with pytest.raises(InvalidKeyGeneration, match="two dealings from one dealer"):
        compute_election_key(POLL_ID, TRUSTEES, THRESHOLD, (dealing, *CEREMONY.dealings[:3]))
    infinite = replace(dealing, commitments=(dealing.commitments[0], INFINITY, INFINITY))
    with pytest.raises(InvalidKeyGeneration, match="commitment 1 is the point at infinity"):
        validate_dealing(POLL_ID, TRUSTEES, THRESHOLD, infinite)


# --- arithmetic helpers ---------------------------------------------------------------------


@given(
    coefficients=st.lists(st.integers(0, GROUP_ORDER - 1), min_size=1, max_size=5),
    data=st.data(),
)
def test_lagrange_interpolation_recovers_the_constant(
    coefficients: list[int], data: st.DataObject
) -> None:
    """[BALLOT-TALLY.2] Any t points of a degree t-1 polynomial give f(0) back."""
    indices = data.draw(
        st.lists(st.integers(1, 255), min_size=len(coefficients), max_size=8, unique=True)
    )
    total = sum(
        compute_lagrange_coefficient(i, indices) * compute_polynomial_value(coefficients, i)
        for i in indices
    )
    assert total % GROUP_ORDER == coefficients[0]


@given(value=st.integers(0, 5000), extra=st.integers(0, 3000))
def test_small_discrete_log_finds_every_value_up_to_the_bound(value: int, extra: int) -> None:
    """[BALLOT-TALLY.2] Baby-step giant-step returns m for m·G, m ≤ bound."""
    assert compute_small_discrete_log(multiply_generator(value), value + extra) == value


def test_small_discrete_log_reports_values_out_of_range() -> None:
    """[BALLOT-TALLY.2] m > bound (or no small m at all) raises TallyOutOfRange."""
    assert compute_small_discrete_log(INFINITY, 0) == 0
    with pytest.raises(TallyOutOfRange, match=r"not in 0\.\.10"):
        compute_small_discrete_log(multiply_generator(11), 10)
    with pytest.raises(TallyOutOfRange):
        compute_small_discrete_log(multiply_generator(random_scalar()), 1000)
    with pytest.raises(ValueError, match="bound"):
        compute_small_discrete_log(INFINITY, -1)


# --- codecs of the key-generation and tally objects ----------------------------------------------


def test_key_generation_and_tally_objects_round_trip() -> None:
    """[BALLOT-ENC.6] [BALLOT-ENC.7] [BALLOT-ENC.8] Bytes and JSON of every object."""
    share = compute_dealt_share(CEREMONY.secrets[0], 2)
    objects: list[Dealing | DealtShare | ElectionKey | SecretShare | PartialDecryption] = [
        *CEREMONY.dealings,
        share,
        CEREMONY.election_key,
        CEREMONY.shares[1],
        *PARTIALS.values(),
    ]
    for item in objects:
        assert type(item).decode(item.encode()) == item
        assert type(item).from_json(item.to_json()) == item
    assert len(share.encode()) == 34
    assert len(CEREMONY.shares[1].encode()) == 33
    assert len(CEREMONY.dealings[0].encode()) == 3 + 33 * THRESHOLD + 64
    assert len(PARTIALS[1].encode()) == 2 + 3 * (33 + 64)


def test_aggregate_refuses_a_ballot_of_another_shape() -> None:
    """[BALLOT-TALLY.1] A ballot with another option count cannot be summed in."""
    small = PollParameters(POLL_ID, CEREMONY.election_key.public_key, 2, 1, 1)
    other: EncryptedBallot = encrypt_ballot(small, b"\x01" * 20, (1, 0))[0]
    with pytest.raises(InvalidBallot, match="ballot has 2 options"):
        compute_aggregate(PARAMS, [*BALLOTS, other])


def test_compact_proofs_and_ciphertexts_are_fixed_size() -> None:
    """[BALLOT-ENC.3] A ciphertext is 66 bytes, a compact proof 64."""
    assert len(AGGREGATE[0].encode()) == 66
    assert Ciphertext.decode(AGGREGATE[0].encode()) == AGGREGATE[0]
    assert len(CompactProof(1, 2).encode()) == 64
