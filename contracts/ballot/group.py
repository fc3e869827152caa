"""The secp256k1 group the ballot proofs live in (spec: docs/spec/ballots.md, BALLOT-GROUP).

Points are ``Point`` values: a coincurve ``PublicKey`` or the point at infinity,
which coincurve cannot represent but which honest arithmetic does reach (an
aggregate of no ballots, a commitment recomputed from a forged proof). Every
operation here handles it, so no caller has to. Scalars are plain ``int``
reduced modulo ``GROUP_ORDER``.

Also here: the one canonical byte encoding of points and scalars, the framed
transcript hash behind every Fiat-Shamir challenge, and the second generator
``H`` derived by hash-to-curve.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from coincurve import PublicKey

from contracts.ballot.errors import InvalidEncoding

FIELD_PRIME = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
"""p: the curve y² = x³ + 7 is defined over GF(p)."""

GROUP_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""n: the prime order of the group (secp256k1 has cofactor 1: every curve point is in it)."""

POINT_SIZE = 33
"""Bytes of an encoded point: SEC1 compressed, or 33 zero bytes for infinity."""

SCALAR_SIZE = 32
"""Bytes of an encoded scalar: big-endian, strictly below ``GROUP_ORDER``."""

INFINITY_ENCODING = bytes(POINT_SIZE)
"""The encoding of the point at infinity (SEC1 uses a lone 0x00; we keep points fixed-size)."""

GENERATOR_ENCODING = bytes.fromhex(
    "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
)
"""The standard secp256k1 base point G, compressed."""

TRANSCRIPT_LENGTH_SIZE = 4
"""Every transcript item is prefixed by its length as a 4-byte big-endian integer."""

H_TAG = b"polder/ballot/v1/generator-h"
"""Domain tag of the hash-to-curve that derives the second generator H."""

ScalarSource = Callable[[], int]
"""Where randomized functions draw their secret nonces; tests inject a seeded one."""


@dataclass(frozen=True, eq=False, slots=True)
class Point:
    """A group element; ``key is None`` is the point at infinity (the identity)."""

    key: PublicKey | None
    """The coincurve point, or ``None`` for the identity."""

    @property
    def is_infinity(self) -> bool:
        """True for the identity element."""
        return self.key is None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and encode_point(self) == encode_point(other)

    def __hash__(self) -> int:
        return hash(encode_point(self))

    def __repr__(self) -> str:
        return f"Point({encode_point(self).hex()})"

    def __add__(self, other: Point) -> Point:
        return sum_points((self, other))

    def __neg__(self) -> Point:
        if self.key is None:
            return self
        # Negation flips the parity byte of the compressed form: one parse (~5 µs)
        # instead of a multiplication by n-1 (~25 µs).
        encoded = self.key.format()
        return Point(PublicKey(bytes((encoded[0] ^ 1,)) + encoded[1:]))

    def __sub__(self, other: Point) -> Point:
        return sum_points((self, -other))

    def __mul__(self, scalar: int) -> Point:
        scalar %= GROUP_ORDER
        if self.key is None or scalar == 0:
            return INFINITY
        return Point(self.key.multiply(scalar.to_bytes(SCALAR_SIZE, "big")))

    def __rmul__(self, scalar: int) -> Point:
        return self.__mul__(scalar)


INFINITY = Point(None)
"""The identity element."""

GENERATOR = Point(PublicKey(GENERATOR_ENCODING))
"""G, the standard base point."""


def multiply_generator(scalar: int) -> Point:
    """Return ``scalar · G`` (libsecp256k1's fixed-base path, faster than ``G * scalar``)."""
    scalar %= GROUP_ORDER
    if scalar == 0:
        return INFINITY
    return Point(PublicKey.from_valid_secret(scalar.to_bytes(SCALAR_SIZE, "big")))


def sum_points(points: Iterable[Point]) -> Point:
    """Return the sum of ``points`` in one libsecp256k1 call; infinity in or out is fine."""
    keys = [point.key for point in points if point.key is not None]
    if not keys:
        return INFINITY
    if len(keys) == 1:
        return Point(keys[0])
    try:
        return Point(PublicKey.combine_keys(keys))
    except ValueError:
        # libsecp256k1 refuses exactly one thing here: a sum that is the identity.
        return INFINITY


