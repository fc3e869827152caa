"""Threshold key generation among the trustees (spec: BALLOT-DKG).

Pedersen's distributed key generation with Feldman verifiable secret sharing,
plus a Schnorr proof of knowledge of each dealer's constant coefficient (as in
FROST's key generation) so no dealer can choose its contribution as a function
of the others' (rogue-key attack).

Each trustee i of n (indices 1..n) deals a random polynomial f_i of degree t-1:
it publishes a ``Dealing`` (commitments ``C_{i,k} = a_{i,k}·G`` and the proof)
and sends each trustee j the ``DealtShare`` f_i(j) over a private channel. The
election key is ``K = Σ_i C_{i,0}``; trustee j's secret share is ``s_j = Σ_i f_i(j)``
and anyone can compute its public key ``S_j = Σ_k j^k · Σ_i C_{i,k}`` from the
published dealings alone. Any t shares reconstruct the secret by Lagrange
interpolation, which the tally does in the exponent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from contracts.ballot.encoding import (
    JsonObject,
    Reader,
    check_count,
    json_int,
    json_list,
    json_object,
    point_from_json,
    point_to_json,
    scalar_from_json,
    scalar_to_json,
)
from contracts.ballot.errors import InvalidEncoding, InvalidKeyGeneration
from contracts.ballot.group import (
    GROUP_ORDER,
    Point,
    ScalarSource,
    encode_point,
    encode_scalar,
    multiply_generator,
    random_scalar,
    sum_points,
)
from contracts.ballot.proofs import (
    CompactProof,
    KnowledgeStatement,
    is_valid_knowledge,
    prove_knowledge,
)

MAX_TRUSTEES = 255
"""Most trustees of one key (indices fit one byte)."""


def _check_parameters(trustee_count: int, threshold: int, what: str) -> None:
    check_count(trustee_count, 1, MAX_TRUSTEES, f"{what}: trustee count")
    check_count(threshold, 1, trustee_count, f"{what}: threshold")


def _check_index(index: int, trustee_count: int, what: str) -> None:
    check_count(index, 1, trustee_count, what)


@dataclass(frozen=True)
class DealerSecret:
    """A dealer's secret polynomial; never leaves its trustee."""

    dealer_index: int
    """The dealer's trustee index, 1..n."""

    coefficients: tuple[int, ...]
    """``a_0 … a_{t-1}``: f(x) = Σ a_k x^k mod n."""


@dataclass(frozen=True)
class Dealing:
    """A dealer's public contribution: Feldman commitments and proof of knowledge of ``a_0``."""

    dealer_index: int
    """The dealer's trustee index, 1..n."""

    trustee_count: int
    """n, the number of trustees the key is shared among."""

    commitments: tuple[Point, ...]
    """``C_k = a_k·G`` for k = 0..t-1 (so t = the threshold)."""

    proof: CompactProof
    """Schnorr proof of knowledge of ``a_0 = log_G(C_0)``."""

    def __post_init__(self) -> None:
        _check_parameters(self.trustee_count, len(self.commitments), "dealing")
        _check_index(self.dealer_index, self.trustee_count, "dealing: dealer index")

    @property
    def threshold(self) -> int:
        """t: how many trustees are needed to decrypt."""
        return len(self.commitments)

    def encode(self) -> bytes:
        """``u8(dealer) ‖ u8(n) ‖ u8(t) ‖ C_0 ‖ … ‖ C_{t-1} ‖ c ‖ v``."""
        header = bytes((self.dealer_index, self.trustee_count, self.threshold))
        return header + b"".join(map(encode_point, self.commitments)) + self.proof.encode()

    @classmethod
    def decode(cls, data: bytes) -> Dealing:
        """Decode and check the structure (not the proof: that is ``validate_dealing``)."""
        reader = Reader(data, "dealing")
        dealer_index = reader.u8("dealer index")
        trustee_count = reader.u8("trustee count")
        threshold = check_count(reader.u8("threshold"), 1, MAX_TRUSTEES, "threshold")
        commitments = tuple(reader.point(f"commitment {k}") for k in range(threshold))
        proof = CompactProof.read(reader, "proof")
        reader.finish()
        return cls(dealer_index, trustee_count, commitments, proof)

    def to_json(self) -> JsonObject:
        """JSON form with hex points."""
        return {
            "dealer_index": self.dealer_index,
            "trustee_count": self.trustee_count,
            "commitments": [point_to_json(point) for point in self.commitments],
            "proof": self.proof.to_json(),
        }

    @classmethod
    def from_json(cls, value: object) -> Dealing:
        """Parse the JSON form with the byte decoder's checks."""
        keys = ("dealer_index", "trustee_count", "commitments", "proof")
        fields = json_object(value, keys, "dealing")
        commitments = json_list(fields["commitments"], 1, MAX_TRUSTEES, "dealing.commitments")
        return cls(
            dealer_index=json_int(fields["dealer_index"], 1, MAX_TRUSTEES, "dealer_index"),
            trustee_count=json_int(fields["trustee_count"], 1, MAX_TRUSTEES, "trustee_count"),
            commitments=tuple(
                point_from_json(item, f"dealing.commitments[{k}]")
                for k, item in enumerate(commitments)
            ),
            proof=CompactProof.from_json(fields["proof"], "dealing.proof"),
        )


