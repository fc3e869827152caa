"""[QBFT-WAL.1] A crash at every WAL record, replayed through the node's real WAL.

A validator's inputs of one height go through the node's encoders
(``node.bft.encode_event``) into a real ``ConsensusWal`` file. For every
prefix of that log (a crash right after record k), a fresh machine replays the
prefix as the node does after a restart (``decode_event``), then is fed a
hostile continuation: a different block for every build, early timeouts, and
the rest of the original inputs. Across the original run and every replayed
run, the validator never signs two different messages of one kind for one
height and round.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.messages import (
    Payload,
    SignedMessage,
    compute_message_kind,
    compute_signing_digest,
    decode_signed,
    encode_signed,
    recover_sender,
)
from consensus.qbft import (
    BlockBuilt,
    Broadcast,
    Commit,
    Event,
    MessageReceived,
    Qbft,
    Start,
    TimeoutFired,
)
from node.bft import KIND_OWN, decode_event, encode_event
from node.wal import ConsensusWal, WalRecord
from tests.unit.test_qbft import (
    ADDRESSES,
    CHAIN_ID,
    KEYS,
    PARAMS,
    Net,
    block_hash_of,
    is_msg,
    make_block,
    seal_digest_of,
)

Signed = dict[tuple[int, int, int], bytes]


def record_signed(signed_by_me: Signed, signed: SignedMessage[Payload]) -> None:
    payload = signed.payload
    key = (payload.height, payload.round, int(compute_message_kind(payload)))
    digest = compute_signing_digest(payload, CHAIN_ID)
    assert signed_by_me.setdefault(key, digest) == digest, f"conflicting signature at {key}"


def hostile(event: Event) -> list[Event]:
    """A continuation that tempts the machine to sign something else."""
    if isinstance(event, BlockBuilt):
        other = make_block(event.height, event.round, ADDRESSES[0], salt=b"after-crash")
        return [
            BlockBuilt(
                event.height,
                event.round,
                other,
                block_hash_of(other),
                seal_digest_of(other, event.round),
            )
        ]
    if isinstance(event, MessageReceived):
        return [TimeoutFired(event.signed.payload.height, event.signed.payload.round, 99.0), event]
    return [event]


def run_scenario() -> Net:
    # commits of round 0 are lost, so the height needs a round change: the
    # log then holds proposals, prepares, commits and round changes
    net = Net(drop=lambda s, d, m: is_msg(m, Commit, 0), target_height=1).start()
    assert net.run(net.committed(1))
    return net


def write_node_wal(path: Path, validator: int, inputs: list[Event]) -> list[SignedMessage[Payload]]:
    """Handle ``inputs`` as the node does, logging what the node logs; return what it signed.

    Each input is appended before it is handled; each of our signed messages is
    appended (fsynced, in the node) before it is sent, then echoed back.
    """
    wal = ConsensusWal(path)
    machine = Qbft(CHAIN_ID, KEYS[validator], ADDRESSES, PARAMS)
    machine.handle(Start(1, 0.0))
    sent: list[SignedMessage[Payload]] = []
    pending = list(inputs)
    while pending:
        event = pending.pop(0)
        encoded = encode_event(event)
        assert encoded is not None
        if not (isinstance(event, MessageReceived) and event.signed in sent):
            wal.append(WalRecord(1, *encoded), sync=False)
        for action in machine.handle(event):
            if isinstance(action, Broadcast):
                wal.append(WalRecord(1, KIND_OWN, encode_signed(action.signed)), sync=True)
                sent.append(action.signed)
                pending.insert(0, MessageReceived(action.signed, 0.0))
    wal.close()
    return sent


@pytest.mark.parametrize("validator", [0, 1, 2])
def test_a_crash_at_every_wal_record_never_leads_to_a_conflicting_signature(
    tmp_path: Path, validator: int
) -> None:
    net = run_scenario()
    me = ADDRESSES[validator]
    inputs = [
        e
        for e in net.wal[validator]
        if not isinstance(e, Start)
        and not (isinstance(e, MessageReceived) and recover_sender(e.signed, CHAIN_ID) == me)
    ]
    sent = write_node_wal(tmp_path / "wal", validator, inputs)
    assert sent, "the scenario must make this validator sign something"
    reopened = ConsensusWal(tmp_path / "wal")
    records = reopened.replay(1)
    reopened.close()

    for crash_at in range(len(records) + 1):
        escaped: Signed = {}
        for record in records[:crash_at]:
            if record.kind == KIND_OWN:
                record_signed(escaped, decode_signed(record.data))
        consumed = sum(1 for r in records[:crash_at] if r.kind != KIND_OWN)
        machine = Qbft(CHAIN_ID, KEYS[validator], ADDRESSES, PARAMS)
        actions = machine.handle(Start(1, 0.0))
        for record in records[:crash_at]:
            actions += machine.handle(decode_event(1, record.kind, record.data, 0.0))
        for event in inputs[consumed:]:
            for tempting in hostile(event):
                actions += machine.handle(tempting)
        for action in actions:
            if isinstance(action, Broadcast):
                record_signed(escaped, action.signed)


def test_wal_encoding_round_trips_every_event_kind() -> None:
    net = run_scenario()
    for event in net.wal[0]:
        encoded = encode_event(event)
        if encoded is None:
            assert isinstance(event, Start)
            continue
        kind, data = encoded
        decoded = decode_event(1, kind, data, getattr(event, "now", 0.0))
        assert decoded == event
