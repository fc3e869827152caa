"""A trustee municipality's part: key ceremony, its secret share, its partial decryption.

The trustee's only secrets are the key its shares are encrypted to and,
after the ceremony, its share of the election key. Both live in a state file
readable by its owner only; the shares themselves travel on chain encrypted
([POLL-SHARES.1]), so a trustee that lost its state file after dealing can
rebuild its share from the chain with the same encryption key.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coincurve import PrivateKey

from clients.polls.chain import PollChain, PollInfo
from clients.polls.shares import SHARE_SIZE, decrypt_share, encrypt_share
from consensus.errors import ConfigError, InvalidProof
from contracts.ballot import Dealing
from contracts.ballot.tally import PartialDecryption, compute_partial_decryption, compute_tally
from contracts.ballot.threshold import (
    DealtShare,
    SecretShare,
    compute_dealt_share,
    compute_secret_share,
    generate_dealing,
    validate_dealt_share,
)


@dataclass(frozen=True)
class TrusteeState:
    """What one trustee keeps for one poll."""

    poll_id: bytes
    index: int
    """1-based position in the poll's trustee list."""
    encryption_key: bytes
    """Private key its shares are encrypted to."""
    secret_share: int | None = None
    """``s_j``, once the key is final."""

    def save(self, path: Path) -> None:
        """Write the state readable by its owner only (atomically)."""
        data = {
            "pollId": "0x" + self.poll_id.hex(),
            "index": self.index,
            "encryptionKey": "0x" + self.encryption_key.hex(),
            "secretShare": None if self.secret_share is None else hex(self.secret_share),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(path.name + ".tmp")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data, indent=2) + "\n")
        scratch.replace(path)

    @classmethod
    def load(cls, path: Path) -> TrusteeState:
        try:
            mode = path.stat().st_mode
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"trustee state {path} cannot be read: {exc}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"trustee state {path} is readable by others; chmod 600 it")
        share = data.get("secretShare")
        return cls(
            poll_id=bytes.fromhex(data["pollId"][2:]),
            index=int(data["index"]),
            encryption_key=bytes.fromhex(data["encryptionKey"][2:]),
            secret_share=None if share is None else int(share, 16),
        )


def register_key(chain: PollChain, account: Any, poll: PollInfo, path: Path) -> TrusteeState:
    """Create the trustee's share-encryption key, save it, and register it on chain."""
    index = poll.trustee_index(bytes.fromhex(account.address[2:]))
    state = TrusteeState(poll.poll_id, index, secrets.token_bytes(32))
    state.save(path)  # before the transaction: a crash must not lose a registered key
    public = PrivateKey(state.encryption_key).public_key.format(compressed=True)
    chain.send(account, chain.functions.registerTrusteeKey(poll.poll_id, public))
    return state


def post_dealing(chain: PollChain, account: Any, poll: PollInfo, state: TrusteeState) -> Dealing:
    """Deal: commitments and proof on chain, each share encrypted to its trustee."""
    count = len(poll.trustees)
    keys = [
        bytes(chain.functions.trustee_keys(poll.poll_id, j).call()) for j in range(1, count + 1)
    ]
    if any(len(key) != 33 for key in keys):
        raise ConfigError("not every trustee registered its key yet; deal once they have")
    secret, dealing = generate_dealing(poll.poll_id, state.index, count, poll.threshold)
    encrypted = b"".join(
        encrypt_share(
            keys[j - 1], compute_dealt_share(secret, j).value, poll.poll_id, state.index, j
        )
        for j in range(1, count + 1)
    )
    chain.send(account, chain.functions.postDealing(poll.poll_id, dealing.encode(), encrypted))
    return dealing


def derive_secret_share(chain: PollChain, poll: PollInfo, state: TrusteeState) -> TrusteeState:
    """Decrypt the shares dealt to this trustee, check each, and sum them into ``s_j``."""
    if poll.election_key is None:
        raise ConfigError("the election key is not final yet (finalizeKey)")
    dealings: list[Dealing] = []
    shares: list[DealtShare] = []
    offset = (state.index - 1) * SHARE_SIZE
    for event in chain.get_events("DealingPosted", poll.poll_id):
        dealing = Dealing.decode(bytes(event["dealing"]))
        if dealing.dealer_index not in poll.election_key.dealers:
            continue
        encrypted = bytes(event["encryptedShares"])[offset : offset + SHARE_SIZE]
        value = decrypt_share(
            state.encryption_key, encrypted, poll.poll_id, dealing.dealer_index, state.index
        )
        share = DealtShare(dealing.dealer_index, state.index, value)
        validate_dealt_share(dealing, share)
        dealings.append(dealing)
        shares.append(share)
    secret = compute_secret_share(poll.election_key, dealings, shares, state.index)
    return TrusteeState(state.poll_id, state.index, state.encryption_key, secret.value)


def post_partial(
    chain: PollChain, account: Any, poll: PollInfo, state: TrusteeState
) -> PartialDecryption:
    """Decrypt the closed poll's aggregate with this trustee's share, with proofs."""
    if poll.election_key is None or state.secret_share is None:
        raise ConfigError("derive the secret share first (the key must be final)")
    aggregate = chain.get_aggregate(poll.poll_id)
    partial = compute_partial_decryption(
        poll.poll_id,
        poll.election_key,
        SecretShare(state.index, state.secret_share),
        aggregate,
    )
    chain.send(account, chain.functions.postPartial(poll.poll_id, partial.encode()))
    return partial


def publish_result(chain: PollChain, account: Any, poll: PollInfo) -> tuple[int, ...]:
    """Combine the posted partial decryptions and publish the totals (anyone may)."""
    if poll.election_key is None:
        raise ConfigError("the poll has no election key")
    if poll.ballot_count == 0:
        counts: tuple[int, ...] = (0,) * len(poll.options)
    else:
        partials = [
            PartialDecryption.decode(bytes(p))
            for p in chain.functions.get_partials(poll.poll_id).call()
        ]
        if len(partials) < poll.threshold:
            raise InvalidProof(
                f"{len(partials)} partial decryption(s) posted, {poll.threshold} needed"
            )
        counts = compute_tally(
            poll.poll_id,
            poll.election_key,
            chain.get_aggregate(poll.poll_id),
            partials,
            poll.ballot_count,
        )
    chain.send(account, chain.functions.publishResult(poll.poll_id, list(counts)))
    return counts
