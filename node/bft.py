"""The node side of QBFT: feeds events to the pure state machine, carries out its actions.

One asyncio task owns the :class:`consensus.qbft.Qbft` machine and takes events
from one queue, so the machine sees them in one order, the same order the WAL
records them in. Every input is written to the WAL before it is handled; our
own signed messages are fsynced (and pass the signing guard) before they are
sent. After a crash the node replays the WAL of the height it was deciding
through the same handler, so it never signs a conflicting message.

Blocks also travel outside consensus: committed blocks are gossiped (observers
and validators that fell behind import them, checking seals), and a node that
learns of a higher head fetches the missing blocks from a peer (block sync).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

import rlp
from eth.abc import BlockAPI, ReceiptAPI
from eth_hash.auto import keccak
from eth_utils import encode_hex

from consensus.errors import InvalidBlock, PolderError
from consensus.messages import (
    Commit,
    InvalidMessage,
    Prepare,
    Proposal,
    SignedMessage,
    compute_message_kind,
    compute_signing_digest,
    decode_signed,
    encode_signed,
    recover_sender,
    sign_message,
)
from consensus.qbft import (
    Action,
    BlockBuilt,
    Broadcast,
    BuildBlock,
    CheckProposal,
    CommitBlock,
    Event,
    MessageReceived,
    ProposalChecked,
    Qbft,
    ReportEquivocation,
    ScheduleTimeout,
    Start,
    TimeoutFired,
    compute_height_start,
)
from node.evidence import EvidenceStore
from node.wal import ConsensusWal, SigningGuard, WalRecord

if TYPE_CHECKING:
    from node.service import Node

log = logging.getLogger("polder.bft")

BUILD_SHARE_OF_TIMEOUT = 0.2
"""Share of the round-0 timeout a proposer may spend filling a block."""
CHECK_SHARE_OF_TIMEOUT = 0.5
"""Share of the round-0 timeout the others' checks of a proposal should take."""
CHECK_COST_WEIGHT = 0.3
"""Weight of the newest check in the running estimate of a check's cost per transaction."""
MIN_CHECK_SAMPLE = 10
"""Proposals with fewer transactions say too little about the cost per transaction."""
MIN_BLOCK_TRANSACTIONS = 20
"""A block may always hold this many, however slow the checks were."""


def update_check_cost(estimate: float | None, seconds: float, transactions: int) -> float | None:
    """Fold one checked proposal into the running seconds-per-transaction estimate."""
    if transactions < MIN_CHECK_SAMPLE:
        return estimate
    latest = seconds / transactions
    if estimate is None:
        return latest
    return CHECK_COST_WEIGHT * latest + (1 - CHECK_COST_WEIGHT) * estimate


def compute_block_budget(check_cost: float | None, request_timeout: float) -> int | None:
    """How many transactions a proposal may hold so the others' checks fit in the round.

    ``check_cost`` is this node's own recent wall seconds per transaction
    when checking others' proposals (CPU contention included); None when
    it has no estimate yet, and then only the build time bounds a block.
    """
    if check_cost is None or check_cost <= 0:
        return None
    return max(MIN_BLOCK_TRANSACTIONS, int(request_timeout * CHECK_SHARE_OF_TIMEOUT / check_cost))


SYNC_BATCH = 64
"""Blocks asked for in one sync request."""
STATUS_INTERVAL = 2.0
"""Seconds between head announcements to peers (drives block sync)."""

KIND_OWN, KIND_PEER, KIND_TIMEOUT, KIND_BUILT, KIND_CHECKED = 1, 2, 3, 4, 5


def log_dropped(dropped: Iterable[tuple[bytes, str]]) -> None:
    """Log each transaction the pool dropped, with why."""
    for tx_hash, reason in dropped:
        log.info("dropped tx %s from the pool: %s", encode_hex(tx_hash), reason)


