"""py-evm's account and storage databases, reading trie nodes through a decoded-node cache.

Every node of the devnet executes every transaction (admission, build or
check, commit), and each execution walks the upper levels of the state trie
and of the busy contracts' storage tries: the same nodes for every
transaction of a block, and the nodes the previous block wrote. py-trie reads
each of them from the database and RLP-decodes it again on every walk.

A trie node is stored under the keccak hash of its encoding, so the node a
hash names never changes: :class:`TrieNodeCache` keeps decoded nodes by hash
([CHAIN-TRIE-CACHE.1]), both those a trie wrote and those a database
returned. py-trie changes nodes in place while it writes, so the cache keeps
its own copy and every read gets a fresh one. A trie still raises on a node
that no trie of the process ever wrote or read; one that some trie wrote or
read is served to all (a staged block's overlay and the database under it
hold the same node under the same hash, and a node no committed root reaches
is never asked for). Proof checks (:mod:`consensus.proofs`) use py-trie's own
trie, never this one: a proof must carry every node itself.

Cache hits do not pass through py-evm's key-access logger, so the block
witness py-evm collects (which Polder does not use) lists fewer node hashes.

The three classes below mirror the constructors of py-evm 0.12.1b1 (pinned)
with :class:`CachedHexaryTrie` where py-evm builds a ``HexaryTrie``; nothing
else about them differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import Any

import rlp
from eth.constants import BLANK_ROOT_HASH
from eth.db.accesslog import KeyAccessLoggerDB
from eth.db.account import AccountDB
from eth.db.batch import BatchDB
from eth.db.cache import CacheDB
from eth.db.hash_trie import HashTrie
from eth.db.journal import JournalDB
from eth.db.storage import AccountStorageDB, StorageLookup
from eth_hash.auto import keccak
from eth_typing import Address, Hash32
from lru import LRU
from trie import HexaryTrie
from trie.constants import BLANK_NODE
from trie.exceptions import ValidationError
from trie.utils.nibbles import bytes_to_nibbles
from trie.utils.nodes import compute_extension_key, compute_leaf_key

TRIE_NODE_CACHE_SIZE = 65_536
"""Decoded nodes a process keeps: the upper levels of the state trie and of the
busiest storage tries. A node takes 0.3 KB (a leaf) to 1.4 KB (a full branch)
decoded, so 35-60 MB for a usual mix and 100 MB at most."""

HASH_LENGTH = 32
BRANCH_WIDTH = 17
"""Items of a branch node: sixteen children and a value."""
SHORT_LIMIT = 56
"""RLP writes a string or list payload shorter than this with a one-byte prefix."""


def encode_trie_node(node: list[Any]) -> bytes:
    """The RLP encoding of a decoded trie node, or :class:`ValidationError` if it is none.

    What py-trie computes with ``validate_is_node`` and rlp's generic
    ``encode_raw`` ([CHAIN-TRIE-ENCODE.1]): a node is a leaf or extension
    ``[path, value or child]`` or a branch of sixteen children (blank, a
    32-byte hash or an inlined node) and a value. rlp's encoder asks the
    abstract ``Sequence`` type of every item, which made encoding about a
    sixth of a block import; this one knows the two shapes.
    """
    if type(node) is not list:
        raise ValidationError(f"Invalid Node: {node!r}")
    if len(node) == 2:
        path, child = node
        if not isinstance(path, bytes):
            raise ValidationError(f"Invalid Node: {node!r}")
        if isinstance(child, list):
            payload = encode_bytes(path) + encode_trie_node(child)
        elif isinstance(child, bytes):
            payload = encode_bytes(path) + encode_bytes(child)
        else:
            raise ValidationError(f"Invalid Node: {node!r}")
    elif len(node) == BRANCH_WIDTH:
        parts = []
        for child in node[:16]:
            if child == BLANK_NODE:
                parts.append(b"\x80")
            elif isinstance(child, list):
                parts.append(encode_trie_node(child))
            elif isinstance(child, bytes) and len(child) == HASH_LENGTH:
                parts.append(b"\xa0" + child)
            else:
                raise ValidationError(f"Invalid Node: {node!r}")
        if not isinstance(node[16], bytes):
            raise ValidationError(f"Invalid Node: {node!r}")
        parts.append(encode_bytes(node[16]))
        payload = b"".join(parts)
    else:
        raise ValidationError(f"Invalid Node: {node!r}")
    return encode_length(len(payload), 0xC0) + payload


def compute_ordered_trie(items: Sequence[bytes]) -> tuple[Hash32, dict[Hash32, bytes]]:
    """The root and the stored nodes of the trie of ``rlp(index) -> items[index]``.

    What py-evm's ``make_trie_root_and_nodes`` returns for a block's
    transactions, receipts or withdrawals (given their encodings), built in
    one pass ([CHAIN-TRIE-ORDERED.1]): each node is encoded and hashed once,
    where inserting the items one by one re-encodes the upper nodes for
    every item. The nodes are the ones stored under their hash (every node
    of 32 bytes or more, and the root); smaller ones sit inline in their parent.
    """
    # An empty item is no entry: py-trie deletes a key set to b"".
    paths = sorted(
        (bytes_to_nibbles(rlp.encode(index)), item) for index, item in enumerate(items) if item
    )
    if not paths:
        return BLANK_ROOT_HASH, {}
    nodes: dict[Hash32, bytes] = {}
    encoded = encode_trie_node(build_subtrie(paths, 0, nodes))
    root = Hash32(keccak(encoded))
    nodes[root] = encoded
    return root, nodes


def build_subtrie(
    paths: Sequence[tuple[tuple[int, ...], bytes]], depth: int, nodes: dict[Hash32, bytes]
) -> list[Any]:
    """The node holding ``paths`` (sorted, distinct), whose first ``depth`` nibbles it is under."""
    if len(paths) == 1:
        path, value = paths[0]
        return [compute_leaf_key(path[depth:]), value]
    first, last = paths[0][0], paths[-1][0]
    shared = depth
    while shared < min(len(first), len(last)) and first[shared] == last[shared]:
        shared += 1
    if shared > depth:
        branch = build_branch(paths, shared, nodes)
        return [compute_extension_key(first[depth:shared]), refer_to(branch, nodes)]
    return build_branch(paths, depth, nodes)


def build_branch(
    paths: Sequence[tuple[tuple[int, ...], bytes]], depth: int, nodes: dict[Hash32, bytes]
) -> list[Any]:
    """The branch node at ``depth``: children by the next nibble, and the path ending here."""
    branch: list[Any] = [BLANK_NODE] * BRANCH_WIDTH
    if len(paths[0][0]) == depth:  # sorted: a path ending here comes first
        branch[16] = paths[0][1]
        paths = paths[1:]
    for nibble, group in groupby(paths, key=lambda entry: entry[0][depth]):
        branch[nibble] = refer_to(build_subtrie(list(group), depth + 1, nodes), nodes)
    return branch


def refer_to(node: list[Any], nodes: dict[Hash32, bytes]) -> Any:
    """How a parent refers to ``node``: inline if its encoding is under 32 bytes, else by hash."""
    encoded = encode_trie_node(node)
    if len(encoded) < HASH_LENGTH:
        return node
    node_hash = Hash32(keccak(encoded))
    nodes[node_hash] = encoded
    return node_hash


def encode_bytes(item: bytes) -> bytes:
    """The RLP encoding of a byte string."""
    if len(item) == 1 and item[0] < 0x80:
        return item
    return encode_length(len(item), 0x80) + item


def encode_length(length: int, offset: int) -> bytes:
    """RLP's prefix for a payload of ``length`` bytes (``offset`` 0x80 string, 0xC0 list)."""
    if length < SHORT_LIMIT:
        return bytes((offset + length,))
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((offset + SHORT_LIMIT - 1 + len(size),)) + size