@dataclass(frozen=True)
class DealtShare:
    """``f_i(j)``: what dealer i sends trustee j, encrypted in transit, never published."""

    dealer_index: int
    """i, the dealer."""

    recipient_index: int
    """j, the trustee it is for."""

    value: int
    """``f_i(j) mod n``."""

    def __post_init__(self) -> None:
        check_count(self.dealer_index, 1, MAX_TRUSTEES, "dealt share: dealer index")
        check_count(self.recipient_index, 1, MAX_TRUSTEES, "dealt share: recipient index")

    def encode(self) -> bytes:
        """``u8(dealer) ‖ u8(recipient) ‖ value``, 34 bytes."""
        return bytes((self.dealer_index, self.recipient_index)) + encode_scalar(self.value)

    @classmethod
    def decode(cls, data: bytes) -> DealtShare:
        """Decode 34 bytes."""
        reader = Reader(data, "dealt share")
        dealer_index = check_count(reader.u8("dealer index"), 1, MAX_TRUSTEES, "dealer index")
        recipient = check_count(reader.u8("recipient index"), 1, MAX_TRUSTEES, "recipient index")
        value = reader.scalar("value")
        reader.finish()
        return cls(dealer_index, recipient, value)

    def to_json(self) -> JsonObject:
        """JSON form."""
        return {
            "dealer_index": self.dealer_index,
            "recipient_index": self.recipient_index,
            "value": scalar_to_json(self.value),
        }

    @classmethod
    def from_json(cls, value: object) -> DealtShare:
        """Parse the JSON form."""
        fields = json_object(value, ("dealer_index", "recipient_index", "value"), "dealt share")
        return cls(
            dealer_index=json_int(fields["dealer_index"], 1, MAX_TRUSTEES, "dealer_index"),
            recipient_index=json_int(fields["recipient_index"], 1, MAX_TRUSTEES, "recipient_index"),
            value=scalar_from_json(fields["value"], "value"),
        )


