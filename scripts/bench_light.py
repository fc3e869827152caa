"""Benchmark the light client: the cost of verifying one receipt from a cold start.

For each chain length (default 1k, 10k and 100k blocks) a 4-validator chain
is built with the node's own code (``node.chain.Chain`` over LevelDB): empty
blocks sealed by 3 of the 4 validator keys (a quorum), and in the last block
one ``Notary.record(key, value)`` call from a fresh zero-balance account. Keys
and genesis are generated at run time into ``--workdir`` (never committed);
built chains are kept there and reused, and a longer chain is built by copying
the longest shorter one and extending it.

Two observer node processes (``python -m node node run``, each on its own copy
of the data directory, RPC and P2P on 127.0.0.1 only) then serve the chain.
Their genesis points the validators at unreachable addresses, so they neither
sync nor take part in consensus: the head stays at the chain's last block,
which is fine here, since verifying a transaction never checks head age.

Each measurement is a cold start: a fresh in-memory ``HeaderStore``, a
``LightClient`` over both nodes (``min_agree=2``), the checkpoint block 1
pinned by number and hash (with the genesis hash), then
``verify_receipt(receipt)`` for the transaction. CPU (``time.process_time``,
this process only: the nodes are other processes) and wall time cover the
verification alone; bytes are the JSON-RPC response bodies the providers read
(``HttpProvider.bytes_received``), for the pin and the verification apart, plus
the HTTP response headers measured once per node. The median of ``--repeats``
runs is reported.

Validator-set changes happen by governance votes (the ValidatorRegistry);
building 100k-block chains with many votes mined in would take hours, so the
cost per change is measured on a *simulated* chain (``--changes``): headers
forged with generated keys (each change rotates one validator out), formatted
by ``node.light.format_light_block`` and served in-process as the node's
``polder_*`` methods would (same JSON, same ``MAX_CHANGES`` paging), around
the real proof of the real transaction. Those rows have no HTTP cost. Real
changes on a devnet are verified by ``tests/integration/test_governance.py``.

    python scripts/bench_light.py [--lengths 1000,10000,100000] [--repeats 5]
                                  [--changes 0,1,4,16,64] [--workdir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import rlp
from bench_chain import format_machine, get_machine, release_closed_databases
from coincurve import PrivateKey
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey as EthPrivateKey

from clients.light import HeaderStore, HttpProvider, LightClient, Receipt, verify_receipt
from clients.light.errors import ProviderError
from clients.light.verify import NUMBER, TIMESTAMP
from consensus.errors import PolderError
from consensus.genesis import Genesis
from consensus.seal import (
    ExtraData,
    compute_quorum,
    compute_seal_digest,
    compute_validators_hash,
    replace_extra_data,
    sign_seal,
)
from node.chain import Chain, compute_genesis_hash
from node.config import load_genesis, load_json, load_private_key, save_private_key
from node.db import LevelDB
from node.devnet import MUNICIPALITIES, create_devnet_genesis
from node.evm import decode_header
from node.light import MAX_CHANGES, format_light_block
from node.service import address_of

REPO = pathlib.Path(__file__).resolve().parents[1]
VALIDATORS = 4
SEALERS = compute_quorum(VALIDATORS)
"""Seals on every built block: a quorum (3 of 4), not the whole set."""
CHECKPOINT = 1
"""The pinned trust root: block 1 (a checkpoint, not genesis)."""
TARGET_CPU_MS = 100.0
TARGET_BYTES = 20_000
"""20 KB, counted as 20,000 bytes (the stricter reading), HTTP headers included."""
CALL_GAS = 100_000
RECORD_SELECTOR = keccak(b"record(bytes32,bytes32)")[:4]
START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
PROGRESS_SECONDS = 10.0
UNREACHABLE = "127.0.0.1:1"
"""Where the genesis says the validators are: nothing listens on port 1, so the
observers never sync or follow consensus and only serve the chain on disk."""
OBSERVERS = ("observer-a", "observer-b")


# -- results -------------------------------------------------------------------


Call = tuple[str, str, int]
"""(provider, method, response bytes) of one JSON-RPC call."""


@dataclass(frozen=True)
class Sample:
    """One cold-start verification."""

    cpu_ms: float
    wall_ms: float
    bytes: int
    """Response bodies read during the verification."""
    calls: int
    trust_bytes: int
    """Response bodies read to pin the checkpoint (not part of the verification)."""
    trust_calls: int
    methods: tuple[Call, ...]
    """The verification's calls, by provider, in order."""


