"""The node's chain (node/chain.py) over LevelDB and over py-evm's in-memory database.

Genesis, the zero-fee and permissioned-deployment rules, building and
committing blocks, importing them on a second node, refusing bad blocks
without moving the head, reopening the data directory, and EIP-1186 proofs.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
import rlp
from eth._utils.address import generate_contract_address
from eth.abc import BlockAPI, SignedTransactionAPI
from eth.db.atomic import AtomicDB
from eth.exceptions import TransactionNotFound
from eth.rlp.accounts import Account
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey
from trie import HexaryTrie
from trie.exceptions import BadTrieProof

from consensus.errors import InvalidBlock, StorageError
from consensus.genesis import Genesis, decode_genesis
from consensus.seal import (
    compute_seal_digest,
    compute_validators_hash,
    get_extra_data,
    replace_extra_data,
    sign_seal,
)
from contracts.loader import load_artifact
from node.chain import BuiltBlock, Chain, compute_genesis_hash
from node.db import LevelDB
from node.evm import PolderChainDB, PolderHeader, PolderVM

CHAIN_ID = 5262404
GENESIS_TIMESTAMP = 1767225600
GAS_LIMIT = 30_000_000
VALIDATOR_KEYS = tuple(keccak(b"polder test validator %d" % i) for i in range(4))
OUTSIDER_KEY = keccak(b"polder test outsider")
ADMIN_KEY = keccak(b"polder test admin")
NOTARY = bytes(18) + b"\x01\x00"
NOTARY_ARTIFACT = load_artifact("Notary")
RECORD_SELECTOR = keccak(b"record(bytes32,bytes32)")[:4]
COUNT_SLOT = 1
"""Storage slot of ``Notary.count`` (``values`` is slot 0)."""
TRANSFER_GAS = 21_000


def address_of(private_key: bytes) -> bytes:
    return PrivateKey(private_key).public_key.to_canonical_address()


def fresh_key(label: str) -> bytes:
    return keccak(b"polder test account " + label.encode())


def make_genesis(
    *, validators: int = 1, gas_limit: int = GAS_LIMIT, timestamp: int = GENESIS_TIMESTAMP
) -> Genesis:
    return decode_genesis(
        {
            "chainId": CHAIN_ID,
            "timestamp": timestamp,
            "gasLimit": gas_limit,
            "validators": [
                {
                    "name": f"municipality-{i}",
                    "address": "0x" + address_of(key).hex(),
                    "p2p": f"ws://127.0.0.1:{9000 + i}",
                    "rpc": f"http://127.0.0.1:{8545 + i}",
                }
                for i, key in enumerate(VALIDATOR_KEYS[:validators])
            ],
            "admins": [{"name": "admin", "address": "0x" + address_of(ADMIN_KEY).hex()}],
            "alloc": {"0x" + NOTARY.hex(): {"code": "0x" + NOTARY_ARTIFACT.runtime_bytecode.hex()}},
            "contracts": {"Notary": "0x" + NOTARY.hex()},
        }
    )


def sign_transaction(
    private_key: bytes,
    *,
    to: bytes,
    data: bytes = b"",
    nonce: int = 0,
    value: int = 0,
    gas: int = 100_000,
) -> SignedTransactionAPI:
    """A zero-fee EIP-1559 transaction, as a voter's client would send it."""
    unsigned = PragueTransactionBuilder.new_unsigned_dynamic_fee_transaction(
        CHAIN_ID, nonce, 0, 0, gas, to, value, data, ()
    )
    signed = unsigned.as_signed_transaction(PrivateKey(private_key))
    # Round-trip through raw bytes, as transactions reach a node.
    return PragueTransactionBuilder.decode(signed.encode())


def record(private_key: bytes, key: bytes, value: bytes, nonce: int = 0) -> SignedTransactionAPI:
    """A call of ``Notary.record(key, value)``; a zero ``value`` reverts."""
    return sign_transaction(private_key, to=NOTARY, data=RECORD_SELECTOR + key + value, nonce=nonce)


def word(n: int) -> bytes:
    return n.to_bytes(32, "big")


def build(chain: Chain, transactions: Sequence[SignedTransactionAPI]) -> BuiltBlock:
    return chain.build_block(
        transactions,
        timestamp=chain.head.timestamp + 1,
        coinbase=address_of(VALIDATOR_KEYS[0]),
    )


