"""The node's light-client RPC (node.light) checked by the light client's own verifier.

Every answer is verified with clients.light.verify and consensus.proofs, the
functions a resident's light client runs; none of the node's decoded JSON
fields is trusted.
"""

from __future__ import annotations

from typing import Any

import pytest

from clients.light.verify import (
    decode_light_block,
    validate_light_block,
    validate_transaction_proof,
)
from consensus.errors import InvalidParams, InvalidProof
from consensus.proofs import compute_proven_account, compute_proven_storage
from consensus.seal import compute_validators_hash
from node.api import BlockTag
from node.light import LightApi
from tests.unit.test_api import COUNT_SLOT, NOTARY, World, world  # noqa: F401 - fixture

# test_api's world: block 1 holds dynamic, legacy and create; block 2 later and transfer


@pytest.fixture(scope="module")
def light(world: World) -> LightApi:  # noqa: F811 - the imported fixture
    return LightApi(world.api)


def genesis_commitment(world: World) -> bytes:  # noqa: F811
    return compute_validators_hash(world.chain.validators)


def test_light_block_decodes_from_its_rlp_and_carries_a_quorum(
    world: World,  # noqa: F811
    light: LightApi,
) -> None:
    """[LC-HEADER.1] [LC-SEAL-QUORUM.1] the hash is recomputed; the seal verifies."""
    for number in (1, 2, 3):
        answer = light.polder_getLightBlock(hex(number))
        block = decode_light_block(answer)
        assert block.number == number
        assert block.hash == world.chain.get_header_by_number(number).hash
        signers = validate_light_block(block, genesis_commitment(world))
        assert signers == frozenset(world.chain.validators)


def test_light_block_by_hash_tag_and_unknown(world: World, light: LightApi) -> None:  # noqa: F811
    head = world.chain.head
    by_hash = light.polder_getLightBlock("0x" + head.hash.hex())
    assert by_hash == light.polder_getLightBlock("latest")
    assert light.polder_getLightBlock(hex(head.block_number + 5)) is None
    assert light.polder_getLightBlock("0x" + "11" * 32) is None
    genesis = decode_light_block(light.polder_getLightBlock("0x0"))
    assert genesis.extra.seals == ()
    assert genesis.hash == world.chain.genesis_hash


@pytest.mark.parametrize("role", ["dynamic", "legacy", "create", "later", "transfer"])
def test_transaction_proof_verifies_for_every_transaction_type(
    world: World,  # noqa: F811
    light: LightApi,
    role: str,
) -> None:
    """[LC-PROOF-TX.1] [LC-PROOF-RECEIPT.1] typed and legacy encodings both prove."""
    tx = world.txs[role]
    answer = light.polder_getTransactionProof("0x" + tx.hash.hex())
    assert answer is not None
    block = decode_light_block(answer["lightBlock"])
    validate_light_block(block, genesis_commitment(world))
    proven = validate_transaction_proof(answer, block, tx.hash)
    receipt = world.chain.get_receipts(world.chain.get_header_by_number(block.number))[proven.index]
    assert proven.receipt.succeeded
    assert proven.receipt.cumulative_gas_used == receipt.gas_used
    assert len(proven.receipt.logs) == len(receipt.logs)


def tampered(answer: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**answer, key: value}


def test_transaction_proof_refuses_tampering(world: World, light: LightApi) -> None:  # noqa: F811
    tx = world.txs["dynamic"]
    answer = light.polder_getTransactionProof("0x" + tx.hash.hex())
    assert answer is not None
    block = decode_light_block(answer["lightBlock"])
    other_tx = world.txs["legacy"]
    with pytest.raises(InvalidProof, match="is not 0x"):
        validate_transaction_proof(answer, block, other_tx.hash)
    with pytest.raises(InvalidProof):
        validate_transaction_proof(tampered(answer, "transactionIndex", "0x1"), block, tx.hash)
    nodes = list(answer["receiptProof"])
    nodes[-1] = nodes[-1][:-2] + ("00" if nodes[-1][-2:] != "00" else "01")
    with pytest.raises(InvalidProof):
        validate_transaction_proof(tampered(answer, "receiptProof", nodes), block, tx.hash)
    with pytest.raises(InvalidProof, match="not the one the proofs hold"):
        validate_transaction_proof(tampered(answer, "receipt", "0x00"), block, tx.hash)
    later = decode_light_block(light.polder_getLightBlock("0x2"))
    with pytest.raises(InvalidProof):
        validate_transaction_proof(answer, later, tx.hash)


def test_unknown_transaction_has_no_proof(light: LightApi) -> None:
    assert light.polder_getTransactionProof("0x" + "22" * 32) is None
    with pytest.raises(InvalidParams):
        light.polder_getTransactionProof("0x1234")


def test_historical_account_and_storage_proofs(world: World, light: LightApi) -> None:  # noqa: F811
    """[LC-PROOF-ACCOUNT.1] [LC-PROOF-STORAGE.1] eth_getProof holds at every retained height."""
    notary = bytes.fromhex(NOTARY[2:])
    counts = []
    for number in (0, 1, 2):
        block = decode_light_block(light.polder_getLightBlock(hex(number)))
        proof = world.api.eth_getProof(NOTARY, [hex(COUNT_SLOT)], hex(number))
        account = compute_proven_account(
            block.state_root, notary, [bytes.fromhex(n[2:]) for n in proof["accountProof"]]
        )
        entry = proof["storageProof"][0]
        counts.append(
            compute_proven_storage(
                account.storage_root, COUNT_SLOT, [bytes.fromhex(n[2:]) for n in entry["proof"]]
            )
        )
    assert counts == [0, 2, 3]


def test_validator_changes_are_none_while_the_set_is_fixed(
    world: World,  # noqa: F811
    light: LightApi,
) -> None:
    answer = light.polder_getValidatorChanges("0x0", "latest")
    assert answer["changes"] == []
    assert int(answer["toBlock"], 16) == world.chain.head.block_number
    with pytest.raises(InvalidParams, match="after"):
        light.polder_getValidatorChanges("0x3", "0x1")
    assert world.api.find_header(BlockTag(number=1)) is not None
