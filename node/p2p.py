"""Authenticated websocket transport between validators (aiohttp).

Transport only: it moves opaque typed messages between nodes whose keys the
caller allows (current validators, configured observers). It knows nothing of
QBFT rules or blocks.

Every node listens on ``ws://HOST:PORT/p2p`` and dials every configured peer,
redialling with capped exponential backoff and jitter. Both ends prove their
key in a mutual challenge-response handshake before any message flows.

Handshake (four binary websocket frames; ``‖`` is concatenation)::

    digest(challenge, verifier) = keccak256(
        b"polder-p2p-v1" ‖ chain_id (8 bytes, big-endian) ‖ genesis_hash (32)
        ‖ challenge (32) ‖ verifier (20: the address of the side that checks))
    signature = secp256k1 r ‖ s ‖ v (65 bytes, v in {0, 1}) over digest,
                made and checked with consensus.seal.sign_seal / recover_seal_signer

    1. listener -> dialler  CHALLENGE  0x10 ‖ challenge_L (32)                  33 bytes
    2. dialler  -> listener HELLO      0x11 ‖ dialler address (20)
                                            ‖ sig(digest(challenge_L, listener address
                                                         the dialler expects)) (65)
                                            ‖ challenge_D (32)                  118 bytes
    3. listener -> dialler  WELCOME    0x12 ‖ listener address (20)
                                            ‖ sig(digest(challenge_D, dialler address)) (65)
                                                                                86 bytes
    4. dialler  -> listener READY      0x13                                     1 byte

Each side registers the peer only once it verified the other: the dialler
after checking (3), the listener on (4), so a refused peer never appears in
``connected_peers`` even briefly. The listener answers (3) only after (2)
verified, so a stranger never obtains a signature. A side refuses, closes with
1008 (policy violation) and a short reason, logs the reason and counts
``refused_handshakes`` when: a frame has the wrong type or length; the
signature does not recover to the claimed address (which is what a wrong
chain id or genesis hash, a replayed answer to an older challenge, or an
answer meant for another node look like: each challenge is fresh and each
signature names its verifier); ``allowed(address)`` is False; the address is
the node's own; a dialler's expected address is not the one that answered;
the whole exchange takes over ``handshake_timeout`` (5 s). A claimed address
is never used before its signature verified. At most 32 inbound handshakes
run at once; further upgrades get HTTP 503.

Data frames (binary websocket frames, after the handshake)::

    offset  size  field
    0       1     version = 0x01
    1       1     flags: 0x00 message, 0x01 request, 0x02 response,
                  0x06 error response (response | error, payload = UTF-8 reason)
    2       8     request id, unsigned big-endian; 0 for a message, >= 1 otherwise
    10      1     kind length L, 1..64
    11      L     kind, ASCII letters, digits and ``_ . : / -``
    11+L    ...   payload (opaque bytes)

A frame (header included) larger than ``max_message_bytes`` (given to
aiohttp as ``max_msg_size``) makes aiohttp close the socket with 1009 and the
peer is dropped; a frame that does not decode, or a text frame, drops the
peer too. ``send``/``broadcast``/``request`` refuse to encode such a frame
(:class:`InvalidFrame`) rather than send it.

Connections: at most one per peer address. When two peers dial each other
both connections authenticate and then each side keeps the same one: the
connection dialled by the lower address (a newer connection from the same
dialler replaces an older one, e.g. after the dialler restarted). To make
that rare, a node waits a short grace period before dialling a peer with a
lower address, which usually dials first. Frames in flight on the dropped
duplicate may be lost, as on any disconnect; consensus retransmits.

Inbound frames from one peer share a token bucket (``rate_per_second``,
burst of one second). Excess frames are dropped, not processed, and counted;
a peer whose drops within one second exceed the larger of
``rate_per_second`` and 10 is disconnected. Responses to this node's own
pending requests are not charged.

Messages of one peer are delivered to ``on_message`` in order by one task
per connection (so a handler may await a ``request`` to the same peer);
requests are answered concurrently (at most 16 at once per peer). Handler
exceptions are logged and never end the connection; an ``on_request``
failure reaches the requester as an error response.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import re
import secrets
import socket
import struct
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from coincurve import PrivateKey
from eth_hash.auto import keccak

from consensus.errors import ConfigError, InvalidSeal, PolderError
from consensus.seal import compute_address, recover_seal_signer, sign_seal

log = logging.getLogger("polder.p2p")

P2P_PATH = "/p2p"
HANDSHAKE_DOMAIN = b"polder-p2p-v1"
ADDRESS_LENGTH = 20
HASH_LENGTH = 32
CHALLENGE_LENGTH = 32
SIGNATURE_LENGTH = 65
HANDSHAKE_CHALLENGE = 0x10
HANDSHAKE_HELLO = 0x11
HANDSHAKE_WELCOME = 0x12
HANDSHAKE_READY = 0x13
CHALLENGE_FRAME_LENGTH = 1 + CHALLENGE_LENGTH
HELLO_FRAME_LENGTH = 1 + ADDRESS_LENGTH + SIGNATURE_LENGTH + CHALLENGE_LENGTH
WELCOME_FRAME_LENGTH = 1 + ADDRESS_LENGTH + SIGNATURE_LENGTH
READY_FRAME = bytes([HANDSHAKE_READY])

FRAME_VERSION = 0x01
FLAG_REQUEST = 0x01
FLAG_RESPONSE = 0x02
FLAG_ERROR = 0x04
VALID_FLAGS = frozenset({0, FLAG_REQUEST, FLAG_RESPONSE, FLAG_RESPONSE | FLAG_ERROR})
FRAME_HEADER = struct.Struct(">BBQB")
"""version, flags, request id, kind length."""
MAX_KIND_LENGTH = 64
KIND_PATTERN = re.compile(rb"[A-Za-z0-9_.:/-]{1,64}")
MAX_REQUEST_ID = 2**64 - 1
MAX_ERROR_REASON_BYTES = 1024
MIN_MESSAGE_BYTES = 1024
"""Smallest ``max_message_bytes`` accepted: room for the handshake and headers."""

HANDSHAKE_TIMEOUT = 5.0
CLOSE_TIMEOUT = 1.0
"""How long closing a socket waits for the peer's close frame."""
SEND_TIMEOUT = 10.0
"""A peer that does not drain a frame within this is dropped."""
HEARTBEAT_SECONDS = 10.0
BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 5.0
STABLE_CONNECTION_SECONDS = 10.0
"""A connection that lasted this long resets the dial backoff."""
DIAL_GRACE_SECONDS = 0.5
"""Wait before dialling a lower-address peer, which is expected to dial us."""
MAX_QUEUED_MESSAGES = 4096
MAX_CONCURRENT_REQUESTS = 16
MAX_PENDING_HANDSHAKES = 32
"""Unauthenticated inbound sockets held at once; more are answered with HTTP 503."""
ABUSE_WINDOW_SECONDS = 1.0
MIN_ABUSE_LIMIT = 10
MAX_CLOSE_REASON_BYTES = 123
"""RFC 6455: a close frame's reason fits in 123 bytes."""

Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse
MessageHandler = Callable[[bytes, str, bytes], Awaitable[None]]
RequestHandler = Callable[[bytes, str, bytes], Awaitable[bytes]]


