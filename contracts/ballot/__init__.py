"""Ballot cryptography shared by the node and the clients (spec: docs/spec/ballots.md).

Pure Python over coincurve (secp256k1) and pycryptodome (RSA); no I/O. What
each party calls:

- voter client: ``encrypt_ballot``, ``compute_tracking_code``,
  ``validate_ballot_opening`` (Benaloh spoil check), and for the credential
  ``compute_credential_message``, ``prepare_message``, ``blind_message``,
  ``finalize_signature``;
- issuing municipality: ``generate_signing_key``, ``sign_blinded_message``;
- node (block validity): ``EncryptedBallot.decode``, ``validate_ballot``,
  ``validate_credential``, ``Dealing.decode``/``validate_dealing``,
  ``PartialDecryption.decode``/``validate_partial_decryption``;
- trustee: ``generate_dealing``, ``compute_dealt_share``,
  ``validate_dealt_share``, ``compute_secret_share``,
  ``compute_partial_decryption``;
- anyone (universal verifier): ``compute_election_key``, ``compute_aggregate``,
  ``compute_tally``.

Every failed check raises a subclass of ``consensus.errors.InvalidProof``.
"""

from contracts.ballot.ballot import (
    ADDRESS_SIZE,
    MAX_OPTIONS,
    POLL_ID_SIZE,
    BallotOpening,
    EncryptedBallot,
    EncryptedSelection,
    PollParameters,
    compute_tracking_code,
    encrypt_ballot,
    validate_ballot,
    validate_ballot_opening,
    validate_selections,
)
from contracts.ballot.blind import (
    BlindedMessage,
    blind_message,
    compute_credential_message,
    decode_public_key,
    encode_public_key,
    finalize_signature,
    generate_signing_key,
    prepare_message,
    sign_blinded_message,
    validate_credential,
    validate_signature,
)
from contracts.ballot.elgamal import Ciphertext, compute_ciphertext_sum, compute_encryption
from contracts.ballot.errors import (
    InvalidBallot,
    InvalidCredential,
    InvalidDecryption,
    InvalidEncoding,
    InvalidKeyGeneration,
    TallyOutOfRange,
)
from contracts.ballot.group import INFINITY, Point, decode_point, encode_point
from contracts.ballot.proofs import CompactProof, DisjunctiveProof
from contracts.ballot.tally import (
    PartialDecryption,
    compute_aggregate,
    compute_partial_decryption,
    compute_small_discrete_log,
    compute_tally,
    validate_partial_decryption,
)
from contracts.ballot.threshold import (
    DealerSecret,
    Dealing,
    DealtShare,
    ElectionKey,
    SecretShare,
    compute_dealt_share,
    compute_election_key,
    compute_secret_share,
    compute_share_public_key,
    generate_dealing,
    validate_dealing,
    validate_dealt_share,
)

__all__ = [
    "ADDRESS_SIZE",
    "INFINITY",
    "MAX_OPTIONS",
    "POLL_ID_SIZE",
    "BallotOpening",
    "BlindedMessage",
    "Ciphertext",
    "CompactProof",
    "DealerSecret",
    "Dealing",
    "DealtShare",
    "DisjunctiveProof",
    "ElectionKey",
    "EncryptedBallot",
    "EncryptedSelection",
    "InvalidBallot",
    "InvalidCredential",
    "InvalidDecryption",
    "InvalidEncoding",
    "InvalidKeyGeneration",
    "PartialDecryption",
    "Point",
    "PollParameters",
    "SecretShare",
    "TallyOutOfRange",
    "blind_message",
    "compute_aggregate",
    "compute_ciphertext_sum",
    "compute_credential_message",
    "compute_dealt_share",
    "compute_election_key",
    "compute_encryption",
    "compute_partial_decryption",
    "compute_secret_share",
    "compute_share_public_key",
    "compute_small_discrete_log",
    "compute_tally",
    "compute_tracking_code",
    "decode_point",
    "decode_public_key",
    "encode_point",
    "encode_public_key",
    "encrypt_ballot",
    "finalize_signature",
    "generate_dealing",
    "generate_signing_key",
    "prepare_message",
    "sign_blinded_message",
    "validate_ballot",
    "validate_ballot_opening",
    "validate_credential",
    "validate_dealing",
    "validate_dealt_share",
    "validate_partial_decryption",
    "validate_selections",
    "validate_signature",
]
