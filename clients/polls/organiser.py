"""The organising municipality's part: creating a poll and closing it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clients.polls.chain import PollChain, encode_addresses


def create_poll(
    chain: PollChain,
    account: Any,
    *,
    question: str,
    options: Sequence[str],
    min_selections: int,
    max_selections: int,
    opens: int,
    closes: int,
    trustees: Sequence[bytes],
    threshold: int,
    issuers: Sequence[bytes],
    issuer_keys: Sequence[bytes],
    issuer_threshold: int,
) -> bytes:
    """Create a poll on chain; return its id (from the PollCreated event)."""
    receipt = chain.send(
        account,
        chain.functions.createPoll(
            question,
            list(options),
            min_selections,
            max_selections,
            opens,
            closes,
            encode_addresses(trustees),
            threshold,
            encode_addresses(issuers),
            list(issuer_keys),
            issuer_threshold,
        ),
    )
    (event,) = chain.process_receipt("PollCreated", receipt)
    return bytes(event["pollId"])
