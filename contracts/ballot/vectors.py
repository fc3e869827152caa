"""Published test vectors of the ballot cryptography (``contracts/ballot/vectors.json``).

The vectors are computed deterministically: every nonce comes from
``SeededScalars``, a SHA-512 counter over a fixed seed, never from the
operating system. So the file can be regenerated and a test fails when the
code drifts from it:

    python -m contracts.ballot.vectors --check   # exit 1 if vectors.json is stale
    python -m contracts.ballot.vectors --write   # regenerate it

An independent verifier should decode every object, run every ``validate_*``
check of docs/spec/ballots.md on the valid vectors, reject every entry of
``invalid``, and reproduce the tally. Proofs need not be reproduced bit for bit:
their nonces are an implementation choice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from contracts.ballot.ballot import PollParameters, compute_tracking_code, encrypt_ballot
from contracts.ballot.blind import compute_credential_message
from contracts.ballot.elgamal import compute_encryption
from contracts.ballot.encoding import encode_hex
from contracts.ballot.group import (
    FIELD_PRIME,
    GENERATOR,
    GROUP_ORDER,
    INFINITY,
    compute_challenge,
    compute_generator_h,
    encode_point,
    encode_scalar,
    encode_transcript,
    multiply_generator,
)
from contracts.ballot.proofs import ZERO_ONE_TAG
from contracts.ballot.tally import (
    compute_aggregate,
    compute_partial_decryption,
    compute_tally,
)
from contracts.ballot.threshold import (
    compute_dealt_share,
    compute_election_key,
    compute_secret_share,
    compute_share_public_key,
    generate_dealing,
)

VECTORS_FILE = "vectors.json"
"""File name of the published vectors, beside this module."""

SEED_TAG = b"polder/ballot/v1/test-vector-nonce"
"""Domain tag of the seeded nonce stream (test vectors only, never production)."""

POLL_ID = bytes.fromhex("00" * 31 + "2a")
"""Poll 42, as a 32-byte id."""

VOTING_ADDRESSES = tuple(bytes([0x10 + index]) * 20 for index in range(5))
"""Five voters' voting addresses."""

SELECTIONS = ((1, 0, 0), (0, 1, 1), (1, 1, 0), (0, 0, 1), (1, 0, 1))
"""Their choices in a 3-option poll that allows 1..2 selections."""


