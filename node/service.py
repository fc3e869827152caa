"""A running node: chain, mempool, P2P, consensus, and the hooks the RPC uses.

Blocking work (py-evm execution, LevelDB, WAL fsync) runs on one dedicated
executor thread, in submission order, so the event loop only ever waits on
futures and keeps answering while a block is built.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from coincurve import PrivateKey
from eth.abc import BlockAPI, ReceiptAPI
from eth_utils import encode_hex

from consensus.errors import ConfigError
from consensus.seal import compute_address
from node.bft import Bft
from node.chain import Chain
from node.config import NodeConfig, load_genesis, load_private_key
from node.db import LevelDB
from node.evidence import EvidenceStore
from node.executor import CONSENSUS, NORMAL, ChainThread
from node.mempool import Mempool
from node.p2p import P2PNetwork, PeerInfo
from node.wal import ConsensusWal, SigningGuard

log = logging.getLogger("polder.node")

T = TypeVar("T")
BlockListener = Callable[[BlockAPI, tuple[ReceiptAPI, ...]], Awaitable[None]]

CLIENT_VERSION = "polder/0.1.0/python"


class Node:
    """One node process's state, shared by the RPC server, P2P and consensus."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.genesis = load_genesis(config.genesis_path)
        self.executor = ChainThread("polder-chain")
        self.private_key = load_node_key(config)
        self.address = address_of(self.private_key)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = LevelDB(config.data_dir / "chain")
        try:
            self.chain = Chain(self.db, self.genesis)
            self.mempool = Mempool(self.chain)
            self.wal = ConsensusWal(config.data_dir / "wal")
            self.guard = SigningGuard(config.data_dir / "signing-guard.json", wal=self.wal)
        except Exception:
            self.db.close()
            raise
        self.evidence = EvidenceStore(config.data_dir / "evidence.jsonl")
        self.listeners: list[BlockListener] = []
        self.blocks_committed = 0
        self.executor_seconds: dict[str, float] = {}
        """Seconds the chain thread spent per kind of work (function name)."""
        self.started_at = time.time()
        observers = {address for address, _ in config.p2p.observers}
        self.p2p = P2PNetwork(
            private_key=self.private_key,
            chain_id=self.genesis.chain_id,
            genesis_hash=self.chain.genesis_hash,
            host=config.p2p.host,
            port=config.p2p.port,
            peers=[
                peer
                for peer in [
                    *(PeerInfo(v.address, v.p2p) for v in self.genesis.validators),
                    *(PeerInfo(address, url) for address, url in config.p2p.observers),
                ]
                if peer.address != self.address
            ],
            allowed=lambda address: address in self.chain.validators or address in observers,
            on_message=self.on_message,
            on_request=self.on_request,
            # transactions are gossiped one message each: leave room for bursts
            rate_per_second=5000.0,
        )
        self.bft = Bft(
            self,
            wal=self.wal,
            guard=self.guard,
            evidence=self.evidence,
            send=self.p2p.broadcast,
            # a validator key runs the state machine even outside the set: a
            # municipality added by governance signs from the height it joins
            is_validator=config.validator_key_file is not None,
        )

    @property
    def is_validator(self) -> bool:
        """Whether this node is in the set that seals the next block."""
        return self.address in self.chain.validators

    @property
    def role(self) -> str:
        if self.is_validator:
            return "validator"
        if self.config.validator_key_file is not None:
            return "validator (not in the current set)"
        return "observer"

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking ``fn`` on the chain thread (normal priority) and await it."""
        return await self.run_with(NORMAL, fn, *args)

    async def run_urgent(self, fn: Callable[..., T], *args: Any) -> T:
        """Run consensus work on the chain thread ahead of admissions and RPC reads."""
        return await self.run_with(CONSENSUS, fn, *args)

    async def run_with(self, priority: int, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking ``fn`` on the chain thread and await its result.

        The time each kind of work holds the thread is summed in
        ``executor_seconds`` (by function name) for ``/metrics``: it shows how
        much of a block's latency is execution and how much is messaging.
        """
        inner = getattr(fn, "func", fn)  # functools.partial keeps the function in .func
        name: str = getattr(inner, "__name__", "task")

        def timed() -> T:
            began = time.perf_counter()
            try:
                return fn(*args)
            finally:
                elapsed = time.perf_counter() - began
                self.executor_seconds[name] = self.executor_seconds.get(name, 0.0) + elapsed

        return await asyncio.wrap_future(self.executor.submit(priority, timed))

    async def start(self) -> None:
        await self.p2p.start()
        await self.bft.start()
        log.info("%s runs as %s %s", self.config.name, self.role, encode_hex(self.address))

    async def stop(self) -> None:
        """Stop consensus first (no new signatures), then the network."""
        await self.bft.stop()
        await self.p2p.stop()

    def close(self) -> None:
        """Close the database last, after the executor has finished its work."""
        self.executor.shutdown()
        self.guard.close()
        self.wal.close()
        self.db.close()

    # -- transactions ------------------------------------------------------

    async def submit_transaction(self, raw: bytes) -> bytes:
        """Admit a raw transaction (raises on refusal), gossip it, wake consensus."""
        tx_hash = await self.run(self.mempool.add, raw)
        await self.p2p.broadcast("tx", raw)
        self.bft.on_transaction()
        return tx_hash

    # -- peers -------------------------------------------------------------

    async def on_message(self, peer: bytes, kind: str, payload: bytes) -> None:
        await self.bft.on_message(peer, kind, payload)

    async def on_request(self, peer: bytes, kind: str, payload: bytes) -> bytes:
        return await self.bft.on_request(peer, kind, payload)

    async def announce(self, block: BlockAPI, receipts: tuple[ReceiptAPI, ...]) -> None:
        """Tell RPC subscribers about a newly committed block."""
        self.blocks_committed += 1
        log.info(
            "committed block #%d %s with %d txs",
            block.number,
            encode_hex(block.hash)[:18],
            len(block.transactions),
        )
        for listener in list(self.listeners):
            try:
                await listener(block, receipts)
            except Exception:
                log.exception("a block listener failed")

    def status(self) -> dict[str, Any]:
        """``polder_status``: height, round, peers, validator set, last commit time."""
        head = self.chain.head
        return {
            "name": self.config.name,
            "address": encode_hex(self.address),
            "role": self.role,
            "height": head.block_number,
            "headHash": encode_hex(head.hash),
            "genesisHash": encode_hex(self.chain.genesis_hash),
            "peers": [encode_hex(p) for p in self.p2p.connected_peers()],
            "validators": [encode_hex(v) for v in self.chain.validators],
            "mempoolSize": len(self.mempool),
            **self.bft.status(),
        }


def load_node_key(config: NodeConfig) -> bytes:
    """The validator key, or an observer's P2P identity key."""
    path = config.validator_key_file or config.node_key_file
    if path is None:
        raise ConfigError(
            f"{config.name}: set validator_key_file (validators) or node_key_file (observers)"
        )
    if config.byzantine and os.environ.get("POLDER_ALLOW_BYZANTINE") != "1":
        raise ConfigError("byzantine mode is for tests only (set POLDER_ALLOW_BYZANTINE=1)")
    return load_private_key(path)


def address_of(private_key: bytes) -> bytes:
    """Return the address of a secp256k1 private key."""
    return compute_address(PrivateKey(private_key).public_key)
