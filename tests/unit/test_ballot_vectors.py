"""The published test vectors, contracts/ballot/vectors.json ([BALLOT-VECTORS.1]).

The file must equal a fresh deterministic computation (so a change to any
encoding, hash input or proof fails here and the vectors are regenerated on
purpose), and every vector must pass the checks an independent verifier
would run from docs/spec/ballots.md.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from consensus.errors import InvalidProof
from contracts.ballot.ballot import (
    BallotOpening,
    EncryptedBallot,
    PollParameters,
    compute_tracking_code,
    validate_ballot,
    validate_ballot_opening,
)
from contracts.ballot.blind import compute_credential_message
from contracts.ballot.elgamal import Ciphertext, compute_encryption
from contracts.ballot.group import (
    GROUP_ORDER,
    compute_generator_h,
    decode_point,
    decode_scalar,
    encode_point,
    multiply_generator,
)
from contracts.ballot.tally import (
    PartialDecryption,
    compute_aggregate,
    compute_tally,
    validate_partial_decryption,
)
from contracts.ballot.threshold import (
    Dealing,
    DealtShare,
    ElectionKey,
    compute_election_key,
    compute_share_public_key,
    validate_dealing,
    validate_dealt_share,
)
from contracts.ballot.vectors import (
    compute_vectors,
    load_vectors,
    main,
    render_vectors,
)

VECTORS = load_vectors()


def unhex(value: Any) -> bytes:
    """Bytes of a vector's ``0x`` hex string."""
    assert isinstance(value, str)
    assert value.startswith("0x")
    return bytes.fromhex(value[2:])


def test_published_vectors_are_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    """[BALLOT-VECTORS.1] vectors.json is exactly what the code computes from the seeds."""
    assert render_vectors(compute_vectors()) == render_vectors(VECTORS)
    assert main(["--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_group_vectors() -> None:
    """[BALLOT-GROUP.1] [BALLOT-GROUP.2] [BALLOT-HASH.1] Multiples, H, the challenge hash."""
    group = VECTORS["group"]
    assert decode_point(unhex(group["generator"])) == multiply_generator(1)
    assert unhex(group["infinity"]) == bytes(33)
    generator_h, counter = compute_generator_h()
    assert encode_point(generator_h) == unhex(group["generator_h"])
    assert counter == group["generator_h_counter"]
    for entry in group["multiples"]:
        scalar = decode_scalar(unhex(entry["scalar"]))
        assert encode_point(multiply_generator(scalar)) == unhex(entry["point"])
    challenge = group["challenge"]
    tag = challenge["tag"].encode()
    transcript = len(tag).to_bytes(4, "big") + tag
    for item in map(unhex, challenge["items"]):
        transcript += len(item).to_bytes(4, "big") + item
    assert transcript == unhex(challenge["transcript"])
    expected = int.from_bytes(hashlib.sha512(transcript).digest(), "big") % GROUP_ORDER
    assert expected == decode_scalar(unhex(challenge["challenge"]))


def test_encryption_vector() -> None:
    """[BALLOT-ELGAMAL.1] Enc(m; r) = (r·G, m·G + r·K) byte for byte."""
    entry = VECTORS["encryption"]
    public_key = decode_point(unhex(entry["public_key"]))
    nonce = decode_scalar(unhex(entry["nonce"]))
    expected = Ciphertext.decode(unhex(entry["ciphertext"]))
    assert compute_encryption(public_key, entry["message"], nonce) == expected
    assert expected.a == multiply_generator(nonce)


def test_key_generation_vectors() -> None:
    """[BALLOT-DKG.1] [BALLOT-DKG.2] [BALLOT-DKG.3] [BALLOT-DKG.4] From the dealings alone."""
    entry = VECTORS["key_generation"]
    poll_id = unhex(entry["poll_id"])
    dealings = [Dealing.decode(unhex(item)) for item in entry["dealings"]]
    for dealing in dealings:
        validate_dealing(poll_id, entry["trustee_count"], entry["threshold"], dealing)
    election_key = compute_election_key(
        poll_id, entry["trustee_count"], entry["threshold"], dealings
    )
    assert election_key == ElectionKey.decode(unhex(entry["election_key"]))
    for dealing, row in zip(dealings, entry["shares"], strict=True):
        for item in row:
            validate_dealt_share(dealing, DealtShare.decode(unhex(item)))
    for j, item in enumerate(entry["share_public_keys"], start=1):
        assert compute_share_public_key(election_key, j) == decode_point(unhex(item))
    for j in range(1, entry["trustee_count"] + 1):
        total = (
            sum(DealtShare.decode(unhex(row[j - 1])).value for row in entry["shares"]) % GROUP_ORDER
        )
        assert multiply_generator(total) == compute_share_public_key(election_key, j)


def test_ballot_and_tally_vectors() -> None:
    """[BALLOT-BALLOT.1] [BALLOT-BALLOT.2] [BALLOT-BALLOT.3] [BALLOT-TALLY.2] Whole poll."""
    params = PollParameters.decode(unhex(VECTORS["poll"]))
    ballots = []
    for entry in VECTORS["ballots"]:
        ballot = EncryptedBallot.decode(unhex(entry["ballot"]))
        validate_ballot(params, unhex(entry["voting_address"]), ballot)
        assert compute_tracking_code(ballot) == unhex(entry["tracking_code"])
        opening = BallotOpening.decode(unhex(entry["opening"]))
        validate_ballot_opening(params, ballot, opening)
        assert list(opening.selections) == entry["selections"]
        ballots.append(ballot)
    tally = VECTORS["tally"]
    aggregate = compute_aggregate(params, ballots)
    assert [ciphertext.encode() for ciphertext in aggregate] == [
        unhex(item) for item in tally["aggregate"]
    ]
    election_key = ElectionKey.decode(unhex(VECTORS["key_generation"]["election_key"]))
    partials = [PartialDecryption.decode(unhex(item)) for item in tally["partial_decryptions"]]
    for partial in partials:
        validate_partial_decryption(params.poll_id, election_key, aggregate, partial)
    counts = compute_tally(params.poll_id, election_key, aggregate, partials, tally["bound"])
    assert list(counts) == tally["counts"]
    assert tally["counts"] == [
        sum(column)
        for column in zip(*(entry["selections"] for entry in VECTORS["ballots"]), strict=True)
    ]


def test_credential_message_vector() -> None:
    """[BALLOT-BLIND.7] The message an issuer blind-signs for a poll and address."""
    entry = VECTORS["credential"]
    message = compute_credential_message(unhex(entry["poll_id"]), unhex(entry["voting_address"]))
    assert message == unhex(entry["message"])


@pytest.mark.parametrize(
    "entry", VECTORS["invalid"], ids=lambda entry: f"{entry['kind']}-{entry['reason']}"
)
def test_invalid_vectors_are_refused_with_their_reason(entry: dict[str, Any]) -> None:
    """[BALLOT-ENC.1] [BALLOT-ENC.2] [BALLOT-ENC.4] [BALLOT-PROOF-01.1] Negative vectors."""
    data = unhex(entry["hex"])
    params = PollParameters.decode(unhex(VECTORS["poll"]))
    address = unhex(VECTORS["ballots"][0]["voting_address"])

    def check() -> None:
        if entry["kind"] == "point":
            decode_point(data)
        elif entry["kind"] == "scalar":
            decode_scalar(data)
        else:
            validate_ballot(params, address, EncryptedBallot.decode(data))

    with pytest.raises(InvalidProof) as error:
        check()
    assert error.value.data["reason"] == entry["reason"]