class PeerError(PolderError):
    """A peer could not be reached, timed out, failed or misbehaved."""

    code = -32050


class InvalidFrame(PeerError):
    """Bytes that are not a well-formed P2P frame, or a frame that cannot be sent."""

    code = -32051


class HandshakeRefused(PeerError):
    """A handshake failed: bad frame, bad signature, key not allowed, timeout."""

    code = -32052


@dataclass(frozen=True)
class PeerInfo:
    """A peer this node dials."""

    address: bytes
    """The 20-byte address of the key the peer must prove."""
    url: str
    """Its websocket endpoint, e.g. ``ws://127.0.0.1:30303/p2p``."""


@dataclass(frozen=True)
class Frame:
    """One decoded data frame."""

    kind: str
    """Message type, a short ASCII name chosen by the layer above."""
    payload: bytes
    """Opaque message bytes (for an error response: the UTF-8 reason)."""
    flags: int = 0
    """0 message, FLAG_REQUEST, FLAG_RESPONSE, or FLAG_RESPONSE | FLAG_ERROR."""
    request_id: int = 0
    """Pairs a response with its request; 0 for a message."""


@dataclass(frozen=True)
class Hello:
    """The dialler's handshake answer and counter-challenge."""

    address: bytes
    """The dialler's claimed address (trusted only once the signature verified)."""
    signature: bytes
    """65-byte signature over the digest of the listener's challenge."""
    challenge: bytes
    """32 fresh random bytes the listener must sign."""


@dataclass(frozen=True)
class Welcome:
    """The listener's answer to the dialler's challenge."""

    address: bytes
    """The listener's claimed address."""
    signature: bytes
    """65-byte signature over the digest of the dialler's challenge."""


@dataclass
class P2PMetrics:
    """Counters of one :class:`P2PNetwork` (monotonic)."""

    messages_in: int = 0
    """Messages and requests accepted for processing."""
    messages_out: int = 0
    """Messages, requests and responses handed to a socket."""
    bytes_in: int = 0
    """Bytes of data frames received (after the handshake)."""
    bytes_out: int = 0
    """Bytes of data frames sent."""
    refused_handshakes: int = 0
    """Handshakes this node refused (as listener or dialler)."""
    dial_failures: int = 0
    """Dials that did not end in an authenticated connection."""
    reconnects: int = 0
    """Connections to a peer that had been connected before."""
    rate_limited: int = 0
    """Inbound frames dropped by the per-peer rate limit."""
    abuse_disconnects: int = 0
    """Peers disconnected for exceeding the rate limit persistently."""
    oversized_frames: int = 0
    """Peers dropped for a frame above ``max_message_bytes``."""
    invalid_frames: int = 0
    """Peers dropped for a frame that does not decode."""
    overload_dropped: int = 0
    """Messages dropped because a peer's delivery queue was full."""
    handler_errors: int = 0
    """Exceptions raised by ``on_message`` / ``on_request``."""
    duplicate_connections: int = 0
    """Connections closed because another one to the same peer was kept."""

    def snapshot(self) -> dict[str, int]:
        """Return the counters as a plain dict (for a metrics endpoint)."""
        return asdict(self)