def copy_node(node: list[Any]) -> list[Any]:
    """A copy of a decoded trie node that shares its bytes and copies its lists."""
    return [item if type(item) is bytes else copy_node(item) for item in node]


class TrieNodeCache:
    """Decoded trie nodes by their hash, least recently used out first."""

    def __init__(self, capacity: int) -> None:
        self._nodes: LRU[bytes, list[Any]] = LRU(capacity)
        self.hits = 0
        """Reads answered from the cache (for the metrics and the benchmark)."""
        self.misses = 0
        """Reads that went to the database."""

    def get(self, node_hash: bytes) -> list[Any] | None:
        """A copy of the node stored under ``node_hash``, or ``None`` if not kept."""
        node = self._nodes.get(node_hash)
        if node is None:
            self.misses += 1
            return None
        self.hits += 1
        return copy_node(node)

    def put(self, node_hash: bytes, node: list[Any]) -> None:
        """Keep a copy of ``node``, the node stored under ``node_hash``."""
        self._nodes[node_hash] = copy_node(node)

    def clear(self) -> None:
        """Forget every node."""
        self._nodes.clear()

    def __len__(self) -> int:
        return len(self._nodes)


TRIE_NODES = TrieNodeCache(TRIE_NODE_CACHE_SIZE)
"""The process's cache: content-addressed, so every database and trie shares it."""


