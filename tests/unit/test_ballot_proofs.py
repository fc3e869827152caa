"""Encrypted ballots and their proofs (ballot.py, proofs.py, elgamal.py).

Generate-then-verify: honest ballots for random polls and choices verify and
decrypt to the choices ([BALLOT-ELGAMAL.1], [BALLOT-PROOF-01.1],
[BALLOT-RANGE.1], [BALLOT-BALLOT.1]). Then every field of a valid ballot is
tampered with, one at a time, and must be refused with the error that names
it; proofs must not transfer to another option, voter or poll.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.errors import InvalidProof
from contracts.ballot.ballot import (
    BallotOpening,
    EncryptedBallot,
    EncryptedSelection,
    PollParameters,
    compute_range_statement,
    compute_tracking_code,
    compute_zero_one_statement,
    encrypt_ballot,
    validate_ballot,
    validate_ballot_opening,
)
from contracts.ballot.elgamal import (
    ZERO_CIPHERTEXT,
    Ciphertext,
    compute_ciphertext_sum,
    compute_encryption,
)
from contracts.ballot.errors import InvalidBallot
from contracts.ballot.group import (
    GROUP_ORDER,
    INFINITY,
    encode_transcript,
    multiply_generator,
    random_scalar,
)
from contracts.ballot.proofs import DisjunctiveProof, is_valid_disjunctive, prove_disjunctive

SECRET_KEY = 0x5EC12E7 * 7919
PUBLIC_KEY = multiply_generator(SECRET_KEY)
POLL_ID = bytes(31) + b"\x07"
ADDRESS = b"\xaa" * 20
PARAMS = PollParameters(POLL_ID, PUBLIC_KEY, 3, 1, 2)
BALLOT, OPENING = encrypt_ballot(PARAMS, ADDRESS, (1, 0, 1))

addresses = st.binary(min_size=20, max_size=20)
deltas = st.integers(min_value=1, max_value=GROUP_ORDER - 1)


def decrypt(ciphertext: Ciphertext) -> int:
    """Decrypt a small plaintext with the test's single secret key."""
    message = ciphertext.b - ciphertext.a * SECRET_KEY
    for value in range(8):
        if message == multiply_generator(value):
            return value
    raise AssertionError("not a small plaintext")


@st.composite
def polls_and_choices(draw: st.DrawFn) -> tuple[PollParameters, tuple[int, ...]]:
    """A random poll (1..4 options, any bounds) and a valid choice for it."""
    option_count = draw(st.integers(1, 4))
    minimum = draw(st.integers(0, option_count))
    maximum = draw(st.integers(minimum, option_count))
    total = draw(st.integers(minimum, maximum))
    chosen = draw(st.permutations(range(option_count)))[:total]
    choices = tuple(int(index in chosen) for index in range(option_count))
    poll_id = draw(st.binary(min_size=32, max_size=32))
    return PollParameters(poll_id, PUBLIC_KEY, option_count, minimum, maximum), choices


def with_option(
    ballot: EncryptedBallot, index: int, selection: EncryptedSelection
) -> EncryptedBallot:
    """The ballot with option ``index`` replaced."""
    selections = list(ballot.selections)
    selections[index] = selection
    return replace(ballot, selections=tuple(selections))


def tamper_selection(selection: EncryptedSelection, field: str, delta: int) -> EncryptedSelection:
    """Shift one field of an option (a point by delta·G, a scalar by delta)."""
    ciphertext, proof = selection.ciphertext, selection.proof
    if field in ("a", "b"):
        shifted = getattr(ciphertext, field) + multiply_generator(delta)
        return replace(selection, ciphertext=replace(ciphertext, **{field: shifted}))
    kind, branch = field[0], int(field[1])
    values = list(proof.challenges if kind == "c" else proof.responses)
    values[branch] = (values[branch] + delta) % GROUP_ORDER
    key = "challenges" if kind == "c" else "responses"
    return replace(selection, proof=replace(proof, **{key: tuple(values)}))


