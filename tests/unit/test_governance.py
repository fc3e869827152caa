"""Validator-set governance on real chains: the ValidatorRegistry, vanity, seals, import.

Two in-memory chains play two nodes: the first builds each block, a quorum
of the set in force seals it, the second imports it. Votes are ordinary
transactions from the validators' keys.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pytest
from eth.abc import BlockAPI, SignedTransactionAPI
from eth.db.atomic import AtomicDB
from eth_abi.abi import encode
from eth_hash.auto import keccak

from consensus.errors import InvalidBlock, StorageError
from consensus.genesis import Genesis, decode_genesis
from consensus.seal import (
    compute_quorum,
    compute_validators_hash,
    get_extra_data,
    replace_extra_data,
)
from contracts.loader import load_artifact
from contracts.registry import compute_registry_storage
from node.chain import Chain
from node.db import LevelDB
from node.evm import PolderHeader
from tests.unit.test_chain import (
    CHAIN_ID,
    GENESIS_TIMESTAMP,
    NOTARY,
    NOTARY_ARTIFACT,
    address_of,
    reseal,
    send,
    sign_transaction,
    with_header_fields,
)

REGISTRY = bytes(18) + b"\x02\x00"
KEYS = tuple(keccak(b"polder governance validator %d" % i) for i in range(6))
PROPOSE = keccak(b"propose(bool,address,string,string)")[:4]
APPROVE = keccak(b"approve(uint256)")[:4]
ACTIVATION_DELAY = 2
PROPOSAL_LIFETIME = 200


def make_genesis(
    members: Sequence[bytes], storage_members: Sequence[bytes] | None = None
) -> Genesis:
    storage = compute_registry_storage(
        [address_of(k) for k in (members if storage_members is None else storage_members)]
    )
    return decode_genesis(
        {
            "chainId": CHAIN_ID,
            "timestamp": GENESIS_TIMESTAMP,
            "gasLimit": 30_000_000,
            "validators": [
                {
                    "name": f"municipality-{i}",
                    "address": "0x" + address_of(key).hex(),
                    "p2p": f"ws://127.0.0.1:{9000 + i}",
                    "rpc": f"http://127.0.0.1:{8545 + i}",
                }
                for i, key in enumerate(members)
            ],
            "admins": [],
            "alloc": {
                "0x" + NOTARY.hex(): {"code": "0x" + NOTARY_ARTIFACT.runtime_bytecode.hex()},
                "0x" + REGISTRY.hex(): {
                    "code": "0x" + load_artifact("ValidatorRegistry").runtime_bytecode.hex(),
                    "storage": {hex(k): hex(v) for k, v in storage.items()},
                },
            },
            "contracts": {
                "Notary": "0x" + NOTARY.hex(),
                "ValidatorRegistry": "0x" + REGISTRY.hex(),
            },
        }
    )


@dataclass
class Network:
    """A builder node and a follower node over the same genesis."""

    builder: Chain
    follower: Chain
    nonces: dict[bytes, int] = field(default_factory=dict)

    def keys_for(self, number: int) -> list[bytes]:
        members = self.builder.get_validators_at(number)
        return [next(k for k in KEYS if address_of(k) == m) for m in members]

    def tx(self, key: bytes, data: bytes) -> SignedTransactionAPI:
        nonce = self.nonces.get(key, 0)
        self.nonces[key] = nonce + 1
        return sign_transaction(key, to=REGISTRY, data=data, nonce=nonce, gas=1_000_000)

    def propose(
        self, key: bytes, add: bool, who: bytes, name: str = "Delft"
    ) -> SignedTransactionAPI:
        endpoint = "ws://127.0.0.1:9999/p2p" if add else ""
        args = encode(
            ["bool", "address", "string", "string"], [add, address_of(who), name, endpoint]
        )
        return self.tx(key, PROPOSE + args)

    def approve(self, key: bytes, proposal: int) -> SignedTransactionAPI:
        return self.tx(key, APPROVE + encode(["uint256"], [proposal]))

    def step(self, transactions: Sequence[SignedTransactionAPI] = ()) -> BlockAPI:
        """Build, seal with a quorum of the set in force, commit, and import on the follower."""
        number = self.builder.head.block_number + 1
        built = self.builder.build_block(
            transactions,
            timestamp=self.builder.head.timestamp + 1,
            coinbase=self.builder.get_validators_at(number)[0],
        )
        if built.excluded:
            raise AssertionError(f"excluded: {built.excluded}")
        keys = self.keys_for(number)
        block = built.block
        sealed = self.builder.seal_block(
            block, [self.builder.sign_block(block, k) for k in keys[: compute_quorum(len(keys))]]
        )
        self.builder.commit_built_block(sealed)
        self.follower.import_block(send(sealed, self.follower))
        return sealed

    def excluded_reason(self, transaction: SignedTransactionAPI) -> str:
        built = self.builder.build_block(
            [transaction], timestamp=self.builder.head.timestamp + 1, coinbase=address_of(KEYS[0])
        )
        self.nonces[bytes(transaction.sender)] = transaction.nonce
        assert len(built.excluded) == 1
        return built.excluded[0].reason


@pytest.fixture
def net() -> Network:
    genesis = make_genesis(KEYS[:4])
    return Network(Chain(AtomicDB(), genesis), Chain(AtomicDB(), genesis))


def vanity_of(block: BlockAPI) -> bytes:
    return get_extra_data(PolderHeader.serialize(block.header)).vanity


def members(keys: Sequence[bytes]) -> tuple[bytes, ...]:
    return tuple(address_of(k) for k in keys)


def add_fifth(net: Network) -> int:
    """Adopt adding KEYS[4] with 3 of 4 approvals; return the adoption height."""
    net.step([net.propose(KEYS[0], True, KEYS[4])])
    net.step([net.approve(KEYS[1], 1)])
    assert net.builder.get_validators_at(net.builder.head.block_number + 5) == members(KEYS[:4])
    return net.step([net.approve(KEYS[2], 1)]).number


def test_two_thirds_adopts_an_addition_at_a_defined_height(net: Network) -> None:
    """[GOV-ADOPT.1] [GOV-HEIGHT.1] [CHAIN-VANITY.1]"""
    adopted = add_fifth(net)
    change = net.step()
    assert change.number == adopted + ACTIVATION_DELAY - 1
    assert vanity_of(change) == compute_validators_hash(members(KEYS[:5]))
    first_of_new = net.step()
    assert net.builder.get_validators_at(first_of_new.number) == members(KEYS[:5])
    assert len(get_extra_data(PolderHeader.serialize(first_of_new.header)).seals) == 4
    assert net.builder.get_validator_changes() == (change.number,)
    assert net.follower.get_validator_changes() == (change.number,)
    assert net.follower.head.hash == net.builder.head.hash


def test_the_old_quorum_no_longer_seals_after_an_addition(net: Network) -> None:
    """[GOV-SEALS.1] with five validators, three seals are not a quorum."""
    add_fifth(net)
    net.step()
    number = net.builder.head.block_number + 1
    built = net.builder.build_block(
        [], timestamp=net.builder.head.timestamp + 1, coinbase=address_of(KEYS[0])
    )
    three = net.builder.seal_block(
        built.block, [net.builder.sign_block(built.block, k) for k in KEYS[:3]]
    )
    assert number == three.number
    with pytest.raises(InvalidBlock, match="quorum is 4 of 5"):
        net.follower.import_block(send(three, net.follower))


def test_removal_needs_two_thirds_of_the_new_set_and_drops_its_seals(net: Network) -> None:
    """[GOV-ADOPT.1] [GOV-SEALS.1] a removed validator's seal no longer counts anywhere."""
    add_fifth(net)
    net.step()
    net.step([net.propose(KEYS[0], False, KEYS[3])])
    net.step([net.approve(KEYS[1], 2)])
    net.step([net.approve(KEYS[2], 2)])
    assert net.builder.get_validators_at(net.builder.head.block_number + 5) == members(KEYS[:5])
    net.step([net.approve(KEYS[4], 2)])  # 4 of 5
    net.step()
    net.step()
    remaining = (*members(KEYS[:3]), address_of(KEYS[4]))
    assert net.builder.validators == remaining
    built = net.builder.build_block(
        [], timestamp=net.builder.head.timestamp + 1, coinbase=address_of(KEYS[0])
    )
    with_removed = net.builder.seal_block(
        built.block, [net.builder.sign_block(built.block, k) for k in (KEYS[0], KEYS[1], KEYS[3])]
    )
    with pytest.raises(InvalidBlock, match="not in the validator set"):
        net.follower.import_block(send(with_removed, net.follower))
    assert len(net.builder.get_validator_changes()) == 2


