"""Benchmark block building, committing and importing on LevelDB (``make bench``).

Two workloads, each from many distinct fresh senders (one transaction each,
nonce 0, zero gas price):

* ``transfer``: a 1-wei value transfer to a fresh address. A value transfer
  needs a balance, so these senders get 1 wei each in genesis.
* ``notary``: ``Notary.record(key, value)``, which stores 32 bytes, bumps a
  counter and emits an event, from zero-balance senders, as a voter would.

After the notary blocks, node A's pool admits more notary calls from fresh
senders, timed per transaction: as a gossiped copy (decode, sender recovery,
static and nonce checks) and as a transaction sent to this node's RPC (the
same plus the dry run against the pending state). With the build and import
times, that is what every transaction costs the devnet's nodes.

All transactions are signed and decoded before any timing starts; recovering
their senders happens inside ``build_block`` and counts. Node A builds each
block (``build_block``), seals it with its single validator key and commits
it (``commit_built_block``); node B receives the sealed block as RLP bytes and
imports it (``decode_block`` + ``import_block``, which re-executes every
transaction). Both nodes run on their own LevelDB directory in a temp dir,
with fsync on commit, as a node runs.

    python scripts/bench_chain.py [--blocks N] [--sizes 250,500,1000] [--json FILE]
"""

from __future__ import annotations

# isort: off
import node  # noqa: F401  (before eth: it selects eth-hash's fast keccak backend)

# isort: on

import argparse
import gc
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any

import rlp
from eth.abc import SignedTransactionAPI
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey
from trie import HexaryTrie

from consensus.genesis import Genesis, decode_genesis
from contracts.loader import load_artifact
from node.chain import Chain
from node.db import LevelDB
from node.mempool import Mempool
from node.statedb import TRIE_NODE_CACHE_SIZE, TrieNodeCache, select_trie_node_cache

CHAIN_ID = 5262404
TARGET_CALLS_PER_SECOND = 500
"""Contract-call transactions per second, built and committed, that a node must reach."""

CALL_GAS = 100_000
RECORD_GAS_BOUND = 55_000
"""More than a ``record`` call uses (about 51,200 gas), for sizing the gas limit."""
GENESIS_TEMPLATE = pathlib.Path(__file__).resolve().parents[1] / "genesis.json"
TRANSFER_GAS = 21_000
NOTARY = bytes(18) + b"\x01\x00"
RECORD_SELECTOR = keccak(b"record(bytes32,bytes32)")[:4]
VALIDATOR_KEY = keccak(b"polder bench validator")
WORKLOADS = ("transfer", "notary")
ADMISSION_TXS = 1000
"""Notary calls admitted into a pool, per kind of admission."""


@dataclass(frozen=True)
class Result:
    """The figures of one workload at one block size."""

    workload: str
    block_size: int
    """Transactions offered to (and included in) each block."""
    blocks: int
    gas_per_tx: float
    build_s: float
    """Mean seconds of ``build_block`` per block."""
    seal_s: float
    commit_s: float
    """Mean seconds of ``commit_built_block`` per block."""
    import_s: float
    """Mean seconds of ``decode_block`` + ``import_block`` per block on node B."""
    build_commit_tps: float
    """Transactions per second over build + seal + commit."""
    import_tps: float


@dataclass(frozen=True)
class Admission:
    """Mean milliseconds to admit one notary call from a fresh sender into a pool."""

    transactions: int
    """Calls admitted of each kind."""
    gossiped_ms: float
    """A copy a peer gossiped: decode, sender recovery, static and nonce checks."""
    dry_run_ms: float
    """A call sent to this node's RPC: the same and a dry run on the pending state."""


def address_of(private_key: bytes) -> bytes:
    return PrivateKey(private_key).public_key.to_canonical_address()


def sender_key(workload: str, index: int) -> bytes:
    return keccak(f"polder bench {workload} sender {index}".encode())


def compute_gas_limit(max_block_size: int) -> int:
    """The gas limit of the repository's genesis.json, raised if the largest block needs more."""
    template = json.loads(GENESIS_TEMPLATE.read_text(encoding="utf-8"))
    return max(int(template["gasLimit"]), max_block_size * RECORD_GAS_BOUND + CALL_GAS)


def make_genesis(transfer_senders: int, gas_limit: int) -> Genesis:
    """One validator, Notary pre-deployed, 1 wei for each transfer sender."""
    code = load_artifact("Notary").runtime_bytecode
    alloc: dict[str, Any] = {"0x" + NOTARY.hex(): {"code": "0x" + code.hex()}}
    for index in range(transfer_senders):
        alloc["0x" + address_of(sender_key("transfer", index)).hex()] = {"balance": 1}
    return decode_genesis(
        {
            "chainId": CHAIN_ID,
            "timestamp": 1767225600,
            "gasLimit": gas_limit,
            "validators": [
                {
                    "name": "bench",
                    "address": "0x" + address_of(VALIDATOR_KEY).hex(),
                    "p2p": "ws://127.0.0.1:1",
                    "rpc": "http://127.0.0.1:2",
                }
            ],
            "alloc": alloc,
            "contracts": {"Notary": "0x" + NOTARY.hex()},
        }
    )


