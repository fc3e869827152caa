"""When the node's BFT driver starts a height: after a block sync, never during it.

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

import rlp
from eth.db.atomic import AtomicDB

from consensus.qbft import BlockBuilt, BuildBlock, Start
from node.bft import Bft
from node.chain import Chain
from node.mempool import Mempool
from tests.unit.test_chain import (
    VALIDATOR_KEYS,
    address_of,
    build_and_commit,
    fresh_key,
    make_genesis,
    record,
    word,
)


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