def seal(chain: Chain, block: BlockAPI, keys: Sequence[bytes]) -> BlockAPI:
    return chain.seal_block(block, [chain.sign_block(block, key) for key in keys])


def build_and_commit(
    chain: Chain, transactions: Sequence[SignedTransactionAPI], validators: int = 1
) -> tuple[BuiltBlock, BlockAPI]:
    built = build(chain, transactions)
    sealed = seal(chain, built.block, VALIDATOR_KEYS[:validators])
    chain.commit_built_block(sealed)
    return built, sealed


def send(block: BlockAPI, chain: Chain) -> BlockAPI:
    """The block as another node receives it: RLP bytes, decoded again."""
    return chain.decode_block(rlp.encode(block))


def with_header_fields(block: BlockAPI, change: Any) -> BlockAPI:
    """Return ``block`` whose header's RLP field list went through ``change``."""
    fields = change(list(PolderHeader.serialize(block.header)))
    return block.copy(header=PolderHeader.deserialize(fields))


def reseal(fields: list[bytes], keys: Sequence[bytes]) -> list[bytes]:
    digest = compute_seal_digest(fields)
    extra = replace(get_extra_data(fields), seals=tuple(sign_seal(digest, k) for k in keys))
    return replace_extra_data(fields, extra)


@contextmanager
def open_chain(path: pathlib.Path, genesis: Genesis) -> Iterator[Chain]:
    with LevelDB(path) as db:
        yield Chain(db, genesis)


@pytest.fixture(scope="module")
def genesis() -> Genesis:
    return make_genesis()


@pytest.fixture
def chain(genesis: Genesis) -> Chain:
    return Chain(AtomicDB(), genesis)


@pytest.fixture
def other_node(genesis: Genesis) -> Chain:
    return Chain(AtomicDB(), genesis)


# --- genesis -------------------------------------------------------------------------


def test_genesis_hash_is_deterministic(genesis: Genesis, tmp_path: pathlib.Path) -> None:
    expected = compute_genesis_hash(genesis)
    first = Chain(AtomicDB(), genesis)
    second = Chain(AtomicDB(), make_genesis())
    with open_chain(tmp_path / "db", make_genesis()) as on_disk:
        assert on_disk.genesis_hash == expected
    assert first.genesis_hash == second.genesis_hash == expected
    assert first.head.block_number == 0
    assert first.head.hash == expected
    assert first.head.base_fee_per_gas == 0
    assert compute_genesis_hash(make_genesis(timestamp=GENESIS_TIMESTAMP + 1)) != expected
    assert compute_genesis_hash(make_genesis(validators=4)) != expected