# --- completeness ----------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(poll=polls_and_choices(), address=addresses)
def test_honest_ballots_verify_and_decrypt_to_the_choices(
    poll: tuple[PollParameters, tuple[int, ...]], address: bytes
) -> None:
    """[BALLOT-ELGAMAL.1] [BALLOT-PROOF-01.1] [BALLOT-RANGE.1] [BALLOT-BALLOT.1]"""
    params, choices = poll
    ballot, opening = encrypt_ballot(params, address, choices)
    validate_ballot(params, address, ballot)
    assert tuple(decrypt(selection.ciphertext) for selection in ballot.selections) == choices
    total = compute_ciphertext_sum(selection.ciphertext for selection in ballot.selections)
    assert decrypt(total) == sum(choices)
    assert opening.selections == choices
    validate_ballot_opening(params, ballot, opening)


@given(m1=st.integers(0, 3), m2=st.integers(0, 3), r1=deltas, r2=deltas)
def test_ciphertexts_add_homomorphically(m1: int, m2: int, r1: int, r2: int) -> None:
    """[BALLOT-ELGAMAL.1] Enc(m1; r1) + Enc(m2; r2) = Enc(m1 + m2; r1 + r2)."""
    total = compute_ciphertext_sum(
        [compute_encryption(PUBLIC_KEY, m1, r1), compute_encryption(PUBLIC_KEY, m2, r2)]
    )
    assert total == compute_encryption(PUBLIC_KEY, m1 + m2, r1 + r2)
    assert compute_ciphertext_sum([]) == ZERO_CIPHERTEXT
    assert compute_encryption(PUBLIC_KEY, 0, 0) == ZERO_CIPHERTEXT


@pytest.mark.parametrize(
    ("choices", "reason"),
    [((1, 1, 1), "selection-count"), ((0, 0, 0), "selection-count"), ((1, 0), "option-count")],
)
def test_choices_outside_the_rules_cannot_be_encrypted(
    choices: tuple[int, ...], reason: str
) -> None:
    """[BALLOT-BALLOT.1] The voter client refuses choices no valid ballot could hold."""
    with pytest.raises(InvalidBallot) as error:
        encrypt_ballot(PARAMS, ADDRESS, choices)
    assert error.value.data["reason"] == reason
    with pytest.raises(InvalidBallot, match="must be 0 or 1"):
        encrypt_ballot(PARAMS, ADDRESS, (2, 0, 0))


# --- soundness against a cheating voter ---------------------------------------------------


def test_an_option_encrypting_two_cannot_carry_a_valid_proof() -> None:
    """[BALLOT-PROOF-01.1] A '2' with a proof simulated for both branches does not verify."""
    ciphertext = compute_encryption(PUBLIC_KEY, 2, random_scalar())
    statement = compute_zero_one_statement(PARAMS, ADDRESS, 0, ciphertext)
    with pytest.raises(ValueError, match=r"not in 0\.\.1"):
        prove_disjunctive(statement, 2, 1, random_scalar)
    # The best a cheater can do without the real branch: simulate both and guess the hash.
    forged = DisjunctiveProof((random_scalar(), random_scalar()), (1, 2))
    assert not is_valid_disjunctive(statement, forged)


def test_too_many_selections_fail_the_range_proof() -> None:
    """[BALLOT-RANGE.1] Three 0/1 options summing to 3 cannot prove a sum in 1..2."""
    lax = PollParameters(POLL_ID, PUBLIC_KEY, 3, 2, 3)
    ballot, _ = encrypt_ballot(lax, ADDRESS, (1, 1, 1))
    with pytest.raises(InvalidBallot) as error:
        validate_ballot(PARAMS, ADDRESS, ballot)
    assert error.value.data["reason"] == "range-proof"
    assert "range proof does not verify" in error.value.message
    wider = PollParameters(POLL_ID, PUBLIC_KEY, 3, 1, 3)
    ballot, _ = encrypt_ballot(wider, ADDRESS, (1, 1, 1))
    with pytest.raises(InvalidBallot, match="range proof has 3 branches, expected 2"):
        validate_ballot(PARAMS, ADDRESS, ballot)