@dataclass
class TokenBucket:
    """A token bucket: ``rate`` tokens per second, at most ``capacity`` saved."""

    rate: float
    """Tokens added per second."""
    capacity: float
    """Largest burst."""
    tokens: float
    """Tokens available at ``updated``."""
    updated: float
    """Monotonic time of the last refill."""

    def take(self, now: float) -> bool:
        """Take one token at time ``now``; False when none is left."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


# -- data frames ---------------------------------------------------------------


def encode_frame(frame: Frame) -> bytes:
    """Encode ``frame``; raise :class:`InvalidFrame` if a field is out of range."""
    kind = frame.kind.encode("ascii", errors="replace")
    validate_frame_header(frame.flags, frame.request_id, kind)
    return FRAME_HEADER.pack(FRAME_VERSION, frame.flags, frame.request_id, len(kind)) + (
        kind + frame.payload
    )


def decode_frame(data: bytes) -> Frame:
    """Decode one data frame; raise :class:`InvalidFrame` for anything malformed."""
    if len(data) < FRAME_HEADER.size + 1:
        raise InvalidFrame(f"frame of {len(data)} bytes is shorter than a header")
    version, flags, request_id, kind_length = FRAME_HEADER.unpack_from(data)
    if version != FRAME_VERSION:
        raise InvalidFrame(f"unknown frame version {version}")
    kind_end = FRAME_HEADER.size + kind_length
    if len(data) < kind_end:
        raise InvalidFrame("frame ends inside its kind")
    kind = data[FRAME_HEADER.size : kind_end]
    validate_frame_header(flags, request_id, kind)
    return Frame(
        kind=kind.decode("ascii"), payload=data[kind_end:], flags=flags, request_id=request_id
    )


def validate_frame_header(flags: int, request_id: int, kind: bytes) -> None:
    """Raise :class:`InvalidFrame` unless flags, request id and kind are well-formed."""
    if flags not in VALID_FLAGS:
        raise InvalidFrame(f"invalid frame flags 0x{flags:02x}")
    if not 0 <= request_id <= MAX_REQUEST_ID:
        raise InvalidFrame("request id must fit in 8 bytes")
    if (request_id == 0) != (flags == 0):
        raise InvalidFrame("a message has request id 0; requests and responses have one >= 1")
    if KIND_PATTERN.fullmatch(kind) is None:
        raise InvalidFrame(
            f"kind must be 1..{MAX_KIND_LENGTH} ASCII letters, digits or _.:/-, got {kind!r}"
        )


# -- handshake -------------------------------------------------------------------


def compute_handshake_digest(
    chain_id: int, genesis_hash: bytes, challenge: bytes, verifier: bytes
) -> bytes:
    """Return what a handshake signature signs (see the module docstring)."""
    return keccak(
        HANDSHAKE_DOMAIN + chain_id.to_bytes(8, "big") + genesis_hash + challenge + verifier
    )


def sign_handshake(
    private_key: bytes, chain_id: int, genesis_hash: bytes, challenge: bytes, verifier: bytes
) -> bytes:
    """Answer ``challenge`` from ``verifier``: a 65-byte signature."""
    digest = compute_handshake_digest(chain_id, genesis_hash, challenge, verifier)
    return sign_seal(digest, private_key)


def validate_handshake_signature(digest: bytes, signature: bytes, claimed: bytes) -> None:
    """Raise :class:`HandshakeRefused` unless ``claimed`` signed ``digest``."""
    try:
        signer = recover_seal_signer(digest, signature)
    except InvalidSeal as exc:
        raise HandshakeRefused(f"malformed handshake signature: {exc.message}") from exc
    if signer != claimed:
        raise HandshakeRefused(
            f"signature does not prove key 0x{claimed.hex()} (wrong chain id or genesis hash, "
            "or an answer to another challenge)"
        )


def encode_challenge(challenge: bytes) -> bytes:
    """Encode the listener's CHALLENGE frame."""
    return bytes([HANDSHAKE_CHALLENGE]) + challenge


def decode_challenge(data: bytes) -> bytes:
    """Decode a CHALLENGE frame; raise :class:`HandshakeRefused` if malformed."""
    validate_handshake_frame(data, HANDSHAKE_CHALLENGE, CHALLENGE_FRAME_LENGTH, "CHALLENGE")
    return data[1:]


def encode_hello(hello: Hello) -> bytes:
    """Encode the dialler's HELLO frame."""
    return bytes([HANDSHAKE_HELLO]) + hello.address + hello.signature + hello.challenge


def decode_hello(data: bytes) -> Hello:
    """Decode a HELLO frame; raise :class:`HandshakeRefused` if malformed."""
    validate_handshake_frame(data, HANDSHAKE_HELLO, HELLO_FRAME_LENGTH, "HELLO")
    signature_end = 1 + ADDRESS_LENGTH + SIGNATURE_LENGTH
    return Hello(
        address=data[1 : 1 + ADDRESS_LENGTH],
        signature=data[1 + ADDRESS_LENGTH : signature_end],
        challenge=data[signature_end:],
    )


def encode_welcome(welcome: Welcome) -> bytes:
    """Encode the listener's WELCOME frame."""
    return bytes([HANDSHAKE_WELCOME]) + welcome.address + welcome.signature


def decode_welcome(data: bytes) -> Welcome:
    """Decode a WELCOME frame; raise :class:`HandshakeRefused` if malformed."""
    validate_handshake_frame(data, HANDSHAKE_WELCOME, WELCOME_FRAME_LENGTH, "WELCOME")
    return Welcome(address=data[1 : 1 + ADDRESS_LENGTH], signature=data[1 + ADDRESS_LENGTH :])


