"""Admission and the pending pool.

Spam and junk are stopped here, not by fees (gas is free on this chain):
size, signature, chain id, gas limit, nonce and per-sender limits, and a
dry run against the *pending* state (the head plus every transaction
admitted since it, in order). A transaction that would revert is refused
with its revert reason.

A new head does not re-run the transactions still waiting: under load that
re-execution, on every node after every block, cost more than building the
block ([MEMPOOL-HEAD.1]). The waiting ones are only re-checked for nonces,
and their effects leave the pending state; a sender with such a waiting
transaction gets no dry run for the next one (as for a transaction a peer
gossiped). The block builder still leaves out any transaction that reverts,
and the proposer's pool then forgets it (:meth:`Mempool.forget`), so no
reverting transaction ever reaches a block or stays in the pool for long.

The nonces senders have in the head's state are kept from one head to the
next ([MEMPOOL-NONCES.1]): reading one from the state trie cost more than
admitting a gossiped transaction otherwise, and every new head re-checked
every waiting sender's.

Like :mod:`node.chain`, everything here blocks and runs on the node's one
executor thread.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace

from eth.abc import BlockAPI, BlockHeaderAPI, SignedTransactionAPI, VirtualMachineAPI
from eth.constants import EMPTY_SHA3
from eth.exceptions import HeaderNotFound
from eth.vm.forks.prague.constants import SET_CODE_TRANSACTION_TYPE
from eth_typing import Address
from eth_utils import encode_hex

from consensus.errors import InvalidTransaction, LimitExceeded
from node.chain import Chain, apply_transaction, recover_sender, validate_deploy_permission


@dataclass(frozen=True)
class MempoolLimits:
    """Bounds that keep one sender or one flood from filling the node."""

    max_tx_bytes: int = 128 * 1024
    """Largest raw transaction accepted."""
    max_per_sender: int = 256
    """Pending transactions one sender may have."""
    max_total: int = 20_000
    """Pending transactions in all."""


MAX_HEAD_NONCES = 200_000
"""Senders whose head nonce the pool keeps; beyond that the least recently used goes."""
MAX_MISSED_BLOCKS = 16
"""Blocks a new head's refresh reads back to take in those it was not told of (see
:meth:`Mempool.on_new_head`); beyond that it drops by nonce alone."""


@dataclass(frozen=True)
class Pending:
    """An admitted transaction."""

    transaction: SignedTransactionAPI
    sender: bytes
    raw: bytes
    checked: bool = True
    """In the pending state here: dry-run since the head. Transactions
    gossiped by a peer (which dry-ran them at its own RPC) only get the
    stateless checks and the nonce check, and a new head takes every waiting
    transaction out of the pending state (see the module docstring)."""


class Mempool:
    """Transactions admitted but not yet in a block, valid against the pending state."""

    def __init__(self, chain: Chain, limits: MempoolLimits | None = None) -> None:
        self.chain = chain
        self.limits = limits or MempoolLimits()
        self._pool: OrderedDict[bytes, Pending] = OrderedDict()
        """Admission order; per sender, nonces ascend without gaps."""
        self._size = 0
        """``len(self._pool)`` once each change is complete (see :meth:`__len__`)."""
        self._by_sender: dict[bytes, dict[int, bytes]] = {}
        """sender -> nonce -> tx hash."""
        self._head_nonces: OrderedDict[bytes, int] = OrderedDict()
        """sender -> its nonce in the state of block ``_nonces_at`` ([MEMPOOL-NONCES.1]),
        least recently used first."""
        self._nonces_at = b""
        self._followed = chain.head.hash
        """The head whose block :meth:`on_new_head` last took in (see :meth:`follows`)."""
        self._pending_authorizations = False
        """A set-code transaction is in the pending state (see :meth:`get_head_nonce`)."""
        self._vm, self._header = self._open_pending_state()

    def __len__(self) -> int:
        """Transactions waiting, as of the last admission or refresh that finished.

        The event loop reads this while the chain thread may be refilling
        the pool after a new head; it must not see it empty meanwhile.
        """
        return self._size

    # -- reads (PendingView) ---------------------------------------------------

    def get_pending_nonce(self, address: bytes) -> int | None:
        """Return the next nonce after ``address``'s pending transactions, if any."""
        nonces = self._by_sender.get(address)
        return max(nonces) + 1 if nonces else None

    def get_pending_transaction(self, tx_hash: bytes) -> SignedTransactionAPI | None:
        pending = self._pool.get(tx_hash)
        return pending.transaction if pending else None

    def follows(self, head: BlockHeaderAPI) -> bool:
        """Whether the pool took in ``head``'s block: nothing it holds is in a block."""
        return head.hash == self._followed

    def select(self) -> list[SignedTransactionAPI]:
        """Return pending transactions in admission order (a valid execution order)."""
        return [p.transaction for p in self._pool.values()]

    def reuse_decoded(self, block: BlockAPI) -> BlockAPI:
        """``block`` with the pool's own objects for the transactions the pool holds.

        A transaction's hash commits to its signature, so the pool's object
        for that hash is the same transaction, with its sender recovered at
        admission: executing the block then recovers only the others.
        """
        pooled = [self._pool.get(tx.hash) for tx in block.transactions]
        if not any(pooled):
            return block
        transactions = tuple(
            p.transaction if p is not None else tx
            for p, tx in zip(pooled, block.transactions, strict=True)
        )
        reused: BlockAPI = block.copy(transactions=transactions)
        return reused

    # -- admission ---------------------------------------------------------

    def add(self, raw: bytes, *, dry_run: bool = True) -> bytes:
        """Admit a raw transaction; return its hash or raise a :class:`PolderError`.

        ``dry_run=False`` is for transactions gossiped by peers (see
        :attr:`Pending.checked`).
        """
        if len(raw) > self.limits.max_tx_bytes:
            raise InvalidTransaction(
                f"transaction is {len(raw)} bytes; the limit is {self.limits.max_tx_bytes}"
            )
        transaction = self.chain.decode_transaction(raw)
        sender = recover_sender(transaction)
        self.validate_static(transaction)
        if transaction.hash in self._pool:
            raise InvalidTransaction("already known", tx_hash=encode_hex(transaction.hash))
        nonces = self._by_sender.get(sender, {})
        # a dry run needs the sender's earlier transactions in the pending state
        checked = dry_run and self.is_sender_checked(sender)
        pending = Pending(transaction, sender, raw, checked)
        if transaction.nonce in nonces:
            self._replace(nonces[transaction.nonce], pending)
            return transaction.hash
        self.validate_room(sender)
        self.validate_nonce(transaction, sender)
        if checked:
            self._apply(transaction)
        else:
            validate_deploy_permission(transaction, self.chain.genesis.admins)
        self._insert(pending)
        self._size = len(self._pool)
        return transaction.hash

    def validate_static(self, transaction: SignedTransactionAPI) -> None:
        """Checks that need no state: chain id and gas limit."""
        chain_id = getattr(transaction, "chain_id", None)
        if chain_id is None:
            raise InvalidTransaction(
                "transaction has no chain id (pre-EIP-155 signatures are replayable); "
                f"sign it for chain id {self.chain.genesis.chain_id}"
            )
        if chain_id != self.chain.genesis.chain_id:
            raise InvalidTransaction(
                f"wrong chain id {chain_id}; this chain is {self.chain.genesis.chain_id}"
            )
        if transaction.gas > self.chain.genesis.gas_limit:
            raise InvalidTransaction(
                f"gas limit {transaction.gas} exceeds the block gas limit "
                f"{self.chain.genesis.gas_limit}"
            )

    def validate_room(self, sender: bytes) -> None:
        """Raise :class:`LimitExceeded` when the pool or the sender's share is full."""
        if len(self._by_sender.get(sender, {})) >= self.limits.max_per_sender:
            raise LimitExceeded(
                f"sender has {self.limits.max_per_sender} pending transactions; "
                "wait for them to be included"
            )
        if len(self._pool) >= self.limits.max_total:
            raise LimitExceeded("the node's transaction pool is full; try again shortly")

    def validate_nonce(self, transaction: SignedTransactionAPI, sender: bytes) -> None:
        """Nonces must continue the sender's sequence exactly: no gaps, no reuse."""
        expected = self.get_pending_nonce(sender)
        if expected is None:
            expected = self.get_head_nonce(sender)
        if transaction.nonce < expected:
            raise InvalidTransaction(
                f"nonce too low: {transaction.nonce}, next is {expected}", expected=expected
            )
        if transaction.nonce > expected:
            raise InvalidTransaction(
                f"nonce too high: {transaction.nonce}, next is {expected} (no gaps allowed)",
                expected=expected,
            )

    def get_head_nonce(self, sender: bytes) -> int:
        """Return ``sender``'s nonce in the pending state, for a sender with nothing in the pool.

        That is its nonce in the head's state, kept from one head to the next,
        unless a set-code (EIP-7702) transaction in the pending state may have
        moved it: its authorizations move their signers' nonces. While one is
        there the pending state is read and nothing is kept. Only an account
        without code is kept (see :meth:`_advance_head_nonces`).
        """
        state, address = self._vm.state, Address(sender)
        if self._pending_authorizations:
            return state.get_nonce(address)
        nonce = self._head_nonces.get(sender)
        if nonce is not None:
            self._head_nonces.move_to_end(sender)
            return nonce
        nonce = state.get_nonce(address)
        if state.get_code_hash(address) == EMPTY_SHA3:
            if len(self._head_nonces) >= MAX_HEAD_NONCES:
                self._head_nonces.popitem(last=False)  # the least recently used
            self._head_nonces[sender] = nonce
        return nonce

    # -- maintenance -----------------------------------------------------------

    def on_new_head(self, block: BlockAPI) -> list[tuple[bytes, str]]:
        """Forget what the new head ``block`` included; drop what its nonces invalidated.

        Returns the dropped (hash, reason). The rest stays without being
        re-run ([MEMPOOL-HEAD.1]): only the nonces are checked against the
        new head, and the pending state starts again from the head alone.
        A block taken in already changes nothing.

        The chain's head may be past ``block`` by then (the next block was
        imported before this refresh ran), or ``block`` may not be the child
        of the last block taken in: every committed block since that one is
        then taken in, so that what they included is forgotten as included,
        not dropped as "nonce too low" ([MEMPOOL-HEAD.1]).
        """
        head = self.chain.head
        if self._followed in (block.hash, head.hash):
            return []
        blocks = [block]
        if block.hash != head.hash or block.header.parent_hash != self._followed:
            blocks = self._get_blocks_since_followed(head, block) or blocks
        included: set[bytes] = set()
        for taken in blocks:
            self._advance_head_nonces(taken)
            included.update(tx.hash for tx in taken.transactions)
        # Whatever else a block up to the head included, its nonce is used:
        # the restart drops it, so after it the pool has taken in the head.
        self._followed = head.hash
        return self._restart([p for h, p in self._pool.items() if h not in included])

    def _get_blocks_since_followed(self, head: BlockHeaderAPI, given: BlockAPI) -> list[BlockAPI]:
        """The committed blocks after the last one taken in, up to ``head``; none if too many.

        ``given`` is used for its own height: its senders are recovered.
        """
        try:
            followed = self.chain.get_header_by_hash(self._followed)
        except HeaderNotFound:
            return []
        missed = head.block_number - followed.block_number
        if not 0 < missed <= MAX_MISSED_BLOCKS or not self.chain.is_canonical(followed):
            return []
        headers = [
            self.chain.get_header_by_number(number)
            for number in range(followed.block_number + 1, head.block_number + 1)
        ]
        return [
            given if header.hash == given.hash else self.chain.get_block(header)
            for header in headers
        ]

    def _advance_head_nonces(self, block: BlockAPI) -> None:
        """Carry the kept head nonces over ``block``, the child of the block they were read at.

        An account without code changes its nonce only by sending a
        transaction, each of which adds one, unless a set-code (EIP-7702)
        transaction makes it a delegated account or uses its authorization.
        So a block without such a transaction moves exactly its own senders'
        nonces; a block with one, or one whose parent is not where the nonces
        were read (the pool did not see every block in between), empties the
        cache.
        """
        if block.header.parent_hash != self._nonces_at or any(
            tx.type_id == SET_CODE_TRANSACTION_TYPE for tx in block.transactions
        ):
            self._head_nonces.clear()
        else:
            for transaction in block.transactions:
                pending = self._pool.get(transaction.hash)
                sender = pending.sender if pending else recover_sender(transaction)
                if sender in self._head_nonces:
                    self._head_nonces[sender] = transaction.nonce + 1
        self._nonces_at = block.hash

    def forget(self, excluded: Iterable[tuple[bytes, str]]) -> list[tuple[bytes, str]]:
        """Drop the (hash, reason) the builder left out: they revert or turned invalid.

        A sender's later transactions go too: they cannot run without the
        dropped nonce. Returns what was dropped, with why.
        """
        gone = {h: why for h, why in excluded if h in self._pool}
        if not gone:
            return []
        cut: dict[bytes, int] = {}
        for tx_hash in gone:
            pending = self._pool[tx_hash]
            nonce = pending.transaction.nonce
            cut[pending.sender] = min(nonce, cut.get(pending.sender, nonce))
        keep, dropped = [], []
        for tx_hash, pending in self._pool.items():
            first = cut.get(pending.sender)
            if first is not None and pending.transaction.nonce >= first:
                why = gone.get(tx_hash, "an earlier nonce of its sender was dropped")
                dropped.append((tx_hash, why))
            else:
                keep.append(pending)
        return dropped + self._restart(keep)

    def _restart(self, entries: list[Pending]) -> list[tuple[bytes, str]]:
        """A fresh pending state on the head; ``entries`` kept, out of it, if nonces allow."""
        return self._rebuild([replace(p, checked=False) if p.checked else p for p in entries])

    def _replace(self, old_hash: bytes, new: Pending) -> None:
        """Same-nonce replacement: re-run the pending state with ``new`` in place."""
        old = list(self._pool.values())
        dropped = dict(self._rebuild([new if p.transaction.hash == old_hash else p for p in old]))
        if new.transaction.hash in dropped:
            self._rebuild(old)  # the pool as it was: every entry was valid on this head
            raise InvalidTransaction(f"replacement refused: {dropped[new.transaction.hash]}")

    def _rebuild(self, entries: list[Pending]) -> list[tuple[bytes, str]]:
        """Replace the pool by ``entries`` re-run on a fresh pending state; return the dropped."""
        self._pool.clear()
        self._by_sender.clear()
        self._vm, self._header = self._open_pending_state()
        dropped: list[tuple[bytes, str]] = []
        for pending in entries:
            try:
                self.validate_nonce(pending.transaction, pending.sender)
                if pending.checked and self.is_sender_checked(pending.sender):
                    self._apply(pending.transaction)
            except InvalidTransaction as exc:
                dropped.append((pending.transaction.hash, exc.message))
                continue
            self._insert(pending)
        self._size = len(self._pool)
        return dropped

    def _apply(self, transaction: SignedTransactionAPI) -> None:
        """Dry-run ``transaction`` into the pending state, or raise and leave it untouched."""
        self._header, _ = apply_transaction(
            self._vm, self._header, transaction, self.chain.genesis.admins
        )
        if transaction.type_id == SET_CODE_TRANSACTION_TYPE:
            self._pending_authorizations = True

    def is_sender_checked(self, sender: bytes) -> bool:
        """True when every pending transaction of ``sender`` is in the pending state."""
        return all(self._pool[h].checked for h in self._by_sender.get(sender, {}).values())

    def _insert(self, pending: Pending) -> None:
        self._pool[pending.transaction.hash] = pending
        self._by_sender.setdefault(pending.sender, {})[pending.transaction.nonce] = (
            pending.transaction.hash
        )

    def _open_pending_state(self) -> tuple[VirtualMachineAPI, BlockHeaderAPI]:
        """A VM on top of the head whose state is never persisted."""
        head = self.chain.head
        if head.hash != self._nonces_at:
            # the head moved without passing through on_new_head
            self._head_nonces.clear()
            self._nonces_at = head.hash
        header = self.chain.get_next_header(
            head, timestamp=head.timestamp + 1, gas_limit=self.chain.genesis.gas_limit
        )
        # The pending block may hold more than one block's gas; admission checks
        # each transaction against the state, not against one block's gas budget.
        header = header.copy(gas_limit=2**63 - 1)
        self._pending_authorizations = False
        return self.chain.get_vm(header), header
