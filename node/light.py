"""JSON-RPC methods that serve light clients (docs/spec/light-client.md).

A light client trusts none of these answers: it checks each header's seals
with :func:`consensus.seal.validate_committed_seals` and each proof with
:mod:`consensus.proofs`. The node therefore sends the raw RLP it holds
(headers with their seals, trie nodes, transaction and receipt encodings);
the decoded fields beside them are for people reading the JSON.
"""

# Method names are the JSON-RPC names.
# ruff: noqa: N802

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import rlp
from eth.abc import BlockHeaderAPI

from consensus.errors import InvalidParams
from consensus.seal import get_extra_data
from node.api import (
    REQUIRED,
    BlockTag,
    EthApi,
    decode_block_tag,
    decode_data,
    encode_data,
    encode_quantity,
    unpack_params,
)
from node.evm import PolderHeader

MAX_CHANGES = 64
"""Most validator-set changes one ``polder_getValidatorChanges`` answer holds; the
answer's ``toBlock`` then says where it stopped, and the client asks again."""
METHOD_NAMES = (
    "polder_getLightBlock",
    "polder_getTransactionProof",
    "polder_getValidatorChanges",
)


def format_light_block(header: BlockHeaderAPI) -> dict[str, Any]:
    """Return a header with its seals: what a light client verifies.

    ``header`` is the complete RLP (extraData with seals); the other fields
    are decoded from it for readers and carry no extra trust.
    """
    fields = PolderHeader.serialize(header)
    extra = get_extra_data(fields)
    return {
        "number": encode_quantity(header.block_number),
        "hash": encode_data(header.hash),
        "header": encode_data(rlp.encode(fields)),
        "validators": [encode_data(v) for v in extra.validators],
        "nextValidatorsHash": encode_data(extra.vanity),
        "round": encode_quantity(extra.round),
        "seals": [encode_data(s) for s in extra.seals],
    }


class LightApi:
    """The ``polder_*`` methods a light client calls; each blocks on the chain thread."""

    def __init__(self, eth: EthApi) -> None:
        self.eth = eth
        self.chain = eth.chain

    def methods(self) -> dict[str, Callable[..., Any]]:
        """Return the RPC methods by name, for a dispatcher."""
        return {name: getattr(self, name) for name in METHOD_NAMES}

    def polder_getLightBlock(self, *params: Any) -> dict[str, Any] | None:
        """Return the light block at a number, tag or hash, or null if this node lacks it."""
        (block,) = unpack_params(params, ("block", REQUIRED))
        if isinstance(block, str) and len(block) == 66:
            tag = BlockTag(block_hash=decode_data(block, "block", 32))
        else:
            tag = decode_block_tag(block)
        header = self.eth.find_header(tag)
        return None if header is None else format_light_block(header)

    def polder_getTransactionProof(self, *params: Any) -> dict[str, Any] | None:
        """Return a mined transaction and its receipt with trie proofs, or null."""
        (tx_hash_param,) = unpack_params(params, ("transactionHash", REQUIRED))
        tx_hash = decode_data(tx_hash_param, "transactionHash", 32)
        mined = self.eth.find_mined(tx_hash)
        if mined is None:
            return None
        header, _block, index = mined
        proof = self.chain.get_transaction_proof(header, index)
        return {
            "transactionHash": encode_data(tx_hash),
            "blockNumber": encode_quantity(header.block_number),
            "blockHash": encode_data(header.hash),
            "transactionIndex": encode_quantity(index),
            "lightBlock": format_light_block(header),
            "transaction": encode_data(proof["transaction"]),
            "transactionProof": [encode_data(node) for node in proof["transactionProof"]],
            "receipt": encode_data(proof["receipt"]),
            "receiptProof": [encode_data(node) for node in proof["receiptProof"]],
        }

    def polder_getValidatorChanges(self, *params: Any) -> dict[str, Any]:
        """Return the headers in ``[from, to]`` that commit to a new validator set.

        A change header, sealed by the old set, commits in its vanity to the
        new set; the next header the client verifies lists that set. At most
        :data:`MAX_CHANGES` are returned: ``toBlock`` is the last height the
        answer covers, so a client asks again from ``toBlock + 1``.
        """
        first_param, last_param = unpack_params(
            params, ("fromBlock", REQUIRED), ("toBlock", "latest")
        )
        first = self.eth.get_block_number(decode_block_tag(first_param, "fromBlock"))
        last = self.eth.get_block_number(decode_block_tag(last_param, "toBlock"))
        if first > last:
            raise InvalidParams(f"fromBlock {first} is after toBlock {last}")
        last = min(last, self.chain.head.block_number)
        heights = [h for h in self.chain.get_validator_changes() if first <= h <= last]
        if len(heights) > MAX_CHANGES:
            heights = heights[:MAX_CHANGES]
            last = heights[-1]
        return {
            "fromBlock": encode_quantity(first),
            "toBlock": encode_quantity(last),
            "changes": [
                {
                    "number": encode_quantity(height),
                    "lightBlock": format_light_block(self.chain.get_header_by_number(height)),
                }
                for height in heights
            ],
        }