def decode_ready(data: bytes) -> None:
    """Check a READY frame; raise :class:`HandshakeRefused` if it is anything else."""
    validate_handshake_frame(data, HANDSHAKE_READY, len(READY_FRAME), "READY")


def validate_handshake_frame(data: bytes, tag: int, length: int, name: str) -> None:
    """Raise :class:`HandshakeRefused` unless ``data`` is a ``length``-byte ``tag`` frame."""
    if len(data) != length or data[0] != tag:
        raise HandshakeRefused(f"expected a {length}-byte {name} frame, got {len(data)} bytes")


def compute_backoff(failures: int, initial: float, cap: float, rng: random.Random) -> float:
    """Return the delay before the next dial: exponential in ``failures``, capped, jittered.

    The jitter draws from 50-100 % of the capped delay so that nodes that lost
    a peer together do not redial it in lockstep.
    """
    delay = min(cap, initial * 2.0 ** min(failures, 32))
    return delay * (0.5 + rng.random() / 2)


def is_closing(message_type: WSMsgType) -> bool:
    """True for the websocket message types that end a connection."""
    return message_type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)


async def receive_handshake_frame(ws: Socket) -> bytes:
    """Return the next binary frame; raise :class:`HandshakeRefused` on anything else."""
    message = await ws.receive()
    if message.type is WSMsgType.BINARY and isinstance(message.data, bytes):
        return message.data
    if is_closing(message.type):
        reason = message.extra if message.type is WSMsgType.CLOSE else ""
        raise HandshakeRefused(
            f"connection closed during the handshake ({ws.close_code}: {reason or 'no reason'})",
            closed_by_peer=True,
        )
    raise HandshakeRefused(f"expected a binary handshake frame, got {message.type.name}")


async def close_socket(ws: Socket, code: int, reason: str) -> None:
    """Close ``ws`` with ``code`` and ``reason``; errors of a dying socket are ignored."""
    message = reason.encode("utf-8", errors="replace")[:MAX_CLOSE_REASON_BYTES]
    with contextlib.suppress(Exception):
        await ws.close(code=code, message=message)


def open_listening_socket(host: str, port: int) -> socket.socket:
    """Return a non-blocking TCP socket listening on ``host:port`` (port 0: any free one)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        if os.name == "posix":  # rebind right after a restart; elsewhere it allows port theft
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def format_address(address: bytes) -> str:
    """Short form of an address for logs."""
    return "0x" + address.hex()[:8]


class Connection:
    """One authenticated websocket to a peer, and its per-peer state."""

    def __init__(self, ws: Socket, peer: bytes, outbound: bool, bucket: TokenBucket) -> None:
        self.ws = ws
        self.peer = peer
        """The peer's verified address."""
        self.outbound = outbound
        """True when this node dialled."""
        self.bucket = bucket
        self.pending: dict[int, asyncio.Future[Frame]] = {}
        """This node's requests awaiting a response, by request id."""
        self.inbox: asyncio.Queue[Frame | None] = asyncio.Queue()
        self.done = asyncio.Event()
        self.requests_in_flight = 0
        self.window_start = 0.0
        self.dropped_in_window = 0


