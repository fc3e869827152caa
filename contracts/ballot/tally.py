"""The tally: aggregate, partial decryptions, combination, small discrete log
(spec: BALLOT-TALLY, BALLOT-PARTIAL).

After the poll closes, anyone sums the counted ballots per option. Each present
trustee j publishes ``D_{j,o} = s_j·A_o`` for every option o with a
Chaum-Pedersen proof; any t of them give ``Σ λ_j D_{j,o} = s·A_o`` and so
``m_o·G = B_o - s·A_o``, from which the count ``m_o`` is found by baby-step
giant-step up to the number of ballots.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from contracts.ballot.ballot import MAX_OPTIONS, EncryptedBallot, PollParameters
from contracts.ballot.elgamal import Ciphertext, compute_ciphertext_sum
from contracts.ballot.encoding import (
    JsonObject,
    Reader,
    check_count,
    json_int,
    json_list,
    json_object,
    point_from_json,
    point_to_json,
)
from contracts.ballot.errors import (
    InvalidBallot,
    InvalidDecryption,
    InvalidEncoding,
    TallyOutOfRange,
)
from contracts.ballot.group import (
    GENERATOR,
    INFINITY,
    Point,
    ScalarSource,
    encode_point,
    multiply_generator,
    random_scalar,
    sum_points,
)
from contracts.ballot.proofs import (
    CompactProof,
    PartialDecryptionStatement,
    is_valid_partial_decryption,
    prove_partial_decryption,
)
from contracts.ballot.threshold import (
    MAX_TRUSTEES,
    ElectionKey,
    SecretShare,
    compute_lagrange_coefficient,
    compute_share_public_key,
)

MAX_TALLY_BOUND = 2**32
"""Largest count the discrete-log search accepts (far above any city's electorate)."""


@dataclass(frozen=True)
class PartialDecryption:
    """One trustee's decryption shares of the aggregate, one per option, with proofs."""

    trustee_index: int
    """j, 1..n."""

    shares: tuple[Point, ...]
    """``D_{j,o} = s_j·A_o`` per option o."""

    proofs: tuple[CompactProof, ...]
    """Chaum-Pedersen proof per option that ``log_G(S_j) = log_{A_o}(D_{j,o})``."""

    def __post_init__(self) -> None:
        check_count(self.trustee_index, 1, MAX_TRUSTEES, "partial decryption: trustee index")
        check_count(len(self.shares), 1, MAX_OPTIONS, "partial decryption: option count")
        if len(self.proofs) != len(self.shares):
            raise InvalidEncoding("partial decryption: one proof per share", reason="partial-shape")

    def encode(self) -> bytes:
        """``u8(j) ‖ u8(options) ‖ (D ‖ c ‖ v)*``."""
        parts = [bytes((self.trustee_index, len(self.shares)))]
        for share, proof in zip(self.shares, self.proofs, strict=True):
            parts.append(encode_point(share) + proof.encode())
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> PartialDecryption:
        """Decode and check the structure (not the proofs)."""
        reader = Reader(data, "partial decryption")
        index = check_count(reader.u8("trustee index"), 1, MAX_TRUSTEES, "trustee index")
        count = check_count(reader.u8("option count"), 1, MAX_OPTIONS, "option count")
        shares: list[Point] = []
        proofs: list[CompactProof] = []
        for option in range(count):
            shares.append(reader.point(f"option {option} share"))
            proofs.append(CompactProof.read(reader, f"option {option} proof"))
        reader.finish()
        return cls(index, tuple(shares), tuple(proofs))

    def to_json(self) -> JsonObject:
        """JSON form."""
        return {
            "trustee_index": self.trustee_index,
            "shares": [point_to_json(share) for share in self.shares],
            "proofs": [proof.to_json() for proof in self.proofs],
        }

    @classmethod
    def from_json(cls, value: object) -> PartialDecryption:
        """Parse the JSON form with the byte decoder's checks."""
        fields = json_object(value, ("trustee_index", "shares", "proofs"), "partial decryption")
        shares = json_list(fields["shares"], 1, MAX_OPTIONS, "shares")
        proofs = json_list(fields["proofs"], len(shares), len(shares), "proofs")
        return cls(
            trustee_index=json_int(fields["trustee_index"], 1, MAX_TRUSTEES, "trustee_index"),
            shares=tuple(point_from_json(item, f"shares[{o}]") for o, item in enumerate(shares)),
            proofs=tuple(
                CompactProof.from_json(item, f"proofs[{o}]") for o, item in enumerate(proofs)
            ),
        )


def compute_aggregate(
    params: PollParameters, ballots: Iterable[EncryptedBallot]
) -> tuple[Ciphertext, ...]:
    """Sum the counted ballots option by option (they must already have been validated)."""
    columns: list[list[Ciphertext]] = [[] for _ in range(params.option_count)]
    for ballot in ballots:
        if len(ballot.selections) != params.option_count:
            raise InvalidBallot(
                f"ballot has {len(ballot.selections)} options, the poll has {params.option_count}",
                reason="option-count",
            )
        for column, selection in zip(columns, ballot.selections, strict=True):
            column.append(selection.ciphertext)
    return tuple(compute_ciphertext_sum(column) for column in columns)


def compute_partial_decryption(
    poll_id: bytes,
    election_key: ElectionKey,
    secret_share: SecretShare,
    aggregate: Sequence[Ciphertext],
    random_scalar: ScalarSource = random_scalar,
) -> PartialDecryption:
    """Trustee j's decryption shares of every option, each with its proof."""
    share_public_key = multiply_generator(secret_share.value)
    shares: list[Point] = []
    proofs: list[CompactProof] = []
    for option, ciphertext in enumerate(aggregate):
        statement = PartialDecryptionStatement(
            poll_id=poll_id,
            trustee_index=secret_share.trustee_index,
            option_index=option,
            public_key=election_key.public_key,
            share_public_key=share_public_key,
            ciphertext=ciphertext,
            decryption_share=ciphertext.a * secret_share.value,
        )
        shares.append(statement.decryption_share)
        proofs.append(prove_partial_decryption(statement, secret_share.value, random_scalar))
    return PartialDecryption(secret_share.trustee_index, tuple(shares), tuple(proofs))


def validate_partial_decryption(
    poll_id: bytes,
    election_key: ElectionKey,
    aggregate: Sequence[Ciphertext],
    partial: PartialDecryption,
) -> None:
    """Raise ``InvalidDecryption`` naming the trustee and option whose proof fails."""
    who = f"trustee {partial.trustee_index}"
    if not 1 <= partial.trustee_index <= election_key.trustee_count:
        raise InvalidDecryption(
            f"{who}: not a trustee of this key (1..{election_key.trustee_count})",
            reason="trustee-index",
            trustee=partial.trustee_index,
        )
    if len(partial.shares) != len(aggregate) or len(partial.proofs) != len(aggregate):
        raise InvalidDecryption(
            f"{who}: {len(partial.shares)} shares and {len(partial.proofs)} proofs "
            f"for {len(aggregate)} options",
            reason="partial-shape",
            trustee=partial.trustee_index,
        )
    share_public_key = compute_share_public_key(election_key, partial.trustee_index)
    for option, (ciphertext, share, proof) in enumerate(
        zip(aggregate, partial.shares, partial.proofs, strict=True)
    ):
        statement = PartialDecryptionStatement(
            poll_id=poll_id,
            trustee_index=partial.trustee_index,
            option_index=option,
            public_key=election_key.public_key,
            share_public_key=share_public_key,
            ciphertext=ciphertext,
            decryption_share=share,
        )
        if not is_valid_partial_decryption(statement, proof):
            raise InvalidDecryption(
                f"{who}, option {option}: partial decryption proof does not verify",
                reason="partial-proof",
                trustee=partial.trustee_index,
                option=option,
            )


def compute_tally(
    poll_id: bytes,
    election_key: ElectionKey,
    aggregate: Sequence[Ciphertext],
    partials: Sequence[PartialDecryption],
    bound: int,
) -> tuple[int, ...]:
    """Validate the partials, combine them, and return the count of every option.

    ``bound`` is the largest possible count: the number of ballots summed.
    """
    indices = [partial.trustee_index for partial in partials]
    if len(set(indices)) != len(indices):
        raise InvalidDecryption("two partial decryptions from one trustee", reason="duplicate")
    if len(partials) < election_key.threshold:
        raise InvalidDecryption(
            f"{len(partials)} partial decryptions, {election_key.threshold} are needed",
            reason="too-few-partials",
        )
    for partial in partials:
        validate_partial_decryption(poll_id, election_key, aggregate, partial)
    weights = [compute_lagrange_coefficient(index, indices) for index in indices]
    counts: list[int] = []
    for option, ciphertext in enumerate(aggregate):
        blinding = sum_points(
            partial.shares[option] * weight
            for partial, weight in zip(partials, weights, strict=True)
        )
        message = ciphertext.b - blinding
        try:
            counts.append(compute_small_discrete_log(message, bound))
        except TallyOutOfRange as error:
            raise TallyOutOfRange(
                f"option {option}: {error.message}", reason="out-of-range", option=option
            ) from None
    return tuple(counts)


@lru_cache(maxsize=4)
def _baby_steps(size: int) -> dict[bytes, int]:
    """Table ``encode(j·G) → j`` for j in 0..size-1."""
    table: dict[bytes, int] = {}
    point = INFINITY
    for step in range(size):
        table[encode_point(point)] = step
        point = point + GENERATOR
    return table


def compute_small_discrete_log(point: Point, bound: int) -> int:
    """Return m in ``0..bound`` with ``m·G = point``, by baby-step giant-step.

    O(√bound) time and memory; raises ``TallyOutOfRange`` when no such m exists.
    """
    if not 0 <= bound <= MAX_TALLY_BOUND:
        raise ValueError(f"bound must be in 0..{MAX_TALLY_BOUND}")
    size = math.isqrt(bound) + 1
    table = _baby_steps(size)
    giant = -multiply_generator(size)
    current = point
    for giant_step in range(bound // size + 1):
        step = table.get(encode_point(current))
        if step is not None:
            value = giant_step * size + step
            if value <= bound:
                return value
            break
        current = current + giant
    raise TallyOutOfRange(f"decrypted value is not in 0..{bound}", reason="out-of-range")
