"""A full poll on a real 4-validator devnet: 100 residents, attacks, threshold tally, verifier.

The poll of the first pilot: 100 residents, 3 options, the 4 municipalities
as trustees with threshold 3, 2 of 3 issuers required, one trustee offline at
tally time. Every attack the issue lists is tried and refused with a clear
reason; the universal verifier passes on the honest record and fails, naming
the check, on tampered copies; a resident's receipt verifies through the
light client; a resident who votes again is counted once, with the last
ballot.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from devnet_tools import Devnet, run_polder
from eth_account import Account

from clients.issuer.client import Credential, encode_credential
from clients.issuer.errors import AlreadyIssued
from clients.polls.chain import PollChain
from clients.polls.demo import PollWalkthrough, Resident
from clients.polls.verifier import collect_record, verify_record
from clients.web3tools import TransactionRefused, build_signed, connect, submit
from contracts.ballot import (
    EncryptedBallot,
    compute_encryption,
    encrypt_ballot,
    finalize_signature,
    prepare_message,
    sign_blinded_message,
)
from contracts.ballot.blind import blind_message, compute_credential_message
from contracts.ballot.tally import compute_partial_decryption
from contracts.ballot.threshold import SecretShare

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RESIDENTS = 100
WINDOW = 150
"""Seconds the poll stays open: credentials, 100 ballots and the attacks fit in it."""


def cast(
    walk: PollWalkthrough, account: Any, ballot: EncryptedBallot, credentials: list[bytes]
) -> Any:
    call = walk.chain.functions.cast(walk.poll_id, ballot.encode(), credentials)
    return walk.chain.send(account, call)


def refused(
    walk: PollWalkthrough, account: Any, ballot: EncryptedBallot, credentials: list[bytes]
) -> str:
    with pytest.raises(TransactionRefused) as caught:
        cast(walk, account, ballot, credentials)
    return caught.value.message


def forge_credential(walk: PollWalkthrough, issuer: int, poll_id: bytes, address: bytes) -> bytes:
    """A credential really signed by issuer ``issuer``'s key, but for ``poll_id``."""
    key = walk.issuers[issuer][0]
    public = key.public_key()
    prepared = prepare_message(compute_credential_message(poll_id, address))
    blinded = blind_message(public, prepared)
    signature = finalize_signature(
        public, prepared, sign_blinded_message(key, blinded.blinded_message), blinded.inverse
    )
    return encode_credential(Credential(issuer, prepared[:32], signature))


def raise_counts(events: dict[str, Any], _: bytes) -> None:
    published = events["ResultPublished"][0]
    published["counts"] = [count + 1 for count in published["counts"]]


def drop_ballot(events: dict[str, Any], _: bytes) -> None:
    events["BallotCast"].pop(5)


def change_tracking_code(events: dict[str, Any], _: bytes) -> None:
    events["BallotCast"][7]["trackingCode"] = b"\x00" * 32


def hide_issuance(events: dict[str, Any], _: bytes) -> None:
    events["IssuedReported"].clear()


def swap_partial(events: dict[str, Any], wrong: bytes) -> None:
    events["PartialPosted"][0]["partial"] = wrong


def change_key(events: dict[str, Any], _: bytes) -> None:
    key = events["KeyFinalized"][0]["electionKey"]
    events["KeyFinalized"][0]["electionKey"] = bytes([key[0] ^ 1]) + key[1:]


TAMPERS = [
    (raise_counts, "totals"),
    (drop_ballot, "aggregate"),
    (change_tracking_code, "ballots"),
    (hide_issuance, "ballots ≤ credentials issued"),
    (swap_partial, "partial decryptions"),
    (change_key, "key ceremony"),
]
"""A change to a copy of the record, and the first check it must fail."""


