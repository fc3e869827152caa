"""Non-interactive zero-knowledge proofs of the poll protocol (spec: BALLOT-PROOF-01,
BALLOT-RANGE, BALLOT-PARTIAL, BALLOT-DKG).

All are sigma protocols made non-interactive by Fiat-Shamir with
``compute_challenge``: each kind has its own domain tag, and every challenge
hashes the poll id and the full statement (election key, ciphertext, option
index, voting address or trustee index), so a proof verifies for exactly one
statement in one poll and cannot be replayed into another ballot.

- ``DisjunctiveProof``: Cramer-Damgård-Schoenmakers OR-proof that a ciphertext
  encrypts one value of a range (0/1 per option, ``min..max`` for the sum).
- ``CompactProof``: a (challenge, response) pair, used for the Chaum-Pedersen
  proof of a correct partial decryption and for the Schnorr proof of knowledge
  of a trustee's constant coefficient.

``prove_*`` draw nonces from a ``ScalarSource``; ``is_valid_*`` return a bool
and leave the message to the caller, which knows which option or trustee it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from contracts.ballot.elgamal import Ciphertext
from contracts.ballot.encoding import (
    JsonObject,
    Reader,
    json_list,
    json_object,
    scalar_from_json,
    scalar_to_json,
)
from contracts.ballot.errors import InvalidEncoding
from contracts.ballot.group import (
    GROUP_ORDER,
    Point,
    ScalarSource,
    compute_challenge,
    compute_combination,
    encode_point,
    encode_scalar,
    encode_u32,
    multiply_generator,
)

ZERO_ONE_TAG = b"polder/ballot/v1/zero-one"
"""Domain tag of the proof that one option's ciphertext encrypts 0 or 1."""

RANGE_TAG = b"polder/ballot/v1/range"
"""Domain tag of the proof that the sum of a ballot's ciphertexts lies in min..max."""

PARTIAL_DECRYPTION_TAG = b"polder/ballot/v1/partial-decryption"
"""Domain tag of the Chaum-Pedersen proof of a trustee's partial decryption."""

KNOWLEDGE_TAG = b"polder/ballot/v1/dkg-knowledge"
"""Domain tag of the Schnorr proof of knowledge of a dealer's constant coefficient."""

ZERO_ONE_VALUES = range(2)
"""The plaintexts a single option's ciphertext may hold."""


@dataclass(frozen=True)
class DisjunctiveProof:
    """An OR-proof over values ``low..low+k-1``: one (challenge, response) per value."""

    challenges: tuple[int, ...]
    """``c_j`` per value, in increasing value order; they sum to the Fiat-Shamir challenge."""

    responses: tuple[int, ...]
    """``v_j`` per value, same order."""

    def __post_init__(self) -> None:
        if len(self.challenges) != len(self.responses) or not self.challenges:
            raise InvalidEncoding(
                "disjunctive proof needs one challenge per response, at least one",
                reason="proof-shape",
            )

    @property
    def branch_count(self) -> int:
        """Number of values the proof ranges over."""
        return len(self.challenges)

    def encode(self) -> bytes:
        """``c_0 ‖ v_0 ‖ c_1 ‖ v_1 ‖ …`` (the count is implied by the container)."""
        return b"".join(
            encode_scalar(challenge) + encode_scalar(response)
            for challenge, response in zip(self.challenges, self.responses, strict=True)
        )

    @classmethod
    def read(cls, reader: Reader, branches: int, what: str) -> DisjunctiveProof:
        """Read ``branches`` (challenge, response) pairs."""
        pairs = [
            (reader.scalar(f"{what} c{index}"), reader.scalar(f"{what} v{index}"))
            for index in range(branches)
        ]
        return cls(
            challenges=tuple(pair[0] for pair in pairs),
            responses=tuple(pair[1] for pair in pairs),
        )

    def to_json(self) -> JsonObject:
        """``{"challenges": [hex…], "responses": [hex…]}``."""
        return {
            "challenges": [scalar_to_json(value) for value in self.challenges],
            "responses": [scalar_to_json(value) for value in self.responses],
        }

    @classmethod
    def from_json(cls, value: object, max_branches: int, what: str) -> DisjunctiveProof:
        """Parse the JSON form; at most ``max_branches`` branches."""
        fields = json_object(value, ("challenges", "responses"), what)
        challenges = json_list(fields["challenges"], 1, max_branches, f"{what}.challenges")
        responses = json_list(fields["responses"], 1, max_branches, f"{what}.responses")
        return cls(
            challenges=tuple(
                scalar_from_json(item, f"{what}.challenges[{index}]")
                for index, item in enumerate(challenges)
            ),
            responses=tuple(
                scalar_from_json(item, f"{what}.responses[{index}]")
                for index, item in enumerate(responses)
            ),
        )


