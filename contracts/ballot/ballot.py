"""Encrypted ballots: what a voter casts and what every node checks (spec: BALLOT-BALLOT).

A ballot holds one ciphertext per option, each with a 0/1 proof, and one range
proof that the sum of the options lies in the poll's ``min..max``. All proofs
bind the poll id and the voting address, so a ballot verifies for exactly one
sender in one poll. ``validate_ballot`` is the check block validity runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from contracts.ballot.elgamal import Ciphertext, compute_ciphertext_sum, compute_encryption
from contracts.ballot.encoding import (
    JsonObject,
    Reader,
    check_count,
    decode_hex,
    encode_hex,
    json_int,
    json_list,
    json_object,
    point_from_json,
    point_to_json,
    scalar_from_json,
    scalar_to_json,
)
from contracts.ballot.errors import InvalidBallot, InvalidEncoding
from contracts.ballot.group import (
    GROUP_ORDER,
    Point,
    ScalarSource,
    encode_point,
    encode_scalar,
    encode_transcript,
    encode_u32,
    random_scalar,
)
from contracts.ballot.proofs import (
    RANGE_TAG,
    ZERO_ONE_TAG,
    ZERO_ONE_VALUES,
    DisjunctiveProof,
    DisjunctiveStatement,
    is_valid_disjunctive,
    prove_disjunctive,
)

BALLOT_VERSION = 1
"""First byte of an encoded ballot; bumped with any change to this format."""

POLL_ID_SIZE = 32
"""Bytes of a poll id (e.g. a uint256 poll number, big-endian)."""

ADDRESS_SIZE = 20
"""Bytes of a voting address (an Ethereum address: the ballot transaction's sender)."""

MAX_OPTIONS = 64
"""Most options a poll may have; bounds the work of decoding and verifying one ballot."""

TRACKING_CODE_TAG = b"polder/ballot/v1/tracking-code"
"""Domain tag of a ballot's tracking code."""


@dataclass(frozen=True)
class PollParameters:
    """What a ballot is checked against: the poll, its election key and its bounds."""

    poll_id: bytes
    """32-byte poll identifier, bound into every proof."""

    public_key: Point
    """K, the joint election key of the trustees (``ElectionKey.public_key``)."""

    option_count: int
    """Number of options, 1..MAX_OPTIONS; a ballot has one ciphertext per option."""

    min_selections: int
    """Fewest options a ballot must select."""

    max_selections: int
    """Most options a ballot may select."""

    def __post_init__(self) -> None:
        if len(self.poll_id) != POLL_ID_SIZE:
            raise InvalidEncoding("poll parameters: poll id is not 32 bytes", reason="poll-id")
        if self.public_key.is_infinity:
            raise InvalidEncoding(
                "poll parameters: election key is the point at infinity", reason="election-key"
            )
        check_count(self.option_count, 1, MAX_OPTIONS, "poll parameters: option count")
        if not 0 <= self.min_selections <= self.max_selections <= self.option_count:
            raise InvalidEncoding(
                "poll parameters: need 0 <= min_selections <= max_selections <= option_count",
                reason="poll-bounds",
            )

    @property
    def allowed_totals(self) -> range:
        """The values the sum of a ballot's options may take."""
        return range(self.min_selections, self.max_selections + 1)

    def encode(self) -> bytes:
        """``poll_id ‖ K ‖ u8(option_count) ‖ u8(min) ‖ u8(max)``, 68 bytes."""
        return (
            self.poll_id
            + encode_point(self.public_key)
            + bytes((self.option_count, self.min_selections, self.max_selections))
        )

    @classmethod
    def decode(cls, data: bytes) -> PollParameters:
        """Decode and check the parameters."""
        reader = Reader(data, "poll parameters")
        poll_id = reader.take(POLL_ID_SIZE, "poll id")
        public_key = reader.point("election key")
        counts = reader.take(3, "counts")
        reader.finish()
        return cls(poll_id, public_key, counts[0], counts[1], counts[2])

    def to_json(self) -> JsonObject:
        """JSON form with hex byte fields and integer counts."""
        return {
            "poll_id": encode_hex(self.poll_id),
            "public_key": point_to_json(self.public_key),
            "option_count": self.option_count,
            "min_selections": self.min_selections,
            "max_selections": self.max_selections,
        }

    @classmethod
    def from_json(cls, value: object) -> PollParameters:
        """Parse the JSON form with the byte decoder's checks."""
        keys = ("poll_id", "public_key", "option_count", "min_selections", "max_selections")
        fields = json_object(value, keys, "poll parameters")
        return cls(
            poll_id=decode_hex(fields["poll_id"], POLL_ID_SIZE, "poll_id"),
            public_key=point_from_json(fields["public_key"], "public_key"),
            option_count=json_int(fields["option_count"], 1, MAX_OPTIONS, "option_count"),
            min_selections=json_int(fields["min_selections"], 0, MAX_OPTIONS, "min_selections"),
            max_selections=json_int(fields["max_selections"], 0, MAX_OPTIONS, "max_selections"),
        )


@dataclass(frozen=True)
class EncryptedSelection:
    """One option of a ballot: its ciphertext and the proof that it encrypts 0 or 1."""

    ciphertext: Ciphertext
    """``Enc(selected ? 1 : 0)`` under the election key."""

    proof: DisjunctiveProof
    """Two-branch disjunctive proof over the values 0 and 1."""

    def to_json(self) -> JsonObject:
        """``{"ciphertext": …, "proof": …}``."""
        return {"ciphertext": self.ciphertext.to_json(), "proof": self.proof.to_json()}

    @classmethod
    def from_json(cls, value: object, what: str) -> EncryptedSelection:
        """Parse the JSON form; the proof must have exactly two branches."""
        fields = json_object(value, ("ciphertext", "proof"), what)
        proof = DisjunctiveProof.from_json(fields["proof"], 2, f"{what}.proof")
        if proof.branch_count != len(ZERO_ONE_VALUES):
            raise InvalidEncoding(f"{what}.proof: needs 2 branches", reason="proof-shape")
        return cls(Ciphertext.from_json(fields["ciphertext"], f"{what}.ciphertext"), proof)


@dataclass(frozen=True)
class EncryptedBallot:
    """A cast ballot, as stored on chain."""

    poll_id: bytes
    """The poll it is cast in; must equal the poll's id."""

    voting_address: bytes
    """The voter's per-poll voting address; must equal the transaction's sender."""

    selections: tuple[EncryptedSelection, ...]
    """One entry per option, in option order."""

    range_proof: DisjunctiveProof
    """Proof that the sum of the option ciphertexts encrypts a value in ``min..max``."""

    def __post_init__(self) -> None:
        # Only shapes the byte encoding can express may exist, so decode(encode(b)) == b.
        if len(self.poll_id) != POLL_ID_SIZE or len(self.voting_address) != ADDRESS_SIZE:
            raise InvalidEncoding("ballot: poll id or voting address size", reason="field-size")
        check_count(len(self.selections), 1, MAX_OPTIONS, "ballot: option count")
        if any(item.proof.branch_count != len(ZERO_ONE_VALUES) for item in self.selections):
            raise InvalidEncoding("ballot: a 0/1 proof needs 2 branches", reason="proof-shape")
        check_count(
            self.range_proof.branch_count,
            1,
            len(self.selections) + 1,
            "ballot: range proof branches",
        )

    def encode(self) -> bytes:
        """Canonical bytes; see ``[BALLOT-ENC.4]`` in docs/spec/ballots.md."""
        parts = [
            bytes((BALLOT_VERSION,)),
            self.poll_id,
            self.voting_address,
            bytes((len(self.selections),)),
        ]
        for selection in self.selections:
            parts.append(selection.ciphertext.encode())
            parts.append(selection.proof.encode())
        parts.append(bytes((self.range_proof.branch_count,)))
        parts.append(self.range_proof.encode())
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> EncryptedBallot:
        """Decode and check the structure (not the proofs: that is ``validate_ballot``)."""
        reader = Reader(data, "ballot")
        version = reader.u8("version")
        if version != BALLOT_VERSION:
            raise InvalidEncoding(f"ballot: unknown version {version}", reason="version")
        poll_id = reader.take(POLL_ID_SIZE, "poll id")
        voting_address = reader.take(ADDRESS_SIZE, "voting address")
        option_count = check_count(reader.u8("option count"), 1, MAX_OPTIONS, "option count")
        selections = tuple(
            EncryptedSelection(
                Ciphertext.read(reader, f"option {index} ciphertext "),
                DisjunctiveProof.read(reader, len(ZERO_ONE_VALUES), f"option {index} proof"),
            )
            for index in range(option_count)
        )
        branches = check_count(
            reader.u8("range proof size"), 1, option_count + 1, "range proof branches"
        )
        range_proof = DisjunctiveProof.read(reader, branches, "range proof")
        reader.finish()
        return cls(poll_id, voting_address, selections, range_proof)

    def to_json(self) -> JsonObject:
        """JSON form; ``from_json(to_json(b)) == b``."""
        return {
            "version": BALLOT_VERSION,
            "poll_id": encode_hex(self.poll_id),
            "voting_address": encode_hex(self.voting_address),
            "selections": [selection.to_json() for selection in self.selections],
            "range_proof": self.range_proof.to_json(),
        }

    @classmethod
    def from_json(cls, value: object) -> EncryptedBallot:
        """Parse the JSON form with the byte decoder's checks."""
        keys = ("version", "poll_id", "voting_address", "selections", "range_proof")
        fields = json_object(value, keys, "ballot")
        json_int(fields["version"], BALLOT_VERSION, BALLOT_VERSION, "ballot.version")
        items = json_list(fields["selections"], 1, MAX_OPTIONS, "ballot.selections")
        return cls(
            poll_id=decode_hex(fields["poll_id"], POLL_ID_SIZE, "ballot.poll_id"),
            voting_address=decode_hex(
                fields["voting_address"], ADDRESS_SIZE, "ballot.voting_address"
            ),
            selections=tuple(
                EncryptedSelection.from_json(item, f"ballot.selections[{index}]")
                for index, item in enumerate(items)
            ),
            range_proof=DisjunctiveProof.from_json(
                fields["range_proof"], len(items) + 1, "ballot.range_proof"
            ),
        )


@dataclass(frozen=True)
class BallotOpening:
    """The voter's secret for one ballot: choices and nonces (revealed only to spoil it)."""

    selections: tuple[int, ...]
    """0 or 1 per option."""

    nonces: tuple[int, ...]
    """The ElGamal nonce ``r`` of each option's ciphertext."""

    def __post_init__(self) -> None:
        check_count(len(self.selections), 1, MAX_OPTIONS, "ballot opening: option count")
        if len(self.nonces) != len(self.selections):
            raise InvalidEncoding("ballot opening: one nonce per option", reason="opening-shape")
        if any(selection not in ZERO_ONE_VALUES for selection in self.selections):
            raise InvalidEncoding("ballot opening: selections are 0 or 1", reason="selection")

    def encode(self) -> bytes:
        """``u8(count) ‖ (u8(selection) ‖ nonce)*``."""
        parts = [bytes((len(self.selections),))]
        for selection, nonce in zip(self.selections, self.nonces, strict=True):
            parts.append(bytes((selection,)) + encode_scalar(nonce))
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> BallotOpening:
        """Decode; each selection byte must be 0 or 1."""
        reader = Reader(data, "ballot opening")
        count = check_count(reader.u8("option count"), 1, MAX_OPTIONS, "option count")
        selections: list[int] = []
        nonces: list[int] = []
        for index in range(count):
            selections.append(
                check_count(reader.u8(f"option {index} selection"), 0, 1, f"option {index}")
            )
            nonces.append(reader.scalar(f"option {index} nonce"))
        reader.finish()
        return cls(tuple(selections), tuple(nonces))

    def to_json(self) -> JsonObject:
        """``{"selections": [0|1…], "nonces": [hex…]}``."""
        return {
            "selections": list(self.selections),
            "nonces": [scalar_to_json(nonce) for nonce in self.nonces],
        }

    @classmethod
    def from_json(cls, value: object) -> BallotOpening:
        """Parse the JSON form."""
        fields = json_object(value, ("selections", "nonces"), "ballot opening")
        selections = json_list(fields["selections"], 1, MAX_OPTIONS, "selections")
        nonces = json_list(fields["nonces"], len(selections), len(selections), "nonces")
        return cls(
            tuple(json_int(item, 0, 1, f"selections[{i}]") for i, item in enumerate(selections)),
            tuple(scalar_from_json(item, f"nonces[{i}]") for i, item in enumerate(nonces)),
        )


def compute_zero_one_statement(
    params: PollParameters, voting_address: bytes, option_index: int, ciphertext: Ciphertext
) -> DisjunctiveStatement:
    """Option ``option_index`` encrypts 0 or 1; context ``poll_id, address, u32(option)``."""
    return DisjunctiveStatement(
        tag=ZERO_ONE_TAG,
        context=(params.poll_id, bytes(voting_address), encode_u32(option_index)),
        public_key=params.public_key,
        ciphertext=ciphertext,
        values=ZERO_ONE_VALUES,
    )


def compute_range_statement(
    params: PollParameters, voting_address: bytes, total: Ciphertext
) -> DisjunctiveStatement:
    """The options' sum encrypts ``min..max``; context ``poll_id, address, u32(n, min, max)``."""
    return DisjunctiveStatement(
        tag=RANGE_TAG,
        context=(
            params.poll_id,
            bytes(voting_address),
            encode_u32(params.option_count),
            encode_u32(params.min_selections),
            encode_u32(params.max_selections),
        ),
        public_key=params.public_key,
        ciphertext=total,
        values=params.allowed_totals,
    )


def validate_selections(params: PollParameters, selections: Sequence[int]) -> None:
    """Refuse choices that no valid ballot could encrypt (the voter client's input check)."""
    if len(selections) != params.option_count:
        raise InvalidBallot(
            f"{len(selections)} selections for a poll with {params.option_count} options",
            reason="option-count",
        )
    for index, selection in enumerate(selections):
        if selection not in ZERO_ONE_VALUES:
            raise InvalidBallot(f"option {index}: selection must be 0 or 1", reason="selection")
    if sum(selections) not in params.allowed_totals:
        raise InvalidBallot(
            f"{sum(selections)} options selected; the poll allows "
            f"{params.min_selections}..{params.max_selections}",
            reason="selection-count",
        )


def encrypt_ballot(
    params: PollParameters,
    voting_address: bytes,
    selections: Sequence[int],
    random_scalar: ScalarSource = random_scalar,
) -> tuple[EncryptedBallot, BallotOpening]:
    """Encrypt and prove a voter's choices; return the ballot and its secret opening."""
    validate_selections(params, selections)
    if len(voting_address) != ADDRESS_SIZE:
        raise InvalidBallot("voting address is not 20 bytes", reason="voting-address")
    nonces = tuple(random_scalar() for _ in selections)
    encrypted: list[EncryptedSelection] = []
    for index, (selection, nonce) in enumerate(zip(selections, nonces, strict=True)):
        ciphertext = compute_encryption(params.public_key, selection, nonce)
        statement = compute_zero_one_statement(params, voting_address, index, ciphertext)
        proof = prove_disjunctive(statement, selection, nonce, random_scalar)
        encrypted.append(EncryptedSelection(ciphertext, proof))
    total = compute_ciphertext_sum(item.ciphertext for item in encrypted)
    range_proof = prove_disjunctive(
        compute_range_statement(params, voting_address, total),
        sum(selections),
        sum(nonces) % GROUP_ORDER,
        random_scalar,
    )
    ballot = EncryptedBallot(params.poll_id, bytes(voting_address), tuple(encrypted), range_proof)
    return ballot, BallotOpening(tuple(selections), nonces)


def validate_ballot(params: PollParameters, voting_address: bytes, ballot: EncryptedBallot) -> None:
    """Raise ``InvalidBallot`` naming the first rule or proof that fails; cheap checks first."""
    if ballot.poll_id != params.poll_id:
        raise InvalidBallot(
            f"ballot is for poll 0x{ballot.poll_id.hex()}, not 0x{params.poll_id.hex()}",
            reason="poll-id",
        )
    if ballot.voting_address != voting_address:
        raise InvalidBallot(
            f"ballot names voting address 0x{ballot.voting_address.hex()}, "
            f"but was sent by 0x{bytes(voting_address).hex()}",
            reason="voting-address",
        )
    if len(ballot.selections) != params.option_count:
        raise InvalidBallot(
            f"ballot has {len(ballot.selections)} options, the poll has {params.option_count}",
            reason="option-count",
        )
    totals = params.allowed_totals
    if ballot.range_proof.branch_count != len(totals):
        raise InvalidBallot(
            f"range proof has {ballot.range_proof.branch_count} branches, expected "
            f"{len(totals)} (selections {totals.start}..{totals.stop - 1})",
            reason="range-proof-shape",
        )
    for index, selection in enumerate(ballot.selections):
        validate_encrypted_selection(params, voting_address, index, selection)
    total = compute_ciphertext_sum(selection.ciphertext for selection in ballot.selections)
    if not is_valid_disjunctive(
        compute_range_statement(params, voting_address, total), ballot.range_proof
    ):
        raise InvalidBallot(
            f"range proof does not verify (number of selections not shown to be in "
            f"{totals.start}..{totals.stop - 1})",
            reason="range-proof",
        )


def validate_encrypted_selection(
    params: PollParameters, voting_address: bytes, index: int, selection: EncryptedSelection
) -> None:
    """Check one option: a proper ciphertext with a verifying 0/1 proof."""
    if selection.ciphertext.a.is_infinity:
        # A zero nonce would publish the choice in the clear (and sell it).
        raise InvalidBallot(
            f"option {index}: ciphertext a is the point at infinity",
            reason="ciphertext",
            option=index,
        )
    statement = compute_zero_one_statement(params, voting_address, index, selection.ciphertext)
    if not is_valid_disjunctive(statement, selection.proof):
        raise InvalidBallot(
            f"option {index}: 0/1 proof does not verify", reason="zero-one-proof", option=index
        )


def compute_tracking_code(ballot: EncryptedBallot) -> bytes:
    """The voter's receipt: SHA-256 of the framed tag and the ballot's canonical bytes."""
    return hashlib.sha256(encode_transcript(TRACKING_CODE_TAG, [ballot.encode()])).digest()


def validate_ballot_opening(
    params: PollParameters, ballot: EncryptedBallot, opening: BallotOpening
) -> None:
    """Benaloh challenge: check a spoiled ballot encrypts exactly the revealed choices."""
    if len(opening.selections) != len(ballot.selections) or len(opening.nonces) != len(
        ballot.selections
    ):
        raise InvalidBallot("opening does not cover every option", reason="opening-shape")
    for index, (selection, nonce, encrypted) in enumerate(
        zip(opening.selections, opening.nonces, ballot.selections, strict=True)
    ):
        expected = compute_encryption(params.public_key, selection, nonce)
        if selection not in ZERO_ONE_VALUES or expected != encrypted.ciphertext:
            raise InvalidBallot(
                f"option {index}: ciphertext is not the encryption of the revealed selection",
                reason="opening",
                option=index,
            )
