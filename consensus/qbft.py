"""The QBFT round state machine: events in, actions out, no I/O.

Moniz, "The Istanbul BFT Consensus Algorithm" (arXiv 2002.03613), as Besu runs
it. One :class:`Qbft` per validator owns the round state of the height being
decided. The node feeds it events (:class:`Start`, :class:`MessageReceived`,
:class:`TimeoutFired`, :class:`BlockBuilt`, :class:`ProposalChecked`), each
carrying what it needs (``now`` included); ``handle`` returns actions
(:class:`Broadcast`, :class:`ScheduleTimeout`, :class:`BuildBlock`,
:class:`CheckProposal`, :class:`CommitBlock`, :class:`ReportEquivocation`) for
the node to carry out. Signing is deterministic (RFC 6979), so replaying the
node's WAL of events through ``handle`` rebuilds the very same state.

Rules are tagged ``[QBFT-…]`` as in docs/spec/consensus.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from coincurve import PrivateKey

from consensus.errors import InvalidBlock, InvalidSeal, StorageError
from consensus.genesis import ConsensusParams
from consensus.messages import (
    HASH_LENGTH,
    MAX_ROUND,
    Commit,
    InvalidMessage,
    MessageKind,
    Payload,
    Prepare,
    Proposal,
    RoundChange,
    SignedMessage,
    compute_message_kind,
    decode_signed,
    encode_signed,
    is_same_vote,
    recover_sender,
    sign_message,
    strip_justification,
    validate_payload,
)
from consensus.seal import compute_address, compute_quorum, recover_seal_signer, sign_seal

MAX_FUTURE_ROUNDS_PER_SENDER = 4
"""Rounds above ours for which one sender's messages are kept ([QBFT-BUFFER.1])."""
MAX_NEXT_HEIGHT_MESSAGES_PER_SENDER = 16
"""Messages for the next height kept per sender until that height starts."""
SNAPSHOT_VERSION = 1

T = TypeVar("T", bound=Payload)
MessageKey = tuple[int, int]
"""``(kind, round)`` of a message of the current height."""


# --- events -----------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """The node starts deciding ``height`` (at boot, or after committing ``height - 1``)."""

    height: int
    """Block number to decide."""
    now: float
    """Current time in seconds."""
    validators: tuple[bytes, ...] | None = None
    """Validator set in force at ``height``, in proposer order; ``None`` keeps the current one."""


@dataclass(frozen=True)
class MessageReceived:
    """A consensus message arrived from a peer, or our own came back (echo or WAL replay)."""

    signed: SignedMessage[Payload]
    """The message, already decoded."""
    now: float
    """Current time in seconds."""


@dataclass(frozen=True)
class TimeoutFired:
    """A timer requested by :class:`ScheduleTimeout` expired."""

    height: int
    """Height the timer was scheduled for."""
    round: int
    """Round the timer was scheduled for."""
    now: float
    """Current time in seconds."""


@dataclass(frozen=True)
class BlockBuilt:
    """The node built the block a :class:`BuildBlock` asked for."""

    height: int
    """Height of the request."""
    round: int
    """Round of the request."""
    block: bytes
    """RLP of the full block."""
    block_hash: bytes
    """Its hash ([CHAIN-HASH.1])."""
    seal_digest: bytes
    """What a commit seal signs for this block in ``round`` ([CHAIN-SEAL.1])."""


@dataclass(frozen=True)
class ProposalChecked:
    """The node executed the block a :class:`CheckProposal` asked about."""

    height: int
    """Height of the request."""
    round: int
    """Round of the request."""
    block_hash: bytes
    """Hash of the checked block."""
    valid: bool
    """True if the block hashes to ``block_hash`` and is a valid next block."""
    seal_digest: bytes
    """What a commit seal signs for this block in ``round`` (ignored when invalid)."""


Event = Start | MessageReceived | TimeoutFired | BlockBuilt | ProposalChecked


# --- actions ----------------------------------------------------------------------


@dataclass(frozen=True)
class Broadcast:
    """Persist ``signed`` in the WAL (fsync), then send it to every validator."""

    signed: SignedMessage[Payload]
    """Our signed message."""


@dataclass(frozen=True)
class ScheduleTimeout:
    """Deliver :class:`TimeoutFired` for (height, round) at time ``at``."""

    height: int
    """Height of the round."""
    round: int
    """The round that just started."""
    at: float
    """Absolute time in seconds (``now`` + the round's timeout)."""


@dataclass(frozen=True)
class BuildBlock:
    """Build a new block on the head and answer with :class:`BlockBuilt`."""

    height: int
    """Height to build."""
    round: int
    """Round the block is for (its seal digest uses this round)."""