@pytest.mark.timeout(900)
def test_a_poll_of_100_residents(net: Devnet, tmp_path: Path) -> None:
    lines: list[str] = []
    walk = PollWalkthrough(Path(net.directory), RESIDENTS, lines.append)
    walk.create(window=WINDOW)
    walk.key_ceremony()
    poll = walk.poll
    params = poll.params()

    with walk.issuer_services() as services:
        residents = walk.residents(services)
        # [POLL-ISSUE] a second credential for one voter id is refused by the issuer
        with pytest.raises(AlreadyIssued):
            walk.request_credentials(services, 1, Account.create(), (0,))
        walk.cast(residents)

        first, second = residents[0], residents[1]
        stranger = Account.create()
        stranger_address = bytes.fromhex(stranger.address[2:])
        ballot, _ = encrypt_ballot(params, stranger_address, [1, 0, 0])
        # a spent credential used by another key does not verify for that key
        assert "credential from issuer" in refused(walk, stranger, ballot, first.credentials)
        # a forged credential, and a real issuer's signature for another poll
        forged = bytearray(first.credentials[0])
        forged[-1] ^= 1
        assert "does not verify" in refused(
            walk, stranger, ballot, [bytes(forged), first.credentials[1]]
        )
        other_poll = [forge_credential(walk, j, b"\x07" * 32, stranger_address) for j in (0, 1)]
        assert "credential from issuer" in refused(walk, stranger, ballot, other_poll)

        # ballots that break the rules, from a resident with valid credentials
        third = residents[2]
        third_address = bytes.fromhex(third.account.address[2:])
        honest, _ = encrypt_ballot(params, third_address, [1, 0, 0])
        two = compute_encryption(params.public_key, 2, 12345)
        encrypts_two = replace(
            honest,
            selections=(replace(honest.selections[0], ciphertext=two), *honest.selections[1:]),
        )
        assert "0/1 proof does not verify" in refused(
            walk, third.account, encrypts_two, third.credentials
        )
        other, _ = encrypt_ballot(params, third_address, [0, 1, 0])
        too_many = replace(
            honest, selections=(honest.selections[0], other.selections[1], honest.selections[2])
        )
        reason = refused(walk, third.account, too_many, third.credentials)
        assert "proof does not verify" in reason
        assert "option" not in reason  # it is the range proof, not a 0/1 proof

        # a replayed ballot: the same transaction again, and the same ballot in a new one
        replay_ballot, _ = encrypt_ballot(
            params, bytes.fromhex(second.account.address[2:]), [0, 0, 1]
        )
        raw = build_signed(walk.w3, second.account, walk.chain.functions.cast(
            walk.poll_id, replay_ballot.encode(), second.credentials))  # fmt: skip
        walk.chain.w3.eth.wait_for_transaction_receipt(submit(walk.w3, raw), timeout=60)
        with pytest.raises(TransactionRefused):
            submit(walk.w3, raw)
        assert "already cast" in refused(walk, second.account, replay_ballot, second.credentials)
        # that was a re-vote: resident 2 now counts for option 2, once
        residents[1] = Resident(second.voter_id, second.account, [0, 0, 1], second.credentials)

    walk.close()
    late, _ = encrypt_ballot(params, bytes.fromhex(first.account.address[2:]), [0, 1, 0])
    assert "closed" in refused(walk, first.account, late, first.credentials)

    # a trustee posting a wrong partial decryption is refused
    state = walk.states[3]
    wrong = compute_partial_decryption(
        walk.poll_id,
        poll.election_key,
        SecretShare(state.index, (state.secret_share or 0) + 1),
        walk.chain.get_aggregate(walk.poll_id),
    )
    with pytest.raises(TransactionRefused, match="partial decryption"):
        walk.chain.send(
            walk.accounts[3], walk.chain.functions.postPartial(walk.poll_id, wrong.encode())
        )

    counts = walk.tally(trustees=(0, 1, 2))  # Maassluis stays offline
    expected = [sum(r.selections[o] for r in residents) for o in range(3)]
    assert list(counts) == expected
    assert sum(counts) == RESIDENTS

    report = walk.verify()
    assert report.passed, "\n".join(lines)
    assert report.counts == tuple(expected)

    # the verifier names the check that a tampered copy of the record fails
    chains = [(u, PollChain(connect(u), walk.chain.contract.address)) for u in walk.urls]
    record = collect_record(chains, walk.poll_id)
    for tamper, check in TAMPERS:
        events = copy.deepcopy(record.events)
        tamper(events, wrong.encode())
        failed = [
            name for name, ok, _ in verify_record(replace(record, events=events)).checks if not ok
        ]
        assert failed[:1] == [check], (check, failed)

    # the resident checks their receipt through the light client, and the command line agrees
    receipt = walk.folder / "receipts" / "resident-004.json"
    done = run_polder("vote", "check", str(receipt), "--devnet", str(net.directory),
                      "--store", str(tmp_path / "light.sqlite"))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ballot of voting key" in done.stdout
    done = run_polder("verify", "poll", "0x" + walk.poll_id.hex(), "--devnet", str(net.directory))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERIFIED" in done.stdout.splitlines()[-1]