class SeededScalars:
    """Deterministic non-zero scalars: SHA-512(transcript(SEED_TAG, [seed, u32(i)])) mod n."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._counter = 0

    def __call__(self) -> int:
        while True:
            counter = self._counter.to_bytes(4, "big")
            self._counter += 1
            digest = hashlib.sha512(encode_transcript(SEED_TAG, [self._seed, counter])).digest()
            value = int.from_bytes(digest, "big") % GROUP_ORDER
            if value:
                return value


def _hex_scalar(value: int) -> str:
    return encode_hex(encode_scalar(value))


def _hex_point_of(scalar: int) -> str:
    return encode_hex(encode_point(multiply_generator(scalar)))


def compute_group_vectors() -> dict[str, Any]:
    """Generators, infinity, multiples of G and one challenge hash."""
    generator_h, counter = compute_generator_h()
    items = [POLL_ID, VOTING_ADDRESSES[0], (2).to_bytes(4, "big")]
    scalars = [1, 2, 3, GROUP_ORDER - 1, SeededScalars(b"group")()]
    return {
        "generator": encode_hex(encode_point(GENERATOR)),
        "generator_h": encode_hex(encode_point(generator_h)),
        "generator_h_counter": counter,
        "infinity": encode_hex(encode_point(INFINITY)),
        "multiples": [
            {"scalar": _hex_scalar(scalar), "point": _hex_point_of(scalar)} for scalar in scalars
        ],
        "challenge": {
            "tag": ZERO_ONE_TAG.decode(),
            "items": [encode_hex(item) for item in items],
            "transcript": encode_hex(encode_transcript(ZERO_ONE_TAG, items)),
            "challenge": _hex_scalar(compute_challenge(ZERO_ONE_TAG, items)),
        },
    }


def compute_invalid_vectors(valid_ballot: bytes) -> list[dict[str, Any]]:
    """Encodings every decoder or validator must refuse, each with its reason."""
    not_on_curve = b"\x02" + (5).to_bytes(32, "big")  # 5³ + 7 = 132 is not a square mod p
    tampered = bytearray(valid_ballot)
    tampered[1 + 32 + 20 + 1 + 66 + 5] ^= 0x01  # a byte of option 0's first challenge
    return [
        {"kind": "point", "hex": encode_hex(not_on_curve), "reason": "point-off-curve"},
        {
            "kind": "point",
            "hex": encode_hex(b"\x02" + FIELD_PRIME.to_bytes(32, "big")),
            "reason": "point-coordinate",
        },
        {"kind": "point", "hex": encode_hex(b"\x04" + bytes(32)), "reason": "point-prefix"},
        {"kind": "point", "hex": encode_hex(bytes(32) + b"\x01"), "reason": "point-prefix"},
        {"kind": "point", "hex": encode_hex(b"\x02" + bytes(31)), "reason": "point-length"},
        {
            "kind": "scalar",
            "hex": encode_hex(GROUP_ORDER.to_bytes(32, "big")),
            "reason": "scalar-range",
        },
        {"kind": "ballot", "hex": encode_hex(valid_ballot + b"\x00"), "reason": "trailing-bytes"},
        {"kind": "ballot", "hex": encode_hex(b"\x02" + valid_ballot[1:]), "reason": "version"},
        {"kind": "ballot", "hex": encode_hex(bytes(tampered)), "reason": "zero-one-proof"},
    ]


def compute_vectors() -> dict[str, Any]:
    """Every vector, from fixed seeds: group, encryption, key generation, ballots, tally."""
    trustee_count, threshold = 4, 3
    pairs = [
        generate_dealing(
            POLL_ID, index, trustee_count, threshold, SeededScalars(b"dealer%d" % index)
        )
        for index in range(1, trustee_count + 1)
    ]
    dealings = [dealing for _, dealing in pairs]
    election_key = compute_election_key(POLL_ID, trustee_count, threshold, dealings)
    secret_shares = [
        compute_secret_share(
            election_key,
            dealings,
            [compute_dealt_share(secret, index) for secret, _ in pairs],
            index,
        )
        for index in range(1, trustee_count + 1)
    ]
    params = PollParameters(POLL_ID, election_key.public_key, 3, 1, 2)
    ballots = []
    ballot_vectors = []
    for index, (address, selections) in enumerate(zip(VOTING_ADDRESSES, SELECTIONS, strict=True)):
        ballot, opening = encrypt_ballot(
            params, address, selections, SeededScalars(b"voter%d" % index)
        )
        ballots.append(ballot)
        ballot_vectors.append(
            {
                "voting_address": encode_hex(address),
                "selections": list(selections),
                "ballot": encode_hex(ballot.encode()),
                "opening": encode_hex(opening.encode()),
                "tracking_code": encode_hex(compute_tracking_code(ballot)),
            }
        )
    aggregate = compute_aggregate(params, ballots)
    present = [secret_shares[0], secret_shares[1], secret_shares[3]]  # trustee 3 is absent
    partials = [
        compute_partial_decryption(
            POLL_ID,
            election_key,
            share,
            aggregate,
            SeededScalars(b"trustee%d" % share.trustee_index),
        )
        for share in present
    ]
    counts = compute_tally(POLL_ID, election_key, aggregate, partials, len(ballots))
    public_key = election_key.public_key
    return {
        "description": "Polder ballot cryptography test vectors; see docs/spec/ballots.md",
        "group": compute_group_vectors(),
        "encryption": {
            "public_key": encode_hex(encode_point(public_key)),
            "message": 1,
            "nonce": _hex_scalar(7),
            "ciphertext": encode_hex(compute_encryption(public_key, 1, 7).encode()),
        },
        "key_generation": {
            "poll_id": encode_hex(POLL_ID),
            "trustee_count": trustee_count,
            "threshold": threshold,
            "dealings": [encode_hex(dealing.encode()) for dealing in dealings],
            "shares": [
                [encode_hex(compute_dealt_share(secret, j).encode()) for j in range(1, 5)]
                for secret, _ in pairs
            ],
            "election_key": encode_hex(election_key.encode()),
            "share_public_keys": [
                encode_hex(encode_point(compute_share_public_key(election_key, j)))
                for j in range(1, trustee_count + 1)
            ],
        },
        "poll": encode_hex(params.encode()),
        "ballots": ballot_vectors,
        "tally": {
            "aggregate": [encode_hex(ciphertext.encode()) for ciphertext in aggregate],
            "partial_decryptions": [encode_hex(partial.encode()) for partial in partials],
            "bound": len(ballots),
            "counts": list(counts),
        },
        "credential": {
            "poll_id": encode_hex(POLL_ID),
            "voting_address": encode_hex(VOTING_ADDRESSES[0]),
            "message": encode_hex(compute_credential_message(POLL_ID, VOTING_ADDRESSES[0])),
        },
        "invalid": compute_invalid_vectors(ballots[0].encode()),
    }


def render_vectors(vectors: dict[str, Any]) -> str:
    """The exact text of vectors.json."""
    return json.dumps(vectors, indent=2) + "\n"


def load_vectors() -> dict[str, Any]:
    """Read the published vectors (package data)."""
    text = (resources.files("contracts.ballot") / VECTORS_FILE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def main(argv: list[str] | None = None) -> int:
    """``--check``: exit 1 when vectors.json differs from a fresh computation; ``--write``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--check", action="store_true", help="fail if vectors.json is stale")
    group.add_argument("--write", action="store_true", help="regenerate vectors.json")
    arguments = parser.parse_args(argv)
    expected = render_vectors(compute_vectors())
    path = Path(__file__).with_name(VECTORS_FILE)
    if arguments.write:
        path.write_text(expected, encoding="utf-8")
        print(f"wrote {path}")
        return 0
    actual = path.read_text(encoding="utf-8") if path.exists() else ""
    if actual != expected:
        print(f"{path} is stale: run python -m contracts.ballot.vectors --write", file=sys.stderr)
        return 1
    print(f"{path} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