@dataclass(frozen=True)
class Result:
    """The figures of one chain (real) or one simulated change count."""

    length: int
    changes: int
    """Validator-set changes between the checkpoint and the transaction's block."""
    simulated: bool
    repeats: int
    cpu_ms: float
    """Median CPU of the verification (this process)."""
    cpu_ms_first: float
    """CPU of the row's first run (for the first row: this process's caches still cold)."""
    cpu_ms_max: float
    wall_ms: float
    bytes: int
    """Median response-body bytes of the verification."""
    wire_bytes: int
    """``bytes`` plus the HTTP response headers of each call."""
    calls: int
    trust_bytes: int
    trust_calls: int
    methods: tuple[Call, ...]
    """The calls of the last run."""
    error: str | None = None

    @property
    def meets_cpu(self) -> bool:
        return self.error is None and self.cpu_ms < TARGET_CPU_MS

    @property
    def meets_bytes(self) -> bool:
        return self.error is None and self.wire_bytes < TARGET_BYTES


@dataclass(frozen=True)
class Built:
    """A chain in the work directory."""

    length: int
    directory: pathlib.Path
    checkpoint_hash: bytes
    tx_hash: bytes
    tx_block_hash: bytes
    built_blocks: int = 0
    """Blocks built by this run (0: reused from an earlier run)."""
    build_seconds: float = 0.0
    copied_from: int = 0
    """Length of the cached chain this one was copied from (0: none)."""


@dataclass
class Network:
    """Genesis and keys of the benchmark chain, generated once per work directory."""

    genesis_path: pathlib.Path
    genesis: Genesis
    genesis_hash: bytes
    validator_keys: list[bytes]
    observer_keys: list[pathlib.Path]


# -- genesis and keys ------------------------------------------------------------


def prepare_network(workdir: pathlib.Path) -> Network:
    """Load the work directory's keys and genesis, generating them the first time."""
    keys_dir = workdir / "keys"
    genesis_path = workdir / "genesis.json"
    validator_files = [keys_dir / f"validator-{i + 1}.key" for i in range(VALIDATORS)]
    observer_files = [keys_dir / f"{name}.key" for name in OBSERVERS]
    if not genesis_path.exists() or not all(p.exists() for p in validator_files):
        shutil.rmtree(workdir / "chains", ignore_errors=True)  # built for other keys
        for path in validator_files:
            save_private_key(path, PrivateKey().secret)
        admin = address_of(PrivateKey().secret)
        members = [
            (MUNICIPALITIES[i], address_of(load_private_key(path)), 1)
            for i, path in enumerate(validator_files)
        ]
        template = load_json(REPO / "genesis.json", "genesis template")
        genesis = create_devnet_genesis(template, members, admin)
        for validator in genesis["validators"]:
            validator["p2p"] = f"ws://{UNREACHABLE}/p2p"
            validator["rpc"] = f"http://{UNREACHABLE}"
        genesis_path.write_text(json.dumps(genesis, indent=2) + "\n")
    for path in observer_files:
        if not path.exists():
            save_private_key(path, PrivateKey().secret)
    genesis = load_genesis(genesis_path)
    return Network(
        genesis_path=genesis_path,
        genesis=genesis,
        genesis_hash=bytes(compute_genesis_hash(genesis)),
        validator_keys=[load_private_key(path) for path in validator_files],
        observer_keys=observer_files,
    )


def sign_record_call(genesis: Genesis) -> bytes:
    """A raw ``Notary.record`` call from a fresh zero-balance account, as a voter sends it."""
    sender = PrivateKey().secret
    key = keccak(b"polder bench light " + sender)
    unsigned = PragueTransactionBuilder.new_unsigned_dynamic_fee_transaction(
        genesis.chain_id,
        0,
        0,
        0,
        CALL_GAS,
        genesis.contracts["Notary"],
        0,
        RECORD_SELECTOR + key + keccak(key),
        (),
    )
    raw: bytes = unsigned.as_signed_transaction(EthPrivateKey(sender)).encode()
    return raw


# -- building chains -------------------------------------------------------------


