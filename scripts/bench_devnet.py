"""Benchmark a real 4-validator devnet: finalized tx/s, time to finality, where the time goes.

Starts a fresh devnet (4 validator processes and the observer the devnet
always adds) on free loopback ports in a temp dir, and always stops it at the
end, also on Ctrl-C or an error (``--keep`` leaves it running to read its
logs and ``/metrics``).

Before any timing, it signs ``--txs`` calls of ``Notary.record(key, value)``
to the Notary pre-deployed at genesis, each from its own fresh zero-balance
account (nonce 0, maxFeePerGas = maxPriorityFeePerGas = 0, gas 100,000).
It then offers them at ``--rate`` tx/s, open loop (a transaction is sent at
its time slot whether or not earlier ones were answered), one
``eth_sendRawTransaction`` per HTTP request (no JSON-RPC batches), round-robin
over the four validators' RPC URLs, from one asyncio client with aiohttp.

A transaction's time to finality is the arrival of the ``newHeads``
notification (a websocket subscription on the first validator) of the block
that holds it, minus the moment the client sent it. Each new block is fetched
(``eth_getBlockByNumber``, hashes only) to map its transactions to that
arrival time. Every node's ``/metrics`` is read before and after, and its
``polder_status`` shortly after each block, to split the time between
execution on the node's single chain thread and the rest (consensus
messages, waiting for the block period, queueing).

    python scripts/bench_devnet.py [--txs N] [--rate R | --rates 100,200,300]
                                   [--json FILE] [--keep]

With ``--rates`` every offered rate runs on the same devnet, one after the
other, ``--txs`` transactions each; one table row per rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from typing import Any

import aiohttp
from bench_chain import format_machine, get_machine
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey
from eth_typing import Address

from consensus.seal import decode_extra_data
from contracts.loader import load_artifact

REPO = pathlib.Path(__file__).resolve().parents[1]
VALIDATORS = 4
TARGET_FINALIZED_TPS = 200.0
"""Contract-call transactions per second that the devnet must finalize."""
TARGET_P95_SECONDS = 2.0
"""Time to finality that 95 % of those transactions must stay under."""
CALL_GAS = 100_000
CLIENT_CONNECTIONS = 64
"""Concurrent HTTP connections to each validator; more requests wait in the client."""
START_TIMEOUT = 120.0
PEERS_TIMEOUT = 60.0
DRAIN_TIMEOUT = 60.0
"""After the last submission, how long to wait for the remaining transactions."""
STATUS_DELAY = 0.25
"""Seconds after a block's arrival before reading each validator's ``polder_status``."""
OTHER_LOAD_WARNING = 0.2
"""Cores used by other processes above which the report warns that figures are skewed."""
P2P_PORT_OFFSET = 1000
"""As in node/devnet.py: a node's P2P port is its RPC port plus this."""

EXECUTION_TASKS = {
    "add": "admit a tx to the mempool (decode, recover sender, dry-run), from RPC or gossip",
    "build": "proposer: execute the pool into a block",
    "check": "non-proposers: execute the proposed block",
    "persist": "write the decided block (state from build/check) to LevelDB",
    "do_import": "import a gossiped or synced block (full re-execution)",
    "on_new_head": "re-run the pool's remaining txs on the new head",
}
CONSENSUS_TASKS = {
    "append": "write a consensus message to the WAL (own ones fsynced)",
    "may_sign": "signing guard: may this message be signed?",
    "record": "signing guard: remember what was signed (fsync)",
    "truncate_before": "drop WAL records of decided heights",
    "get_blocks_rlp": "serve block sync to a peer",
}

LOG_EVENTS = {
    "round timeouts": re.compile(r"timed out without a decision"),
    "proposals refused": re.compile(r"proposal for height \d+ round \d+ refused"),
    "txs dropped from a pool": re.compile(r"dropped tx 0x[0-9a-f]+ from the pool"),
    "p2p delivery queue full": re.compile(r"delivery queue of .* is full"),
    "p2p rate limit disconnects": re.compile(r"persistently: disconnected"),
    "block syncs": re.compile(r"syncing blocks"),
    "blocks refused": re.compile(r"refused a block from a peer"),
    "errors": re.compile(r"\b(ERROR|CRITICAL)\b|Traceback"),
}
DROP_REASON = re.compile(r"dropped tx 0x[0-9a-f]+ from the pool: (.*)")


# -- results -------------------------------------------------------------------


@dataclass(frozen=True)
class BlockSeen:
    """One committed block as the benchmark saw it."""

    number: int
    arrival: float
    """Monotonic time its ``newHeads`` notification reached the client."""
    tx_hashes: tuple[str, ...]
    round: int
    """The consensus round it was committed in (0 unless rounds changed)."""


@dataclass(frozen=True)
class NodeShare:
    """How one node spent the run, from its ``/metrics`` and ``/proc``."""

    name: str
    role: str
    chain_thread_busy: float
    """Share of wall time the single chain thread was running a task."""
    execution: float
    """Share of wall time spent on the tasks in ``EXECUTION_TASKS``."""
    consensus: float
    """Share of wall time spent on the tasks in ``CONSENSUS_TASKS``."""
    other: float
    """Share of wall time spent on RPC reads and anything else."""
    process_cpu: float | None
    """CPU seconds of the whole process (all threads) per wall second; None off Linux."""
    loop_cpu: float | None
    """CPU seconds of its main thread per wall second: the event loop (P2P frames, JSON-RPC,
    the QBFT state machine and its signature checks, logging)."""
    blocks_committed: int
    round_changes: int
    task_seconds: dict[str, float]