def compute_combination(generator_scalar: int, terms: Sequence[tuple[int, Point]]) -> Point:
    """Return ``generator_scalar · G + Σ scalar_i · point_i`` (the verifier's workhorse)."""
    parts = [multiply_generator(generator_scalar)]
    parts.extend(point * scalar for scalar, point in terms)
    return sum_points(parts)


def encode_point(point: Point) -> bytes:
    """Encode a point in 33 bytes: SEC1 compressed, or ``INFINITY_ENCODING``."""
    if point.key is None:
        return INFINITY_ENCODING
    return point.key.format()


def decode_point(data: bytes, what: str = "point") -> Point:
    """Decode 33 bytes; refuse any encoding that is not the canonical one of a group element."""
    if len(data) != POINT_SIZE:
        raise InvalidEncoding(
            f"{what}: expected {POINT_SIZE} bytes, got {len(data)}", reason="point-length"
        )
    if data == INFINITY_ENCODING:
        return INFINITY
    if data[0] not in (2, 3):
        raise InvalidEncoding(
            f"{what}: prefix 0x{data[0]:02x} is not 0x02, 0x03 or the all-zero infinity",
            reason="point-prefix",
        )
    if int.from_bytes(data[1:], "big") >= FIELD_PRIME:
        # Would alias x - p: two byte strings for one point.
        raise InvalidEncoding(f"{what}: x coordinate is not below p", reason="point-coordinate")
    try:
        return Point(PublicKey(bytes(data)))
    except ValueError:
        raise InvalidEncoding(f"{what}: not on the curve", reason="point-off-curve") from None


def encode_scalar(scalar: int) -> bytes:
    """Encode a scalar in 32 big-endian bytes; it must already be in ``0..n-1``."""
    if not 0 <= scalar < GROUP_ORDER:
        raise InvalidEncoding("scalar is not in 0..n-1", reason="scalar-range")
    return scalar.to_bytes(SCALAR_SIZE, "big")


def decode_scalar(data: bytes, what: str = "scalar") -> int:
    """Decode 32 big-endian bytes; refuse values ``≥ n`` (they would alias a smaller one)."""
    if len(data) != SCALAR_SIZE:
        raise InvalidEncoding(
            f"{what}: expected {SCALAR_SIZE} bytes, got {len(data)}", reason="scalar-length"
        )
    value = int.from_bytes(data, "big")
    if value >= GROUP_ORDER:
        raise InvalidEncoding(f"{what}: not below the group order n", reason="scalar-range")
    return value


def encode_u32(value: int) -> bytes:
    """Encode a small non-negative integer as 4 big-endian bytes (transcript items)."""
    return value.to_bytes(TRANSCRIPT_LENGTH_SIZE, "big")


def encode_transcript(tag: bytes, items: Iterable[bytes]) -> bytes:
    """Frame a domain tag and items as ``len(x) ‖ x`` each, so no two inputs collide."""
    parts = [encode_u32(len(tag)), tag]
    for item in items:
        parts.append(encode_u32(len(item)))
        parts.append(item)
    return b"".join(parts)


def compute_challenge(tag: bytes, items: Iterable[bytes]) -> int:
    """The Fiat-Shamir challenge: SHA-512 of the framed transcript, reduced mod n.

    512 bits reduced mod a 256-bit n leave a bias below 2⁻²⁵⁶.
    """
    digest = hashlib.sha512(encode_transcript(tag, items)).digest()
    return int.from_bytes(digest, "big") % GROUP_ORDER


def random_scalar() -> int:
    """A uniformly random non-zero scalar from the operating system's CSPRNG."""
    return secrets.randbelow(GROUP_ORDER - 1) + 1


@lru_cache(maxsize=1)
def compute_generator_h() -> tuple[Point, int]:
    """Derive H by try-and-increment and return it with the counter that hit.

    x = SHA-256(transcript(H_TAG, [u32(counter)])) for counter = 0, 1, …; the first
    x below p with x³ + 7 a square gives H = (x, even y). Nobody knows log_G(H).
    Reserved for Pedersen commitments; no v1 proof uses it.
    """
    counter = 0
    while True:
        digest = hashlib.sha256(encode_transcript(H_TAG, [encode_u32(counter)])).digest()
        if int.from_bytes(digest, "big") < FIELD_PRIME:
            try:
                return Point(PublicKey(b"\x02" + digest)), counter
            except ValueError:
                pass
        counter += 1