def chain_dir(workdir: pathlib.Path, length: int) -> pathlib.Path:
    return workdir / "chains" / str(length)


def load_built(directory: pathlib.Path, network: Network) -> Built | None:
    """The complete chain in ``directory``, if it is one of this genesis."""
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("genesisHash") != "0x" + network.genesis_hash.hex():
        return None
    return Built(
        length=int(meta["length"]),
        directory=directory,
        checkpoint_hash=bytes.fromhex(meta["checkpointHash"][2:]),
        tx_hash=bytes.fromhex(meta["txHash"][2:]),
        tx_block_hash=bytes.fromhex(meta["txBlockHash"][2:]),
    )


def find_base(workdir: pathlib.Path, network: Network, length: int) -> Built | None:
    """The longest complete cached chain shorter than ``length``."""
    found: list[Built] = []
    for directory in (workdir / "chains").glob("*"):
        built = load_built(directory, network)
        if built is not None and built.length < length:
            found.append(built)
    return max(found, key=lambda b: b.length, default=None)


def ensure_chain(workdir: pathlib.Path, network: Network, length: int) -> Built:
    """Return the cached chain of ``length`` blocks, building (or extending) it if needed."""
    directory = chain_dir(workdir, length)
    cached = load_built(directory, network)
    if cached is not None and cached.length == length:
        print(f"chain {length:,}: reusing {directory}", file=sys.stderr)
        return cached
    copied_from = 0
    if not (directory / "chain").exists():
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        source = find_base(workdir, network, length)
        if source is not None:
            print(
                f"chain {length:,}: copying the cached {source.length:,}-block chain",
                file=sys.stderr,
            )
            shutil.copytree(source.directory / "chain", directory / "chain")
            copied_from = source.length
    started = time.perf_counter()
    try:
        built_blocks = extend_chain(directory / "chain", network, length)
    except PolderError as exc:
        raise SystemExit(f"{directory}: {exc.message}; remove it to build it again") from exc
    seconds = time.perf_counter() - started
    release_closed_databases()
    with LevelDB(directory / "chain") as db:
        chain = Chain(db, network.genesis)
        checkpoint = chain.get_header_by_number(CHECKPOINT)
        last = chain.get_header_by_number(length)
        [transaction] = chain.get_block(last).transactions
        meta = {
            "length": length,
            "genesisHash": "0x" + network.genesis_hash.hex(),
            "checkpointHash": "0x" + checkpoint.hash.hex(),
            "txHash": "0x" + transaction.hash.hex(),
            "txBlockHash": "0x" + last.hash.hex(),
        }
    release_closed_databases()
    (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    built = load_built(directory, network)
    if built is None:
        raise SystemExit(f"{directory}/meta.json was not written")
    if built_blocks:
        print(
            f"chain {length:,}: built {built_blocks:,} blocks in {seconds:.0f} s"
            f" ({built_blocks / seconds:.0f} blocks/s)",
            file=sys.stderr,
        )
    return replace(built, built_blocks=built_blocks, build_seconds=seconds, copied_from=copied_from)


def extend_chain(path: pathlib.Path, network: Network, length: int) -> int:
    """Build empty blocks up to ``length - 1`` and the transaction's block ``length``.

    Resumes where an interrupted build stopped: every block is one atomic
    batch, so the head is always a whole block. Writes skip fsync (the chain
    is a scratch fixture; a crash loses at most the last blocks, not the DB's
    consistency). Returns the number of blocks built.
    """
    sealers = network.validator_keys[:SEALERS]
    coinbase = address_of(network.validator_keys[0])
    with LevelDB(path, sync=False) as db:
        chain = Chain(db, network.genesis)
        first = chain.head.block_number + 1
        if first > length + 1:
            raise SystemExit(f"{path} holds {first - 1} blocks, more than {length}; remove it")
        started = reported = time.perf_counter()
        for number in range(first, length + 1):
            transactions = (
                [chain.decode_transaction(sign_record_call(network.genesis))]
                if number == length
                else []
            )
            built = chain.build_block(
                transactions, timestamp=chain.head.timestamp + 1, coinbase=coinbase
            )
            if len(built.block.transactions) != len(transactions):
                raise SystemExit(f"block #{number} left out the transaction: {built.excluded}")
            seals = [chain.sign_block(built.block, key) for key in sealers]
            chain.commit_built_block(chain.seal_block(built.block, seals))
            now = time.perf_counter()
            if now - reported >= PROGRESS_SECONDS:
                reported = now
                done = number - first + 1
                rate = done / (now - started)
                print(
                    f"chain {length:,}: block {number:,}/{length:,}, {rate:.0f} blocks/s,"
                    f" {(length - number) / rate / 60:.1f} min left",
                    file=sys.stderr,
                    flush=True,
                )
    return length - first + 1


# -- observer nodes --------------------------------------------------------------


@dataclass
class NodeProcess:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: pathlib.Path


def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_observer(
    network: Network, built: Built, name: str, key_file: pathlib.Path, run_dir: pathlib.Path
) -> NodeProcess:
    """Copy the chain into the node's own data directory and start the node process."""
    node_dir = run_dir / name
    shutil.rmtree(node_dir, ignore_errors=True)
    (node_dir / "data").mkdir(parents=True)
    shutil.copytree(built.directory / "chain", node_dir / "data" / "chain")
    rpc_port, p2p_port = find_free_port(), find_free_port()
    config = {
        "name": name,
        "data_dir": str(node_dir / "data"),
        "genesis": str(network.genesis_path),
        "rpc": {"host": "127.0.0.1", "port": rpc_port},
        "p2p": {"host": "127.0.0.1", "port": p2p_port, "observers": []},
        "node_key_file": str(key_file),
    }
    config_path = node_dir / "config.json"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    log = node_dir / "node.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "node", "node", "run", "--config", str(config_path)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return NodeProcess(name, f"http://127.0.0.1:{rpc_port}", process, log)


def wait_for_head(node: NodeProcess, length: int) -> None:
    """Return once the node answers at head ``length``; raise with its log if it died."""
    provider = HttpProvider(node.url, name=node.name, timeout=2.0)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            tail = node.log.read_text(errors="replace")[-3000:]
            raise SystemExit(
                f"{node.name} exited ({node.process.returncode}); its log ends:\n{tail}"
            )
        try:
            head = int(provider.call("eth_blockNumber"), 16)
        except ProviderError:
            time.sleep(0.2)
            continue
        if head != length:
            raise SystemExit(f"{node.name} serves head #{head}, expected #{length}")
        return
    raise SystemExit(f"{node.name} did not answer within {START_TIMEOUT:.0f} s; see {node.log}")


def stop_observer(node: NodeProcess) -> None:
    """SIGTERM the node and wait; SIGKILL its process group if it lingers."""
    if node.process.poll() is not None:
        return
    node.process.terminate()
    try:
        node.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.process.pid, signal.SIGKILL)  # it leads its own session
        node.process.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def running_observers(
    network: Network, built: Built, run_dir: pathlib.Path
) -> Iterator[list[NodeProcess]]:
    """Two observer nodes serving ``built``, always stopped on the way out."""
    nodes: list[NodeProcess] = []
    try:
        for name, key_file in zip(OBSERVERS, network.observer_keys, strict=True):
            nodes.append(start_observer(network, built, name, key_file, run_dir))
        for node in nodes:
            wait_for_head(node, built.length)
        yield nodes
    finally:
        for node in nodes:
            stop_observer(node)