@dataclass(frozen=True)
class CheckProposal:
    """Check and execute a proposed block and answer with :class:`ProposalChecked`."""

    height: int
    """Height of the proposal."""
    round: int
    """Round of the proposal (the seal digest uses this round)."""
    block: bytes
    """RLP of the proposed block."""
    block_hash: bytes
    """Hash the proposer claims; the node checks the block hashes to it."""


@dataclass(frozen=True)
class CommitBlock:
    """The block is final: import it with these seals in its extraData."""

    height: int
    """Height decided."""
    block: bytes
    """RLP of the block as proposed."""
    block_hash: bytes
    """Its hash."""
    round: int
    """Round it was committed in (the extraData round)."""
    seals: tuple[bytes, ...]
    """Commit seals of a quorum of distinct validators, in validator order."""


@dataclass(frozen=True)
class ReportEquivocation:
    """One validator signed two different messages of one kind for one height and round."""

    first: SignedMessage[Payload]
    """The message received first (the one that counts)."""
    second: SignedMessage[Payload]
    """The conflicting message; both verify with :func:`validate_equivocation`."""


Action = Broadcast | ScheduleTimeout | BuildBlock | CheckProposal | CommitBlock | ReportEquivocation


# --- pure rules -------------------------------------------------------------------


def compute_proposer(validators: Sequence[bytes], height: int, round_number: int) -> bytes:
    """Return the proposer of (height, round): round-robin ([QBFT-PROPOSER.1])."""
    return validators[(height + round_number) % len(validators)]


def compute_round_timeout(params: ConsensusParams, round_number: int) -> float:
    """Return how long a round lasts: doubling, capped ([QBFT-TIMEOUT.1])."""
    doubled = params.request_timeout * 2.0 ** min(round_number, 1000)
    return min(doubled, params.max_round_timeout)


def compute_height_start(
    params: ConsensusParams, parent_timestamp: int, now: float
) -> tuple[float, float]:
    """Return (earliest, latest) start of the height after a block timestamped ``parent_timestamp``.

    [QBFT-PERIOD.1]: periods count from the parent's timestamp, as Besu's
    block timer does, not from the moment a validator committed the parent.
    A parent that took longer than the period to decide is followed at once,
    and every validator aims at the same instant whenever its commit arrived.
    ``now`` (the commit) bounds the wait: a clock running behind the
    proposer's never holds a validator back more than a period after it.
    """
    period = params.block_period
    empty = max(params.block_period, params.empty_block_period)
    earliest = min(parent_timestamp + period, now + period)
    latest = min(parent_timestamp + empty, now + empty)
    return earliest, latest


def compute_weak_quorum(validator_count: int) -> int:
    """Return f + 1 with f = (n - 1) // 3: enough senders to include an honest one."""
    return (validator_count - 1) // 3 + 1


def validate_quorum_of(
    messages: Sequence[SignedMessage[T]],
    validators: Sequence[bytes],
    chain_id: int,
    matches: Callable[[T], bool],
    what: str,
) -> None:
    """Raise :class:`InvalidMessage` unless ``messages`` are a quorum of distinct validators'.

    Every message must satisfy ``matches``. The cheap checks run before any
    signature is recovered.
    """
    members = frozenset(validators)
    quorum = compute_quorum(len(members))
    if not quorum <= len(messages) <= len(members):
        raise InvalidMessage(f"{what} needs {quorum} to {len(members)} messages")
    if not all(matches(signed.payload) for signed in messages):
        raise InvalidMessage(f"{what} holds a message for another height, round or block")
    senders = set()
    for signed in messages:
        sender = recover_sender(signed, chain_id)
        if sender not in members or sender in senders:
            raise InvalidMessage(f"{what} holds a message by a non-validator or a duplicate")
        senders.add(sender)


def validate_prepared_certificate(
    prepares: Sequence[SignedMessage[Prepare]],
    target: Prepare,
    validators: Sequence[bytes],
    chain_id: int,
) -> None:
    """Raise unless ``prepares`` are a quorum of prepares equal to ``target``."""
    validate_quorum_of(
        prepares, validators, chain_id, lambda p: p == target, "a prepared certificate"
    )


def validate_round_change(payload: RoundChange, validators: Sequence[bytes], chain_id: int) -> None:
    """Raise unless a received round change's prepared claim is justified ([QBFT-RC.2])."""
    if payload.prepared_round is None or payload.prepared_block_hash is None:
        return
    if payload.prepared_round >= payload.round:
        raise InvalidMessage("a round change's prepared round must be below its round")
    if payload.prepared_block is None:
        raise InvalidMessage("a round change with a prepared round carries the prepared block")
    target = Prepare(payload.height, payload.prepared_round, payload.prepared_block_hash)
    validate_prepared_certificate(payload.prepares, target, validators, chain_id)