def select_trie_node_cache(cache: TrieNodeCache) -> TrieNodeCache:
    """Make ``cache`` the process's cache and return the one it replaces.

    For a process that plays several nodes (the chain benchmark), so that
    each node's reads find only what that node wrote or read, as in its own
    process.
    """
    global TRIE_NODES
    previous, TRIE_NODES = TRIE_NODES, cache
    return previous


class CachedHexaryTrie(HexaryTrie):
    """py-trie's hexary trie keeping the nodes it writes and reads in :data:`TRIE_NODES`."""

    def get_node(self, node_hash: Any) -> Any:
        # A reference shorter than a hash is an inline node, and the blank
        # root is no stored node: py-trie handles both without the database.
        if (
            type(node_hash) is not bytes
            or len(node_hash) != HASH_LENGTH
            or node_hash == BLANK_ROOT_HASH
        ):
            return super().get_node(node_hash)
        node = TRIE_NODES.get(node_hash)
        if node is not None:
            return node
        node = super().get_node(node_hash)
        if isinstance(node, list):
            TRIE_NODES.put(node_hash, node)
        return node

    def _node_to_db_mapping(self, node: Any) -> tuple[Any, bytes | None]:
        # py-trie's own validates and encodes generically, and when pruning
        # memoizes on a tuple copy of the node (keyed by the trie, which the
        # memo then keeps alive); encoding afresh costs less than that copy.
        if node == BLANK_NODE:
            return BLANK_NODE, None
        encoded = encode_trie_node(node)
        if len(encoded) < HASH_LENGTH:
            return node, None
        return keccak(encoded), encoded

    def _persist_node(self, node: Any) -> Any:
        # The next block's reads start from the nodes this one wrote.
        key = super()._persist_node(node)
        if type(key) is bytes and len(key) == HASH_LENGTH:
            TRIE_NODES.put(key, node)
        return key

    def _set_raw_node(self, raw_node: Any) -> Any:
        node_hash = super()._set_raw_node(raw_node)
        if node_hash != BLANK_ROOT_HASH and isinstance(raw_node, list):
            TRIE_NODES.put(node_hash, raw_node)
        return node_hash


class CachedStorageLookup(StorageLookup):
    """py-evm's storage lookup building :class:`CachedHexaryTrie` tries."""

    def _get_write_trie(self) -> HexaryTrie:
        if self._trie_nodes_batch is None:
            self._trie_nodes_batch = BatchDB(self._db, read_through_deletes=True)
        if self._write_trie is None:
            self._write_trie = CachedHexaryTrie(
                self._trie_nodes_batch, root_hash=self._starting_root_hash, prune=True
            )
        return self._write_trie

    def _get_read_trie(self) -> HexaryTrie:
        if self._write_trie is not None:
            return self._write_trie
        return CachedHexaryTrie(self._db, root_hash=self._starting_root_hash)


class CachedAccountStorageDB(AccountStorageDB):
    """py-evm's account storage over a :class:`CachedStorageLookup`."""

    def __init__(self, db: Any, storage_root: Hash32, address: Address) -> None:
        super().__init__(db, storage_root, address)
        self._storage_lookup = CachedStorageLookup(db, storage_root, address)
        self._storage_cache = CacheDB(self._storage_lookup)
        self._locked_changes = JournalDB(self._storage_cache)
        self._journal_storage = JournalDB(self._locked_changes)


class CachedAccountDB(AccountDB):
    """py-evm's account database with cached state and storage trie nodes."""

    def __init__(self, db: Any, state_root: Hash32 = BLANK_ROOT_HASH) -> None:
        super().__init__(db, state_root)
        # py-evm passes its trie to HashTrie as a database in the same way.
        trie = CachedHexaryTrie(self._batchtrie, state_root, prune=True)
        self._trie = HashTrie(trie)  # type: ignore[arg-type]
        self._trie_logger = KeyAccessLoggerDB(self._trie, log_missing_keys=False)
        self._trie_cache = CacheDB(self._trie_logger)
        self._journaltrie = JournalDB(self._trie_cache)

    def _get_address_store(self, address: Address) -> Any:
        store = self._account_stores.get(address)
        if store is None:
            storage_root = self._get_storage_root(address)
            store = CachedAccountStorageDB(self._raw_store_db, storage_root, address)
            self._account_stores[address] = store
        return store
