"""web3.py plumbing the client tools share: a connection and zero-fee transactions.

Clients sign their own transactions (gas is free on Polder, fees are 0); a
node refuses a transaction that would revert at admission, with the reason,
and :func:`send_call` turns that into :class:`TransactionRefused`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3RPCError
from web3.middleware import ExtraDataToPOAMiddleware

from consensus.errors import PolderError

RECEIPT_TIMEOUT = 120
LOG_CHUNK = 5_000
"""Blocks per ``eth_getLogs`` request to start with (nodes bound the range of one request)."""
SPARSE_LOGS = 2_500
"""An answer with fewer logs than this lets the next range grow (nodes refuse over 10,000)."""
LIMIT_EXCEEDED = -32005
"""The node's error code for a request over a configured bound (too many logs, say)."""


class TransactionRefused(PolderError):
    """The node (or the contract) refused the transaction; ``message`` says why."""

    code = 3


def connect(url: str, timeout: float = 30.0) -> Web3:
    """Return a web3 connection to a Polder node (PoA-style extraData)."""
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    return w3


def build_signed(w3: Web3, account: Any, call: Any, nonce: int | None = None) -> bytes:
    """Sign ``call`` (a contract function call) as a zero-fee transaction; return raw bytes."""
    try:
        transaction = call.build_transaction(
            {
                "from": account.address,
                "nonce": (
                    w3.eth.get_transaction_count(account.address, "pending")
                    if nonce is None
                    else nonce
                ),
                "maxFeePerGas": 0,
                "maxPriorityFeePerGas": 0,
                "chainId": w3.eth.chain_id,
            }
        )
    except (ContractLogicError, Web3RPCError) as exc:
        raise TransactionRefused(describe_refusal(exc)) from exc
    return bytes(account.sign_transaction(transaction).raw_transaction)


def submit(w3: Web3, raw: bytes) -> bytes:
    """Send a signed transaction; return its hash or raise :class:`TransactionRefused`."""
    try:
        return bytes(w3.eth.send_raw_transaction(raw))
    except (ContractLogicError, Web3RPCError) as exc:
        raise TransactionRefused(describe_refusal(exc)) from exc


def wait(w3: Web3, tx_hash: bytes, timeout: float = RECEIPT_TIMEOUT) -> Any:
    """Wait for the receipt of ``tx_hash``."""
    return w3.eth.wait_for_transaction_receipt(HexBytes(tx_hash), timeout=timeout, poll_latency=0.2)


def send_call(w3: Web3, account: Any, call: Any) -> Any:
    """Sign, send and wait for ``call``; return the receipt."""
    return wait(w3, submit(w3, build_signed(w3, account, call)))


def describe_refusal(exc: Exception) -> str:
    """The node's reason, without JSON-RPC wrapping."""
    detail: Any = exc.args[0] if exc.args else None
    if isinstance(detail, dict) and "message" in detail:
        message = str(detail["message"])
    else:
        message = str(getattr(exc, "message", None) or exc)
    return message.removeprefix("execution reverted: ")


def iterate_logs(w3: Web3, log_filter: dict[str, Any], head: int, start: int = 0) -> Iterator[Any]:
    """Yield every log of ``log_filter`` from block ``start`` to ``head``, in chain order.

    Asks ``LOG_CHUNK`` blocks at a time. A range the node refuses as
    returning too many logs is halved and asked again (down to one block),
    and later ranges keep the span that worked; the span doubles again, up
    to ``LOG_CHUNK``, after an answer with few logs. So a dense stretch of
    the chain costs a few refusals, not one per range.
    """
    span, first = LOG_CHUNK, start
    while first <= head:
        last = min(first + span - 1, head)
        try:
            query: Any = {**log_filter, "fromBlock": first, "toBlock": last}
            logs = w3.eth.get_logs(query)
        except Web3RPCError as exc:
            code = exc.rpc_response.get("error", {}).get("code") if exc.rpc_response else None
            if code != LIMIT_EXCEEDED or first == last:
                raise
            span = max(1, (last - first + 1) // 2)
            continue
        yield from logs
        first = last + 1
        if len(logs) < SPARSE_LOGS:
            span = min(2 * span, LOG_CHUNK)