@dataclass(frozen=True)
class CompactProof:
    """A sigma proof in compact form: the challenge and the response."""

    challenge: int
    """``c``, which must equal the Fiat-Shamir hash of the recomputed commitments."""

    response: int
    """``v = w + c·x`` for the prover's secret ``x`` and nonce ``w``."""

    def encode(self) -> bytes:
        """``c ‖ v``, 64 bytes."""
        return encode_scalar(self.challenge) + encode_scalar(self.response)

    @classmethod
    def read(cls, reader: Reader, what: str) -> CompactProof:
        """Read ``c ‖ v`` from inside a larger encoding."""
        return cls(challenge=reader.scalar(f"{what} c"), response=reader.scalar(f"{what} v"))

    def to_json(self) -> JsonObject:
        """``{"challenge": hex, "response": hex}``."""
        return {
            "challenge": scalar_to_json(self.challenge),
            "response": scalar_to_json(self.response),
        }

    @classmethod
    def from_json(cls, value: object, what: str) -> CompactProof:
        """Parse the JSON form with the byte decoder's checks."""
        fields = json_object(value, ("challenge", "response"), what)
        return cls(
            challenge=scalar_from_json(fields["challenge"], f"{what}.challenge"),
            response=scalar_from_json(fields["response"], f"{what}.response"),
        )


# --- disjunctive (CDS) proofs -----------------------------------------------------


@dataclass(frozen=True)
class DisjunctiveStatement:
    """ "``ciphertext`` encrypts a value in ``values`` under ``public_key``", in a context."""

    tag: bytes
    """Domain tag of the proof kind (``ZERO_ONE_TAG`` or ``RANGE_TAG``)."""

    context: tuple[bytes, ...]
    """Transcript items hashed before the key: poll id, voting address, indices, bounds."""

    public_key: Point
    """K, the election key."""

    ciphertext: Ciphertext
    """(A, B), the ciphertext the statement is about."""

    values: range
    """The allowed plaintexts, in increasing order."""


def compute_branch_commitments(
    statement: DisjunctiveStatement, value: int, challenge: int, response: int
) -> tuple[Point, Point]:
    """Recompute one branch: ``a_j = v_j·G - c_j·A`` and ``b_j = v_j·K - c_j·(B - j·G)``."""
    ciphertext = statement.ciphertext
    return (
        compute_combination(response, [(-challenge, ciphertext.a)]),
        # -c·(B - j·G) = -c·B + (c·j)·G: folds the shift into the one fixed-base product.
        compute_combination(
            challenge * value, [(response, statement.public_key), (-challenge, ciphertext.b)]
        ),
    )


def compute_disjunctive_commitments(
    statement: DisjunctiveStatement, proof: DisjunctiveProof
) -> list[Point]:
    """Recompute every branch's commitments, flat as ``[a_low, b_low, a_low+1, …]``."""
    commitments: list[Point] = []
    for value, challenge, response in zip(
        statement.values, proof.challenges, proof.responses, strict=True
    ):
        commitments.extend(compute_branch_commitments(statement, value, challenge, response))
    return commitments


def compute_disjunctive_challenge(
    statement: DisjunctiveStatement, commitments: Sequence[Point]
) -> int:
    """Hash ``context ‖ K ‖ A ‖ B ‖ a_low ‖ b_low ‖ …`` under the statement's tag."""
    items = [
        *statement.context,
        encode_point(statement.public_key),
        encode_point(statement.ciphertext.a),
        encode_point(statement.ciphertext.b),
    ]
    items.extend(encode_point(point) for point in commitments)
    return compute_challenge(statement.tag, items)


def prove_disjunctive(
    statement: DisjunctiveStatement, message: int, nonce: int, random_scalar: ScalarSource
) -> DisjunctiveProof:
    """Prove that the statement's ciphertext is ``Enc(message; nonce)``.

    The branches of the other values are simulated (challenge and response drawn
    first); the real branch's challenge is what is left of the hash.
    """
    values = statement.values
    if message not in values:
        raise ValueError(f"message {message} is not in {values.start}..{values.stop - 1}")
    real = message - values.start
    # Draw order (simulated branches low to high, each c then v; then the witness) is
    # fixed so that seeded test vectors reproduce; verifiers do not depend on it.
    challenges = [0] * len(values)
    responses = [0] * len(values)
    for index in range(len(values)):
        if index != real:
            challenges[index] = random_scalar()
            responses[index] = random_scalar()
    witness = random_scalar()
    commitments: list[Point] = []
    for index, value in enumerate(values):
        if index == real:
            commitments.extend((multiply_generator(witness), statement.public_key * witness))
        else:
            commitments.extend(
                compute_branch_commitments(statement, value, challenges[index], responses[index])
            )
    challenge = compute_disjunctive_challenge(statement, commitments)
    others = sum(c for index, c in enumerate(challenges) if index != real)
    challenges[real] = (challenge - others) % GROUP_ORDER
    responses[real] = (witness + challenges[real] * nonce) % GROUP_ORDER
    return DisjunctiveProof(tuple(challenges), tuple(responses))


