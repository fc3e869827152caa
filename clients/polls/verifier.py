"""The universal verifier: recompute a poll's outcome from chain data alone.

:func:`collect_record` reads the poll's events from every node given and
requires them to be identical (so no single node can show a private
version); :func:`verify_record` then re-checks everything from that record
and nothing else — credentials, every ballot proof, the last-ballot rule,
ballots ≤ credentials issued, the key ceremony, the homomorphic aggregate,
every partial decryption proof and the totals — and returns each check with
its verdict. It is pure: a tampered copy of a record fails, naming the check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clients.polls.chain import PollChain, decode_ciphertexts
from clients.report import Report as CheckReport
from consensus.errors import InvalidProof
from contracts.ballot import (
    ElectionKey,
    EncryptedBallot,
    PollParameters,
    compute_tracking_code,
    decode_public_key,
    validate_ballot,
    validate_credential,
)
from contracts.ballot.tally import (
    PartialDecryption,
    compute_aggregate,
    compute_tally,
    validate_partial_decryption,
)
from contracts.ballot.threshold import Dealing, compute_election_key, validate_dealing

PREFIX_SIZE = 32


@dataclass(frozen=True)
class PollRecord:
    """Every event of one poll, in chain order, as the nodes served it."""

    poll_id: bytes
    events: dict[str, list[dict[str, Any]]]
    nodes: tuple[str, ...] = ()
    """The nodes that served this very record."""


@dataclass
class Report(CheckReport):
    """The poll verifier's checks, and the totals once they verified."""

    counts: tuple[int, ...] = ()


def collect_record(chains: Sequence[tuple[str, PollChain]], poll_id: bytes) -> PollRecord:
    """Read the poll's events from every node; raise unless all nodes agree."""
    records = []
    for name, chain in chains:
        events = chain.get_poll_events(poll_id)
        records.append((name, events))
    first_name, first = records[0]
    for name, events in records[1:]:
        if normalize(events) != normalize(first):
            raise InvalidProof(
                f"nodes disagree on the poll's record: {first_name} and {name} serve different"
                " events; do not trust either until this is explained"
            )
    return PollRecord(poll_id, first, tuple(name for name, _ in records))


def normalize(events: dict[str, list[dict[str, Any]]]) -> list[Any]:
    return [(kind, [sorted(map(repr, e.items())) for e in items]) for kind, items in events.items()]


def verify_record(record: PollRecord) -> Report:
    """Re-check everything about a poll from its record; see the module docstring."""
    report = Report()
    events = record.events
    created = (events.get("PollCreated") or [{}])[0]
    state: dict[str, Any] = {}

    def parameters() -> str:
        if not created:
            raise InvalidProof("the record has no PollCreated event")
        state["trustees"] = list(created["trustees"])
        state["issuer_keys"] = [decode_public_key(bytes(k)) for k in created["issuerKeys"]]
        trustees, issuers = len(created["trustees"]), len(created["issuers"])
        bounds = f"{created['minSelections']}..{created['maxSelections']}"
        return (
            f"{created['question']!r}: {len(created['options'])} options, choose {bounds};"
            f" {created['threshold']} of {trustees} trustees decrypt;"
            f" {created['issuerThreshold']} of {issuers} issuers vouch for each voter"
        )

    if not report.check("poll parameters", parameters):
        return report
    report.check("key ceremony", lambda: check_key_ceremony(record.poll_id, created, events, state))
    report.check("ballots", lambda: check_ballots(record.poll_id, created, events, state))
    report.check("ballots ≤ credentials issued", lambda: check_issued(created, events, state))
    report.check("aggregate", lambda: check_aggregate(events, state))
    report.check("partial decryptions", lambda: check_partials(record.poll_id, events, state))
    if report.check("totals", lambda: check_totals(record.poll_id, created, events, state)):
        report.counts = tuple(state["counts"])
    return report


def check_key_ceremony(
    poll_id: bytes, created: dict[str, Any], events: dict[str, Any], state: dict[str, Any]
) -> str:
    trustees, threshold = len(created["trustees"]), created["threshold"]
    dealings = []
    for event in events["DealingPosted"]:
        dealing = Dealing.decode(bytes(event["dealing"]))
        if dealing.dealer_index != event["index"]:
            raise InvalidProof(
                f"dealing of trustee {event['index']} names dealer {dealing.dealer_index}"
            )
        validate_dealing(poll_id, trustees, threshold, dealing)
        dealings.append(dealing)
    finalized = events["KeyFinalized"]
    if len(finalized) != 1:
        raise InvalidProof(f"{len(finalized)} KeyFinalized events, expected 1")
    key = compute_election_key(poll_id, trustees, threshold, dealings)
    if key.encode() != bytes(finalized[0]["electionKey"]):
        raise InvalidProof("the election key on chain is not the one the dealings give")
    state["key"] = key
    return f"{len(dealings)} dealings valid; election key recomputed"


