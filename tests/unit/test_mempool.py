"""The pending pool: dry-run admission, a new head without re-execution, forgetting.

[MEMPOOL-HEAD.1]: a new head re-checks only nonces; the waiting
transactions leave the pending state, so a sender with one waiting gets no
dry run for the next; the builder leaves out what reverts and the pool
forgets it with its sender's later nonces.
"""

from __future__ import annotations

import pytest
import rlp
from eth.db.atomic import AtomicDB

from consensus.errors import InvalidBlock, InvalidTransaction
from node.chain import Chain
from node.mempool import Mempool
from tests.unit.test_chain import (
    address_of,
    build,
    build_and_commit,
    fresh_key,
    make_genesis,
    record,
    word,
)

ALICE, BOB = fresh_key("alice"), fresh_key("bob")
ALICE_ADDRESS = address_of(ALICE)


@pytest.fixture
def chain() -> Chain:
    return Chain(AtomicDB(), make_genesis())


def test_admission_dry_runs_and_refuses_a_revert_with_its_reason(chain: Chain) -> None:
    pool = Mempool(chain)
    pool.add(record(ALICE, word(1), word(7)).encode())
    with pytest.raises(InvalidTransaction, match="revert"):
        pool.add(record(ALICE, word(2), word(0), nonce=1).encode())
    assert len(pool) == 1


def test_a_new_head_keeps_waiting_transactions_without_re_running_them(chain: Chain) -> None:
    pool = Mempool(chain)
    first, waiting = record(ALICE, word(1), word(7)), record(BOB, word(2), word(8))
    pool.add(first.encode())
    pool.add(waiting.encode())
    build_and_commit(chain, [first])
    assert pool.on_new_head(frozenset({first.hash})) == []
    assert pool.select() == [waiting]
    # Bob's next transaction gets no dry run (his first is out of the pending state) ...
    doomed = record(BOB, word(3), word(0), nonce=1)
    pool.add(doomed.encode())
    # ... while Alice, with nothing waiting, still does.
    with pytest.raises(InvalidTransaction, match="revert"):
        pool.add(record(ALICE, word(4), word(0), nonce=1).encode())
    # The builder leaves the reverting one out; the pool forgets it.
    built = build(chain, pool.select())
    assert [tx.hash for tx in built.block.transactions] == [waiting.hash]
    dropped = pool.forget((e.tx_hash, e.reason) for e in built.excluded)
    assert [h for h, _ in dropped] == [doomed.hash]
    assert pool.select() == [waiting]


def test_a_new_head_drops_nonces_it_used(chain: Chain) -> None:
    pool = Mempool(chain)
    mine, also_mine = record(ALICE, word(1), word(7)), record(ALICE, word(2), word(7), nonce=1)
    pool.add(mine.encode())
    pool.add(also_mine.encode())
    # The same nonce 0 reached the chain another way (through a peer's pool).
    elsewhere = record(ALICE, word(9), word(9))
    build_and_commit(chain, [elsewhere])
    dropped = dict(pool.on_new_head(frozenset({elsewhere.hash})))
    assert "nonce too low" in dropped[mine.hash]
    assert pool.select() == [also_mine]
    assert pool.get_pending_nonce(bytes(ALICE_ADDRESS)) == 2


def test_forgetting_a_nonce_drops_the_senders_later_ones(chain: Chain) -> None:
    pool = Mempool(chain)
    alice = [record(ALICE, word(i + 1), word(7), nonce=i) for i in range(3)]
    bob = record(BOB, word(5), word(7))
    for tx in [*alice, bob]:
        pool.add(tx.encode())
    dropped = pool.forget([(alice[1].hash, "reverted")])
    assert dropped == [
        (alice[1].hash, "reverted"),
        (alice[2].hash, "an earlier nonce of its sender was dropped"),
    ]
    assert pool.select() == [alice[0], bob]
    assert pool.forget([(b"\x00" * 32, "unknown")]) == []


def test_a_received_block_reuses_the_pools_transactions_and_still_imports() -> None:
    """A proposal or gossiped block takes the pool's objects (sender recovered) by hash."""
    proposer, follower = Chain(AtomicDB(), make_genesis()), Chain(AtomicDB(), make_genesis())
    pool = Mempool(follower)
    pooled, unknown = record(ALICE, word(1), word(7)), record(BOB, word(2), word(8))
    pool.add(pooled.encode(), dry_run=False)
    _, sealed = build_and_commit(proposer, [pooled, unknown])
    received = follower.decode_block(rlp.encode(sealed))
    reused = pool.reuse_decoded(received)
    assert reused.hash == sealed.hash
    assert reused.transactions[0] is pool.get_pending_transaction(pooled.hash)
    assert reused.transactions[1] is received.transactions[1]
    follower.import_block(reused)
    assert follower.head.hash == proposer.head.hash
    assert follower.head.state_root == proposer.head.state_root


def test_a_block_the_pool_knows_nothing_of_is_left_as_it_is(chain: Chain) -> None:
    other = Chain(AtomicDB(), make_genesis())
    _, sealed = build_and_commit(other, [record(ALICE, word(1), word(7))])
    received = chain.decode_block(rlp.encode(sealed))
    assert Mempool(chain).reuse_decoded(received) is received


def test_a_gossiped_block_is_routed_by_its_header_alone(chain: Chain) -> None:
    _, sealed = build_and_commit(chain, [record(ALICE, word(1), word(7))])
    assert chain.decode_block_number(rlp.encode(sealed)) == 1
    with pytest.raises(InvalidBlock, match="does not decode"):
        chain.decode_block_number(b"\xc3junk")
    with pytest.raises(InvalidBlock, match="does not decode"):
        chain.decode_block_number(rlp.encode([b"not a header"]))