def test_a_zero_nonce_ciphertext_is_refused() -> None:
    """[BALLOT-BALLOT.1] a = O would show the choice in the clear; refused even if proven."""
    ciphertext = compute_encryption(PUBLIC_KEY, 1, 0)
    assert ciphertext.a == INFINITY
    statement = compute_zero_one_statement(PARAMS, ADDRESS, 1, ciphertext)
    proof = prove_disjunctive(statement, 1, 0, random_scalar)
    assert is_valid_disjunctive(statement, proof)
    ballot = with_option(BALLOT, 1, EncryptedSelection(ciphertext, proof))
    with pytest.raises(InvalidBallot, match="option 1: ciphertext a is the point at infinity"):
        validate_ballot(PARAMS, ADDRESS, ballot)


# --- every tampered field is refused with its own error ---------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    index=st.integers(0, 2),
    field=st.sampled_from(["a", "b", "c0", "c1", "v0", "v1"]),
    delta=deltas,
)
def test_tampered_option_field_is_refused_naming_the_option(
    index: int, field: str, delta: int
) -> None:
    """[BALLOT-PROOF-01.1] [BALLOT-ERR.1] Any option field changed → "option i: 0/1 …"."""
    tampered = with_option(BALLOT, index, tamper_selection(BALLOT.selections[index], field, delta))
    with pytest.raises(InvalidBallot) as error:
        validate_ballot(PARAMS, ADDRESS, tampered)
    assert error.value.message == f"option {index}: 0/1 proof does not verify"
    assert error.value.data == {"reason": "zero-one-proof", "option": index}


@settings(max_examples=30, deadline=None)
@given(branch=st.integers(0, 1), kind=st.sampled_from(["challenges", "responses"]), delta=deltas)
def test_tampered_range_proof_is_refused(branch: int, kind: str, delta: int) -> None:
    """[BALLOT-RANGE.1] Change any challenge or response of the range proof → refused."""
    values = list(getattr(BALLOT.range_proof, kind))
    values[branch] = (values[branch] + delta) % GROUP_ORDER
    tampered = replace(BALLOT, range_proof=replace(BALLOT.range_proof, **{kind: tuple(values)}))
    with pytest.raises(InvalidBallot) as error:
        validate_ballot(PARAMS, ADDRESS, tampered)
    assert error.value.data["reason"] == "range-proof"


def test_ballot_for_another_poll_or_sender_is_refused() -> None:
    """[BALLOT-BALLOT.1] The ballot's poll id and address must be the poll's and the sender's."""
    with pytest.raises(InvalidBallot, match="ballot is for poll") as error:
        validate_ballot(replace(PARAMS, poll_id=bytes(32)), ADDRESS, BALLOT)
    assert error.value.data["reason"] == "poll-id"
    with pytest.raises(InvalidBallot, match="but was sent by") as error:
        validate_ballot(PARAMS, b"\xbb" * 20, BALLOT)
    assert error.value.data["reason"] == "voting-address"
    with pytest.raises(InvalidBallot, match="ballot has 3 options, the poll has 4"):
        validate_ballot(PollParameters(POLL_ID, PUBLIC_KEY, 4, 1, 2), ADDRESS, BALLOT)


@settings(max_examples=10, deadline=None)
@given(address=addresses.filter(lambda a: a != ADDRESS))
def test_copied_ballot_under_another_address_is_refused(address: bytes) -> None:
    """[BALLOT-PROOF-01.1] Proofs bind the voting address: a copied vote does not verify."""
    copied = replace(BALLOT, voting_address=address)
    with pytest.raises(InvalidBallot) as error:
        validate_ballot(PARAMS, address, copied)
    assert error.value.data == {"reason": "zero-one-proof", "option": 0}


