"""JSON-RPC 2.0 envelope handling, without a transport."""

from typing import Any

import pytest

from consensus.errors import InvalidParams, TransactionReverted
from node.rpc import Dispatcher, bind_params


async def echo(params: list[Any]) -> Any:
    return params


async def fail_params(params: list[Any]) -> Any:
    raise InvalidParams("block: expected a tag")


async def revert(params: list[Any]) -> Any:
    raise TransactionReverted("execution reverted: no", reason="no", data="0x08c379a0")


async def crash(params: list[Any]) -> Any:
    raise RuntimeError("secret internals")


@pytest.fixture
def dispatcher() -> Dispatcher:
    return Dispatcher(
        {"echo": echo, "bad": fail_params, "revert": revert, "crash": crash}, max_batch=3
    )


def request(method: str, params: Any = None, id_: Any = 1) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        body["params"] = params
    return body


async def test_result(dispatcher: Dispatcher) -> None:
    assert await dispatcher.dispatch(request("echo", [1, "a"])) == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": [1, "a"],
    }


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (request("nope"), -32601),
        (request("echo", {"a": 1}), -32602),
        (request("bad", []), -32602),
        ({"id": 1, "method": "echo"}, -32600),
        ({"jsonrpc": "2.0", "id": [1], "method": "echo"}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": 5}, -32600),
        ("just a string", -32600),
        ([], -32600),
        ([request("echo")] * 4, -32600),
    ],
)
async def test_errors_have_standard_codes(dispatcher: Dispatcher, payload: Any, code: int) -> None:
    response = await dispatcher.dispatch(payload)
    assert response["error"]["code"] == code
    assert response["error"]["message"]


async def test_revert_carries_data(dispatcher: Dispatcher) -> None:
    response = await dispatcher.dispatch(request("revert", []))
    assert response["error"] == {
        "code": 3,
        "message": "execution reverted: no",
        "data": "0x08c379a0",
    }


async def test_internal_errors_hide_details(dispatcher: Dispatcher) -> None:
    response = await dispatcher.dispatch(request("crash", []))
    assert response["error"] == {"code": -32603, "message": "internal error"}


async def test_batch_answers_each_and_skips_notifications(dispatcher: Dispatcher) -> None:
    notification = {"jsonrpc": "2.0", "method": "echo", "params": []}
    response = await dispatcher.dispatch(
        [request("echo", [1], 1), notification, request("x", [], 2)]
    )
    assert [r["id"] for r in response] == [1, 2]
    assert response[1]["error"]["code"] == -32601
    assert await dispatcher.dispatch(notification) is None
    assert await dispatcher.dispatch([notification]) is None


def test_bind_params_refuses_wrong_arity() -> None:
    def method(a: int, b: int = 0) -> None:
        del a, b

    bind_params(method, "m", [1])
    with pytest.raises(InvalidParams, match="m:"):
        bind_params(method, "m", [1, 2, 3])