def sign(private_key: bytes, to: bytes, data: bytes, value: int, gas: int) -> bytes:
    unsigned = PragueTransactionBuilder.new_unsigned_dynamic_fee_transaction(
        CHAIN_ID, 0, 0, 0, gas, to, value, data, ()
    )
    raw: bytes = unsigned.as_signed_transaction(PrivateKey(private_key)).encode()
    return raw


def sign_workload(workload: str, count: int, first: int = 0) -> list[bytes]:
    """Raw signed transactions of ``workload``, each from its own fresh sender.

    The senders are numbered from ``first``.
    """
    raws = []
    for index in range(first, first + count):
        key = sender_key(workload, index)
        if workload == "transfer":
            recipient = keccak(b"polder bench recipient %d" % index)[:20]
            raws.append(sign(key, recipient, b"", 1, TRANSFER_GAS))
        else:
            record_key = keccak(b"polder bench key %d" % index)
            record_value = keccak(record_key)
            data = RECORD_SELECTOR + record_key + record_value
            raws.append(sign(key, NOTARY, data, 0, CALL_GAS))
    return raws


@dataclass(frozen=True)
class NodeCaches:
    """Each node's own trie-node cache, as each would have in its own process."""

    a: TrieNodeCache
    b: TrieNodeCache


@contextmanager
def open_node(path: pathlib.Path, genesis: Genesis) -> Iterator[Chain]:
    with LevelDB(path) as db:
        yield Chain(db, genesis)


def run_block(
    a: Chain, b: Chain, transactions: Sequence[SignedTransactionAPI], caches: NodeCaches
) -> tuple[float, float, float, float, int]:
    """Build, seal and commit one block on A, import it on B; return the timings."""
    select_trie_node_cache(caches.a)
    started = time.perf_counter()
    built = a.build_block(
        transactions, timestamp=a.head.timestamp + 1, coinbase=address_of(VALIDATOR_KEY)
    )
    built_at = time.perf_counter()
    sealed = a.seal_block(built.block, [a.sign_block(built.block, VALIDATOR_KEY)])
    sealed_at = time.perf_counter()
    a.commit_built_block(sealed)
    committed_at = time.perf_counter()
    if built.excluded or len(built.block.transactions) != len(transactions):
        reasons = {e.reason for e in built.excluded}
        raise SystemExit(
            f"block #{sealed.number} left out {len(transactions) - len(built.block.transactions)}"
            f" transactions: {reasons or 'gas limit'}"
        )
    raw = rlp.encode(sealed)
    select_trie_node_cache(caches.b)
    import_started = time.perf_counter()
    b.import_block(b.decode_block(raw))
    imported_at = time.perf_counter()
    if b.head.hash != a.head.hash or b.head.state_root != a.head.state_root:
        raise SystemExit(f"node B disagrees with node A at block #{sealed.number}")
    return (
        built_at - started,
        sealed_at - built_at,
        committed_at - sealed_at,
        imported_at - import_started,
        sealed.header.gas_used,
    )


def measure_admission(chain: Chain, first_sender: int) -> Admission:
    """Admit notary calls from fresh senders into two pools on ``chain``'s head."""
    raws = sign_workload("notary", 2 * ADMISSION_TXS, first=first_sender)
    timings = []
    for dry_run, part in ((False, raws[:ADMISSION_TXS]), (True, raws[ADMISSION_TXS:])):
        pool = Mempool(chain)
        started = time.perf_counter()
        for raw in part:
            pool.add(raw, dry_run=dry_run)
        timings.append((time.perf_counter() - started) / len(part))
    return Admission(ADMISSION_TXS, timings[0] * 1000, timings[1] * 1000)


def run_workload(
    workload: str, genesis: Genesis, sizes: Sequence[int], blocks: int, workdir: pathlib.Path
) -> tuple[list[Result], Admission | None]:
    """Build and import ``blocks`` blocks of each size; after notary blocks, time admission."""
    raws = sign_workload(workload, blocks * sum(sizes))
    results = []
    with (
        open_node(workdir / f"{workload}-a", genesis) as a,
        open_node(workdir / f"{workload}-b", genesis) as b,
    ):
        transactions = [a.decode_transaction(raw) for raw in raws]
        caches = NodeCaches(
            TrieNodeCache(TRIE_NODE_CACHE_SIZE), TrieNodeCache(TRIE_NODE_CACHE_SIZE)
        )
        offset = 0
        for size in sizes:
            timings = []
            for _ in range(blocks):
                timings.append(run_block(a, b, transactions[offset : offset + size], caches))
                offset += size
            build, seal, commit, imported, gas = (
                statistics.fmean(t) for t in zip(*timings, strict=True)
            )
            results.append(
                Result(
                    workload=workload,
                    block_size=size,
                    blocks=blocks,
                    gas_per_tx=gas / size,
                    build_s=build,
                    seal_s=seal,
                    commit_s=commit,
                    import_s=imported,
                    build_commit_tps=size / (build + seal + commit),
                    import_tps=size / imported,
                )
            )
        select_trie_node_cache(caches.a)
        admission = measure_admission(a, len(raws)) if workload == "notary" else None
    return results, admission