def is_valid_disjunctive(statement: DisjunctiveStatement, proof: DisjunctiveProof) -> bool:
    """True when ``proof`` shows the ciphertext encrypts a value in ``statement.values``."""
    if proof.branch_count != len(statement.values):
        return False
    commitments = compute_disjunctive_commitments(statement, proof)
    return sum(proof.challenges) % GROUP_ORDER == compute_disjunctive_challenge(
        statement, commitments
    )


# --- Chaum-Pedersen proof of a partial decryption ---------------------------------


@dataclass(frozen=True)
class PartialDecryptionStatement:
    """ "``D = s·A`` for the ``s`` with ``S = s·G``", for one trustee and one option."""

    poll_id: bytes
    """The poll whose aggregate is decrypted."""

    trustee_index: int
    """j, the trustee."""

    option_index: int
    """o, the option (0-based)."""

    public_key: Point
    """K, the election key."""

    share_public_key: Point
    """``S_j``, computed from the published dealings."""

    ciphertext: Ciphertext
    """``(A_o, B_o)``, the aggregate of option o."""

    decryption_share: Point
    """``D_{j,o}``, the claimed ``s_j·A_o``."""


def compute_partial_decryption_challenge(
    statement: PartialDecryptionStatement, commitments: tuple[Point, Point]
) -> int:
    """Hash the full statement and the two commitments."""
    return compute_challenge(
        PARTIAL_DECRYPTION_TAG,
        [
            statement.poll_id,
            encode_u32(statement.trustee_index),
            encode_u32(statement.option_index),
            encode_point(statement.public_key),
            encode_point(statement.share_public_key),
            encode_point(statement.ciphertext.a),
            encode_point(statement.ciphertext.b),
            encode_point(statement.decryption_share),
            encode_point(commitments[0]),
            encode_point(commitments[1]),
        ],
    )


def prove_partial_decryption(
    statement: PartialDecryptionStatement, secret_share: int, random_scalar: ScalarSource
) -> CompactProof:
    """Prove ``log_G(S) = log_A(D)`` knowing ``s`` (Chaum-Pedersen)."""
    witness = random_scalar()
    commitments = (multiply_generator(witness), statement.ciphertext.a * witness)
    challenge = compute_partial_decryption_challenge(statement, commitments)
    return CompactProof(challenge, (witness + challenge * secret_share) % GROUP_ORDER)


def is_valid_partial_decryption(statement: PartialDecryptionStatement, proof: CompactProof) -> bool:
    """Check ``a = v·G - c·S`` and ``b = v·A - c·D`` hash back to ``c``."""
    commitments = (
        compute_combination(proof.response, [(-proof.challenge, statement.share_public_key)]),
        compute_combination(
            0,
            [
                (proof.response, statement.ciphertext.a),
                (-proof.challenge, statement.decryption_share),
            ],
        ),
    )
    return compute_partial_decryption_challenge(statement, commitments) == proof.challenge


# --- Schnorr proof of knowledge of a dealer's constant coefficient ------------------


@dataclass(frozen=True)
class KnowledgeStatement:
    """ "The dealer knows ``log_G(C_0)``", bound to its whole dealing."""

    poll_id: bytes
    """The poll the key is generated for."""

    dealer_index: int
    """i, the dealer."""

    trustee_count: int
    """n."""

    threshold: int
    """t."""

    commitments: tuple[Point, ...]
    """``C_0 … C_{t-1}``."""


def compute_knowledge_challenge(statement: KnowledgeStatement, nonce_commitment: Point) -> int:
    """Hash the dealer's identity, the parameters, all its commitments and ``R``."""
    items = [
        statement.poll_id,
        encode_u32(statement.dealer_index),
        encode_u32(statement.trustee_count),
        encode_u32(statement.threshold),
    ]
    items.extend(encode_point(point) for point in statement.commitments)
    items.append(encode_point(nonce_commitment))
    return compute_challenge(KNOWLEDGE_TAG, items)


def prove_knowledge(
    statement: KnowledgeStatement, secret: int, random_scalar: ScalarSource
) -> CompactProof:
    """Prove knowledge of ``secret = log_G(C_0)`` (Schnorr)."""
    witness = random_scalar()
    challenge = compute_knowledge_challenge(statement, multiply_generator(witness))
    return CompactProof(challenge, (witness + challenge * secret) % GROUP_ORDER)


def is_valid_knowledge(statement: KnowledgeStatement, proof: CompactProof) -> bool:
    """Check ``R = v·G - c·C_0`` hashes back to ``c``."""
    nonce_commitment = compute_combination(
        proof.response, [(-proof.challenge, statement.commitments[0])]
    )
    return compute_knowledge_challenge(statement, nonce_commitment) == proof.challenge