@dataclass(frozen=True)
class ElectionKey:
    """The public outcome of key generation: enough to check every partial decryption."""

    trustee_count: int
    """n."""

    dealers: tuple[int, ...]
    """Indices of the dealers whose dealings make up the key, strictly increasing."""

    commitments: tuple[Point, ...]
    """``Σ_i C_{i,k}`` over the dealers, k = 0..t-1; ``commitments[0]`` is K."""

    def __post_init__(self) -> None:
        _check_parameters(self.trustee_count, len(self.commitments), "election key")
        if not len(self.commitments) <= len(self.dealers) <= self.trustee_count:
            raise InvalidEncoding(
                "election key: needs between t and n dealers", reason="dealer-count"
            )
        if list(self.dealers) != sorted(set(self.dealers)) or not all(
            1 <= index <= self.trustee_count for index in self.dealers
        ):
            raise InvalidEncoding(
                "election key: dealers must be distinct, increasing, in 1..n", reason="dealers"
            )
        if self.commitments[0].is_infinity:
            raise InvalidEncoding("election key: K is the point at infinity", reason="election-key")

    @property
    def threshold(self) -> int:
        """t."""
        return len(self.commitments)

    @property
    def public_key(self) -> Point:
        """K, the key ballots are encrypted under."""
        return self.commitments[0]

    def encode(self) -> bytes:
        """``u8(n) ‖ u8(t) ‖ C_0 ‖ … ‖ C_{t-1} ‖ u8(d) ‖ dealer indices (u8 each)``."""
        return (
            bytes((self.trustee_count, self.threshold))
            + b"".join(map(encode_point, self.commitments))
            + bytes((len(self.dealers), *self.dealers))
        )

    @classmethod
    def decode(cls, data: bytes) -> ElectionKey:
        """Decode and check the structure."""
        reader = Reader(data, "election key")
        trustee_count = reader.u8("trustee count")
        threshold = check_count(reader.u8("threshold"), 1, MAX_TRUSTEES, "threshold")
        commitments = tuple(reader.point(f"commitment {k}") for k in range(threshold))
        dealers = tuple(reader.take(reader.u8("dealer count"), "dealers"))
        reader.finish()
        return cls(trustee_count, dealers, commitments)

    def to_json(self) -> JsonObject:
        """JSON form."""
        return {
            "trustee_count": self.trustee_count,
            "dealers": list(self.dealers),
            "commitments": [point_to_json(point) for point in self.commitments],
        }

    @classmethod
    def from_json(cls, value: object) -> ElectionKey:
        """Parse the JSON form with the byte decoder's checks."""
        fields = json_object(value, ("trustee_count", "dealers", "commitments"), "election key")
        dealers = json_list(fields["dealers"], 1, MAX_TRUSTEES, "election_key.dealers")
        commitments = json_list(fields["commitments"], 1, MAX_TRUSTEES, "commitments")
        return cls(
            trustee_count=json_int(fields["trustee_count"], 1, MAX_TRUSTEES, "trustee_count"),
            dealers=tuple(json_int(item, 1, MAX_TRUSTEES, "dealers[]") for item in dealers),
            commitments=tuple(
                point_from_json(item, f"commitments[{k}]") for k, item in enumerate(commitments)
            ),
        )


@dataclass(frozen=True)
class SecretShare:
    """Trustee j's share ``s_j`` of the election secret key; kept by that trustee only."""

    trustee_index: int
    """j, 1..n."""

    value: int
    """``s_j = Σ_i f_i(j) mod n``."""

    def __post_init__(self) -> None:
        check_count(self.trustee_index, 1, MAX_TRUSTEES, "secret share: trustee index")

    def encode(self) -> bytes:
        """``u8(j) ‖ s_j``, 33 bytes."""
        return bytes((self.trustee_index,)) + encode_scalar(self.value)

    @classmethod
    def decode(cls, data: bytes) -> SecretShare:
        """Decode 33 bytes."""
        reader = Reader(data, "secret share")
        index = check_count(reader.u8("trustee index"), 1, MAX_TRUSTEES, "trustee index")
        value = reader.scalar("value")
        reader.finish()
        return cls(index, value)

    def to_json(self) -> JsonObject:
        """JSON form (secret: for the trustee's own storage only)."""
        return {"trustee_index": self.trustee_index, "value": scalar_to_json(self.value)}

    @classmethod
    def from_json(cls, value: object) -> SecretShare:
        """Parse the JSON form."""
        fields = json_object(value, ("trustee_index", "value"), "secret share")
        return cls(
            trustee_index=json_int(fields["trustee_index"], 1, MAX_TRUSTEES, "trustee_index"),
            value=scalar_from_json(fields["value"], "value"),
        )


