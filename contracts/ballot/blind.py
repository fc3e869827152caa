"""RSA blind signatures for eligibility credentials (spec: BALLOT-BLIND).

RFC 9474, variant RSABSSA-SHA384-PSS-Randomized: SHA-384, MGF1-SHA-384, a
48-byte salt, and a random 32-byte prefix prepended to the message. The
function names follow the RFC's operations:

=========================  =====================
RFC 9474                   here
=========================  =====================
Prepare                    ``prepare_message``
Blind                      ``blind_message``
BlindSign                  ``sign_blinded_message``
Finalize                   ``finalize_signature``
Verify (RSASSA-PSS-VERIFY) ``validate_signature``
=========================  =====================

A resident blinds ``compute_credential_message(poll_id, voting_address)``; the
issuing municipality signs without seeing it; the unblinded signature verifies
as a plain RSA-PSS signature. Randomness comes from ``secrets`` (the salt, the
prefix, the blind) and pycryptodome's ``Crypto.Random`` (key generation) only.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from Crypto.PublicKey import RSA
from Crypto.Random import get_random_bytes

from contracts.ballot.errors import InvalidCredential
from contracts.ballot.group import encode_transcript

HASH_SIZE = 48
"""hLen: SHA-384 output bytes."""

SALT_SIZE = 48
"""sLen: PSS salt bytes (RSABSSA-SHA384-PSS uses sLen = hLen)."""

PREFIX_SIZE = 32
"""Bytes of the random message prefix of the Randomized variant."""

MIN_MODULUS_BITS = 2048
"""Smallest accepted issuer modulus (RFC 9474 §6.2 asks for at least 2048 bits)."""

MAX_MODULUS_BITS = 4096
"""Largest accepted issuer modulus; bounds verification work."""

DEFAULT_MODULUS_BITS = 3072
"""Modulus size of newly generated issuer keys."""

CREDENTIAL_TAG = b"polder/credential/v1"
"""Domain tag of the message an issuer blind-signs."""

RandomBytes = Callable[[int], bytes]
"""Source of random bytes; ``secrets.token_bytes`` unless a test injects one."""


@dataclass(frozen=True)
class BlindedMessage:
    """The output of Blind: what goes to the signer, and the client's secret to unblind."""

    blinded_message: bytes
    """``m·r^e mod n`` as k bytes: reveals nothing about the message."""

    inverse: int
    """``r⁻¹ mod n``: the client keeps it to finalize; never sent."""


def _sha384(data: bytes) -> bytes:
    return hashlib.sha384(data).digest()


def _modulus_size(key: RSA.RsaKey) -> int:
    return (key.n.bit_length() + 7) // 8


def generate_signing_key(bits: int = DEFAULT_MODULUS_BITS) -> RSA.RsaKey:
    """A fresh issuer key (e = 65537) from pycryptodome's CSPRNG; use it for nothing else."""
    if not MIN_MODULUS_BITS <= bits <= MAX_MODULUS_BITS:
        raise ValueError(f"modulus size must be in {MIN_MODULUS_BITS}..{MAX_MODULUS_BITS} bits")
    return RSA.generate(bits, randfunc=get_random_bytes)


def compute_mgf1(seed: bytes, length: int) -> bytes:
    """MGF1 with SHA-384 (RFC 8017 B.2.1)."""
    blocks = (length + HASH_SIZE - 1) // HASH_SIZE
    output = b"".join(_sha384(seed + counter.to_bytes(4, "big")) for counter in range(blocks))
    return output[:length]


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def compute_pss_encoding(message: bytes, em_bits: int, salt: bytes) -> bytes:
    """EMSA-PSS-ENCODE (RFC 8017 §9.1.1) with SHA-384, MGF1-SHA-384 and the given salt."""
    em_size = (em_bits + 7) // 8
    if len(salt) != SALT_SIZE:
        raise ValueError(f"salt must be {SALT_SIZE} bytes")
    if em_size < HASH_SIZE + SALT_SIZE + 2:
        raise InvalidCredential("encoding error: modulus too small", reason="encoding-error")
    digest = _sha384(bytes(8) + _sha384(message) + salt)
    padding = bytes(em_size - SALT_SIZE - HASH_SIZE - 2)
    data_block = padding + b"\x01" + salt
    masked = bytearray(_xor(data_block, compute_mgf1(digest, em_size - HASH_SIZE - 1)))
    masked[0] &= 0xFF >> (8 * em_size - em_bits)
    return bytes(masked) + digest + b"\xbc"


