"""Driving a real multi-process devnet from tests: processes, JSON-RPC, seals, forks.

:class:`Devnet` starts ``python -m node devnet start --validators N`` in a
folder on free ports and drives it through the same CLI an operator uses
(``devnet kill NAME``, ``devnet restart NAME``); :meth:`Devnet.close` stops
every node process it ever saw, gracefully first, then by SIGKILL to the
process group. :class:`ForkChecker` polls every live node in the background
and remembers the first hash any node returned for each height, so a test can
assert that no two answers for one height ever differed. :class:`TxPump`
keeps zero-fee transactions flowing so that blocks come every block period
(1 s) instead of every empty-block period.

Helpers only: no test lives here, and no test module imports another.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from web3 import Web3

from consensus.seal import compute_block_hash, get_extra_data, validate_committed_seals
from contracts.loader import load_artifact

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
P2P_PORT_OFFSET = 1000
"""``devnet start`` puts a node's P2P listener at its RPC port + 1000."""
CLI_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0
RPC_TIMEOUT = 10.0
BATCH = 50
NOTARY = Web3().eth.contract(abi=load_artifact("Notary").abi)
TRANSPORT_ERRORS = (OSError, http.client.HTTPException, ValueError)
"""What a call to a node that is down, starting or dying raises (ValueError: bad JSON)."""

HEADER_FIELDS = (
    ("parentHash", bytes),
    ("sha3Uncles", bytes),
    ("miner", bytes),
    ("stateRoot", bytes),
    ("transactionsRoot", bytes),
    ("receiptsRoot", bytes),
    ("logsBloom", bytes),
    ("difficulty", int),
    ("number", int),
    ("gasLimit", int),
    ("gasUsed", int),
    ("timestamp", int),
    ("extraData", bytes),
    ("mixHash", bytes),
    ("nonce", bytes),
    ("baseFeePerGas", int),
    ("withdrawalsRoot", bytes),
    ("blobGasUsed", int),
    ("excessBlobGas", int),
    ("parentBeaconBlockRoot", bytes),
    ("requestsHash", bytes),
)
"""A Prague header's RLP fields, in order, by their JSON names."""

T = TypeVar("T")


