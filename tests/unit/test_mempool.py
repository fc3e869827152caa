"""The pending pool: dry-run admission, a new head without re-execution, forgetting.

[MEMPOOL-HEAD.1]: a new head re-checks only nonces; the waiting
transactions leave the pending state, so a sender with one waiting gets no
dry run for the next; the builder leaves out what reverts and the pool
forgets it with its sender's later nonces.

[MEMPOOL-NONCES.1]: the head nonces the pool keeps follow each new head,
and are dropped where they could be wrong: a head reached by a sync, a
set-code (EIP-7702) transaction, an account with code.
"""

from __future__ import annotations

import pytest
import rlp
from eth.db.atomic import AtomicDB
from eth.vm.forks.prague.constants import MAGIC
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_keys.datatypes import PrivateKey

from consensus.errors import InvalidBlock, InvalidTransaction
from node import mempool as mempool_module
from node.chain import Chain
from node.mempool import Mempool
from tests.unit.test_chain import (
    CHAIN_ID,
    NOTARY,
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
BOB_ADDRESS = address_of(BOB)


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
    _, head = build_and_commit(chain, [first])
    assert pool.on_new_head(head) == []
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
    _, head = build_and_commit(chain, [elsewhere])
    dropped = dict(pool.on_new_head(head))
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


def test_head_nonces_follow_a_block_the_pool_did_not_know(chain: Chain) -> None:
    pool = Mempool(chain)
    pool.add(record(ALICE, word(1), word(7)).encode())  # reads and keeps Alice's nonce 0
    pool.forget([(pool.select()[0].hash, "gone")])
    # Alice's nonce 0 reaches the chain through another node's pool.
    _, head = build_and_commit(chain, [record(ALICE, word(2), word(7))])
    assert pool.on_new_head(head) == []
    with pytest.raises(InvalidTransaction, match="nonce too low: 0, next is 1"):
        pool.add(record(ALICE, word(3), word(7)).encode())
    pool.add(record(ALICE, word(3), word(7), nonce=1).encode())


def test_head_nonces_are_read_again_after_a_long_sync(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mempool_module, "MAX_MISSED_BLOCKS", 1)
    pool = Mempool(chain)
    waiting = record(ALICE, word(1), word(7))
    pool.add(waiting.encode())
    # A sync imports two blocks, more than the pool reads back; it hears only of the last.
    build_and_commit(chain, [waiting])
    _, last = build_and_commit(chain, [record(BOB, word(2), word(7))])
    assert dict(pool.on_new_head(last)) == {waiting.hash: "nonce too low: 0, next is 1"}
    assert len(pool) == 0
    assert pool.follows(chain.head)
    with pytest.raises(InvalidTransaction, match="nonce too low: 0, next is 1"):
        pool.add(record(ALICE, word(3), word(7)).encode())


def test_blocks_the_pool_was_not_told_of_are_taken_in_as_included(chain: Chain) -> None:
    # [MEMPOOL-HEAD.1] The next block was imported before the refresh for
    # this one ran (a gossiped block and a decision racing): the refresh
    # takes in both, and drops nothing that a block included.
    pool = Mempool(chain)
    first, second = record(ALICE, word(1), word(7)), record(BOB, word(2), word(7))
    later = record(BOB, word(3), word(7), nonce=1)
    for tx in (first, second, later):
        pool.add(tx.encode(), dry_run=False)
    _, block = build_and_commit(chain, [first])
    _, next_block = build_and_commit(chain, [second])
    assert pool.on_new_head(block) == []
    assert pool.select() == [later]
    assert pool.follows(next_block.header)
    assert pool.on_new_head(next_block) == []  # its own refresh, late: nothing left to do
    assert pool.select() == [later]
    # Alice's nonce moved with the block that included her transaction.
    with pytest.raises(InvalidTransaction, match="nonce too low: 0, next is 1"):
        pool.add(record(ALICE, word(4), word(7)).encode())
    pool.add(record(ALICE, word(4), word(7), nonce=1).encode())


def set_code(sender: bytes, authority: bytes, authority_nonce: int, to: bytes = NOTARY) -> bytes:
    """A set-code (EIP-7702) transaction by ``sender`` delegating ``authority`` to ``to``.

    Delegating to the zero address clears the authority's code.
    """
    signature = PrivateKey(authority).sign_msg(MAGIC + rlp.encode([CHAIN_ID, to, authority_nonce]))
    y_parity, r, s = signature.vrs
    authorization = {
        "chain_id": CHAIN_ID,
        "address": to,
        "nonce": authority_nonce,
        "y_parity": y_parity,
        "r": r,
        "s": s,
    }
    unsigned = PragueTransactionBuilder.new_unsigned_set_code_transaction(
        CHAIN_ID, 0, 0, 0, 100_000, address_of(sender), 0, b"", (), [authorization]
    )
    signed: bytes = unsigned.as_signed_transaction(PrivateKey(sender)).encode()
    return signed


def test_a_set_code_transaction_moves_another_accounts_nonce(chain: Chain) -> None:
    """An authorization adds one to its signer's nonce without a transaction of the signer's."""
    pool = Mempool(chain)
    bobs = record(BOB, word(1), word(7))
    pool.add(bobs.encode())  # keeps Bob's nonce 0
    delegation = chain.decode_transaction(set_code(ALICE, BOB, authority_nonce=0))
    built, head = build_and_commit(chain, [delegation])
    assert built.excluded == ()
    state = chain.get_state(chain.head)
    assert state.get_nonce(BOB_ADDRESS) == 1
    assert state.get_code(BOB_ADDRESS) == b"\xef\x01\x00" + NOTARY  # delegated
    assert dict(pool.on_new_head(head)) == {bobs.hash: "nonce too low: 0, next is 1"}
    # Code running as Bob could move his nonce again (CREATE): it is never kept.
    pool.add(record(BOB, word(2), word(7), nonce=1).encode())
    assert BOB_ADDRESS not in pool._head_nonces


def test_a_set_code_transaction_waiting_in_the_pool_leaves_no_nonce_behind(chain: Chain) -> None:
    """While one is in the pending state, nonces are read from it and none is kept."""
    pool = Mempool(chain)
    # Bob's authorization, clearing his (absent) code: in the pending state his
    # nonce moves to 1 and he still has no code.
    revoke = set_code(ALICE, BOB, authority_nonce=0, to=bytes(20))
    revoke_hash = pool.add(revoke)
    with pytest.raises(InvalidTransaction, match="nonce too low: 0, next is 1"):
        pool.add(record(BOB, word(1), word(7)).encode())
    # The set-code transaction never reaches a block: Bob's nonce is 0 again.
    pool.forget([(revoke_hash, "left out")])
    assert len(pool) == 0
    pool.add(record(BOB, word(1), word(7)).encode())


def test_the_kept_nonces_are_bounded_least_recently_used_first(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mempool_module, "MAX_HEAD_NONCES", 2)
    pool = Mempool(chain)
    alice, bob, carol = (address_of(fresh_key(n)) for n in ("alice", "bob", "carol"))
    for sender in (alice, bob, alice, carol):
        assert pool.get_head_nonce(sender) == 0
    assert list(pool._head_nonces) == [alice, carol]


def test_the_size_stays_whole_while_a_new_head_refills_the_pool(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event loop reads len(pool) while the chain thread refills it."""
    pool = Mempool(chain)
    for i in range(3):
        pool.add(record(fresh_key(f"w{i}"), word(i + 1), word(7)).encode())
    seen = []
    original = pool.validate_nonce

    def watching(*args: object) -> None:
        seen.append(len(pool))
        original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(pool, "validate_nonce", watching)
    _, head = build_and_commit(chain, [])
    assert pool.on_new_head(head) == []
    assert seen == [3, 3, 3]
    assert len(pool) == 3