def compute_highest_prepared(round_changes: Sequence[RoundChange]) -> RoundChange | None:
    """Return the round change with the highest prepared round, if any is prepared."""
    prepared = [rc for rc in round_changes if rc.prepared_round is not None]
    return max(prepared, key=lambda rc: rc.prepared_round or 0, default=None)


def validate_proposal_justification(
    proposal: Proposal, validators: Sequence[bytes], chain_id: int
) -> None:
    """Raise unless the proposal is justified (the paper's JustifyPrePrepare, [QBFT-PROPOSE.2])."""
    if proposal.round == 0:
        if proposal.round_changes or proposal.prepares:
            raise InvalidMessage("a round-0 proposal carries no justification")
        return

    def matches(rc: RoundChange) -> bool:
        below = rc.prepared_round is None or rc.prepared_round < proposal.round
        return rc.height == proposal.height and rc.round == proposal.round and below

    validate_quorum_of(proposal.round_changes, validators, chain_id, matches, "a round-change set")
    payloads = [rc.payload for rc in proposal.round_changes]
    highest = compute_highest_prepared(payloads)
    if highest is None or highest.prepared_block_hash is None:
        if proposal.prepares:
            raise InvalidMessage("a proposal without a prepared round change carries no prepares")
        return
    if any(
        rc.prepared_round == highest.prepared_round
        and rc.prepared_block_hash != highest.prepared_block_hash
        for rc in payloads
    ):
        raise InvalidMessage("two round changes claim different blocks prepared in one round")
    if proposal.block_hash != highest.prepared_block_hash:
        raise InvalidMessage("a proposal must re-propose the highest prepared block")
    target = Prepare(proposal.height, highest.prepared_round or 0, highest.prepared_block_hash)
    validate_prepared_certificate(proposal.prepares, target, validators, chain_id)


def select_round_change_quorum(
    by_sender: Mapping[bytes, SignedMessage[RoundChange]], validators: Sequence[bytes]
) -> tuple[SignedMessage[RoundChange], ...] | None:
    """Pick a quorum of round changes, highest prepared first, then in validator order."""
    quorum = compute_quorum(len(validators))
    if len(by_sender) < quorum:
        return None

    def rank(sender: bytes) -> tuple[bool, int, int]:
        prepared = by_sender[sender].payload.prepared_round
        return prepared is None, -(prepared or 0), validators.index(sender)

    return tuple(by_sender[sender] for sender in sorted(by_sender, key=rank)[:quorum])


def validate_equivocation(
    first: SignedMessage[Payload],
    second: SignedMessage[Payload],
    validators: Sequence[bytes],
    chain_id: int,
) -> bytes:
    """Return the validator that signed both messages; raise unless they equivocate."""
    a, b = first.payload, second.payload
    if compute_message_kind(a) != compute_message_kind(b) or (a.height, a.round) != (
        b.height,
        b.round,
    ):
        raise InvalidMessage("equivocation needs two messages of one kind, height and round")
    if is_same_vote(a, b):
        raise InvalidMessage("the two messages sign the same fields")
    sender = recover_sender(first, chain_id)
    if sender != recover_sender(second, chain_id) or sender not in validators:
        raise InvalidMessage("the two messages are not signed by one validator")
    return sender


def narrow(signed: SignedMessage[Payload], kind: type[T]) -> SignedMessage[T] | None:
    """Return ``signed`` typed by its payload kind, or ``None`` if it is another kind."""
    payload = signed.payload
    if isinstance(payload, kind):
        return SignedMessage(payload=payload, signature=signed.signature)
    return None


# --- the state machine ------------------------------------------------------------