def compute_polynomial_value(coefficients: Sequence[int], x: int) -> int:
    """``Σ a_k x^k mod n`` by Horner's rule."""
    value = 0
    for coefficient in reversed(coefficients):
        value = (value * x + coefficient) % GROUP_ORDER
    return value


def compute_commitment_value(commitments: Sequence[Point], x: int) -> Point:
    """``Σ x^k · C_k``: the public image ``f(x)·G`` of the committed polynomial."""
    return sum_points(point * pow(x, k, GROUP_ORDER) for k, point in enumerate(commitments))


def generate_dealing(
    poll_id: bytes,
    dealer_index: int,
    trustee_count: int,
    threshold: int,
    random_scalar: ScalarSource = random_scalar,
) -> tuple[DealerSecret, Dealing]:
    """Draw a dealer's polynomial and return it with the dealing to publish."""
    _check_parameters(trustee_count, threshold, "dealing")
    _check_index(dealer_index, trustee_count, "dealing: dealer index")
    coefficients = tuple(random_scalar() for _ in range(threshold))
    commitments = tuple(multiply_generator(a) for a in coefficients)
    statement = KnowledgeStatement(poll_id, dealer_index, trustee_count, threshold, commitments)
    proof = prove_knowledge(statement, coefficients[0], random_scalar)
    secret = DealerSecret(dealer_index, coefficients)
    return secret, Dealing(dealer_index, trustee_count, commitments, proof)


def compute_dealt_share(secret: DealerSecret, recipient_index: int) -> DealtShare:
    """``f_i(j)`` for trustee j (the dealer computes one for every trustee, itself included)."""
    if recipient_index < 1:
        raise ValueError("trustee indices start at 1 (f(0) is the secret)")
    value = compute_polynomial_value(secret.coefficients, recipient_index)
    return DealtShare(secret.dealer_index, recipient_index, value)


def validate_dealing(poll_id: bytes, trustee_count: int, threshold: int, dealing: Dealing) -> None:
    """Check a published dealing: parameters, no identity commitment, proof of knowledge."""
    who = f"dealer {dealing.dealer_index}"
    if dealing.trustee_count != trustee_count or dealing.threshold != threshold:
        raise InvalidKeyGeneration(
            f"{who}: dealing is for {dealing.threshold} of {dealing.trustee_count} trustees, "
            f"not {threshold} of {trustee_count}",
            reason="dealing-parameters",
            dealer=dealing.dealer_index,
        )
    for k, point in enumerate(dealing.commitments):
        if point.is_infinity:
            raise InvalidKeyGeneration(
                f"{who}: commitment {k} is the point at infinity",
                reason="dealing-commitment",
                dealer=dealing.dealer_index,
            )
    statement = KnowledgeStatement(
        poll_id, dealing.dealer_index, trustee_count, threshold, dealing.commitments
    )
    if not is_valid_knowledge(statement, dealing.proof):
        raise InvalidKeyGeneration(
            f"{who}: proof of knowledge of the constant coefficient does not verify",
            reason="dealing-proof",
            dealer=dealing.dealer_index,
        )


def validate_dealt_share(dealing: Dealing, share: DealtShare) -> None:
    """Check ``share·G == Σ j^k C_k`` (Feldman); a failure is grounds for a complaint."""
    if share.dealer_index != dealing.dealer_index:
        raise InvalidKeyGeneration(
            f"share is from dealer {share.dealer_index}, dealing from {dealing.dealer_index}",
            reason="share-dealer",
        )
    _check_index(share.recipient_index, dealing.trustee_count, "share: recipient index")
    expected = compute_commitment_value(dealing.commitments, share.recipient_index)
    if multiply_generator(share.value) != expected:
        raise InvalidKeyGeneration(
            f"share from dealer {share.dealer_index} to trustee {share.recipient_index} "
            f"does not match the dealer's commitments",
            reason="share-mismatch",
            dealer=share.dealer_index,
            recipient=share.recipient_index,
        )


