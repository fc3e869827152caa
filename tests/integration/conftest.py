"""Fixtures that run real node processes on loopback.

``devnet`` starts a 1-validator devnet with ``python -m node devnet start`` in
a temporary folder on free ports, once per test module, and stops it at
teardown whatever happened: ``devnet stop`` first, then SIGKILL to the node's
process group if anything is left. The other fixtures hand tests a web3
connection, the admin account, and small helpers for raw JSON-RPC and signed
transactions, so test modules import nothing from each other.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from devnet_tools import Devnet, find_free_base_port, is_process_gone
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.middleware import ExtraDataToPOAMiddleware

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
RECEIPT_TIMEOUT = 30.0

Rpc = Callable[..., Any]


# -- processes ------------------------------------------------------------------------------


def kill_process_group(pid: int) -> None:
    """SIGKILL the session ``pid`` leads (node processes start in their own session)."""
    if pid <= 0 or is_process_gone(pid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not is_process_gone(pid):
        time.sleep(0.05)


def read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / "devnet.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def log_tail(path: str | Path, chars: int = 3000) -> str:
    try:
        return Path(path).read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def stop_process(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM ``pid`` and wait up to ``timeout``; then SIGKILL its process group."""
    if pid <= 0 or is_process_gone(pid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not is_process_gone(pid):
        time.sleep(0.05)
    kill_process_group(pid)


def stop_devnet_folder(directory: Path) -> None:
    """Stop every node the manifest on disk names: gracefully, then by force."""
    manifest = read_manifest(directory)
    for entry in (manifest or {}).get("nodes", []):
        stop_process(int(entry.get("pid") or 0))


@pytest.fixture(scope="module")
def net(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Devnet]:
    """A running 4-validator devnet (plus its observer), one per test module."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    devnet = Devnet.start(tmp_path_factory.mktemp(f"{name}-devnet"), 4)
    try:
        yield devnet
    finally:
        devnet.close()


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A running 1-validator devnet; yields its manifest (``devnet.json``) with ``dir`` added.

    Teardown reads ``devnet.json`` from disk, so a test that restarts the node
    itself keeps teardown right by writing the new pid there.
    """
    directory = tmp_path_factory.mktemp("devnet")
    try:
        # the validator and the observer, with their P2P ports, below the
        # ephemeral range where outgoing connections could take them
        port = find_free_base_port(2)
        started = subprocess.run(
            [
                PYTHON,
                "-m",
                "node",
                "devnet",
                "start",
                "--validators",
                "1",
                "--dir",
                str(directory),
                "--base-port",
                str(port),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        manifest = read_manifest(directory)
        if started.returncode != 0 or manifest is None:
            logs = "".join(log_tail(e["log"]) for e in (manifest or {}).get("nodes", []))
            pytest.fail(
                f"devnet start failed ({started.returncode}):\n{started.stdout}\n"
                f"{started.stderr}\n{logs}"
            )
        manifest["dir"] = str(directory)
        yield manifest
    finally:
        stop_devnet_folder(directory)


# -- JSON-RPC ---------------------------------------------------------------------------------


def post_json(url: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    """POST ``body`` to ``url``; return the HTTP status and the raw response body."""
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def call_rpc(url: str, method: str, *params: Any, timeout: float = 30.0) -> dict[str, Any]:
    """Make one JSON-RPC call; return the whole response object (result or error)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    status, raw = post_json(url, body.encode(), timeout)
    if status != 200:
        raise AssertionError(f"{method}: HTTP {status}: {raw[:500]!r}")
    return dict(json.loads(raw))


def get_result(url: str, method: str, *params: Any) -> Any:
    """Make one JSON-RPC call and return its result; fail the test on an error."""
    response = call_rpc(url, method, *params)
    if "error" in response:
        raise AssertionError(f"{method}{list(params)} failed: {response['error']}")
    return response["result"]


def wait_for_receipt(url: str, tx_hash: str, timeout: float = RECEIPT_TIMEOUT) -> dict[str, Any]:
    """Poll until ``tx_hash`` has a receipt; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        receipt = get_result(url, "eth_getTransactionReceipt", tx_hash)
        if receipt is not None:
            return dict(receipt)
        time.sleep(0.1)
    raise AssertionError(f"no receipt for {tx_hash} within {timeout:.0f} s")


@pytest.fixture(scope="module")
def rpc_url(devnet: dict[str, Any]) -> str:
    return str(devnet["nodes"][0]["rpc"])


@pytest.fixture(scope="module")
def ws_url(devnet: dict[str, Any]) -> str:
    return str(devnet["nodes"][0]["ws"])


@pytest.fixture(scope="module")
def rpc(rpc_url: str) -> Rpc:
    """``rpc(method, *params)`` → the full JSON-RPC response object."""
    return lambda method, *params: call_rpc(rpc_url, method, *params)


@pytest.fixture(scope="module")
def post(rpc_url: str) -> Callable[[bytes], tuple[int, bytes]]:
    """``post(body)`` → (HTTP status, response body) for raw request bytes."""
    return lambda body: post_json(rpc_url, body)


@pytest.fixture(scope="module")
def wait_receipt(rpc_url: str) -> Callable[[str], dict[str, Any]]:
    """``wait_receipt(tx_hash)`` → the receipt, once the transaction is in a block."""
    return lambda tx_hash: wait_for_receipt(rpc_url, tx_hash)


@pytest.fixture(scope="module")
def result(rpc_url: str) -> Rpc:
    """``result(method, *params)`` → the result; an error fails the test."""
    return lambda method, *params: get_result(rpc_url, method, *params)


# -- web3 and transactions ---------------------------------------------------------------


def make_web3(url: str) -> Web3:
    """A web3 HTTP connection that accepts the node's long (QBFT) extraData."""
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    return w3


@pytest.fixture(scope="module")
def w3(rpc_url: str) -> Web3:
    return make_web3(rpc_url)


@pytest.fixture(scope="module")
def admin(devnet: dict[str, Any]) -> LocalAccount:
    """The devnet's admin account: the only key that may deploy contracts."""
    key = Path(devnet["admin"]["keyFile"]).read_text().strip()
    account: LocalAccount = Account.from_key(key)
    return account


@pytest.fixture(scope="module")
def chain_id(devnet: dict[str, Any]) -> int:
    return int(devnet["chainId"])


def sign_tx(account: LocalAccount, tx: dict[str, Any], chain_id: int, nonce: int) -> Any:
    """Sign a free (zero-fee) dynamic-fee transaction; missing fields get defaults."""
    fields = {
        "chainId": chain_id,
        "nonce": nonce,
        "maxFeePerGas": 0,
        "maxPriorityFeePerGas": 0,
        "gas": 300_000,
        "value": 0,
        **tx,
    }
    return account.sign_transaction(fields)


@pytest.fixture(scope="module")
def send_tx(rpc_url: str, chain_id: int) -> Callable[..., dict[str, Any]]:
    """``send_tx(account, tx, wait=True)``: sign at the pending nonce and send.

    Returns the receipt (``wait``) or ``{"transactionHash": ..}``; a refusal
    fails the test with the node's error.
    """

    def send(account: LocalAccount, tx: dict[str, Any], wait: bool = True) -> dict[str, Any]:
        nonce = int(get_result(rpc_url, "eth_getTransactionCount", account.address, "pending"), 16)
        signed = sign_tx(account, tx, chain_id, nonce)
        tx_hash = get_result(rpc_url, "eth_sendRawTransaction", "0x" + signed.raw_transaction.hex())
        if not wait:
            return {"transactionHash": tx_hash}
        return wait_for_receipt(rpc_url, tx_hash)

    return send
