"""The issuer's RSA key: generated once, kept as PEM that only its owner may read.

The private key signs blinded credential requests and nothing else
(``ballots.md`` [BALLOT-BLIND.1]). Its public key, DER SubjectPublicKeyInfo
([BALLOT-BLIND.8]), goes into the poll's ``issuerKeys`` on chain; voters
verify credentials against that copy.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from Crypto.PublicKey import RSA

from consensus.errors import ConfigError
from contracts.ballot.blind import (
    DEFAULT_MODULUS_BITS,
    MAX_MODULUS_BITS,
    MIN_MODULUS_BITS,
    encode_public_key,
    generate_signing_key,
)

PUBLIC_EXPONENT = 65537
"""The only public exponent an issuer key may have."""


def generate_issuer_key(bits: int = DEFAULT_MODULUS_BITS) -> RSA.RsaKey:
    """A fresh issuer key (3072 bits unless told) from pycryptodome's CSPRNG."""
    return generate_signing_key(bits)


def encode_issuer_public_key(key: RSA.RsaKey) -> bytes:
    """The public half as DER SubjectPublicKeyInfo, as ``createPoll`` takes it."""
    return encode_public_key(key)


def save_issuer_key(path: Path, key: RSA.RsaKey) -> None:
    """Write the private key as PKCS#8 PEM, mode 0600; never overwrite an existing file.

    Replacing the key of a running poll would make every credential issued
    so far fail against the key on chain, so an existing file is refused.
    """
    if not key.has_private():
        raise ConfigError("an issuer key file must hold the private key")
    pem = key.export_key(format="PEM", pkcs=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"issuer key file {path} exists; refusing to overwrite it") from None
    except OSError as exc:
        raise ConfigError(f"issuer key file {path} cannot be created: {exc}") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def load_issuer_key(path: Path) -> RSA.RsaKey:
    """Read the issuer's private key; refuse a file that others can read or a wrong key."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"issuer key file {path} cannot be read: {exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"issuer key file {path} is readable by others; run chmod 600 on it")
    try:
        key = RSA.import_key(data)
    except (ValueError, IndexError, TypeError):
        raise ConfigError(f"issuer key file {path} does not hold an RSA key in PEM") from None
    if not key.has_private():
        raise ConfigError(f"issuer key file {path} holds a public key; the private key is needed")
    if not MIN_MODULUS_BITS <= key.n.bit_length() <= MAX_MODULUS_BITS:
        raise ConfigError(
            f"issuer key in {path} has a {key.n.bit_length()}-bit modulus, not "
            f"{MIN_MODULUS_BITS}..{MAX_MODULUS_BITS}"
        )
    if key.e != PUBLIC_EXPONENT:
        raise ConfigError(f"issuer key in {path} has exponent {key.e}, not {PUBLIC_EXPONENT}")
    return key