@dataclass(frozen=True)
class Result:
    """The figures of one offered rate."""

    offered_rate: float
    """Transactions per second the client was asked to offer."""
    sent_rate: float
    """Transactions per second the client actually sent (first to last submission)."""
    submitted: int
    accepted: int
    refused: int
    refusals: dict[str, int]
    """Refused submissions by kind (numbers and hashes blanked out)."""
    finalized: int
    not_finalized: int
    """Accepted but not in a block when the drain timeout ran out."""
    finalized_tps: float
    """Finalized transactions / (last commit - first submission)."""
    ttf_p50: float | None
    ttf_p95: float | None
    ttf_p99: float | None
    ttf_max: float | None
    submit_rpc_p50: float | None
    """Seconds from sending ``eth_sendRawTransaction`` to its answer (admission)."""
    submit_rpc_p95: float | None
    blocks: int
    """Blocks from the first to the last that held one of this run's transactions."""
    txs_per_block_mean: float
    txs_per_block_max: int
    blocks_after_round_0: int
    finality_latency_mean: float | None
    """Mean over blocks (and validators) of polder_finality_latency_seconds:
    start of the height to its commit."""
    block_interval_mean: float | None
    """Mean seconds between two commits on a validator."""
    build_per_block: float | None
    check_per_block: float | None
    persist_per_block: float | None
    refresh_per_block: float | None
    """Seconds of ``on_new_head`` per block on a validator: re-running the pool's remaining
    transactions after a commit, before newHeads goes out and the next height is scheduled."""
    wall_seconds: float
    client_cpu: float
    """The benchmark client's own CPU seconds per wall second (it shares the machine)."""
    machine_cpu: float | None
    """CPU cores the whole machine kept busy (from /proc/stat); None off Linux."""
    other_cpu: float | None
    """Cores busy with neither the devnet nor the client: other load skews the figures."""
    devnet_cpu_ms_per_tx: float | None = None
    """CPU milliseconds all node processes spent per finalized transaction."""
    task_ms_per_tx: dict[str, float] = field(default_factory=dict)
    """Chain-thread milliseconds per finalized transaction by task, summed over all nodes."""
    nodes: list[NodeShare] = field(default_factory=list)
    log_events: dict[str, int] = field(default_factory=dict)
    per_block: list[dict[str, Any]] = field(default_factory=list)
    """Number, transactions, commit round and mean finality latency of each block."""

    @property
    def meets_target(self) -> bool:
        return (
            self.finalized_tps >= TARGET_FINALIZED_TPS
            and self.ttf_p95 is not None
            and self.ttf_p95 <= TARGET_P95_SECONDS
            and self.not_finalized == 0
        )


# -- the devnet ------------------------------------------------------------------


def is_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def find_base_port(nodes: int) -> int:
    """A base port P with P..P+nodes-1 (RPC) and the same plus 1000 (P2P) all free."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + nodes + P2P_PORT_OFFSET >= 65536:
            continue
        ports = [base + i + off for i in range(nodes) for off in (0, P2P_PORT_OFFSET)]
        if all(is_port_free(p) for p in ports):
            return base
    raise SystemExit("found no free range of loopback ports for the devnet")


def start_devnet(
    directory: pathlib.Path, base_port: int, validators: int = VALIDATORS
) -> dict[str, Any]:
    """``python -m node devnet start`` and return its ``devnet.json``."""
    command = [
        sys.executable,
        "-m",
        "node",
        "devnet",
        "start",
        "--validators",
        str(validators),
        "--dir",
        str(directory),
        "--base-port",
        str(base_port),
        "--template",
        str(REPO / "genesis.json"),
    ]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=START_TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"devnet start failed ({done.returncode}):\n{done.stderr[-3000:]}")
    manifest: dict[str, Any] = json.loads((directory / "devnet.json").read_text())
    return manifest


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_devnet(directory: pathlib.Path) -> None:
    """Stop the devnet's nodes (gracefully, then SIGKILL their process groups)."""
    manifest_path = directory / "devnet.json"
    if not manifest_path.exists():
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(
            [sys.executable, "-m", "node", "devnet", "stop", "--dir", str(directory)],
            cwd=REPO,
            capture_output=True,
            timeout=40,
            check=False,
        )
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["nodes"]:
        pid = int(entry.get("pid") or 0)
        if pid > 0 and is_alive(pid):
            # each node leads its own session and process group (start_new_session)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running_devnet(
    keep: bool, validators: int = VALIDATORS, prefix: str = "polder-bench-devnet-"
) -> Iterator[tuple[pathlib.Path, dict[str, Any]]]:
    """A fresh devnet in a temp dir, stopped (and the dir removed) on the way out."""
    directory = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    try:
        print(f"starting a {validators}-validator devnet in {directory} ...", file=sys.stderr)
        yield directory, start_devnet(directory, find_base_port(validators + 1), validators)
    finally:
        if keep:
            print(
                f"devnet left running in {directory}; stop it with\n"
                f"  .venv/bin/polder devnet stop --dir {directory}",
                file=sys.stderr,
            )
        else:
            print("stopping the devnet ...", file=sys.stderr)
            stop_devnet(directory)
            shutil.rmtree(directory, ignore_errors=True)


