"""The authenticated websocket transport between validators (node/p2p.py).

Real aiohttp servers on 127.0.0.1 (port 0, so the OS picks free ports) with
random keys; raw aiohttp clients play the misbehaving diallers. The codecs
get hypothesis round-trips.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType
from coincurve import PrivateKey
from eth_hash.auto import keccak
from hypothesis import given
from hypothesis import strategies as st

from consensus.errors import InvalidParams, PolderError
from consensus.seal import compute_address
from node.p2p import (
    CHALLENGE_LENGTH,
    FLAG_ERROR,
    FLAG_REQUEST,
    FLAG_RESPONSE,
    Frame,
    HandshakeRefused,
    Hello,
    InvalidFrame,
    P2PNetwork,
    PeerError,
    PeerInfo,
    TokenBucket,
    Welcome,
    compute_backoff,
    compute_handshake_digest,
    decode_challenge,
    decode_frame,
    decode_hello,
    decode_ready,
    decode_welcome,
    encode_frame,
    encode_hello,
    encode_welcome,
    sign_handshake,
    validate_handshake_signature,
)

CHAIN_ID = 4242
GENESIS = keccak(b"polder test genesis")


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@dataclass
class Node:
    key: bytes
    net: P2PNetwork = field(init=False)
    messages: list[tuple[bytes, str, bytes]] = field(default_factory=list)
    answers: list[bytes] = field(default_factory=list)

    @property
    def address(self) -> bytes:
        return self.net.address

    @property
    def info(self) -> PeerInfo:
        return PeerInfo(self.net.address, self.net.url)

    def received(self, kind: str) -> list[tuple[bytes, bytes]]:
        return [(peer, payload) for peer, k, payload in self.messages if k == kind]

    async def on_message(self, peer: bytes, kind: str, payload: bytes) -> None:
        if kind == "boom":
            raise RuntimeError("handler bug")
        if kind == "ask":
            # a handler may request from the very peer whose message it handles
            self.answers.append(await self.net.request(peer, "echo", payload))
        self.messages.append((peer, kind, payload))

    async def on_request(self, peer: bytes, kind: str, payload: bytes) -> bytes:
        if kind == "echo":
            return payload[::-1]
        if kind == "fail":
            raise InvalidParams("no block 7")
        if kind == "crash":
            raise RuntimeError("secret internals")
        if kind == "hang":
            await asyncio.sleep(30)
        return b""


MakeNode = Callable[..., Awaitable[Node]]


def is_linked(a: Node, b: Node) -> bool:
    """True once both ends registered the connection (the dialler's end is last)."""
    return a.net.connected_peers() == [b.address] and b.net.connected_peers() == [a.address]


@pytest.fixture
async def make_node() -> AsyncIterator[MakeNode]:
    networks: list[P2PNetwork] = []

    async def make(
        *,
        key: bytes | None = None,
        peers: Sequence[Node | PeerInfo] = (),
        allowed: set[bytes] | None = None,
        chain_id: int = CHAIN_ID,
        genesis: bytes = GENESIS,
        port: int = 0,
        **options: Any,
    ) -> Node:
        node = Node(key or PrivateKey().secret)
        node.net = P2PNetwork(
            private_key=node.key,
            chain_id=chain_id,
            genesis_hash=genesis,
            host="127.0.0.1",
            port=port,
            peers=[p.info if isinstance(p, Node) else p for p in peers],
            allowed=(lambda _: True) if allowed is None else allowed.__contains__,
            on_message=node.on_message,
            on_request=node.on_request,
            **options,
        )
        await node.net.start()
        networks.append(node.net)
        return node

    yield make
    await asyncio.gather(*(net.stop() for net in networks))


def connect_all(nodes: Sequence[Node]) -> None:
    for node in nodes:
        for other in nodes:
            node.net.add_peer(other.info)


def address_of(key: bytes) -> bytes:
    return compute_address(PrivateKey(key).public_key)


# -- over real sockets -------------------------------------------------------------


async def test_four_nodes_connect_all_to_all_and_broadcast(make_node: MakeNode) -> None:
    nodes = [await make_node() for _ in range(4)]
    connect_all(nodes)
    await wait_until(lambda: all(len(n.net.connected_peers()) == 3 for n in nodes))
    for node in nodes:
        assert set(node.net.connected_peers()) == {n.address for n in nodes} - {node.address}

    for i, node in enumerate(nodes):
        await node.net.broadcast("vote", bytes([i]) * 10)
    await wait_until(lambda: all(len(n.received("vote")) == 3 for n in nodes))
    await asyncio.sleep(0.05)
    for i, node in enumerate(nodes):
        # exactly one copy from each other node: duplicate connections were deduplicated
        expected = {(n.address, bytes([j]) * 10) for j, n in enumerate(nodes) if j != i}
        assert sorted(node.received("vote")) == sorted(expected)
        assert node.net.metrics.messages_out == 3
        assert node.net.metrics.messages_in == 3
        assert node.net.metrics.refused_handshakes == 0

    assert await nodes[0].net.send(nodes[3].address, "direct", b"hi")
    assert not await nodes[0].net.send(b"\x99" * 20, "direct", b"hi")
    await wait_until(lambda: nodes[3].received("direct") == [(nodes[0].address, b"hi")])


async def test_request_response_and_errors(make_node: MakeNode) -> None:
    a = await make_node()
    b = await make_node(peers=[a])
    await wait_until(lambda: is_linked(a, b))

    assert await b.net.request(a.address, "echo", b"abc") == b"cba"
    assert await a.net.request(b.address, "echo", b"") == b""
    replies = await asyncio.gather(
        *(a.net.request(b.address, "echo", bytes([i, 0])) for i in range(10))
    )
    assert replies == [bytes([0, i]) for i in range(10)]

    with pytest.raises(PeerError) as remote:
        await b.net.request(a.address, "fail", b"")
    assert remote.value.data["reason"] == "remote_error"
    assert "InvalidParams: no block 7" in remote.value.message
    assert isinstance(remote.value, PolderError)

    with pytest.raises(PeerError) as crashed:
        await b.net.request(a.address, "crash", b"")
    assert crashed.value.data["remote"] == "internal error"  # no internals leak

    started = time.monotonic()
    with pytest.raises(PeerError) as slow:
        await b.net.request(a.address, "hang", b"", timeout=0.2)
    assert slow.value.data["reason"] == "timeout"
    assert time.monotonic() - started < 1.0

    with pytest.raises(PeerError) as nobody:
        await b.net.request(b"\x42" * 20, "echo", b"")
    assert nobody.value.data["reason"] == "not_connected"

    # a message handler awaiting a request to the same peer does not deadlock
    await b.net.send(a.address, "ask", b"xyz")
    await wait_until(lambda: a.answers == [b"zyx"])
    assert a.net.metrics.handler_errors == 2  # fail and crash
    assert a.net.connected_peers() == [b.address]


async def test_handler_exceptions_keep_the_connection(make_node: MakeNode) -> None:
    a = await make_node()
    b = await make_node(peers=[a])
    await wait_until(lambda: is_linked(a, b))
    await b.net.send(a.address, "boom", b"")
    await b.net.send(a.address, "after", b"1")
    await wait_until(lambda: a.received("after") == [(b.address, b"1")])
    assert a.net.metrics.handler_errors == 1
    assert a.net.connected_peers() == [b.address]


async def test_disconnect_fails_pending_request(make_node: MakeNode) -> None:
    a = await make_node()
    b = await make_node(peers=[a])
    await wait_until(lambda: is_linked(a, b))
    pending = asyncio.create_task(b.net.request(a.address, "hang", b""))
    await asyncio.sleep(0.05)
    await a.net.stop()
    with pytest.raises(PeerError) as lost:
        await pending
    assert lost.value.data["reason"] == "disconnected"


async def test_key_not_allowed_is_refused_by_all(make_node: MakeNode) -> None:
    keys = [PrivateKey().secret for _ in range(4)]
    allowed = {address_of(k) for k in keys}
    good = [await make_node(key=k, allowed=allowed) for k in keys]
    connect_all(good)
    intruder = await make_node(peers=good)  # allows everyone, dials everyone
    good[0].net.add_peer(intruder.info)  # and one validator dials the intruder
    await wait_until(lambda: all(n.net.metrics.refused_handshakes >= 1 for n in good))
    await wait_until(lambda: all(len(n.net.connected_peers()) == 3 for n in good))
    for node in good:
        assert intruder.address not in node.net.connected_peers()
    assert intruder.net.connected_peers() == []
    await intruder.net.broadcast("vote", b"x")
    await asyncio.sleep(0.05)
    assert all(n.received("vote") == [] for n in good)


@pytest.mark.parametrize(
    ("chain_id", "genesis"),
    [(CHAIN_ID, keccak(b"another genesis")), (CHAIN_ID + 1, GENESIS)],
    ids=["wrong-genesis", "wrong-chain-id"],
)
async def test_wrong_chain_is_refused(make_node: MakeNode, chain_id: int, genesis: bytes) -> None:
    a = await make_node()
    b = await make_node(peers=[a])
    stranger = await make_node(peers=[a, b], chain_id=chain_id, genesis=genesis)
    a.net.add_peer(stranger.info)  # a dials the stranger: the stranger refuses a's answer
    await wait_until(lambda: a.net.metrics.refused_handshakes >= 1)
    await wait_until(lambda: b.net.metrics.refused_handshakes >= 1)
    await wait_until(lambda: stranger.net.metrics.refused_handshakes >= 1)
    await wait_until(lambda: is_linked(a, b))
    assert stranger.net.connected_peers() == []


async def test_peer_that_comes_back_is_reconnected(make_node: MakeNode) -> None:
    b = await make_node()
    a = await make_node(peers=[b])  # only a dials
    await wait_until(lambda: is_linked(a, b))
    port = b.net.port
    await b.net.stop()
    await wait_until(lambda: a.net.connected_peers() == [])
    await asyncio.sleep(0.4)  # a's dials fail meanwhile and its backoff grows

    revived = await make_node(key=b.key, port=port)
    await wait_until(lambda: is_linked(a, revived), timeout=6.0)
    assert a.net.metrics.reconnects == 1
    assert a.net.metrics.dial_failures >= 1
    assert await a.net.send(b.address, "hello", b"again")
    await wait_until(lambda: revived.received("hello") == [(a.address, b"again")])


async def test_oversized_frame_drops_the_peer(make_node: MakeNode) -> None:
    a = await make_node(max_message_bytes=2048)
    b = await make_node(peers=[a])
    await wait_until(lambda: is_linked(a, b))
    assert await b.net.send(a.address, "small", b"s")
    await b.net.send(a.address, "big", b"x" * 4000)
    await wait_until(lambda: a.net.metrics.oversized_frames == 1)
    await wait_until(lambda: a.net.metrics.reconnects == 1)  # dropped, then b redialled
    assert [k for _, k, _ in a.messages] == ["small"]
    with pytest.raises(InvalidFrame):
        await a.net.send(b.address, "big", b"x" * 4000)  # refused before it is sent


async def test_rate_limit_drops_excess_then_disconnects_abuse(make_node: MakeNode) -> None:
    a = await make_node(rate_per_second=20.0)
    b = await make_node(peers=[a])
    await wait_until(lambda: is_linked(a, b))
    started = time.monotonic()
    for i in range(30):
        await b.net.send(a.address, "m", bytes([i]))
    metrics = a.net.metrics
    await wait_until(lambda: metrics.messages_in + metrics.rate_limited == 30)
    delivered = len(a.received("m"))
    refilled = 20 * (time.monotonic() - started)  # tokens earned while sending
    assert 20 <= delivered <= 20 + refilled + 1
    assert metrics.rate_limited == 30 - delivered
    assert metrics.abuse_disconnects == 0
    assert a.net.connected_peers() == [b.address]

    started = time.monotonic()
    for i in range(200):
        await b.net.send(a.address, "m", bytes([i]))
    await wait_until(lambda: metrics.abuse_disconnects == 1)
    refilled = 20 * (time.monotonic() - started)
    assert len(a.received("m")) <= delivered + refilled + 1


async def test_garbage_and_silent_diallers_do_not_hurt_the_listener(make_node: MakeNode) -> None:
    rogue_key = PrivateKey().secret
    a = await make_node(handshake_timeout=0.3)
    b = await make_node(peers=[a])
    await wait_until(lambda: is_linked(a, b))
    rogue = address_of(rogue_key)

    async with aiohttp.ClientSession() as session:
        # a dialler that never answers the challenge is cut off after the timeout
        async with session.ws_connect(a.net.url) as silent:
            challenge = decode_challenge((await silent.receive()).data)
            closed = await silent.receive(timeout=2.0)
            assert closed.type is WSMsgType.CLOSE
            assert silent.close_code == WSCloseCode.POLICY_VIOLATION
            assert closed.extra == "handshake timed out"
        # junk instead of a HELLO, and a text frame
        async with session.ws_connect(a.net.url) as junk:
            await junk.receive()
            await junk.send_bytes(b"\x11" + b"\x00" * 50)
            assert (await junk.receive(timeout=2.0)).type is WSMsgType.CLOSE
        async with session.ws_connect(a.net.url) as text:
            await text.receive()
            await text.send_str("hello")
            assert (await text.receive(timeout=2.0)).type is WSMsgType.CLOSE
        # a proper handshake, then a frame that does not decode: dropped
        async with session.ws_connect(a.net.url) as honest:
            challenge = decode_challenge((await honest.receive()).data)
            signature = sign_handshake(rogue_key, CHAIN_ID, GENESIS, challenge, a.address)
            own_challenge = b"\x07" * CHALLENGE_LENGTH
            hello = encode_hello(Hello(rogue, signature, own_challenge))
            await honest.send_bytes(hello)
            welcome = decode_welcome((await honest.receive()).data)
            digest = compute_handshake_digest(CHAIN_ID, GENESIS, own_challenge, rogue)
            validate_handshake_signature(digest, welcome.signature, a.address)
            await asyncio.sleep(0.05)
            assert rogue not in a.net.connected_peers()  # not before READY
            await honest.send_bytes(b"\x13")
            await wait_until(lambda: rogue in a.net.connected_peers())
            await honest.send_bytes(b"\x01\xff garbage")
            assert (await honest.receive(timeout=2.0)).type is WSMsgType.CLOSE
            assert honest.close_code == WSCloseCode.PROTOCOL_ERROR
        # the same HELLO replayed on a new connection (new challenge) is refused
        async with session.ws_connect(a.net.url) as replay:
            await replay.receive()
            await replay.send_bytes(hello)
            refused = await replay.receive(timeout=2.0)
            assert refused.type is WSMsgType.CLOSE
            assert "signature does not prove" in refused.extra
        # not a websocket at all
        async with session.get(a.net.url) as plain:
            assert plain.status == 400

    assert a.net.metrics.refused_handshakes == 4
    assert a.net.metrics.invalid_frames == 1
    assert rogue not in a.net.connected_peers()
    assert await b.net.request(a.address, "echo", b"still fine") == b"enif llits"


async def test_stop_is_prompt(make_node: MakeNode) -> None:
    nodes = [await make_node() for _ in range(3)]
    connect_all(nodes)
    await wait_until(lambda: all(len(n.net.connected_peers()) == 2 for n in nodes))
    hanging = asyncio.create_task(nodes[1].net.request(nodes[0].address, "hang", b""))
    async with aiohttp.ClientSession() as session, session.ws_connect(nodes[0].net.url) as silent:
        await silent.receive()  # mid-handshake, never answers and never reads again
        started = time.monotonic()
        await nodes[0].net.stop()
        assert time.monotonic() - started < 2.0
    with pytest.raises(PeerError):
        await hanging
    await wait_until(lambda: is_linked(nodes[1], nodes[2]))


async def test_constructor_refuses_bad_configuration() -> None:
    kwargs: dict[str, Any] = {
        "private_key": PrivateKey().secret,
        "chain_id": CHAIN_ID,
        "genesis_hash": GENESIS,
        "host": "127.0.0.1",
        "port": 0,
        "peers": [],
        "allowed": lambda _: True,
        "on_message": Node(b"").on_message,
        "on_request": Node(b"").on_request,
    }
    for bad in (
        {"private_key": b"\x00" * 32},
        {"genesis_hash": b"short"},
        {"chain_id": 2**64},
        {"rate_per_second": 0.0},
        {"max_message_bytes": 10},
    ):
        with pytest.raises(PolderError):
            P2PNetwork(**{**kwargs, **bad})


# -- codecs and pure helpers -------------------------------------------------------

kinds = st.text(alphabet="abcXYZ019_.:/-", min_size=1, max_size=64)


@given(kind=kinds, payload=st.binary(max_size=300), request_id=st.integers(1, 2**64 - 1))
def test_frame_round_trip(kind: str, payload: bytes, request_id: int) -> None:
    for frame in (
        Frame(kind, payload),
        Frame(kind, payload, flags=FLAG_REQUEST, request_id=request_id),
        Frame(kind, payload, flags=FLAG_RESPONSE, request_id=request_id),
        Frame(kind, payload, flags=FLAG_RESPONSE | FLAG_ERROR, request_id=request_id),
    ):
        assert decode_frame(encode_frame(frame)) == frame


def test_frame_exact_bytes() -> None:
    encoded = encode_frame(Frame("sync", b"\xaa\xbb", flags=FLAG_REQUEST, request_id=258))
    assert encoded == bytes.fromhex("01 01 0000000000000102 04") + b"sync" + b"\xaa\xbb"


@given(data=st.binary(max_size=80))
def test_decode_frame_raises_only_invalid_frame(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except InvalidFrame:
        return
    assert encode_frame(frame) == data


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes.fromhex("01 00 0000000000000000"),  # no kind length
        bytes.fromhex("02 00 0000000000000000 01") + b"k",  # unknown version
        bytes.fromhex("01 08 0000000000000001 01") + b"k",  # unknown flag
        bytes.fromhex("01 04 0000000000000001 01") + b"k",  # error without response
        bytes.fromhex("01 01 0000000000000000 01") + b"k",  # request with id 0
        bytes.fromhex("01 00 0000000000000005 01") + b"k",  # message with an id
        bytes.fromhex("01 00 0000000000000000 00"),  # empty kind
        bytes.fromhex("01 00 0000000000000000 05") + b"k",  # kind runs past the end
        bytes.fromhex("01 00 0000000000000000 02") + b"k ",  # space in kind
        bytes.fromhex("01 00 0000000000000000 02") + b"\xc3\xa9",  # non-ASCII kind
    ],
)
def test_decode_frame_refuses_malformed(data: bytes) -> None:
    with pytest.raises(InvalidFrame):
        decode_frame(data)