def test_ballot_replayed_into_another_poll_is_refused() -> None:
    """[BALLOT-PROOF-01.1] Proofs bind the poll id: same key, other poll → refused."""
    other = replace(PARAMS, poll_id=b"\x01" * 32)
    with pytest.raises(InvalidBallot) as error:
        validate_ballot(other, ADDRESS, replace(BALLOT, poll_id=other.poll_id))
    assert error.value.data["option"] == 0


def test_proof_moved_to_another_option_is_refused() -> None:
    """[BALLOT-PROOF-01.1] Proofs bind the option index: swapping two options is refused."""
    first, second = BALLOT.selections[0], BALLOT.selections[1]
    swapped = with_option(with_option(BALLOT, 0, second), 1, first)
    with pytest.raises(InvalidBallot, match="option 0: 0/1 proof does not verify"):
        validate_ballot(PARAMS, ADDRESS, swapped)


def test_range_proof_binds_the_bounds() -> None:
    """[BALLOT-RANGE.1] A range proof for 1..2 does not verify as a proof for 0..1."""
    total = compute_ciphertext_sum(selection.ciphertext for selection in BALLOT.selections)
    statement = compute_range_statement(PARAMS, ADDRESS, total)
    assert is_valid_disjunctive(statement, BALLOT.range_proof)
    shifted = replace(statement, values=range(0, 2))
    assert not is_valid_disjunctive(shifted, BALLOT.range_proof)


@settings(max_examples=80, deadline=None)
@given(bit=st.integers(min_value=0, max_value=len(BALLOT.encode()) * 8 - 1))
def test_any_flipped_bit_of_an_encoded_ballot_is_refused(bit: int) -> None:
    """[BALLOT-ENC.4] [BALLOT-BALLOT.1] Decoding or validation refuses every one-bit change."""
    data = bytearray(BALLOT.encode())
    data[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidProof):
        validate_ballot(PARAMS, ADDRESS, EncryptedBallot.decode(bytes(data)))


# --- receipts and the Benaloh challenge ----------------------------------------------------


def test_tracking_code_hashes_the_canonical_ballot() -> None:
    """[BALLOT-BALLOT.2] SHA-256 of the framed tag and the ballot's bytes."""
    expected = hashlib.sha256(
        encode_transcript(b"polder/ballot/v1/tracking-code", [BALLOT.encode()])
    ).digest()
    assert compute_tracking_code(BALLOT) == expected
    again, _ = encrypt_ballot(PARAMS, ADDRESS, (1, 0, 1))
    assert compute_tracking_code(again) != compute_tracking_code(BALLOT)


def test_spoiled_ballot_opens_to_the_choices() -> None:
    """[BALLOT-BALLOT.3] Benaloh: the opening re-encrypts to the ballot; a lie is caught."""
    validate_ballot_opening(PARAMS, BALLOT, OPENING)
    assert BallotOpening.decode(OPENING.encode()) == OPENING
    assert BallotOpening.from_json(OPENING.to_json()) == OPENING
    lie = replace(OPENING, selections=(0, 1, 1))
    with pytest.raises(InvalidBallot, match="option 0: ciphertext is not the encryption"):
        validate_ballot_opening(PARAMS, BALLOT, lie)
    wrong_nonce = replace(OPENING, nonces=(OPENING.nonces[0], 1, OPENING.nonces[2]))
    with pytest.raises(InvalidBallot, match="option 1"):
        validate_ballot_opening(PARAMS, BALLOT, wrong_nonce)
    with pytest.raises(InvalidBallot, match="every option"):
        validate_ballot_opening(PARAMS, BALLOT, BallotOpening((1,), (1,)))