# -- transactions --------------------------------------------------------------


def compute_record_selector() -> bytes:
    """The 4-byte selector of ``record`` from the Notary's ABI."""
    abi = load_artifact("Notary").abi
    entry = next(e for e in abi if e.get("type") == "function" and e.get("name") == "record")
    types = ",".join(i["type"] for i in entry["inputs"])
    return keccak(f"record({types})".encode())[:4]


def sign_record_calls(
    chain_id: int, notary: bytes, count: int, salt: bytes
) -> list[tuple[str, str]]:
    """``count`` signed ``record`` calls, each from a fresh account; (raw hex, tx hash hex)."""
    selector = compute_record_selector()
    signed = []
    for index in range(count):
        key = keccak(salt + b"sender %d" % index)
        record_key = keccak(salt + b"key %d" % index)
        data = selector + record_key + keccak(record_key)
        unsigned = PragueTransactionBuilder.new_unsigned_dynamic_fee_transaction(
            chain_id, 0, 0, 0, CALL_GAS, Address(notary), 0, data, ()
        )
        transaction = unsigned.as_signed_transaction(PrivateKey(key))
        signed.append(("0x" + transaction.encode().hex(), "0x" + transaction.hash.hex()))
    return signed


# -- talking to nodes --------------------------------------------------------------


async def call_rpc(session: aiohttp.ClientSession, url: str, method: str, params: list[Any]) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    async with session.post(url, json=body) as response:
        reply = await response.json(content_type=None)
    if "error" in reply:
        raise RuntimeError(f"{method} on {url}: {reply['error']}")
    return reply["result"]


