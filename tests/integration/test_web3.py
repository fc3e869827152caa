"""web3.py against a real node: HTTP and WebSocket, contracts, logs, proofs, blocks."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import rlp
from devnet_tools import encode_header_fields
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from trie import HexaryTrie
from web3 import AsyncWeb3, Web3, WebSocketProvider
from web3.contract import Contract
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError
from web3.middleware import ExtraDataToPOAMiddleware

from consensus.seal import compute_block_hash, get_extra_data, validate_committed_seals
from contracts.loader import load_artifact

pytestmark = [pytest.mark.integration]

RECORDED_TOPIC = keccak(b"Recorded(bytes32,bytes32,address)")
COUNT_SLOT = 1
ZERO32 = b"\x00" * 32
WS_TIMEOUT = 20.0


# -- helpers -------------------------------------------------------------------------------


def topic_of_address(address: str) -> str:
    return "0x" + (b"\x00" * 12 + bytes.fromhex(address[2:])).hex()


def decode_proof(nodes: list[Any]) -> list[Any]:
    return [rlp.decode(bytes(node)) for node in nodes]


def record_call(notary: Contract, key: bytes, value: bytes) -> dict[str, Any]:
    """The ``to``/``data`` of a ``record(key, value)`` transaction."""
    return {"to": notary.address, "data": notary.encode_abi("record", [key, value])}


@asynccontextmanager
async def ws_web3(url: str, *, text_frames: bool = True) -> AsyncIterator[AsyncWeb3[Any]]:
    """An AsyncWeb3 over the node's WebSocket endpoint.

    ``text_frames`` is on for the subscription tests so that they test
    subscriptions; ``test_websocket_provider_with_default_settings`` covers
    web3.py's default, binary frames.
    """
    provider = WebSocketProvider(url, use_text_frames=text_frames, request_timeout=WS_TIMEOUT)
    async with AsyncWeb3(provider) as aw3:
        aw3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
        yield aw3


async def next_notification(aw3: AsyncWeb3[Any], sub_id: str) -> Any:
    """Return the next ``eth_subscription`` result for ``sub_id``."""
    async with asyncio.timeout(WS_TIMEOUT):
        async for message in aw3.socket.process_subscriptions():
            if message["subscription"] == sub_id:
                return message["result"]
    raise AssertionError("subscription stream ended")


# -- fixtures ------------------------------------------------------------------------------


def transact_with_web3(
    w3: Web3, account: LocalAccount, tx: dict[str, Any], wait_receipt: Callable[[str], Any]
) -> dict[str, Any]:
    """Sign and send ``tx`` (gas estimated by web3.py); return the node's raw receipt."""
    fields = {
        "from": account.address,
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "maxFeePerGas": 0,
        "maxPriorityFeePerGas": 0,
        **tx,
    }
    signed = account.sign_transaction({"gas": w3.eth.estimate_gas(fields), **fields})
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    typed = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.1)
    receipt: dict[str, Any] = wait_receipt(tx_hash.to_0x_hex())
    assert receipt["blockHash"] == typed["blockHash"].to_0x_hex()
    return receipt


@pytest.fixture(scope="module")
def deployment(w3: Web3, admin: LocalAccount, wait_receipt: Callable[[str], Any]) -> dict[str, Any]:
    """The receipt of the admin's deployment of a fresh Notary."""
    artifact = load_artifact("Notary")
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx = factory.constructor().build_transaction(
        {"from": admin.address, "maxFeePerGas": 0, "maxPriorityFeePerGas": 0}
    )
    return transact_with_web3(w3, admin, {"data": tx["data"]}, wait_receipt)


@pytest.fixture(scope="module")
def notary(w3: Web3, deployment: dict[str, Any]) -> Contract:
    address = Web3.to_checksum_address(deployment["contractAddress"])
    return w3.eth.contract(address=address, abi=load_artifact("Notary").abi)


@pytest.fixture(scope="module")
def recorded(w3: Web3, notary: Contract, wait_receipt: Callable[[str], Any]) -> dict[str, Any]:
    """A fresh zero-balance account records one value; its facts for later tests."""
    author = Account.create()
    key, value = keccak(b"integration key"), keccak(b"integration value")
    before = {
        "balance": w3.eth.get_balance(author.address),
        "nonce": w3.eth.get_transaction_count(author.address),
    }
    call = notary.functions.record(key, value).build_transaction(
        {"from": author.address, "maxFeePerGas": 0, "maxPriorityFeePerGas": 0}
    )
    receipt = transact_with_web3(w3, author, {"to": call["to"], "data": call["data"]}, wait_receipt)
    return {"author": author, "key": key, "value": value, "receipt": receipt, "before": before}


