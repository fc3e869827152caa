"""A resident's part: a fresh voting key, an encrypted ballot, a receipt, and checks.

The voting key is new for each poll and holds no funds (gas is free), so
nothing links it to the resident but the blind-signed credentials, which the
issuers cannot link either. The receipt names the transaction and the
ballot's tracking code; :func:`check_ballot_receipt` is the ballot-specific
part of ``polder verify receipt`` / ``polder vote check``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_hash.auto import keccak

from clients.light.client import VerifiedTransaction
from clients.light.receipt import BODY_CHECKS, Receipt
from clients.polls.chain import PollChain, PollInfo
from consensus.errors import InvalidProof
from contracts.ballot import (
    BallotOpening,
    EncryptedBallot,
    compute_tracking_code,
    encrypt_ballot,
    validate_ballot_opening,
)

BALLOT_CAST_TOPIC = keccak(b"BallotCast(bytes32,address,bytes32,bytes,bytes[],bool)")
"""keccak of the BallotCast event signature (topic 0 of its log)."""


@dataclass(frozen=True)
class CastBallot:
    """What casting returns: the receipt to keep, and the ballot as sent."""

    receipt: Receipt
    ballot: EncryptedBallot
    replaced: bool
    """An earlier ballot of this voting key was replaced (re-vote)."""


def cast_ballot(
    chain: PollChain,
    account: Any,
    poll: PollInfo,
    selections: Sequence[int],
    credentials: Sequence[bytes],
) -> CastBallot:
    """Encrypt ``selections`` (one 0/1 per option), prove, send; return the receipt."""
    voter = bytes.fromhex(account.address[2:])
    ballot, _opening = encrypt_ballot(poll.params(), voter, list(selections))
    tx = chain.send(account, chain.functions.cast(poll.poll_id, ballot.encode(), list(credentials)))
    events = chain.process_receipt("BallotCast", tx)
    genesis = bytes(chain.w3.eth.get_block(0)["hash"])
    receipt = make_ballot_receipt(
        chain,
        poll=poll,
        voting_address=account.address,
        ballot=ballot,
        tx=tx,
        genesis_hash=genesis,
    )
    return CastBallot(receipt, ballot, bool(events and events[0]["replaced"]))


def make_ballot_receipt(
    chain: PollChain,
    *,
    poll: PollInfo,
    voting_address: str,
    ballot: EncryptedBallot,
    tx: Any,
    genesis_hash: bytes,
) -> Receipt:
    """The receipt a voter keeps ([LC-RECEIPT.1], kind ``ballot``)."""
    return Receipt(
        kind="ballot",
        chain_id=chain.w3.eth.chain_id,
        genesis_hash=genesis_hash,
        tx_hash=bytes(tx["transactionHash"]),
        block_number=tx["blockNumber"],
        block_hash=bytes(tx["blockHash"]),
        body={
            "pollId": "0x" + poll.poll_id.hex(),
            "trackingCode": "0x" + compute_tracking_code(ballot).hex(),
            "votingAddress": voting_address,
            "registry": chain.contract.address,
            "question": poll.question,
        },
    )


def spoil_ballot(
    poll: PollInfo, voting_address: bytes, selections: Sequence[int]
) -> tuple[EncryptedBallot, BallotOpening]:
    """Benaloh challenge: encrypt, then open the ballot instead of casting it.

    The opening (the choices and every nonce) is checked against the
    ciphertexts here; a device that encrypted something else than what the
    resident chose is caught. A spoiled ballot is never cast.
    """
    ballot, opening = encrypt_ballot(poll.params(), voting_address, list(selections))
    validate_ballot_opening(poll.params(), ballot, opening)
    return ballot, opening


def check_ballot_receipt(receipt: Receipt, verified: VerifiedTransaction) -> list[str]:
    """Check a ballot receipt's body against the proven transaction receipt ([POLL-RECEIPT.1]).

    The proven receipt must hold a ``BallotCast`` log of the named registry,
    for the named poll and voting key, with the tracking code kept.
    """
    body = receipt.body
    try:
        registry = bytes.fromhex(str(body["registry"])[2:])
        poll_id = bytes.fromhex(str(body["pollId"])[2:])
        voter = bytes.fromhex(str(body["votingAddress"])[2:])
        tracking = bytes.fromhex(str(body["trackingCode"])[2:])
    except (KeyError, ValueError) as exc:
        raise InvalidProof(f"the ballot receipt's body is incomplete: {exc}") from exc
    for log in verified.proven.receipt.logs:
        if (
            log.address == registry
            and len(log.topics) == 3
            and log.topics[0] == BALLOT_CAST_TOPIC
            and log.topics[1] == poll_id
            and log.topics[2][-20:] == voter
        ):
            if log.data[:32] != tracking:
                raise InvalidProof(
                    "the ballot on chain has another tracking code than this receipt"
                )
            return [
                f"ballot of voting key 0x{voter.hex()} in poll 0x{poll_id.hex()[:16]}… is in"
                f" the proven receipt, tracking code 0x{tracking.hex()[:16]}…"
            ]
    raise InvalidProof("the proven transaction holds no BallotCast for this poll and key")


BODY_CHECKS["ballot"] = check_ballot_receipt
