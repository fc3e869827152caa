"""The JSON-RPC methods of node.api over a real in-memory chain of a few blocks."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import rlp
from eth.abc import SignedTransactionAPI
from eth.db.atomic import AtomicDB
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from trie import HexaryTrie
from web3 import Web3

from consensus.errors import (
    InvalidParams,
    InvalidTransaction,
    LimitExceeded,
    PolderError,
    ResourceNotFound,
    TransactionReverted,
)
from consensus.genesis import Genesis, decode_genesis
from contracts.loader import Artifact, load_artifact
from node.api import (
    METHOD_NAMES,
    BlockTag,
    EthApi,
    compute_contract_address,
    decode_address,
    decode_block_tag,
    decode_data,
    decode_log_filter,
    decode_quantity,
    encode_quantity,
    format_block,
    format_transaction,
    is_bloom_match,
)
from node.chain import Chain

CHAIN_ID = 5262404
GENESIS_TIME = 1_767_225_600
GAS_LIMIT = 30_000_000
NOTARY = "0x" + "00" * 18 + "0100"
RICH_BALANCE = 10**18
RECORDED_TOPIC = "0x" + keccak(b"Recorded(bytes32,bytes32,address)").hex()
COUNT_SLOT = 1
"""Vyper 0.4 storage layout of Notary: ``values`` at slot 0, ``count`` at slot 1."""


def word(value: int | bytes) -> str:
    raw = value if isinstance(value, bytes) else value.to_bytes(32, "big")
    return "0x" + raw.rjust(32, b"\x00").hex()


@dataclass
class FakePending:
    """A mempool stand-in holding what the test puts in it."""

    nonces: dict[bytes, int] = field(default_factory=dict)
    transactions: dict[bytes, SignedTransactionAPI] = field(default_factory=dict)

    def get_pending_nonce(self, address: bytes) -> int | None:
        return self.nonces.get(address)

    def get_pending_transaction(self, tx_hash: bytes) -> SignedTransactionAPI | None:
        return self.transactions.get(tx_hash)


@dataclass
class World:
    """The chain under test and what is in it."""

    chain: Chain
    api: EthApi
    mempool: FakePending
    artifact: Artifact
    user: LocalAccount
    admin: LocalAccount
    rich: LocalAccount
    txs: dict[str, SignedTransactionAPI]
    """Mined, by role: dynamic, legacy, create (block 1); later, transfer (block 2)."""
    pending: SignedTransactionAPI
    """In the fake mempool only."""


def encode_call(artifact: Artifact, function: str, *args: Any) -> str:
    data: str = Web3().eth.contract(abi=artifact.abi).encode_abi(function, list(args))
    return data


def sign(account: LocalAccount, chain: Chain, **fields: Any) -> SignedTransactionAPI:
    fields = {"chainId": CHAIN_ID, "value": 0, "gas": 200_000, **fields}
    if "gasPrice" not in fields:
        fields |= {"maxFeePerGas": 0, "maxPriorityFeePerGas": 0}
    raw = account.sign_transaction(fields).raw_transaction
    return chain.decode_transaction(bytes(raw))


def commit(chain: Chain, key: bytes, txs: list[SignedTransactionAPI], timestamp: int) -> None:
    coinbase = bytes.fromhex(Account.from_key(key).address[2:])
    built = chain.build_block(txs, timestamp=timestamp, coinbase=coinbase)
    if built.excluded:
        raise RuntimeError(f"test block lost transactions: {built.excluded}")
    sealed = chain.seal_block(built.block, [chain.sign_block(built.block, key)])
    chain.commit_built_block(sealed)


def make_genesis(artifact: Artifact, validator: str, admin: str, rich: str) -> Genesis:
    return decode_genesis(
        {
            "chainId": CHAIN_ID,
            "timestamp": GENESIS_TIME,
            "gasLimit": GAS_LIMIT,
            "validators": [
                {"name": "Schiedam", "address": validator, "p2p": "ws://h:1", "rpc": "http://h:2"}
            ],
            "admins": [{"name": "admin", "address": admin}],
            "alloc": {
                NOTARY: {"code": "0x" + artifact.runtime_bytecode.hex()},
                rich: {"balance": hex(RICH_BALANCE)},
            },
            "contracts": {"Notary": NOTARY},
        }
    )


@pytest.fixture(scope="module")
def world() -> World:
    """Block 1: two records and a deployment; block 2: a record and a transfer; block 3 empty."""
    artifact = load_artifact("Notary")
    validator_key = os.urandom(32)
    user, admin, rich = Account.create(), Account.create(), Account.create()
    validator = Account.from_key(validator_key).address
    chain = Chain(AtomicDB(), make_genesis(artifact, validator, admin.address, rich.address))
    to = Web3.to_checksum_address(NOTARY)

    def record(nonce: int, key: int, **fields: Any) -> SignedTransactionAPI:
        data = encode_call(artifact, "record", bytes([key]) * 32, bytes([key * 17]) * 32)
        return sign(user, chain, nonce=nonce, to=to, data=data, **fields)

    first = {
        "dynamic": record(0, 1),
        "legacy": record(1, 2, gasPrice=0),
        "create": sign(
            admin,
            chain,
            nonce=0,
            gas=1_000_000,
            gasPrice=0,
            accessList=[],
            data="0x" + artifact.bytecode.hex(),
        ),
    }
    commit(chain, validator_key, list(first.values()), GENESIS_TIME + 1)
    second = {
        "later": record(2, 3),
        "transfer": sign(rich, chain, nonce=0, to=user.address, value=5, gas=21_000),
    }
    commit(chain, validator_key, list(second.values()), GENESIS_TIME + 2)
    commit(chain, validator_key, [], GENESIS_TIME + 3)
    pending = record(3, 4)
    mempool = FakePending(transactions={pending.hash: pending})
    return World(
        chain=chain,
        api=EthApi(chain, mempool, "polder/test"),
        mempool=mempool,
        artifact=artifact,
        user=user,
        admin=admin,
        rich=rich,
        txs={**first, **second},
        pending=pending,
    )


def addr(account: LocalAccount) -> str:
    return account.address.lower()


def hexhash(tx: SignedTransactionAPI) -> str:
    return "0x" + tx.hash.hex()


# -- helpers -----------------------------------------------------------------------


def test_quantities_round_trip() -> None:
    for value in (0, 1, 255, 2**64, 2**256 - 1):
        assert decode_quantity(encode_quantity(value), "q") == value
    assert encode_quantity(0) == "0x0"
    assert encode_quantity(16) == "0x10"
    assert decode_quantity(7, "blockCount", allow_int=True) == 7


def test_data_and_address_decoding() -> None:
    assert decode_data("0x", "data") == b""
    assert decode_data("0xABcd", "data") == b"\xab\xcd"
    assert decode_address("0x" + "aB" * 20, "address") == b"\xab" * 20


def test_block_tags_decode() -> None:
    assert decode_block_tag("latest") == BlockTag()
    assert decode_block_tag("safe") == decode_block_tag("finalized") == BlockTag()
    assert decode_block_tag("pending") == BlockTag(pending=True)
    assert decode_block_tag("earliest") == BlockTag(number=0)
    assert decode_block_tag("0x2a") == BlockTag(number=42)
    assert decode_block_tag({"blockNumber": "0x1"}) == BlockTag(number=1)
    assert decode_block_tag({"blockHash": "0x" + "11" * 32, "requireCanonical": True}) == (
        BlockTag(block_hash=b"\x11" * 32, require_canonical=True)
    )


def test_methods_lists_every_rpc_method(world: World) -> None:
    methods = world.api.methods()
    assert set(methods) == set(METHOD_NAMES)
    assert len(METHOD_NAMES) == 19
    assert methods["eth_chainId"]() == hex(CHAIN_ID)


# -- node and chain -------------------------------------------------------------------


def test_node_identity(world: World) -> None:
    api = world.api
    assert api.web3_clientVersion() == "polder/test"
    assert api.net_version() == str(CHAIN_ID)
    assert api.eth_chainId() == hex(CHAIN_ID)
    assert api.eth_blockNumber() == "0x3"
    assert api.eth_gasPrice() == "0x0"
    assert api.eth_maxPriorityFeePerGas() == "0x0"


# -- blocks -----------------------------------------------------------------------------

BLOCK_KEYS = {
    "hash", "parentHash", "sha3Uncles", "miner", "stateRoot", "transactionsRoot",
    "receiptsRoot", "logsBloom", "difficulty", "number", "gasLimit", "gasUsed", "timestamp",
    "extraData", "mixHash", "nonce", "baseFeePerGas", "withdrawalsRoot", "blobGasUsed",
    "excessBlobGas", "parentBeaconBlockRoot", "requestsHash", "size", "transactions",
    "uncles", "withdrawals", "totalDifficulty",
}  # fmt: skip


def test_block_by_number_shape(world: World) -> None:
    block = world.api.eth_getBlockByNumber("0x1", False)
    header = world.chain.get_header_by_number(1)
    assert set(block) == BLOCK_KEYS
    assert block["hash"] == "0x" + header.hash.hex()
    assert block["parentHash"] == "0x" + world.chain.genesis_hash.hex()
    assert block["number"] == "0x1"
    assert block["extraData"] == "0x" + header.extra_data.hex()  # full, seals included
    assert block["baseFeePerGas"] == "0x0"
    assert block["gasLimit"] == hex(GAS_LIMIT)
    assert block["timestamp"] == hex(GENESIS_TIME + 1)
    assert len(block["logsBloom"]) == 2 + 512
    assert block["size"] == hex(len(rlp.encode(world.chain.get_block(header))))
    assert block["totalDifficulty"] == "0x0"
    assert block["uncles"] == block["withdrawals"] == []
    assert block["transactions"] == [hexhash(world.txs[r]) for r in ("dynamic", "legacy", "create")]


def test_block_hash_strips_seals(world: World) -> None:
    header = world.chain.get_header_by_number(2)
    block = world.api.eth_getBlockByNumber("0x2", False)
    assert block["hash"] == "0x" + header.hash.hex()
    assert block["hash"] != "0x" + keccak(rlp.encode(header)).hex()


def test_block_full_transactions(world: World) -> None:
    block = world.api.eth_getBlockByNumber("0x1", True)
    first = block["transactions"][0]
    assert first["hash"] == hexhash(world.txs["dynamic"])
    assert first["blockHash"] == block["hash"]
    assert first["transactionIndex"] == "0x0"
    assert first["from"] == addr(world.user)


@pytest.mark.parametrize("tag", ["latest", "safe", "finalized", "pending", "0x3"])
def test_head_tags_name_the_head(world: World, tag: str) -> None:
    assert world.api.eth_getBlockByNumber(tag, False)["number"] == "0x3"


def test_earliest_and_unknown_blocks(world: World) -> None:
    api = world.api
    assert api.eth_getBlockByNumber("earliest")["hash"] == "0x" + world.chain.genesis_hash.hex()
    assert api.eth_getBlockByNumber("0x4", False) is None
    assert api.eth_getBlockByHash("0x" + "ab" * 32, False) is None


def test_block_by_hash(world: World) -> None:
    by_number = world.api.eth_getBlockByNumber("0x2", True)
    assert world.api.eth_getBlockByHash(by_number["hash"], True) == by_number


def test_format_block_header_form(world: World) -> None:
    header = world.chain.head
    heads = format_block(header)
    assert "transactions" not in heads
    assert "size" not in heads
    assert heads["hash"] == "0x" + header.hash.hex()
    full = format_block(world.chain.get_block(header))
    assert {k: full[k] for k in heads} == heads


# -- transactions and receipts ------------------------------------------------------------


def test_dynamic_fee_transaction(world: World) -> None:
    tx = world.api.eth_getTransactionByHash(hexhash(world.txs["dynamic"]))
    assert tx["type"] == "0x2"
    assert tx["blockNumber"] == "0x1"
    assert tx["from"] == addr(world.user)
    assert tx["to"] == NOTARY
    assert tx["nonce"] == "0x0"
    assert tx["chainId"] == hex(CHAIN_ID)
    assert tx["maxFeePerGas"] == tx["maxPriorityFeePerGas"] == tx["gasPrice"] == "0x0"
    assert tx["accessList"] == []
    assert tx["v"] == tx["yParity"]
    assert tx["input"] == encode_call(world.artifact, "record", b"\x01" * 32, b"\x11" * 32)


def test_legacy_transaction(world: World) -> None:
    tx = world.api.eth_getTransactionByHash(hexhash(world.txs["legacy"]))
    assert tx["type"] == "0x0"
    assert tx["transactionIndex"] == "0x1"
    assert tx["chainId"] == hex(CHAIN_ID)
    assert int(tx["v"], 16) in (CHAIN_ID * 2 + 35, CHAIN_ID * 2 + 36)
    assert "yParity" not in tx
    assert "maxFeePerGas" not in tx


def test_access_list_creation_transaction(world: World) -> None:
    tx = world.api.eth_getTransactionByHash(hexhash(world.txs["create"]))
    assert tx["type"] == "0x1"
    assert tx["to"] is None
    assert tx["accessList"] == []
    assert tx["input"] == "0x" + world.artifact.bytecode.hex()


def test_set_code_and_access_list_fields(world: World) -> None:
    signer = Account.create()
    authorization = signer.sign_authorization({"chainId": CHAIN_ID, "address": NOTARY, "nonce": 1})
    set_code = sign(signer, world.chain, nonce=0, to=NOTARY, authorizationList=[authorization])
    fields = format_transaction(set_code)
    assert fields["type"] == "0x4"
    [entry] = fields["authorizationList"]
    assert entry["address"] == NOTARY
    assert entry["chainId"] == hex(CHAIN_ID)
    assert entry["nonce"] == "0x1"
    access = [{"address": NOTARY, "storageKeys": [word(1)]}]
    with_list = sign(signer, world.chain, nonce=0, to=NOTARY, accessList=access)
    assert format_transaction(with_list)["accessList"] == access


def test_pending_and_unknown_transactions(world: World) -> None:
    tx = world.api.eth_getTransactionByHash(hexhash(world.pending))
    assert tx["hash"] == hexhash(world.pending)
    assert tx["blockHash"] is tx["blockNumber"] is tx["transactionIndex"] is None
    assert world.api.eth_getTransactionReceipt(hexhash(world.pending)) is None
    assert world.api.eth_getTransactionByHash("0x" + "00" * 32) is None


def test_receipts_of_a_block(world: World) -> None:
    api = world.api
    receipts = [api.eth_getTransactionReceipt(hexhash(world.txs[r])) for r in ("dynamic", "legacy")]
    first, second = receipts
    assert first["status"] == second["status"] == "0x1"
    assert first["type"] == "0x2"
    assert second["type"] == "0x0"
    assert first["cumulativeGasUsed"] == first["gasUsed"]
    assert int(second["cumulativeGasUsed"], 16) == int(first["gasUsed"], 16) + int(
        second["gasUsed"], 16
    )
    assert first["effectiveGasPrice"] == "0x0"
    assert first["contractAddress"] is None
    assert first["to"] == NOTARY
    assert first["from"] == addr(world.user)
    assert [log["logIndex"] for log in first["logs"] + second["logs"]] == ["0x0", "0x1"]
    assert second["logs"][0]["transactionIndex"] == "0x1"
    assert second["logs"][0]["transactionHash"] == hexhash(world.txs["legacy"])
    assert second["blockHash"] == api.eth_getBlockByNumber("0x1")["hash"]
    assert first["logsBloom"] != "0x" + "00" * 256


def test_creation_receipt(world: World) -> None:
    receipt = world.api.eth_getTransactionReceipt(hexhash(world.txs["create"]))
    admin = bytes.fromhex(world.admin.address[2:])
    expected = compute_contract_address(admin, 0)
    assert receipt["contractAddress"] == "0x" + expected.hex()
    assert receipt["to"] is None
    assert receipt["type"] == "0x1"
    assert receipt["logs"] == []
    code = world.api.eth_getCode(receipt["contractAddress"], "latest")
    assert code == "0x" + world.artifact.runtime_bytecode.hex()


# -- state -----------------------------------------------------------------------------------


def test_transaction_count_tags(world: World) -> None:
    api, user = world.api, addr(world.user)
    assert api.eth_getTransactionCount(user, "latest") == "0x3"
    assert api.eth_getTransactionCount(user, "earliest") == "0x0"
    assert api.eth_getTransactionCount(user, "0x1") == "0x2"
    assert api.eth_getTransactionCount(user, {"blockNumber": "0x1"}) == "0x2"
    block_1 = api.eth_getBlockByNumber("0x1")["hash"]
    assert api.eth_getTransactionCount(user, {"blockHash": block_1}) == "0x2"
    assert api.eth_getTransactionCount(user, "pending") == "0x3"  # mempool knows no nonce


def test_pending_nonce_counts_the_mempool(world: World) -> None:
    user = bytes.fromhex(world.user.address[2:])
    world.mempool.nonces[user] = 4
    try:
        assert world.api.eth_getTransactionCount(addr(world.user), "pending") == "0x4"
        assert world.api.eth_getTransactionCount(addr(world.user), "latest") == "0x3"
        world.mempool.nonces[user] = 1  # a stale mempool view never lowers the nonce
        assert world.api.eth_getTransactionCount(addr(world.user), "pending") == "0x3"
    finally:
        world.mempool.nonces.clear()


def test_balance_code_and_storage(world: World) -> None:
    api = world.api
    assert api.eth_getBalance(addr(world.rich), "0x1") == hex(RICH_BALANCE)
    assert api.eth_getBalance(addr(world.rich), "latest") == hex(RICH_BALANCE - 5)
    assert api.eth_getBalance(addr(world.user)) == "0x5"
    assert api.eth_getCode(NOTARY, "earliest") == "0x" + world.artifact.runtime_bytecode.hex()
    assert api.eth_getCode(addr(world.user), "latest") == "0x"
    assert api.eth_getStorageAt(NOTARY, "0x1", "latest") == word(3)
    assert api.eth_getStorageAt(NOTARY, word(COUNT_SLOT), "0x1") == word(2)
    assert api.eth_getStorageAt(NOTARY, "0x1", "earliest") == word(0)


@pytest.mark.parametrize(
    "block",
    ["0x4", "0xffffffff", {"blockHash": "0x" + "ab" * 32}, {"blockNumber": "0x9"}],
)
def test_state_of_unknown_block(world: World, block: Any) -> None:
    with pytest.raises(ResourceNotFound):
        world.api.eth_getBalance(addr(world.user), block)


def test_proof_verifies_against_state_root(world: World) -> None:
    for number in (1, 3):
        header = world.chain.get_header_by_number(number)
        proof = world.api.eth_getProof(NOTARY, ["0x1", word(0)], hex(number))
        assert set(proof) == {
            "address", "accountProof", "balance", "codeHash", "nonce", "storageHash",
            "storageProof",
        }  # fmt: skip
        nodes = [rlp.decode(bytes.fromhex(n[2:])) for n in proof["accountProof"]]
        account = rlp.decode(
            HexaryTrie.get_from_proof(header.state_root, keccak(bytes.fromhex(NOTARY[2:])), nodes)
        )
        nonce, balance, storage_root, code_hash = account
        assert proof["storageHash"] == "0x" + storage_root.hex()
        assert proof["codeHash"] == "0x" + code_hash.hex()
        assert proof["balance"] == hex(int.from_bytes(balance, "big"))
        assert proof["nonce"] == hex(int.from_bytes(nonce, "big"))
        count, empty = proof["storageProof"]
        assert count["key"] == word(1)
        assert count["value"] == hex(number if number == 3 else 2)
        slot_nodes = [rlp.decode(bytes.fromhex(n[2:])) for n in count["proof"]]
        value = HexaryTrie.get_from_proof(storage_root, keccak((1).to_bytes(32, "big")), slot_nodes)
        assert int.from_bytes(rlp.decode(value), "big") == int(count["value"], 16)
        assert empty["value"] == "0x0"


def test_proof_of_absent_account(world: World) -> None:
    proof = world.api.eth_getProof("0x" + "99" * 20, [], "latest")
    nodes = [rlp.decode(bytes.fromhex(n[2:])) for n in proof["accountProof"]]
    root = world.chain.head.state_root
    assert HexaryTrie.get_from_proof(root, keccak(b"\x99" * 20), nodes) == b""
    assert proof["balance"] == proof["nonce"] == "0x0"
    assert proof["storageProof"] == []


# -- execution ------------------------------------------------------------------------------


def call(world: World, function: str, *args: Any, **fields: Any) -> dict[str, Any]:
    return {"to": NOTARY, "data": encode_call(world.artifact, function, *args), **fields}


def test_call_reads_at_a_block(world: World) -> None:
    api = world.api
    assert api.eth_call(call(world, "count"), "latest") == word(3)
    assert api.eth_call(call(world, "count"), "0x1") == word(2)
    assert api.eth_call(call(world, "count")) == word(3)
    stored = api.eth_call(call(world, "values", b"\x01" * 32), {"blockNumber": "0x1"})
    assert stored == word(b"\x11" * 32)
    as_input = {"to": NOTARY, "input": encode_call(world.artifact, "count")}
    assert api.eth_call(as_input, "latest") == word(3)


def test_call_revert_reason(world: World) -> None:
    request = call(world, "record", b"\x05" * 32, b"\x00" * 32, **{"from": addr(world.user)})
    with pytest.raises(TransactionReverted) as caught:
        world.api.eth_call(request, "latest")
    assert caught.value.message == "execution reverted: value must be nonzero"
    assert caught.value.code == 3
    assert caught.value.data["data"].startswith("0x08c379a0")
    assert (
        bytes.fromhex(caught.value.data["data"][2:])
        .rstrip(b"\x00")
        .endswith(b"value must be nonzero")
    )


def test_call_revert_without_reason(world: World) -> None:
    # Notary's functions are not payable: sending value reverts with no data
    request = call(world, "count", value="0x1", **{"from": addr(world.rich)})
    with pytest.raises(TransactionReverted) as caught:
        world.api.eth_call(request, "latest")
    assert caught.value.message == "execution reverted"
    assert caught.value.data["data"] == "0x"


def test_call_of_a_creation_returns_runtime_code(world: World) -> None:
    request = {"data": "0x" + world.artifact.bytecode.hex()}
    assert world.api.eth_call(request, "latest") == "0x" + world.artifact.runtime_bytecode.hex()


def test_call_refusals(world: World) -> None:
    api = world.api
    with pytest.raises(InvalidTransaction, match="intrinsic gas too low"):
        api.eth_call(call(world, "count", gas="0x5208"), "latest")
    with pytest.raises(InvalidTransaction, match="balance"):
        api.eth_call({"to": addr(world.user), "value": "0x1"}, "latest")
    with pytest.raises(TransactionReverted, match="execution failed"):
        api.eth_call(call(world, "record", b"\x06" * 32, b"\x01" * 32, gas="0x6000"), "latest")


def test_estimate_gas_is_exact(world: World) -> None:
    api = world.api
    request = call(world, "record", b"\x07" * 32, b"\x01" * 32, **{"from": addr(world.user)})
    estimate = int(api.eth_estimateGas(request, "latest"), 16)
    assert 40_000 < estimate < 100_000
    assert api.eth_call({**request, "gas": hex(estimate)}, "latest") == "0x"
    with pytest.raises(TransactionReverted):
        api.eth_call({**request, "gas": hex(estimate - 1)}, "latest")


def test_estimate_gas_of_transfer_and_creation(world: World) -> None:
    api = world.api
    assert api.eth_estimateGas(
        {"from": addr(world.rich), "to": addr(world.user), "value": "0x1"}
    ) == ("0x5208")
    creation = {"from": addr(world.admin), "data": "0x" + world.artifact.bytecode.hex()}
    estimate = int(api.eth_estimateGas(creation, "latest"), 16)
    assert api.eth_call({**creation, "gas": hex(estimate)}, "latest") != "0x"
    with pytest.raises(TransactionReverted):
        api.eth_call({**creation, "gas": hex(estimate - 1)}, "latest")


def test_estimate_gas_refusals(world: World) -> None:
    api = world.api
    reverting = call(world, "record", b"\x08" * 32, b"\x00" * 32)
    with pytest.raises(TransactionReverted, match="value must be nonzero"):
        api.eth_estimateGas(reverting, "latest")
    creation = {"from": addr(world.user), "data": "0x" + world.artifact.bytecode.hex()}
    with pytest.raises(InvalidTransaction, match="permissioned"):
        api.eth_estimateGas(creation, "latest")
    starved = call(world, "record", b"\x09" * 32, b"\x01" * 32, gas="0x6000")
    with pytest.raises(InvalidTransaction, match="exceeds allowance"):
        api.eth_estimateGas(starved, "latest")
    with pytest.raises(InvalidTransaction, match="intrinsic gas too low"):
        api.eth_estimateGas({**starved, "gas": "0x5208"}, "latest")


# -- fees ---------------------------------------------------------------------------------------


def test_fee_history(world: World) -> None:
    history = world.api.eth_feeHistory("0x2", "latest", [10, 50.5])
    assert history["oldestBlock"] == "0x2"
    assert history["baseFeePerGas"] == ["0x0"] * 3
    block_2 = world.chain.get_header_by_number(2)
    assert history["gasUsedRatio"] == [block_2.gas_used / GAS_LIMIT, 0.0]
    assert history["reward"] == [["0x0", "0x0"], ["0x0", "0x0"]]


def test_fee_history_clamps_to_the_chain(world: World) -> None:
    history = world.api.eth_feeHistory(100, "0x1")
    assert history["oldestBlock"] == "0x0"
    assert len(history["gasUsedRatio"]) == 2
    assert len(history["baseFeePerGas"]) == 3
    assert "reward" not in history
    assert world.api.eth_feeHistory("0x0", "latest", [])["gasUsedRatio"] == []


# -- logs ------------------------------------------------------------------------------------------


def get_logs(world: World, **criteria: Any) -> list[dict[str, Any]]:
    return world.api.eth_getLogs({"fromBlock": "earliest", "toBlock": "latest", **criteria})


def test_logs_by_address_and_event(world: World) -> None:
    logs = get_logs(world, address=NOTARY)
    assert [log["blockNumber"] for log in logs] == ["0x1", "0x1", "0x2"]
    assert [log["logIndex"] for log in logs] == ["0x0", "0x1", "0x0"]
    first = logs[0]
    assert first["topics"] == [
        RECORDED_TOPIC,
        word(b"\x01" * 32),
        word(bytes.fromhex(world.user.address[2:])),
    ]
    assert first["data"] == word(b"\x11" * 32)
    assert first["removed"] is False
    assert first["transactionHash"] == hexhash(world.txs["dynamic"])
    assert get_logs(world, topics=[RECORDED_TOPIC]) == logs
    assert get_logs(world, address=[NOTARY, "0x" + "99" * 20]) == logs
    assert get_logs(world, address="0x" + "99" * 20) == []


def test_logs_topic_wildcards_and_alternatives(world: World) -> None:
    key_1, key_3 = word(b"\x01" * 32), word(b"\x03" * 32)
    by_key = get_logs(world, topics=[None, [key_1, key_3]])
    assert [log["topics"][1] for log in by_key] == [key_1, key_3]
    assert (
        len(get_logs(world, topics=[None, None, word(bytes.fromhex(world.user.address[2:]))])) == 3
    )
    assert len(get_logs(world, topics=[[RECORDED_TOPIC, None]])) == 3
    assert get_logs(world, topics=[None, None, None, None]) == []  # logs have 3 topics


def test_logs_block_selection(world: World) -> None:
    api = world.api
    block_2 = api.eth_getBlockByNumber("0x2")["hash"]
    assert [log["blockNumber"] for log in api.eth_getLogs({"blockHash": block_2})] == ["0x2"]
    assert len(api.eth_getLogs({"fromBlock": "0x2"})) == 1  # toBlock defaults to latest
    assert api.eth_getLogs({}) == []  # only the head, which is empty
    assert len(api.eth_getLogs({"fromBlock": "0x2", "toBlock": "0x2"})) == 1
    assert len(api.eth_getLogs({"fromBlock": "0x1", "toBlock": "0x1000"})) == 3
    assert api.eth_getLogs({"fromBlock": "0x10", "toBlock": "0x20"}) == []
    with pytest.raises(ResourceNotFound):
        api.eth_getLogs({"blockHash": "0x" + "ab" * 32})


def test_logs_skip_blocks_by_bloom(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[int] = []
    get_receipts = world.chain.get_receipts

    def spy(header: Any) -> Any:
        read.append(header.block_number)
        return get_receipts(header)

    monkeypatch.setattr(world.chain, "get_receipts", spy)
    get_logs(world, topics=[None, word(b"\x03" * 32)])
    assert read == [2]
    head_bloom = world.chain.head.bloom
    assert not is_bloom_match(head_bloom, decode_log_filter({"address": NOTARY}))


def test_logs_limits(world: World) -> None:
    short_range = EthApi(world.chain, world.mempool, "t", max_log_range=2)
    assert len(short_range.eth_getLogs({"fromBlock": "0x2", "toBlock": "0x3"})) == 1
    assert len(short_range.eth_getLogs({"fromBlock": "0x2", "toBlock": "0x100"})) == 1
    with pytest.raises(LimitExceeded, match="block range"):
        short_range.eth_getLogs({"fromBlock": "0x1", "toBlock": "0x3"})
    few_logs = EthApi(world.chain, world.mempool, "t", max_logs=2)
    assert len(few_logs.eth_getLogs({"fromBlock": "0x1", "toBlock": "0x1"})) == 2
    with pytest.raises(LimitExceeded, match="more than 2 logs"):
        few_logs.eth_getLogs({"fromBlock": "0x1", "toBlock": "0x2"})
    with pytest.raises(InvalidParams, match="after"):
        world.api.eth_getLogs({"fromBlock": "0x3", "toBlock": "0x1"})


# -- parameter validation -----------------------------------------------------------------------

GOOD_ADDRESS = "0x" + "12" * 20
GOOD_HASH = "0x" + "34" * 32

MALFORMED: list[tuple[str, list[Any], str]] = [
    ("eth_chainId", [1], "too many params"),
    ("eth_blockNumber", ["latest"], "too many params"),
    ("eth_getBlockByNumber", [], "block"),
    ("eth_getBlockByNumber", [1, False], "block"),
    ("eth_getBlockByNumber", ["newest", False], "block"),
    ("eth_getBlockByNumber", ["0x", False], "block"),
    ("eth_getBlockByNumber", ["0xzz", False], "block"),
    ("eth_getBlockByNumber", ["0x" + "1" * 65, False], "block"),
    ("eth_getBlockByNumber", ["latest", "yes"], "full"),
    ("eth_getBlockByNumber", ["latest", False, 1], "too many params"),
    ("eth_getBlockByNumber", [["latest"], False], "block"),
    ("eth_getBlockByHash", ["0x1234", False], "blockHash"),
    ("eth_getBlockByHash", [None, False], "blockHash"),
    ("eth_getTransactionByHash", [], "transactionHash"),
    ("eth_getTransactionByHash", [GOOD_HASH[:-1]], "transactionHash"),
    ("eth_getTransactionReceipt", [1234], "transactionHash"),
    ("eth_getTransactionCount", ["0x1234", "latest"], "address"),
    ("eth_getTransactionCount", [GOOD_ADDRESS[2:], "latest"], "address"),
    (
        "eth_getTransactionCount",
        [GOOD_ADDRESS, {"blockHash": GOOD_HASH, "blockNumber": "0x1"}],
        "block",
    ),
    (
        "eth_getTransactionCount",
        [GOOD_ADDRESS, {"blockNumber": {"blockNumber": "0x1"}}],
        "blockNumber",
    ),
    ("eth_getTransactionCount", [GOOD_ADDRESS, {"blockHash": "0x12"}], "block.blockHash"),
    (
        "eth_getTransactionCount",
        [GOOD_ADDRESS, {"blockHash": GOOD_HASH, "requireCanonical": 1}],
        "requireCanonical",
    ),
    ("eth_getBalance", [], "address"),
    ("eth_getBalance", [GOOD_ADDRESS + "00", "latest"], "address"),
    ("eth_getBalance", [GOOD_ADDRESS, "latest", "extra"], "too many params"),
    ("eth_getCode", [{"address": GOOD_ADDRESS}], "address"),
    ("eth_getStorageAt", [GOOD_ADDRESS], "slot"),
    ("eth_getStorageAt", [GOOD_ADDRESS, 1, "latest"], "slot"),
    ("eth_getStorageAt", [GOOD_ADDRESS, "0x" + "1" * 65, "latest"], "slot"),
    ("eth_getProof", [GOOD_ADDRESS], "storageKeys"),
    ("eth_getProof", [GOOD_ADDRESS, "0x1", "latest"], "storageKeys"),
    ("eth_getProof", [GOOD_ADDRESS, ["0xg"], "latest"], "storageKeys[0]"),
    ("eth_call", [], "transaction"),
    ("eth_call", ["0x1234", "latest"], "transaction"),
    ("eth_call", [{"to": "0x12"}, "latest"], "transaction.to"),
    ("eth_call", [{"to": GOOD_ADDRESS, "from": 5}, "latest"], "transaction.from"),
    ("eth_call", [{"to": GOOD_ADDRESS, "gas": 21000}, "latest"], "transaction.gas"),
    ("eth_call", [{"to": GOOD_ADDRESS, "value": "1"}, "latest"], "transaction.value"),
    ("eth_call", [{"to": GOOD_ADDRESS, "data": "0x123"}, "latest"], "transaction.data"),
    ("eth_call", [{"to": GOOD_ADDRESS, "data": "0x12", "input": "0x34"}, "latest"], "input"),
    ("eth_call", [{"to": GOOD_ADDRESS, "gasPrice": "zero"}, "latest"], "transaction.gasPrice"),
    (
        "eth_call",
        [{"to": GOOD_ADDRESS, "accessList": [{"address": GOOD_ADDRESS}]}, "latest"],
        "accessList",
    ),
    ("eth_call", [{"to": GOOD_ADDRESS}, "later"], "block"),
    ("eth_estimateGas", [{"to": GOOD_ADDRESS, "nonce": -1}], "transaction.nonce"),
    ("eth_estimateGas", [[GOOD_ADDRESS]], "transaction"),
    ("eth_feeHistory", ["0x1"], "newestBlock"),
    ("eth_feeHistory", [True, "latest"], "blockCount"),
    ("eth_feeHistory", ["0x1", "latest", [50, 10]], "rewardPercentiles"),
    ("eth_feeHistory", ["0x1", "latest", [101]], "rewardPercentiles"),
    ("eth_feeHistory", ["0x1", "latest", ["50"]], "rewardPercentiles"),
    ("eth_feeHistory", ["0x1", "latest", 50], "rewardPercentiles"),
    ("eth_getLogs", [], "filter"),
    ("eth_getLogs", ["latest"], "filter"),
    ("eth_getLogs", [{"fromBlock": 1}], "filter.fromBlock"),
    ("eth_getLogs", [{"address": 5}], "filter.address"),
    ("eth_getLogs", [{"address": [GOOD_ADDRESS, "0x12"]}], "filter.address[1]"),
    ("eth_getLogs", [{"topics": GOOD_HASH}], "filter.topics"),
    ("eth_getLogs", [{"topics": [GOOD_HASH] * 5}], "filter.topics"),
    ("eth_getLogs", [{"topics": ["0x12"]}], "filter.topics[0]"),
    ("eth_getLogs", [{"topics": [[GOOD_HASH, 7]]}], "filter.topics[0][1]"),
    ("eth_getLogs", [{"blockHash": GOOD_HASH, "fromBlock": "0x1"}], "blockHash"),
    ("eth_getLogs", [{"blockHash": "0x12"}], "filter.blockHash"),
]


@pytest.mark.parametrize(
    ("method", "params", "named"),
    MALFORMED,
    ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(MALFORMED)],
)
def test_malformed_params(world: World, method: str, params: list[Any], named: str) -> None:
    handler: Callable[..., Any] = world.api.methods()[method]
    with pytest.raises(InvalidParams) as caught:
        handler(*params)
    assert named in caught.value.message
    assert caught.value.code == -32602


def test_filter_value_bounds(world: World) -> None:
    with pytest.raises(LimitExceeded):
        world.api.eth_getLogs({"address": [GOOD_ADDRESS] * 1001})
    with pytest.raises(LimitExceeded):
        world.api.eth_getProof(GOOD_ADDRESS, ["0x1"] * 1001, "latest")


JSON_ATOMS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-1, max_value=2**70),
    st.floats(),
    st.text(max_size=4),
    st.sampled_from(
        ["latest", "pending", "earliest", "0x", "0x0", "0x3", "0xg", "0X1", "-0x1", " 0x1",
         GOOD_ADDRESS, GOOD_HASH, NOTARY, "0x" + "00" * 31]
    ),
)  # fmt: skip
JSON_KEYS = st.sampled_from(
    ["from", "to", "gas", "value", "data", "input", "blockHash", "blockNumber",
     "requireCanonical", "fromBlock", "toBlock", "address", "topics", "accessList"]
)  # fmt: skip
JSON_VALUES = st.recursive(
    JSON_ATOMS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(JSON_KEYS, inner, max_size=4)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(method=st.sampled_from(METHOD_NAMES), params=st.lists(JSON_VALUES, max_size=4))
def test_junk_params_raise_only_polder_errors(world: World, method: str, params: list[Any]) -> None:
    with contextlib.suppress(PolderError):
        world.api.methods()[method](*params)