@dataclass
class HeightState:
    """What one validator knows about the height it is deciding."""

    height: int
    """Block number being decided."""
    validators: tuple[bytes, ...]
    """Validator set of this height, in proposer order."""
    round: int = 0
    """Current round."""
    committed: bool = False
    """True once :class:`CommitBlock` was emitted; the height then ignores all input."""
    prepared_round: int | None = None
    """Highest round in which we saw a quorum of prepares (the paper's pr_i)."""
    prepared_block_hash: bytes | None = None
    """The block prepared in ``prepared_round`` (the paper's pv_i)."""
    prepared_block: bytes | None = None
    """Its bytes, carried by our round changes."""
    prepared_certificate: tuple[SignedMessage[Prepare], ...] = ()
    """The quorum of prepares behind ``prepared_round``."""
    messages: dict[MessageKey, dict[bytes, SignedMessage[Payload]]] = field(default_factory=dict)
    """First admissible message of each (kind, round) per sender, ours included."""
    sent: dict[MessageKey, SignedMessage[Payload]] = field(default_factory=dict)
    """Every message we signed at this height: never sign a conflicting one."""
    accepted: dict[int, bytes] = field(default_factory=dict)
    """Round → hash of the proposal accepted in it."""
    checks: dict[tuple[int, bytes], bytes | None] = field(default_factory=dict)
    """(round, hash) → seal digest of a block found valid, ``None`` if invalid."""
    builds: dict[int, tuple[SignedMessage[RoundChange], ...]] = field(default_factory=dict)
    """Round → justification of a block we asked the node to build."""
    reported: set[tuple[int, int, bytes]] = field(default_factory=set)
    """(kind, round, sender) already reported as equivocating."""
    seal_cache: dict[tuple[int, bytes, bytes], bool] = field(default_factory=dict)
    """(round, hash, sender) → whether its commit seal verified (derived, not saved)."""