class P2PNetwork:
    """The authenticated websocket mesh of one node (see the module docstring)."""

    def __init__(
        self,
        *,
        private_key: bytes,
        chain_id: int,
        genesis_hash: bytes,
        host: str,
        port: int,
        peers: Sequence[PeerInfo],
        allowed: Callable[[bytes], bool],
        on_message: MessageHandler,
        on_request: RequestHandler,
        max_message_bytes: int = 8 * 1024 * 1024,
        rate_per_second: float = 500.0,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        try:
            public_key = PrivateKey(private_key).public_key
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid P2P private key: {exc}") from exc
        if len(genesis_hash) != HASH_LENGTH:
            raise ConfigError("genesis hash must be 32 bytes")
        if not 0 <= chain_id < 2**64:
            raise ConfigError("chain id must fit in 8 bytes")
        if max_message_bytes < MIN_MESSAGE_BYTES:
            raise ConfigError(f"max_message_bytes must be at least {MIN_MESSAGE_BYTES}")
        if rate_per_second <= 0:
            raise ConfigError("rate_per_second must be positive")
        self.private_key = private_key
        self.address = compute_address(public_key)
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.host = host
        self.port = port
        """The listening port; the real one once :meth:`start` bound port 0."""
        self.allowed = allowed
        self.on_message = on_message
        self.on_request = on_request
        self.max_message_bytes = max_message_bytes
        self.rate_per_second = rate_per_second
        self.abuse_limit = max(MIN_ABUSE_LIMIT, int(rate_per_second))
        self.handshake_timeout = handshake_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.metrics = P2PMetrics()
        self._peers = {p.address: p for p in peers if p.address != self.address}
        self._connections: dict[bytes, Connection] = {}
        self._ever_connected: set[bytes] = set()
        self._sockets: set[Socket] = set()
        self._dialers: dict[bytes, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._request_ids = itertools.count(1)
        self._rng = random.SystemRandom()
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        self._listener: socket.socket | None = None
        self._session: aiohttp.ClientSession | None = None
        self._handshakes = 0
        """Inbound handshakes in progress (capped: each holds a socket for up to 5 s)."""
        self._started = False
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------

    @property
    def url(self) -> str:
        """This node's P2P endpoint, for other nodes' :class:`PeerInfo`."""
        return f"ws://{self.host}:{self.port}{P2P_PATH}"

    async def start(self) -> None:
        """Listen, then dial every configured peer (each in its own reconnecting loop)."""
        if self._started:
            raise RuntimeError("P2PNetwork.start() was already called")
        self._started = True
        app = web.Application()
        app.router.add_get(P2P_PATH, self.on_websocket)
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=CLOSE_TIMEOUT
        )
        await runner.setup()
        self._runner = runner
        try:
            listener = open_listening_socket(self.host, self.port)
        except OSError as exc:
            await runner.cleanup()
            self._runner = None
            raise ConfigError(f"cannot listen for peers on {self.host}:{self.port}: {exc}") from exc
        self._listener = listener
        self._site = web.SockSite(runner, listener)
        await self._site.start()
        self.port = int(listener.getsockname()[1])
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        for peer in self._peers.values():
            self._start_dialer(peer)
        log.info("p2p %s listening on %s", format_address(self.address), self.url)

    async def stop(self) -> None:
        """Close every connection, stop dialling and listening; bounded by ~1 s."""
        if self._stopping:
            return
        self._stopping = True
        if self._site is not None and self._listener is not None:
            # Stop accepting a few loop turns before closing the server: asyncio
            # hands an accepted socket to its server one turn later, and on
            # Python 3.11 a socket that arrives after close() leaks unclosed.
            with contextlib.suppress(NotImplementedError, ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._listener.fileno())
            for _ in range(3):
                await asyncio.sleep(0)
            await self._site.stop()
        await asyncio.gather(
            *(
                close_socket(ws, WSCloseCode.GOING_AWAY, "node shutting down")
                for ws in self._sockets
            )
        )
        tasks = [*self._dialers.values(), *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        log.info("p2p %s stopped", format_address(self.address))

    def add_peer(self, peer: PeerInfo) -> None:
        """Dial ``peer`` from now on (e.g. a validator that joined the set)."""
        if peer.address == self.address:
            return
        old = self._peers.get(peer.address)
        self._peers[peer.address] = peer
        if old is not None and old != peer:
            self._stop_dialer(peer.address)
        if self._started and not self._stopping and peer.address not in self._dialers:
            self._start_dialer(peer)

    def remove_peer(self, address: bytes) -> None:
        """Stop dialling ``address`` and drop its connection (e.g. a removed validator)."""
        self._peers.pop(address, None)
        self._stop_dialer(address)
        connection = self._connections.get(address)
        if connection is not None:
            self._spawn(close_socket(connection.ws, WSCloseCode.OK, "peer removed"))

    def connected_peers(self) -> list[bytes]:
        """Addresses of the peers with an authenticated connection, sorted."""
        return sorted(self._connections)

    # -- sending ---------------------------------------------------------------

    async def broadcast(self, kind: str, payload: bytes) -> None:
        """Send a message to every connected peer (concurrently; failures drop that peer)."""
        data = self._encode(Frame(kind=kind, payload=payload))
        connections = list(self._connections.values())
        await asyncio.gather(*(self._send_frame(c, data) for c in connections))

    async def send(self, peer: bytes, kind: str, payload: bytes) -> bool:
        """Send a message to ``peer``; False when it is not connected or the send failed.

        Raises :class:`InvalidFrame` for a bad kind or an oversized payload.
        """
        data = self._encode(Frame(kind=kind, payload=payload))
        connection = self._connections.get(peer)
        if connection is None:
            return False
        return await self._send_frame(connection, data)

    async def request(self, peer: bytes, kind: str, payload: bytes, timeout: float = 10.0) -> bytes:
        """Send a request to ``peer`` and return its answer.

        Raises :class:`PeerError` (``data["reason"]`` one of ``not_connected``,
        ``disconnected``, ``timeout``, ``remote_error``) and :class:`InvalidFrame`
        for a bad kind or an oversized payload.
        """
        request_id = next(self._request_ids)
        data = self._encode(
            Frame(kind=kind, payload=payload, flags=FLAG_REQUEST, request_id=request_id)
        )
        where = {"peer": "0x" + peer.hex(), "kind": kind}
        connection = self._connections.get(peer)
        if connection is None:
            raise PeerError(
                f"peer {format_address(peer)} is not connected", reason="not_connected", **where
            )
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        connection.pending[request_id] = future
        try:
            if not await self._send_frame(connection, data):
                raise PeerError(
                    f"could not send {kind} to {format_address(peer)}",
                    reason="disconnected",
                    **where,
                )
            async with asyncio.timeout(timeout):
                answer = await future
        except TimeoutError as exc:
            raise PeerError(
                f"{kind} request to {format_address(peer)} timed out after {timeout} s",
                reason="timeout",
                **where,
            ) from exc
        finally:
            connection.pending.pop(request_id, None)
        if answer.flags & FLAG_ERROR:
            remote = answer.payload.decode("utf-8", errors="replace")
            raise PeerError(
                f"{format_address(peer)} failed {kind}: {remote}",
                reason="remote_error",
                remote=remote,
                **where,
            )
        return answer.payload

    def _encode(self, frame: Frame) -> bytes:
        data = encode_frame(frame)
        if len(data) > self.max_message_bytes:
            raise InvalidFrame(
                f"{frame.kind} frame of {len(data)} bytes exceeds {self.max_message_bytes}"
            )
        return data

    async def _send_frame(self, connection: Connection, data: bytes) -> bool:
        ws = connection.ws
        if ws.closed:
            return False
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await ws.send_bytes(data)
        except TimeoutError:
            log.warning("%s does not read its socket: dropping it", format_address(connection.peer))
            self._spawn(close_socket(ws, WSCloseCode.POLICY_VIOLATION, "send timeout"))
            return False
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            log.debug("send to %s failed: %s", format_address(connection.peer), exc)
            return False
        self.metrics.messages_out += 1
        self.metrics.bytes_out += len(data)
        return True

    # -- listening and the listener's half of the handshake ---------------------

    async def on_websocket(self, request: web.Request) -> web.StreamResponse:
        # Triggered by a dialler's websocket upgrade on /p2p.
        if self._stopping or self._handshakes >= MAX_PENDING_HANDSHAKES:
            return web.Response(status=503, text="busy or shutting down")
        ws: web.WebSocketResponse = web.WebSocketResponse(
            timeout=CLOSE_TIMEOUT,
            heartbeat=HEARTBEAT_SECONDS,
            compress=False,
            max_msg_size=self.max_message_bytes,
        )
        # Tracked before prepare() yields, so that stop() never misses it.
        self._sockets.add(ws)
        try:
            peer = await self._authenticate_dialler(ws, request)
            if peer is not None:
                await self._serve(Connection(ws, peer, outbound=False, bucket=self._new_bucket()))
        finally:
            self._sockets.discard(ws)
        return ws if ws.prepared else web.Response(status=503, text="shutting down")

    async def _authenticate_dialler(
        self, ws: web.WebSocketResponse, request: web.Request
    ) -> bytes | None:
        """Run the listener's half of the handshake; the dialler's address, or None (refused)."""
        remote = request.remote
        self._handshakes += 1
        try:
            async with asyncio.timeout(self.handshake_timeout):
                await ws.prepare(request)
                if self._stopping:
                    raise HandshakeRefused("node shutting down")
                return await self._accept_handshake(ws)
        except TimeoutError:
            await self._refuse(ws, remote, "handshake timed out")
        except HandshakeRefused as exc:
            await self._refuse(ws, remote, exc.message)
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            log.info("handshake with %s broke off: %s", remote, exc)
            await close_socket(ws, WSCloseCode.GOING_AWAY, "")
        finally:
            self._handshakes -= 1
        return None

    async def _accept_handshake(self, ws: Socket) -> bytes:
        """Challenge a dialler, check its answer, answer its challenge; return its address."""
        challenge = secrets.token_bytes(CHALLENGE_LENGTH)
        await ws.send_bytes(encode_challenge(challenge))
        hello = decode_hello(await receive_handshake_frame(ws))
        digest = compute_handshake_digest(self.chain_id, self.genesis_hash, challenge, self.address)
        validate_handshake_signature(digest, hello.signature, hello.address)
        self._validate_peer(hello.address)
        signature = sign_handshake(
            self.private_key, self.chain_id, self.genesis_hash, hello.challenge, hello.address
        )
        await ws.send_bytes(encode_welcome(Welcome(address=self.address, signature=signature)))
        # the dialler checks our answer in turn; only its READY makes the link usable
        decode_ready(await receive_handshake_frame(ws))
        return hello.address

    def _validate_peer(self, address: bytes) -> None:
        """Raise :class:`HandshakeRefused` unless ``address`` (already proven) may connect."""
        if address == self.address:
            raise HandshakeRefused("peer holds this node's own key")
        try:
            permitted = self.allowed(address)
        except Exception as exc:
            log.exception("allowed() failed for 0x%s", address.hex())
            raise HandshakeRefused("could not check whether the key is allowed") from exc
        if not permitted:
            raise HandshakeRefused(f"key 0x{address.hex()} is not an allowed peer")

    async def _refuse(self, ws: Socket, remote: str | None, reason: str) -> None:
        if not self._stopping:
            self.metrics.refused_handshakes += 1
            log.warning("refused p2p handshake with %s: %s", remote, reason)
        await close_socket(ws, WSCloseCode.POLICY_VIOLATION, reason)

    # -- dialling and the dialler's half of the handshake ------------------------

    def _start_dialer(self, peer: PeerInfo) -> None:
        self._dialers[peer.address] = asyncio.create_task(
            self._dial_loop(peer), name=f"p2p-dial-{format_address(peer.address)}"
        )

    def _stop_dialer(self, address: bytes) -> None:
        task = self._dialers.pop(address, None)
        if task is not None:
            task.cancel()

    async def _dial_loop(self, peer: PeerInfo) -> None:
        # Runs from start() (or add_peer) until stop(): keeps one connection to `peer`.
        failures = 0
        if peer.address < self.address:
            await asyncio.sleep(self._backoff(0, DIAL_GRACE_SECONDS))
        while True:
            existing = self._connections.get(peer.address)
            if existing is not None:
                await existing.done.wait()
                if peer.address < self.address:
                    await asyncio.sleep(self._backoff(0, DIAL_GRACE_SECONDS))
                continue
            connection = await self._dial(peer)
            if connection is None:
                failures += 1
            else:
                started = asyncio.get_running_loop().time()
                await self._serve(connection)
                lasted = asyncio.get_running_loop().time() - started
                failures = 0 if lasted >= STABLE_CONNECTION_SECONDS else failures + 1
            await asyncio.sleep(self._backoff(failures, self.backoff_initial))

    def _backoff(self, failures: int, initial: float) -> float:
        return compute_backoff(failures, initial, self.backoff_max, self._rng)

    async def _dial(self, peer: PeerInfo) -> Connection | None:
        """Connect to ``peer`` and authenticate both ways; None (logged) on failure."""
        if self._session is None:
            raise RuntimeError("P2PNetwork.start() was not called")
        try:
            async with asyncio.timeout(self.handshake_timeout):
                ws = await self._session.ws_connect(
                    peer.url,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT),
                    heartbeat=HEARTBEAT_SECONDS,
                    max_msg_size=self.max_message_bytes,
                )
        except (OSError, aiohttp.ClientError, TimeoutError) as exc:
            self.metrics.dial_failures += 1
            log.debug("dial %s failed: %r", peer.url, exc)
            return None
        self._sockets.add(ws)
        closed_by_peer = False
        try:
            async with asyncio.timeout(self.handshake_timeout):
                await self._offer_handshake(ws, peer.address)
        except HandshakeRefused as exc:
            reason, closed_by_peer = exc.message, bool(exc.data.get("closed_by_peer"))
        except TimeoutError:
            reason = "handshake timed out"
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            reason, closed_by_peer = f"connection broke off: {exc}", True
        except BaseException:
            self._sockets.discard(ws)
            await close_socket(ws, WSCloseCode.GOING_AWAY, "")
            raise
        else:
            return Connection(ws, peer.address, outbound=True, bucket=self._new_bucket())
        self._sockets.discard(ws)
        self.metrics.dial_failures += 1
        if closed_by_peer:
            log.warning("handshake with %s failed: %s", peer.url, reason)
            await close_socket(ws, WSCloseCode.OK, "")
        else:
            await self._refuse(ws, peer.url, reason)
        return None

    async def _offer_handshake(self, ws: Socket, expected: bytes) -> None:
        """Answer the listener's challenge, challenge it, check that it is ``expected``."""
        challenge = decode_challenge(await receive_handshake_frame(ws))
        signature = sign_handshake(
            self.private_key, self.chain_id, self.genesis_hash, challenge, expected
        )
        own_challenge = secrets.token_bytes(CHALLENGE_LENGTH)
        await ws.send_bytes(
            encode_hello(Hello(address=self.address, signature=signature, challenge=own_challenge))
        )
        welcome = decode_welcome(await receive_handshake_frame(ws))
        if welcome.address != expected:
            raise HandshakeRefused(
                f"expected peer 0x{expected.hex()}, but 0x{welcome.address.hex()} answered"
            )
        digest = compute_handshake_digest(
            self.chain_id, self.genesis_hash, own_challenge, self.address
        )
        validate_handshake_signature(digest, welcome.signature, expected)
        self._validate_peer(expected)
        await ws.send_bytes(READY_FRAME)

    # -- serving an authenticated connection ------------------------------------

    def _new_bucket(self) -> TokenBucket:
        capacity = max(1.0, self.rate_per_second)
        now = asyncio.get_running_loop().time()
        return TokenBucket(
            rate=self.rate_per_second, capacity=capacity, tokens=capacity, updated=now
        )

    async def _serve(self, connection: Connection) -> None:
        """Run one authenticated connection until it closes."""
        self._sockets.add(connection.ws)
        if not self._register(connection):
            connection.done.set()
            await close_socket(connection.ws, WSCloseCode.OK, "duplicate connection")
            self._sockets.discard(connection.ws)
            return
        self._spawn(self._deliver_messages(connection))
        code: int = WSCloseCode.OK
        reason = ""
        try:
            code, reason = await self._read_frames(connection)
        finally:
            self._unregister(connection)
            connection.inbox.put_nowait(None)
            await close_socket(connection.ws, code, reason)
            self._sockets.discard(connection.ws)

    def _register(self, connection: Connection) -> bool:
        """Make ``connection`` the one to its peer; False when an existing one wins."""
        if self._stopping:
            return False
        existing = self._connections.get(connection.peer)
        if existing is not None:
            if existing.outbound != connection.outbound and self._dialler(existing) < self._dialler(
                connection
            ):
                self.metrics.duplicate_connections += 1
                return False
            self.metrics.duplicate_connections += 1
            self._spawn(close_socket(existing.ws, WSCloseCode.OK, "duplicate connection"))
            self._unregister(existing)
        elif connection.peer in self._ever_connected:
            self.metrics.reconnects += 1
        self._ever_connected.add(connection.peer)
        self._connections[connection.peer] = connection
        log.info(
            "p2p %s connected to %s (%s)",
            format_address(self.address),
            format_address(connection.peer),
            "outbound" if connection.outbound else "inbound",
        )
        return True

    def _dialler(self, connection: Connection) -> bytes:
        return self.address if connection.outbound else connection.peer

    def _unregister(self, connection: Connection) -> None:
        if self._connections.get(connection.peer) is connection:
            del self._connections[connection.peer]
            log.info(
                "p2p %s lost %s", format_address(self.address), format_address(connection.peer)
            )
        connection.done.set()
        for future in connection.pending.values():
            if not future.done():
                future.set_exception(
                    PeerError(
                        f"{format_address(connection.peer)} disconnected",
                        reason="disconnected",
                        peer="0x" + connection.peer.hex(),
                    )
                )

    async def _read_frames(self, connection: Connection) -> tuple[int, str]:
        """Read until the socket closes or the peer must go; return the close code and reason."""
        ws, peer = connection.ws, format_address(connection.peer)
        while True:
            message = await ws.receive()
            if message.type is WSMsgType.BINARY and isinstance(message.data, bytes):
                verdict = self._on_frame(connection, message.data)
                if verdict is not None:
                    return verdict
            elif is_closing(message.type):
                return WSCloseCode.OK, ""
            elif message.type is WSMsgType.ERROR:
                error = message.data
                if isinstance(error, aiohttp.WebSocketError) and (
                    error.code == WSCloseCode.MESSAGE_TOO_BIG
                ):
                    self.metrics.oversized_frames += 1
                    log.warning(
                        "%s sent a frame over %d bytes: dropped", peer, self.max_message_bytes
                    )
                    return WSCloseCode.MESSAGE_TOO_BIG, "frame too large"
                log.info("connection to %s failed: %r", peer, error)
                return WSCloseCode.PROTOCOL_ERROR, "protocol error"
            else:
                self.metrics.invalid_frames += 1
                log.warning("%s sent a %s frame: dropped", peer, message.type.name)
                return WSCloseCode.UNSUPPORTED_DATA, "binary frames only"

    def _on_frame(self, connection: Connection, data: bytes) -> tuple[int, str] | None:
        """Route one inbound frame; return a close code and reason when the peer must go."""
        self.metrics.bytes_in += len(data)
        try:
            frame = decode_frame(data)
        except InvalidFrame as exc:
            self.metrics.invalid_frames += 1
            log.warning("%s sent an invalid frame: %s", format_address(connection.peer), exc)
            return WSCloseCode.PROTOCOL_ERROR, "invalid frame"
        if frame.flags & FLAG_RESPONSE:
            future = connection.pending.get(frame.request_id)
            if future is not None and not future.done():
                future.set_result(frame)
                return None
        if not self._admit(connection):
            if connection.dropped_in_window > self.abuse_limit:
                self.metrics.abuse_disconnects += 1
                log.warning(
                    "%s exceeds %s messages/s persistently: disconnected",
                    format_address(connection.peer),
                    self.rate_per_second,
                )
                return WSCloseCode.POLICY_VIOLATION, "rate limit exceeded"
            return None
        if frame.flags == 0:
            self._on_message_frame(connection, frame)
        elif frame.flags == FLAG_REQUEST:
            self.metrics.messages_in += 1
            self._spawn(self._answer(connection, frame))
        else:
            log.debug(
                "late or unknown response %d from %s", frame.request_id, connection.peer.hex()
            )
        return None

    def _admit(self, connection: Connection) -> bool:
        """Charge one frame to the peer's token bucket; count it when dropped."""
        now = asyncio.get_running_loop().time()
        if connection.bucket.take(now):
            return True
        self.metrics.rate_limited += 1
        if now - connection.window_start >= ABUSE_WINDOW_SECONDS:
            connection.window_start = now
            connection.dropped_in_window = 0
        connection.dropped_in_window += 1
        return False

    def _on_message_frame(self, connection: Connection, frame: Frame) -> None:
        if connection.inbox.qsize() >= MAX_QUEUED_MESSAGES:
            self.metrics.overload_dropped += 1
            log.warning("delivery queue of %s is full: message dropped", connection.peer.hex())
            return
        self.metrics.messages_in += 1
        connection.inbox.put_nowait(frame)

    async def _deliver_messages(self, connection: Connection) -> None:
        # One task per connection hands its messages to on_message in order.
        while (frame := await connection.inbox.get()) is not None:
            try:
                await self.on_message(connection.peer, frame.kind, frame.payload)
            except Exception:
                self.metrics.handler_errors += 1
                log.exception(
                    "on_message failed for %s from 0x%s", frame.kind, connection.peer.hex()
                )

    async def _answer(self, connection: Connection, request: Frame) -> None:
        # Triggered by a request frame: run on_request and send its answer or error.
        if connection.requests_in_flight >= MAX_CONCURRENT_REQUESTS:
            await self._send_frame(connection, self._error_frame(request, "busy"))
            return
        connection.requests_in_flight += 1
        try:
            answer = await self.on_request(connection.peer, request.kind, request.payload)
            if not isinstance(answer, bytes):
                raise TypeError(f"on_request returned {type(answer).__name__}, not bytes")
            reply = self._encode(
                Frame(request.kind, answer, flags=FLAG_RESPONSE, request_id=request.request_id)
            )
        except PolderError as exc:
            self.metrics.handler_errors += 1
            log.info("request %s from 0x%s failed: %s", request.kind, connection.peer.hex(), exc)
            reply = self._error_frame(request, f"{type(exc).__name__}: {exc.message}")
        except Exception:
            self.metrics.handler_errors += 1
            log.exception("on_request failed for %s from 0x%s", request.kind, connection.peer.hex())
            reply = self._error_frame(request, "internal error")
        finally:
            connection.requests_in_flight -= 1
        await self._send_frame(connection, reply)

    def _error_frame(self, request: Frame, reason: str) -> bytes:
        payload = reason.encode("utf-8", errors="replace")[:MAX_ERROR_REASON_BYTES]
        flags = FLAG_RESPONSE | FLAG_ERROR
        return encode_frame(
            Frame(request.kind, payload, flags=flags, request_id=request.request_id)
        )

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