# -- deployment and transactions ----------------------------------------------------------------


def test_admin_deploys_notary(w3: Web3, deployment: dict[str, Any], admin: LocalAccount) -> None:
    assert deployment["status"] == "0x1"
    assert deployment["from"].lower() == admin.address.lower()
    code = w3.eth.get_code(Web3.to_checksum_address(deployment["contractAddress"]))
    assert bytes(code) == load_artifact("Notary").runtime_bytecode


def test_non_admin_deploy_is_refused_with_a_clear_error(
    w3: Web3, chain_id: int, admin: LocalAccount, send_tx: Callable[..., dict[str, Any]]
) -> None:
    outsider = Account.create()
    deploy = {"data": "0x" + load_artifact("Notary").bytecode.hex(), "gas": 3_000_000}
    # web3.py reports eth_estimateGas errors that carry a data object as reverts
    with pytest.raises((Web3RPCError, ContractLogicError)) as estimate:
        w3.eth.estimate_gas({"from": outsider.address, **deploy})
    assert "contract deployment is permissioned" in str(estimate.value)
    signed = outsider.sign_transaction(
        {"chainId": chain_id, "nonce": 0, "maxFeePerGas": 0, "maxPriorityFeePerGas": 0, **deploy}
    )
    with pytest.raises(Web3RPCError) as refused:
        w3.eth.send_raw_transaction(signed.raw_transaction)
    assert refused.value.rpc_response is not None
    error = refused.value.rpc_response["error"]
    assert error["code"] == -32003
    assert "contract deployment is permissioned" in error["message"]
    assert "admin" in error["message"]
    # a later block is built; the refused deployment is in none
    send_tx(admin, {"to": admin.address})
    assert w3.eth.get_transaction_count(outsider.address) == 0
    with pytest.raises(TransactionNotFound):
        w3.eth.get_transaction(signed.hash)


def test_fresh_zero_balance_account_transacts(
    w3: Web3, notary: Contract, recorded: dict[str, Any]
) -> None:
    author, receipt = recorded["author"], recorded["receipt"]
    assert recorded["before"] == {"balance": 0, "nonce": 0}
    assert receipt["status"] == "0x1"
    assert receipt["from"].lower() == author.address.lower()
    assert receipt["effectiveGasPrice"] == "0x0"
    assert w3.eth.get_balance(author.address) == 0
    assert w3.eth.get_transaction_count(author.address) == 1
    assert notary.functions.values(recorded["key"]).call() == recorded["value"]


# -- logs -------------------------------------------------------------------------------------


def test_get_logs_filters_by_address_and_topics(
    w3: Web3, notary: Contract, recorded: dict[str, Any]
) -> None:
    receipt, author = recorded["receipt"], recorded["author"]
    block = int(receipt["blockNumber"], 16)
    base = {"fromBlock": hex(block), "toBlock": hex(block), "address": notary.address}
    wanted = [
        "0x" + RECORDED_TOPIC.hex(),
        "0x" + recorded["key"].hex(),
        topic_of_address(author.address),
    ]
    logs = w3.eth.get_logs({**base, "topics": wanted})
    assert len(logs) == 1
    entry = logs[0]
    assert entry["address"] == notary.address
    assert [bytes(t) for t in entry["topics"]] == [bytes.fromhex(t[2:]) for t in wanted]
    assert bytes(entry["data"]) == recorded["value"]
    assert entry["transactionHash"].to_0x_hex() == receipt["transactionHash"]
    assert entry["blockHash"].to_0x_hex() == receipt["blockHash"]
    # OR-lists and wildcards, and filters that must match nothing
    assert len(w3.eth.get_logs({**base, "topics": [None, [wanted[1], "0x" + "11" * 32]]})) == 1
    assert w3.eth.get_logs({**base, "topics": [wanted[0], "0x" + "11" * 32]}) == []
    assert w3.eth.get_logs({**base, "address": Account.create().address}) == []
    events = notary.events.Recorded().get_logs(from_block=block, to_block=block)
    assert [e["args"]["author"] for e in events] == [author.address]


# -- websocket ----------------------------------------------------------------------------------


