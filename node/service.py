"""A running node: chain, mempool, block production and the hooks the RPC uses.

Blocking work (py-evm execution, LevelDB) runs on one dedicated executor
thread, in submission order, so the event loop only ever waits on futures
and keeps answering while a block is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from coincurve import PrivateKey
from eth.abc import BlockAPI, ReceiptAPI
from eth_utils import encode_hex

from consensus.seal import compute_address, compute_quorum
from node.chain import Chain
from node.config import NodeConfig, load_genesis, load_private_key
from node.db import LevelDB
from node.mempool import Mempool

log = logging.getLogger("polder.node")

T = TypeVar("T")
BlockListener = Callable[[BlockAPI, tuple[ReceiptAPI, ...]], Awaitable[None]]

CLIENT_VERSION = "polder/0.1.0/python"


class Node:
    """One node process's state, shared by the RPC server and block production."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.genesis = load_genesis(config.genesis_path)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polder-chain")
        self.private_key = (
            load_private_key(config.validator_key_file) if config.validator_key_file else None
        )
        self.address = address_of(self.private_key) if self.private_key else None
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = LevelDB(config.data_dir / "chain")
        try:
            self.chain = Chain(self.db, self.genesis)
            self.mempool = Mempool(self.chain)
        except Exception:
            self.db.close()
            raise
        self.listeners: list[BlockListener] = []
        self.tx_arrived = asyncio.Event()
        self.last_block_time = time.monotonic()
        self._producer: asyncio.Task[None] | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking ``fn`` on the chain thread and await its result."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # -- transactions ------------------------------------------------------

    async def submit_transaction(self, raw: bytes) -> bytes:
        """Admit a raw transaction (raises on refusal) and wake the producer."""
        tx_hash = await self.run(self.mempool.add, raw)
        self.tx_arrived.set()
        return tx_hash

    # -- block production (single validator; multi-validator BFT replaces this) --

    @property
    def is_sole_validator(self) -> bool:
        """True when this node's seal alone is a quorum (a 1-validator network)."""
        validators = self.chain.validators
        return self.address in validators and compute_quorum(len(validators)) == 1

    def start(self) -> None:
        if self.is_sole_validator:
            self._producer = asyncio.create_task(self.produce_blocks(), name="producer")
        elif self.address is not None:
            log.warning(
                "%s holds a validator key but the set has %d validators: this build "
                "seals blocks only in a 1-validator network",
                self.config.name,
                len(self.chain.validators),
            )

    async def stop(self) -> None:
        if self._producer is not None:
            self._producer.cancel()
            await asyncio.gather(self._producer, return_exceptions=True)
            self._producer = None

    async def produce_blocks(self) -> None:
        """Seal a block every block period when there are transactions, else less often."""
        params = self.genesis.consensus
        while True:
            idle = time.monotonic() - self.last_block_time
            if len(self.mempool) == 0:
                self.tx_arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self.tx_arrived.wait(), max(0.0, params.empty_block_period - idle)
                    )
                idle = time.monotonic() - self.last_block_time
            await asyncio.sleep(max(0.0, params.block_period - idle))
            try:
                block, receipts = await self.run(self.produce_one_block)
            except Exception:
                log.exception("block production failed; retrying next period")
                self.last_block_time = time.monotonic()
                continue
            await self.announce(block, receipts)

    def produce_one_block(self) -> tuple[BlockAPI, tuple[ReceiptAPI, ...]]:
        """Build, seal and commit one block from the mempool (chain thread)."""
        key = self.private_key
        if key is None or self.address is None:
            raise RuntimeError("only a validator produces blocks")
        built = self.chain.build_block(
            self.mempool.select(), timestamp=int(time.time()), coinbase=self.address
        )
        sealed = self.chain.seal_block(built.block, [self.chain.sign_block(built.block, key)])
        self.chain.commit_built_block(sealed)
        for excluded in built.excluded:
            log.info("left out tx %s: %s", encode_hex(excluded.tx_hash), excluded.reason)
        dropped = self.mempool.on_new_head()
        for tx_hash, reason in dropped:
            log.info("dropped tx %s from the pool: %s", encode_hex(tx_hash), reason)
        return sealed, built.receipts

    async def announce(self, block: BlockAPI, receipts: tuple[ReceiptAPI, ...]) -> None:
        """Tell subscribers about a newly committed block."""
        self.last_block_time = time.monotonic()
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

    def close(self) -> None:
        """Close the database last, after the executor has finished its work."""
        self.executor.shutdown(wait=True)
        self.db.close()


def address_of(private_key: bytes) -> bytes:
    """Return the address of a validator key."""
    return compute_address(PrivateKey(private_key).public_key)