def compute_election_key(
    poll_id: bytes, trustee_count: int, threshold: int, dealings: Sequence[Dealing]
) -> ElectionKey:
    """Validate the dealings of the qualified dealers and sum their commitments.

    At least t dealers are required, so that at least one is honest when at most
    t-1 trustees are corrupt; that dealer's randomness makes K uniform and unknown.
    """
    _check_parameters(trustee_count, threshold, "election key")
    indices = [dealing.dealer_index for dealing in dealings]
    if len(set(indices)) != len(indices):
        raise InvalidKeyGeneration("two dealings from one dealer", reason="duplicate-dealer")
    if len(dealings) < threshold:
        raise InvalidKeyGeneration(
            f"{len(dealings)} dealings, at least {threshold} are needed",
            reason="too-few-dealers",
        )
    for dealing in dealings:
        validate_dealing(poll_id, trustee_count, threshold, dealing)
    commitments = tuple(
        sum_points(dealing.commitments[k] for dealing in dealings) for k in range(threshold)
    )
    if commitments[0].is_infinity:
        raise InvalidKeyGeneration("the dealings cancel out: K is infinity", reason="zero-key")
    return ElectionKey(trustee_count, tuple(sorted(indices)), commitments)


def compute_share_public_key(election_key: ElectionKey, trustee_index: int) -> Point:
    """``S_j = s_j·G``, computed from public data alone."""
    _check_index(trustee_index, election_key.trustee_count, "trustee index")
    return compute_commitment_value(election_key.commitments, trustee_index)


def compute_secret_share(
    election_key: ElectionKey,
    dealings: Sequence[Dealing],
    shares: Sequence[DealtShare],
    trustee_index: int,
) -> SecretShare:
    """Check the shares trustee j received, one per qualified dealer, and add them up."""
    by_dealer = {dealing.dealer_index: dealing for dealing in dealings}
    received = {share.dealer_index: share for share in shares}
    if sorted(received) != list(election_key.dealers) or len(received) != len(shares):
        raise InvalidKeyGeneration(
            f"trustee {trustee_index} needs exactly one share from each of dealers "
            f"{list(election_key.dealers)}, got {sorted(share.dealer_index for share in shares)}",
            reason="share-set",
        )
    for dealer in election_key.dealers:
        share = received[dealer]
        if share.recipient_index != trustee_index:
            raise InvalidKeyGeneration(
                f"share from dealer {dealer} is for trustee {share.recipient_index}",
                reason="share-recipient",
            )
        if dealer not in by_dealer:
            raise InvalidKeyGeneration(f"no dealing from dealer {dealer}", reason="dealing-missing")
        validate_dealt_share(by_dealer[dealer], share)
    value = sum(share.value for share in shares) % GROUP_ORDER
    if multiply_generator(value) != compute_share_public_key(election_key, trustee_index):
        raise InvalidKeyGeneration(
            f"trustee {trustee_index}: shares do not add up to the public share key "
            f"(dealings differ from the election key)",
            reason="share-public-key",
        )
    return SecretShare(trustee_index, value)


def compute_lagrange_coefficient(index: int, indices: Sequence[int]) -> int:
    """``λ_i = Π_{j≠i} j / (j - i) mod n``: the weight of share i in f(0)."""
    numerator = 1
    denominator = 1
    for other in indices:
        if other != index:
            numerator = numerator * other % GROUP_ORDER
            denominator = denominator * (other - index) % GROUP_ORDER
    return numerator * pow(denominator, -1, GROUP_ORDER) % GROUP_ORDER
