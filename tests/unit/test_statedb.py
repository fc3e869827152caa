"""The decoded trie-node cache, the node encoder and the ordered trie of node/statedb.py.

[CHAIN-TRIE-CACHE.1], [CHAIN-TRIE-ENCODE.1] and [CHAIN-TRIE-ORDERED.1].

Every test compares against py-evm's and py-trie's own classes on the same
operations: the cache may change how long a read takes, never what it returns
or which root a change produces.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import rlp
from eth.abc import DatabaseAPI
from eth.db.account import AccountDB
from eth.db.atomic import AtomicDB
from eth.db.backends.memory import MemoryDB
from eth.db.batch import BatchDB
from eth.db.trie import _make_trie_root_and_nodes
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from trie import HexaryTrie
from trie.exceptions import MissingTrieNode, ValidationError
from trie.validation import validate_is_node

from node.statedb import (
    TRIE_NODES,
    CachedAccountDB,
    CachedHexaryTrie,
    TrieNodeCache,
    compute_ordered_trie,
    copy_node,
    encode_trie_node,
)

KEYS = st.binary(min_size=1, max_size=4)
"""Short keys, so that changes share paths and meet the same nodes again."""
VALUES = st.binary(min_size=1, max_size=40)
"""Values on both sides of 32 bytes: short leaves are inlined in their parent."""
TRIE_OPERATIONS = st.lists(
    st.tuples(st.sampled_from(("set", "delete", "squash")), KEYS, VALUES), max_size=60
)


PATHS = st.binary(min_size=1, max_size=33)
LEAF_VALUES = st.binary(max_size=130)
"""Up to 130 bytes: both one-byte and longer RLP length prefixes."""
CHILDREN = st.one_of(st.just(b""), st.binary(min_size=32, max_size=32))


def trie_nodes(children: st.SearchStrategy[object]) -> st.SearchStrategy[list[object]]:
    """Leaves, extensions and branches whose inlined children come from ``children``."""
    return st.one_of(
        st.lists(st.one_of(PATHS, LEAF_VALUES), min_size=2, max_size=2),
        st.tuples(PATHS, children).map(list),
        st.tuples(st.lists(children, min_size=16, max_size=16), LEAF_VALUES).map(
            lambda parts: [*parts[0], parts[1]]
        ),
    )


NODES = st.recursive(trie_nodes(CHILDREN), lambda inner: trie_nodes(st.one_of(CHILDREN, inner)))
NOT_NODES = st.one_of(
    st.lists(st.binary(max_size=3), min_size=3, max_size=16),  # neither 2 nor 17 items
    st.tuples(PATHS, st.integers()).map(list),  # a value that is not bytes
    st.tuples(st.integers(), PATHS).map(list),  # a path that is not bytes
    st.tuples(st.binary(min_size=1, max_size=31), LEAF_VALUES).map(
        lambda parts: [parts[0], *([b""] * 15), parts[1]]  # a child hash of the wrong length
    ),
    st.lists(st.just(b""), min_size=16, max_size=16).map(lambda items: [*items, 5]),
)


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    """Each test starts from an empty process cache, as a new node does."""
    TRIE_NODES.clear()
    yield
    TRIE_NODES.clear()


@settings(max_examples=400)
@given(node=NODES)
def test_a_trie_node_encodes_as_rlp_encodes_it(node: list[object]) -> None:
    # [CHAIN-TRIE-ENCODE.1]
    assert encode_trie_node(node) == rlp.encode(node)


@given(node=NOT_NODES)
def test_what_py_trie_refuses_as_a_node_is_refused(node: list[object]) -> None:
    with pytest.raises(ValidationError):
        validate_is_node(node)
    with pytest.raises(ValidationError):
        encode_trie_node(node)


def test_long_payloads_get_a_length_of_length_prefix() -> None:
    for size in (55, 56, 255, 256, 70_000):
        leaf = [b"\x20", b"v" * size]
        assert encode_trie_node(leaf) == rlp.encode(leaf)
    with pytest.raises(ValidationError):
        encode_trie_node((b"\x20", b"v"))  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(items=st.lists(st.binary(max_size=80), max_size=300))
def test_an_ordered_trie_is_the_one_py_evm_builds(items: list[bytes]) -> None:
    # [CHAIN-TRIE-ORDERED.1] the same root and the same stored nodes, for up
    # to 300 items: past index 127 the keys grow from one byte to two. An
    # empty item is no entry, as py-trie deletes a key set to b"".
    expected = _make_trie_root_and_nodes.__wrapped__(tuple(items))  # py-evm's, unmemoized
    assert compute_ordered_trie(items) == expected


def test_copy_node_copies_lists_and_shares_bytes() -> None:
    inline_leaf = [b"\x20", b"v"]
    node = [b"a" * 32, inline_leaf, *([b""] * 15)]
    copied = copy_node(node)
    assert copied == node
    assert copied is not node
    assert copied[1] is not inline_leaf
    assert copied[0] is node[0]


def test_a_read_node_can_be_changed_without_changing_the_next_read() -> None:
    # py-trie changes the nodes it reads while it writes.
    stored = HexaryTrie(MemoryDB())
    for index in range(40):
        stored[keccak(b"%d" % index)] = b"value %d" % index
    trie = CachedHexaryTrie(stored.db, stored.root_hash)
    first = trie.get_node(trie.root_hash)
    first[0] = b"changed"
    first.append(b"an eighteenth item")
    again = trie.get_node(trie.root_hash)
    assert again == HexaryTrie(trie.db, trie.root_hash).get_node(trie.root_hash)
    assert TRIE_NODES.hits >= 1


def test_a_branch_inlined_in_its_parent_is_copied_too() -> None:
    # Short keys and values make a branch small enough (< 32 bytes encoded)
    # to sit inside its parent; py-trie changes that inner branch in place
    # when it sets and deletes under it.
    stored = HexaryTrie(MemoryDB())
    stored[b"\x12\x30"] = b"a"
    stored[b"\x12\x31"] = b"b"
    before = stored.root_hash
    plain = HexaryTrie(over(stored.db, prune=False), before)
    cached = CachedHexaryTrie(over(stored.db, prune=False), before)
    for trie in (plain, cached):
        trie[b"\x12\x32"] = b"c"
    middle = cached.root_hash
    for trie in (plain, cached):
        del trie[b"\x12\x32"]
    assert cached.root_hash == plain.root_hash == before
    assert cached.get(b"\x12\x32") == plain.get(b"\x12\x32") == b""
    assert cached.get_node(before) == plain.get_node(before)
    # The nodes of the state in between, read and written, are intact too.
    assert CachedHexaryTrie(cached.db, middle).get(b"\x12\x32") == b"c"
    assert cached.get_node(middle) == plain.get_node(middle)


def test_the_nodes_a_trie_wrote_are_read_from_the_cache() -> None:
    writer = CachedHexaryTrie(MemoryDB())
    for index in range(200):
        writer[keccak(b"%d" % index)] = b"value %d" % index
    misses = TRIE_NODES.misses
    reader = CachedHexaryTrie(writer.db, writer.root_hash)
    for index in range(200):
        assert reader[keccak(b"%d" % index)] == b"value %d" % index
    assert TRIE_NODES.misses == misses


def test_a_node_the_database_never_held_still_raises() -> None:
    missing_root = keccak(b"no such node")
    with pytest.raises(MissingTrieNode):
        CachedHexaryTrie(MemoryDB(), missing_root).get(b"key")
    assert len(TRIE_NODES) == 0


def test_the_cache_keeps_at_most_its_capacity() -> None:
    cache = TrieNodeCache(2)
    for index in range(3):
        cache.put(bytes([index]) * 32, [b"node %d" % index])
    assert len(cache) == 2
    assert cache.get(bytes([0]) * 32) is None
    assert cache.get(bytes([2]) * 32) == [b"node 2"]


def over(stored: MemoryDB, prune: bool) -> DatabaseAPI:
    """A copy of ``stored``; a pruning trie gets it as py-evm gives it one.

    py-evm's state and storage tries prune into a batch that still reads
    through its deletes (and never applies them): pruning a database that
    already holds nodes would delete nodes other tries still use.
    """
    copy = MemoryDB(dict(stored.kv_store))
    return BatchDB(copy, read_through_deletes=True) if prune else copy


@settings(max_examples=150, deadline=None)
@given(
    initial=st.dictionaries(KEYS, VALUES, max_size=30),
    operations=TRIE_OPERATIONS,
    prune=st.booleans(),
)
def test_a_cached_trie_agrees_with_py_trie(
    initial: dict[bytes, bytes], operations: list[tuple[str, bytes, bytes]], prune: bool
) -> None:
    # Both start from nodes that py-trie wrote, so the cached trie first
    # reads them from the database (and then changes what it read).
    stored = HexaryTrie(MemoryDB())
    for key, value in initial.items():
        stored[key] = value
    TRIE_NODES.clear()
    plain = HexaryTrie(over(stored.db, prune), stored.root_hash, prune=prune)
    cached = CachedHexaryTrie(over(stored.db, prune), stored.root_hash, prune=prune)
    for operation, key, value in operations:
        for trie in (plain, cached):
            if operation == "set":
                trie[key] = value
            elif operation == "delete":
                del trie[key]
            else:
                with trie.squash_changes() as memory_trie:
                    memory_trie[key] = value
                    memory_trie[value] = key
        assert cached.root_hash == plain.root_hash
        assert cached.get(key) == plain.get(key)
    # Every node reachable from the root was written where py-trie writes it.
    for key in [*initial, *(key for _, key, _ in operations)]:
        assert HexaryTrie(cached.db, cached.root_hash).get(key) == plain.get(key)
    # And the same nodes were written and pruned, under the same hashes.
    assert get_contents(cached.db) == get_contents(plain.db)


def get_contents(db: DatabaseAPI) -> object:
    """What a trie left in ``db``: all of a memory database, a batch's writes and deletes."""
    if isinstance(db, BatchDB):
        diff = db.diff()
        return dict(diff.pending_items()), set(diff.deleted_keys())
    assert isinstance(db, MemoryDB)
    return db.kv_store


