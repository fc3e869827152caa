"""The node's aiohttp server: JSON-RPC over HTTP POST and WebSocket on one port.

The server parses bytes, enforces size limits, and hands parsed requests to
the transport-free :class:`node.rpc.Dispatcher`. WebSocket connections also
carry ``eth_subscribe`` (``newHeads``, ``logs``) and ``eth_unsubscribe``.

Shutdown order (``cleanup_ctx``, which only runs if start-up finished): stop
producing blocks, close websocket subscriptions, let the executor finish its
in-flight work, close the database last.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from eth.abc import BlockAPI, ReceiptAPI

from consensus.errors import InvalidParams, PolderError
from node import statedb
from node.api import (
    EthApi,
    LogFilter,
    decode_data,
    decode_log_filter,
    format_block_logs,
    format_header,
)
from node.config import NodeConfig
from node.light import LightApi
from node.rpc import PARSE_ERROR, Dispatcher, Handler, bind_params, make_error, make_result
from node.service import CLIENT_VERSION, Node

log = logging.getLogger("polder.server")

NODE_KEY = web.AppKey("node", Node)
DISPATCHER_KEY = web.AppKey("dispatcher", Dispatcher)
OPEN_SOCKETS_KEY = web.AppKey("open_sockets", dict)
"""Open websocket responses (as keys), closed first at shutdown."""
SUBSCRIPTION_METHODS = ("eth_subscribe", "eth_unsubscribe")
MAX_SUBSCRIPTIONS = 64
"""Subscriptions one websocket connection may hold."""


def make_handlers(node: Node, api: EthApi) -> dict[str, Handler]:
    """Wrap each blocking API method so it runs on the chain thread."""

    def wrap(name: str, fn: Callable[..., Any]) -> Handler:
        async def handler(params: list[Any]) -> Any:
            bind_params(fn, name, params)
            return await node.run(fn, *params)

        return handler

    methods = {**api.methods(), **LightApi(api).methods()}
    handlers = {name: wrap(name, fn) for name, fn in methods.items()}

    async def send_raw_transaction(params: list[Any]) -> Any:
        if len(params) != 1:
            raise InvalidParams("eth_sendRawTransaction takes one parameter: the signed bytes")
        raw = decode_data(params[0], "transaction")
        return "0x" + (await node.submit_transaction(raw)).hex()

    async def status(params: list[Any]) -> Any:
        bind_params(lambda: None, "polder_status", params)
        return await node.run(node.status)

    async def get_evidence(params: list[Any]) -> Any:
        bind_params(lambda: None, "polder_getEvidence", params)
        return await node.run(node.evidence.load)

    handlers["eth_sendRawTransaction"] = send_raw_transaction
    handlers["polder_status"] = status
    handlers["polder_getEvidence"] = get_evidence
    return handlers


async def handle_metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    node = request.app[NODE_KEY]
    return web.Response(text=await node.run(format_metrics, node), content_type="text/plain")


def format_metrics(node: Node) -> str:
    """Return the node's counters and gauges in Prometheus exposition format."""
    bft = node.bft.status()
    values = [
        ("polder_block_height", "gauge", "Height of the head block", node.chain.head.block_number),
        (
            "polder_blocks_committed_total",
            "counter",
            "Blocks committed since start",
            node.blocks_committed,
        ),
        (
            "polder_rounds_started_total",
            "counter",
            "Consensus rounds started",
            bft["roundsStarted"],
        ),
        (
            "polder_round_changes_total",
            "counter",
            "Rounds after round 0 (round changes)",
            bft["roundChanges"],
        ),
        ("polder_peers", "gauge", "Authenticated P2P peers", len(node.p2p.connected_peers())),
        ("polder_mempool_size", "gauge", "Transactions waiting in the pool", len(node.mempool)),
        (
            "polder_finality_latency_seconds",
            "gauge",
            "Time between the last two commits",
            bft["finalityLatencySeconds"],
        ),
        (
            "polder_trie_node_cache_hits_total",
            "counter",
            "State and storage trie nodes read from the decoded-node cache",
            statedb.TRIE_NODES.hits,
        ),
        (
            "polder_trie_node_cache_misses_total",
            "counter",
            "State and storage trie nodes read from the database and decoded",
            statedb.TRIE_NODES.misses,
        ),
        (
            "polder_trie_node_cache_nodes",
            "gauge",
            "Decoded trie nodes the cache holds",
            len(statedb.TRIE_NODES),
        ),
    ]
    lines = []
    for name, kind, help_text, value in values:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
    lines += [
        "# HELP polder_executor_seconds_total Seconds the chain thread spent, by task",
        "# TYPE polder_executor_seconds_total counter",
        *(
            f'polder_executor_seconds_total{{task="{task}"}} {seconds:.6f}'
            for task, seconds in sorted(node.executor_seconds.items())
        ),
    ]
    return "\n".join(lines) + "\n"


async def handle_http(request: web.Request) -> web.StreamResponse:
    """POST /: one JSON-RPC request or batch."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await handle_websocket(request)
    if request.method != "POST":
        return web.json_response(
            {"polder": CLIENT_VERSION, "hint": "send JSON-RPC 2.0 requests with POST"}
        )
    node = request.app[NODE_KEY]
    limit = node.config.rpc.max_body_bytes
    too_large = make_error(None, -32600, f"request body exceeds {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        return web.json_response(too_large, status=413)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return web.json_response(too_large, status=413)
    except ConnectionResetError:
        # the client sent less than it announced and hung up: nobody to answer
        return web.Response(status=400)
    response = await dispatch_bytes(request.app[DISPATCHER_KEY], body)
    if response is None:
        return web.Response(status=204)
    return web.json_response(response)


async def dispatch_bytes(dispatcher: Dispatcher, body: bytes | str) -> Any:
    """Parse and dispatch one HTTP body or websocket message."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return make_error(None, PARSE_ERROR, f"parse error: {exc}")
    return await dispatcher.dispatch(payload)