async def test_websocket_provider_with_default_settings(ws_url: str, chain_id: int) -> None:
    """``AsyncWeb3(WebSocketProvider(url))`` as the web3.py docs show it.

    web3.py 8 sends requests as binary frames unless told otherwise; geth
    answers both kinds.
    """
    provider = WebSocketProvider(ws_url, request_timeout=WS_TIMEOUT)
    try:
        aw3 = await AsyncWeb3(provider)
        aw3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
        try:
            answered = await aw3.eth.chain_id
        except Web3RPCError as exc:
            pytest.fail(f"the node refuses web3.py's default (binary) websocket frames: {exc}")
        assert answered == chain_id
        assert await aw3.eth.block_number >= 0
    finally:
        with contextlib.suppress(Exception):
            await provider.disconnect()
        # a failed disconnect leaves the socket open, which would hold up the node's stop
        socket = provider._ws
        if socket is not None:
            await socket.close()


async def test_logs_subscription_delivers_a_later_event(
    ws_url: str, notary: Contract, send_tx: Callable[..., dict[str, Any]]
) -> None:
    author = Account.create()
    other = Account.create()
    key, other_key = keccak(b"subscribed key"), keccak(b"other key")
    async with ws_web3(ws_url) as aw3:
        sub_id = await aw3.eth.subscribe(
            "logs",
            {"address": notary.address, "topics": ["0x" + RECORDED_TOPIC.hex(), "0x" + key.hex()]},
        )
        # a non-matching event first (likely in the same block): it must not be delivered
        await asyncio.to_thread(send_tx, other, record_call(notary, other_key, keccak(b"x")), False)
        receipt = await asyncio.to_thread(send_tx, author, record_call(notary, key, keccak(b"y")))
        result = await next_notification(aw3, sub_id)
        assert await aw3.eth.unsubscribe(sub_id)
    assert result["transactionHash"].to_0x_hex() == receipt["transactionHash"]
    assert result["blockHash"].to_0x_hex() == receipt["blockHash"]
    assert result["blockNumber"] == int(receipt["blockNumber"], 16)
    assert result["address"] == notary.address
    assert bytes(result["topics"][1]) == key
    assert bytes(result["topics"][2])[12:] == bytes.fromhex(author.address[2:])
    assert bytes(result["data"]) == keccak(b"y")
    assert result["logIndex"] == int(receipt["logs"][0]["logIndex"], 16)


async def test_new_heads_subscription_matches_get_block(
    ws_url: str, w3: Web3, admin: LocalAccount, send_tx: Callable[..., dict[str, Any]]
) -> None:
    async with ws_web3(ws_url) as aw3:
        sub_id = await aw3.eth.subscribe("newHeads")
        await asyncio.to_thread(send_tx, admin, {"to": admin.address}, False)
        header = await next_notification(aw3, sub_id)
        assert await aw3.eth.unsubscribe(sub_id)
    block = w3.eth.get_block(header["number"])
    assert header["hash"] == block["hash"]
    assert header["parentHash"] == block["parentHash"]
    assert header["stateRoot"] == block["stateRoot"]
    assert header["receiptsRoot"] == block["receiptsRoot"]


# -- state proofs ---------------------------------------------------------------------------


def test_get_proof_verifies_against_state_root(
    w3: Web3, notary: Contract, recorded: dict[str, Any]
) -> None:
    number = int(recorded["receipt"]["blockNumber"], 16)
    state_root = bytes(w3.eth.get_block(number)["stateRoot"])
    absent_slot = 7
    proof = w3.eth.get_proof(notary.address, [COUNT_SLOT, absent_slot], number)

    account_rlp = HexaryTrie.get_from_proof(
        state_root, keccak(bytes.fromhex(notary.address[2:])), decode_proof(proof["accountProof"])
    )
    nonce, balance, storage_root, code_hash = rlp.decode(account_rlp)
    assert storage_root == bytes(proof["storageHash"])
    assert code_hash == bytes(proof["codeHash"]) == keccak(bytes(w3.eth.get_code(notary.address)))
    assert int.from_bytes(nonce, "big") == proof["nonce"]
    assert int.from_bytes(balance, "big") == proof["balance"] == 0

    count_entry, absent_entry = proof["storageProof"]
    count_rlp = HexaryTrie.get_from_proof(
        storage_root, keccak(COUNT_SLOT.to_bytes(32, "big")), decode_proof(count_entry["proof"])
    )
    count = int.from_bytes(rlp.decode(count_rlp), "big")
    assert count >= 1
    assert count == int.from_bytes(count_entry["value"], "big")
    assert count == notary.functions.count().call(block_identifier=number)
    assert count == int.from_bytes(w3.eth.get_storage_at(notary.address, COUNT_SLOT, number), "big")
    absent = HexaryTrie.get_from_proof(
        storage_root, keccak(absent_slot.to_bytes(32, "big")), decode_proof(absent_entry["proof"])
    )
    assert absent == b""
    assert int.from_bytes(absent_entry["value"], "big") == 0