def measure_header_bytes(url: str) -> int:
    """Bytes of the status line and headers of one JSON-RPC answer from ``url``."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
        connection.request("POST", "/", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        status = f"HTTP/1.1 {response.status} {response.reason}\r\n"
        headers = "".join(f"{k}: {v}\r\n" for k, v in response.getheaders())
        return len((status + headers + "\r\n").encode())
    finally:
        connection.close()


# -- measuring -------------------------------------------------------------------


@dataclass
class RecordingProvider(HttpProvider):
    """An ``HttpProvider`` that also remembers its calls and their answers' sizes."""

    methods: list[Call] = field(default_factory=list)

    def call(self, method: str, *params: Any) -> Any:
        before = self.bytes_received
        try:
            return super().call(method, *params)
        finally:
            self.methods.append((self.name, method, self.bytes_received - before))


def verify_once(
    providers: Sequence[Any], network: Network, built: Built, length: int
) -> tuple[Sample, Any]:
    """Pin the checkpoint in a fresh store, then verify the receipt; measure the second."""
    client = LightClient(providers, HeaderStore(None), min_agree=len(providers))
    client.trust(CHECKPOINT, built.checkpoint_hash, network.genesis_hash)
    trust_bytes = sum(p.bytes_received for p in providers)
    trust_calls = sum(p.calls for p in providers)
    for provider in providers:
        provider.methods.clear()
    receipt = Receipt(
        kind="transaction",
        chain_id=network.genesis.chain_id,
        genesis_hash=network.genesis_hash,
        tx_hash=built.tx_hash,
        block_number=length,
        block_hash=built.tx_block_hash,
    )
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    verified = verify_receipt(receipt, client)
    cpu = time.process_time() - cpu_started
    wall = time.perf_counter() - wall_started
    client.store.close()
    transaction = verified.transaction
    if transaction.faults or len(transaction.agreed) != len(providers):
        raise SystemExit(f"verification reported faults: {transaction.faults}")
    return (
        Sample(
            cpu_ms=cpu * 1000,
            wall_ms=wall * 1000,
            bytes=sum(p.bytes_received for p in providers) - trust_bytes,
            calls=sum(p.calls for p in providers) - trust_calls,
            trust_bytes=trust_bytes,
            trust_calls=trust_calls,
            methods=tuple(m for p in providers for m in p.methods),
        ),
        verified,
    )