async def read_metrics(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """``/metrics`` as {name or name{labels}: value}."""
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def read_stat_cpu(path: str) -> float:
    """User + system CPU seconds from a /proc ``stat`` file."""
    fields = pathlib.Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_process_cpu(pid: int) -> tuple[float, float] | None:
    """CPU seconds of ``pid``: all its threads, and its main thread; None if unreadable."""
    try:
        return read_stat_cpu(f"/proc/{pid}/stat"), read_stat_cpu(f"/proc/{pid}/task/{pid}/stat")
    except (OSError, IndexError, ValueError):
        return None


def read_machine_busy() -> float | None:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    try:
        ticks = [
            int(x) for x in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        ]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def compute_refusal_kind(error: Any) -> str:
    """Blank out what varies (hashes, numbers) so refusals group by kind."""
    is_rpc_error = isinstance(error, dict)
    text = f"{error.get('code')}: {error.get('message')}" if is_rpc_error else str(error)
    text = re.sub(r"0x[0-9a-fA-F]+", "0x…", text)
    return re.sub(r"\d+", "N", text)[:120]


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * fraction // 1))
    return sorted_values[int(rank) - 1]


class CommitTracker:
    """Follows new heads on one validator; knows when each transaction was committed."""

    def __init__(self, session: aiohttp.ClientSession, manifest: dict[str, Any]) -> None:
        self.session = session
        validators = [n for n in manifest["nodes"] if n["role"] == "validator"]
        self.ws_url = validators[0]["ws"]
        self.rpc_url = validators[0]["rpc"]
        self.validator_urls = [n["rpc"] for n in validators]
        self.commit_at: dict[str, float] = {}
        self.blocks: list[BlockSeen] = []
        self.latency: dict[int, list[tuple[float, float]]] = {}
        """Block number -> (finalityLatencySeconds, blockIntervalSeconds) per validator."""
        self.last_commit_time: dict[str, float] = {}
        """Validator URL -> lastCommitTime of its last sample (a repeat means a stale reading)."""
        self.last_number: int | None = None
        self.progress = asyncio.Event()
        self.heads: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self.follow_heads(), name="heads"),
            asyncio.create_task(self.fetch_blocks(), name="blocks"),
        ]
        await asyncio.wait_for(self.subscribed.wait(), 30)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def follow_heads(self) -> None:
        # Triggered by each newHeads notification: note its arrival time first.
        async with self.session.ws_connect(self.ws_url, heartbeat=30) as ws:
            await ws.send_json(
                {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
            )
            async for message in ws:
                arrival = time.monotonic()
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                payload = json.loads(message.data)
                if payload.get("id") == 1:
                    self.subscribed.set()
                elif payload.get("method") == "eth_subscription":
                    number = int(payload["params"]["result"]["number"], 16)
                    self.heads.put_nowait((number, arrival))

    async def fetch_blocks(self) -> None:
        while True:
            number, arrival = await self.heads.get()
            first = number if self.last_number is None else self.last_number + 1
            # a head skipped by the subscription gets the arrival of the next one (an upper bound)
            for n in range(first, number + 1):
                block = await call_rpc(
                    self.session, self.rpc_url, "eth_getBlockByNumber", [hex(n), False]
                )
                hashes = tuple(block["transactions"])
                extra = decode_extra_data(bytes.fromhex(block["extraData"][2:]))
                self.blocks.append(BlockSeen(n, arrival, hashes, extra.round))
                for tx_hash in hashes:
                    self.commit_at[tx_hash] = arrival
                self.tasks.append(asyncio.create_task(self.read_latencies(n)))
            self.last_number = max(number, self.last_number or 0)
            self.progress.set()

    async def read_latencies(self, number: int) -> None:
        """Each validator's finality latency of block ``number``, once it has committed it."""
        await asyncio.sleep(STATUS_DELAY)
        samples = []
        for url in self.validator_urls:
            try:
                status = await call_rpc(self.session, url, "polder_status", [])
            except (aiohttp.ClientError, RuntimeError, TimeoutError):
                continue
            # the height moves on persist, the latency a moment later: skip a reading from between
            fresh = status["lastCommitTime"] != self.last_commit_time.get(url)
            if status["height"] == number and fresh:
                self.last_commit_time[url] = status["lastCommitTime"]
                samples.append((status["finalityLatencySeconds"], status["blockIntervalSeconds"]))
        self.latency[number] = samples

    async def wait_for(self, tx_hashes: Sequence[str], timeout: float) -> None:
        """Return once every hash is committed, or after ``timeout`` s without a new one."""
        while True:
            for task in self.tasks[:2]:
                if task.done():
                    # the subscription or the block fetcher failed: say why
                    task.result()
                    raise RuntimeError(f"the {task.get_name()} task of the benchmark ended")
            missing = sum(h not in self.commit_at for h in tx_hashes)
            if missing == 0:
                return
            self.progress.clear()
            before = len(self.commit_at)
            try:
                await asyncio.wait_for(self.progress.wait(), timeout)
            except TimeoutError:
                if len(self.commit_at) == before:
                    return


# -- one offered rate ------------------------------------------------------------


@dataclass
class Submission:
    """One transaction's life as the client saw it."""

    tx_hash: str
    sent_at: float = 0.0
    answered_at: float = 0.0
    error: str | None = None


async def submit(
    session: aiohttp.ClientSession, url: str, raw: str, entry: Submission, request_id: int
) -> None:
    body = {"jsonrpc": "2.0", "id": request_id, "method": "eth_sendRawTransaction", "params": [raw]}
    entry.sent_at = time.monotonic()
    try:
        async with session.post(url, json=body) as response:
            reply = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        entry.error = compute_refusal_kind(f"client: {type(exc).__name__}: {exc}")
    else:
        if "error" in reply:
            entry.error = compute_refusal_kind(reply["error"])
        elif reply.get("result") != entry.tx_hash:
            entry.error = f"unexpected result {reply.get('result')!r}"
    entry.answered_at = time.monotonic()


async def offer_load(
    session: aiohttp.ClientSession,
    urls: Sequence[str],
    signed: Sequence[tuple[str, str]],
    rate: float,
) -> list[Submission]:
    """Send each transaction at its slot (open loop), round-robin over ``urls``."""
    entries = [Submission(tx_hash) for _, tx_hash in signed]
    tasks = []
    began = time.monotonic()
    for index, (raw, _) in enumerate(signed):
        delay = began + index / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        url = urls[index % len(urls)]
        tasks.append(asyncio.create_task(submit(session, url, raw, entries[index], index)))
    await asyncio.gather(*tasks)
    return entries


def compute_node_share(
    entry: dict[str, Any],
    before: dict[str, float],
    after: dict[str, float],
    cpu: tuple[tuple[float, float] | None, tuple[float, float] | None],
    wall: float,
) -> NodeShare:
    prefix = 'polder_executor_seconds_total{task="'
    tasks = {
        name[len(prefix) : -2]: after[name] - before.get(name, 0.0)
        for name in after
        if name.startswith(prefix)
    }
    tasks = {k: v for k, v in sorted(tasks.items(), key=lambda kv: -kv[1]) if v > 0}
    execution = sum(v for k, v in tasks.items() if k in EXECUTION_TASKS)
    consensus = sum(v for k, v in tasks.items() if k in CONSENSUS_TASKS)
    busy = sum(tasks.values())
    cpu_before, cpu_after = cpu
    process_cpu = loop_cpu = None
    if cpu_before is not None and cpu_after is not None:
        process_cpu = (cpu_after[0] - cpu_before[0]) / wall
        loop_cpu = (cpu_after[1] - cpu_before[1]) / wall

    def delta(name: str) -> int:
        return round(after.get(name, 0.0) - before.get(name, 0.0))

    return NodeShare(
        name=entry["name"],
        role=entry["role"],
        chain_thread_busy=busy / wall,
        execution=execution / wall,
        consensus=consensus / wall,
        other=(busy - execution - consensus) / wall,
        process_cpu=process_cpu,
        loop_cpu=loop_cpu,
        blocks_committed=delta("polder_blocks_committed_total"),
        round_changes=delta("polder_round_changes_total"),
        task_seconds=tasks,
    )


def get_log_sizes(manifest: dict[str, Any]) -> dict[str, int]:
    return {n["log"]: pathlib.Path(n["log"]).stat().st_size for n in manifest["nodes"]}


def count_log_events(sizes: dict[str, int]) -> dict[str, int]:
    """Count notable log lines written since ``sizes`` were taken, over all nodes."""
    counts: Counter[str] = Counter()
    for path, offset in sizes.items():
        with open(path, "rb") as log_file:
            log_file.seek(offset)
            text = log_file.read().decode("utf-8", errors="replace")
        for line in text.splitlines():
            for kind, pattern in LOG_EVENTS.items():
                if pattern.search(line):
                    counts[kind] += 1
            reason = DROP_REASON.search(line)
            if reason:
                counts["  dropped: " + compute_refusal_kind(reason.group(1))] += 1
    return dict(counts)


@dataclass(frozen=True)
class Snapshot:
    """Counters read at the start or the end of one rate's run."""

    at: float
    metrics: list[dict[str, float]]
    """Each node's /metrics, in manifest order."""
    node_cpu: list[tuple[float, float] | None]
    """Each node's CPU seconds: whole process, main thread."""
    client_cpu: float
    machine_busy: float | None


async def take_snapshot(session: aiohttp.ClientSession, manifest: dict[str, Any]) -> Snapshot:
    metrics = await asyncio.gather(*(read_metrics(session, n["rpc"]) for n in manifest["nodes"]))
    return Snapshot(
        at=time.monotonic(),
        metrics=list(metrics),
        node_cpu=[read_process_cpu(int(n["pid"])) for n in manifest["nodes"]],
        client_cpu=time.process_time(),
        machine_busy=read_machine_busy(),
    )


async def run_rate(
    session: aiohttp.ClientSession,
    manifest: dict[str, Any],
    tracker: CommitTracker,
    signed: Sequence[tuple[str, str]],
    rate: float,
) -> tuple[Result, list[Submission]]:
    """Offer ``signed`` at ``rate`` and measure what the devnet made of it.

    Also returns each transaction's submission (send time, answer), for
    callers that look further than the summary (bench_budget's receipts).
    """
    urls = [n["rpc"] for n in manifest["nodes"] if n["role"] == "validator"]
    log_sizes = get_log_sizes(manifest)
    before = await take_snapshot(session, manifest)
    entries = await offer_load(session, urls, signed, rate)
    accepted = [e for e in entries if e.error is None]
    await tracker.wait_for([e.tx_hash for e in accepted], DRAIN_TIMEOUT)
    await asyncio.sleep(STATUS_DELAY + 0.2)  # let the last latency reads land
    after = await take_snapshot(session, manifest)
    wall = after.at - before.at
    nodes = [
        compute_node_share(node, b, a, (cb, ca), wall)
        for node, b, a, cb, ca in zip(
            manifest["nodes"],
            before.metrics,
            after.metrics,
            before.node_cpu,
            after.node_cpu,
            strict=True,
        )
    ]
    client_cpu = (after.client_cpu - before.client_cpu) / wall
    machine_cpu = (
        (after.machine_busy - before.machine_busy) / wall
        if after.machine_busy is not None and before.machine_busy is not None
        else None
    )
    other_cpu = (
        machine_cpu - client_cpu - sum(n.process_cpu or 0.0 for n in nodes)
        if machine_cpu is not None
        else None
    )
    result = summarize(rate, entries, tracker, nodes, wall, client_cpu)
    finalized = max(result.finalized, 1)
    task_seconds: Counter[str] = Counter()
    for node in nodes:
        task_seconds.update(node.task_seconds)
    measured = replace(
        result,
        machine_cpu=machine_cpu,
        other_cpu=other_cpu,
        devnet_cpu_ms_per_tx=(
            sum(n.process_cpu for n in nodes if n.process_cpu is not None) * wall * 1000 / finalized
            if all(n.process_cpu is not None for n in nodes)
            else None
        ),
        task_ms_per_tx={k: v * 1000 / finalized for k, v in task_seconds.most_common()},
        log_events=count_log_events(log_sizes),
    )
    return measured, entries


def summarize(
    rate: float,
    entries: Sequence[Submission],
    tracker: CommitTracker,
    nodes: list[NodeShare],
    wall: float,
    client_cpu: float,
) -> Result:
    accepted = [e for e in entries if e.error is None]
    finalized = [e for e in accepted if e.tx_hash in tracker.commit_at]
    ttf = sorted(tracker.commit_at[e.tx_hash] - e.sent_at for e in finalized)
    rpc = sorted(e.answered_at - e.sent_at for e in entries)
    first_sent = min(e.sent_at for e in entries)
    last_sent = max(e.sent_at for e in entries)
    ours = {e.tx_hash for e in entries}
    numbers = [b.number for b in tracker.blocks if ours.intersection(b.tx_hashes)]
    blocks = [b for b in tracker.blocks if numbers and min(numbers) <= b.number <= max(numbers)]
    sizes = [len(b.tx_hashes) for b in blocks]
    last_commit = max((tracker.commit_at[e.tx_hash] for e in finalized), default=first_sent)
    samples = [s for b in blocks for s in tracker.latency.get(b.number, [])]
    validators = [n for n in nodes if n.role == "validator"]
    committed = max((n.blocks_committed for n in validators), default=0)

    def per_block(task: str, doers: int) -> float | None:
        total = sum(n.task_seconds.get(task, 0.0) for n in validators)
        return total / (committed * doers) if committed else None

    return Result(
        offered_rate=rate,
        sent_rate=(len(entries) - 1) / (last_sent - first_sent) if last_sent > first_sent else 0,
        submitted=len(entries),
        accepted=len(accepted),
        refused=len(entries) - len(accepted),
        refusals=dict(Counter(e.error for e in entries if e.error is not None).most_common()),
        finalized=len(finalized),
        not_finalized=len(accepted) - len(finalized),
        finalized_tps=len(finalized) / (last_commit - first_sent) if finalized else 0.0,
        ttf_p50=percentile(ttf, 0.50),
        ttf_p95=percentile(ttf, 0.95),
        ttf_p99=percentile(ttf, 0.99),
        ttf_max=ttf[-1] if ttf else None,
        submit_rpc_p50=percentile(rpc, 0.50),
        submit_rpc_p95=percentile(rpc, 0.95),
        blocks=len(blocks),
        txs_per_block_mean=statistics.fmean(sizes) if sizes else 0.0,
        txs_per_block_max=max(sizes, default=0),
        blocks_after_round_0=sum(b.round > 0 for b in blocks),
        finality_latency_mean=statistics.fmean(s[0] for s in samples) if samples else None,
        block_interval_mean=statistics.fmean(s[1] for s in samples) if samples else None,
        # one proposer builds, the other validators check, every validator persists
        build_per_block=per_block("build", 1),
        check_per_block=per_block("check", VALIDATORS - 1),
        persist_per_block=per_block("persist", VALIDATORS),
        refresh_per_block=per_block("on_new_head", VALIDATORS),
        wall_seconds=wall,
        client_cpu=client_cpu,
        machine_cpu=None,
        other_cpu=None,
        nodes=nodes,
        per_block=[
            {
                "number": b.number,
                "txs": len(b.tx_hashes),
                "round": b.round,
                "finality_latency": statistics.fmean(s[0] for s in samples_of)
                if (samples_of := tracker.latency.get(b.number))
                else None,
            }
            for b in blocks
        ],
    )


# -- the run ------------------------------------------------------------------


async def wait_until_ready(session: aiohttp.ClientSession, manifest: dict[str, Any]) -> None:
    """Wait until every validator has all its peers and has committed a first block.

    The first height starts at boot, before the peers are connected, so it may
    need a round change; that belongs to start-up, not to the benchmark.
    """
    deadline = time.monotonic() + PEERS_TIMEOUT
    wanted = len(manifest["nodes"]) - 1
    while time.monotonic() < deadline:
        statuses = await asyncio.gather(
            *(
                call_rpc(session, n["rpc"], "polder_status", [])
                for n in manifest["nodes"]
                if n["role"] == "validator"
            )
        )
        if all(len(s["peers"]) >= wanted and s["height"] >= 1 for s in statuses):
            return
        await asyncio.sleep(0.5)
    raise SystemExit(
        f"validators did not connect to all {wanted} peers and commit block 1 "
        f"within {PEERS_TIMEOUT:.0f} s"
    )


async def run_benchmark(manifest: dict[str, Any], rates: Sequence[float], txs: int) -> list[Result]:
    chain_id = int(manifest["chainId"])
    notary = bytes.fromhex(manifest["contracts"]["Notary"][2:])
    salt = os.urandom(8)
    print(f"signing {txs * len(rates)} Notary.record calls ...", file=sys.stderr)
    signed = [
        sign_record_calls(chain_id, notary, txs, salt + b"rate %d " % i) for i in range(len(rates))
    ]
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=CLIENT_CONNECTIONS)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await wait_until_ready(session, manifest)
        tracker = CommitTracker(session, manifest)
        await tracker.start()
        results = []
        try:
            for rate, batch in zip(rates, signed, strict=True):
                print(f"offering {txs} txs at {rate:g} tx/s ...", file=sys.stderr, flush=True)
                result, _ = await run_rate(session, manifest, tracker, batch, rate)
                print(format_details(result), flush=True)
                results.append(result)
                await asyncio.sleep(2.0)  # let the pools empty before the next rate
        finally:
            await tracker.stop()
    return results