def test_encode_frame_refuses_bad_kinds() -> None:
    for kind in ("", "x" * 65, "é", "a b"):
        with pytest.raises(InvalidFrame):
            encode_frame(Frame(kind, b""))


def test_handshake_codecs_and_signatures() -> None:
    key = PrivateKey().secret
    me, verifier = address_of(key), b"\x01" * 20
    challenge = bytes(range(32))
    signature = sign_handshake(key, CHAIN_ID, GENESIS, challenge, verifier)
    hello = Hello(me, signature, b"\x02" * 32)
    encoded = encode_hello(hello)
    assert len(encoded) == 118
    assert encoded[0] == 0x11
    assert decode_hello(encoded) == hello
    welcome = Welcome(me, signature)
    assert len(encode_welcome(welcome)) == 86
    assert decode_welcome(encode_welcome(welcome)) == welcome
    assert keccak(
        b"polder-p2p-v1" + CHAIN_ID.to_bytes(8, "big") + GENESIS + challenge + verifier
    ) == compute_handshake_digest(CHAIN_ID, GENESIS, challenge, verifier)

    validate_handshake_signature(
        compute_handshake_digest(CHAIN_ID, GENESIS, challenge, verifier), signature, me
    )
    for digest in (
        compute_handshake_digest(CHAIN_ID + 1, GENESIS, challenge, verifier),
        compute_handshake_digest(CHAIN_ID, keccak(b"x"), challenge, verifier),
        compute_handshake_digest(CHAIN_ID, GENESIS, b"\x00" * 32, verifier),
        compute_handshake_digest(CHAIN_ID, GENESIS, challenge, b"\x03" * 20),
    ):
        with pytest.raises(HandshakeRefused):
            validate_handshake_signature(digest, signature, me)
    with pytest.raises(HandshakeRefused):
        validate_handshake_signature(digest, b"\x00" * 64 + b"\x05", me)
    for bad in (encoded[:-1], encoded + b"\x00", b"\x12" + encoded[1:]):
        with pytest.raises(HandshakeRefused):
            decode_hello(bad)
    with pytest.raises(HandshakeRefused):
        decode_challenge(b"\x10" + b"\x00" * 31)
    decode_ready(b"\x13")
    for bad in (b"", b"\x12", b"\x13\x00"):
        with pytest.raises(HandshakeRefused):
            decode_ready(bad)


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10.0, capacity=10.0, tokens=10.0, updated=100.0)
    assert [bucket.take(100.0) for _ in range(11)] == [True] * 10 + [False]
    # 2.5 tokens refilled after 0.25 s
    assert [bucket.take(100.25) for _ in range(3)] == [True, True, False]
    assert [bucket.take(200.0) for _ in range(11)] == [True] * 10 + [False]  # capped


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    delays = [compute_backoff(n, 0.1, 5.0, rng) for n in range(12)]
    for n, delay in enumerate(delays):
        ceiling = min(5.0, 0.1 * 2**n)
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(compute_backoff(20, 0.1, 5.0, rng), 6) for _ in range(5)}) == 5


async def test_start_refuses_a_busy_port(make_node: MakeNode) -> None:
    holder = await make_node()
    with pytest.raises(PolderError, match="cannot listen"):
        await make_node(port=holder.net.port)
