"""Exponential ElGamal under the joint election key K (spec: BALLOT-ELGAMAL).

``Enc(m; r) = (r·G, m·G + r·K)``. Adding ciphertexts adds the messages, which is
how the tally is formed without decrypting any single ballot. Decryption yields
``m·G``; the small ``m`` is then found by ``compute_small_discrete_log``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from contracts.ballot.encoding import (
    JsonObject,
    Reader,
    json_object,
    point_from_json,
    point_to_json,
)
from contracts.ballot.group import (
    INFINITY,
    POINT_SIZE,
    Point,
    encode_point,
    multiply_generator,
    sum_points,
)

CIPHERTEXT_SIZE = 2 * POINT_SIZE
"""Bytes of an encoded ciphertext: ``a ‖ b``."""


@dataclass(frozen=True)
class Ciphertext:
    """An exponential-ElGamal ciphertext ``(a, b) = (r·G, m·G + r·K)``."""

    a: Point
    """``r·G``: the nonce commitment."""

    b: Point
    """``m·G + r·K``: the message, blinded by the nonce under the election key."""

    def encode(self) -> bytes:
        """``encode_point(a) ‖ encode_point(b)``, 66 bytes."""
        return encode_point(self.a) + encode_point(self.b)

    @classmethod
    def decode(cls, data: bytes) -> Ciphertext:
        """Decode the 66-byte form; refuse non-canonical points."""
        reader = Reader(data, "ciphertext")
        ciphertext = cls.read(reader, "")
        reader.finish()
        return ciphertext

    @classmethod
    def read(cls, reader: Reader, what: str) -> Ciphertext:
        """Read a ciphertext from inside a larger encoding."""
        return cls(a=reader.point(f"{what}a"), b=reader.point(f"{what}b"))

    def to_json(self) -> JsonObject:
        """``{"a": hex, "b": hex}``."""
        return {"a": point_to_json(self.a), "b": point_to_json(self.b)}

    @classmethod
    def from_json(cls, value: object, what: str = "ciphertext") -> Ciphertext:
        """Parse the JSON form with the byte decoder's checks."""
        fields = json_object(value, ("a", "b"), what)
        return cls(
            a=point_from_json(fields["a"], f"{what}.a"),
            b=point_from_json(fields["b"], f"{what}.b"),
        )


ZERO_CIPHERTEXT = Ciphertext(a=INFINITY, b=INFINITY)
"""The encryption of 0 with nonce 0: the sum of no ciphertexts."""


def compute_encryption(public_key: Point, message: int, nonce: int) -> Ciphertext:
    """Encrypt the small integer ``message`` under ``public_key`` with the given nonce."""
    return Ciphertext(
        a=multiply_generator(nonce),
        b=sum_points((multiply_generator(message), public_key * nonce)),
    )


def compute_ciphertext_sum(ciphertexts: Iterable[Ciphertext]) -> Ciphertext:
    """Homomorphic sum: a ciphertext of the sum of the messages (and of the nonces)."""
    items = list(ciphertexts)
    return Ciphertext(
        a=sum_points(item.a for item in items),
        b=sum_points(item.b for item in items),
    )