def test_without_two_thirds_nothing_changes_and_the_proposal_expires(net: Network) -> None:
    """[GOV-ADOPT.1] [GOV-EXPIRE.1]"""
    net.step([net.propose(KEYS[0], True, KEYS[4])])
    net.step([net.approve(KEYS[1], 1)])
    for _ in range(PROPOSAL_LIFETIME):
        net.step()
    assert net.builder.get_validator_changes() == ()
    assert net.builder.validators == members(KEYS[:4])
    assert "proposal expired" in net.excluded_reason(net.approve(KEYS[2], 1))


def test_only_current_validators_vote(net: Network) -> None:
    """[GOV-MEMBER.1]"""
    assert "not a current validator" in net.excluded_reason(net.propose(KEYS[5], True, KEYS[5]))
    net.step([net.propose(KEYS[0], True, KEYS[4])])
    assert "not a current validator" in net.excluded_reason(net.approve(KEYS[4], 1))
    assert "already approved" in net.excluded_reason(net.approve(KEYS[0], 1))
    assert "no such proposal" in net.excluded_reason(net.approve(KEYS[1], 7))


def test_a_vanity_that_hides_a_change_is_refused(net: Network) -> None:
    """[CHAIN-VANITY.1] the change header must commit to the new set."""
    add_fifth(net)
    built = net.builder.build_block(
        [], timestamp=net.builder.head.timestamp + 1, coinbase=address_of(KEYS[0])
    )
    old_vanity = compute_validators_hash(members(KEYS[:4]))

    def hide(fields: list[bytes]) -> list[bytes]:
        extra = replace(get_extra_data(fields), vanity=old_vanity)
        return reseal(replace_extra_data(fields, extra), KEYS[:3])

    lying = with_header_fields(built.block, hide)
    with pytest.raises(InvalidBlock, match="vanity"):
        net.follower.import_block(send(lying, net.follower))


def test_sets_survive_a_restart(tmp_path: pathlib.Path) -> None:
    genesis = make_genesis(KEYS[:4])
    with LevelDB(tmp_path / "a") as db_a, LevelDB(tmp_path / "b") as db_b:
        net = Network(Chain(db_a, genesis), Chain(db_b, genesis))
        add_fifth(net)
        net.step()
        net.step()
    with LevelDB(tmp_path / "a") as db:
        reopened = Chain(db, genesis)
        assert reopened.validators == members(KEYS[:5])
        assert reopened.get_validators_at(1) == members(KEYS[:4])


def test_genesis_registry_must_hold_the_genesis_set() -> None:
    with pytest.raises(StorageError, match="registry"):
        Chain(AtomicDB(), make_genesis(KEYS[:4], storage_members=KEYS[:3]))
