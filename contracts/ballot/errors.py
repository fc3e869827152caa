"""Errors of the ballot cryptography, all under ``consensus.errors.InvalidProof``.

A node, a CLI or the universal verifier catches ``InvalidProof`` and prints the
message, which names exactly what failed ("option 2: 0/1 proof does not
verify"). ``data["reason"]`` carries a stable machine-readable word so clients
never match on message text. The JSON-RPC code stays the one of
``InvalidProof``: these are all "a ballot or credential proof does not verify".
"""

from __future__ import annotations

from consensus.errors import InvalidProof


class InvalidEncoding(InvalidProof):
    """Bytes or JSON that are not the one canonical encoding of a ballot object."""


class InvalidBallot(InvalidProof):
    """An encrypted ballot breaks a poll rule or one of its proofs does not verify."""


class InvalidKeyGeneration(InvalidProof):
    """A trustee's key-generation dealing or share does not verify."""


class InvalidDecryption(InvalidProof):
    """A partial decryption or the tally built from partial decryptions does not verify."""


class TallyOutOfRange(InvalidDecryption):
    """A decrypted count lies outside ``0..bound``: the partial decryptions disagree."""


class InvalidCredential(InvalidProof):
    """An RSA blind signature (eligibility credential) does not verify or is malformed."""
