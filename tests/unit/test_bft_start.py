"""The node's BFT driver: when it starts a height, and how it takes a gossiped block.

A height starts after a block sync, never during it ([QBFT-PERIOD.1]); a
gossiped block this node checked already is committed from its staged state
([QBFT-GOSSIP-STAGED.1]).

The driver (``node.bft.Bft``) runs here on a real in-memory chain and pool.
Only its surroundings are stand-ins: the peer that serves blocks, the chain
thread (the function runs on the event loop, with a yield before and after,
as awaiting the real thread does) and the message sender.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import rlp
from eth.db.atomic import AtomicDB
from eth.exceptions import TransactionNotFound

from consensus.qbft import BlockBuilt, BuildBlock, Start
from node.bft import Bft
from node.chain import Chain
from node.mempool import Mempool
from tests.unit.test_chain import (
    VALIDATOR_KEYS,
    address_of,
    build,
    build_and_commit,
    fresh_key,
    make_genesis,
    record,
    seal,
    word,
)
from tests.unit.test_chain import send as as_received


class ServingPeer:
    """A peer that serves ``blocks`` once, then nothing more."""

    def __init__(self, blocks: list[bytes]) -> None:
        self.batches = [blocks, []]

    async def request(self, peer: bytes, kind: str, payload: bytes) -> bytes:
        assert kind == "blocks"
        encoded: bytes = rlp.encode(self.batches.pop(0))
        return encoded


async def on_the_loop(fn: Callable[..., Any], *args: Any) -> Any:
    await asyncio.sleep(0)
    result = fn(*args)
    await asyncio.sleep(0)
    return result


async def send(kind: str, payload: bytes) -> None:
    return None


async def announce(*_: Any) -> None:
    return None


def make_driver(chain: Chain, peer: ServingPeer | None = None) -> Bft:
    node = SimpleNamespace(
        chain=chain,
        genesis=chain.genesis,
        private_key=VALIDATOR_KEYS[0],
        address=address_of(VALIDATOR_KEYS[0]),
        mempool=Mempool(chain),
        p2p=peer,
        run=on_the_loop,
        run_urgent=on_the_loop,
        announce=announce,
    )
    wal = SimpleNamespace(truncate_before=lambda number: None)
    return Bft(
        node,  # type: ignore[arg-type]
        wal=wal,  # type: ignore[arg-type]
        guard=None,  # type: ignore[arg-type]
        evidence=None,  # type: ignore[arg-type]
        send=send,
        is_validator=True,
    )


def queued(driver: Bft) -> list[Any]:
    events = []
    while not driver.queue.empty():
        events.append(driver.queue.get_nowait())
    return events


def served_blocks(count: int) -> list[bytes]:
    """Blocks of the test genesis, sealed by its validator, timestamped long ago."""
    source = Chain(AtomicDB(), make_genesis())
    blocks = []
    for n in range(count):
        _, sealed = build_and_commit(source, [record(fresh_key(f"s{n}"), word(n + 1), word(1))])
        blocks.append(rlp.encode(sealed))
    return blocks


async def test_a_sync_starts_no_height_until_it_ends_then_starts_the_next() -> None:
    """[QBFT-PERIOD.1] nothing is scheduled while blocks are synced; the sync's end starts one."""
    chain = Chain(AtomicDB(), make_genesis())
    driver = make_driver(chain, ServingPeer(served_blocks(4)))
    await driver.sync_from(b"peer")
    assert chain.head.block_number == 4
    await asyncio.sleep(0.05)  # the start of height 5 is due at once: the head is old
    starts = [e for e in queued(driver) if isinstance(e, Start)]
    assert [s.height for s in starts] == [5]
    await driver.stop()


async def test_a_proposer_whose_head_moved_on_the_chain_thread_builds_nothing() -> None:
    """A block imported while the build waited for the chain thread: no proposal for it."""
    chain = Chain(AtomicDB(), make_genesis())
    driver = make_driver(chain)

    async def import_first(fn: Callable[..., Any], *args: Any) -> Any:
        build_and_commit(chain, [record(fresh_key("x"), word(1), word(1))])
        return fn(*args)

    driver.node.run_urgent = import_first  # type: ignore[method-assign]
    await driver.build(BuildBlock(height=1, round=0))  # the head was 0 when it was asked
    assert chain.head.block_number == 1
    assert not [e for e in queued(driver) if isinstance(e, BlockBuilt)]
    driver.node.run_urgent = on_the_loop  # type: ignore[method-assign]
    await driver.build(BuildBlock(height=2, round=0))
    assert [e.height for e in queued(driver) if isinstance(e, BlockBuilt)] == [2]


def count_imports(chain: Chain) -> list[int]:
    """Record the number of every block ``chain`` imports (re-executes) from now on."""
    imported: list[int] = []
    original = chain.import_block

    def import_block(block: Any) -> Any:
        imported.append(block.number)
        return original(block)

    chain.import_block = import_block  # type: ignore[method-assign]
    return imported