def encode_event(event: Event) -> tuple[int, bytes] | None:
    """Return the WAL record (kind, data) of an input event; ``None`` for Start."""
    if isinstance(event, MessageReceived):
        return KIND_PEER, encode_signed(event.signed)
    if isinstance(event, TimeoutFired):
        return KIND_TIMEOUT, rlp.encode([event.round])
    if isinstance(event, BlockBuilt):
        return KIND_BUILT, rlp.encode(
            [event.round, event.block, event.block_hash, event.seal_digest]
        )
    if isinstance(event, ProposalChecked):
        return KIND_CHECKED, rlp.encode(
            [event.round, event.block_hash, int(event.valid), event.seal_digest]
        )
    return None


def decode_event(height: int, kind: int, data: bytes, now: float) -> Event:
    """Rebuild an input event from its WAL record."""
    if kind in (KIND_OWN, KIND_PEER):
        return MessageReceived(signed=decode_signed(data), now=now)
    items = rlp.decode(data)
    if kind == KIND_TIMEOUT:
        return TimeoutFired(
            height=height, round=rlp.sedes.big_endian_int.deserialize(items[0]), now=now
        )
    round_number = rlp.sedes.big_endian_int.deserialize(items[0])
    if kind == KIND_BUILT:
        return BlockBuilt(height, round_number, items[1], items[2], items[3])
    valid = rlp.sedes.big_endian_int.deserialize(items[2]) == 1
    return ProposalChecked(height, round_number, items[1], valid, items[3])