def summarize(
    samples: Sequence[Sample], length: int, changes: int, header_bytes: int, simulated: bool
) -> Result:
    cpu = [s.cpu_ms for s in samples]
    calls = round(statistics.median(s.calls for s in samples))
    body = round(statistics.median(s.bytes for s in samples))
    return Result(
        length=length,
        changes=changes,
        simulated=simulated,
        repeats=len(samples),
        cpu_ms=statistics.median(cpu),
        cpu_ms_first=cpu[0],
        cpu_ms_max=max(cpu),
        wall_ms=statistics.median(s.wall_ms for s in samples),
        bytes=body,
        wire_bytes=body + calls * header_bytes,
        calls=calls,
        trust_bytes=round(statistics.median(s.trust_bytes for s in samples)),
        trust_calls=round(statistics.median(s.trust_calls for s in samples)),
        methods=samples[-1].methods,
    )


def measure_real(
    network: Network, built: Built, run_dir: pathlib.Path, repeats: int
) -> tuple[Result, int, dict[str, Any]]:
    """Start the observers, verify ``repeats`` times; return the result and real answers."""
    with running_observers(network, built, run_dir) as nodes:
        header_bytes = max(measure_header_bytes(node.url) for node in nodes)
        samples = []
        for _ in range(repeats):
            providers = [RecordingProvider(node.url, name=node.name) for node in nodes]
            sample, _verified = verify_once(providers, network, built, built.length)
            samples.append(sample)
        source = HttpProvider(nodes[0].url, name=nodes[0].name)
        answers = {
            "proof": source.call("polder_getTransactionProof", "0x" + built.tx_hash.hex()),
            "checkpoint": source.call("polder_getLightBlock", hex(CHECKPOINT)),
        }
    result = summarize(samples, built.length, 0, header_bytes, simulated=False)
    return result, header_bytes, answers


# -- simulated validator-set changes -----------------------------------------------


@dataclass(frozen=True)
class ForgedChain:
    """The light blocks a node would serve for a chain with validator-set changes."""

    blocks: dict[int, dict[str, Any]]
    changes: tuple[int, ...]
    """Heights of the change headers, ascending."""
    proof: dict[str, Any]
    """The real transaction proof, its header replaced by the forged one."""
    tx_block_hash: bytes


def forge_light_block(
    template: Sequence[bytes],
    number: int,
    keys: Sequence[bytes],
    next_keys: Sequence[bytes],
    timestamp: int,
) -> dict[str, Any]:
    """A light block like ``template`` at ``number``: ``keys``' set, sealed by a quorum of it.

    Its vanity commits to ``next_keys``' set: a change header when that differs.
    """
    validators = tuple(address_of(key) for key in keys)
    fields = list(template)
    fields[NUMBER] = rlp.sedes.big_endian_int.serialize(number)
    fields[TIMESTAMP] = rlp.sedes.big_endian_int.serialize(timestamp)
    extra = ExtraData(
        vanity=compute_validators_hash(address_of(key) for key in next_keys),
        validators=validators,
        vote=(),
        round=0,
        seals=(),
    )
    unsealed = replace_extra_data(fields, extra)
    digest = compute_seal_digest(unsealed)
    seals = tuple(sign_seal(digest, key) for key in keys[: compute_quorum(len(keys))])
    sealed = replace_extra_data(unsealed, replace(extra, seals=seals))
    return format_light_block(decode_header(rlp.encode(sealed)))


