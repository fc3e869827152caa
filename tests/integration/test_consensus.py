"""QBFT on a real multi-process devnet: 4 validators and an observer on loopback.

One devnet serves the whole module (``polder devnet start --validators 4``);
the tests run in order and each leaves it healthy for the next: whatever a
test kills it restarts, and an autouse fixture restarts anything left down
(with its byzantine switch removed) and waits until all five nodes agree on
the head before the next test starts.

Throughout, a background :class:`ForkChecker` reads ``eth_getBlockByNumber``
from every live node every 0.3 s and remembers the first hash returned for each
height; the check after each test (and at module end) fails if any node ever
returned another hash for a height (issue 3, test (e)).

Covered (issue 3, "Tests on a real multi-process devnet"): (a) web3.py
transactions finalized with a quorum of valid seals; (b) one validator
SIGKILLed, the chain goes on, it rejoins and seals again; (c) two of four
SIGKILLed, no block and no fork, then blocks resume within a bound; (d) a
validator restarted with an empty data directory syncs and seals again;
(e) above; (f) an equivocating validator is detected, its evidence is served
and checks out, safety holds; (g) a key outside the validator set is refused
at the P2P handshake, and consensus messages signed by non-validators are
never counted even when an allowed peer relays them.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import rlp
from aiohttp import WSCloseCode, WSMsgType
from coincurve import PrivateKey
from devnet_tools import (
    Devnet,
    ForkChecker,
    TxPump,
    get_blocks,
    get_metrics,
    log_tail,
    verify_sealed_block,
    wait_until,
)
from eth_account import Account
from web3 import Web3
from web3.middleware import ExtraDataToPOAMiddleware

from consensus.messages import (
    Commit,
    Prepare,
    RoundChange,
    SignedMessage,
    compute_message_kind,
    decode_signed,
    encode_signed,
    is_same_vote,
    sign_message,
)
from consensus.qbft import validate_equivocation
from consensus.seal import compute_address, decode_extra_data
from contracts.loader import load_artifact
from node.config import load_private_key
from node.p2p import (
    Hello,
    P2PNetwork,
    PeerInfo,
    decode_challenge,
    encode_hello,
    sign_handshake,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VALIDATORS = 4
QUORUM = 3
SYNC_TIMEOUT = 60.0
HALT_SECONDS = 8.0
"""How long two killed validators of four must leave the chain without new blocks."""
RESUME_BOUND = 60.0
"""Blocks resume within this after the two are back (round timeouts cap at 30 s)."""
FORGED_ROUND = 40
"""Round that forged round changes ask for; a node that counted them would jump there."""
BYZANTINE_ENV = "POLDER_ALLOW_BYZANTINE"
KINDS = {"PROPOSAL", "PREPARE", "COMMIT"}
"""Kinds the byzantine mode twins (a proposal twin needs the byzantine node to propose)."""


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checker(net: Devnet) -> Iterator[ForkChecker]:
    fork_checker = ForkChecker(net)
    fork_checker.start()
    try:
        yield fork_checker
    finally:
        fork_checker.stop()
    fork_checker.assert_no_fork(running=False)


@pytest.fixture(autouse=True)
def healthy(net: Devnet, checker: ForkChecker) -> Iterator[None]:
    """Start each test on a whole, honest, agreeing devnet; check (e) after it."""
    restore_devnet(net)
    yield
    checker.assert_no_fork()


def honest_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != BYZANTINE_ENV}


def restore_devnet(net: Devnet) -> None:
    """Restart whatever is down or byzantine (honest), then wait until all nodes agree."""
    for name in net.names:
        config = net.read_config(name)
        byzantine = config.pop("byzantine", None) is not None
        if byzantine:
            net.write_config(name, config)
        if byzantine or not net.is_running(name):
            net.restart(name, env=honest_env())
    net.wait_in_sync(net.names, SYNC_TIMEOUT)


# -- helpers ----------------------------------------------------------------------------------


def make_web3(url: str) -> Web3:
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    return w3


def check_sealed_range(
    net: Devnet, name: str, first: int, last: int, absent: bytes | None = None
) -> None:
    """Every block ``first..last`` on ``name``: right hash, ≥ 3 distinct validator seals.

    With ``absent``, no block in the range may carry that validator's seal.
    """
    validators = net.validator_addresses
    numbers = list(range(first, last + 1))
    for number, block in zip(numbers, get_blocks(net.url(name), numbers), strict=True):
        assert block is not None, f"{name} has no block {number}"
        signers = verify_sealed_block(block, validators)
        assert len(signers) >= QUORUM, (number, signers)
        extra = decode_extra_data(bytes.fromhex(block["extraData"][2:]))
        assert list(extra.validators) == validators, f"block {number} names another set"
        if absent is not None:
            assert absent not in signers, f"block {number} carries a seal by a dead validator"


def head_of(net: Devnet, names: list[str]) -> int:
    return max(net.head(name) for name in names)


def evidence(net: Devnet, name: str) -> list[dict[str, Any]]:
    return list(net.rpc(name, "polder_getEvidence"))


def check_evidence_entry(entry: dict[str, Any], culprit: bytes, net: Devnet) -> None:
    """Anyone can verify an entry: two decodable messages, one signer, one slot, different."""
    first = decode_signed(bytes.fromhex(entry["first"][2:]))
    second = decode_signed(bytes.fromhex(entry["second"][2:]))
    signer = validate_equivocation(first, second, net.validator_addresses, net.chain_id)
    assert signer == culprit, entry
    assert entry["validator"] == "0x" + culprit.hex()
    for message in (first, second):
        assert message.payload.height == entry["height"], entry
        assert message.payload.round == entry["round"], entry
        assert compute_message_kind(message.payload).name == entry["kind"], entry
    assert entry["first"] != entry["second"]
    assert not is_same_vote(first.payload, second.payload)


def random_key() -> tuple[bytes, bytes]:
    key = PrivateKey()
    return key.secret, compute_address(key.public_key)


async def no_message(peer: bytes, kind: str, payload: bytes) -> None:
    del peer, kind, payload


@asynccontextmanager
async def observer_channel(net: Devnet, requests: list[tuple[bytes, str]]) -> AsyncIterator[Any]:
    """Stand in for the Observer: its (allowed) key, dialling every validator.

    The Observer process is killed first, so the validators hold exactly one
    connection for that key: ours. It is restarted afterwards. Block-sync
    requests the validators send us are recorded in ``requests`` and answered
    with no blocks.
    """
    observer = net.observer_name
    await asyncio.to_thread(net.kill, observer)
    key = load_private_key(net.directory / "keys" / "observer.key")
    validators = set(net.validator_addresses)

    async def on_request(peer: bytes, kind: str, payload: bytes) -> bytes:
        del payload
        requests.append((peer, kind))
        encoded: bytes = rlp.encode([])
        return encoded

    p2p = P2PNetwork(
        private_key=key,
        chain_id=net.chain_id,
        genesis_hash=bytes.fromhex(net.manifest["genesisHash"][2:]),
        host="127.0.0.1",
        port=0,
        peers=[
            PeerInfo(bytes.fromhex(v["address"][2:]), v["p2p"]) for v in net.genesis["validators"]
        ],
        allowed=lambda address: address in validators,
        on_message=no_message,
        on_request=on_request,
        backoff_initial=0.05,
        backoff_max=0.5,
    )
    await p2p.start()
    try:
        deadline = time.monotonic() + 20
        while set(p2p.connected_peers()) != validators:
            assert time.monotonic() < deadline, "the observer key could not connect"
            await asyncio.sleep(0.1)
        yield p2p
    finally:
        await p2p.stop()
        await asyncio.to_thread(net.restart, observer)


# -- the healthy devnet ---------------------------------------------------------------------


def test_healthy_devnet_status_metrics_and_observer(net: Devnet) -> None:
    validators = ["0x" + v.hex() for v in net.validator_addresses]
    observer = net.observer_name
    observer_address = net.status(observer)["address"]
    for name in net.validator_names:
        expected = sorted({*validators, observer_address} - {"0x" + net.address(name).hex()})
        wait_until(
            lambda name=name, expected=expected: sorted(net.status(name)["peers"]) == expected,
            20,
            lambda name=name: f"{name} peers: {net.status(name)['peers']}",
        )
        status = net.status(name)
        assert status["role"] == "validator"
        assert status["address"] == "0x" + net.address(name).hex()
        assert len(status["peers"]) == VALIDATORS
        assert status["validators"] == validators
        assert status["genesisHash"] == net.manifest["genesisHash"]
    wait_until(
        lambda: sorted(net.status(observer)["peers"]) == sorted(validators),
        20,
        lambda: f"{observer} peers: {net.status(observer)['peers']}",
    )
    assert net.status(observer)["role"] == "observer"

    # the chain is moving and the observer follows it
    start = net.head("Schiedam")
    net.wait_for_height(net.names, start + 1, 30)
    net.wait_caught_up(observer, "Schiedam", start + 1, 30)
    block = net.block(observer, start + 1, full=True)
    assert block is not None
    assert block["hash"] == net.block_hash("Schiedam", start + 1)
    check_sealed_range(net, observer, 1, start + 1)

    for name in net.names:
        before = net.head(name)
        metrics = get_metrics(net.url(name))
        after = net.head(name)
        assert before <= metrics["polder_block_height"] <= after, (name, metrics)
        assert metrics["polder_round_changes_total"] >= 0
        assert metrics["polder_peers"] == VALIDATORS, (name, metrics)


# -- (a) ----------------------------------------------------------------------------------------


def test_a_validators_finalize_web3_transactions_with_a_quorum_of_seals(net: Devnet) -> None:
    notary_abi = load_artifact("Notary").abi
    sent: list[tuple[Web3, bytes]] = []
    recorded: dict[bytes, bytes] = {}
    for index, name in enumerate(net.validator_names):
        w3 = make_web3(net.url(name))
        notary = w3.eth.contract(address=net.notary, abi=notary_abi)
        account = Account.create()
        assert w3.eth.get_balance(account.address) == 0
        for nonce in range(3):
            value = random.randbytes(31) + bytes([index + 1])
            recorded[Web3.keccak(value)] = value
            tx = notary.functions.record(Web3.keccak(value), value).build_transaction(
                {
                    "from": account.address,
                    "nonce": nonce,
                    "gas": 200_000,
                    "maxFeePerGas": 0,
                    "maxPriorityFeePerGas": 0,
                    "chainId": net.chain_id,
                }
            )
            signed = account.sign_transaction(tx)
            sent.append((w3, w3.eth.send_raw_transaction(signed.raw_transaction)))

    receipts = [
        w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.2)
        for w3, tx_hash in sent
    ]
    assert [r["status"] for r in receipts] == [1] * len(sent)
    assert all(len(r["logs"]) == 1 for r in receipts)
    last = max(r["blockNumber"] for r in receipts)

    # every node holds the same blocks with the transactions, each sealed by a quorum
    net.wait_for_height(net.names, last, SYNC_TIMEOUT)
    for name in net.names:
        for receipt in receipts:
            block = net.block(name, receipt["blockNumber"])
            assert block is not None
            assert block["hash"] == "0x" + receipt["blockHash"].hex(), name
            assert "0x" + receipt["transactionHash"].hex() in block["transactions"]
        check_sealed_range(net, name, 1, last)
    # the observer serves the resulting state through web3 as well
    observer = make_web3(net.url(net.observer_name))
    assert "0x" + observer.eth.get_block(last)["hash"].hex() == net.block_hash("Schiedam", last)
    notary = observer.eth.contract(address=net.notary, abi=notary_abi)
    for key, value in recorded.items():
        assert notary.functions.values(key).call(block_identifier=last) == value
    # every node executed those blocks reading trie nodes through its cache
    for name in net.names:
        metrics = get_metrics(net.url(name))
        assert metrics["polder_trie_node_cache_hits_total"] > 0, (name, metrics)
        assert metrics["polder_trie_node_cache_nodes"] > 0, (name, metrics)


# -- (b) ----------------------------------------------------------------------------------------


def test_b_one_validator_killed_chain_goes_on_and_it_rejoins_and_seals(net: Devnet) -> None:
    victim = "Vlaardingen"
    survivors = [n for n in net.validator_names if n != victim]
    net.kill(victim)
    killed_at = head_of(net, survivors)
    with TxPump(net):
        tx_hashes = [(name, net.send_notary_tx(name)) for name in survivors]
        receipts = [net.wait_receipt(name, tx_hash) for name, tx_hash in tx_hashes]
        assert [r["status"] for r in receipts] == ["0x1"] * len(receipts)
        net.wait_for_height([*survivors, net.observer_name], killed_at + 4, SYNC_TIMEOUT)
        # the victim's commit for killed_at + 1 may have been in flight; none after it
        check_sealed_range(
            net, "Schiedam", killed_at + 2, net.head("Schiedam"), absent=net.address(victim)
        )

        net.restart(victim)
        target = net.head("Schiedam")
        net.wait_caught_up(victim, "Schiedam", target, SYNC_TIMEOUT)
        for receipt in receipts:
            mine = net.rpc(victim, "eth_getTransactionReceipt", receipt["transactionHash"])
            assert mine is not None
            assert mine["blockHash"] == receipt["blockHash"]
        net.wait_for_seal_by(victim, target, SYNC_TIMEOUT)
    net.wait_in_sync(net.names, SYNC_TIMEOUT)
    wait_until(
        lambda: len(net.status(victim)["peers"]) == VALIDATORS,
        20,
        lambda: f"{victim} peers: {net.status(victim)['peers']}",
    )


# -- (c) ----------------------------------------------------------------------------------------


def test_c_two_of_four_killed_no_blocks_no_fork_then_blocks_resume(net: Devnet) -> None:
    killed = ["Rotterdam", "Maassluis"]
    alive = [n for n in net.validator_names if n not in killed]
    watched = [*alive, net.observer_name]
    for name in killed:
        net.kill(name)
    # a block whose commits were already on the wire may still land; then nothing
    halted_at, halted_hash = net.wait_in_sync(watched, 20)
    changes_before = {n: get_metrics(net.url(n))["polder_round_changes_total"] for n in alive}
    log_offsets = {n: len(net.log(n)) for n in alive}
    tx_hash = net.send_notary_tx("Schiedam")

    deadline = time.monotonic() + HALT_SECONDS
    while time.monotonic() < deadline:
        for name in watched:
            status = net.status(name)
            assert status["height"] == halted_at, (
                f"{name} reached block {status['height']} with two of four validators down"
            )
            assert status["headHash"] == halted_hash
        time.sleep(0.25)
    # the two are not idle: their rounds time out and change
    for name in alive:
        assert get_metrics(net.url(name))["polder_round_changes_total"] > changes_before[name]
        assert "timed out without a decision" in net.log(name)[log_offsets[name] :]
    assert net.rpc("Schiedam", "eth_getTransactionReceipt", tx_hash) is None

    restarted = time.monotonic()
    for name in killed:
        net.restart(name)
    net.wait_for_height(net.names, halted_at + 1, RESUME_BOUND)
    resumed_after = time.monotonic() - restarted
    assert resumed_after < RESUME_BOUND
    print(f"(c) halted at block {halted_at}; blocks resumed {resumed_after:.1f} s after restart")
    assert net.wait_receipt("Schiedam", tx_hash)["status"] == "0x1"
    first = net.block_hash("Schiedam", halted_at + 1)
    assert all(net.block_hash(name, halted_at + 1) == first for name in net.names)
    assert net.block_hash("Rotterdam", halted_at) == halted_hash


# -- (d) ----------------------------------------------------------------------------------------


def test_d_validator_with_an_empty_data_dir_syncs_and_seals_again(net: Devnet) -> None:
    victim = "Rotterdam"
    data_dir = Path(net.read_config(victim)["data_dir"])
    net.kill(victim)
    assert (data_dir / "chain").is_dir()
    shutil.rmtree(data_dir)
    with TxPump(net):
        others = [n for n in net.validator_names if n != victim]
        net.wait_for_height(others, head_of(net, others) + 2, SYNC_TIMEOUT)
        net.restart(victim)
        target = net.head("Schiedam")
        net.wait_caught_up(victim, "Schiedam", target, SYNC_TIMEOUT)
        numbers = list(range(target + 1))
        mine = get_blocks(net.url(victim), numbers)
        theirs = get_blocks(net.url("Schiedam"), numbers)
        assert [b and b["hash"] for b in mine] == [b and b["hash"] for b in theirs]
        check_sealed_range(net, victim, 1, target)
        net.wait_for_seal_by(victim, target, SYNC_TIMEOUT)
    net.wait_in_sync(net.names, SYNC_TIMEOUT)
    assert (data_dir / "chain").is_dir()


# -- (f) ----------------------------------------------------------------------------------------


def test_f_equivocating_validator_is_detected_evidence_served_safety_holds(net: Devnet) -> None:
    culprit = "Maassluis"
    culprit_address = net.address(culprit)
    honest = [n for n in net.validator_names if n != culprit]
    for name in honest:
        assert evidence(net, name) == [], f"{name} holds evidence against an honest validator"

    config = net.read_config(culprit)
    net.write_config(culprit, {**config, "byzantine": "equivocate"})
    try:
        # the byzantine switch is refused unless the test-only variable is set
        output = net.cli("restart", culprit, env=honest_env(), check=False)
        net.down.add(culprit)
        assert "byzantine mode is for tests only" in output, output
        net.restart(culprit, env={**os.environ, BYZANTINE_ENV: "1"})
        started_at = net.head("Schiedam")

        with TxPump(net):
            kinds: set[str] = set()

            def detected_everywhere() -> bool:
                for name in honest:
                    entries = evidence(net, name)
                    kinds.update(e["kind"] for e in entries)
                    if not entries:
                        return False
                return kinds >= KINDS

            wait_until(
                detected_everywhere,
                SYNC_TIMEOUT,
                lambda: (
                    f"evidence kinds so far {kinds}; culprit log:\n"
                    + log_tail(net.entry(culprit)["log"])
                ),
                0.5,
            )
            # safety and liveness with one equivocating validator of four
            net.wait_for_height(net.names, started_at + 3, SYNC_TIMEOUT)
        assert "byzantine mode: sent a conflicting" in net.log(culprit)
        served = {name: evidence(net, name) for name in honest}
        for name, entries in served.items():
            for entry in entries:
                check_evidence_entry(entry, culprit_address, net)
            assert len({(e["height"], e["round"], e["kind"]) for e in entries}) == len(entries), (
                f"{name} reports one equivocation twice"
            )
        head = net.wait_in_sync(net.names, SYNC_TIMEOUT)[0]
        for name in net.names:
            check_sealed_range(net, name, started_at, head)

        # evidence is kept on disk: a restarted honest node still serves it
        witness = honest[-1]
        net.restart(witness)
        kept = evidence(net, witness)
        assert kept[: len(served[witness])] == served[witness]
    finally:
        net.write_config(culprit, config)

    # back to honest: it rejoins, seals again, and no new evidence is raised against it
    net.restart(culprit, env=honest_env())
    target = net.head("Schiedam")
    net.wait_caught_up(culprit, "Schiedam", target, SYNC_TIMEOUT)
    with TxPump(net):
        sealed_at = net.wait_for_seal_by(culprit, target, SYNC_TIMEOUT)
        counts = {name: len(evidence(net, name)) for name in honest}
        net.wait_for_height(net.names, sealed_at + 3, SYNC_TIMEOUT)
    assert {name: len(evidence(net, name)) for name in honest} == counts


# -- (g) ----------------------------------------------------------------------------------------


async def test_g_p2p_handshake_from_a_key_outside_the_validator_set_is_refused(
    net: Devnet,
) -> None:
    target = "Schiedam"
    endpoint = next(v["p2p"] for v in net.genesis["validators"] if v["name"] == target)
    key, outsider = random_key()
    received: list[str] = []

    async def on_message(peer: bytes, kind: str, payload: bytes) -> None:
        del peer, payload
        received.append(kind)

    async def on_request(peer: bytes, kind: str, payload: bytes) -> bytes:
        del peer, payload
        received.append(kind)
        return b""

    p2p = P2PNetwork(
        private_key=key,
        chain_id=net.chain_id,
        genesis_hash=bytes.fromhex(net.manifest["genesisHash"][2:]),
        host="127.0.0.1",
        port=0,
        peers=[PeerInfo(net.address(target), endpoint)],
        allowed=lambda address: True,
        on_message=on_message,
        on_request=on_request,
        backoff_initial=0.05,
        backoff_max=0.3,
    )
    refusals: list[str] = []
    await p2p.start()
    try:
        deadline = time.monotonic() + 20
        while len(refusals) < 2 or p2p.metrics.dial_failures < 2:
            assert time.monotonic() < deadline, (
                f"{target} did not log refusing 0x{outsider.hex()} twice; dial failures "
                f"{p2p.metrics.dial_failures}"
            )
            status = await asyncio.to_thread(net.status, target)
            assert "0x" + outsider.hex() not in status["peers"]
            assert p2p.connected_peers() == []
            log = await asyncio.to_thread(net.log, target)
            refusals = [
                line
                for line in log.splitlines()
                if "refused p2p handshake" in line and outsider.hex() in line
            ]
            await asyncio.sleep(0.2)
    finally:
        await p2p.stop()
    assert received == []
    assert "not an allowed peer" in refusals[0], refusals[0]

    # claiming a validator's address without its key is refused as well
    impostor = net.address("Vlaardingen")
    async with aiohttp.ClientSession() as session, session.ws_connect(endpoint) as ws:
        challenge = decode_challenge(await ws.receive_bytes(timeout=5))
        signature = sign_handshake(
            key,
            net.chain_id,
            bytes.fromhex(net.manifest["genesisHash"][2:]),
            challenge,
            net.address(target),
        )
        await ws.send_bytes(
            encode_hello(Hello(address=impostor, signature=signature, challenge=bytes(32)))
        )
        closing = await ws.receive(timeout=5)
        assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
        assert ws.close_code == WSCloseCode.POLICY_VIOLATION
    log = await asyncio.to_thread(net.log, target)
    assert any(
        "refused p2p handshake" in line and "does not prove key" in line and impostor.hex() in line
        for line in log.splitlines()
    )
    status = await asyncio.to_thread(net.status, target)
    assert len(status["peers"]) == VALIDATORS


def forge_messages(height: int, keys: list[bytes], chain_id: int) -> list[SignedMessage[Any]]:
    """Messages for ``height`` signed by non-validator keys that would matter if counted.

    * round changes to ``FORGED_ROUND`` from every key: f + 1 of them make a
      validator jump to that round, a quorum justifies a proposal there;
    * two different prepares by the first key for round 0: an "equivocation";
    * prepares and commits for a made-up block from every key: a quorum would
      prepare and decide it.
    """
    fake = random.randbytes(32)
    messages: list[SignedMessage[Any]] = []
    for key in keys:
        messages.append(sign_message(RoundChange(height, FORGED_ROUND), key, chain_id))
        messages.append(sign_message(Prepare(height, 0, fake), key, chain_id))
        seal = random.randbytes(64) + b"\x00"
        messages.append(sign_message(Commit(height, 0, fake, seal), key, chain_id))
    messages.append(sign_message(Prepare(height, 0, random.randbytes(32)), keys[0], chain_id))
    return messages


async def test_g_consensus_messages_signed_by_non_validators_are_never_counted(
    net: Devnet,
) -> None:
    keys = [random_key() for _ in range(QUORUM)]
    forged_signers = {"0x" + address.hex() for _, address in keys}
    requests: list[tuple[bytes, str]] = []
    validators = net.validator_names
    async with observer_channel(net, requests) as p2p:
        # the channel reaches each validator's node: announcing a far higher head makes
        # every one of them ask us for blocks
        head = await asyncio.to_thread(head_of, net, validators)
        deadline = time.monotonic() + 20
        while {peer for peer, kind in requests if kind == "blocks"} != set(net.validator_addresses):
            assert time.monotonic() < deadline, f"sync requests seen: {requests}"
            await p2p.broadcast("status", rlp.encode(head + 1000))
            await asyncio.sleep(0.5)

        statuses = [await asyncio.to_thread(net.status, name) for name in validators]
        heights = {s["consensusHeight"] for s in statuses}
        start_head = min(s["height"] for s in statuses)
        for height in sorted(heights | {max(heights) + 1}):
            for message in forge_messages(height, [k for k, _ in keys], net.chain_id):
                await p2p.broadcast("qbft", encode_signed(message))

        # never counted: no jump to the forged round, no forged evidence, blocks go on
        deadline = time.monotonic() + 15
        while True:
            statuses = [await asyncio.to_thread(net.status, name) for name in validators]
            for status in statuses:
                assert status["round"] < FORGED_ROUND, status
            if min(s["height"] for s in statuses) >= start_head + 2:
                break
            assert time.monotonic() < deadline, f"the chain stalled: {statuses}"
            await asyncio.sleep(0.2)
        for name in validators:
            accused = {e["validator"] for e in await asyncio.to_thread(evidence, net, name)}
            assert not accused & forged_signers, (name, accused)
            assert get_metrics(net.url(name))["polder_round_changes_total"] < FORGED_ROUND


async def test_status_announcing_a_lower_head_starts_no_block_sync(net: Devnet) -> None:
    """A peer's head announcement is decoded as it is encoded.

    Nodes announce ``rlp.encode(head)`` (node/bft.py ``announce_status``); a
    peer announcing head 0 has nothing a validator at a higher head needs, so
    no validator may ask it for blocks.
    """
    requests: list[tuple[bytes, str]] = []
    async with observer_channel(net, requests) as p2p:
        head = await asyncio.to_thread(head_of, net, net.validator_names)
        assert head >= 1
        for _ in range(6):
            await p2p.broadcast("status", rlp.encode(0))
            await asyncio.sleep(0.5)
        assert [kind for _, kind in requests] == [], (
            "validators at head >= 1 asked a peer that announced head 0 for blocks: "
            "its announcement rlp.encode(0) = 0x80 was read as head 128"
        )


# -- (e) over the whole module ------------------------------------------------------------------


def test_e_all_nodes_hold_one_chain_with_valid_seals(net: Devnet, checker: ForkChecker) -> None:
    head, _ = net.wait_in_sync(net.names, SYNC_TIMEOUT)
    numbers = list(range(head + 1))
    chains = {name: get_blocks(net.url(name), numbers) for name in net.names}
    reference = [b and b["hash"] for b in chains["Schiedam"]]
    assert reference[0] == net.manifest["genesisHash"]
    for name, blocks in chains.items():
        assert [b and b["hash"] for b in blocks] == reference, name
        for number in numbers[1:]:
            block = blocks[number]
            assert block is not None
            assert block["parentHash"] == reference[number - 1]
            assert len(verify_sealed_block(block, net.validator_addresses)) >= QUORUM
    checker.assert_no_fork()
    assert all(checker.observations.get(name, 0) >= head for name in net.names), (
        checker.observations
    )