class Bft:
    """Runs consensus for a validator, or follows the chain for an observer."""

    def __init__(
        self,
        node: Node,
        *,
        wal: ConsensusWal,
        guard: SigningGuard,
        evidence: EvidenceStore,
        send: Callable[[str, bytes], Awaitable[None]],
        is_validator: bool,
    ) -> None:
        self.node = node
        self.chain = node.chain
        self.wal = wal
        self.guard = guard
        self.evidence = evidence
        self.broadcast = send
        genesis = node.genesis
        self.chain_id = genesis.chain_id
        self.params = genesis.consensus
        self.qbft: Qbft | None = (
            Qbft(genesis.chain_id, node.private_key, self.chain.validators, genesis.consensus)
            if is_validator
            else None
        )
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.timers: dict[tuple[int, int], asyncio.TimerHandle] = {}
        self.start_now = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.sync_lock = asyncio.Lock()
        self.sync_task: asyncio.Task[None] | None = None
        self.rounds_started = 0
        self.round_changes = 0
        self.check_cost: float | None = None
        """Wall seconds per transaction of this node's recent proposal checks."""
        self.last_commit_time = time.time()
        self.finality_latency = 0.0
        """Seconds from starting the last height to committing it."""
        self.block_interval = 0.0
        """Seconds between the last two commits."""
        self.height_started_at = time.time()

    # -- life cycle -----------------------------------------------------------

    async def start(self) -> None:
        """Replay the WAL of the height being decided, then run."""
        if self.qbft is not None:
            height = self.chain.head.block_number + 1
            await self.replay(height)
            self.tasks.append(asyncio.create_task(self.consume(), name="qbft"))
        self.tasks.append(asyncio.create_task(self.announce_status(), name="status"))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for handle in self.timers.values():
            handle.cancel()

    async def replay(self, height: int) -> None:
        """Feed Start and every WAL record of ``height`` through the machine."""
        records = await self.node.run_urgent(self.wal.replay, height)
        now = time.time()
        await self.handle(Start(height, now, tuple(self.chain.validators)), replaying=True)
        for record in records:
            await self.handle(decode_event(height, record.kind, record.data, now), replaying=True)
        if records:
            log.info("replayed %d WAL records of height %d", len(records), height)

    async def consume(self) -> None:
        """The one owner of the machine: handle queued events in order."""
        while True:
            event = await self.queue.get()
            try:
                await self.handle(event, replaying=False)
            except Exception:
                log.exception("consensus event %s failed", type(event).__name__)

    async def handle(self, event: Event, *, replaying: bool) -> None:
        """Log ``event`` (unless replaying it), run the machine, carry out its actions."""
        machine = self.qbft
        if machine is None:
            return
        record = encode_event(event)
        if record is not None and not replaying and not self.is_own_echo(event):
            kind, data = record
            height = machine.height or 0
            await self.node.run_urgent(
                partial(self.wal.append, WalRecord(height, kind, data), sync=False)
            )
        for action in machine.handle(event):
            await self.execute(action, replaying=replaying)

    def is_own_echo(self, event: Event) -> bool:
        """Our own messages are already in the WAL (fsynced before sending)."""
        if not isinstance(event, MessageReceived):
            return False
        try:
            return recover_sender(event.signed, self.chain_id) == self.node.address
        except PolderError:
            return False

    # -- actions ----------------------------------------------------------------

    async def execute(self, action: Action, *, replaying: bool) -> None:
        if isinstance(action, Broadcast):
            if not replaying:
                await self.send_own(action.signed)
        elif isinstance(action, ScheduleTimeout):
            self.schedule_timeout(action)
        elif isinstance(action, BuildBlock):
            if not replaying:
                await self.build(action)
        elif isinstance(action, CheckProposal):
            if not replaying:
                await self.check(action)
        elif isinstance(action, CommitBlock):
            await self.commit(action)
        elif isinstance(action, ReportEquivocation):
            await self.report(action)

    async def send_own(self, signed: SignedMessage[Any]) -> None:
        """Guard, fsync, send, and echo our own signed message."""
        payload = signed.payload
        kind = compute_message_kind(payload)
        digest = compute_signing_digest(payload, self.chain_id)
        allowed = await self.node.run_urgent(
            self.guard.may_sign, payload.height, payload.round, int(kind), digest
        )
        if not allowed:
            log.critical(
                "refused to send a %s for height %d round %d: it conflicts with one signed before",
                kind.name,
                payload.height,
                payload.round,
            )
            return
        await self.node.run_urgent(
            self.guard.record, payload.height, payload.round, int(kind), digest
        )
        raw = encode_signed(signed)
        await self.node.run_urgent(
            partial(self.wal.append, WalRecord(payload.height, KIND_OWN, raw), sync=True)
        )
        await self.broadcast("qbft", raw)
        self.queue.put_nowait(MessageReceived(signed=signed, now=time.time()))
        if self.node.config.byzantine == "equivocate":
            await self.equivocate(payload)

    async def equivocate(self, payload: Any) -> None:
        """Test-only byzantine step: also send a conflicting vote for the same round.

        Enabled only by config ``"byzantine": "equivocate"`` together with
        ``POLDER_ALLOW_BYZANTINE=1``; it bypasses the WAL and the signing guard,
        which is exactly what an honest node never does.
        """
        if not isinstance(payload, Proposal | Prepare | Commit):
            return
        twin = replace(payload, block_hash=keccak(payload.block_hash))
        signed = sign_message(twin, self.node.private_key, self.chain_id)
        log.warning("byzantine mode: sent a conflicting %s", type(payload).__name__)
        await self.broadcast("qbft", encode_signed(signed))

    def schedule_timeout(self, action: ScheduleTimeout) -> None:
        self.rounds_started += 1
        if action.round > 0:
            self.round_changes += 1
        key = (action.height, action.round)
        old = self.timers.pop(key, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, action.at - time.time())
        self.timers[key] = asyncio.get_running_loop().call_later(
            delay, self.fire_timeout, action.height, action.round
        )

    def fire_timeout(self, height: int, round_number: int) -> None:
        self.timers.pop((height, round_number), None)
        if self.qbft is not None and self.qbft.height == height:
            log.info(
                "round %d of height %d timed out without a decision: moving to round %d",
                round_number,
                height,
                round_number + 1,
            )
        self.queue.put_nowait(TimeoutFired(height, round_number, time.time()))

    async def build(self, action: BuildBlock) -> None:
        def build() -> BlockBuilt | None:
            head = self.chain.head
            if head.block_number + 1 != action.height:
                return None  # a synced or gossiped block got there first
            if not self.node.mempool.follows(head):
                # The head's own after_commit has not refreshed the pool yet
                # (a gossiped block and the decision raced): the pool still
                # holds the head's transactions, and leaving them out as
                # "nonce too low" would drop their senders' later ones.
                log_dropped(self.node.mempool.on_new_head(self.chain.get_block(head)))
            budget = compute_block_budget(self.check_cost, self.params.request_timeout)
            built = self.chain.build_block(
                self.node.mempool.select()[:budget],
                timestamp=int(time.time()),
                coinbase=self.node.address,
                round_number=action.round,
                # a block every validator must re-execute within the round's
                # timeout: stop filling it well before that
                max_seconds=self.params.request_timeout * BUILD_SHARE_OF_TIMEOUT,
            )
            block = built.block
            log_dropped(
                self.node.mempool.forget(
                    (excluded.tx_hash, excluded.reason) for excluded in built.excluded
                )
            )
            digest = self.chain.compute_seal_digest(block, action.round)
            return BlockBuilt(action.height, action.round, rlp.encode(block), block.hash, digest)

        built = await self.node.run_urgent(build)
        if built is not None:
            self.queue.put_nowait(built)

    async def check(self, action: CheckProposal) -> None:
        def check() -> ProposalChecked:
            try:
                block = self.chain.decode_block(action.block)
                if block.hash != action.block_hash:
                    raise InvalidBlock("the proposed block does not hash to the claimed hash")
                if not self.chain.has_staged(block.hash):
                    block = self.node.mempool.reuse_decoded(block)
                    began = time.perf_counter()
                    self.chain.check_proposal(block, time.time())
                    self.check_cost = update_check_cost(
                        self.check_cost, time.perf_counter() - began, len(block.transactions)
                    )
                digest = self.chain.compute_seal_digest(block, action.round)
            except PolderError as exc:
                log.warning(
                    "proposal for height %d round %d refused: %s",
                    action.height,
                    action.round,
                    exc.message,
                )
                return ProposalChecked(action.height, action.round, action.block_hash, False, b"")
            return ProposalChecked(action.height, action.round, action.block_hash, True, digest)

        self.queue.put_nowait(await self.node.run_urgent(check))

    async def commit(self, action: CommitBlock) -> None:
        """Seal the decided block with the quorum's seals, persist it, start the next height."""

        def persist() -> tuple[BlockAPI, tuple[ReceiptAPI, ...]] | None:
            if self.chain.head.block_number >= action.height:
                return None  # already imported through gossip or sync
            block = self.chain.decode_block(action.block)
            return self.persist_sealed(self.chain.seal_block(block, action.seals, action.round))

        result = await self.node.run_urgent(persist)
        if result is not None:
            await self.after_commit(*result)
        else:
            self.schedule_start(self.chain.head.block_number + 1)

    def persist_sealed(self, block: BlockAPI) -> tuple[BlockAPI, tuple[ReceiptAPI, ...]]:
        """Persist a sealed next block, decided here or from a peer; return it and its receipts.

        If this node built or checked a block with this header, it holds the
        state: the commit checks the seals and keeps the executed body,
        whatever body arrived ([QBFT-GOSSIP-STAGED.1]). Otherwise the block
        is imported (executed).
        """
        if self.chain.has_staged(block.hash):
            return self.chain.commit_staged_block(block)
        return block, self.chain.import_block(self.node.mempool.reuse_decoded(block))

    async def after_commit(self, block: BlockAPI, receipts: tuple[ReceiptAPI, ...]) -> None:
        """Everything that follows a new head, however it arrived."""
        now = time.time()
        self.block_interval = now - self.last_commit_time
        self.finality_latency = now - self.height_started_at
        self.last_commit_time = now
        for key in [k for k in self.timers if k[0] <= block.number]:
            self.timers.pop(key).cancel()
        # peers, observers and subscribers first: refreshing the pool can take a while
        await self.broadcast("block", rlp.encode(block))
        await self.node.announce(block, receipts)
        await self.node.run_urgent(self.wal.truncate_before, block.number)
        log_dropped(await self.node.run_urgent(self.node.mempool.on_new_head, block))
        self.schedule_start(block.number + 1, committed_at=now)

    async def report(self, action: ReportEquivocation) -> None:
        sender = recover_sender(action.first, self.chain_id)
        log.warning(
            "equivocation by validator %s at height %d round %d: evidence kept",
            encode_hex(sender),
            action.first.payload.height,
            action.first.payload.round,
        )
        await self.node.run_urgent(self.evidence.save, sender, action.first, action.second)

    # -- heights ---------------------------------------------------------------

    def schedule_start(self, height: int, committed_at: float | None = None) -> None:
        """Start ``height`` when the head's block period is over ([QBFT-PERIOD.1]).

        With an empty pool it waits for the empty-block period instead, or
        until a transaction or a peer's message for ``height`` arrives. While
        a block sync runs, nothing is scheduled: the synced blocks are old, so
        every height would start at once; the sync schedules its end.
        """
        if self.qbft is None or self.sync_lock.locked():
            return
        self.start_now.clear()
        earliest, latest = compute_height_start(
            self.params,
            self.chain.head.timestamp,
            time.time() if committed_at is None else committed_at,
        )
        if len(self.node.mempool) > 0:
            latest = earliest
        self.tasks.append(asyncio.create_task(self.start_after(height, earliest, latest)))
        self.tasks = [t for t in self.tasks if not t.done()]

    async def start_after(self, height: int, earliest: float, latest: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.start_now.wait(), max(0.0, latest - time.time()))
        # a transaction or a peer's message woke us early: the block period still holds
        await asyncio.sleep(max(0.0, earliest - time.time()))
        machine = self.qbft
        if machine is not None and self.chain.head.block_number + 1 == height > (
            machine.height or 0
        ):
            self.height_started_at = time.time()
            self.queue.put_nowait(Start(height, time.time(), tuple(self.chain.validators)))

    def on_transaction(self) -> None:
        """A transaction arrived: an idle network should not wait for the empty period."""
        self.start_now.set()

    # -- peers ---------------------------------------------------------------

    async def on_message(self, peer: bytes, kind: str, payload: bytes) -> None:
        if kind == "qbft":
            await self.on_consensus_message(peer, payload)
        elif kind == "block":
            await self.on_block(peer, payload)
        elif kind == "status":
            await self.on_status(peer, payload)
        elif kind == "tx":
            with contextlib.suppress(PolderError):
                await self.node.run(partial(self.node.mempool.add, payload, dry_run=False))
                self.on_transaction()

    async def on_consensus_message(self, peer: bytes, payload: bytes) -> None:
        if self.qbft is None:
            return
        try:
            signed = decode_signed(payload)
        except InvalidMessage as exc:
            log.info("dropped a malformed consensus message from %s: %s", encode_hex(peer), exc)
            return
        height = signed.payload.height
        head = self.chain.head.block_number
        if height > head + 1:
            self.start_sync(peer)
        if height == head + 1:
            self.start_now.set()
        self.queue.put_nowait(MessageReceived(signed=signed, now=time.time()))

    async def on_block(self, peer: bytes, payload: bytes) -> None:
        """A committed block gossiped by a peer: import it if it is our next one."""
        head = self.chain.head.block_number
        try:
            number = self.chain.decode_block_number(payload)
        except InvalidBlock:
            return
        if number == head + 1:
            await self.import_raw(payload)
        elif number > head + 1:
            self.start_sync(peer)

    async def on_status(self, peer: bytes, payload: bytes) -> None:
        try:
            their_head = rlp.decode(payload, sedes=rlp.sedes.big_endian_int)
        except (rlp.exceptions.DecodingError, rlp.exceptions.DeserializationError):
            return
        if their_head > self.chain.head.block_number:
            self.start_sync(peer)

    async def on_request(self, peer: bytes, kind: str, payload: bytes) -> bytes:
        """Serve block sync: ``blocks`` with RLP([first, count]) → RLP([block, ...])."""
        del peer  # any authenticated peer may sync
        if kind != "blocks":
            raise InvalidMessage(f"unknown request {kind!r}")
        first, count = (rlp.sedes.big_endian_int.deserialize(x) for x in rlp.decode(payload))
        return await self.node.run(self.get_blocks_rlp, first, min(count, SYNC_BATCH))

    def get_blocks_rlp(self, first: int, count: int) -> bytes:
        head = self.chain.head.block_number
        blocks = [
            rlp.encode(self.chain.get_block(self.chain.get_header_by_number(n)))
            for n in range(first, min(head, first + count - 1) + 1)
        ]
        encoded: bytes = rlp.encode(blocks)
        return encoded

    async def import_raw(self, raw: bytes) -> bool:
        """Import one sealed block (seals checked); return False if refused."""

        def do_import() -> tuple[BlockAPI, tuple[ReceiptAPI, ...]] | None:
            block = self.chain.decode_block(raw)
            if block.number != self.chain.head.block_number + 1:
                return None
            return self.persist_sealed(block)

        try:
            result = await self.node.run_urgent(do_import)
        except InvalidBlock as exc:
            log.warning("refused a block from a peer: %s", exc.message)
            return False
        if result is None:
            return False
        await self.after_commit(*result)
        return True

    def start_sync(self, peer: bytes) -> None:
        """Start block sync from ``peer`` unless a sync is already running."""
        if self.sync_task is None or self.sync_task.done():
            self.sync_task = asyncio.create_task(self.sync_from(peer), name="sync")

    async def sync_from(self, peer: bytes) -> None:
        """Fetch and import blocks from ``peer`` until we reach its head, then go on deciding."""
        if self.sync_lock.locked():
            return
        async with self.sync_lock:
            await self.sync_blocks(peer)
        self.schedule_start(self.chain.head.block_number + 1)

    async def sync_blocks(self, peer: bytes) -> None:
        """The sync itself; the caller holds :attr:`sync_lock`."""
        while True:
            first = self.chain.head.block_number + 1
            try:
                reply = await self.node.p2p.request(peer, "blocks", rlp.encode([first, SYNC_BATCH]))
                blocks = rlp.decode(reply)
            except (PolderError, rlp.exceptions.DecodingError) as exc:
                log.info("block sync from %s stopped: %s", encode_hex(peer), exc)
                return
            if not blocks:
                return
            log.info(
                "syncing blocks %d-%d from %s", first, first + len(blocks) - 1, encode_hex(peer)
            )
            for raw in blocks:
                if not isinstance(raw, bytes) or not await self.import_raw(raw):
                    return

    async def announce_status(self) -> None:
        while True:
            await self.broadcast("status", rlp.encode(self.chain.head.block_number))
            await asyncio.sleep(STATUS_INTERVAL)

    def status(self) -> dict[str, Any]:
        """What an operator wants to see first."""
        return {
            "round": self.qbft.round if self.qbft is not None else None,
            "consensusHeight": self.qbft.height if self.qbft is not None else None,
            "lastCommitTime": self.last_commit_time,
            "roundsStarted": self.rounds_started,
            "roundChanges": self.round_changes,
            "finalityLatencySeconds": self.finality_latency,
            "blockIntervalSeconds": self.block_interval,
        }