class Subscriptions:
    """The ``eth_subscribe`` state of one websocket connection."""

    def __init__(self, ws: web.WebSocketResponse, node: Node) -> None:
        self.ws = ws
        self.node = node
        self.active: dict[str, tuple[str, LogFilter | None]] = {}

    async def subscribe(self, request_id: Any, params: list[Any]) -> dict[str, Any]:
        if not params or params[0] not in ("newHeads", "logs"):
            return make_error(request_id, InvalidParams.code, "subscribe to newHeads or logs")
        if len(self.active) >= MAX_SUBSCRIPTIONS:
            return make_error(request_id, -32005, f"at most {MAX_SUBSCRIPTIONS} subscriptions")
        try:
            log_filter = (
                decode_log_filter(params[1] if len(params) > 1 else {})
                if params[0] == "logs"
                else None
            )
        except PolderError as exc:
            return make_error(request_id, exc.code, exc.message)
        sub_id = "0x" + secrets.token_hex(16)
        self.active[sub_id] = (params[0], log_filter)
        return make_result(request_id, sub_id)

    def unsubscribe(self, request_id: Any, params: list[Any]) -> dict[str, Any]:
        found = bool(params) and self.active.pop(params[0], None) is not None
        return make_result(request_id, found)

    async def on_block(self, block: BlockAPI, receipts: tuple[ReceiptAPI, ...]) -> None:
        for sub_id, (kind, log_filter) in list(self.active.items()):
            if kind == "newHeads":
                await self.notify(sub_id, format_header(block.header))
            elif log_filter is not None:
                for entry in format_block_logs(block, receipts, log_filter):
                    await self.notify(sub_id, entry)

    async def notify(self, sub_id: str, result: Any) -> None:
        if self.ws.closed:
            return
        await self.ws.send_json(
            {
                "jsonrpc": "2.0",
                "method": "eth_subscription",
                "params": {"subscription": sub_id, "result": result},
            }
        )


async def handle_websocket(request: web.Request) -> web.StreamResponse:
    """GET / with Upgrade: JSON-RPC over websocket, plus subscriptions."""
    node = request.app[NODE_KEY]
    dispatcher = request.app[DISPATCHER_KEY]
    ws = web.WebSocketResponse(max_msg_size=node.config.rpc.max_body_bytes, heartbeat=30)
    await ws.prepare(request)
    subs = Subscriptions(ws, node)
    node.listeners.append(subs.on_block)
    request.app[OPEN_SOCKETS_KEY][ws] = None
    try:
        async for message in ws:
            # web3.py sends binary frames by default; both carry UTF-8 JSON
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            response = await answer_ws_message(dispatcher, subs, message.data)
            if response is not None:
                await ws.send_json(response)
    finally:
        node.listeners.remove(subs.on_block)
        request.app[OPEN_SOCKETS_KEY].pop(ws, None)
    return ws


async def answer_ws_message(dispatcher: Dispatcher, subs: Subscriptions, data: str | bytes) -> Any:
    """Answer one websocket message: a request or a batch, subscriptions included."""
    try:
        payload = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return make_error(None, PARSE_ERROR, f"parse error: {exc}")
    if isinstance(payload, list) and 0 < len(payload) <= dispatcher.max_batch:
        answers = [await answer_ws_request(dispatcher, subs, item) for item in payload]
        return [a for a in answers if a is not None] or None
    return await answer_ws_request(dispatcher, subs, payload)


async def answer_ws_request(dispatcher: Dispatcher, subs: Subscriptions, request: Any) -> Any:
    if isinstance(request, dict) and request.get("method") in SUBSCRIPTION_METHODS:
        params = request.get("params") or []
        params = params if isinstance(params, list) else []
        if request["method"] == "eth_subscribe":
            return await subs.subscribe(request.get("id"), params)
        return subs.unsubscribe(request.get("id"), params)
    return await dispatcher.dispatch(request)


def make_app(config: NodeConfig) -> web.Application:
    """Build the aiohttp application; the node opens in its cleanup context."""
    app = web.Application(client_max_size=config.rpc.max_body_bytes)

    async def node_context(app: web.Application) -> AsyncIterator[None]:
        node = Node(config)
        api = EthApi(
            node.chain, node.mempool, CLIENT_VERSION, max_log_range=config.rpc.max_log_range
        )
        app[NODE_KEY] = node
        app[DISPATCHER_KEY] = Dispatcher(make_handlers(node, api), max_batch=config.rpc.max_batch)
        await node.start()
        log.info(
            "%s serving chain %d at head #%d on http://%s:%d (pid %d)",
            config.name,
            node.genesis.chain_id,
            node.chain.head.block_number,
            config.rpc.host,
            config.rpc.port,
            os.getpid(),
        )
        yield
        await node.stop()
        await asyncio.get_running_loop().run_in_executor(None, node.close)

    async def close_websockets(app: web.Application) -> None:
        # Without this, one idle websocket client holds shutdown for the whole
        # shutdown timeout while blocks keep being produced.
        await app[NODE_KEY].stop()
        sockets: dict[web.WebSocketResponse, None] = app[OPEN_SOCKETS_KEY]
        for ws in list(sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"node shutting down")

    app[OPEN_SOCKETS_KEY] = {}
    app.cleanup_ctx.append(node_context)
    app.on_shutdown.append(close_websockets)
    app.router.add_route("*", "/", handle_http)
    app.router.add_get("/metrics", handle_metrics)
    return app