class Qbft:
    """One validator's QBFT state machine: ``handle(event) -> list[Action]``."""

    def __init__(
        self,
        chain_id: int,
        private_key: bytes,
        validators: Sequence[bytes],
        params: ConsensusParams,
    ) -> None:
        """Create an idle machine; it acts once it receives :class:`Start`.

        ``validators`` is the set used until a :class:`Start` names another.
        A machine whose key is not in the set follows consensus without signing.
        """
        self.chain_id = chain_id
        self.params = params
        self.address = compute_address(PrivateKey(private_key).public_key)
        self.validators = tuple(validators)
        self.state: HeightState | None = None
        self.next_height: list[tuple[bytes, SignedMessage[Payload]]] = []
        self.now = 0.0
        self._private_key = private_key

    # --- public interface -----------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        """Apply one event and return the actions the node must carry out, in order."""
        out: list[Action] = []
        if isinstance(event, Start):
            self.now = event.now
            self._on_start(event, out)
        elif isinstance(event, MessageReceived):
            self.now = event.now
            self._on_message(event.signed, out)
        elif isinstance(event, TimeoutFired):
            self.now = event.now
            self._on_timeout(event, out)
        elif isinstance(event, BlockBuilt):
            self._on_block_built(event, out)
        else:
            self._on_proposal_checked(event, out)
        return out

    @property
    def height(self) -> int | None:
        """Height being decided, ``None`` before the first :class:`Start`."""
        return None if self.state is None else self.state.height

    @property
    def round(self) -> int | None:
        """Current round, ``None`` before the first :class:`Start`."""
        return None if self.state is None else self.state.round

    def last_signed(
        self, height: int, round_number: int, kind: MessageKind
    ) -> SignedMessage[Payload] | None:
        """Return what we signed of ``kind`` at (height, round), if it is the current height."""
        if self.state is None or self.state.height != height:
            return None
        return self.state.sent.get((int(kind), round_number))

    def snapshot(self) -> dict[str, Any]:
        """Return the whole state as JSON-ready plain data (no key material)."""
        return {
            "version": SNAPSHOT_VERSION,
            "address": self.address.hex(),
            "now": self.now,
            "validators": [v.hex() for v in self.validators],
            "next_height": [[s.hex(), encode_signed(m).hex()] for s, m in self.next_height],
            "state": None if self.state is None else encode_height_state(self.state),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Replace the state by a :meth:`snapshot`; raise :class:`StorageError` if unusable."""
        try:
            if data["version"] != SNAPSHOT_VERSION or data["address"] != self.address.hex():
                raise StorageError("consensus snapshot of another version or validator")
            self.now = float(data["now"])
            self.validators = tuple(bytes.fromhex(v) for v in data["validators"])
            self.next_height = [
                (bytes.fromhex(s), decode_signed(bytes.fromhex(m))) for s, m in data["next_height"]
            ]
            state = data["state"]
            self.state = None if state is None else decode_height_state(state)
        except (KeyError, TypeError, ValueError, InvalidMessage) as exc:
            raise StorageError(f"consensus snapshot is corrupted: {exc}") from exc

    # --- event handlers -----------------------------------------------------------

    def _on_start(self, event: Start, out: list[Action]) -> None:
        # Triggered by: the node, at boot and after each committed block ([QBFT-START.1]).
        if self.state is not None and event.height <= self.state.height:
            return
        validators = event.validators or (
            self.validators if self.state is None else self.state.validators
        )
        self.state = HeightState(height=event.height, validators=tuple(validators))
        buffered = [m for _, m in self.next_height if m.payload.height == event.height]
        self.next_height = []
        self._enter_round(0, out, announce=False)
        for signed in buffered:
            self._on_message(signed, out)

    def _on_message(self, signed: SignedMessage[Payload], out: list[Action]) -> None:
        # Triggered by: a peer's message, our own echoed back, or a WAL record replayed.
        s = self.state
        if s is None or signed.payload.height < s.height:
            return
        try:
            validate_payload(signed.payload)
            sender = recover_sender(signed, self.chain_id)
        except InvalidMessage:
            return
        if sender not in s.validators:  # [QBFT-MEMBER.1]
            return
        if signed.payload.height > s.height:
            self._buffer_next_height(sender, signed)
            return
        self._on_signed(sender, signed, out)

    def _on_timeout(self, event: TimeoutFired, out: list[Action]) -> None:
        # Triggered by: the timer of (height, round) expiring ([QBFT-RC.1]).
        s = self.state
        if s is None or s.committed or (event.height, event.round) != (s.height, s.round):
            return
        if s.round < MAX_ROUND:
            self._enter_round(s.round + 1, out, announce=True)

    def _on_block_built(self, event: BlockBuilt, out: list[Action]) -> None:
        # Triggered by: the node answering our BuildBlock ([QBFT-PROPOSE.1]).
        s = self.state
        if s is None or s.committed or (event.height, event.round) != (s.height, s.round):
            return
        justification = s.builds.get(event.round)
        if justification is None:
            return
        validate_seal_digest(event.seal_digest)
        s.checks.setdefault((event.round, event.block_hash), event.seal_digest)
        proposal = Proposal(
            height=s.height,
            round=s.round,
            block=event.block,
            block_hash=event.block_hash,
            round_changes=justification,
        )
        self._sign(proposal, out)

    def _on_proposal_checked(self, event: ProposalChecked, out: list[Action]) -> None:
        # Triggered by: the node answering our CheckProposal ([QBFT-PREPARE.2]).
        s = self.state
        key = (event.round, event.block_hash)
        if s is None or s.committed or event.height != s.height or key in s.checks:
            return
        if s.accepted.get(event.round) != event.block_hash:
            return
        if event.valid:
            validate_seal_digest(event.seal_digest)
        s.checks[key] = event.seal_digest if event.valid else None
        self._after_check(event.round, event.block_hash, out)

    # --- message intake -----------------------------------------------------------

    def _on_signed(self, sender: bytes, signed: SignedMessage[Payload], out: list[Action]) -> None:
        # Triggered by: a message of the current height from a validator (ours included).
        s = self.require_state()
        payload = signed.payload
        key = (int(compute_message_kind(payload)), payload.round)
        if sender == self.address:  # [QBFT-WAL.1]: a replayed own message binds us
            s.sent.setdefault(key, signed)
        if not self._is_admissible(sender, payload) or not self._store(sender, signed, out):
            return
        if isinstance(payload, Proposal):
            if payload.round == s.round:
                self._try_accept_proposal(out)
        elif isinstance(payload, Prepare):
            if payload.round == s.round:
                self._try_prepared(out)
        elif isinstance(payload, Commit):
            self._try_decide(payload.round, payload.block_hash, out)
        else:
            self._try_skip_round(out)
            self._try_propose(out)

    def _is_admissible(self, sender: bytes, payload: Payload) -> bool:
        """Return True if the sender may send ``payload`` and its justification holds."""
        s = self.require_state()
        try:
            if isinstance(payload, Proposal):
                if sender != compute_proposer(s.validators, s.height, payload.round):
                    return False  # [QBFT-PROPOSE.3]
                validate_proposal_justification(payload, s.validators, self.chain_id)
            elif isinstance(payload, RoundChange):
                validate_round_change(payload, s.validators, self.chain_id)
        except InvalidMessage:
            return False
        return True

    def _store(self, sender: bytes, signed: SignedMessage[Payload], out: list[Action]) -> bool:
        """Keep the first message per (kind, round, sender); report a conflicting second."""
        s = self.require_state()
        payload = signed.payload
        key = (int(compute_message_kind(payload)), payload.round)
        first = s.messages.get(key, {}).get(sender)
        if first is not None:  # [QBFT-DUP.1] / [QBFT-EQUIV.1]
            if not is_same_vote(first.payload, payload) and (*key, sender) not in s.reported:
                s.reported.add((*key, sender))
                out.append(ReportEquivocation(first=first, second=signed))
            return False
        if payload.round > s.round and not self._make_room(sender, payload.round):
            return False
        s.messages.setdefault(key, {})[sender] = signed
        return True

    def _make_room(self, sender: bytes, round_number: int) -> bool:
        """Bound one sender's future-round messages, evicting its lowest round ([QBFT-BUFFER.1])."""
        s = self.require_state()
        rounds = {r for (_, r), by in s.messages.items() if r > s.round and sender in by}
        if round_number in rounds or len(rounds) < MAX_FUTURE_ROUNDS_PER_SENDER:
            return True
        lowest = min(rounds)
        if round_number < lowest:
            return False
        for (_, r), by in s.messages.items():
            if r == lowest:
                by.pop(sender, None)
        return True

    def _buffer_next_height(self, sender: bytes, signed: SignedMessage[Payload]) -> None:
        # Triggered by: a message for the next height before we started it ([QBFT-BUFFER.2]).
        s = self.require_state()
        if signed.payload.height != s.height + 1:
            return
        mine = [m for other, m in self.next_height if other == sender]
        if signed not in mine and len(mine) < MAX_NEXT_HEIGHT_MESSAGES_PER_SENDER:
            self.next_height.append((sender, signed))

    # --- protocol steps -----------------------------------------------------------

    def _enter_round(self, round_number: int, out: list[Action], *, announce: bool) -> None:
        # Triggered by: a height starting, a timeout, or f+1 round changes above us.
        s = self.require_state()
        s.round = round_number
        timeout = compute_round_timeout(self.params, round_number)
        out.append(ScheduleTimeout(s.height, round_number, self.now + timeout))
        if announce:
            self._sign(self._round_change(), out)
        # Replay what was buffered for this round ([QBFT-BUFFER.1]).
        self._try_propose(out)
        self._try_accept_proposal(out)
        self._try_prepared(out)
        self._try_skip_round(out)

    def _round_change(self) -> RoundChange:
        """Return our round change for the current round, with our prepared certificate."""
        s = self.require_state()
        return RoundChange(
            height=s.height,
            round=s.round,
            prepared_round=s.prepared_round,
            prepared_block_hash=s.prepared_block_hash,
            prepared_block=s.prepared_block,
            prepares=s.prepared_certificate,
        )

    def _try_skip_round(self, out: list[Action]) -> None:
        # Triggered by: a round change for a round above ours ([QBFT-RC.3], f+1 amplification).
        s = self.require_state()
        if s.committed:
            return
        latest: dict[bytes, int] = {}
        for (kind, r), by in s.messages.items():
            if kind == MessageKind.ROUND_CHANGE and r > s.round:
                for sender in by:
                    latest[sender] = max(r, latest.get(sender, r))
        weak = compute_weak_quorum(len(s.validators))
        if len(latest) >= weak:
            self._enter_round(sorted(latest.values(), reverse=True)[weak - 1], out, announce=True)

    def _try_propose(self, out: list[Action]) -> None:
        # Triggered by: entering a round we lead, or a round change for it ([QBFT-PROPOSE.1]).
        s = self.require_state()
        r = s.round
        if s.committed or r in s.builds or (MessageKind.PROPOSAL, r) in s.sent:
            return
        if compute_proposer(s.validators, s.height, r) != self.address:
            return
        if r == 0:
            s.builds[0] = ()
            out.append(BuildBlock(s.height, 0))
            return
        chosen = select_round_change_quorum(self._round_changes(r), s.validators)
        if chosen is None:
            return
        bare = tuple(strip_justification(rc) for rc in chosen)
        highest = compute_highest_prepared([rc.payload for rc in chosen])
        if highest is None or highest.prepared_block_hash is None:
            s.builds[r] = bare
            out.append(BuildBlock(s.height, r))
            return
        # Re-propose the highest prepared block ([QBFT-PROPOSE.2]); prefer our own copy.
        block = self._known_block(highest.prepared_block_hash) or highest.prepared_block
        if block is not None:
            proposal = Proposal(
                s.height, r, block, highest.prepared_block_hash, bare, highest.prepares
            )
            self._sign(proposal, out)

    def _try_accept_proposal(self, out: list[Action]) -> None:
        # Triggered by: our round's proposal arriving, or entering its round ([QBFT-PREPARE.1]).
        s = self.require_state()
        proposal = self._proposal_of(s.round)
        if s.committed or proposal is None or s.round in s.accepted:
            return
        s.accepted[s.round] = proposal.block_hash
        if (s.round, proposal.block_hash) not in s.checks:
            out.append(CheckProposal(s.height, s.round, proposal.block, proposal.block_hash))
            return
        self._after_check(s.round, proposal.block_hash, out)

    def _after_check(self, round_number: int, block_hash: bytes, out: list[Action]) -> None:
        # Triggered by: a verdict on the proposal accepted in ``round_number`` ([QBFT-PREPARE.2]).
        s = self.require_state()
        if s.checks.get((round_number, block_hash)) is None:
            return
        if round_number == s.round:
            self._sign(Prepare(s.height, round_number, block_hash), out)
        self._try_prepared(out)
        self._try_decide(round_number, block_hash, out)

    def _try_prepared(self, out: list[Action]) -> None:
        # Triggered by: a prepare of our round, or approving its proposal ([QBFT-COMMIT.1]).
        s = self.require_state()
        r = s.round
        block_hash = s.accepted.get(r)
        if s.committed or block_hash is None or s.prepared_round == r:
            return
        digest = s.checks.get((r, block_hash))
        prepares = self._votes(MessageKind.PREPARE, r, block_hash)
        quorum = compute_quorum(len(s.validators))
        if digest is None or len(prepares) < quorum:
            return
        s.prepared_round, s.prepared_block_hash = r, block_hash
        s.prepared_block = self._known_block(block_hash)
        s.prepared_certificate = tuple(
            p for _, m in prepares[:quorum] if (p := narrow(m, Prepare)) is not None
        )
        seal = sign_seal(digest, self._private_key)
        self._sign(Commit(s.height, r, block_hash, seal), out)

    def _try_decide(self, round_number: int, block_hash: bytes, out: list[Action]) -> None:
        # Triggered by: a commit of any round of this height, or approving the block it seals
        # ([QBFT-DECIDE.1]: late commits of earlier rounds count).
        s = self.require_state()
        digest = s.checks.get((round_number, block_hash))
        proposal = self._proposal_of(round_number)
        if s.committed or digest is None or proposal is None or proposal.block_hash != block_hash:
            return
        quorum = compute_quorum(len(s.validators))
        commits = self._votes(MessageKind.COMMIT, round_number, block_hash)
        if len(commits) < quorum:
            return
        seals = tuple(
            m.payload.commit_seal
            for sender, m in commits
            if isinstance(m.payload, Commit) and self._is_valid_seal(digest, sender, m.payload)
        )
        if len(seals) >= quorum:
            s.committed = True
            out.append(CommitBlock(s.height, proposal.block, block_hash, round_number, seals))

    def _sign(self, payload: Payload, out: list[Action]) -> None:
        # Triggered by: a step deciding to send; the only place that signs ([QBFT-WAL.1]).
        s = self.require_state()
        if self.address not in s.validators:
            return
        key = (int(compute_message_kind(payload)), payload.round)
        prior = s.sent.get(key)
        if prior is not None:
            if isinstance(payload, RoundChange) or is_same_vote(prior.payload, payload):
                out.append(Broadcast(prior))
            return
        signed: SignedMessage[Payload] = sign_message(payload, self._private_key, self.chain_id)
        s.sent[key] = signed
        out.append(Broadcast(signed))
        self._on_signed(self.address, signed, out)

    # --- queries over the state ---------------------------------------------------

    def require_state(self) -> HeightState:
        """Return the height state; steps only run after :class:`Start`."""
        if self.state is None:
            raise InvalidBlock("the consensus state machine has not started a height")
        return self.state

    def _proposal_of(self, round_number: int) -> Proposal | None:
        """Return the proposer's admitted proposal of ``round_number``, if any."""
        s = self.require_state()
        proposer = compute_proposer(s.validators, s.height, round_number)
        signed = s.messages.get((MessageKind.PROPOSAL, round_number), {}).get(proposer)
        return signed.payload if signed and isinstance(signed.payload, Proposal) else None

    def _round_changes(self, round_number: int) -> dict[bytes, SignedMessage[RoundChange]]:
        """Return the admitted round changes of ``round_number`` by sender."""
        s = self.require_state()
        by_sender = s.messages.get((MessageKind.ROUND_CHANGE, round_number), {})
        return {
            sender: rc
            for sender, signed in by_sender.items()
            if (rc := narrow(signed, RoundChange)) is not None
        }

    def _votes(
        self, kind: MessageKind, round_number: int, block_hash: bytes
    ) -> list[tuple[bytes, SignedMessage[Payload]]]:
        """Return prepares or commits of a round for ``block_hash``, in validator order."""
        s = self.require_state()
        by_sender = s.messages.get((kind, round_number), {})
        return [
            (sender, by_sender[sender])
            for sender in s.validators
            if sender in by_sender
            and isinstance(by_sender[sender].payload, (Prepare, Commit))
            and getattr(by_sender[sender].payload, "block_hash", None) == block_hash
        ]

    def _known_block(self, block_hash: bytes) -> bytes | None:
        """Return the bytes of a block we prepared or found valid, if we hold them."""
        s = self.require_state()
        if s.prepared_block_hash == block_hash and s.prepared_block is not None:
            return s.prepared_block
        for r, accepted_hash in s.accepted.items():
            proposal = self._proposal_of(r)
            if accepted_hash == block_hash and s.checks.get((r, block_hash)) and proposal:
                return proposal.block
        return None

    def _is_valid_seal(self, digest: bytes, sender: bytes, commit: Commit) -> bool:
        """Return True if the commit seal recovers to ``sender`` (cached)."""
        s = self.require_state()
        key = (commit.round, commit.block_hash, sender)
        if key not in s.seal_cache:
            try:
                s.seal_cache[key] = recover_seal_signer(digest, commit.commit_seal) == sender
            except InvalidSeal:
                s.seal_cache[key] = False
        return s.seal_cache[key]


def validate_seal_digest(digest: bytes) -> None:
    """Raise :class:`InvalidBlock` unless the node handed over a 32-byte seal digest."""
    if not isinstance(digest, bytes) or len(digest) != HASH_LENGTH:
        raise InvalidBlock("a seal digest is 32 bytes")


# --- snapshots --------------------------------------------------------------------


def encode_message_hex(signed: SignedMessage[Payload]) -> str:
    """Return the wire encoding of ``signed`` as hex."""
    return encode_signed(signed).hex()


def decode_message_hex(text: str) -> SignedMessage[Payload]:
    """Decode a message saved by :func:`encode_message_hex`."""
    return decode_signed(bytes.fromhex(text))


def encode_height_state(s: HeightState) -> dict[str, Any]:
    """Return ``s`` as JSON-ready plain data (the seal cache is rebuilt, not saved)."""
    return {
        "height": s.height,
        "validators": [v.hex() for v in s.validators],
        "round": s.round,
        "committed": s.committed,
        "prepared": None
        if s.prepared_round is None
        else [
            s.prepared_round,
            (s.prepared_block_hash or b"").hex(),
            (s.prepared_block or b"").hex(),
            [encode_message_hex(p) for p in s.prepared_certificate],
        ],
        "messages": [
            [sender.hex(), encode_message_hex(m)]
            for by in s.messages.values()
            for sender, m in by.items()
        ],
        "sent": [encode_message_hex(m) for m in s.sent.values()],
        "accepted": [[r, h.hex()] for r, h in s.accepted.items()],
        "checks": [[r, h.hex(), None if d is None else d.hex()] for (r, h), d in s.checks.items()],
        "builds": [[r, [encode_message_hex(m) for m in rcs]] for r, rcs in s.builds.items()],
        "reported": [[k, r, sender.hex()] for k, r, sender in sorted(s.reported)],
    }


def decode_height_state(data: Mapping[str, Any]) -> HeightState:
    """Rebuild a :class:`HeightState` from :func:`encode_height_state` output."""
    s = HeightState(
        height=int(data["height"]),
        validators=tuple(bytes.fromhex(v) for v in data["validators"]),
        round=int(data["round"]),
        committed=bool(data["committed"]),
    )
    if data["prepared"] is not None:
        prepared_round, block_hash, block, certificate = data["prepared"]
        s.prepared_round = int(prepared_round)
        s.prepared_block_hash = bytes.fromhex(block_hash)
        s.prepared_block = bytes.fromhex(block) or None
        s.prepared_certificate = decode_typed(certificate, Prepare)
    for sender, text in data["messages"]:
        signed = decode_message_hex(text)
        key = (int(compute_message_kind(signed.payload)), signed.payload.round)
        s.messages.setdefault(key, {})[bytes.fromhex(sender)] = signed
    for text in data["sent"]:
        signed = decode_message_hex(text)
        s.sent[(int(compute_message_kind(signed.payload)), signed.payload.round)] = signed
    s.accepted = {int(r): bytes.fromhex(h) for r, h in data["accepted"]}
    s.checks = {
        (int(r), bytes.fromhex(h)): None if d is None else bytes.fromhex(d)
        for r, h, d in data["checks"]
    }
    s.builds = {int(r): decode_typed(rcs, RoundChange) for r, rcs in data["builds"]}
    s.reported = {(int(k), int(r), bytes.fromhex(sender)) for k, r, sender in data["reported"]}
    return s


def decode_typed(texts: Sequence[str], kind: type[T]) -> tuple[SignedMessage[T], ...]:
    """Decode saved messages that must all be of ``kind``."""
    decoded = []
    for text in texts:
        signed = narrow(decode_message_hex(text), kind)
        if signed is None:
            raise StorageError(f"consensus snapshot holds a message that is not a {kind.__name__}")
        decoded.append(signed)
    return tuple(decoded)