def forge_chain(
    network: Network, length: int, answers: dict[str, Any], changes: int
) -> ForgedChain:
    """A ``length``-block chain whose set changes ``changes`` times after the checkpoint.

    Each change rotates the longest-serving validator out for a fresh key. A
    change header (sealed by the old set) commits to the new set; the header
    after it is the first sealed by the new set. The transaction's block keeps
    the real transactions and receipts roots, so the real proofs still hold.
    """
    proof = dict(answers["proof"])
    template = rlp.decode(bytes.fromhex(proof["lightBlock"]["header"][2:]))
    end_time = int.from_bytes(template[TIMESTAMP], "big")
    span = length - CHECKPOINT
    heights = tuple(CHECKPOINT + i * span // (changes + 1) for i in range(1, changes + 1))
    blocks = {CHECKPOINT: answers["checkpoint"]}
    keys = list(network.validator_keys)
    for height in heights:
        rotated = [*keys[1:], PrivateKey().secret]
        blocks[height] = forge_light_block(
            template, height, keys, rotated, end_time - length + height
        )
        keys = rotated
        blocks[height + 1] = forge_light_block(
            template, height + 1, keys, keys, end_time - length + height + 1
        )
    target = forge_light_block(template, length, keys, keys, end_time)
    blocks[length] = target
    proof.update(lightBlock=target, blockHash=target["hash"])
    return ForgedChain(blocks, heights, proof, bytes.fromhex(target["hash"][2:]))


@dataclass
class SimulatedProvider:
    """Answers the light client's calls from a :class:`ForgedChain`, as node.light would."""

    name: str
    chain: ForgedChain
    bytes_received: int = 0
    calls: int = 0
    methods: list[Call] = field(default_factory=list)

    def call(self, method: str, *params: Any) -> Any:
        self.calls += 1
        before = self.bytes_received
        try:
            return self.serve(method, params)
        finally:
            self.methods.append((self.name, method, self.bytes_received - before))

    def serve(self, method: str, params: Sequence[Any]) -> Any:
        result: Any
        if method == "polder_getLightBlock":
            result = self.chain.blocks.get(int(params[0], 16))
        elif method == "polder_getTransactionProof":
            known = params[0] == self.chain.proof["transactionHash"]
            result = self.chain.proof if known else None
        elif method == "polder_getValidatorChanges":
            first, last = int(params[0], 16), int(params[1], 16)
            heights = [h for h in self.chain.changes if first <= h <= last]
            if len(heights) > MAX_CHANGES:  # a page, as node.light answers
                heights = heights[:MAX_CHANGES]
                last = heights[-1]
            result = {
                "fromBlock": hex(first),
                "toBlock": hex(last),
                "changes": [
                    {"number": hex(h), "lightBlock": self.chain.blocks[h]} for h in heights
                ],
            }
        else:
            raise ProviderError(self.name, f"{method} is not simulated")
        return self.answer(result)

    def answer(self, value: Any, key: str = "result") -> Any:
        """Count the bytes of the JSON-RPC answer the node would send; decode it again."""
        raw = json.dumps({"jsonrpc": "2.0", "id": self.calls, key: value}).encode()
        self.bytes_received += len(raw)
        return json.loads(raw)[key]


def measure_simulated(
    network: Network,
    built: Built,
    answers: dict[str, Any],
    changes: int,
    repeats: int,
    header_bytes: int,
) -> Result:
    forged = forge_chain(network, built.length, answers, changes)
    target = replace(built, tx_block_hash=forged.tx_block_hash)
    samples = []
    try:
        for _ in range(repeats):
            providers = [SimulatedProvider(name, forged) for name in OBSERVERS]
            sample, verified = verify_once(providers, network, target, built.length)
            if verified.transaction.block.hash != forged.tx_block_hash:
                raise SystemExit("the simulated verification proved another block")
            samples.append(sample)
    except PolderError as exc:
        return Result(
            length=built.length,
            changes=changes,
            simulated=True,
            repeats=0,
            cpu_ms=0.0,
            cpu_ms_first=0.0,
            cpu_ms_max=0.0,
            wall_ms=0.0,
            bytes=0,
            wire_bytes=0,
            calls=0,
            trust_bytes=0,
            trust_calls=0,
            methods=(),
            error=f"{type(exc).__name__}: {exc.message}",
        )
    return summarize(samples, built.length, changes, header_bytes, simulated=True)


# -- report ------------------------------------------------------------------------


def measure_import_cpu_ms(runs: int = 3) -> float:
    """CPU a fresh process spends importing the light-client library (a CLI run pays it)."""
    code = (
        "import time; t = time.process_time(); import clients.light;"
        " print((time.process_time() - t) * 1000)"
    )
    values = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
        )
        values.append(float(done.stdout))
    return statistics.median(values)