def is_valid_pss_encoding(message: bytes, encoded: bytes, em_bits: int) -> bool:
    """EMSA-PSS-VERIFY (RFC 8017 §9.1.2): True for "consistent"."""
    em_size = (em_bits + 7) // 8
    if len(encoded) != em_size or em_size < HASH_SIZE + SALT_SIZE + 2 or encoded[-1] != 0xBC:
        return False
    masked, digest = encoded[: em_size - HASH_SIZE - 1], encoded[em_size - HASH_SIZE - 1 : -1]
    top_mask = 0xFF >> (8 * em_size - em_bits)
    if masked[0] & ~top_mask & 0xFF:
        return False
    data_block = bytearray(_xor(masked, compute_mgf1(digest, len(masked))))
    data_block[0] &= top_mask
    padding_size = em_size - HASH_SIZE - SALT_SIZE - 2
    if any(data_block[:padding_size]) or data_block[padding_size] != 0x01:
        return False
    salt = bytes(data_block[-SALT_SIZE:])
    return secrets.compare_digest(digest, _sha384(bytes(8) + _sha384(message) + salt))


def prepare_message(message: bytes, random_bytes: RandomBytes = secrets.token_bytes) -> bytes:
    """Prepare (RFC 9474 §4.1, randomized): ``random 32-byte prefix ‖ message``."""
    return random_bytes(PREFIX_SIZE) + message


def compute_blinded_message(
    public_key: RSA.RsaKey, prepared_message: bytes, salt: bytes, blind: int
) -> BlindedMessage:
    """Blind (RFC 9474 §4.2) with the salt and the blind r given: the deterministic core."""
    n = public_key.n
    encoded = compute_pss_encoding(prepared_message, n.bit_length() - 1, salt)
    m = int.from_bytes(encoded, "big")
    if math.gcd(m, n) != 1:
        raise InvalidCredential("invalid input: message not coprime with n", reason="invalid-input")
    if not 1 <= blind < n or math.gcd(blind, n) != 1:
        raise InvalidCredential("blinding error: r has no inverse mod n", reason="blinding-error")
    inverse = pow(blind, -1, n)
    z = m * pow(blind, public_key.e, n) % n
    return BlindedMessage(z.to_bytes(_modulus_size(public_key), "big"), inverse)


def blind_message(
    public_key: RSA.RsaKey, prepared_message: bytes, random_bytes: RandomBytes = secrets.token_bytes
) -> BlindedMessage:
    """Blind (RFC 9474 §4.2): fresh random salt and blind r uniform in ``1..n-1``."""
    salt = random_bytes(SALT_SIZE)
    blind = 1 + int.from_bytes(random_bytes(_modulus_size(public_key) + 16), "big") % (
        public_key.n - 1
    )
    return compute_blinded_message(public_key, prepared_message, salt, blind)


def _rsasp1(private_key: RSA.RsaKey, message: int) -> int:
    """RSASP1 by CRT, on a randomly re-blinded base so timing does not track the input."""
    n, p, q = private_key.n, private_key.p, private_key.q
    while True:
        base_blind = secrets.randbelow(n - 2) + 2
        if math.gcd(base_blind, n) == 1:
            break
    blinded = message * pow(base_blind, private_key.e, n) % n
    d = private_key.d
    m1 = pow(blinded, d % (p - 1), p)
    m2 = pow(blinded, d % (q - 1), q)
    # pycryptodome's u is p⁻¹ mod q (Garner's recombination).
    signature = m1 + p * ((m2 - m1) * private_key.u % q)
    return signature * pow(base_blind, -1, n) % n