def test_get_proof_of_accounts_with_and_without_state(w3: Web3, recorded: dict[str, Any]) -> None:
    number = int(recorded["receipt"]["blockNumber"], 16)
    state_root = bytes(w3.eth.get_block(number)["stateRoot"])
    author = recorded["author"].address
    proof = w3.eth.get_proof(author, [], number)
    account = rlp.decode(
        HexaryTrie.get_from_proof(
            state_root, keccak(bytes.fromhex(author[2:])), decode_proof(proof["accountProof"])
        )
    )
    assert int.from_bytes(account[0], "big") == proof["nonce"] == 1
    assert int.from_bytes(account[1], "big") == proof["balance"] == 0
    stranger = Account.create().address
    proof = w3.eth.get_proof(stranger, [], number)
    missing = HexaryTrie.get_from_proof(
        state_root, keccak(bytes.fromhex(stranger[2:])), decode_proof(proof["accountProof"])
    )
    assert missing == b""


# -- blocks ----------------------------------------------------------------------------------------


def test_block_tags(
    result: Callable[..., Any], devnet: dict[str, Any], recorded: dict[str, Any]
) -> None:
    for _ in range(20):  # retry if a block lands between the reads
        before = result("eth_blockNumber")
        tagged = {tag: result("eth_getBlockByNumber", tag, False) for tag in ("latest", "safe")}
        tagged["finalized"] = result("eth_getBlockByNumber", "finalized", False)
        if result("eth_blockNumber") == before:
            break
    hashes = {block["hash"] for block in tagged.values()}
    assert len(hashes) == 1, tagged
    assert tagged["latest"]["number"] == before
    assert int(before, 16) >= int(recorded["receipt"]["blockNumber"], 16)
    earliest = result("eth_getBlockByNumber", "earliest", False)
    assert earliest["number"] == "0x0"
    assert earliest["hash"] == devnet["genesisHash"]
    assert earliest == result("eth_getBlockByNumber", "0x0", False)
    assert result("eth_getBlockByNumber", hex(int(before, 16) + 1000), False) is None


def test_eth_call_revert_gives_the_reason(
    w3: Web3, notary: Contract, rpc: Callable[..., Any]
) -> None:
    with pytest.raises(ContractLogicError) as reverted:
        notary.functions.record(keccak(b"k"), ZERO32).call()
    assert "value must be nonzero" in str(reverted.value.message)
    expected = "0x08c379a0" + abi_encode(["string"], ["value must be nonzero"]).hex()
    assert reverted.value.data == expected
    raw = rpc("eth_call", {"to": notary.address, **record_call(notary, keccak(b"k"), ZERO32)})
    assert raw["error"]["code"] == 3
    assert raw["error"]["message"] == "execution reverted: value must be nonzero"
    assert raw["error"]["data"] == expected


def test_block_hash_is_the_header_hash_without_seals(
    result: Callable[..., Any], devnet: dict[str, Any], recorded: dict[str, Any]
) -> None:
    genesis = json.loads(Path(devnet["genesis"]).read_text())
    validators = [bytes.fromhex(v["address"][2:]) for v in genesis["validators"]]
    head = int(result("eth_blockNumber"), 16)
    assert head >= int(recorded["receipt"]["blockNumber"], 16)
    previous: dict[str, Any] | None = None
    for number in range(head + 1):
        block = result("eth_getBlockByNumber", hex(number), False)
        fields = encode_header_fields(block)
        assert "0x" + compute_block_hash(fields).hex() == block["hash"], number
        assert result("eth_getBlockByHash", block["hash"], False) == block
        if previous is None:
            assert block["hash"] == devnet["genesisHash"]
            assert get_extra_data(fields).seals == ()
        else:
            assert block["parentHash"] == previous["hash"], number
            assert validate_committed_seals(fields, validators) == frozenset(validators)
            # the seals are not part of the hash: the hash of the raw header differs
            assert "0x" + keccak(rlp.encode(fields)).hex() != block["hash"]
        previous = block
