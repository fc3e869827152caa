"""Crash safety: SIGKILL the node at random moments under load; nothing committed is lost.

A background thread keeps several zero-balance accounts sending Notary
transactions. The test kills the node process with SIGKILL again and again
(right after a block appears, around the moment the next one is committed, and
at random sub-second delays, start-up included), restarts it each time with
``python -m node run --config ...``, and checks that every block and receipt a
client ever saw is still there unchanged, that the chain links back to genesis,
and that a graceful SIGTERM stop and restart keep everything as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_account import Account
from eth_hash.auto import keccak
from web3 import Web3

from contracts.loader import load_artifact

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
KILL_MOMENTS = (
    "after-commit",
    "mid-commit",
    "random",
    "during-start-up",
    "mid-commit",
    "after-commit",
    "random",
    "mid-commit",
)
"""When each cycle kills the node; "during-start-up" kills twice (once while it starts)."""
BLOCK_PERIOD = 1.0
LOAD_ACCOUNTS = 6
LOAD_INTERVAL = 0.1
"""Seconds between rounds of the load thread (one transaction per account a round)."""
READY_TIMEOUT = 30.0
STOP_BOUND = 10.0
"""A graceful stop must finish within this (the server's shutdown_timeout is 10 s)."""
BATCH = 100
NOTARY = Web3().eth.contract(abi=load_artifact("Notary").abi)

Post = Callable[[bytes], tuple[int, bytes]]
Rpc = Callable[..., Any]


def is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def batch_call(post: Post, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    """Make JSON-RPC calls in batches; return their results in order (errors fail)."""
    results: list[Any] = []
    for start in range(0, len(calls), BATCH):
        chunk = calls[start : start + BATCH]
        body = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
            for i, (method, params) in enumerate(chunk)
        ]
        status, raw = post(json.dumps(body).encode())
        assert status == 200, raw[:300]
        answers = sorted(json.loads(raw), key=lambda a: a["id"])
        for answer in answers:
            assert "error" not in answer, answer
            results.append(answer["result"])
    return results


class NodeProcess:
    """The one node of the devnet, restarted by this test after each kill."""

    def __init__(self, devnet: dict[str, Any], rpc: Rpc) -> None:
        entry = devnet["nodes"][0]
        self.manifest_path = Path(devnet["dir"]) / "devnet.json"
        self.config = entry["config"]
        self.log_path = Path(entry["log"])
        self.rpc = rpc
        self.pid = int(entry["pid"])
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def start(self) -> None:
        """Start ``python -m node run`` in its own session, logging to the node's log."""
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== test restart {self.starts} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "node", "run", "--config", self.config],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.process.pid
        # keep the manifest right, so the devnet fixture's teardown stops this process
        self._write_manifest_pid(self.pid)

    def _write_manifest_pid(self, pid: int) -> None:
        manifest = json.loads(self.manifest_path.read_text())
        manifest["nodes"][0]["pid"] = pid
        self.manifest_path.write_text(json.dumps(manifest, indent=2))

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(
                    f"node exited with {self.process.returncode} during start-up:\n"
                    f"{self.log_tail()}"
                )
            with contextlib.suppress(Exception):
                if "result" in self.rpc("eth_blockNumber"):
                    return
            time.sleep(0.05)
        pytest.fail(f"node did not answer within {READY_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def ensure_running(self) -> None:
        """Start the node unless the devnet's or this test's process is running."""
        running = self.process.poll() is None if self.process is not None else not is_gone(self.pid)
        if not running:
            self.start()
        self.wait_ready()

    def kill(self) -> None:
        """SIGKILL the node and wait until it is gone."""
        os.kill(self.pid, signal.SIGKILL)
        self.kills += 1
        assert self._wait_gone(10.0), f"node {self.pid} survived SIGKILL"

    def terminate(self, bound: float = STOP_BOUND) -> tuple[bool, float]:
        """SIGTERM the node; return whether it exited within ``bound`` and how long it took.

        A node still running after ``bound`` is killed, so the test can go on.
        """
        started = time.monotonic()
        os.kill(self.pid, signal.SIGTERM)
        exited = self._wait_gone(bound)
        elapsed = time.monotonic() - started
        if not exited:
            self.kill()
        return exited, elapsed

    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None:
                if self.process.poll() is not None:
                    return True
            elif is_gone(self.pid):
                return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        """Stop a node this test started (teardown)."""
        if self.process is not None and self.process.poll() is None:
            self.terminate(bound=5.0)
        if self.process is not None:
            self.process.wait(timeout=10)
            # the pid is free for reuse now: teardown must not signal it
            self._write_manifest_pid(0)


class Load(threading.Thread):
    """Sends a steady stream of Notary transactions from several fresh accounts."""

    def __init__(self, rpc: Rpc, post: Post, chain_id: int, notary: str) -> None:
        super().__init__(name="load", daemon=True)
        self.rpc = rpc
        self.post = post
        self.chain_id = chain_id
        self.notary = notary
        self.accounts = [Account.create() for _ in range(LOAD_ACCOUNTS)]
        self.nonces: dict[str, int | None] = {a.address: None for a in self.accounts}
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.accepted = 0
        self.transport_errors = 0
        self.refusals: list[str] = []
        """Refusals other than nonce races after a restart: should stay empty."""
        self.waiting: dict[str, float] = {}
        """Accepted transactions without a receipt yet: hash → time sent."""
        self.mined: dict[str, tuple[str, str]] = {}
        """Receipts seen: tx hash → (block number, block hash)."""
        self.failure: BaseException | None = None
        self.rng = random.Random()

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                for account in self.accounts:
                    self.send_one(account)
                self.poll_receipts()
                self.halt.wait(LOAD_INTERVAL)
        except BaseException as exc:  # reported by the test thread
            self.failure = exc

    def send_one(self, account: Any) -> None:
        try:
            nonce = self.nonces[account.address]
            if nonce is None:
                answer = self.rpc("eth_getTransactionCount", account.address, "pending")
                nonce = int(answer["result"], 16)
            value = self.rng.randbytes(31) + b"\x01"
            data = NOTARY.encode_abi("record", [keccak(value), value])
            signed = account.sign_transaction(
                {
                    "chainId": self.chain_id,
                    "nonce": nonce,
                    "maxFeePerGas": 0,
                    "maxPriorityFeePerGas": 0,
                    "gas": 200_000,
                    "to": self.notary,
                    "data": data,
                }
            )
            answer = self.rpc("eth_sendRawTransaction", "0x" + signed.raw_transaction.hex())
        except Exception:  # the node is down or restarting
            with self.lock:
                self.transport_errors += 1
            self.nonces[account.address] = None
            return
        if "result" in answer:
            self.nonces[account.address] = nonce + 1
            with self.lock:
                self.accepted += 1
                self.waiting[answer["result"]] = time.monotonic()
            return
        # the pool died with the node: start again from the chain's nonce
        self.nonces[account.address] = None
        if "nonce" not in answer["error"]["message"]:
            with self.lock:
                self.refusals.append(answer["error"]["message"])

    def poll_receipts(self) -> None:
        now = time.monotonic()
        with self.lock:
            # transactions lost with a killed node's pool never get a receipt
            for tx_hash in [h for h, sent in self.waiting.items() if now - sent > 30]:
                del self.waiting[tx_hash]
            hashes = [h for h, sent in self.waiting.items() if now - sent > 0.5][:BATCH]
        if not hashes:
            return
        body = [
            {"jsonrpc": "2.0", "id": i, "method": "eth_getTransactionReceipt", "params": [h]}
            for i, h in enumerate(hashes)
        ]
        try:
            status, raw = self.post(json.dumps(body).encode())
            answers = json.loads(raw) if status == 200 else []
        except Exception:
            return
        with self.lock:
            for answer in answers:
                receipt = answer.get("result")
                if receipt:
                    tx_hash = hashes[answer["id"]]
                    self.mined[tx_hash] = (receipt["blockNumber"], receipt["blockHash"])
                    self.waiting.pop(tx_hash, None)

    def snapshot(self) -> dict[str, tuple[str, str]]:
        with self.lock:
            return dict(self.mined)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)


