"""Benchmark voucher payments: finalized payments/s on the 4-validator devnet, and ``verify books``.

Two parts (``--part devnet|books|both``), each on its own fresh devnet in a
temp dir on free loopback ports, always stopped at the end, also on Ctrl-C
or an error (``--keep`` leaves them running to read their logs).

Setup, the same in both parts and never timed: the first validator
(Schiedam, a municipality) signs, from its devnet key in consecutive nonces,
``registerIssuer``, ``createFund`` (fund 1), ``setMerchant`` (LIVING only)
and ``setMerchantFund`` for ``MERCHANTS`` fresh grocery addresses, then
``registerHolder`` and ``issue`` (LIVING, period 202601, expiry 30 days
after the chain's time) for ``--holders`` fresh holder keys, enough for all
their payments. These go to the first validator in JSON-RPC batches of 100,
at most ``ISSUER_BATCH`` pending at a time (the node's pool takes 256 per
sender), each batch waited for by the issuer's nonce; the fund's
``books(fund).issued`` is then checked. A payment is ``pay(merchant, token,
amount)`` signed by a holder (zero fees, nonce from the holder's own count,
gas: ``eth_estimateGas`` of the first payment, the dearest, plus 25 %),
amount 1.00 to 25.00 euro (cents vary by payment).

1. **devnet**: the 4-validator devnet (plus the observer it always adds).
   For each ``--rates`` value, ``--payments-per-rate`` payments are signed
   before any timing; payment i of a rate comes from holder ``i % holders``
   (``--holders`` is a multiple of 4), so each holder pays once per round of
   all holders and, as ``bench_devnet.py`` sends payment i to validator
   ``i % 4``, always to the same validator: its consecutive nonces reach one
   node in order, never a node that has not yet seen the previous one. The
   payments are offered open loop at the rate, one ``eth_sendRawTransaction``
   per HTTP request, round-robin over the four validators, with
   ``bench_devnet.run_rate``: time to finality is the arrival of the
   ``newHeads`` notification (websocket, first validator) of the block that
   holds the payment minus the moment it was sent; ``/metrics`` and
   ``/proc`` split where the nodes' time went. Then every finalized
   payment's receipt is read: only payments with status 1 count. Finalized
   payments/s = payments with status 1 / (their last commit - first
   submission of the rate). At the end ``books(fund).spent`` must equal the
   sum of the counted payments' amounts.
2. **books**: a 1-validator devnet (plus its observer): a 4-validator devnet
   on 2 cores finalizes too few transactions per second to make 100,000
   payments in reasonable time, and the books do not depend on how many
   validators made them. After the setup, ``--books-payments`` payments
   (holder ``i % holders``, consecutive nonces per holder) are signed, then
   sent to the validator in JSON-RPC batches of 100, ``FILL_CONCURRENCY``
   batches in flight and at most ``FILL_BACKLOG`` payments sent but not yet
   in a block; fill rate = payments in blocks / (last commit - first
   submission). ``books(fund).spent`` must equal the sum of their amounts.
   Then the real command runs as a subprocess, with a fresh header store::

       polder verify books 1 --node URL --genesis-hash HASH --store TMP/light.sqlite

   timed by wall clock, its CPU and peak RSS from ``wait4``. The same steps
   as ``clients.budget_cli.run_verify_books`` are then timed in this
   process, with a fresh store: the head, the contract's books by a storage
   proof (light client from genesis), every event of the fund from
   ``eth_getLogs`` (each request timed and counted; ranges the node refuses
   as over 10,000 logs are halved by ``clients.web3tools.iterate_logs``) and
   their decoding, and the pure ``verify_books``. ``--profile`` also runs
   that under cProfile and prints the top functions. Last, with the devnet
   stopped, ``EXECUTION_SAMPLES`` more payments (from holders that paid
   before, to shops that were paid) and as many ``Notary.record`` calls
   (``bench_devnet.py``'s workload) are executed one by one in this process
   on the observer's chain (py-evm alone, as ``node.chain.apply_transaction``
   runs them): what one payment costs the chain, each time a node executes it.

The machine is shared: the report gives the CPU cores that processes other
than the devnet and this client used (from /proc/stat), before the run and
during each timed part, and warns when that was not close to 0.

    python scripts/bench_budget.py [--part devnet|books|both] [--rates 25,50,100,200]
                                   [--holders 2000] [--payments-per-rate 3000]
                                   [--books-payments 100000] [--books-max-minutes 90]
                                   [--profile] [--json FILE] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import math
import os
import pathlib
import pstats
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from typing import Any

import aiohttp
import bench_devnet
from bench_chain import format_machine, get_machine, release_closed_databases
from bench_devnet import (
    CLIENT_CONNECTIONS,
    DRAIN_TIMEOUT,
    OTHER_LOAD_WARNING,
    CommitTracker,
    Result,
    Submission,
    call_rpc,
    compute_refusal_kind,
    format_details,
    on_sigterm,
    parse_rates,
    percentile,
    read_machine_busy,
    read_process_cpu,
    run_rate,
    sign_record_calls,
    stop_devnet,
    wait_until_ready,
)
from bench_devnet import (
    format_cores as cores,
)
from bench_devnet import (
    format_seconds as seconds,
)
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_abi.abi import decode, encode
from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey
from eth_typing import Address
from web3.exceptions import Web3RPCError

from clients.budget.books import collect_events, verify_books
from clients.budget.chain import BOOK_FIELDS, BOOK_NAME, CATEGORIES, BudgetChain, abi_type
from clients.budget_cli import build_parser as build_cli_parser
from clients.budget_cli import read_contract_books
from clients.verify_cli import parse_providers
from clients.web3tools import connect
from contracts.loader import load_artifact
from node.chain import Chain, apply_transaction
from node.config import load_genesis
from node.db import LevelDB

REPO = pathlib.Path(__file__).resolve().parents[1]
DEVNET_VALIDATORS = 4
BOOKS_VALIDATORS = 1
TARGET_PAYMENTS_PER_SECOND = 200.0
"""Voucher payments per second the 4-validator devnet must finalize on a 2-core machine."""
LIVING = CATEGORIES["LIVING"]
PERIOD = 202601
MERCHANTS = 4
"""Grocery shops that accept LIVING money of the fund; payments rotate over them."""
FUND_WINDOW = 3 * 86400
EXPIRY_AHEAD = 30 * 86400
"""Seconds after the chain's time the budget's period expires."""
MAX_PAYMENT = 25_00
"""Largest payment, euro cents."""
SETUP_GAS = 400_000
PAY_GAS_MARGIN = 1.25
ISSUER_BATCH = 250
"""Issuer transactions pending at once (a node's pool takes 256 per sender)."""
RPC_BATCH = 100
"""Requests per JSON-RPC batch (a node's limit)."""
FILL_CONCURRENCY = 2
"""JSON-RPC batches of payments in flight at once while filling the books devnet."""
FILL_BACKLOG = 200
"""Payments sent but not yet in a block while filling: about two blocks' worth (a block's build
stops after 0.4 s, about 100 payments). The pool's remaining transactions are re-executed after
every block (``on_new_head``), so a bigger backlog slows the fill: with 1500, to a third."""
EXECUTION_SAMPLES = 200
"""Payments (and Notary.record calls) executed in process on the stopped books devnet's chain."""
STALL_TIMEOUT = 120.0
"""Seconds without a new block (or nonce) after which a wait gives up."""
START_TIMEOUT = 120.0
VERIFY_TIMEOUT = 3600.0
PROGRESS_EVERY = 15.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- results -------------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    """A budget holder's fresh key."""

    key: PrivateKey
    address: bytes


@dataclass(frozen=True)
class Setup:
    """The fund, its shops and holders, as the untimed setup left them."""

    fund: int
    token: int
    """The LIVING budget's token id (fund, LIVING, PERIOD)."""
    merchants: tuple[bytes, ...]
    holders: tuple[Holder, ...]
    issued_each: int
    """Cents of LIVING money issued to every holder."""
    pay_gas: int
    """Gas limit of every payment: the first payment's estimate plus the margin."""
    transactions: int
    """Issuer transactions sent."""
    seconds: float

    def describe(self) -> dict[str, Any]:
        """The setup without the holders' keys, for the JSON figures."""
        return {
            "fund": self.fund,
            "token": hex(self.token),
            "merchants": ["0x" + m.hex() for m in self.merchants],
            "holders": len(self.holders),
            "issued_each": self.issued_each,
            "pay_gas": self.pay_gas,
            "transactions": self.transactions,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class RateFigures:
    """The figures of one offered rate on the 4-validator devnet, payments only."""

    offered_rate: float
    """Payments per second offered."""
    sent_rate: float
    submitted: int
    refused: int
    refusals: dict[str, int]
    finalized: int
    """Payments in a block when the drain ended."""
    failed: int
    """Finalized with receipt status 0 (never counted)."""
    not_finalized: int
    """Accepted but not in a block when the drain timeout ran out."""
    payments_per_second: float
    """Payments with status 1 / (their last commit - first submission)."""
    ttf_p50: float | None
    ttf_p95: float | None
    ttf_p99: float | None
    ttf_max: float | None
    blocks: int
    payments_per_block_mean: float
    other_cpu: float | None
    """Cores used by processes other than the devnet and this client."""
    devnet_cpu_ms_per_payment: float | None
    details: dict[str, Any] = field(default_factory=dict)
    """bench_devnet's full Result of the rate."""

    @property
    def meets_target(self) -> bool:
        return (
            self.payments_per_second >= TARGET_PAYMENTS_PER_SECOND
            and self.not_finalized == 0
            and self.refused == 0
            and self.failed == 0
        )


@dataclass(frozen=True)
class DevnetFigures:
    """Part 1: the 4-validator devnet."""

    holders: int
    payments_per_rate: int
    setup: dict[str, Any]
    """Setup.describe()."""
    rates: list[RateFigures]
    books: dict[str, int]
    """books(fund) after the last rate."""
    books_check: str


@dataclass(frozen=True)
class FillFigures:
    """Filling the 1-validator devnet with payments."""

    payments: int
    """Payments asked for."""
    sign_seconds: float
    submitted: int
    refused: int
    refusals: dict[str, int]
    included: int
    """Payments in a block."""
    seconds: float
    """First submission to the last payment's commit."""
    payments_per_second: float
    blocks: int
    payments_per_block_mean: float
    payments_per_block_max: int
    node_cpu: float | None
    """Cores the devnet's nodes used on average."""
    other_cpu: float | None
    """Cores used by processes other than the devnet and this client."""
    stopped_early: bool
    """The fill deadline ran out before every payment was sent."""


@dataclass(frozen=True)
class CommandFigures:
    """``polder verify books`` run as a subprocess."""

    command: list[str]
    exit_code: int
    wall_seconds: float
    user_seconds: float
    system_seconds: float
    peak_rss_mb: float
    """ru_maxrss of the process (wait4)."""
    other_cpu: float | None
    """Cores used by processes other than the command and the devnet meanwhile."""
    output: str


@dataclass(frozen=True)
class PhaseFigures:
    """The steps of ``run_verify_books`` timed in this process."""

    head_seconds: float
    """Connect and read the head number."""
    proof_seconds: float
    """books(fund) by a storage proof: light client from genesis to the head, eth_getProof."""
    events_seconds: float
    """collect_events: every VoucherBook log, decoded, the fund's kept, sorted."""
    get_logs_seconds: float
    """Of events_seconds, inside eth_getLogs (node, transfer, web3's formatting)."""
    get_logs_refused_seconds: float
    """Of get_logs_seconds, requests the node refused as over its log limit."""
    get_logs_requests: int
    get_logs_refused: int
    logs: int
    """Logs received."""
    events: int
    """Events of the fund in the record."""
    verify_seconds: float
    """verify_books, pure."""
    total_seconds: float
    passed: bool
    checks: list[tuple[str, bool, str]]
    profile: str = ""


@dataclass(frozen=True)
class ExecutionFigures:
    """py-evm alone: one call executed in process on the stopped books devnet's chain."""

    samples: int
    pay_ms: float
    """Median milliseconds of one ``pay`` (a holder that paid before, a shop that was paid)."""
    pay_gas: float
    """Mean gas used by those payments."""
    record_ms: float
    """Median milliseconds of one ``Notary.record`` (bench_devnet's workload), the same way."""
    record_gas: float
    other_cpu: float | None


@dataclass(frozen=True)
class BooksFigures:
    """Part 2: the 1-validator devnet, filled, then verified."""

    holders: int
    setup: dict[str, Any]
    """Setup.describe()."""
    fill: FillFigures
    books: dict[str, int]
    books_check: str
    command: CommandFigures
    phases: PhaseFigures
    execution: ExecutionFigures | None
    """None with ``--keep`` (the devnet stays up)."""


# -- the devnet ------------------------------------------------------------------


@contextlib.contextmanager
def running_devnet(validators: int, keep: bool) -> Iterator[tuple[pathlib.Path, dict[str, Any]]]:
    """``bench_devnet.running_devnet`` with ``validators`` and this benchmark's folder prefix."""
    with bench_devnet.running_devnet(keep, validators, "polder-bench-budget-") as devnet:
        yield devnet


def get_validator_urls(manifest: dict[str, Any]) -> list[str]:
    return [n["rpc"] for n in manifest["nodes"] if n["role"] == "validator"]


def load_issuer_key(directory: pathlib.Path, manifest: dict[str, Any]) -> PrivateKey:
    """The first validator's devnet key (the municipality that issues)."""
    name = next(n["name"] for n in manifest["nodes"] if n["role"] == "validator")
    text = (directory / "keys" / f"{name.lower()}.key").read_text().strip()
    return PrivateKey(bytes.fromhex(text.removeprefix("0x")))


class LoadMeter:
    """CPU of the devnet's nodes and of other processes while a part runs."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.wall = time.monotonic()
        self.own = time.process_time()
        self.busy = read_machine_busy()
        self.nodes = self.read_nodes()

    def read_nodes(self) -> float | None:
        readings = [read_process_cpu(pid) for pid in self.pids]
        return None if None in readings else sum(r[0] for r in readings if r is not None)

    def measure(self, extra_cpu: float = 0.0) -> tuple[float | None, float | None]:
        """(node cores, other cores) since the start; ``extra_cpu``: known CPU s of children."""
        wall = time.monotonic() - self.wall
        busy, nodes = read_machine_busy(), self.read_nodes()
        if wall < 1.0 or None in (busy, self.busy, nodes, self.nodes):
            return None, None
        node_cpu = (nodes or 0.0) - (self.nodes or 0.0)
        own = time.process_time() - self.own
        other = (busy or 0.0) - (self.busy or 0.0) - node_cpu - own - extra_cpu
        return node_cpu / wall, max(0.0, other / wall)


def measure_background_load(seconds: float) -> float | None:
    """Cores busy with other processes over ``seconds``, before anything starts."""
    meter = LoadMeter([])
    time.sleep(seconds)
    return meter.measure()[1]


# -- transactions --------------------------------------------------------------


def get_book_abi(name: str) -> dict[str, Any]:
    abi = load_artifact(BOOK_NAME).abi
    entry: dict[str, Any] = next(
        e for e in abi if e.get("type") == "function" and e.get("name") == name
    )
    return entry


def encode_book_call(name: str, *args: Any) -> bytes:
    """Calldata of a VoucherBook function, types from its ABI."""
    types = [abi_type(i) for i in get_book_abi(name)["inputs"]]
    selector = keccak(f"{name}({','.join(types)})".encode())[:4]
    return selector + encode(types, list(args))


def sign_call(
    chain_id: int, key: PrivateKey, nonce: int, gas: int, to: bytes, data: bytes
) -> tuple[str, str]:
    """A zero-fee call, signed; (raw hex, tx hash hex)."""
    unsigned = PragueTransactionBuilder.new_unsigned_dynamic_fee_transaction(
        chain_id, nonce, 0, 0, gas, Address(to), 0, data, ()
    )
    transaction = unsigned.as_signed_transaction(key)
    return "0x" + transaction.encode().hex(), "0x" + transaction.hash.hex()


def compute_amount(index: int) -> int:
    """The amount of the ``index``-th payment, 1.00 to 25.00 euro."""
    return 1_00 + (index * 7919) % (MAX_PAYMENT - 1_00 + 1)


def make_holders(count: int, salt: bytes) -> tuple[Holder, ...]:
    holders = []
    for index in range(count):
        key = PrivateKey(keccak(salt + b"holder %d" % index))
        holders.append(Holder(key, key.public_key.to_canonical_address()))
    return tuple(holders)


class PaymentSigner:
    """Signs the holders' payments in turn, each holder in its own consecutive nonces."""

    def __init__(self, chain_id: int, book: bytes, setup: Setup) -> None:
        self.chain_id = chain_id
        self.book = book
        self.setup = setup
        self.nonces = [0] * len(setup.holders)
        self.count = 0

    def sign(self, payments: int) -> list[tuple[str, str, int]]:
        """Payment i of this call comes from holder ``i % holders``; (raw, hash, amount)."""
        signed = []
        holders, merchants = self.setup.holders, self.setup.merchants
        for index in range(payments):
            which = index % len(holders)
            amount = compute_amount(self.count)
            merchant = merchants[(self.count // len(holders)) % len(merchants)]
            data = encode_book_call("pay", merchant, self.setup.token, amount)
            raw, tx_hash = sign_call(
                self.chain_id,
                holders[which].key,
                self.nonces[which],
                self.setup.pay_gas,
                self.book,
                data,
            )
            self.nonces[which] += 1
            self.count += 1
            signed.append((raw, tx_hash, amount))
        return signed


# -- talking to nodes --------------------------------------------------------------


async def call_batch(
    session: aiohttp.ClientSession, url: str, calls: Sequence[tuple[str, list[Any]]]
) -> list[dict[str, Any]]:
    """One JSON-RPC batch; the replies in the order of ``calls``."""
    body = [
        {"jsonrpc": "2.0", "id": index, "method": method, "params": params}
        for index, (method, params) in enumerate(calls)
    ]
    async with session.post(url, json=body) as response:
        replies = await response.json(content_type=None)
    if not isinstance(replies, list) or len(replies) != len(calls):
        raise RuntimeError(f"batch of {len(calls)} on {url} answered {str(replies)[:300]}")
    return sorted(replies, key=lambda reply: int(reply["id"]))


async def call_book(session: aiohttp.ClientSession, url: str, book: bytes, data: bytes) -> bytes:
    """``eth_call`` of the VoucherBook at the head."""
    result = await call_rpc(
        session, url, "eth_call", [{"to": "0x" + book.hex(), "data": "0x" + data.hex()}, "latest"]
    )
    return bytes.fromhex(str(result)[2:])


async def get_books(
    session: aiohttp.ClientSession, url: str, book: bytes, fund: int
) -> dict[str, int]:
    answer = await call_book(session, url, book, encode_book_call("books", fund))
    values = decode(["uint256"] * len(BOOK_FIELDS), answer)
    return dict(zip(BOOK_FIELDS, (int(v) for v in values), strict=True))


async def get_nonce(session: aiohttp.ClientSession, url: str, address: bytes) -> int:
    count = await call_rpc(
        session, url, "eth_getTransactionCount", ["0x" + address.hex(), "latest"]
    )
    return int(count, 16)


async def wait_for_nonce(
    session: aiohttp.ClientSession, url: str, address: bytes, nonce: int
) -> None:
    """Return once ``address`` has ``nonce`` transactions in blocks; raise if it stalls."""
    last, since = -1, time.monotonic()
    while (current := await get_nonce(session, url, address)) < nonce:
        if current != last:
            last, since = current, time.monotonic()
        elif time.monotonic() - since > STALL_TIMEOUT:
            raise SystemExit(
                f"the issuer's transactions stalled at nonce {current} (waiting for {nonce})"
            )
        await asyncio.sleep(0.25)


async def send_in_order(
    session: aiohttp.ClientSession, url: str, signed: Sequence[tuple[str, str]]
) -> None:
    """Send one sender's transactions (consecutive nonces) to ``url``; raise on a refusal."""
    for index in range(0, len(signed), RPC_BATCH):
        chunk = signed[index : index + RPC_BATCH]
        replies = await call_batch(
            session, url, [("eth_sendRawTransaction", [raw]) for raw, _ in chunk]
        )
        refused = [reply["error"] for reply in replies if "error" in reply]
        if refused:
            raise SystemExit(f"a setup transaction was refused: {refused[0]}")


async def get_statuses(
    session: aiohttp.ClientSession, url: str, tx_hashes: Sequence[str]
) -> dict[str, int]:
    """Receipt status of each transaction (they are all in blocks already)."""
    statuses: dict[str, int] = {}
    for index in range(0, len(tx_hashes), RPC_BATCH):
        chunk = tx_hashes[index : index + RPC_BATCH]
        for _ in range(20):
            replies = await call_batch(
                session, url, [("eth_getTransactionReceipt", [h]) for h in chunk]
            )
            if all(reply.get("result") for reply in replies):
                break
            await asyncio.sleep(0.5)  # the node has the block but not yet served its receipts
        for tx_hash, reply in zip(chunk, replies, strict=True):
            if reply.get("result"):
                statuses[tx_hash] = int(reply["result"]["status"], 16)
    return statuses


# -- the untimed setup ----------------------------------------------------------------


class IssuerSender:
    """The issuer's transactions, signed in consecutive nonces and sent in bounded batches."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, chain_id: int, book: bytes, key: PrivateKey
    ) -> None:
        self.session = session
        self.url = url
        self.chain_id = chain_id
        self.book = book
        self.key = key
        self.address = key.public_key.to_canonical_address()
        self.nonce = 0
        self.sent = 0

    async def start(self) -> None:
        self.nonce = await get_nonce(self.session, self.url, self.address)

    async def send(self, calls: Sequence[bytes]) -> None:
        """Sign and send ``calls`` (calldata); return once all are in blocks."""
        for index in range(0, len(calls), ISSUER_BATCH):
            signed = []
            for data in calls[index : index + ISSUER_BATCH]:
                signed.append(
                    sign_call(self.chain_id, self.key, self.nonce, SETUP_GAS, self.book, data)
                )
                self.nonce += 1
            await send_in_order(self.session, self.url, signed)
            await wait_for_nonce(self.session, self.url, self.address, self.nonce)
            self.sent += len(signed)


async def estimate_pay_gas(
    session: aiohttp.ClientSession, url: str, book: bytes, holder: Holder, data: bytes
) -> int:
    call = {"from": "0x" + holder.address.hex(), "to": "0x" + book.hex(), "data": "0x" + data.hex()}
    estimate = int(await call_rpc(session, url, "eth_estimateGas", [call]), 16)
    return math.ceil(estimate * PAY_GAS_MARGIN)


async def set_up_fund(
    session: aiohttp.ClientSession,
    directory: pathlib.Path,
    manifest: dict[str, Any],
    holder_count: int,
    per_holder: int,
) -> Setup:
    """Issuer, fund, shops and holders with LIVING money for ``per_holder`` payments each."""
    began = time.monotonic()
    url = get_validator_urls(manifest)[0]
    book = bytes.fromhex(manifest["contracts"][BOOK_NAME][2:])
    issuer = IssuerSender(
        session, url, int(manifest["chainId"]), book, load_issuer_key(directory, manifest)
    )
    await issuer.start()
    await issuer.send(
        [encode_book_call("registerIssuer"), encode_book_call("createFund", FUND_WINDOW)]
    )
    (fund,) = decode(
        ["uint256"], await call_book(session, url, book, encode_book_call("fund_count"))
    )
    salt = os.urandom(8)
    merchants = tuple(keccak(salt + b"shop %d" % i)[12:] for i in range(MERCHANTS))
    holders = make_holders(holder_count, salt)
    token = int(fund) << 64 | LIVING << 32 | PERIOD
    latest = await call_rpc(session, url, "eth_getBlockByNumber", ["latest", False])
    expiry = int(latest["timestamp"], 16) + EXPIRY_AHEAD
    issued_each = per_holder * MAX_PAYMENT
    log(f"setup: fund {fund}, {MERCHANTS} shops, {holder_count} holders ...")
    await issuer.send(
        [encode_book_call("setMerchant", m, 1 << LIVING, True) for m in merchants]
        + [encode_book_call("setMerchantFund", m, fund, True) for m in merchants]
        + [encode_book_call("registerHolder", h.address, fund) for h in holders]
        + [encode_book_call("issue", h.address, token, issued_each, expiry) for h in holders]
    )
    books = await get_books(session, url, book, int(fund))
    if books["issued"] != issued_each * holder_count or books["held"] != books["issued"]:
        raise SystemExit(f"the setup left unexpected books: {books}")
    first_payment = encode_book_call("pay", merchants[0], token, MAX_PAYMENT)
    pay_gas = await estimate_pay_gas(session, url, book, holders[0], first_payment)
    seconds = time.monotonic() - began
    log(f"setup done in {seconds:.0f} s ({issuer.sent} issuer txs); payments declare {pay_gas} gas")
    return Setup(int(fund), token, merchants, holders, issued_each, pay_gas, issuer.sent, seconds)


def check_spent(books: dict[str, int], setup: Setup, paid: int) -> str:
    """books(fund) after the payments: spent is exactly what was paid, nothing else moved."""
    issued = setup.issued_each * len(setup.holders)
    expected = {"issued": issued, "held": issued - paid, "spent": paid}
    wrong = {k: (books[k], v) for k, v in expected.items() if books[k] != v}
    if wrong:
        return f"WRONG: (found, expected) {wrong}"
    return f"spent {paid} = the sum of the counted payments; held {issued - paid}"


# -- part 1: payments per second on the 4-validator devnet -----------------------------


def summarize_rate(
    result: Result, entries: Sequence[Submission], tracker: CommitTracker, statuses: dict[str, int]
) -> RateFigures:
    accepted = [e for e in entries if e.error is None]
    finalized = [e for e in accepted if e.tx_hash in tracker.commit_at]
    counted = [e for e in finalized if statuses.get(e.tx_hash) == 1]
    ttf = sorted(tracker.commit_at[e.tx_hash] - e.sent_at for e in counted)
    first_sent = min(e.sent_at for e in entries)
    last_commit = max((tracker.commit_at[e.tx_hash] for e in counted), default=first_sent)
    per_second = len(counted) / (last_commit - first_sent) if counted else 0.0
    return RateFigures(
        offered_rate=result.offered_rate,
        sent_rate=result.sent_rate,
        submitted=len(entries),
        refused=len(entries) - len(accepted),
        refusals=result.refusals,
        finalized=len(finalized),
        failed=len(finalized) - len(counted),
        not_finalized=len(accepted) - len(finalized),
        payments_per_second=per_second,
        ttf_p50=percentile(ttf, 0.50),
        ttf_p95=percentile(ttf, 0.95),
        ttf_p99=percentile(ttf, 0.99),
        ttf_max=ttf[-1] if ttf else None,
        blocks=result.blocks,
        payments_per_block_mean=result.txs_per_block_mean,
        other_cpu=result.other_cpu,
        devnet_cpu_ms_per_payment=result.devnet_cpu_ms_per_tx,
        details=asdict(result),
    )


async def offer_payments(
    directory: pathlib.Path,
    manifest: dict[str, Any],
    rates: Sequence[float],
    holders: int,
    per_rate: int,
) -> DevnetFigures:
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=CLIENT_CONNECTIONS)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await wait_until_ready(session, manifest)
        # a rate's payment i comes from holder i % holders
        per_holder = -(-per_rate // holders) * len(rates)
        setup = await set_up_fund(session, directory, manifest, holders, per_holder)
        book = bytes.fromhex(manifest["contracts"][BOOK_NAME][2:])
        signer = PaymentSigner(int(manifest["chainId"]), book, setup)
        log(f"signing {per_rate * len(rates)} payments ...")
        batches = [signer.sign(per_rate) for _ in rates]
        url = get_validator_urls(manifest)[0]
        tracker = CommitTracker(session, manifest)
        await tracker.start()
        figures, paid = [], 0
        try:
            for rate, batch in zip(rates, batches, strict=True):
                log(f"offering {per_rate} payments at {rate:g}/s ...")
                result, entries = await run_rate(
                    session, manifest, tracker, [(raw, h) for raw, h, _ in batch], rate
                )
                print(format_details(result), flush=True)
                finalized = [e.tx_hash for e in entries if e.tx_hash in tracker.commit_at]
                statuses = await get_statuses(session, url, finalized)
                figures.append(summarize_rate(result, entries, tracker, statuses))
                paid += sum(amount for _, h, amount in batch if statuses.get(h) == 1)
                print(format_rate(figures[-1]), flush=True)
                await asyncio.sleep(2.0)  # let the pools empty before the next rate
        finally:
            await tracker.stop()
        books = await get_books(session, url, book, setup.fund)
    return DevnetFigures(
        holders, per_rate, setup.describe(), figures, books, check_spent(books, setup, paid)
    )


def measure_devnet(
    rates: Sequence[float], holders: int, per_rate: int, keep: bool
) -> DevnetFigures:
    with running_devnet(DEVNET_VALIDATORS, keep) as (directory, manifest):
        return asyncio.run(offer_payments(directory, manifest, rates, holders, per_rate))


# -- part 2: fill a 1-validator devnet, then verify its books ---------------------------


class Filler:
    """Sends payments in JSON-RPC batches, a bounded number in flight and in the pool."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, tracker: CommitTracker, deadline: float
    ) -> None:
        self.session = session
        self.url = url
        self.tracker = tracker
        self.deadline = deadline
        self.slots = asyncio.Semaphore(FILL_CONCURRENCY)
        self.accepted: list[str] = []
        self.refusals: Counter[str] = Counter()
        self.sent = 0
        self.baseline = len(tracker.commit_at)

    def get_backlog(self) -> int:
        """Payments sent and not refused that are not in a block yet."""
        included = len(self.tracker.commit_at) - self.baseline
        return self.sent - sum(self.refusals.values()) - included

    async def send_batch(self, chunk: Sequence[tuple[str, str, int]]) -> None:
        try:
            replies = await call_batch(
                self.session, self.url, [("eth_sendRawTransaction", [raw]) for raw, _, _ in chunk]
            )
        except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError) as exc:
            self.refusals[compute_refusal_kind(f"client: {type(exc).__name__}: {exc}")] += len(
                chunk
            )
            return
        finally:
            self.slots.release()
        for (_, tx_hash, _), reply in zip(chunk, replies, strict=True):
            if "error" in reply:
                self.refusals[compute_refusal_kind(reply["error"])] += 1
            else:
                self.accepted.append(tx_hash)

    async def wait_for_room(self) -> None:
        while self.get_backlog() > FILL_BACKLOG:
            self.tracker.progress.clear()
            try:
                await asyncio.wait_for(self.tracker.progress.wait(), STALL_TIMEOUT)
            except TimeoutError:
                raise SystemExit(f"no block for {STALL_TIMEOUT:.0f} s while filling") from None

    async def fill(self, signed: Sequence[tuple[str, str, int]]) -> bool:
        """Send every payment; return False if the deadline stopped it early."""
        tasks = []
        began = last_report = time.monotonic()
        for index in range(0, len(signed), RPC_BATCH):
            if time.monotonic() > self.deadline:
                log(f"fill deadline reached after {self.sent} payments")
                break
            await self.wait_for_room()
            await self.slots.acquire()
            chunk = signed[index : index + RPC_BATCH]
            tasks.append(asyncio.create_task(self.send_batch(chunk)))
            self.sent += len(chunk)
            if time.monotonic() - last_report > PROGRESS_EVERY:
                last_report = time.monotonic()
                included = len(self.tracker.commit_at) - self.baseline
                log(
                    f"  {self.sent} sent, {included} in blocks, "
                    f"{sum(self.refusals.values())} refused, "
                    f"{included / (last_report - began):.0f}/s"
                )
        await asyncio.gather(*tasks)
        return self.sent == len(signed)


def summarize_fill(
    filler: Filler,
    signed: Sequence[tuple[str, str, int]],
    began: float,
    sign_seconds: float,
    completed: bool,
    load: tuple[float | None, float | None],
) -> FillFigures:
    commit_at = filler.tracker.commit_at
    included = [h for h in filler.accepted if h in commit_at]
    last = max((commit_at[h] for h in included), default=began)
    ours = set(filler.accepted)
    sizes = [n for b in filler.tracker.blocks if (n := sum(h in ours for h in b.tx_hashes)) > 0]
    return FillFigures(
        payments=len(signed),
        sign_seconds=sign_seconds,
        submitted=filler.sent,
        refused=sum(filler.refusals.values()),
        refusals=dict(filler.refusals.most_common()),
        included=len(included),
        seconds=last - began,
        payments_per_second=len(included) / (last - began) if included else 0.0,
        blocks=len(sizes),
        payments_per_block_mean=statistics.fmean(sizes) if sizes else 0.0,
        payments_per_block_max=max(sizes, default=0),
        node_cpu=load[0],
        other_cpu=load[1],
        stopped_early=not completed,
    )


async def fill_books(
    directory: pathlib.Path, manifest: dict[str, Any], holders: int, payments: int, minutes: float
) -> tuple[Setup, FillFigures, dict[str, int], str]:
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=CLIENT_CONNECTIONS)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await wait_until_ready(session, manifest)
        setup = await set_up_fund(session, directory, manifest, holders, -(-payments // holders))
        book = bytes.fromhex(manifest["contracts"][BOOK_NAME][2:])
        log(f"signing {payments} payments ...")
        began = time.monotonic()
        signed = PaymentSigner(int(manifest["chainId"]), book, setup).sign(payments)
        sign_seconds = time.monotonic() - began
        url = get_validator_urls(manifest)[0]
        tracker = CommitTracker(session, manifest)
        await tracker.start()
        try:
            meter = LoadMeter([int(n["pid"]) for n in manifest["nodes"]])
            filler = Filler(session, url, tracker, time.monotonic() + minutes * 60)
            log(f"filling: {payments} payments, up to {FILL_BACKLOG} waiting for a block ...")
            began = time.monotonic()
            completed = await filler.fill(signed)
            await tracker.wait_for(filler.accepted, DRAIN_TIMEOUT)
            fill = summarize_fill(filler, signed, began, sign_seconds, completed, meter.measure())
        finally:
            await tracker.stop()
        paid = sum(amount for _, h, amount in signed if h in tracker.commit_at)
        books = await get_books(session, url, book, setup.fund)
    return setup, fill, books, check_spent(books, setup, paid)


def run_verify_command(
    url: str, fund: int, genesis_hash: str, store: pathlib.Path, pids: Sequence[int]
) -> CommandFigures:
    """Run ``polder verify books`` as a user would; its wall time, CPU and peak memory."""
    polder = pathlib.Path(sys.executable).parent / "polder"
    command = [str(polder), "verify", "books", str(fund), "--node", url]
    command += ["--genesis-hash", genesis_hash, "--store", str(store)]
    output_path = store.with_suffix(".out")
    meter = LoadMeter(pids)
    with output_path.open("w") as output:
        began = time.monotonic()
        process = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
        wall = time.monotonic() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return CommandFigures(
        command=command,
        exit_code=process.returncode,
        wall_seconds=wall,
        user_seconds=usage.ru_utime,
        system_seconds=usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,
        other_cpu=meter.measure(extra_cpu=cpu)[1],
        output=output_path.read_text(),
    )


class LogRequests:
    """Times and counts the ``eth_getLogs`` requests of one web3 connection."""

    def __init__(self, eth: Any) -> None:
        self.original = eth.get_logs
        self.seconds = 0.0
        self.refused_seconds = 0.0
        self.requests = 0
        self.refused = 0
        self.logs = 0
        eth.get_logs = self.get_logs

    def get_logs(self, query: Any) -> Any:
        began = time.perf_counter()
        self.requests += 1
        try:
            logs = self.original(query)
        except Web3RPCError:
            self.refused += 1
            self.refused_seconds += time.perf_counter() - began
            raise
        finally:
            self.seconds += time.perf_counter() - began
        self.logs += len(logs)
        return logs


def time_verify_phases(
    url: str, fund: int, genesis_hash: str, store: pathlib.Path, book: str
) -> PhaseFigures:
    """The steps of ``clients.budget_cli.run_verify_books``, each timed."""
    args = build_cli_parser().parse_args(
        [
            "verify",
            "books",
            str(fund),
            "--node",
            url,
            "--genesis-hash",
            genesis_hash,
            "--store",
            str(store),
        ]
    )
    began = time.perf_counter()
    providers = parse_providers(args)
    chains = [(p.name or p.url, BudgetChain(connect(p.url), book)) for p in providers]
    requests = [LogRequests(chain.w3.eth) for _, chain in chains]
    block = min(chain.w3.eth.block_number for _, chain in chains)
    headed = time.perf_counter()
    claimed, source = read_contract_books(args, [p.url for p in providers], book, block)
    proven = time.perf_counter()
    record = collect_events(chains, fund, block)
    collected = time.perf_counter()
    report = verify_books(record, claimed, source)
    verified = time.perf_counter()
    return PhaseFigures(
        head_seconds=headed - began,
        proof_seconds=proven - headed,
        events_seconds=collected - proven,
        get_logs_seconds=sum(r.seconds for r in requests),
        get_logs_refused_seconds=sum(r.refused_seconds for r in requests),
        get_logs_requests=sum(r.requests for r in requests),
        get_logs_refused=sum(r.refused for r in requests),
        logs=sum(r.logs for r in requests),
        events=len(record.events),
        verify_seconds=verified - collected,
        total_seconds=verified - began,
        passed=report.passed,
        checks=list(report.checks),
    )


def profile_verify_phases(
    url: str, fund: int, genesis_hash: str, store: pathlib.Path, book: str
) -> str:
    """cProfile of ``time_verify_phases``: the top functions by cumulative and own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    time_verify_phases(url, fund, genesis_hash, store, book)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(25)
    return text.getvalue()


def time_calls(
    chain: Chain, transactions: Sequence[Any], admins: frozenset[bytes]
) -> tuple[float, float]:
    """Execute ``transactions`` one by one on a fresh state on the head: (median ms, mean gas)."""
    head = chain.head
    header = chain.get_next_header(head, timestamp=head.timestamp + 1, gas_limit=head.gas_limit)
    vm = chain.get_vm(header)
    timed, gas = [], []
    for transaction in transactions:
        before = header.gas_used
        began = time.perf_counter()
        header, _ = apply_transaction(vm, header, transaction, admins)
        timed.append(time.perf_counter() - began)
        gas.append(header.gas_used - before)
    return statistics.median(timed) * 1000, statistics.fmean(gas)


def measure_execution(
    directory: pathlib.Path, manifest: dict[str, Any], setup: Setup
) -> ExecutionFigures:
    """Stop the devnet; time payments and Notary calls in py-evm on the observer's chain."""
    stop_devnet(directory)
    meter = LoadMeter([])
    observer = next(n for n in manifest["nodes"] if n["role"] == "observer")
    config = json.loads(pathlib.Path(observer["config"]).read_text())
    genesis = load_genesis(pathlib.Path(config["genesis"]))
    chain_id = int(manifest["chainId"])
    book = bytes.fromhex(manifest["contracts"][BOOK_NAME][2:])
    notary = bytes.fromhex(manifest["contracts"]["Notary"][2:])
    db = LevelDB(pathlib.Path(config["data_dir"]) / "chain")
    try:
        chain = Chain(db, genesis)
        state = chain.get_vm(chain.head).state
        payments = []
        for index, holder in enumerate(setup.holders[:EXECUTION_SAMPLES]):
            data = encode_book_call(
                "pay", setup.merchants[index % len(setup.merchants)], setup.token, 1_00
            )
            nonce = state.get_nonce(Address(holder.address))
            raw, _ = sign_call(chain_id, holder.key, nonce, setup.pay_gas, book, data)
            payments.append(chain.decode_transaction(bytes.fromhex(raw[2:])))
        records = [
            chain.decode_transaction(bytes.fromhex(raw[2:]))
            for raw, _ in sign_record_calls(chain_id, notary, EXECUTION_SAMPLES, os.urandom(8))
        ]
        pay_ms, pay_gas = time_calls(chain, payments, genesis.admins)
        record_ms, record_gas = time_calls(chain, records, genesis.admins)
    finally:
        db.close()
        release_closed_databases()
    return ExecutionFigures(
        len(payments), pay_ms, pay_gas, record_ms, record_gas, meter.measure()[1]
    )


def measure_books(
    holders: int, payments: int, minutes: float, profile: bool, keep: bool
) -> BooksFigures:
    with running_devnet(BOOKS_VALIDATORS, keep) as (directory, manifest):
        setup, fill, books, books_check = asyncio.run(
            fill_books(directory, manifest, holders, payments, minutes)
        )
        print(format_fill(fill, books_check), flush=True)
        url = get_validator_urls(manifest)[0]
        genesis_hash = str(manifest["genesisHash"])
        book = str(manifest["contracts"][BOOK_NAME]).lower()
        pids = [int(n["pid"]) for n in manifest["nodes"]]
        log(f"running polder verify books {setup.fund} ...")
        command = run_verify_command(
            url, setup.fund, genesis_hash, directory / "light-command.sqlite", pids
        )
        print(format_command(command), flush=True)
        log("timing the steps of verify books in this process ...")
        phases = time_verify_phases(
            url, setup.fund, genesis_hash, directory / "light-phases.sqlite", book
        )
        if profile:
            log("profiling the steps of verify books in this process ...")
            text = profile_verify_phases(
                url, setup.fund, genesis_hash, directory / "light-profile.sqlite", book
            )
            phases = replace(phases, profile=text)
        print(format_phases(phases), flush=True)
        execution = None
        if not keep:
            log(f"timing {EXECUTION_SAMPLES} payments in py-evm alone (devnet stopped) ...")
            execution = measure_execution(directory, manifest, setup)
            print(format_execution(execution), flush=True)
    return BooksFigures(
        holders, setup.describe(), fill, books, books_check, command, phases, execution
    )


# -- the report ------------------------------------------------------------------


def format_rate(r: RateFigures) -> str:
    lines = [
        f"payments at {r.offered_rate:g}/s offered: {r.submitted} submitted, {r.refused} refused,"
        f" {r.finalized} finalized ({r.failed} with receipt status 0), {r.not_finalized} not"
        f" finalized; {r.payments_per_second:.1f} finalized payments/s; time to finality p50"
        f" {seconds(r.ttf_p50)} s, p95 {seconds(r.ttf_p95)} s, p99 {seconds(r.ttf_p99)} s,"
        f" max {seconds(r.ttf_max)} s",
    ]
    if r.other_cpu is not None and r.other_cpu > OTHER_LOAD_WARNING:
        lines.append(f"  WARNING: other processes kept {r.other_cpu:.2f} cores busy")
    return "\n".join(lines)


def format_fill(f: FillFigures, books_check: str) -> str:
    lines = [
        "",
        f"== books devnet ({BOOKS_VALIDATORS} validator + observer) filled: {f.included} of"
        f" {f.payments} payments in blocks ({f.submitted} sent, {f.refused} refused"
        f"{', stopped by the fill deadline' if f.stopped_early else ''})",
        f"fill rate {f.payments_per_second:.1f} payments/s over {f.seconds:.0f} s; {f.blocks}"
        f" blocks, {f.payments_per_block_mean:.0f} payments/block (max"
        f" {f.payments_per_block_max}); nodes used {cores(f.node_cpu)} cores, other processes"
        f" {cores(f.other_cpu)}; signing took {f.sign_seconds:.0f} s (untimed)",
        f"books(fund) after the fill: {books_check}",
    ]
    lines += [f"  refused: {n:6} {kind}" for kind, n in f.refusals.items()]
    return "\n".join(lines)


def format_command(c: CommandFigures) -> str:
    lines = [
        "",
        f"== {' '.join(c.command[1:])}",
        f"exit {c.exit_code}; wall {c.wall_seconds:.1f} s, CPU user {c.user_seconds:.1f} s +"
        f" system {c.system_seconds:.1f} s, peak RSS {c.peak_rss_mb:.0f} MB; other processes"
        f" (besides it and the devnet) {cores(c.other_cpu)} cores",
        "its output:",
    ]
    lines += [f"  | {line}" for line in c.output.rstrip().splitlines()]
    return "\n".join(lines)


def format_phases(p: PhaseFigures) -> str:
    decode_seconds = p.events_seconds - p.get_logs_seconds
    lines = [
        "",
        "== the steps of verify books, timed in this process (fresh header store):",
        f"  head                         {p.head_seconds:7.2f} s",
        f"  books(fund) storage proof    {p.proof_seconds:7.2f} s  (light client from genesis)",
        f"  read the fund's events       {p.events_seconds:7.2f} s  ({p.events} events of the fund"
        f" from {p.logs} logs)",
        f"    in eth_getLogs             {p.get_logs_seconds:7.2f} s  ({p.get_logs_requests}"
        f" requests, {p.get_logs_refused} refused as over the log limit and halved, those took"
        f" {p.get_logs_refused_seconds:.2f} s)",
        f"    decode, filter, sort       {decode_seconds:7.2f} s",
        f"  verify_books (pure)          {p.verify_seconds:7.2f} s",
        f"  total                        {p.total_seconds:7.2f} s  "
        f"({'VERIFIED' if p.passed else 'NOT VERIFIED'})",
    ]
    lines += [f"    {'✓' if ok else '✗'} {name}: {detail}" for name, ok, detail in p.checks]
    if p.profile:
        lines += ["", "cProfile of those steps:", p.profile]
    return "\n".join(lines)


def format_execution(e: ExecutionFigures) -> str:
    return (
        f"\n== py-evm alone (in this process, devnet stopped, median of {e.samples}): one pay"
        f" {e.pay_ms:.2f} ms ({e.pay_gas:,.0f} gas), one Notary.record {e.record_ms:.2f} ms"
        f" ({e.record_gas:,.0f} gas): a payment costs {e.pay_ms / e.record_ms:.1f}x the"
        f" bench_devnet call; other processes {cores(e.other_cpu)} cores"
    )


def format_report(
    machine: dict[str, Any],
    background: float | None,
    devnet: DevnetFigures | None,
    books: BooksFigures | None,
) -> str:
    lines = [
        format_machine(machine),
        f"software: py-evm {machine['py-evm']}, coincurve {machine['coincurve']}, "
        f"plyvel {machine['plyvel']}, aiohttp {machine['aiohttp']}",
        f"other processes used {cores(background)} cores before the run",
        f"targets: >= {TARGET_PAYMENTS_PER_SECOND:.0f} finalized voucher payments/s on the "
        f"{DEVNET_VALIDATORS}-validator devnet (every payment accepted, finalized, status 1); "
        "verify books over the payments: time reported (no bound set)",
    ]
    if devnet is not None:
        lines += format_devnet_table(devnet)
    if books is not None:
        lines += format_books_summary(books)
    return "\n".join(lines)


def format_devnet_table(d: DevnetFigures) -> list[str]:
    s = d.setup
    lines = [
        "",
        f"1. {DEVNET_VALIDATORS}-validator devnet (+ observer): {d.holders} holders, "
        f"{MERCHANTS} shops, {d.payments_per_rate} payments per rate, pay(merchant, LIVING, "
        f"1.00-25.00) with gas {s['pay_gas']}; setup {s['transactions']} issuer txs in "
        f"{s['seconds']:.0f} s",
        f"{'offered':>7} {'sent':>5} {'pay/s':>6} {'p50 s':>6} {'p95 s':>6} {'p99 s':>6} "
        f"{'max s':>6} {'refused':>7} {'status0':>7} {'unfin':>5} {'blocks':>6} {'pay/blk':>7} "
        f"{'ms CPU/pay':>10} {'other':>5} {'target':>6}",
    ]
    for r in d.rates:
        cpu = "-" if r.devnet_cpu_ms_per_payment is None else f"{r.devnet_cpu_ms_per_payment:.1f}"
        lines.append(
            f"{r.offered_rate:>7g} {r.sent_rate:>5.0f} {r.payments_per_second:>6.1f} "
            f"{seconds(r.ttf_p50):>6} {seconds(r.ttf_p95):>6} {seconds(r.ttf_p99):>6} "
            f"{seconds(r.ttf_max):>6} {r.refused:>7} {r.failed:>7} {r.not_finalized:>5} "
            f"{r.blocks:>6} {r.payments_per_block_mean:>7.0f} {cpu:>10} "
            f"{cores(r.other_cpu):>5} {'meets' if r.meets_target else 'MISSES':>6}"
        )
    best = max((r.payments_per_second for r in d.rates), default=0.0)
    lines += [
        "pay/s = payments with receipt status 1 / (their last commit - first submission); "
        "p50..max = time to finality;",
        "status0 = finalized but reverted (not counted); ms CPU/pay = CPU of all 5 node "
        "processes per finalized payment; other = cores used by other processes",
        f"books(fund) after all rates: {d.books_check}",
        f"target >= {TARGET_PAYMENTS_PER_SECOND:.0f} payments/s: best {best:.1f}/s "
        f"({best / TARGET_PAYMENTS_PER_SECOND:.0%} of it): "
        f"{'met' if any(r.meets_target for r in d.rates) else 'NOT MET'}",
    ]
    return lines


def format_books_summary(b: BooksFigures) -> list[str]:
    f, c, p = b.fill, b.command, b.phases
    execution = [] if b.execution is None else [format_execution(b.execution).strip()[3:]]
    return [
        "",
        f"2. books: {BOOKS_VALIDATORS}-validator devnet (+ observer), {b.holders} holders, "
        f"{f.included} payments in blocks (asked {f.payments}); setup "
        f"{b.setup['transactions']} issuer txs in {b.setup['seconds']:.0f} s",
        f"  fill rate {f.payments_per_second:.1f} payments/s ({f.seconds:.0f} s, "
        f"{f.payments_per_block_mean:.0f} payments/block, other processes {cores(f.other_cpu)} "
        "cores)",
        f"  books(fund): {b.books_check}",
        f"  polder verify books: exit {c.exit_code}, {c.wall_seconds:.1f} s wall, "
        f"{c.user_seconds + c.system_seconds:.1f} s CPU, peak RSS {c.peak_rss_mb:.0f} MB "
        f"(other processes {cores(c.other_cpu)} cores)",
        f"  in process: head {p.head_seconds:.2f} s, storage proof {p.proof_seconds:.2f} s, "
        f"events {p.events_seconds:.2f} s (eth_getLogs {p.get_logs_seconds:.2f} s in "
        f"{p.get_logs_requests} requests, {p.get_logs_refused} refused and halved; decoding "
        f"{p.events_seconds - p.get_logs_seconds:.2f} s), verify_books {p.verify_seconds:.2f} s; "
        f"{p.events} events; {'VERIFIED' if p.passed else 'NOT VERIFIED'}",
        *(f"  {line}" for line in execution),
    ]


# -- main ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("devnet", "books", "both"), default="both")
    parser.add_argument(
        "--rates", type=parse_rates, default=[25.0, 50.0, 100.0, 200.0], help="payments/s offered"
    )
    parser.add_argument("--holders", type=int, default=2000, help="holders, a multiple of 4 (2000)")
    parser.add_argument("--payments-per-rate", type=int, default=3000, help="(3000)")
    parser.add_argument(
        "--books-payments", type=int, default=100_000, help="payments to verify (100000)"
    )
    parser.add_argument(
        "--books-max-minutes", type=float, default=90.0, help="stop filling after this (90)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile the steps of verify books"
    )
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="leave the devnets running")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.holders < DEVNET_VALIDATORS or args.holders % DEVNET_VALIDATORS:
        parser.error(f"--holders must be a positive multiple of {DEVNET_VALIDATORS}")
    if args.payments_per_rate < 2 or args.books_payments < 1:
        parser.error("--payments-per-rate must be at least 2 and --books-payments at least 1")
    # a shell starts background jobs with SIGINT ignored: Ctrl-C or kill -INT must still clean up
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_sigterm)
    started = time.perf_counter()
    machine = get_machine() | {"aiohttp": metadata.version("aiohttp")}
    background = measure_background_load(3.0)
    devnet = books = None
    try:
        if args.part in ("devnet", "both"):
            devnet = measure_devnet(args.rates, args.holders, args.payments_per_rate, args.keep)
        if args.part in ("books", "both"):
            books = measure_books(
                args.holders, args.books_payments, args.books_max_minutes, args.profile, args.keep
            )
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    print()
    print(format_report(machine, background, devnet, books))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\n(total run time {time.perf_counter() - started:.0f} s; this process peaked at "
        f"{peak:.0f} MB)"
    )
    if args.json:
        figures = {
            "machine": machine,
            "background_other_cpu": background,
            "target_payments_per_second": TARGET_PAYMENTS_PER_SECOND,
            "devnet": None
            if devnet is None
            else asdict(devnet) | {"meets_target": [r.meets_target for r in devnet.rates]},
            "books": None if books is None else asdict(books),
        }
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