def fit_slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0


def verdict(ok: bool, error: str | None) -> str:
    if error is not None:
        return "ERROR"
    return "PASS" if ok else "MISS"


def format_report(
    machine: dict[str, Any],
    results: Sequence[Result],
    builds: Sequence[Built],
    header_bytes: int,
    import_ms: float,
    repeats: int,
) -> str:
    lines = [
        format_machine(machine),
        f"software: py-evm {machine['py-evm']}, coincurve {machine['coincurve']},"
        f" plyvel {machine['plyvel']}",
        f"setup: {VALIDATORS} validators, every block sealed by {SEALERS}; checkpoint block"
        f" {CHECKPOINT} pinned; {len(OBSERVERS)} observer nodes on 127.0.0.1, min_agree 2;"
        f" median of {repeats} cold starts (fresh in-memory store each)",
        f"bytes: JSON-RPC response bodies; 'wire' adds {header_bytes} bytes of HTTP response"
        " headers per call (one TCP connection per call); KB = 1,000 bytes",
        "",
        f"{'chain':>9} {'set':>7} {'CPU ms':>7} {'CPU ms':>7} {'CPU ms':>7} {'wall':>6}"
        f" {'body':>6} {'wire':>6} {'calls':>5} {'pin':>5}   {'CPU':>6} {'download':>8}",
        f"{'blocks':>9} {'changes':>7} {'median':>7} {'first':>7} {'max':>7} {'ms':>6}"
        f" {'KB':>6} {'KB':>6} {'':>5} {'KB':>5}   {'<100ms':>6} {'<20KB':>8}",
    ]
    for r in results:
        label = f"{r.changes}{'*' if r.simulated else ''}"
        if r.error is not None:
            lines.append(f"{r.length:>9,} {label:>7}  {r.error}")
            continue
        lines.append(
            f"{r.length:>9,} {label:>7} {r.cpu_ms:>7.1f} {r.cpu_ms_first:>7.1f}"
            f" {r.cpu_ms_max:>7.1f} {r.wall_ms:>6.1f} {r.bytes / 1000:>6.1f}"
            f" {r.wire_bytes / 1000:>6.1f} {r.calls:>5} {r.trust_bytes / 1000:>5.1f}"
            f"   {verdict(r.meets_cpu, r.error):>6} {verdict(r.meets_bytes, r.error):>8}"
        )
    if any(r.simulated for r in results):
        lines.append(
            "  * simulated chain: forged change headers served in-process (no HTTP cost in CPU"
            " and wall; wire KB assumes the measured HTTP headers)"
        )
    lines.append("")
    real = [r for r in results if not r.simulated]
    if len(real) >= 2:
        short, long = real[0], real[-1]
        lines.append(
            f"chain length: from {short.length:,} to {long.length:,} blocks the download"
            f" changes by {long.wire_bytes - short.wire_bytes:+,} bytes"
            f" (x{long.wire_bytes / short.wire_bytes:.3f}), the calls by"
            f" {long.calls - short.calls:+d}, the median CPU by x{long.cpu_ms / short.cpu_ms:.2f}"
        )
    simulated = [r for r in results if r.simulated and r.error is None]
    if len(simulated) >= 2:
        per_kb = fit_slope([(r.changes, r.wire_bytes / 1000) for r in simulated])
        per_ms = fit_slope([(r.changes, r.cpu_ms) for r in simulated])
        lines.append(
            f"set changes (simulated, {simulated[0].changes}..{simulated[-1].changes}): each"
            f" change adds {per_kb:.2f} KB and {per_ms:.2f} ms CPU (least-squares slope)"
        )
    if real:
        calls = ", ".join(f"{p} {m} ({n / 1000:.1f} KB)" for p, m, n in real[-1].methods)
        lines.append(f"verification calls: {calls}")
    lines.append(
        f"not counted above: pinning the checkpoint ({real[0].trust_calls if real else 1} call,"
        f" 'pin' KB), and {import_ms:.0f} ms CPU to import clients.light in a fresh process"
    )
    for b in builds:
        if b.built_blocks:
            start = b.length - b.built_blocks + 1
            origin = f", on a copy of the cached {b.copied_from:,}" if b.copied_from else ""
            lines.append(
                f"chain {b.length:,}: built blocks {start:,}..{b.length:,}{origin} in"
                f" {b.build_seconds:.0f} s, {b.built_blocks / b.build_seconds:.0f} blocks/s"
            )
        else:
            lines.append(f"chain {b.length:,}: reused from {b.directory}")
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------


