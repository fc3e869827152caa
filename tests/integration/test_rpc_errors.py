"""Bad input over raw HTTP, raw sockets and websockets: clear errors, and the node lives on.

Every request here is built by hand (standard library or aiohttp), so the
tests see exactly the bytes the node answers with. After each bad input the
node must still answer ``eth_blockNumber``; refused transactions must never
reach a block.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import rlp
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from web3 import Web3

from contracts.loader import load_artifact

pytestmark = [pytest.mark.integration]

MAX_BODY = 1024 * 1024
MAX_BATCH = 100
BLOCK_NUMBER = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
ADDRESS = "0x" + "ab" * 20
NOTARY = Web3().eth.contract(abi=load_artifact("Notary").abi)
REVERT_DATA = "0x08c379a0" + abi_encode(["string"], ["value must be nonzero"]).hex()

Post = Callable[[bytes], tuple[int, bytes]]


def record_data(key: bytes, value: bytes) -> str:
    return str(NOTARY.encode_abi("record", [key, value]))


def request(method: str, params: Any, request_id: Any = 1) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    ).encode()


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def assert_alive(post: Post) -> Callable[[], None]:
    """Check that the node still answers ``eth_blockNumber`` correctly."""

    def check() -> None:
        status, body = post(json.dumps(BLOCK_NUMBER).encode())
        assert status == 200, body
        answer = json.loads(body)
        assert answer["id"] == 1
        assert int(answer["result"], 16) >= 0

    return check


@pytest.fixture(autouse=True)
def _node_survives(assert_alive: Callable[[], None]) -> Iterator[None]:
    yield
    assert_alive()


@pytest.fixture(scope="module")
def notary(devnet: dict[str, Any]) -> str:
    """The Notary pre-deployed at genesis."""
    return str(devnet["contracts"]["Notary"])


@pytest.fixture(scope="module")
def send_raw(rpc: Callable[..., Any]) -> Callable[[bytes], dict[str, Any]]:
    return lambda raw: rpc("eth_sendRawTransaction", "0x" + raw.hex())


@pytest.fixture(scope="module")
def assert_never_mined(
    result: Callable[..., Any], send_tx: Callable[..., dict[str, Any]], notary: str
) -> Callable[[list[str]], None]:
    """Build a block after the refusals, then check no refused hash is in any block."""

    def check(tx_hashes: list[str]) -> None:
        marker = send_tx(
            Account.create(), {"to": notary, "data": record_data(keccak(b"m"), keccak(b"m"))}
        )
        head = int(marker["blockNumber"], 16)
        for tx_hash in tx_hashes:
            assert result("eth_getTransactionByHash", tx_hash) is None, tx_hash
            assert result("eth_getTransactionReceipt", tx_hash) is None, tx_hash
        mined = set()
        for number in range(max(0, head - 20), head + 1):
            mined.update(result("eth_getBlockByNumber", hex(number), False)["transactions"])
        assert mined.isdisjoint(tx_hashes)

    return check


# -- malformed requests --------------------------------------------------------------------------

MALFORMED = {
    "truncated object": (b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"', -32700),
    "not json": (b"hello node", -32700),
    "invalid utf-8": (b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe"}', -32700),
    "empty body": (b"", -32700),
    "params object": (request("eth_blockNumber", {}), -32602),
    "params string": (request("eth_getBalance", ADDRESS), -32602),
    "params number": (request("eth_getBalance", 7), -32602),
    "address as number": (request("eth_getBalance", [123, "latest"]), -32602),
    "full flag as string": (request("eth_getBlockByNumber", ["latest", "yes"]), -32602),
    "block as bool": (request("eth_getBlockByNumber", [True, False]), -32602),
    "bad hex address": (request("eth_getBalance", ["0xzz" + "00" * 19, "latest"]), -32602),
    "bad hex quantity": (request("eth_getBlockByNumber", ["0xg1", False]), -32602),
    "hex without prefix": (request("eth_getCode", ["ab" * 20, "latest"]), -32602),
    "odd hex digits": (request("eth_sendRawTransaction", ["0x123"]), -32602),
    "address 19 bytes": (request("eth_getBalance", ["0x" + "ab" * 19, "latest"]), -32602),
    "address 21 bytes": (request("eth_getBalance", ["0x" + "ab" * 21, "latest"]), -32602),
    "missing param": (request("eth_getBalance", []), -32602),
    "too many params": (request("eth_chainId", [1]), -32602),
    "light block, bad hash": (request("polder_getLightBlock", ["0x" + "zz" * 32]), -32602),
    "light block, no block": (request("polder_getLightBlock", []), -32602),
    "tx proof, short hash": (request("polder_getTransactionProof", ["0x1234"]), -32602),
    "changes, bad range": (request("polder_getValidatorChanges", ["0x5", "0x1"]), -32602),
    "changes, bad tag": (request("polder_getValidatorChanges", ["soon"]), -32602),
    "unknown method": (request("eth_doesNotExist", []), -32601),
    "admin method": (request("admin_addPeer", ["enode://x"]), -32601),
    "no jsonrpc": (b'{"id":1,"method":"eth_blockNumber","params":[]}', -32600),
    "jsonrpc 1.0": (b'{"jsonrpc":"1.0","id":1,"method":"eth_blockNumber","params":[]}', -32600),
    "id object": (b'{"jsonrpc":"2.0","id":{},"method":"eth_blockNumber","params":[]}', -32600),
    "id list": (b'{"jsonrpc":"2.0","id":[1],"method":"eth_blockNumber","params":[]}', -32600),
    "id bool": (b'{"jsonrpc":"2.0","id":true,"method":"eth_blockNumber","params":[]}', -32600),
    "method number": (b'{"jsonrpc":"2.0","id":1,"method":5,"params":[]}', -32600),
    "request a string": (b'"eth_blockNumber"', -32600),
    "request a number": (b"42", -32600),
}


@pytest.mark.parametrize(("body", "code"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_gets_its_error_code(
    post: Post, assert_alive: Callable[[], None], body: bytes, code: int
) -> None:
    status, raw = post(body)
    assert status == 200
    answer = json.loads(raw)
    assert answer["jsonrpc"] == "2.0"
    assert answer["error"]["code"] == code, answer
    message = answer["error"]["message"]
    assert isinstance(message, str)
    assert message
    assert "Traceback" not in message
    assert "result" not in answer
    # the id is echoed when it is a valid one, else null
    sent = json.loads(body) if code != -32700 else None
    valid_id = isinstance(sent, dict) and type(sent.get("id")) in (int, str)
    assert answer["id"] == (sent["id"] if valid_id else None)
    assert_alive()


def test_error_messages_name_the_problem(post: Post) -> None:
    cases = {
        request("eth_getBalance", ["0x" + "ab" * 19, "latest"]): "20 bytes",
        request("eth_getBalance", ["0xzz" + "00" * 19, "latest"]): "hex",
        request("eth_blockNumber", {}): "list",
        request("eth_doesNotExist", []): "eth_doesNotExist",
        request("eth_getBalance", []): "address",
    }
    for body, words in cases.items():
        message = json.loads(post(body)[1])["error"]["message"]
        assert words in message, (body, message)


def test_body_over_the_limit_gets_413_with_a_json_rpc_error(
    post: Post, assert_alive: Callable[[], None]
) -> None:
    padding = "0x" + "00" * (MAX_BODY // 2 + 16)
    status, raw = post(request("eth_sendRawTransaction", [padding]))
    assert status == 413
    answer = json.loads(raw)
    assert answer["jsonrpc"] == "2.0"
    assert answer["id"] is None
    assert str(MAX_BODY) in answer["error"]["message"]
    assert isinstance(answer["error"]["code"], int)
    assert_alive()
    # just under the limit is parsed normally (and refused as a transaction)
    under = "0x" + "00" * (MAX_BODY // 2 - 200)
    status, raw = post(request("eth_sendRawTransaction", [under]))
    assert status == 200
    assert json.loads(raw)["error"]["code"] == -32003


def test_truncated_body_and_raw_junk_do_not_hurt(
    rpc_url: str, assert_alive: Callable[[], None]
) -> None:
    address = urlsplit(rpc_url)
    target = (address.hostname, address.port)
    head = (
        b"POST / HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5000\r\n\r\n"
    )
    for _ in range(3):
        with socket.create_connection(target, timeout=5) as sock:
            sock.sendall(head + b'{"jsonrpc":"2.0",' + b" " * 83)
        assert_alive()
    # a request line that is not HTTP, then a header block cut off midway
    for junk in (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", b"POST / HTTP/1.1\r\nHost: no"):
        with socket.create_connection(target, timeout=5) as sock:
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(5)
            try:
                while sock.recv(4096):
                    pass
            except (TimeoutError, ConnectionResetError):
                pass
        assert_alive()


# -- batches and notifications -------------------------------------------------------------------


def test_batch_with_mixed_entries_answers_each(post: Post) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
        {"jsonrpc": "2.0", "id": "two", "method": "eth_doesNotExist", "params": []},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_getBalance", "params": ["0x12", "latest"]},
        {"jsonrpc": "2.0", "method": "eth_blockNumber", "params": []},  # a notification
        42,
        {"id": 5, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": 6, "method": "eth_chainId", "params": []},
    ]
    status, raw = post(json.dumps(batch).encode())
    assert status == 200
    answers = json.loads(raw)
    assert isinstance(answers, list)
    assert len(answers) == 6
    by_id = {a["id"]: a for a in answers if a["id"] is not None}
    assert int(by_id[1]["result"], 16) >= 0
    assert by_id["two"]["error"]["code"] == -32601
    assert by_id[3]["error"]["code"] == -32602
    assert by_id[5]["error"]["code"] == -32600
    assert int(by_id[6]["result"], 16) > 0
    anonymous = [a for a in answers if a["id"] is None]
    assert [a["error"]["code"] for a in anonymous] == [-32600]


def test_batch_limits(post: Post) -> None:
    status, raw = post(b"[]")
    assert status == 200
    assert json.loads(raw)["error"]["code"] == -32600
    entries = [dict(BLOCK_NUMBER, id=i) for i in range(MAX_BATCH + 1)]
    status, raw = post(json.dumps(entries).encode())
    assert status == 200
    answer = json.loads(raw)
    assert isinstance(answer, dict)
    assert answer["error"]["code"] == -32600
    assert str(MAX_BATCH) in answer["error"]["message"]
    status, raw = post(json.dumps(entries[:MAX_BATCH]).encode())
    answers = json.loads(raw)
    assert sorted(a["id"] for a in answers) == list(range(MAX_BATCH))


def test_notifications_get_no_response_body(post: Post) -> None:
    notification = {"jsonrpc": "2.0", "method": "eth_blockNumber", "params": []}
    for body in (
        notification,
        {**notification, "method": "eth_doesNotExist"},
        [notification, notification],
    ):
        status, raw = post(json.dumps(body).encode())
        assert status in (200, 204)
        assert raw == b"", body


# -- refused transactions ------------------------------------------------------------------------


def sign(account: LocalAccount, chain_id: int, notary: str, **fields: Any) -> Any:
    tx = {
        "chainId": chain_id,
        "nonce": 0,
        "maxFeePerGas": 0,
        "maxPriorityFeePerGas": 0,
        "gas": 200_000,
        "to": notary,
        "data": record_data(keccak(b"key"), keccak(b"value")),
        **fields,
    }
    return account.sign_transaction(tx)


def replace_signature(raw: bytes, v: int, r: int, s: int) -> bytes:
    """Return a typed transaction with its (y_parity, r, s) replaced."""
    fields = rlp.decode(raw[1:])
    fields[-3:] = [v, r, s]
    return raw[:1] + rlp.encode(fields)


def test_invalid_signatures_are_refused(
    chain_id: int,
    notary: str,
    send_raw: Callable[[bytes], dict[str, Any]],
    assert_alive: Callable[[], None],
    assert_never_mined: Callable[[list[str]], None],
) -> None:
    signed = sign(Account.create(), chain_id, notary)
    raw = bytes(signed.raw_transaction)
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    forged = {
        "r and s recover no key": replace_signature(raw, 0, 5, 7),
        "y parity 5": replace_signature(raw, 5, signed.r, signed.s),
        "s above the curve order": replace_signature(raw, signed.v, signed.r, order + 1),
        "high s (malleable)": replace_signature(raw, 1 - signed.v, signed.r, order - signed.s),
    }
    refused = []
    for name, tampered in forged.items():
        answer = send_raw(tampered)
        assert "error" in answer, name
        assert answer["error"]["code"] == -32003, (name, answer)
        assert "signature" in answer["error"]["message"].lower(), (name, answer)
        refused.append("0x" + keccak(tampered).hex())
        assert_alive()
    assert_never_mined(refused)


def test_transactions_refused_at_admission(
    w3: Web3,
    chain_id: int,
    notary: str,
    send_raw: Callable[[bytes], dict[str, Any]],
    send_tx: Callable[..., dict[str, Any]],
    assert_alive: Callable[[], None],
    assert_never_mined: Callable[[list[str]], None],
) -> None:
    account = Account.create()
    gas_limit = int(w3.eth.get_block("latest")["gasLimit"])
    mined = send_tx(account, {"to": notary, "data": record_data(keccak(b"a"), keccak(b"b"))})
    assert mined["status"] == "0x1"
    legacy = {
        "nonce": 1,
        "gasPrice": 0,
        "gas": 200_000,
        "to": notary,
        "data": record_data(keccak(b"c"), keccak(b"d")),
    }
    cases = {
        "wrong chain id": (sign(account, 1, notary, nonce=1), "wrong chain id"),
        "legacy without chain id": (account.sign_transaction(legacy), "no chain id"),
        "nonce gap": (sign(account, chain_id, notary, nonce=3), "nonce too high"),
        "nonce reuse": (sign(account, chain_id, notary, nonce=0), "nonce too low"),
        "gas above block limit": (
            sign(account, chain_id, notary, nonce=1, gas=gas_limit + 1),
            "gas limit",
        ),
    }
    refused = []
    for name, (signed, words) in cases.items():
        answer = send_raw(bytes(signed.raw_transaction))
        assert "error" in answer, name
        assert answer["error"]["code"] == -32003, (name, answer)
        assert words in answer["error"]["message"], (name, answer)
        refused.append(signed.hash.to_0x_hex())
        assert_alive()
    # the legacy form itself is fine once it names the chain
    legacy_ok = account.sign_transaction({**legacy, "chainId": chain_id})
    assert "result" in send_raw(bytes(legacy_ok.raw_transaction))
    assert_never_mined(refused)


def test_reverting_transaction_is_refused_with_the_reason(
    chain_id: int,
    notary: str,
    send_raw: Callable[[bytes], dict[str, Any]],
    assert_never_mined: Callable[[list[str]], None],
) -> None:
    signed = sign(Account.create(), chain_id, notary, data=record_data(keccak(b"k"), b"\x00" * 32))
    answer = send_raw(bytes(signed.raw_transaction))
    error = answer["error"]
    assert error["code"] == 3
    assert "value must be nonzero" in error["message"]
    assert error["data"] == REVERT_DATA
    assert_never_mined([signed.hash.to_0x_hex()])


def test_same_nonce_replacement(
    w3: Web3,
    chain_id: int,
    notary: str,
    post: Post,
    result: Callable[..., Any],
    wait_receipt: Callable[[str], dict[str, Any]],
) -> None:
    account = Account.create()
    key = keccak(b"replaced key")
    first = sign(account, chain_id, notary, data=record_data(key, keccak(b"first")))
    second = sign(account, chain_id, notary, data=record_data(key, keccak(b"second")))
    reverting = sign(account, chain_id, notary, data=record_data(key, b"\x00" * 32), gas=210_000)
    # one batch, so no block can be built between the three
    batch = [
        json.loads(request("eth_sendRawTransaction", ["0x" + s.raw_transaction.hex()], i))
        for i, s in enumerate((first, second, reverting))
    ]
    answers = {a["id"]: a for a in json.loads(post(json.dumps(batch).encode())[1])}
    assert answers[0]["result"] == first.hash.to_0x_hex()
    assert answers[1]["result"] == second.hash.to_0x_hex()
    assert answers[2]["error"]["code"] in (3, -32003)
    assert "value must be nonzero" in answers[2]["error"]["message"]
    receipt = wait_receipt(second.hash.to_0x_hex())
    assert receipt["status"] == "0x1"
    assert result("eth_getTransactionByHash", first.hash.to_0x_hex()) is None
    assert result("eth_getTransactionByHash", reverting.hash.to_0x_hex()) is None
    assert w3.eth.get_transaction_count(account.address) == 1
    stored = w3.eth.call({"to": notary, "data": NOTARY.encode_abi("values", [key])})
    assert bytes(stored) == keccak(b"second")


# -- websocket ------------------------------------------------------------------------------------


async def test_websocket_survives_garbage_frames(ws_url: str) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        sub = {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
        await ws.send_str(json.dumps(sub))
        sub_id = (await ws.receive_json(timeout=10))["result"]
        garbage: list[str | bytes] = [
            "garbage{",
            "",
            "[1,2",
            "\u0000\u0001",
            b"\x00\x01\xff garbage",
            b"",
        ]
        for frame in garbage:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
            answer = await receive_answer(ws)
            assert answer["id"] is None
            assert answer["error"]["code"] in (-32700, -32600)
        await ws.send_str(json.dumps({**sub, "params": ["noSuchKind"]}))
        assert (await receive_answer(ws))["error"]["code"] == -32602
        await ws.send_str(json.dumps(dict(BLOCK_NUMBER, id=99)))
        answer = await receive_answer(ws)
        assert answer["id"] == 99
        assert int(answer["result"], 16) >= 0
        # the subscription made before the garbage still delivers heads
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            message = await ws.receive_json(timeout=15)
            if message.get("method") == "eth_subscription":
                assert message["params"]["subscription"] == sub_id
                assert message["params"]["result"]["hash"].startswith("0x")
                break
        else:
            pytest.fail("no newHeads notification after garbage frames")


async def receive_answer(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """Return the next message that is not a subscription notification."""
    while True:
        message = await ws.receive_json(timeout=10)
        if message.get("method") != "eth_subscription":
            return dict(message)


async def test_websocket_batch_may_subscribe(ws_url: str) -> None:
    """``eth_subscribe`` is a method of websocket connections, in a batch as well (as in geth)."""
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        batch = [
            dict(BLOCK_NUMBER, id=1),
            {"jsonrpc": "2.0", "id": 2, "method": "eth_subscribe", "params": ["newHeads"]},
        ]
        await ws.send_str(json.dumps(batch))
        answers = {a["id"]: a for a in await receive_answer_list(ws)}
        assert int(answers[1]["result"], 16) >= 0
        assert "error" not in answers[2], answers[2]
        assert answers[2]["result"].startswith("0x")


async def receive_answer_list(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    while True:
        message = await ws.receive_json(timeout=10)
        if isinstance(message, list):
            return message