def release_closed_databases() -> None:
    """Free the closed LevelDB handles now rather than during interpreter exit.

    trie caches a HexaryTrie method per instance (``functools.lru_cache`` on
    the method), which keeps every trie, and the database under it, alive
    until exit; plyvel objects freed that late print "Error in sys.excepthook".
    """
    cached = getattr(HexaryTrie, "_cached_create_node_to_db_mapping", None)
    if cached is not None and hasattr(cached, "cache_clear"):
        cached.cache_clear()
    gc.collect()


def get_machine() -> dict[str, Any]:
    """CPU model, cores and software versions, for reading the figures later."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "py-evm": metadata.version("py-evm"),
        "coincurve": metadata.version("coincurve"),
        "plyvel": metadata.version("plyvel"),
    }


def format_machine(machine: dict[str, Any]) -> str:
    """The report's first line: the processor, its cores and the Python that ran."""
    return (
        f"machine: {machine['cpu']}, {machine['cores']} cores "
        f"({machine['usable_cores']} usable), {machine['implementation']} {machine['python']}"
    )


def format_report(
    machine: dict[str, Any],
    results: Sequence[Result],
    admission: Admission | None,
    gas_limit: int,
) -> str:
    lines = [
        format_machine(machine),
        f"software: py-evm {machine['py-evm']}, coincurve {machine['coincurve']}, "
        f"plyvel {machine['plyvel']}; LevelDB with fsync; 1 validator; "
        f"gas limit {gas_limit:,}",
        "",
        f"{'workload':<9} {'tx/block':>8} {'blocks':>6} {'gas/tx':>7} {'build ms':>9} "
        f"{'commit ms':>9} {'import ms':>9} {'tx/s build+commit':>17} {'tx/s import':>11}",
    ]
    for r in results:
        lines.append(
            f"{r.workload:<9} {r.block_size:>8} {r.blocks:>6} {r.gas_per_tx:>7,.0f} "
            f"{r.build_s * 1000:>9.0f} {r.commit_s * 1000:>9.1f} {r.import_s * 1000:>9.0f} "
            f"{r.build_commit_tps:>17.0f} {r.import_tps:>11.0f}"
        )
    if admission is not None:
        lines += [
            "",
            f"admission of {admission.transactions:,} notary calls from fresh senders into a pool:",
            f"  a gossiped copy (decode, sender, nonce): {admission.gossiped_ms:6.3f} ms/tx",
            f"  sent to this node's RPC (and a dry run): {admission.dry_run_ms:6.3f} ms/tx",
        ]
    lines.append("")
    lines.append(
        f"target: >= {TARGET_CALLS_PER_SECOND} contract-call (notary) tx/s built and committed"
    )
    for r in results:
        if r.workload == "notary":
            verdict = "meets" if r.build_commit_tps >= TARGET_CALLS_PER_SECOND else "MISSES"
            lines.append(
                f"  {r.block_size:>5} tx/block: {r.build_commit_tps:6.0f} tx/s, {verdict} the "
                f"target ({r.build_commit_tps / TARGET_CALLS_PER_SECOND:.1%} of it)"
            )
    return "\n".join(lines)


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must be integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive integers")
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=3, help="blocks per size (default 3)")
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=[250, 500, 1000],
        help="transactions per block, comma-separated (default 250,500,1000)",
    )
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.blocks < 1:
        parser.error("--blocks must be at least 1")

    started = time.perf_counter()
    gas_limit = compute_gas_limit(max(args.sizes))
    genesis = make_genesis(args.blocks * sum(args.sizes), gas_limit)
    machine = get_machine()
    results: list[Result] = []
    admission = None
    with tempfile.TemporaryDirectory(prefix="polder-bench-") as workdir:
        for workload in WORKLOADS:
            print(f"running {workload} ...", file=sys.stderr, flush=True)
            workload_results, measured = run_workload(
                workload, genesis, args.sizes, args.blocks, pathlib.Path(workdir)
            )
            results += workload_results
            admission = measured or admission
    release_closed_databases()
    print(format_report(machine, results, admission, gas_limit))
    print(f"\n(total run time {time.perf_counter() - started:.0f} s)")
    if args.json:
        figures = {
            "machine": machine,
            "gas_limit": gas_limit,
            "target_calls_per_second": TARGET_CALLS_PER_SECOND,
            "results": [asdict(r) for r in results],
            "admission": asdict(admission) if admission else None,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