def test_data_dir_refuses_another_genesis(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db"
    with open_chain(path, make_genesis()) as chain:
        ours = chain.genesis_hash
    with LevelDB(path) as db, pytest.raises(StorageError, match="another chain"):
        Chain(db, make_genesis(validators=4))
    with open_chain(path, make_genesis()) as chain:
        assert chain.genesis_hash == ours


# --- zero fees, reverts, permissioned deployment ------------------------------------------


BLOCK_CAPACITY = 8
"""Transfers per block in the base-fee tests: the gas limit is exactly this many."""


@pytest.mark.parametrize(
    "fill",
    [
        pytest.param(BLOCK_CAPACITY // 2, id="half-full"),
        # Past half the gas limit EIP-1559 would raise the base fee to 1.
        pytest.param(BLOCK_CAPACITY // 2 + 1, id="over-half"),
        pytest.param(BLOCK_CAPACITY, id="full"),
    ],
)
def test_base_fee_stays_zero_after_busy_blocks(fill: int) -> None:
    genesis = make_genesis(gas_limit=BLOCK_CAPACITY * TRANSFER_GAS)
    chain = Chain(AtomicDB(), genesis)
    follower = Chain(AtomicDB(), genesis)
    senders = [fresh_key(f"busy-{i}") for i in range(3 * fill)]
    pending = [sign_transaction(k, to=b"\x42" * 20, gas=TRANSFER_GAS) for k in senders]
    while pending:
        offered = pending if fill == BLOCK_CAPACITY else pending[:fill]
        built, sealed = build_and_commit(chain, offered)
        included = {tx.hash for tx in built.block.transactions}
        assert len(included) == fill
        # What does not fit stays out without being refused: it waits for the next block.
        assert built.excluded == ()
        pending = [tx for tx in pending if tx.hash not in included]
        assert chain.head.gas_used == fill * TRANSFER_GAS
        assert chain.head.base_fee_per_gas == 0
        assert chain.get_next_header(chain.head).base_fee_per_gas == 0
        follower.import_block(send(sealed, follower))
    assert follower.head.hash == chain.head.hash
    state = chain.get_state(chain.head)
    for key in senders:
        assert state.get_balance(address_of(key)) == 0
        assert state.get_nonce(address_of(key)) == 1


def test_fresh_zero_balance_account_calls_a_contract(chain: Chain) -> None:
    voter = fresh_key("voter")
    assert chain.get_state(chain.head).get_balance(address_of(voter)) == 0
    built, _ = build_and_commit(chain, [record(voter, word(1), word(2))])
    assert built.excluded == ()
    [receipt] = chain.get_receipts(chain.head)
    assert receipt.state_root == b"\x01"  # status: success
    [log] = receipt.logs
    assert log.address == NOTARY
    assert log.data == word(2)
    state = chain.get_state(chain.head)
    assert state.get_storage(NOTARY, COUNT_SLOT) == 1
    assert state.get_nonce(address_of(voter)) == 1
    assert state.get_balance(address_of(voter)) == 0


def test_reverting_transaction_is_excluded_with_its_reason(chain: Chain) -> None:
    good = record(fresh_key("a"), word(1), word(1))
    reverting = record(fresh_key("b"), word(2), word(0))
    also_good = record(fresh_key("c"), word(3), word(3))
    built, _ = build_and_commit(chain, [good, reverting, also_good])
    [excluded] = built.excluded
    assert excluded.tx_hash == reverting.hash
    assert "value must be nonzero" in excluded.reason
    assert [tx.hash for tx in built.block.transactions] == [good.hash, also_good.hash]
    with pytest.raises(TransactionNotFound):
        chain.get_transaction_location(reverting.hash)
    assert chain.get_transaction_location(also_good.hash).index == 1
    # The sender's nonce did not move, so it can still send a valid transaction.
    assert chain.get_state(chain.head).get_nonce(address_of(fresh_key("b"))) == 0
    retry = record(fresh_key("b"), word(2), word(2))
    built, _ = build_and_commit(chain, [retry])
    assert [tx.hash for tx in built.block.transactions] == [retry.hash]
    assert chain.get_state(chain.head).get_storage(NOTARY, COUNT_SLOT) == 3


def deployment(private_key: bytes) -> SignedTransactionAPI:
    return sign_transaction(private_key, to=b"", data=NOTARY_ARTIFACT.bytecode, gas=3_000_000)


def test_contract_creation_by_non_admin_is_excluded(chain: Chain) -> None:
    stranger = fresh_key("stranger")
    transaction = deployment(stranger)
    built, _ = build_and_commit(chain, [transaction])
    [excluded] = built.excluded
    assert excluded.tx_hash == transaction.hash
    assert "deploy" in excluded.reason
    assert built.block.transactions == ()
    target = generate_contract_address(address_of(stranger), 0)
    assert chain.get_state(chain.head).get_code(target) == b""


def test_contract_creation_by_admin_deploys(chain: Chain, other_node: Chain) -> None:
    _, sealed = build_and_commit(chain, [deployment(ADMIN_KEY)])
    [receipt] = chain.get_receipts(chain.head)
    assert receipt.state_root == b"\x01"
    deployed = generate_contract_address(address_of(ADMIN_KEY), 0)
    assert chain.get_state(chain.head).get_code(deployed) == NOTARY_ARTIFACT.runtime_bytecode
    call = sign_transaction(fresh_key("user"), to=deployed, data=RECORD_SELECTOR + word(5) * 2)
    _, second = build_and_commit(chain, [call])
    assert chain.get_state(chain.head).get_storage(deployed, COUNT_SLOT) == 1
    for block in (sealed, second):
        other_node.import_block(send(block, other_node))
    assert other_node.head.state_root == chain.head.state_root


# --- import on a second node ---------------------------------------------------------


def test_block_built_on_one_node_imports_on_another(tmp_path: pathlib.Path) -> None:
    genesis = make_genesis()
    with open_chain(tmp_path / "a", genesis) as a, open_chain(tmp_path / "b", genesis) as b:
        blocks = []
        for height in range(1, 3):
            transactions = [
                record(fresh_key(f"{height}-{i}"), word(i), word(height)) for i in range(5)
            ]
            transactions.append(record(fresh_key(f"{height}-revert"), word(9), word(0)))
            transactions.append(
                sign_transaction(fresh_key(f"{height}-t"), to=b"\x42" * 20, gas=TRANSFER_GAS)
            )
            built, sealed = build_and_commit(a, transactions)
            assert len(built.block.transactions) == 6
            blocks.append(sealed)
        for block in blocks:
            b.import_block(send(block, b))
            assert b.head.hash == block.hash
        assert b.head.hash == a.head.hash
        assert b.head.state_root == a.head.state_root
        assert b.head.receipt_root == a.head.receipt_root
        assert b.get_receipts(b.head) == a.get_receipts(a.head)
        assert b.get_state(b.head).get_storage(NOTARY, COUNT_SLOT) == 10


def tampered(block: BlockAPI, how: str, chain: Chain) -> BlockAPI:
    """Return ``block`` (sealed by the only validator) spoilt in the way ``how`` names."""
    if how == "unsealed":
        return chain.seal_block(block, [])
    if how == "sealed by a non-validator key":
        return seal(chain, block, [OUTSIDER_KEY])
    if how == "sealed by the validator and a non-validator":
        return seal(chain, block, [VALIDATOR_KEYS[0], OUTSIDER_KEY])
    if how == "seal made for another round":
        # Changing the round keeps the block hash but voids the seal.
        return with_header_fields(
            block,
            lambda fields: replace_extra_data(fields, replace(get_extra_data(fields), round=1)),
        )
    if how == "lists another validator set":

        def widen(fields: list[bytes]) -> list[bytes]:
            extra = get_extra_data(fields)
            validators = (*extra.validators, address_of(OUTSIDER_KEY))
            widened = replace(
                extra, validators=validators, vanity=compute_validators_hash(validators)
            )
            return reseal(replace_extra_data(fields, widened), [VALIDATOR_KEYS[0]])

        return with_header_fields(block, widen)
    transactions = list(block.transactions)
    if how == "transaction dropped":
        return block.copy(transactions=transactions[:-1])
    if how == "transactions reordered":
        return block.copy(transactions=transactions[::-1])
    if how == "transaction swapped":
        swapped = record(fresh_key("intruder"), word(7), word(7))
        return block.copy(transactions=[transactions[0], swapped, *transactions[2:]])
    if how == "transaction added":
        return block.copy(
            transactions=[*transactions, record(fresh_key("extra"), word(8), word(8))]
        )
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "unsealed",
        "sealed by a non-validator key",
        "sealed by the validator and a non-validator",
        "seal made for another round",
        "lists another validator set",
        "transaction dropped",
        "transactions reordered",
        "transaction swapped",
        "transaction added",
    ],
)
def test_import_refuses_a_bad_block_and_keeps_the_head(
    chain: Chain, other_node: Chain, how: str
) -> None:
    transactions = [record(fresh_key(f"t{i}"), word(i), word(i + 1)) for i in range(3)]
    _, sealed = build_and_commit(chain, transactions)
    bad = tampered(sealed, how, chain)
    genesis_head = other_node.head
    with pytest.raises(InvalidBlock):
        other_node.import_block(send(bad, other_node))
    assert other_node.head == genesis_head
    assert other_node.get_state(other_node.head).get_storage(NOTARY, COUNT_SLOT) == 0
    # The refused block left nothing behind: the genuine one still imports.
    other_node.import_block(send(sealed, other_node))
    assert other_node.head.hash == chain.head.hash
    assert other_node.head.state_root == chain.head.state_root


@pytest.mark.parametrize("seals", [0, 1, 2, 3, 4])
def test_import_needs_a_quorum_of_four_validators(seals: int) -> None:
    genesis = make_genesis(validators=4)
    proposer, follower = Chain(AtomicDB(), genesis), Chain(AtomicDB(), genesis)
    built = build(proposer, [record(fresh_key("q"), word(1), word(1))])
    sealed = seal(proposer, built.block, VALIDATOR_KEYS[:seals])
    if seals >= 3:
        follower.import_block(send(sealed, follower))
        assert follower.head.hash == built.block.hash
    else:
        with pytest.raises(InvalidBlock):
            follower.import_block(send(sealed, follower))
        assert follower.head.block_number == 0


def test_commit_refuses_an_unsealed_built_block(chain: Chain) -> None:
    built = build(chain, [record(fresh_key("u"), word(1), word(1))])
    with pytest.raises(InvalidBlock):
        chain.commit_built_block(built.block)
    assert chain.head.block_number == 0
    built, _ = build_and_commit(chain, [record(fresh_key("u"), word(1), word(1))])
    assert chain.head.block_number == 1
    assert len(built.block.transactions) == 1


def test_commit_refuses_a_block_it_did_not_build_or_that_went_stale(
    chain: Chain, other_node: Chain
) -> None:
    foreign = build(other_node, [record(fresh_key("f"), word(1), word(1))]).block
    with pytest.raises(InvalidBlock):
        chain.commit_built_block(seal(other_node, foreign, VALIDATOR_KEYS[:1]))
    first = build(chain, [record(fresh_key("s1"), word(1), word(1))]).block
    second = build(chain, [record(fresh_key("s2"), word(2), word(2))]).block
    chain.commit_built_block(seal(chain, second, VALIDATOR_KEYS[:1]))
    # The head moved past the parent ``first`` was built on.
    with pytest.raises(InvalidBlock):
        chain.commit_built_block(seal(chain, first, VALIDATOR_KEYS[:1]))
    assert chain.head.hash == second.hash
    assert chain.get_state(chain.head).get_storage(NOTARY, COUNT_SLOT) == 1


def craft_block(chain: Chain, transactions: Sequence[SignedTransactionAPI]) -> BlockAPI:
    """A block as a byzantine proposer makes it: every transaction in, none refused.

    Uses py-evm's VM directly because ``build_block`` enforces the very rules
    these blocks break.
    """
    parent = chain.head
    header = chain.get_next_header(
        parent,
        timestamp=parent.timestamp + 1,
        coinbase=address_of(VALIDATOR_KEYS[0]),
        gas_limit=parent.gas_limit,
        extra_data=build(chain, []).block.header.extra_data,
    )
    vm = chain.get_vm(header)
    header, receipts, _ = vm.apply_all_transactions(transactions, header)
    block = vm.set_block_transactions_and_withdrawals(
        vm.get_block(), header, transactions, receipts
    )
    return seal(chain, vm.mine_block(block).block, VALIDATOR_KEYS[:1])


def test_import_refuses_a_deployment_by_a_non_admin(genesis: Genesis, other_node: Chain) -> None:
    byzantine = craft_block(Chain(AtomicDB(), genesis), [deployment(fresh_key("rogue"))])
    with pytest.raises(InvalidBlock, match="deploy"):
        other_node.import_block(send(byzantine, other_node))
    assert other_node.head.block_number == 0


def test_import_refuses_a_reverted_transaction(genesis: Genesis, other_node: Chain) -> None:
    reverting = record(fresh_key("spam"), word(1), word(0))
    byzantine = craft_block(Chain(AtomicDB(), genesis), [reverting])
    with pytest.raises(InvalidBlock):
        other_node.import_block(send(byzantine, other_node))


def test_import_refuses_a_wrong_vanity(chain: Chain, other_node: Chain) -> None:
    built = build(chain, [])

    def wrong_vanity(fields: list[bytes]) -> list[bytes]:
        extra = replace(get_extra_data(fields), vanity=b"\xee" * 32)
        return reseal(replace_extra_data(fields, extra), VALIDATOR_KEYS[:1])

    with pytest.raises(InvalidBlock):
        other_node.import_block(send(with_header_fields(built.block, wrong_vanity), other_node))


def test_failed_import_keeps_the_block_being_built(chain: Chain, other_node: Chain) -> None:
    built = build(chain, [record(fresh_key("mine"), word(1), word(1))])
    sealed = seal(chain, built.block, VALIDATOR_KEYS[:1])
    junk = build(other_node, [record(fresh_key("theirs"), word(2), word(2))]).block
    with pytest.raises(InvalidBlock):
        chain.import_block(send(junk, chain))  # unsealed
    chain.commit_built_block(sealed)
    assert chain.head.hash == sealed.hash
    assert chain.get_state(chain.head).get_storage(NOTARY, COUNT_SLOT) == 1


def test_a_sender_whose_transaction_waits_for_gas_waits_whole() -> None:
    """A transaction that does not fit holds back its sender's later nonces, unreported."""
    chain = Chain(AtomicDB(), make_genesis(gas_limit=250_000))
    waiting = fresh_key("waits for gas")
    first = record(fresh_key("fits"), word(1), word(1))
    too_big = sign_transaction(
        waiting, to=NOTARY, data=RECORD_SELECTOR + word(2) + word(2), gas=200_000
    )
    later = record(waiting, word(3), word(3), nonce=1)
    other = record(fresh_key("fits too"), word(4), word(4))
    built = build(chain, [first, too_big, later, other])
    assert [t.hash for t in built.block.transactions] == [first.hash, other.hash]
    assert built.excluded == ()


def read_receipts_from_disk(chain: Chain, number: int) -> tuple[Any, ...]:
    """The receipts of block ``number`` decoded from its receipt trie, by a fresh database view."""
    header = chain.get_header_by_number(number)
    fresh = PolderChainDB(chain._db)
    return fresh.get_receipts(header, PolderVM.get_receipt_builder())


def test_every_path_returns_the_receipts_that_are_on_disk(genesis: Genesis) -> None:
    """[CHAIN-RECEIPTS.1]: build, check and import hand back the receipts, not a second read."""
    builder, checker, importer = (Chain(AtomicDB(), genesis) for _ in range(3))
    transactions = [record(fresh_key(f"rc{i}"), word(i), word(i + 1)) for i in range(3)]
    built = build(builder, transactions)
    checker.check_proposal(send(built.block, checker), now=built.block.header.timestamp)
    sealed = seal(builder, built.block, VALIDATOR_KEYS[:1])
    returned = {
        "builder": builder.commit_built_block(sealed),
        "checker": checker.commit_built_block(send(sealed, checker)),
        "importer": importer.import_block(send(sealed, importer)),
    }
    on_disk = read_receipts_from_disk(builder, 1)
    assert [r.logs[0].data for r in on_disk] == [word(i + 1) for i in range(3)]
    for name, receipts in returned.items():
        assert receipts == on_disk, name
    for chain in (checker, importer):
        assert read_receipts_from_disk(chain, 1) == on_disk
        assert chain.get_block(chain.head).transactions == sealed.transactions


def test_remembered_receipts_answer_only_their_own_root(genesis: Genesis) -> None:
    chain = Chain(AtomicDB(), genesis)
    build_and_commit(chain, [record(fresh_key("rr1"), word(1), word(1))])
    build_and_commit(chain, [record(fresh_key("rr2"), word(2), word(2))])
    first, second = (read_receipts_from_disk(chain, n) for n in (1, 2))
    assert first != second
    db = PolderChainDB(chain._db)
    db.remember_receipts(chain.get_header_by_number(1).receipt_root, first)
    builder = PolderVM.get_receipt_builder()
    assert db.get_receipts(chain.get_header_by_number(1), builder) == first
    assert db.get_receipts(chain.get_header_by_number(2), builder) == second  # from the trie


def test_header_and_block_copies_share_fields_and_equal_rlps_copy(chain: Chain) -> None:
    built = build(chain, [record(fresh_key(f"cp{i}"), word(i), word(1)) for i in range(2)])
    block = built.block
    for obj, changes in ((block.header, {"gas_used": 7}), (block, {"uncles": ()})):
        ours = obj.copy(**changes)
        reference = rlp.Serializable.copy(obj, **changes)  # rlp's own, deep-copying
        assert type(ours) is type(obj)
        assert rlp.encode(ours) == rlp.encode(reference)
        assert ours == reference
    shared = block.copy(header=block.header.copy(gas_used=7))
    assert all(a is b for a, b in zip(shared.transactions, block.transactions, strict=True))
    assert shared.header.gas_used == 7
    assert block.header.gas_used != 7
    assert block.header.copy(*list(block.header)[:3]).hash == block.header.hash
    with pytest.raises(TypeError, match="unknown or repeated field 'gas'"):
        block.header.copy(gas=1)
    with pytest.raises(TypeError, match="unknown or repeated field 'parent_hash'"):
        block.header.copy(block.header.parent_hash, parent_hash=block.header.parent_hash)


# --- persistence and proofs ----------------------------------------------------------


def test_reopening_leveldb_gives_the_same_head(tmp_path: pathlib.Path) -> None:
    genesis = make_genesis()
    path = tmp_path / "db"
    transaction = record(fresh_key("kept"), word(1), word(1))
    with open_chain(path, genesis) as chain:
        for height in range(3):
            build_and_commit(chain, [record(fresh_key(f"r{height}"), word(height), word(9))])
        build_and_commit(chain, [transaction])
        head = chain.head
    with open_chain(path, genesis) as chain:
        assert chain.head == head
        assert chain.head.hash == head.hash
        assert chain.get_header_by_number(4).hash == head.hash
        assert chain.get_transaction_location(transaction.hash).block_number == 4
        assert chain.get_state(chain.head).get_storage(NOTARY, COUNT_SLOT) == 4
        build_and_commit(chain, [record(fresh_key("after"), word(5), word(5))])
        assert chain.head.block_number == 5
        assert chain.head.parent_hash == head.hash


def verify_account(root: bytes, address: bytes, proof: dict[str, Any]) -> bytes:
    nodes = [rlp.decode(node) for node in proof["accountProof"]]
    encoded: bytes = HexaryTrie.get_from_proof(root, keccak(address), nodes)
    return encoded


def verify_slot(proof: dict[str, Any], index: int) -> int:
    entry = proof["storageProof"][index]
    nodes = [rlp.decode(node) for node in entry["proof"]]
    encoded = HexaryTrie.get_from_proof(proof["storageHash"], keccak(word(entry["key"])), nodes)
    return int.from_bytes(rlp.decode(encoded), "big") if encoded else 0


def test_a_second_node_in_the_process_stores_the_transaction_trie_too() -> None:
    # [CHAIN-TRIE-ORDERED.1] the transactions' trie is kept by their hashes
    # in the process; a node that finds it kept must still store its nodes.
    proposer, follower = Chain(AtomicDB(), make_genesis()), Chain(AtomicDB(), make_genesis())
    transactions = [record(fresh_key(f"trie {i}"), word(i + 1), word(7)) for i in range(40)]
    _, sealed = build_and_commit(proposer, transactions)
    follower.import_block(send(sealed, follower))
    for chain in (proposer, follower):
        proof = chain.get_transaction_proof(chain.head, 33)
        assert proof["transaction"] == transactions[33].encode()
        proven = HexaryTrie.get_from_proof(
            chain.head.transaction_root,
            rlp.encode(33),
            [rlp.decode(node) for node in proof["transactionProof"]],
        )
        assert proven == transactions[33].encode()


def test_account_proof_verifies_against_the_state_root(chain: Chain) -> None:
    build_and_commit(chain, [record(fresh_key("p1"), word(1), word(11))])
    first = chain.head
    build_and_commit(chain, [record(fresh_key("p2"), word(2), word(22))])
    values_slot = int.from_bytes(keccak(word(0) + word(2)), "big")  # values[word(2)]
    slots = [COUNT_SLOT, values_slot, 7]
    proof = chain.get_account_proof(NOTARY, slots, chain.head)

    account = rlp.decode(verify_account(chain.head.state_root, NOTARY, proof), sedes=Account)
    assert account.nonce == proof["nonce"]
    assert account.balance == proof["balance"]
    assert account.storage_root == proof["storageHash"]
    assert account.code_hash == proof["codeHash"] == keccak(NOTARY_ARTIFACT.runtime_bytecode)
    assert [verify_slot(proof, i) for i in range(3)] == [2, 22, 0]
    assert [entry["value"] for entry in proof["storageProof"]] == [2, 22, 0]

    # An older height still proves its own state.
    old = chain.get_account_proof(NOTARY, [COUNT_SLOT], first)
    verify_account(first.state_root, NOTARY, old)
    assert verify_slot(old, 0) == old["storageProof"][0]["value"] == 1

    # An account that does not exist is proven absent.
    nobody = address_of(fresh_key("nobody"))
    absent = chain.get_account_proof(nobody, [], chain.head)
    assert verify_account(chain.head.state_root, nobody, absent) == b""
    assert absent["balance"] == absent["nonce"] == 0

    # A proof does not verify against another root, nor once a node is altered.
    with pytest.raises(BadTrieProof):
        verify_account(first.state_root, NOTARY, proof)
    altered = [*proof["accountProof"]]
    altered[-1] = altered[-1][:-1] + bytes([altered[-1][-1] ^ 1])
    with pytest.raises((BadTrieProof, rlp.DecodingError)):
        verify_account(chain.head.state_root, NOTARY, {"accountProof": altered})