def sign_blinded_message(private_key: RSA.RsaKey, blinded_message: bytes) -> bytes:
    """BlindSign (RFC 9474 §4.3), with the RFC's check that ``s^e = m`` (fault attacks)."""
    if not private_key.has_private():
        raise ValueError("blind signing needs the private key")
    size = _modulus_size(private_key)
    if len(blinded_message) != size:
        raise InvalidCredential(
            f"unexpected input size: blinded message is {len(blinded_message)} bytes, not {size}",
            reason="input-size",
        )
    m = int.from_bytes(blinded_message, "big")
    if m >= private_key.n:
        raise InvalidCredential(
            "message representative out of range", reason="representative-range"
        )
    s = _rsasp1(private_key, m)
    if pow(s, private_key.e, private_key.n) != m:
        raise InvalidCredential("signing failure", reason="signing-failure")
    return s.to_bytes(size, "big")


def finalize_signature(
    public_key: RSA.RsaKey, prepared_message: bytes, blind_signature: bytes, inverse: int
) -> bytes:
    """Finalize (RFC 9474 §4.4): unblind, then verify, so a bad signer is caught here."""
    size = _modulus_size(public_key)
    if len(blind_signature) != size:
        raise InvalidCredential(
            f"unexpected input size: blind signature is {len(blind_signature)} bytes, not {size}",
            reason="input-size",
        )
    z = int.from_bytes(blind_signature, "big")
    signature = (z * inverse % public_key.n).to_bytes(size, "big")
    validate_signature(public_key, prepared_message, signature)
    return signature


def validate_signature(public_key: RSA.RsaKey, prepared_message: bytes, signature: bytes) -> None:
    """RSASSA-PSS-VERIFY (RFC 8017 §8.1.2) with SHA-384, MGF1-SHA-384, sLen 48."""
    n = public_key.n
    if len(signature) != _modulus_size(public_key):
        raise InvalidCredential("invalid signature: wrong length", reason="signature-length")
    s = int.from_bytes(signature, "big")
    if s >= n:
        raise InvalidCredential("invalid signature: not below n", reason="signature-range")
    em_bits = n.bit_length() - 1
    m = pow(s, public_key.e, n)
    em_size = (em_bits + 7) // 8
    if m.bit_length() > 8 * em_size or not is_valid_pss_encoding(
        prepared_message, m.to_bytes(em_size, "big"), em_bits
    ):
        raise InvalidCredential("invalid signature", reason="signature")


def compute_credential_message(poll_id: bytes, voting_address: bytes) -> bytes:
    """What a credential signs: SHA-256 of the framed tag, poll id and voting address."""
    return hashlib.sha256(encode_transcript(CREDENTIAL_TAG, [poll_id, voting_address])).digest()


def validate_credential(
    public_key: RSA.RsaKey,
    poll_id: bytes,
    voting_address: bytes,
    message_prefix: bytes,
    signature: bytes,
) -> None:
    """Check an issuer's credential for ``voting_address`` in ``poll_id``."""
    if len(message_prefix) != PREFIX_SIZE:
        raise InvalidCredential("message prefix is not 32 bytes", reason="prefix-length")
    message = compute_credential_message(poll_id, voting_address)
    validate_signature(public_key, message_prefix + message, signature)


def encode_public_key(public_key: RSA.RsaKey) -> bytes:
    """An issuer key as DER SubjectPublicKeyInfo (what genesis or the chain stores)."""
    return public_key.public_key().export_key(format="DER")


def decode_public_key(data: bytes) -> RSA.RsaKey:
    """Parse DER SubjectPublicKeyInfo; refuse private keys, other encodings, odd sizes."""
    try:
        key = RSA.import_key(data)
    except (ValueError, IndexError, TypeError):
        raise InvalidCredential("issuer key is not an RSA public key", reason="key") from None
    if key.has_private() or key.export_key(format="DER") != data:
        raise InvalidCredential(
            "issuer key is not in canonical DER SubjectPublicKeyInfo form", reason="key"
        )
    if not MIN_MODULUS_BITS <= key.n.bit_length() <= MAX_MODULUS_BITS:
        raise InvalidCredential(
            f"issuer key modulus is {key.n.bit_length()} bits, not "
            f"{MIN_MODULUS_BITS}..{MAX_MODULUS_BITS}",
            reason="key-size",
        )
    return key
