"""The PollRegistry as a client sees it: poll parameters, events, and transactions.

Reads go through ``eth_call`` and ``eth_getLogs`` of one node; the universal
verifier compares several nodes' answers and proves the result with the
light client (:mod:`clients.polls.verifier`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.logs import DISCARD

from clients.web3tools import connect, iterate_logs, send_call
from contracts.ballot import Ciphertext, ElectionKey, PollParameters, decode_point
from contracts.loader import load_artifact

REGISTRY_NAME = "PollRegistry"
DEFAULT_REGISTRY = "0x0000000000000000000000000000000000000300"
"""Where the genesis template places the PollRegistry."""
CIPHERTEXT_SIZE = 66
EVENTS = (
    "PollCreated",
    "TrusteeKeyRegistered",
    "DealingPosted",
    "KeyFinalized",
    "IssuedReported",
    "BallotCast",
    "PollClosed",
    "PartialPosted",
    "ResultPublished",
)


@dataclass(frozen=True)
class PollInfo:
    """A poll's parameters and state, as the registry holds them."""

    poll_id: bytes
    number: int
    question: str
    options: tuple[str, ...]
    min_selections: int
    max_selections: int
    opens: int
    closes: int
    trustees: tuple[bytes, ...]
    threshold: int
    issuers: tuple[bytes, ...]
    issuer_keys: tuple[bytes, ...]
    """DER RSA public keys, in issuer order."""
    issuer_threshold: int
    key_final: bool
    closed: bool
    published: bool
    ballot_count: int
    election_key: ElectionKey | None

    def params(self) -> PollParameters:
        """What ballots of this poll are encrypted for and checked against."""
        if self.election_key is None:
            raise ValueError("the election key of this poll is not final yet")
        return PollParameters(
            poll_id=self.poll_id,
            public_key=self.election_key.public_key,
            option_count=len(self.options),
            min_selections=self.min_selections,
            max_selections=self.max_selections,
        )

    def trustee_index(self, address: bytes) -> int:
        """Return the 1-based index of a trustee."""
        return self.trustees.index(address) + 1


def decode_ciphertexts(data: bytes) -> tuple[Ciphertext, ...]:
    """Split ``m * 66`` bytes into ciphertexts."""
    return tuple(
        Ciphertext(decode_point(data[i : i + 33]), decode_point(data[i + 33 : i + 66]))
        for i in range(0, len(data), CIPHERTEXT_SIZE)
    )


class PollChain:
    """One node's view of the PollRegistry, and transactions to it."""

    def __init__(self, w3: Web3, address: str = DEFAULT_REGISTRY) -> None:
        self.w3 = w3
        self.contract = w3.eth.contract(
            address=to_checksum_address(address), abi=load_artifact(REGISTRY_NAME).abi
        )
        self._questions: dict[bytes, str] = {}
        """Each poll's question (fixed at creation), so reading a poll scans the logs once."""

    @property
    def functions(self) -> Any:
        return self.contract.functions

    def send(self, account: Any, call: Any) -> Any:
        """Send a transaction to the registry; return its receipt."""
        return send_call(self.w3, account, call)

    def get_poll_id(self, number: int) -> bytes:
        return bytes(self.functions.poll_ids(number).call())

    def get_poll(self, poll_id: bytes) -> PollInfo:
        """Read a poll's parameters (the question from its creation event)."""
        state = self.functions.polls(poll_id).call()
        (number, creator, _, min_sel, max_sel, opens, closes, threshold, issuer_threshold,
         key_final, closed, published, ballots) = state  # fmt: skip
        if int(creator, 16) == 0:
            raise LookupError(f"no poll 0x{poll_id.hex()} in this registry")
        if poll_id not in self._questions:
            created = self.get_events("PollCreated", poll_id)
            self._questions[poll_id] = created[0]["question"] if created else ""
        key = bytes(self.functions.election_key(poll_id).call())
        return PollInfo(
            poll_id=poll_id,
            number=number,
            question=self._questions[poll_id],
            options=tuple(self.functions.get_options(poll_id).call()),
            min_selections=min_sel,
            max_selections=max_sel,
            opens=opens,
            closes=closes,
            trustees=tuple(_address(a) for a in self.functions.get_trustees(poll_id).call()),
            threshold=threshold,
            issuers=tuple(_address(a) for a in self.functions.get_issuers(poll_id).call()),
            issuer_keys=tuple(bytes(k) for k in self.functions.get_issuer_keys(poll_id).call()),
            issuer_threshold=issuer_threshold,
            key_final=key_final,
            closed=closed,
            published=published,
            ballot_count=ballots,
            election_key=ElectionKey.decode(key) if key else None,
        )

    def get_aggregate(self, poll_id: bytes) -> tuple[Ciphertext, ...]:
        return decode_ciphertexts(bytes(self.functions.aggregate(poll_id).call()))

    def get_events(self, name: str, poll_id: bytes) -> list[dict[str, Any]]:
        """Return the poll's events of one kind, in chain order, with their location."""
        return self.get_poll_events(poll_id, (name,))[name]

    def get_poll_events(
        self, poll_id: bytes, names: Sequence[str] = EVENTS
    ) -> dict[str, list[dict[str, Any]]]:
        """Return the poll's events of the kinds ``names``, each in chain order.

        One pass over the chain: each ``eth_getLogs`` asks for every kind at
        once (topic 0 is any of them, topic 1 the poll id).
        """
        events = {name: getattr(self.contract.events, name)() for name in names}
        by_topic = {HexBytes(event.topic): (name, event) for name, event in events.items()}
        found: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        head = self.w3.eth.block_number
        log_filter = {
            "address": self.contract.address,
            "topics": [[e.topic for e in events.values()], "0x" + poll_id.hex()],
        }
        for log in iterate_logs(self.w3, log_filter, head):
            name, event = by_topic[HexBytes(log["topics"][0])]
            found[name].append(
                {
                    **event.process_log(log)["args"],
                    "_block": log["blockNumber"],
                    "_tx": bytes(log["transactionHash"]),
                    "_index": log["logIndex"],
                }
            )
        return found

    def process_receipt(self, name: str, receipt: Any) -> list[dict[str, Any]]:
        event = getattr(self.contract.events, name)()
        return [dict(e["args"]) for e in event.process_receipt(receipt, errors=DISCARD)]


def make_issued_reporter(url: str, registry: str, account: Any) -> Callable[[bytes, int], None]:
    """An issuer's ``report(poll_id, count)``: a ``reportIssued`` transaction (own connection)."""
    chain = PollChain(connect(url), registry)

    def report(poll_id: bytes, count: int) -> None:
        chain.send(account, chain.functions.reportIssued(poll_id, count))

    return report


def _address(value: str) -> bytes:
    return bytes.fromhex(value[2:])


def encode_addresses(addresses: Sequence[bytes]) -> list[str]:
    return [to_checksum_address(a) for a in addresses]