# -- the report ------------------------------------------------------------------


def format_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_cores(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_details(r: Result) -> str:
    lines = [
        "",
        f"== offered {r.offered_rate:g} tx/s (sent {r.sent_rate:.0f} tx/s): "
        f"{r.submitted} submitted, {r.accepted} accepted, {r.refused} refused, "
        f"{r.finalized} finalized, {r.not_finalized} not finalized after the drain",
        f"finalized {r.finalized_tps:.0f} tx/s  (finalized txs / (last commit - first submit))",
        f"time to finality p50 {format_seconds(r.ttf_p50)} s, p95 {format_seconds(r.ttf_p95)} s, "
        f"p99 {format_seconds(r.ttf_p99)} s, max {format_seconds(r.ttf_max)} s  "
        "(newHeads arrival of the tx's block - moment the client sent it)",
        f"eth_sendRawTransaction answered in p50 {format_seconds(r.submit_rpc_p50)} s, "
        f"p95 {format_seconds(r.submit_rpc_p95)} s  (admission waits for the chain thread)",
        f"{r.blocks} blocks, {r.txs_per_block_mean:.0f} txs/block on average "
        f"(max {r.txs_per_block_max}), {r.blocks_after_round_0} committed after round 0",
    ]
    if r.refusals:
        lines.append("refused submissions by kind:")
        lines += [f"  {count:6} {kind}" for kind, count in r.refusals.items()]
    lines += [
        "",
        "per committed block (means over blocks; latency and interval from each validator's "
        "polder_status just after the block;",
        " build and check are chain-thread seconds summed over all rounds of the height, "
        "timed-out rounds included):",
        f"  block interval          {format_seconds(r.block_interval_mean)} s  "
        "(one commit to the next on a validator)",
        f"    finality latency      {format_seconds(r.finality_latency_mean)} s  "
        "(polder_finality_latency_seconds: height started -> block persisted)",
        f"      build (proposer)    {format_seconds(r.build_per_block)} s  "
        "(execute the pool into a block)",
        f"      check (others)      {format_seconds(r.check_per_block)} s  "
        "(re-execute the proposal, each non-proposer)",
        f"      persist (each)      {format_seconds(r.persist_per_block)} s  "
        "(write the decided block)",
    ]
    parts = (r.build_per_block, r.check_per_block, r.persist_per_block)
    if r.finality_latency_mean is not None and all(x is not None for x in parts):
        rest = r.finality_latency_mean - sum(x or 0.0 for x in parts)
        lines.append(
            f"      the rest            {rest:.2f} s  (consensus messages and WAL fsyncs, "
            "chain-thread queueing behind admissions, round timeouts)"
        )
    lines.append(
        f"    pool refresh          {format_seconds(r.refresh_per_block)} s  "
        "(on_new_head: re-run the pool's remaining txs; newHeads and the next height wait for it)"
    )
    if None not in (r.block_interval_mean, r.finality_latency_mean, r.refresh_per_block):
        wait = (
            (r.block_interval_mean or 0.0)
            - (r.finality_latency_mean or 0.0)
            - (r.refresh_per_block or 0.0)
        )
        lines.append(
            f"    block period and rest {wait:.2f} s  (the genesis blockPeriodSeconds before the "
            "next height starts, plus queueing)"
        )
    lines += [
        "",
        f"where each node's time went over {r.wall_seconds:.0f} s of wall time "
        "(share of wall time; chain thread = the one executor thread, from "
        "polder_executor_seconds_total):",
        f"  {'node':<12} {'process CPU':>11} {'loop CPU':>8} {'chain thread':>12} "
        f"{'execution':>9} {'consensus':>9} {'rpc etc':>7} {'blocks':>6} {'round chg':>9}  "
        "top tasks (s)",
    ]
    for n in r.nodes:
        cpu = "-" if n.process_cpu is None else f"{n.process_cpu:.0%}"
        loop = "-" if n.loop_cpu is None else f"{n.loop_cpu:.0%}"
        top = ", ".join(f"{k} {v:.1f}" for k, v in list(n.task_seconds.items())[:5])
        lines.append(
            f"  {n.name:<12} {cpu:>11} {loop:>8} {n.chain_thread_busy:>12.0%} "
            f"{n.execution:>9.0%} "
            f"{n.consensus:>9.0%} {n.other:>7.0%} {n.blocks_committed:>6} "
            f"{n.round_changes:>9}  {top}"
        )
    total_cpu = sum(n.process_cpu or 0.0 for n in r.nodes)
    lines += [
        f"  all nodes use {total_cpu:.2f} CPU cores, the client {r.client_cpu:.2f}, other "
        f"processes {format_cores(r.other_cpu)}; the machine has {os.cpu_count()} and kept "
        f"{format_cores(r.machine_cpu)} busy",
        "  (process CPU = all threads; loop CPU = the main thread: event loop with P2P, "
        "JSON-RPC, the QBFT machine, logging;",
        "   chain thread = wall time inside its tasks, including waits for a CPU or the GIL, "
        "so it can exceed process CPU)",
    ]
    if r.devnet_cpu_ms_per_tx is not None:
        cores = os.cpu_count() or 1
        lines.append(
            f"  per finalized tx the {len(r.nodes)} nodes spent {r.devnet_cpu_ms_per_tx:.1f} ms "
            f"of CPU: {cores} cores cap this devnet at ~{cores * 1000 / r.devnet_cpu_ms_per_tx:.0f}"
            " tx/s on this machine"
        )
    top = ", ".join(f"{k} {v:.1f}" for k, v in list(r.task_ms_per_tx.items())[:8])
    lines += [
        f"  chain-thread ms per finalized tx, all nodes together: {top}",
        "  execution tasks: " + "; ".join(f"{k} = {v}" for k, v in EXECUTION_TASKS.items()),
        "  consensus tasks: " + "; ".join(f"{k} = {v}" for k, v in CONSENSUS_TASKS.items()),
        "  rpc etc: RPC reads on the chain thread (status, blocks, metrics)",
    ]
    if r.other_cpu is not None and r.other_cpu > OTHER_LOAD_WARNING:
        lines.append(
            f"  WARNING: other processes kept {r.other_cpu:.2f} cores busy during this run; "
            "the devnet did not have the machine to itself"
        )
    if r.log_events:
        lines.append("node log lines during the run (all nodes):")
        lines += [f"  {count:6} {kind}" for kind, count in r.log_events.items()]
    return "\n".join(lines)


def format_table(machine: dict[str, Any], results: Sequence[Result]) -> str:
    lines = [
        format_machine(machine),
        f"software: py-evm {machine['py-evm']}, coincurve {machine['coincurve']}, "
        f"plyvel {machine['plyvel']}, aiohttp {machine['aiohttp']}; "
        f"{VALIDATORS} validators + 1 observer on one machine; Notary.record calls, "
        "one fresh account each, one eth_sendRawTransaction per request",
        "",
        f"{'offered':>7} {'sent':>5} {'final tx/s':>10} {'p50 s':>6} {'p95 s':>6} {'p99 s':>6} "
        f"{'blocks':>6} {'tx/blk':>6} {'refused':>7} {'unfin':>5} {'fin lat s':>9} "
        f"{'exec':>5} {'cons':>5} {'loop':>5} {'other':>5} {'target':>6}",
    ]
    for r in results:
        validators = [n for n in r.nodes if n.role == "validator"]
        execution = statistics.fmean(n.execution for n in validators) if validators else 0.0
        consensus = statistics.fmean(n.consensus for n in validators) if validators else 0.0
        loops = [n.loop_cpu for n in validators if n.loop_cpu is not None]
        loop = f"{statistics.fmean(loops):.0%}" if loops else "-"
        lines.append(
            f"{r.offered_rate:>7g} {r.sent_rate:>5.0f} {r.finalized_tps:>10.0f} "
            f"{format_seconds(r.ttf_p50):>6} {format_seconds(r.ttf_p95):>6} "
            f"{format_seconds(r.ttf_p99):>6} {r.blocks:>6} {r.txs_per_block_mean:>6.0f} "
            f"{r.refused:>7} {r.not_finalized:>5} {format_seconds(r.finality_latency_mean):>9} "
            f"{execution:>5.0%} {consensus:>5.0%} {loop:>5} {format_cores(r.other_cpu):>5} "
            f"{'meets' if r.meets_target else 'MISSES':>6}"
        )
    lines += [
        "",
        "offered/sent = tx/s asked for / actually sent; final tx/s = finalized txs / (last "
        "commit - first submit);",
        "p50/p95/p99 = time to finality (block's newHeads arrival - submission); unfin = "
        "accepted but not finalized;",
        "fin lat = mean polder_finality_latency_seconds (height start -> commit); exec/cons = "
        "share of wall time a validator's",
        "chain thread spent executing (admission, build, check, persist, pool refresh) / on "
        "WAL and signing guard (mean of validators); loop = a validator's main-thread CPU "
        "(event loop: P2P, RPC, QBFT machine);",
        "other = CPU cores used by processes outside the devnet and the client (should be ~0).",
        f"target: >= {TARGET_FINALIZED_TPS:.0f} contract-call tx/s finalized with p95 time to "
        f"finality <= {TARGET_P95_SECONDS:.0f} s",
    ]
    for r in results:
        verdict = "meets" if r.meets_target else "MISSES"
        lines.append(
            f"  offered {r.offered_rate:>5g} tx/s: {r.finalized_tps:4.0f} tx/s finalized "
            f"({r.finalized_tps / TARGET_FINALIZED_TPS:.0%} of the target), p95 "
            f"{format_seconds(r.ttf_p95)} s: {verdict} the target"
        )
    return "\n".join(lines)


def parse_rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"rates must be numbers, got {text!r}") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def on_sigterm(signum: int, frame: Any) -> None:
    del signum, frame
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--txs", type=int, default=3000, help="transactions per rate (3000)")
    parser.add_argument("--rate", type=float, default=250.0, help="offered tx/s (default 250)")
    parser.add_argument(
        "--rates", type=parse_rates, help="several offered rates, comma-separated, one by one"
    )
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures to this file")
    parser.add_argument(
        "--keep", action="store_true", help="leave the devnet running for inspection"
    )
    args = parser.parse_args(argv)
    if args.txs < 2:
        parser.error("--txs must be at least 2")
    if args.rate <= 0:
        parser.error("--rate must be positive")
    rates = args.rates or [args.rate]

    # a shell starts background jobs with SIGINT ignored: Ctrl-C or kill -INT must still clean up
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_sigterm)
    started = time.perf_counter()
    machine = get_machine() | {"aiohttp": metadata.version("aiohttp")}
    try:
        with running_devnet(args.keep) as (directory, manifest):
            results = asyncio.run(run_benchmark(manifest, rates, args.txs))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print()
    print(format_table(machine, results))
    print(f"\n(total run time {time.perf_counter() - started:.0f} s; devnet was {directory})")
    if args.json:
        figures = {
            "machine": machine,
            "validators": VALIDATORS,
            "txs_per_rate": args.txs,
            "target_finalized_tps": TARGET_FINALIZED_TPS,
            "target_p95_seconds": TARGET_P95_SECONDS,
            "results": [asdict(r) | {"meets_target": r.meets_target} for r in results],
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
