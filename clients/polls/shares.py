"""Encrypting a dealer's shares to the other trustees ([POLL-SHARES.1]).

Each share travels on chain, encrypted to its recipient's registered key:
``enc(E) ‖ AES-256-GCM(k, nonce = 0^12, enc(s), aad = poll_id ‖ u8(i) ‖ u8(j))``
with ``E = e·G`` fresh for each share and
``k = SHA-256("polder/poll/v1/share-key" ‖ enc(e·P_j))``. The nonce may be
fixed because every key is used once.
"""

from __future__ import annotations

import hashlib
import secrets

from coincurve import PrivateKey, PublicKey
from Crypto.Cipher import AES

from consensus.errors import InvalidProof

SHARE_TAG = b"polder/poll/v1/share-key"
SHARE_SIZE = 81
"""33 (ephemeral point) + 32 (encrypted scalar) + 16 (GCM tag)."""
NONCE = bytes(12)


def compute_share_key(secret: bytes, point: bytes) -> bytes:
    """Return the AES key shared by ``secret`` and the owner of ``point``."""
    shared = PublicKey(point).multiply(secret).format(compressed=True)
    return hashlib.sha256(SHARE_TAG + shared).digest()


def compute_aad(poll_id: bytes, dealer: int, recipient: int) -> bytes:
    return poll_id + bytes((dealer, recipient))


def encrypt_share(
    recipient_key: bytes, value: int, poll_id: bytes, dealer: int, recipient: int
) -> bytes:
    """Encrypt one share ``value`` (a scalar) to the recipient's 33-byte key."""
    ephemeral = PrivateKey(secrets.token_bytes(32))
    cipher = AES.new(compute_share_key(ephemeral.secret, recipient_key), AES.MODE_GCM, nonce=NONCE)
    cipher.update(compute_aad(poll_id, dealer, recipient))
    ciphertext, tag = cipher.encrypt_and_digest(value.to_bytes(32, "big"))
    return ephemeral.public_key.format(compressed=True) + ciphertext + tag


def decrypt_share(
    private_key: bytes, encrypted: bytes, poll_id: bytes, dealer: int, recipient: int
) -> int:
    """Decrypt a share meant for ``private_key``; raise :class:`InvalidProof` if altered."""
    if len(encrypted) != SHARE_SIZE:
        raise InvalidProof(f"an encrypted share is {SHARE_SIZE} bytes, got {len(encrypted)}")
    cipher = AES.new(compute_share_key(private_key, encrypted[:33]), AES.MODE_GCM, nonce=NONCE)
    cipher.update(compute_aad(poll_id, dealer, recipient))
    try:
        plain = cipher.decrypt_and_verify(encrypted[33:65], encrypted[65:])
    except ValueError as exc:
        raise InvalidProof(f"share from dealer {dealer} does not decrypt: {exc}") from exc
    return int.from_bytes(plain, "big")