async def test_a_gossiped_block_this_node_checked_is_committed_without_executing_it_again() -> None:
    genesis = make_genesis()
    proposer, checker = Chain(AtomicDB(), genesis), Chain(AtomicDB(), genesis)
    built = build(proposer, [record(fresh_key(f"g{i}"), word(i + 1), word(1)) for i in range(3)])
    checker.check_proposal(as_received(built.block, checker), now=built.block.header.timestamp)
    sealed = seal(proposer, built.block, VALIDATOR_KEYS[:1])
    proposer.commit_built_block(sealed)
    driver = make_driver(checker)
    imported = count_imports(checker)

    assert await driver.import_raw(rlp.encode(sealed))
    assert imported == []
    assert checker.head.hash == proposer.head.hash
    assert checker.head.state_root == proposer.head.state_root
    assert checker.get_header_by_number(1) == sealed.header  # with the gossiped seals
    await driver.stop()


async def test_a_gossiped_block_without_a_quorum_leaves_the_checked_state() -> None:
    genesis = make_genesis(validators=4)
    proposer, checker = Chain(AtomicDB(), genesis), Chain(AtomicDB(), genesis)
    built = build(proposer, [record(fresh_key("q"), word(1), word(1))])
    checker.check_proposal(as_received(built.block, checker), now=built.block.header.timestamp)
    driver = make_driver(checker)
    imported = count_imports(checker)

    one_seal = seal(proposer, built.block, VALIDATOR_KEYS[:1])
    assert not await driver.import_raw(rlp.encode(one_seal))
    assert checker.head.block_number == 0
    assert checker.has_staged(built.block.hash)

    quorum = seal(proposer, built.block, VALIDATOR_KEYS[:3])
    assert await driver.import_raw(rlp.encode(quorum))
    assert imported == []
    assert checker.head.block_number == 1
    assert checker.get_header_by_number(1) == quorum.header
    await driver.stop()


async def test_a_gossiped_header_with_another_body_commits_the_executed_body() -> None:
    # The block hash covers the header alone: a peer can send the real
    # sealed header with any body.
    genesis = make_genesis()
    proposer, checker = Chain(AtomicDB(), genesis), Chain(AtomicDB(), genesis)
    real = [record(fresh_key(f"b{i}"), word(i + 1), word(1)) for i in range(2)]
    built = build(proposer, real)
    checker.check_proposal(as_received(built.block, checker), now=built.block.header.timestamp)
    sealed = seal(proposer, built.block, VALIDATOR_KEYS[:1])
    other = record(fresh_key("not in the block"), word(9), word(9))
    for body in ((), (other,), (real[1], real[0])):
        assert sealed.copy(transactions=body).hash == sealed.hash
    driver = make_driver(checker)
    imported = count_imports(checker)
    relayed: list[bytes] = []

    async def relay(kind: str, payload: bytes) -> None:
        if kind == "block":
            relayed.append(payload)

    driver.broadcast = relay
    assert await driver.import_raw(rlp.encode(sealed.copy(transactions=(other,))))
    assert imported == []
    committed = checker.get_block(checker.head)
    assert [t.hash for t in committed.transactions] == [t.hash for t in real]
    assert relayed == [rlp.encode(sealed)]  # peers get the executed body too
    assert checker.get_transaction_location(real[1].hash).index == 1
    with pytest.raises(TransactionNotFound):
        checker.get_transaction_location(other.hash)
    assert checker.head.state_root == built.block.header.state_root
    await driver.stop()


async def test_a_build_first_brings_the_pool_to_the_head() -> None:
    """[MEMPOOL-HEAD.1]: the pool follows the head before a build selects from it."""
    chain = Chain(AtomicDB(), make_genesis())
    driver = make_driver(chain)
    pool = driver.node.mempool
    sender = fresh_key("chain of nonces")
    first, later = (record(sender, word(n + 1), word(1), nonce=n) for n in range(2))
    for transaction in (first, later):
        pool.add(transaction.encode())
    # The head moves (a gossiped block committed) before its after_commit
    # refreshed the pool: the pool still holds the head's transaction.
    build_and_commit(chain, [first])
    assert pool.get_pending_transaction(first.hash) is not None

    await driver.build(BuildBlock(height=2, round=0))
    [built] = [e for e in queued(driver) if isinstance(e, BlockBuilt)]
    block = chain.decode_block(built.block)
    assert [t.hash for t in block.transactions] == [later.hash]
    assert pool.get_pending_transaction(first.hash) is None
    assert pool.get_pending_transaction(later.hash) is not None  # waits for its block
    assert pool.on_new_head(chain.get_block(chain.head)) == []  # the late refresh: nothing
    await driver.stop()