class Observer:
    """What the client has seen committed: block number → block hash."""

    def __init__(self, rpc: Rpc, post: Post) -> None:
        self.rpc = rpc
        self.post = post
        self.seen: dict[int, str] = {}

    @property
    def height(self) -> int:
        return max(self.seen, default=-1)

    def get_height(self) -> int:
        return int(self.rpc("eth_blockNumber")["result"], 16)

    def record(self) -> int:
        """Record every block up to the head; return the head's height."""
        head = self.get_height()
        numbers = list(range(self.height + 1, head + 1))
        blocks = batch_call(self.post, [("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        for number, block in zip(numbers, blocks, strict=True):
            assert block is not None, f"block {number} vanished below head {head}"
            self.seen[number] = block["hash"]
        return head

    def wait_for_new_block(self, timeout: float = 15.0) -> float:
        """Poll until the head passes the recorded height; record it; return when."""
        start = self.height
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get_height() > start:
                self.record()
                return time.monotonic()
            time.sleep(0.005)
        raise AssertionError(f"no block after #{start} within {timeout:.0f} s")

    def check(self, load: Load, context: str) -> None:
        """Every block and receipt seen before is still there, unchanged."""
        head = self.get_height()
        assert head >= self.height, f"{context}: head {head} is below seen block {self.height}"
        numbers = sorted(self.seen)
        blocks = batch_call(self.post, [("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        for number, block in zip(numbers, blocks, strict=True):
            assert block is not None, f"{context}: block {number} is gone"
            assert block["hash"] == self.seen[number], f"{context}: block {number} changed"
        mined = load.snapshot()
        hashes = sorted(mined)
        receipts = batch_call(self.post, [("eth_getTransactionReceipt", [h]) for h in hashes])
        for tx_hash, receipt in zip(hashes, receipts, strict=True):
            assert receipt is not None, f"{context}: receipt of {tx_hash} is gone"
            assert (receipt["blockNumber"], receipt["blockHash"]) == mined[tx_hash], context


def check_chain_intact(post: Post, observer: Observer, genesis_hash: str) -> int:
    """Walk from the head to genesis: links, full blocks, receipts. Return the tx count."""
    head = observer.get_height()
    numbers = list(range(head + 1))
    blocks = batch_call(post, [("eth_getBlockByNumber", [hex(n), True]) for n in numbers])
    assert blocks[0]["hash"] == genesis_hash
    located: list[tuple[dict[str, Any], int]] = []
    for number, block in enumerate(blocks):
        assert block is not None, f"block {number} missing below head {head}"
        assert int(block["number"], 16) == number
        if number:
            assert block["parentHash"] == blocks[number - 1]["hash"], f"link broken at {number}"
        if number in observer.seen:
            assert block["hash"] == observer.seen[number]
        for index, tx in enumerate(block["transactions"]):
            assert tx["blockHash"] == block["hash"]
            assert int(tx["transactionIndex"], 16) == index
            located.append((tx, number))
    receipts = batch_call(post, [("eth_getTransactionReceipt", [tx["hash"]]) for tx, _ in located])
    for (tx, number), receipt in zip(located, receipts, strict=True):
        assert receipt is not None, f"receipt of {tx['hash']} (block {number}) missing"
        assert receipt["blockHash"] == blocks[number]["hash"]
        assert receipt["transactionIndex"] == tx["transactionIndex"]
        assert receipt["status"] == "0x1"
        assert len(receipt["logs"]) == 1
    return len(located)


@pytest.fixture(scope="module")
def node(devnet: dict[str, Any], rpc: Rpc) -> Iterator[NodeProcess]:
    process = NodeProcess(devnet, rpc)
    try:
        yield process
    finally:
        process.close()


def test_sigkill_at_random_moments_keeps_every_committed_block(
    node: NodeProcess, devnet: dict[str, Any], rpc: Rpc, post: Post, chain_id: int
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    observer = Observer(rpc, post)
    load = Load(rpc, post, chain_id, devnet["contracts"]["Notary"])
    load.start()
    try:
        observer.record()
        for cycle, moment in enumerate(KILL_MOMENTS):
            if moment == "after-commit":
                observer.wait_for_new_block()
            elif moment == "mid-commit":
                # the producer builds the next block one period after announcing the
                # last, and building plus committing takes tens of milliseconds
                seen_at = observer.wait_for_new_block()
                delay = rng.uniform(BLOCK_PERIOD - 0.015, BLOCK_PERIOD + 0.08)
                time.sleep(max(0.0, seen_at + delay - time.monotonic()))
            elif moment == "random":
                time.sleep(rng.uniform(0.0, 1.0))
                observer.record()
            else:
                observer.record()
                node.kill()
                node.start()
                time.sleep(rng.uniform(0.05, 0.7))
            node.kill()
            node.start()
            node.wait_ready()
            observer.check(load, f"after kill {cycle + 1} ({moment}, seed {seed})")
            if load.failure is not None:
                raise load.failure

        observer.wait_for_new_block()
        exited, elapsed = node.terminate()
        assert exited, f"SIGTERM: node still running after {elapsed:.1f} s"
        assert node.returncode() == 0, node.log_tail()
        node.start()
        node.wait_ready()
        observer.check(load, f"after SIGTERM and restart (seed {seed})")
        observer.wait_for_new_block()
    finally:
        load.stop()
    observer.check(load, f"at the end (seed {seed})")
    transactions = check_chain_intact(post, observer, devnet["genesisHash"])
    assert load.failure is None
    assert load.refusals == [], load.refusals[:5]
    assert node.kills >= len(KILL_MOMENTS) >= 6
    assert transactions >= 20, f"only {transactions} transactions reached blocks"
    assert transactions <= load.accepted
    assert len(load.snapshot()) >= 10


async def test_sigterm_with_an_idle_websocket_client_stops_promptly(
    node: NodeProcess, ws_url: str
) -> None:
    """A connected, idle websocket client must not hold up a graceful stop."""
    await asyncio.to_thread(node.ensure_running)
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
        assert "result" in await ws.receive_json(timeout=10)
        exited, elapsed = await asyncio.to_thread(node.terminate)
    assert exited, (
        f"node still running {STOP_BOUND:.0f} s after SIGTERM while one idle websocket "
        "client was connected"
    )
    assert elapsed < STOP_BOUND
    assert node.returncode() in (None, 0)