def check_ballots(
    poll_id: bytes, created: dict[str, Any], events: dict[str, Any], state: dict[str, Any]
) -> str:
    key: ElectionKey = state["key"]
    params = PollParameters(
        poll_id=poll_id,
        public_key=key.public_key,
        option_count=len(created["options"]),
        min_selections=created["minSelections"],
        max_selections=created["maxSelections"],
    )
    closes = events["PollClosed"]
    last: dict[str, EncryptedBallot] = {}
    holders: list[set[str]] = [set() for _ in created["issuers"]]
    for event in events["BallotCast"]:
        voter = event["voter"]
        ballot = EncryptedBallot.decode(bytes(event["ballot"]))
        where = f"ballot of {voter} in block {event['_block']}"
        validate_ballot(params, bytes.fromhex(voter[2:]), ballot)
        if compute_tracking_code(ballot) != bytes(event["trackingCode"]):
            raise InvalidProof(f"{where}: tracking code does not match the ballot")
        if bool(event["replaced"]) != (voter in last):
            raise InvalidProof(f"{where}: the replaced flag contradicts the earlier ballots")
        issuers = validate_credentials(
            poll_id, voter, event["credentials"], state["issuer_keys"], created["issuerThreshold"]
        )
        for index in issuers:
            holders[index].add(voter)
        if closes and event["_block"] > closes[0]["_block"]:
            raise InvalidProof(f"{where}: cast after the poll closed")
        last[voter] = ballot
    state.update(params=params, last=last, holders=holders)
    replaced = len(events["BallotCast"]) - len(last)
    return (
        f"{len(events['BallotCast'])} ballots, every proof and credential valid;"
        f" {len(last)} counted (the last of each voting key), {replaced} replaced"
    )


def validate_credentials(
    poll_id: bytes, voter: str, credentials: Sequence[bytes], keys: Sequence[Any], threshold: int
) -> set[int]:
    """Return the issuers whose credential for ``voter`` verifies; at least ``threshold``."""
    address = bytes.fromhex(voter[2:])
    issuers: set[int] = set()
    for raw in credentials:
        credential = bytes(raw)
        index = credential[0]
        if index >= len(keys):
            raise InvalidProof(f"credential of {voter} names issuer {index}, which does not exist")
        prefix, signature = credential[1 : 1 + PREFIX_SIZE], credential[1 + PREFIX_SIZE :]
        validate_credential(keys[index], poll_id, address, prefix, signature)
        issuers.add(index)
    if len(issuers) < threshold:
        raise InvalidProof(
            f"{voter} has credentials from {len(issuers)} issuers, {threshold} needed"
        )
    return issuers


def check_issued(created: dict[str, Any], events: dict[str, Any], state: dict[str, Any]) -> str:
    reported = [0] * len(created["issuers"])
    for event in events["IssuedReported"]:
        reported[event["index"]] = max(reported[event["index"]], event["count"])
    for index, voters in enumerate(state["holders"]):
        if len(voters) > reported[index]:
            raise InvalidProof(
                f"issuer {index} reported {reported[index]} credentials, but {len(voters)}"
                " voting keys hold one of its credentials"
            )
    return ", ".join(
        f"issuer {i}: {len(v)} ≤ {reported[i]}" for i, v in enumerate(state["holders"])
    )


def check_aggregate(events: dict[str, Any], state: dict[str, Any]) -> str:
    closes = events["PollClosed"]
    if len(closes) != 1:
        raise InvalidProof("the poll is not closed")
    aggregate = compute_aggregate(state["params"], state["last"].values())
    if closes[0]["ballots"] != len(state["last"]):
        counted, held = closes[0]["ballots"], len(state["last"])
        raise InvalidProof(f"the registry counted {counted} ballots, the record holds {held}")
    stored = decode_ciphertexts(bytes(closes[0]["aggregate"]))
    if state["last"] and stored != aggregate:
        raise InvalidProof("the aggregate on chain is not the sum of the counted ballots")
    state["aggregate"] = aggregate
    return f"sum of {len(state['last'])} counted ballots equals the aggregate at close"


def check_partials(poll_id: bytes, events: dict[str, Any], state: dict[str, Any]) -> str:
    partials = []
    for event in events["PartialPosted"]:
        partial = PartialDecryption.decode(bytes(event["partial"]))
        validate_partial_decryption(poll_id, state["key"], state["aggregate"], partial)
        partials.append(partial)
    state["partials"] = partials
    return f"{len(partials)} partial decryptions, every proof valid"


def check_totals(
    poll_id: bytes, created: dict[str, Any], events: dict[str, Any], state: dict[str, Any]
) -> str:
    published = events["ResultPublished"]
    if len(published) != 1:
        raise InvalidProof("no result is published")
    if state["last"]:
        counts = compute_tally(
            poll_id, state["key"], state["aggregate"], state["partials"], len(state["last"])
        )
    else:
        counts = (0,) * len(created["options"])
    if tuple(published[0]["counts"]) != counts:
        raise InvalidProof(f"the published counts {published[0]['counts']} are not {list(counts)}")
    state["counts"] = counts
    return ", ".join(f"{o}: {c}" for o, c in zip(created["options"], counts, strict=True))