class RpcError(Exception):
    """A node answered a JSON-RPC call with an error object."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        super().__init__(f"{method}: {error}")
        self.error = error


# -- waiting -----------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    describe: str | Callable[[], str],
    interval: float = 0.2,
) -> T:
    """Poll ``condition`` until it returns something truthy; return that.

    Transport errors count as "not yet". On timeout, fail with ``describe``
    (a callable is evaluated then, so it can show the latest state).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except (*TRANSPORT_ERRORS, RpcError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            text = describe() if callable(describe) else describe
            suffix = f" (last error: {last_error!r})" if last_error is not None else ""
            raise AssertionError(f"after {timeout:.0f} s: {text}{suffix}")
        time.sleep(interval)


# -- JSON-RPC ----------------------------------------------------------------------------


def post(url: str, payload: Any, timeout: float = RPC_TIMEOUT) -> Any:
    """POST a JSON-RPC request or batch; return the decoded answer."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def call(url: str, method: str, *params: Any, timeout: float = RPC_TIMEOUT) -> Any:
    """Make one JSON-RPC call; return its result or raise :class:`RpcError`."""
    answer = post(
        url, {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout
    )
    if "error" in answer:
        raise RpcError(method, answer["error"])
    return answer["result"]


def call_batch(
    url: str, calls: list[tuple[str, list[Any]]], timeout: float = RPC_TIMEOUT
) -> list[Any]:
    """Make calls in JSON-RPC batches; return their results in order (errors raise)."""
    results: list[Any] = []
    for start in range(0, len(calls), BATCH):
        chunk = calls[start : start + BATCH]
        body = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
            for i, (method, params) in enumerate(chunk)
        ]
        answers = sorted(post(url, body, timeout), key=lambda a: a["id"])
        for (method, _), answer in zip(chunk, answers, strict=True):
            if "error" in answer:
                raise RpcError(method, answer["error"])
            results.append(answer["result"])
    return results


def get_blocks(url: str, numbers: list[int], full: bool = False) -> list[dict[str, Any] | None]:
    return call_batch(url, [("eth_getBlockByNumber", [hex(n), full]) for n in numbers])


def get_metrics(rpc_url: str) -> dict[str, float]:
    """Read ``/metrics`` (Prometheus text) into name → value."""
    with urllib.request.urlopen(rpc_url + "/metrics", timeout=RPC_TIMEOUT) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


# -- headers and seals -------------------------------------------------------------------


def encode_header_fields(block: dict[str, Any]) -> list[bytes]:
    """Rebuild a header's RLP fields from its JSON object."""
    fields = []
    for name, kind in HEADER_FIELDS:
        value = block[name]
        if kind is int:
            number = int(value, 16)
            fields.append(number.to_bytes((number.bit_length() + 7) // 8, "big"))
        else:
            fields.append(bytes.fromhex(value[2:]))
    return fields


def verify_sealed_block(block: dict[str, Any], validators: list[bytes]) -> frozenset[bytes]:
    """Check a block's hash and its quorum of seals against ``validators``; return the signers.

    Raises (``InvalidSeal``, ``QuorumNotReached``, ``AssertionError``) when the
    hash is not the seal-stripped header hash or the seals are not a quorum of
    distinct validators.
    """
    fields = encode_header_fields(block)
    assert "0x" + compute_block_hash(fields).hex() == block["hash"], (
        f"block {int(block['number'], 16)}: hash is not the header hash without seals"
    )
    return validate_committed_seals(fields, validators)


# -- transactions ------------------------------------------------------------------------


def sign_notary_record(
    account: LocalAccount, chain_id: int, notary: str, nonce: int = 0
) -> tuple[str, str]:
    """A zero-fee ``Notary.record(key, value)`` with random key and value: (raw hex, hash)."""
    value = random.randbytes(31) + b"\x01"
    data = NOTARY.encode_abi("record", [keccak(value), value])
    signed = account.sign_transaction(
        {
            "chainId": chain_id,
            "nonce": nonce,
            "maxFeePerGas": 0,
            "maxPriorityFeePerGas": 0,
            "gas": 200_000,
            "to": notary,
            "value": 0,
            "data": data,
        }
    )
    return "0x" + signed.raw_transaction.hex(), "0x" + signed.hash.hex()


# -- processes ---------------------------------------------------------------------------


def find_free_base_port(count: int) -> int:
    """Return P such that P..P+count-1 and the same ports + 1000 are free on loopback."""
    for _ in range(200):
        # below Linux's ephemeral range (32768+), where outgoing connections take ports
        base = random.randrange(10000, 32768 - P2P_PORT_OFFSET - count)
        ports = [base + i for i in range(count)]
        ports += [p + P2P_PORT_OFFSET for p in ports]
        try:
            for port in ports:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of loopback ports found")


def run_polder(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run the ``polder`` command of this virtualenv, as a user types it."""
    return subprocess.run(
        [str(Path(PYTHON).parent / "polder"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def is_process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie counts as gone)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def log_tail(path: str | Path, chars: int = 3000) -> str:
    try:
        return Path(path).read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


@dataclass
class Devnet:
    """A running devnet in ``directory``, driven through ``python -m node devnet``."""

    directory: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    pids_seen: set[int] = field(default_factory=set)
    """Every node pid any manifest named: teardown stops those still running."""
    down: set[str] = field(default_factory=set)
    """Names of nodes this test process killed and did not restart yet."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- life cycle --------------------------------------------------------------

    @classmethod
    def start(cls, directory: Path, validators: int) -> Devnet:
        base = find_free_base_port(validators + 1)
        net = cls(directory)
        try:
            net.cli("start", "--validators", str(validators), "--base-port", str(base))
        except BaseException:
            net.close()
            raise
        return net

    def cli(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
        """Run ``python -m node devnet ARGS --dir DIR``; return stdout (+ stderr)."""
        command = [PYTHON, "-m", "node", "devnet", *args, "--dir", str(self.directory)]
        try:
            done = subprocess.run(
                command,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=CLI_TIMEOUT,
                check=False,
                env=env,
            )
        finally:
            self.reload()
        output = done.stdout + done.stderr
        if check and done.returncode != 0:
            logs = "\n".join(
                f"--- {n['name']} ---\n{log_tail(n['log'], 1500)}"
                for n in self.manifest.get("nodes", [])
            )
            raise AssertionError(f"devnet {' '.join(args)} failed:\n{output}\n{logs}")
        return output

    def reload(self) -> None:
        try:
            manifest = json.loads((self.directory / "devnet.json").read_text())
        except (OSError, ValueError):
            return
        with self.lock:
            self.manifest = manifest
            self.pids_seen.update(int(n.get("pid") or 0) for n in manifest["nodes"])

    def close(self) -> None:
        """Stop every node process this devnet ever ran: SIGTERM, then SIGKILL the group."""
        self.reload()
        pids = [pid for pid in self.pids_seen if self.is_ours(pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and not all(is_process_gone(p) for p in pids):
            time.sleep(0.1)
        for pid in pids:
            if not is_process_gone(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def is_ours(self, pid: int) -> bool:
        """True if ``pid`` runs a node of this devnet (guards against reused pids)."""
        if is_process_gone(pid):
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return str(self.directory).encode() in cmdline

    # -- nodes ---------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [n["name"] for n in self.manifest["nodes"]]

    @property
    def validator_names(self) -> list[str]:
        return [n["name"] for n in self.manifest["nodes"] if n["role"] == "validator"]

    @property
    def observer_name(self) -> str:
        return next(n["name"] for n in self.manifest["nodes"] if n["role"] == "observer")

    def entry(self, name: str) -> dict[str, Any]:
        with self.lock:
            return dict(next(n for n in self.manifest["nodes"] if n["name"] == name))

    def url(self, name: str) -> str:
        return str(self.entry(name)["rpc"])

    def urls(self) -> dict[str, str]:
        with self.lock:
            return {n["name"]: n["rpc"] for n in self.manifest["nodes"]}

    def pid(self, name: str) -> int:
        return int(self.entry(name)["pid"])

    def is_running(self, name: str) -> bool:
        return not is_process_gone(self.pid(name))

    def up(self, names: list[str] | None = None) -> list[str]:
        """Names (of ``names``, default all) of nodes not killed by this test process."""
        return [n for n in (names or self.names) if n not in self.down]

    def log(self, name: str) -> str:
        return Path(self.entry(name)["log"]).read_text(errors="replace")

    def config_path(self, name: str) -> Path:
        return Path(self.entry(name)["config"])

    def read_config(self, name: str) -> dict[str, Any]:
        return dict(json.loads(self.config_path(name).read_text()))

    def write_config(self, name: str, config: dict[str, Any]) -> None:
        self.config_path(name).write_text(json.dumps(config, indent=2) + "\n")

    def kill(self, name: str) -> None:
        """SIGKILL one node with ``devnet kill`` and wait until it is gone."""
        pid = self.pid(name)
        self.down.add(name)
        self.cli("kill", name)
        wait_until(lambda: is_process_gone(pid), 10, f"{name} (pid {pid}) survived SIGKILL")

    def restart(self, name: str, env: dict[str, str] | None = None) -> None:
        """Start one node again with ``devnet restart`` (it waits for the node's RPC)."""
        self.cli("restart", name, env=env)
        self.down.discard(name)

    # -- JSON-RPC ------------------------------------------------------------------

    def rpc(self, name: str, method: str, *params: Any, timeout: float = RPC_TIMEOUT) -> Any:
        return call(self.url(name), method, *params, timeout=timeout)

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.rpc(name, "polder_status"))

    def head(self, name: str) -> int:
        return int(self.rpc(name, "eth_blockNumber"), 16)

    def block(self, name: str, number: int, full: bool = False) -> dict[str, Any] | None:
        block = self.rpc(name, "eth_getBlockByNumber", hex(number), full)
        return None if block is None else dict(block)

    def block_hash(self, name: str, number: int) -> str | None:
        block = self.block(name, number)
        return None if block is None else str(block["hash"])

    @property
    def genesis(self) -> dict[str, Any]:
        return dict(json.loads(Path(self.manifest["genesis"]).read_text()))

    @property
    def validator_addresses(self) -> list[bytes]:
        """The genesis validator set, in genesis order."""
        return [bytes.fromhex(v["address"][2:]) for v in self.genesis["validators"]]

    def address(self, name: str) -> bytes:
        """A validator's address, from genesis (or, for one added later, the manifest)."""
        for validator in self.genesis["validators"]:
            if validator["name"] == name:
                return bytes.fromhex(validator["address"][2:])
        return bytes.fromhex(self.entry(name)["address"][2:])

    @property
    def chain_id(self) -> int:
        return int(self.manifest["chainId"])

    @property
    def notary(self) -> str:
        return str(self.manifest["contracts"]["Notary"])

    def send_notary_tx(self, name: str, account: LocalAccount | None = None) -> str:
        """Send one ``Notary.record`` from a fresh (or given) account to ``name``; its hash."""
        nonce = 0
        if account is None:
            account = Account.create()
        else:
            nonce = int(self.rpc(name, "eth_getTransactionCount", account.address, "pending"), 16)
        raw, tx_hash = sign_notary_record(account, self.chain_id, self.notary, nonce)
        assert self.rpc(name, "eth_sendRawTransaction", raw) == tx_hash
        return tx_hash

    def wait_receipt(self, name: str, tx_hash: str, timeout: float = 60.0) -> dict[str, Any]:
        return dict(
            wait_until(
                lambda: self.rpc(name, "eth_getTransactionReceipt", tx_hash),
                timeout,
                f"no receipt for {tx_hash} on {name}",
            )
        )

    def wait_for_height(self, names: list[str], height: int, timeout: float) -> None:
        """Wait until every node in ``names`` has a head at or above ``height``."""
        heads: dict[str, int] = {}

        def reached() -> bool:
            for name in names:
                heads[name] = self.head(name)
            return all(h >= height for h in heads.values())

        wait_until(reached, timeout, lambda: f"heads {heads}, wanted {height}")

    def wait_in_sync(self, names: list[str], timeout: float) -> tuple[int, str]:
        """Wait until all ``names`` report one head (height and hash); return it."""
        seen: dict[str, tuple[int, str]] = {}

        def agree() -> tuple[int, str] | None:
            for name in names:
                status = self.status(name)
                seen[name] = (status["height"], status["headHash"])
            heads = set(seen.values())
            return heads.pop() if len(heads) == 1 else None

        return wait_until(agree, timeout, lambda: f"nodes disagree on the head: {seen}", 0.1)

    def wait_caught_up(self, name: str, reference: str, height: int, timeout: float) -> None:
        """Wait until ``name`` holds block ``height`` with the same hash as ``reference``."""

        def caught_up() -> bool:
            mine = self.block_hash(name, height)
            return mine is not None and mine == self.block_hash(reference, height)

        wait_until(
            caught_up,
            timeout,
            lambda: (
                f"{name} did not catch up to block {height} of {reference}; its log:\n"
                + log_tail(self.entry(name)["log"])
            ),
        )

    def seal_signers(self, name: str, number: int) -> frozenset[bytes]:
        """Signers of block ``number`` as ``name`` stores it (seals verified)."""
        block = self.block(name, number)
        assert block is not None, f"{name} has no block {number}"
        # the set of that height, as the header lists it (governance may change it)
        listed = get_extra_data(encode_header_fields(block)).validators
        return verify_sealed_block(block, list(listed))

    def wait_for_seal_by(self, signer: str, after: int, timeout: float) -> int:
        """Wait for a block above ``after`` that carries ``signer``'s seal on some node's copy.

        Nodes keep the seals they collected, so copies may hold different
        (equally valid) quorums; any of them proves that ``signer`` committed.
        Returns that block's number.
        """
        address = self.address(signer)
        checked: dict[tuple[str, int], frozenset[bytes]] = {}

        def sealed() -> int | None:
            for name in self.up():
                head = self.head(name)
                for number in range(after + 1, head + 1):
                    if (name, number) not in checked:
                        checked[name, number] = self.seal_signers(name, number)
                    if address in checked[name, number]:
                        return number
            return None

        return wait_until(
            sealed,
            timeout,
            lambda: (
                f"no block above {after} carries a seal by {signer}; log tail:\n"
                + log_tail(self.entry(signer)["log"])
            ),
            0.3,
        )


# -- background threads ------------------------------------------------------------------


class ForkChecker(threading.Thread):
    """Polls every node; records the first hash seen per height; notes any disagreement."""

    def __init__(self, net: Devnet, interval: float = 0.3) -> None:
        super().__init__(name="fork-checker", daemon=True)
        self.net = net
        self.interval = interval
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.hashes: dict[int, tuple[str, str]] = {}
        """height → (hash, name of the first node that returned it)."""
        self.conflicts: list[str] = []
        self.cursor: dict[str, int] = {}
        """Highest height checked per node."""
        self.observations: dict[str, int] = {}
        """Blocks checked per node."""
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                for name, url in self.net.urls().items():
                    with contextlib.suppress(*TRANSPORT_ERRORS, RpcError):
                        self.poll(name, url)
                self.halt.wait(self.interval)
        except BaseException as exc:  # reported by assert_no_fork
            self.failure = exc

    def poll(self, name: str, url: str) -> None:
        head = int(call(url, "eth_blockNumber", timeout=3.0), 16)
        cursor = self.cursor.get(name, -1)
        if head < cursor:
            cursor = -1  # the node lost its chain (empty data dir): check it again from 0
        numbers = list(range(cursor + 1, head + 1))
        if not numbers:
            return
        blocks = get_blocks(url, numbers)
        with self.lock:
            for number, block in zip(numbers, blocks, strict=True):
                if block is None:
                    self.conflicts.append(f"{name}: block {number} missing below head {head}")
                    continue
                first = self.hashes.setdefault(number, (block["hash"], name))
                if first[0] != block["hash"]:
                    self.conflicts.append(
                        f"height {number}: {first[1]} returned {first[0]}, "
                        f"{name} returned {block['hash']}"
                    )
            self.observations[name] = self.observations.get(name, 0) + len(numbers)
        self.cursor[name] = head

    def assert_no_fork(self, *, running: bool = True) -> None:
        """Fail if any height had two hashes (or, with ``running``, if the thread died)."""
        assert self.failure is None, f"fork checker crashed: {self.failure!r}"
        assert self.is_alive() or not running, "fork checker is not running"
        with self.lock:
            conflicts = list(self.conflicts)
        assert conflicts == [], "two hashes for one height:\n" + "\n".join(conflicts[:20])

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=15)


class TxPump(threading.Thread):
    """Sends a ``Notary.record`` from a fresh account every ``interval`` to a live validator."""

    def __init__(self, net: Devnet, interval: float = 0.4) -> None:
        super().__init__(name="tx-pump", daemon=True)
        self.net = net
        self.interval = interval
        self.halt = threading.Event()
        self.sent: list[tuple[str, str]] = []
        """(node name, tx hash) of every accepted transaction."""
        self.refusals: list[str] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                names = self.net.up(self.net.validator_names)
                if names:
                    name = random.choice(names)
                    raw, tx_hash = sign_notary_record(
                        Account.create(), self.net.chain_id, self.net.notary
                    )
                    try:
                        self.net.rpc(name, "eth_sendRawTransaction", raw, timeout=5.0)
                        self.sent.append((name, tx_hash))
                    except RpcError as exc:
                        self.refusals.append(f"{name}: {exc}")
                    except TRANSPORT_ERRORS:
                        pass  # the node went down between choosing and sending
                self.halt.wait(self.interval)
        except BaseException as exc:
            self.failure = exc

    def __enter__(self) -> TxPump:
        self.start()
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        self.halt.set()
        self.join(timeout=15)
        if exc_type is not None:
            return  # the test's own failure says more
        assert self.failure is None, f"tx pump crashed: {self.failure!r}"
        assert self.refusals == [], (
            f"nodes refused fresh zero-fee transactions: {self.refusals[:5]}"
        )
        assert self.sent, "the tx pump sent nothing"
