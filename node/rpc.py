"""JSON-RPC 2.0 dispatch with no transport: a parsed request in, a response out.

The aiohttp server (:mod:`node.server`) only parses bytes and writes replies;
everything about the protocol — envelopes, batches, error objects with stable
codes — is here, so it is tested without sockets. Errors never carry
tracebacks: a :class:`PolderError` becomes its code, message and data; any
other exception becomes an internal error whose details go to the node's log.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from consensus.errors import InvalidParams, PolderError, TransactionReverted

log = logging.getLogger("polder.rpc")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INTERNAL_ERROR = -32603

Handler = Callable[[list[Any]], Awaitable[Any]]


def bind_params(method: Callable[..., Any], name: str, params: list[Any]) -> None:
    """Raise :class:`InvalidParams` unless ``params`` fit ``method``'s signature."""
    try:
        inspect.signature(method).bind(*params)
    except TypeError as exc:
        raise InvalidParams(f"{name}: {exc}") from exc


def make_error(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    """Return a JSON-RPC error response."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def make_result(request_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def encode_error_data(error: PolderError) -> Any:
    """Return the ``data`` member: only a revert's data, as geth does.

    web3.py and ethers treat any error carrying ``data`` as a revert, so other
    refusals say everything in their message and code.
    """
    return error.data.get("data") if isinstance(error, TransactionReverted) else None


def is_valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int) and not isinstance(value, bool))


class Dispatcher:
    """Routes JSON-RPC requests to async handlers that take the params list."""

    def __init__(self, handlers: Mapping[str, Handler], max_batch: int = 100) -> None:
        self.handlers = dict(handlers)
        self.max_batch = max_batch

    async def dispatch(self, payload: Any) -> Any:
        """Handle a parsed request or batch; return the response (None for notifications)."""
        if isinstance(payload, list):
            return await self.dispatch_batch(payload)
        return await self.dispatch_one(payload)

    async def dispatch_batch(self, batch: list[Any]) -> Any:
        if not batch:
            return make_error(None, INVALID_REQUEST, "empty batch")
        if len(batch) > self.max_batch:
            return make_error(
                None, INVALID_REQUEST, f"batch of {len(batch)} exceeds the limit {self.max_batch}"
            )
        responses = [await self.dispatch_one(item) for item in batch]
        kept = [r for r in responses if r is not None]
        return kept or None

    async def dispatch_one(self, request: Any) -> dict[str, Any] | None:
        if not isinstance(request, dict):
            return make_error(None, INVALID_REQUEST, "a request must be a JSON object")
        request_id = request.get("id")
        if request.get("jsonrpc") != "2.0" or not is_valid_id(request_id):
            return make_error(
                request_id if is_valid_id(request_id) else None,
                INVALID_REQUEST,
                'a request needs "jsonrpc": "2.0" and a string, number or null id',
            )
        method = request.get("method")
        if not isinstance(method, str):
            return make_error(request_id, INVALID_REQUEST, "method must be a string")
        params = request.get("params")
        params = [] if params is None else params
        is_notification = "id" not in request
        response = await self.call(request_id, method, params)
        return None if is_notification else response

    async def call(self, request_id: Any, method: str, params: Any) -> dict[str, Any]:
        handler = self.handlers.get(method)
        if handler is None:
            return make_error(request_id, METHOD_NOT_FOUND, f"the method {method} does not exist")
        if not isinstance(params, list):
            return make_error(
                request_id, InvalidParams.code, "params must be a list (positional parameters)"
            )
        try:
            return make_result(request_id, await handler(params))
        except PolderError as exc:
            return make_error(request_id, exc.code, exc.message, encode_error_data(exc))
        except Exception:
            log.exception("internal error in %s", method)
            return make_error(request_id, INTERNAL_ERROR, "internal error")