def parse_counts(text: str, minimum: int) -> list[int]:
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(v < minimum for v in values):
        raise argparse.ArgumentTypeError(f"every value must be at least {minimum}")
    return sorted(set(values))


def on_sigterm(signum: int, frame: Any) -> None:
    del signum, frame
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lengths",
        type=lambda text: parse_counts(text, CHECKPOINT + 1),
        default=[1000, 10_000, 100_000],
        help="chain lengths in blocks, comma-separated (default 1000,10000,100000)",
    )
    parser.add_argument(
        "--changes",
        type=lambda text: parse_counts(text, 0),
        default=[0, 1, 4, 16, 64],
        help="validator-set changes to simulate on the longest chain (default 0,1,4,16,64;"
        " '' for none)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="cold starts per row (default 5)")
    parser.add_argument(
        "--workdir",
        type=pathlib.Path,
        default=pathlib.Path("/tmp/polder-bench-light"),
        help="keys, genesis and cached chains (default /tmp/polder-bench-light)",
    )
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if not args.lengths:
        parser.error("--lengths needs at least one length")
    longest = args.lengths[-1]
    if args.changes and args.changes[-1] > (longest - CHECKPOINT) // 2 - 1:
        parser.error(f"a {longest:,}-block chain has room for fewer set changes")

    # a shell starts background jobs with SIGINT ignored: Ctrl-C or kill -INT must still clean up
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_sigterm)
    started = time.perf_counter()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    machine = get_machine()
    network = prepare_network(workdir)
    results: list[Result] = []
    builds: list[Built] = []
    header_bytes = 0
    answers: dict[str, Any] = {}
    try:
        for length in args.lengths:
            built = ensure_chain(workdir, network, length)
            builds.append(built)
            print(f"chain {length:,}: verifying through two observer nodes", file=sys.stderr)
            result, header_bytes, answers = measure_real(
                network, built, workdir / "run", args.repeats
            )
            results.append(result)
        for changes in args.changes:
            print(f"simulating {changes} set change(s)", file=sys.stderr)
            results.append(
                measure_simulated(network, builds[-1], answers, changes, args.repeats, header_bytes)
            )
        import_ms = measure_import_cpu_ms()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir / "run", ignore_errors=True)
    print()
    print(format_report(machine, results, builds, header_bytes, import_ms, args.repeats))
    print(f"\n(total run time {time.perf_counter() - started:.0f} s; chains cached in {workdir})")
    if args.json:
        figures = {
            "machine": machine,
            "validators": VALIDATORS,
            "sealers": SEALERS,
            "checkpoint": CHECKPOINT,
            "repeats": args.repeats,
            "http_header_bytes": header_bytes,
            "import_cpu_ms": import_ms,
            "target_cpu_ms": TARGET_CPU_MS,
            "target_bytes": TARGET_BYTES,
            "results": [
                asdict(r) | {"meets_cpu": r.meets_cpu, "meets_bytes": r.meets_bytes}
                for r in results
            ],
            "builds": [
                {
                    "length": b.length,
                    "built_blocks": b.built_blocks,
                    "build_seconds": b.build_seconds,
                    "copied_from": b.copied_from,
                }
                for b in builds
            ],
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