ADDRESSES = st.sampled_from([bytes([index]) * 20 for index in range(1, 6)])
ACCOUNT_OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(("storage", "nonce", "balance", "delete-storage", "revert", "persist")),
        ADDRESSES,
        st.integers(min_value=0, max_value=6),
        st.integers(min_value=0, max_value=2**256 - 1),
    ),
    max_size=50,
)


def apply_account_operation(
    accounts: AccountDB, operation: str, address: bytes, slot: int, value: int
) -> None:
    if operation == "storage":
        accounts.set_storage(address, slot, value)
    elif operation == "nonce":
        accounts.set_nonce(address, slot)
    elif operation == "balance":
        accounts.set_balance(address, value)
    elif operation == "delete-storage":
        accounts.delete_storage(address)
    elif operation == "revert":
        checkpoint = accounts.record()
        accounts.set_storage(address, slot, value)
        accounts.set_balance(address, value // 3)
        accounts.discard(checkpoint)
    else:
        accounts.persist()


@settings(max_examples=100, deadline=None)
@given(operations=ACCOUNT_OPERATIONS)
def test_the_cached_account_database_computes_py_evms_state_roots(
    operations: list[tuple[str, bytes, int, int]],
) -> None:
    TRIE_NODES.clear()
    plain_db, cached_db = AtomicDB(), AtomicDB()
    plain, cached = AccountDB(plain_db), CachedAccountDB(cached_db)
    for operation, address, slot, value in operations:
        for accounts in (plain, cached):
            apply_account_operation(accounts, operation, address, slot, value)
        assert cached.make_state_root() == plain.make_state_root()
        assert cached.get_storage(address, slot) == plain.get_storage(address, slot)
    plain.persist()
    cached.persist()
    assert cached.state_root == plain.state_root
    # A fresh database at that root reads every value back through the cache.
    reopened = CachedAccountDB(cached_db, cached.state_root)
    for _, address, slot, _ in operations:
        assert reopened.get_storage(address, slot) == plain.get_storage(address, slot)
        assert reopened.get_balance(address) == plain.get_balance(address)


def test_the_cached_account_database_reads_through_the_cache() -> None:
    accounts = CachedAccountDB(AtomicDB())
    for index in range(1, 30):
        address = bytes([index]) * 20
        accounts.set_balance(address, index)
        for slot in range(1, 4):
            accounts.set_storage(address, slot, index * slot)
    accounts.persist()
    reopened = CachedAccountDB(accounts._raw_store_db, accounts.state_root)
    hits = TRIE_NODES.hits
    assert reopened.get_balance(bytes([8]) * 20) == 8
    assert TRIE_NODES.hits > hits
    # The account is loaded now: these reads walk its storage trie alone,
    # the second one through the root node that the first one read.
    assert reopened.get_storage(bytes([8]) * 20, 2) == 16
    hits = TRIE_NODES.hits
    assert reopened.get_storage(bytes([8]) * 20, 3) == 24
    assert TRIE_NODES.hits > hits
