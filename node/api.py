"""The Ethereum JSON-RPC methods, over the node's chain and mempool, with no transport.

Each public ``eth_*``/``net_*``/``web3_*`` method of :class:`EthApi` takes the
request's positional params as already-decoded JSON and returns a JSON-ready
result (quantities as minimal ``0x`` hex, byte strings as ``0x`` hex), so
web3.py and ethers.js work against the node unchanged. A malformed param
raises :class:`InvalidParams` naming it; nothing else escapes for bad input.

Like :mod:`node.chain`, every method blocks (py-evm execution, database
reads) and runs on the node's one executor thread.

The chain has instant finality and no forks: ``latest``, ``safe``,
``finalized`` and ``pending`` all name the head for reads, and the base fee is
always 0, so every fee a client asks about is 0.
"""

# The methods of EthApi carry the JSON-RPC method names (eth_getBalance, ...),
# so a dispatcher maps names to methods without a translation table.
# ruff: noqa: N802

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, cast

import rlp
from eth.abc import (
    BlockAPI,
    BlockHeaderAPI,
    ComputationAPI,
    LegacyTransactionFieldsAPI,
    LogAPI,
    ReceiptAPI,
    SignedTransactionAPI,
    StateAPI,
)
from eth.constants import CREATE_CONTRACT_ADDRESS
from eth.exceptions import HeaderNotFound, OutOfGas, Revert, TransactionNotFound
from eth.vm.spoof import SpoofTransaction
from eth_bloom.bloom import BloomFilter
from eth_hash.auto import keccak
from eth_typing import Address
from eth_utils import ValidationError
from trie.exceptions import MissingTrieNode

from consensus.errors import (
    InvalidParams,
    InvalidTransaction,
    LimitExceeded,
    ResourceNotFound,
    TransactionReverted,
)
from node.chain import Chain, decode_revert_reason, validate_deploy_permission
from node.evm import PolderVM

ZERO_ADDRESS = b"\x00" * 20
"""Sender of an ``eth_call`` that names none, as in geth."""

HEAD_TAGS = frozenset({"latest", "safe", "finalized"})
"""Tags that all mean the head: every committed block is final at once."""

MAX_TOPIC_POSITIONS = 4
"""A log has at most four topics (LOG0..LOG4)."""

MAX_FILTER_VALUES = 1_000
"""Bound on addresses, and on alternatives per topic position, in one log filter."""

MAX_FEE_HISTORY_BLOCKS = 1_024
"""geth's cap on ``eth_feeHistory``'s block count; larger requests are clamped."""

MAX_REWARD_PERCENTILES = 100
"""Bound on ``eth_feeHistory``'s percentiles; every one is 0 here anyway."""

MAX_PROOF_SLOTS = 1_000
"""Bound on storage keys in one ``eth_getProof``: each costs a trie walk."""

MAX_QUANTITY_DIGITS = 64
"""Hex digits of a 256-bit quantity; longer input is refused before conversion."""

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")
"""Selector of Solidity/Vyper ``Error(string)`` revert data."""

CALL_STIPEND = 2_300
"""Gas a value-carrying CALL adds; part of the first guess in :meth:`EthApi.eth_estimateGas`."""

REQUIRED = object()
"""Marks a param without a default in :func:`unpack_params`."""


class PendingView(Protocol):
    """What the API reads from the mempool."""

    def get_pending_nonce(self, address: bytes) -> int | None:
        """Return the nonce after ``address``'s pending transactions, or None if it has none."""
        ...

    def get_pending_transaction(self, tx_hash: bytes) -> SignedTransactionAPI | None:
        """Return a transaction admitted but not yet in a block, or None."""
        ...


@dataclass(frozen=True)
class BlockTag:
    """A decoded block parameter: a tag, a number or an EIP-1898 object."""

    number: int | None = None
    """An explicit height (``earliest`` is 0); with no hash either, the head."""
    block_hash: bytes | None = None
    """The EIP-1898 ``blockHash`` form."""
    require_canonical: bool = False
    """EIP-1898 ``requireCanonical``."""
    pending: bool = False
    """The ``pending`` tag: the head, plus the mempool where a method can tell."""


@dataclass(frozen=True)
class CallRequest:
    """The transaction object of ``eth_call`` and ``eth_estimateGas``."""

    sender: bytes
    """``from``, or the zero address."""
    to: bytes | None
    """None for a contract creation."""
    gas: int | None
    """Requested gas; None means the block gas limit."""
    value: int
    data: bytes
    """``data`` or ``input`` (equal when both are given)."""


@dataclass(frozen=True)
class LogFilter:
    """The decoded filter object of ``eth_getLogs``."""

    from_block: BlockTag
    to_block: BlockTag
    block_hash: bytes | None
    """When set, the only block searched (``fromBlock``/``toBlock`` are then absent)."""
    addresses: frozenset[bytes]
    """Empty means any address."""
    topics: tuple[frozenset[bytes] | None, ...]
    """Per position: the accepted 32-byte topics, or None for any."""


# -- encoding ------------------------------------------------------------------


def encode_quantity(value: int) -> str:
    """Encode a non-negative integer as a minimal ``0x`` hex quantity."""
    return hex(value)


def encode_data(value: bytes) -> str:
    """Encode bytes as ``0x`` hex data."""
    return "0x" + value.hex()


def encode_word(value: int) -> str:
    """Encode an integer as 32 bytes of ``0x`` hex data (topics, storage values)."""
    return encode_data(value.to_bytes(32, "big"))


# -- decoding params -------------------------------------------------------------


def describe(value: Any) -> str:
    """Return a short repr of client input for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def unpack_params(params: Sequence[Any], *spec: tuple[str, Any]) -> list[Any]:
    """Return ``params`` padded with defaults per ``spec`` of ``(name, default)``.

    JSON ``null`` counts as absent, as geth treats it. Raise :class:`InvalidParams`
    for too many params or a missing required one.
    """
    if len(params) > len(spec):
        names = ", ".join(name for name, _ in spec) or "none"
        raise InvalidParams(
            f"too many params: expected at most {len(spec)} ({names}), got {len(params)}"
        )
    values = []
    for index, (name, default) in enumerate(spec):
        value = params[index] if index < len(params) else None
        if value is None:
            if default is REQUIRED:
                raise InvalidParams(f"missing required param {name}", param=name)
            value = default
        values.append(value)
    return values


def decode_hex_digits(value: Any, name: str) -> str:
    """Return the digits of a ``0x`` hex string; raise :class:`InvalidParams`."""
    if not isinstance(value, str) or not value.startswith(("0x", "0X")):
        raise InvalidParams(
            f"{name} must be a 0x-prefixed hex string, got {describe(value)}", param=name
        )
    digits = value[2:]
    if not all(char in "0123456789abcdefABCDEF" for char in digits):
        raise InvalidParams(f"{name} is not valid hex: {describe(value)}", param=name)
    return digits


def decode_quantity(value: Any, name: str, *, allow_int: bool = False) -> int:
    """Decode a ``0x`` hex quantity (below 2**256); raise :class:`InvalidParams`.

    ``allow_int`` also accepts a JSON integer, for the few params geth takes
    either way (``eth_feeHistory``'s block count).
    """
    if allow_int and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    digits = decode_hex_digits(value, name)
    if not digits or len(digits) > MAX_QUANTITY_DIGITS:
        raise InvalidParams(
            f"{name} must be a hex quantity of 1 to {MAX_QUANTITY_DIGITS} digits, "
            f"got {describe(value)}",
            param=name,
        )
    return int(digits, 16)


def decode_data(value: Any, name: str, length: int | None = None) -> bytes:
    """Decode ``0x`` hex data, of exactly ``length`` bytes if given."""
    digits = decode_hex_digits(value, name)
    if len(digits) % 2:
        raise InvalidParams(f"{name} has an odd number of hex digits", param=name)
    raw = bytes.fromhex(digits)
    if length is not None and len(raw) != length:
        raise InvalidParams(f"{name} must be {length} bytes, got {len(raw)}", param=name)
    return raw


def decode_address(value: Any, name: str) -> bytes:
    """Decode a 20-byte address (any letter case: checksums are not enforced, as in geth)."""
    return decode_data(value, name, 20)


def decode_slot(value: Any, name: str) -> int:
    """Decode a storage key given as a quantity or as up to 32 bytes of data."""
    digits = decode_hex_digits(value, name)
    if not digits or len(digits) > MAX_QUANTITY_DIGITS:
        raise InvalidParams(
            f"{name} must be a storage key of 1 to 32 bytes, got {describe(value)}", param=name
        )
    return int(digits, 16)


def decode_bool(value: Any, name: str) -> bool:
    """Decode a JSON boolean."""
    if not isinstance(value, bool):
        raise InvalidParams(f"{name} must be true or false, got {describe(value)}", param=name)
    return value


def decode_list(value: Any, name: str, limit: int) -> list[Any]:
    """Check that ``value`` is a JSON array of at most ``limit`` items."""
    if not isinstance(value, list):
        raise InvalidParams(f"{name} must be an array, got {describe(value)}", param=name)
    if len(value) > limit:
        raise LimitExceeded(f"{name} has {len(value)} items, the limit is {limit}", limit=limit)
    return value


def decode_block_tag(value: Any, name: str = "block") -> BlockTag:
    """Decode a block parameter: a tag, a hex number, or an EIP-1898 object."""
    if isinstance(value, dict):
        return decode_block_object(value, name)
    if not isinstance(value, str):
        raise InvalidParams(
            f"{name} must be a block tag, a hex number or an object, got {describe(value)}",
            param=name,
        )
    if value in HEAD_TAGS:
        return BlockTag()
    if value == "pending":
        return BlockTag(pending=True)
    if value == "earliest":
        return BlockTag(number=0)
    if value.startswith(("0x", "0X")):
        return BlockTag(number=decode_quantity(value, name))
    raise InvalidParams(
        f"{name} must be latest, safe, finalized, pending, earliest, a hex block number "
        f"or an object with blockHash or blockNumber; got {describe(value)}",
        param=name,
    )


def decode_block_object(value: Mapping[str, Any], name: str) -> BlockTag:
    """Decode an EIP-1898 block object ``{"blockHash"}`` or ``{"blockNumber"}``."""
    unknown = set(value) - {"blockHash", "blockNumber", "requireCanonical"}
    if unknown or ("blockHash" in value) == ("blockNumber" in value):
        raise InvalidParams(
            f"{name} object must hold exactly one of blockHash and blockNumber "
            f"(and optionally requireCanonical), got {describe(value)}",
            param=name,
        )
    if "blockNumber" in value:
        if "requireCanonical" in value:
            raise InvalidParams(f"{name}: requireCanonical goes with blockHash", param=name)
        if isinstance(value["blockNumber"], dict):
            raise InvalidParams(f"{name}.blockNumber must be a number or tag", param=name)
        return decode_block_tag(value["blockNumber"], f"{name}.blockNumber")
    return BlockTag(
        block_hash=decode_data(value["blockHash"], f"{name}.blockHash", 32),
        require_canonical=decode_bool(
            value.get("requireCanonical", False), f"{name}.requireCanonical"
        ),
    )


def decode_call_request(value: Any, name: str = "transaction") -> CallRequest:
    """Decode the transaction object of ``eth_call``/``eth_estimateGas``.

    Fee fields and ``nonce`` are checked but unused: fees are always 0 and a
    call runs at the sender's current nonce. Unknown keys are ignored, as geth
    does, but access and authorization lists are refused rather than silently
    dropped, since they would change the gas a real transaction needs.
    """
    if not isinstance(value, dict):
        raise InvalidParams(f"{name} must be an object, got {describe(value)}", param=name)
    for key in ("gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "nonce"):
        if value.get(key) is not None:
            decode_quantity(value[key], f"{name}.{key}")
    for key in ("accessList", "authorizationList", "blobVersionedHashes"):
        if value.get(key):
            raise InvalidParams(f"{name}.{key} is not supported in calls", param=f"{name}.{key}")
    data = decode_call_data(value, name)
    return CallRequest(
        sender=optional(value, "from", name, decode_address) or ZERO_ADDRESS,
        to=optional(value, "to", name, decode_address),
        gas=optional(value, "gas", name, decode_quantity),
        value=optional(value, "value", name, decode_quantity) or 0,
        data=data,
    )


def optional(value: Mapping[str, Any], key: str, name: str, decoder: Callable[..., Any]) -> Any:
    """Decode ``value[key]`` with ``decoder``, or return None if absent or null."""
    if value.get(key) is None:
        return None
    return decoder(value[key], f"{name}.{key}")


def decode_call_data(value: Mapping[str, Any], name: str) -> bytes:
    """Decode a call's ``input`` or ``data`` (``input`` is the newer spelling)."""
    data = optional(value, "data", name, decode_data)
    given = optional(value, "input", name, decode_data)
    if data is not None and given is not None and data != given:
        raise InvalidParams(
            f"{name} has both input and data and they differ", param=f"{name}.input"
        )
    result: bytes = given if given is not None else (data or b"")
    return result


def decode_log_filter(value: Any, name: str = "filter") -> LogFilter:
    """Decode the filter object of ``eth_getLogs``."""
    if not isinstance(value, dict):
        raise InvalidParams(f"{name} must be an object, got {describe(value)}", param=name)
    block_hash = optional(value, "blockHash", name, lambda v, n: decode_data(v, n, 32))
    if block_hash is not None and (
        value.get("fromBlock") is not None or value.get("toBlock") is not None
    ):
        raise InvalidParams(
            f"{name} cannot have blockHash together with fromBlock or toBlock", param=name
        )
    return LogFilter(
        from_block=optional(value, "fromBlock", name, decode_block_tag) or BlockTag(),
        to_block=optional(value, "toBlock", name, decode_block_tag) or BlockTag(),
        block_hash=block_hash,
        addresses=decode_filter_addresses(value.get("address"), f"{name}.address"),
        topics=decode_filter_topics(value.get("topics"), f"{name}.topics"),
    )


def decode_filter_addresses(value: Any, name: str) -> frozenset[bytes]:
    """Decode a filter's ``address``: null, one address, or a list of them."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset({decode_address(value, name)})
    items = decode_list(value, name, MAX_FILTER_VALUES)
    return frozenset(decode_address(item, f"{name}[{i}]") for i, item in enumerate(items))


def decode_filter_topics(value: Any, name: str) -> tuple[frozenset[bytes] | None, ...]:
    """Decode a filter's ``topics``: per position null, one topic or a list (OR)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidParams(f"{name} must be an array, got {describe(value)}", param=name)
    if len(value) > MAX_TOPIC_POSITIONS:
        raise InvalidParams(
            f"{name} has {len(value)} positions, a log has at most {MAX_TOPIC_POSITIONS}",
            param=name,
        )
    return tuple(decode_topic_position(item, f"{name}[{i}]") for i, item in enumerate(value))


def decode_topic_position(value: Any, name: str) -> frozenset[bytes] | None:
    """Decode one topic position; None (any topic) for null, [] or a list holding null."""
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset({decode_data(value, name, 32)})
    items = decode_list(value, name, MAX_FILTER_VALUES)
    # geth reads a null inside an OR-list as "any topic" for the whole position
    if not items or any(item is None for item in items):
        return None
    return frozenset(decode_data(item, f"{name}[{i}]", 32) for i, item in enumerate(items))


def decode_percentiles(value: Any, name: str = "rewardPercentiles") -> list[float]:
    """Decode ``eth_feeHistory`` percentiles: increasing numbers in [0, 100]."""
    items = decode_list(value, name, MAX_REWARD_PERCENTILES)
    previous = 0.0
    for index, item in enumerate(items):
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise InvalidParams(f"{name}[{index}] must be a number", param=name)
        if not previous <= item <= 100:
            raise InvalidParams(
                f"{name} must be non-decreasing numbers in [0, 100], got {describe(value)}",
                param=name,
            )
        previous = float(item)
    return [float(item) for item in items]


# -- formatting results ------------------------------------------------------------


def format_header(header: BlockHeaderAPI) -> dict[str, Any]:
    """Return a header's JSON fields (the form ``newHeads`` subscriptions send).

    ``hash`` is the seal-stripping block hash; ``extraData`` is complete, seals
    included, so a light client can check them.
    """
    requests_hash = getattr(header, "requests_hash", None)
    return {
        "hash": encode_data(header.hash),
        "parentHash": encode_data(header.parent_hash),
        "sha3Uncles": encode_data(header.uncles_hash),
        "miner": encode_data(header.coinbase),
        "stateRoot": encode_data(header.state_root),
        "transactionsRoot": encode_data(header.transaction_root),
        "receiptsRoot": encode_data(header.receipt_root),
        "logsBloom": encode_data(header.bloom.to_bytes(256, "big")),
        "difficulty": encode_quantity(header.difficulty),
        "number": encode_quantity(header.block_number),
        "gasLimit": encode_quantity(header.gas_limit),
        "gasUsed": encode_quantity(header.gas_used),
        "timestamp": encode_quantity(header.timestamp),
        "extraData": encode_data(header.extra_data),
        "mixHash": encode_data(header.mix_hash),
        "nonce": encode_data(header.nonce),
        "baseFeePerGas": encode_quantity(header.base_fee_per_gas or 0),
        "withdrawalsRoot": optional_data(header.withdrawals_root),
        "blobGasUsed": encode_quantity(header.blob_gas_used),
        "excessBlobGas": encode_quantity(header.excess_blob_gas),
        "parentBeaconBlockRoot": optional_data(header.parent_beacon_block_root),
        "requestsHash": optional_data(requests_hash),
    }


def optional_data(value: bytes | None) -> str | None:
    """Encode bytes as hex data, keeping None as JSON null."""
    return None if value is None else encode_data(value)


def format_block(source: BlockAPI | BlockHeaderAPI, *, full: bool = False) -> dict[str, Any]:
    """Return a block's JSON object, or the header-only form when given a header.

    With ``full`` the transactions are objects, otherwise their hashes.
    """
    if isinstance(source, BlockHeaderAPI):
        return format_header(source)
    header = source.header
    transactions: list[Any] = [
        format_transaction(tx, header, index) if full else encode_data(tx.hash)
        for index, tx in enumerate(source.transactions)
    ]
    return {
        **format_header(header),
        "size": encode_quantity(len(rlp.encode(source))),
        "totalDifficulty": "0x0",
        "transactions": transactions,
        "uncles": [encode_data(uncle.hash) for uncle in source.uncles],
        "withdrawals": [
            {
                "index": encode_quantity(w.index),
                "validatorIndex": encode_quantity(w.validator_index),
                "address": encode_data(w.address),
                "amount": encode_quantity(w.amount),
            }
            for w in getattr(source, "withdrawals", ())
        ],
    }


def compute_effective_gas_price(transaction: SignedTransactionAPI) -> int:
    """Return the gas price a transaction pays; the base fee is always 0 here.

    Legacy and access-list transactions report their gas price as both fee caps.
    """
    return min(transaction.max_fee_per_gas, transaction.max_priority_fee_per_gas)


def compute_contract_address(sender: bytes, nonce: int) -> bytes:
    """Return the address a creation by ``sender`` at ``nonce`` deploys to."""
    return keccak(rlp.encode([sender, nonce]))[12:]


def format_transaction(
    transaction: SignedTransactionAPI,
    header: BlockHeaderAPI | None = None,
    index: int | None = None,
) -> dict[str, Any]:
    """Return a transaction's JSON object; block fields are null without ``header``."""
    type_id = transaction.type_id or 0
    result: dict[str, Any] = {
        "blockHash": optional_data(header.hash if header else None),
        "blockNumber": encode_quantity(header.block_number) if header else None,
        "transactionIndex": encode_quantity(index) if header and index is not None else None,
        "hash": encode_data(transaction.hash),
        "type": encode_quantity(type_id),
        "from": encode_data(transaction.sender),
        "to": encode_data(transaction.to) if transaction.to else None,
        "nonce": encode_quantity(transaction.nonce),
        "gas": encode_quantity(transaction.gas),
        "gasPrice": encode_quantity(compute_effective_gas_price(transaction)),
        "value": encode_quantity(transaction.value),
        "input": encode_data(transaction.data),
        "r": encode_quantity(transaction.r),
        "s": encode_quantity(transaction.s),
    }
    if type_id == 0:
        result["v"] = encode_quantity(cast(LegacyTransactionFieldsAPI, transaction).v)
        if transaction.chain_id is not None:
            result["chainId"] = encode_quantity(transaction.chain_id)
        return result
    return {**result, **format_typed_fields(transaction, type_id)}


def format_typed_fields(transaction: SignedTransactionAPI, type_id: int) -> dict[str, Any]:
    """Return the JSON fields only typed (EIP-2718) transactions have."""
    fields: dict[str, Any] = {
        "chainId": encode_quantity(transaction.chain_id or 0),
        "v": encode_quantity(transaction.y_parity),
        "yParity": encode_quantity(transaction.y_parity),
        "accessList": [
            {
                "address": encode_data(address),
                "storageKeys": [encode_word(key) for key in keys],
            }
            for address, keys in transaction.access_list
        ],
    }
    if type_id >= 2:
        fields["maxFeePerGas"] = encode_quantity(transaction.max_fee_per_gas)
        fields["maxPriorityFeePerGas"] = encode_quantity(transaction.max_priority_fee_per_gas)
    if type_id == 3:
        fields["maxFeePerBlobGas"] = encode_quantity(transaction.max_fee_per_blob_gas)
        fields["blobVersionedHashes"] = [encode_data(h) for h in transaction.blob_versioned_hashes]
    if type_id == 4:
        fields["authorizationList"] = [
            {
                "chainId": encode_quantity(auth.chain_id),
                "address": encode_data(auth.address),
                "nonce": encode_quantity(auth.nonce),
                "yParity": encode_quantity(auth.y_parity),
                "r": encode_quantity(auth.r),
                "s": encode_quantity(auth.s),
            }
            for auth in transaction.authorization_list
        ]
    return fields


def format_log(
    log: LogAPI,
    header: BlockHeaderAPI,
    transaction_hash: bytes,
    transaction_index: int,
    log_index: int,
) -> dict[str, Any]:
    """Return a log's JSON object; ``log_index`` counts logs across the whole block."""
    return {
        "address": encode_data(log.address),
        "topics": [encode_word(topic) for topic in log.topics],
        "data": encode_data(log.data),
        "blockHash": encode_data(header.hash),
        "blockNumber": encode_quantity(header.block_number),
        "transactionHash": encode_data(transaction_hash),
        "transactionIndex": encode_quantity(transaction_index),
        "logIndex": encode_quantity(log_index),
        "removed": False,
    }


def format_receipt(
    receipt: ReceiptAPI,
    transaction: SignedTransactionAPI,
    header: BlockHeaderAPI,
    index: int,
    *,
    previous_cumulative_gas: int,
    first_log_index: int,
) -> dict[str, Any]:
    """Return a receipt's JSON object.

    ``previous_cumulative_gas`` is the cumulative gas of the receipt before
    (0 for the first) and ``first_log_index`` the number of logs before this
    transaction's in the block: a receipt alone knows neither.
    """
    sender = transaction.sender
    is_creation = not transaction.to
    return {
        "transactionHash": encode_data(transaction.hash),
        "transactionIndex": encode_quantity(index),
        "blockHash": encode_data(header.hash),
        "blockNumber": encode_quantity(header.block_number),
        "from": encode_data(sender),
        "to": None if is_creation else encode_data(transaction.to),
        "contractAddress": (
            encode_data(compute_contract_address(sender, transaction.nonce))
            if is_creation
            else None
        ),
        "cumulativeGasUsed": encode_quantity(receipt.gas_used),
        "gasUsed": encode_quantity(receipt.gas_used - previous_cumulative_gas),
        "effectiveGasPrice": encode_quantity(compute_effective_gas_price(transaction)),
        "logs": [
            format_log(log, header, transaction.hash, index, first_log_index + offset)
            for offset, log in enumerate(receipt.logs)
        ],
        "logsBloom": encode_data(receipt.bloom.to_bytes(256, "big")),
        "type": encode_quantity(transaction.type_id or 0),
        # EIP-658: the receipt's state_root field holds the status byte
        "status": "0x1" if receipt.state_root == b"\x01" else "0x0",
    }


# -- matching logs -------------------------------------------------------------------


def is_bloom_match(bloom: int, log_filter: LogFilter) -> bool:
    """Return False when a block's bloom proves it holds no matching log."""
    blocks = BloomFilter(bloom)
    if log_filter.addresses and not any(a in blocks for a in log_filter.addresses):
        return False
    return all(
        position is None or any(topic in blocks for topic in position)
        for position in log_filter.topics
    )


def is_log_match(log: LogAPI, log_filter: LogFilter) -> bool:
    """Return whether ``log`` passes the address and topic criteria."""
    if log_filter.addresses and log.address not in log_filter.addresses:
        return False
    # as in geth, a log with fewer topics than the filter has positions never matches
    if len(log.topics) < len(log_filter.topics):
        return False
    return all(
        position is None or topic.to_bytes(32, "big") in position
        for position, topic in zip(log_filter.topics, log.topics, strict=False)
    )


def format_block_logs(
    block: BlockAPI, receipts: Sequence[ReceiptAPI], log_filter: LogFilter
) -> list[dict[str, Any]]:
    """Return a block's logs that pass ``log_filter``, numbered across the block."""
    found = []
    log_index = 0
    for index, (transaction, receipt) in enumerate(zip(block.transactions, receipts, strict=True)):
        for log in receipt.logs:
            if is_log_match(log, log_filter):
                found.append(format_log(log, block.header, transaction.hash, index, log_index))
            log_index += 1
    return found


# -- execution results --------------------------------------------------------------------


def compute_execution_error(computation: ComputationAPI) -> TransactionReverted:
    """Return the error for a failed call, shaped as geth's (code 3, revert data)."""
    if isinstance(computation.error, Revert):
        output = computation.output
        if output[:4] == ERROR_STRING_SELECTOR and len(output) >= 68:
            reason = decode_revert_reason(output)
            message = f"execution reverted: {reason}"
        else:
            reason, message = "", "execution reverted"
        return TransactionReverted(message, reason=reason, data=encode_data(output))
    reason = str(computation.error) or type(computation.error).__name__
    return TransactionReverted(f"execution failed: {reason}", reason=reason, data="0x")


def make_call_transaction(request: CallRequest, state: StateAPI, gas: int) -> SignedTransactionAPI:
    """Return an unsigned transaction for ``request`` posing as signed by its sender."""
    unsigned = PolderVM.create_unsigned_transaction(
        nonce=state.get_nonce(Address(request.sender)),
        gas_price=0,
        gas=gas,
        to=Address(request.to) if request.to is not None else CREATE_CONTRACT_ADDRESS,
        value=request.value,
        data=request.data,
    )
    return cast(SignedTransactionAPI, SpoofTransaction(unsigned, from_=request.sender))


def validate_intrinsic_gas(transaction: SignedTransactionAPI) -> None:
    """Raise :class:`InvalidTransaction` if the gas does not cover the intrinsic cost."""
    if transaction.gas < transaction.intrinsic_gas:
        raise InvalidTransaction(
            f"intrinsic gas too low: gas {transaction.gas}, needs {transaction.intrinsic_gas}",
            gas=transaction.gas,
            intrinsic=transaction.intrinsic_gas,
        )


def run_call(state: StateAPI, transaction: SignedTransactionAPI) -> ComputationAPI:
    """Execute ``transaction`` on ``state`` and undo its changes; return the computation."""
    snapshot = state.snapshot()
    try:
        return state.apply_transaction(transaction)
    except ValidationError as exc:
        raise InvalidTransaction(str(exc)) from exc
    finally:
        state.revert(snapshot)


def is_call_success(state: StateAPI, request: CallRequest, gas: int) -> bool:
    """Return whether ``request`` succeeds with ``gas`` (one gas-estimation probe)."""
    try:
        return not run_call(state, make_call_transaction(request, state, gas)).is_error
    except InvalidTransaction:
        return False


@contextmanager
def state_retained(header: BlockHeaderAPI) -> Iterator[None]:
    """Turn a missing trie node (state no longer held) into :class:`ResourceNotFound`."""
    try:
        yield
    except MissingTrieNode as exc:
        raise ResourceNotFound(
            f"the state of block {header.block_number} is not held by this node"
        ) from exc


METHOD_NAMES = (
    "web3_clientVersion",
    "net_version",
    "eth_chainId",
    "eth_blockNumber",
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
    "eth_getTransactionByHash",
    "eth_getTransactionReceipt",
    "eth_getTransactionCount",
    "eth_getBalance",
    "eth_getCode",
    "eth_getStorageAt",
    "eth_call",
    "eth_estimateGas",
    "eth_gasPrice",
    "eth_maxPriorityFeePerGas",
    "eth_feeHistory",
    "eth_getLogs",
    "eth_getProof",
)


class EthApi:
    """The Ethereum JSON-RPC methods; each takes the request's positional params."""

    def __init__(
        self,
        chain: Chain,
        mempool: PendingView,
        client_version: str,
        max_log_range: int = 10_000,
        max_logs: int = 10_000,
    ) -> None:
        self.chain = chain
        self.mempool = mempool
        self.client_version = client_version
        self.max_log_range = max_log_range
        """Most blocks one ``eth_getLogs`` may scan."""
        self.max_logs = max_logs
        """Most logs one ``eth_getLogs`` may return."""

    def methods(self) -> dict[str, Callable[..., Any]]:
        """Return the RPC methods by name, for a dispatcher."""
        return {name: getattr(self, name) for name in METHOD_NAMES}

    # -- resolving blocks ----------------------------------------------------------

    def find_header(self, tag: BlockTag) -> BlockHeaderAPI | None:
        """Return the header ``tag`` names, or None if this node has no such block."""
        head = self.chain.head
        try:
            if tag.block_hash is not None:
                header = self.chain.get_header_by_hash(tag.block_hash)
                if tag.require_canonical and not self.chain.is_canonical(header):
                    return None
                return header
            if tag.number is None:
                return head
            if tag.number > head.block_number:
                return None
            return self.chain.get_header_by_number(tag.number)
        except HeaderNotFound:
            return None

    def _get_header(self, tag: BlockTag) -> BlockHeaderAPI:
        """Return the header ``tag`` names; raise :class:`ResourceNotFound`."""
        header = self.find_header(tag)
        if header is None:
            raise ResourceNotFound(f"block {describe_tag(tag)} not found")
        return header

    def _get_state(self, tag: BlockTag) -> tuple[BlockHeaderAPI, StateAPI]:
        """Return the header ``tag`` names and the state after it."""
        header = self._get_header(tag)
        return header, self.chain.get_state(header)

    def find_mined(self, tx_hash: bytes) -> tuple[BlockHeaderAPI, BlockAPI, int] | None:
        """Return the header, block and index of a mined transaction, or None."""
        try:
            location = self.chain.get_transaction_location(tx_hash)
            header = self.chain.get_header_by_number(location.block_number)
        except (TransactionNotFound, HeaderNotFound):
            return None
        block = self.chain.get_block(header)
        transactions = block.transactions
        # the index is written with the block; a mismatch would mean a stale entry
        if location.index >= len(transactions) or transactions[location.index].hash != tx_hash:
            return None
        return header, block, location.index

    # -- node and chain ---------------------------------------------------------------

    def web3_clientVersion(self, *params: Any) -> str:
        """Return the node's name and version."""
        unpack_params(params)
        return self.client_version

    def net_version(self, *params: Any) -> str:
        """Return the chain id as a decimal string (the network id of this chain)."""
        unpack_params(params)
        return str(self.chain.genesis.chain_id)

    def eth_chainId(self, *params: Any) -> str:
        """Return the EIP-155 chain id."""
        unpack_params(params)
        return encode_quantity(self.chain.genesis.chain_id)

    def eth_blockNumber(self, *params: Any) -> str:
        """Return the head's height."""
        unpack_params(params)
        return encode_quantity(self.chain.head.block_number)

    # -- blocks and transactions ---------------------------------------------------------

    def eth_getBlockByNumber(self, *params: Any) -> dict[str, Any] | None:
        """Return a block by tag or number, or null if there is none."""
        tag, full = unpack_params(params, ("block", REQUIRED), ("full", False))
        header = self.find_header(decode_block_tag(tag))
        return self._format_block(header, decode_bool(full, "full"))

    def eth_getBlockByHash(self, *params: Any) -> dict[str, Any] | None:
        """Return a block by hash, or null if this node does not have it."""
        block_hash, full = unpack_params(params, ("blockHash", REQUIRED), ("full", False))
        tag = BlockTag(block_hash=decode_data(block_hash, "blockHash", 32))
        return self._format_block(self.find_header(tag), decode_bool(full, "full"))

    def _format_block(self, header: BlockHeaderAPI | None, full: bool) -> dict[str, Any] | None:
        if header is None:
            return None
        return format_block(self.chain.get_block(header), full=full)

    def eth_getTransactionByHash(self, *params: Any) -> dict[str, Any] | None:
        """Return a mined or pending transaction, or null if unknown."""
        (tx_hash_param,) = unpack_params(params, ("transactionHash", REQUIRED))
        tx_hash = decode_data(tx_hash_param, "transactionHash", 32)
        mined = self.find_mined(tx_hash)
        if mined is not None:
            header, block, index = mined
            return format_transaction(block.transactions[index], header, index)
        pending = self.mempool.get_pending_transaction(tx_hash)
        return None if pending is None else format_transaction(pending)

    def eth_getTransactionReceipt(self, *params: Any) -> dict[str, Any] | None:
        """Return a mined transaction's receipt, or null (also while it is pending)."""
        (tx_hash_param,) = unpack_params(params, ("transactionHash", REQUIRED))
        mined = self.find_mined(decode_data(tx_hash_param, "transactionHash", 32))
        if mined is None:
            return None
        header, block, index = mined
        receipts = self.chain.get_receipts(header)
        return format_receipt(
            receipts[index],
            block.transactions[index],
            header,
            index,
            previous_cumulative_gas=receipts[index - 1].gas_used if index else 0,
            first_log_index=sum(len(receipt.logs) for receipt in receipts[:index]),
        )

    # -- state reads -----------------------------------------------------------------------

    def eth_getTransactionCount(self, *params: Any) -> str:
        """Return an account's nonce; ``pending`` also counts its mempool transactions."""
        address_param, block = unpack_params(params, ("address", REQUIRED), ("block", "latest"))
        address = decode_address(address_param, "address")
        tag = decode_block_tag(block)
        header, state = self._get_state(tag)
        with state_retained(header):
            nonce = state.get_nonce(Address(address))
        if tag.pending:
            nonce = max(nonce, self.mempool.get_pending_nonce(address) or 0)
        return encode_quantity(nonce)

    def eth_getBalance(self, *params: Any) -> str:
        """Return an account's balance at a block."""
        address, block = unpack_params(params, ("address", REQUIRED), ("block", "latest"))
        account = Address(decode_address(address, "address"))
        header, state = self._get_state(decode_block_tag(block))
        with state_retained(header):
            return encode_quantity(state.get_balance(account))

    def eth_getCode(self, *params: Any) -> str:
        """Return the code at an address at a block."""
        address, block = unpack_params(params, ("address", REQUIRED), ("block", "latest"))
        account = Address(decode_address(address, "address"))
        header, state = self._get_state(decode_block_tag(block))
        with state_retained(header):
            return encode_data(state.get_code(account))

    def eth_getStorageAt(self, *params: Any) -> str:
        """Return one storage slot of an account at a block, as 32 bytes."""
        address, slot, block = unpack_params(
            params, ("address", REQUIRED), ("slot", REQUIRED), ("block", "latest")
        )
        account = Address(decode_address(address, "address"))
        key = decode_slot(slot, "slot")
        header, state = self._get_state(decode_block_tag(block))
        with state_retained(header):
            return encode_word(state.get_storage(account, key))

    def eth_getProof(self, *params: Any) -> dict[str, Any]:
        """Return an EIP-1186 account proof with storage proofs for the given keys."""
        address_param, slots_param, block = unpack_params(
            params, ("address", REQUIRED), ("storageKeys", REQUIRED), ("block", "latest")
        )
        address = decode_address(address_param, "address")
        items = decode_list(slots_param, "storageKeys", MAX_PROOF_SLOTS)
        slots = [decode_slot(item, f"storageKeys[{i}]") for i, item in enumerate(items)]
        header = self._get_header(decode_block_tag(block))
        proof = self.chain.get_account_proof(address, slots, header)
        return {
            "address": encode_data(proof["address"]),
            "accountProof": [encode_data(node) for node in proof["accountProof"]],
            "balance": encode_quantity(proof["balance"]),
            "codeHash": encode_data(proof["codeHash"]),
            "nonce": encode_quantity(proof["nonce"]),
            "storageHash": encode_data(proof["storageHash"]),
            "storageProof": [
                {
                    "key": encode_word(entry["key"]),
                    "value": encode_quantity(entry["value"]),
                    "proof": [encode_data(node) for node in entry["proof"]],
                }
                for entry in proof["storageProof"]
            ],
        }

    # -- execution ----------------------------------------------------------------------------

    def _open_call_state(self, block: Any) -> tuple[BlockHeaderAPI, StateAPI]:
        """Return the header for the block after ``block`` and the state it starts from.

        A call runs as a transaction sent now would: in the next block, on top
        of the named one (py-evm stamps that header with the current time).
        """
        parent = self._get_header(decode_block_tag(block))
        header = self.chain.get_next_header(parent, gas_limit=parent.gas_limit)
        return header, self.chain.get_state(header)

    def eth_call(self, *params: Any) -> str:
        """Execute a call against a block's state without a transaction; return its output."""
        tx, block = unpack_params(params, ("transaction", REQUIRED), ("block", "latest"))
        request = decode_call_request(tx)
        header, state = self._open_call_state(block)
        gas = min(request.gas or header.gas_limit, header.gas_limit)
        with state_retained(header):
            transaction = make_call_transaction(request, state, gas)
            validate_intrinsic_gas(transaction)
            computation = run_call(state, transaction)
        if computation.is_error:
            raise compute_execution_error(computation)
        return encode_data(computation.output)

    def eth_estimateGas(self, *params: Any) -> str:
        """Return the least gas with which a transaction succeeds (binary search).

        A contract creation by a key that may not deploy is refused here, as
        admission would refuse it, rather than estimated.
        """
        tx, block = unpack_params(params, ("transaction", REQUIRED), ("block", "latest"))
        request = decode_call_request(tx)
        header, state = self._open_call_state(block)
        cap = min(request.gas or header.gas_limit, header.gas_limit)
        with state_retained(header):
            transaction = make_call_transaction(request, state, cap)
            validate_deploy_permission(transaction, self.chain.genesis.admins)
            validate_intrinsic_gas(transaction)
            return encode_quantity(self._search_gas(state, request, transaction, cap))

    def _search_gas(
        self, state: StateAPI, request: CallRequest, transaction: SignedTransactionAPI, cap: int
    ) -> int:
        """Return the least gas in (intrinsic, cap] with which ``request`` succeeds."""
        computation = run_call(state, transaction)
        if computation.is_error:
            if isinstance(computation.error, OutOfGas):
                raise InvalidTransaction(f"gas required exceeds allowance ({cap})", allowance=cap)
            raise compute_execution_error(computation)
        spent = cap - computation.get_gas_remaining()
        used = PolderVM.finalize_gas_used(transaction, computation)
        if spent <= transaction.intrinsic_gas:
            return used  # nothing ran (a plain transfer): no execution gas to search for
        # Below the gas a run consumed net of refunds it cannot succeed (and that
        # figure includes the EIP-7623 calldata floor, which py-evm charges but
        # does not check up front, so the estimate never falls under it); geth's
        # first guess (spent plus a call stipend, inflated by the 63/64 rule of
        # EIP-150) usually succeeds and leaves a narrow range to bisect.
        low, high = max(used, transaction.intrinsic_gas) - 1, cap
        guess = min(high, (spent + CALL_STIPEND) * 64 // 63)
        if is_call_success(state, request, guess):
            high = guess
        else:
            low = guess
        while high - low > 1:
            middle = (low + high) // 2
            if is_call_success(state, request, middle):
                high = middle
            else:
                low = middle
        return high

    # -- fees -------------------------------------------------------------------------------------

    def eth_gasPrice(self, *params: Any) -> str:
        """Return 0: the base fee is always 0 and no tip is needed."""
        unpack_params(params)
        return "0x0"

    def eth_maxPriorityFeePerGas(self, *params: Any) -> str:
        """Return 0: blocks are not auctioned, so a tip buys nothing."""
        unpack_params(params)
        return "0x0"

    def eth_feeHistory(self, *params: Any) -> dict[str, Any]:
        """Return zero fees for up to 1024 blocks ending at ``newest``, with real gas use."""
        count_param, newest_param, percentiles_param = unpack_params(
            params, ("blockCount", REQUIRED), ("newestBlock", REQUIRED), ("rewardPercentiles", [])
        )
        count = min(
            decode_quantity(count_param, "blockCount", allow_int=True), MAX_FEE_HISTORY_BLOCKS
        )
        newest = self._get_header(decode_block_tag(newest_param, "newestBlock"))
        percentiles = decode_percentiles(percentiles_param)
        count = min(count, newest.block_number + 1)
        oldest = newest.block_number - count + 1
        headers = [self.chain.get_header_by_number(n) for n in range(oldest, oldest + count)]
        result: dict[str, Any] = {
            "oldestBlock": encode_quantity(oldest if count else 0),
            # one entry more than blocks: the base fee of the block after newest
            "baseFeePerGas": ["0x0"] * (count + 1) if count else [],
            "gasUsedRatio": [h.gas_used / h.gas_limit if h.gas_limit else 0.0 for h in headers],
        }
        if percentiles:
            result["reward"] = [["0x0"] * len(percentiles) for _ in headers]
        return result

    # -- logs -------------------------------------------------------------------------------------

    def eth_getLogs(self, *params: Any) -> list[dict[str, Any]]:
        """Return the logs matching a filter, over at most ``max_log_range`` blocks."""
        (filter_param,) = unpack_params(params, ("filter", REQUIRED))
        log_filter = decode_log_filter(filter_param)
        if log_filter.block_hash is not None:
            headers: Iterator[BlockHeaderAPI] = iter(
                [self._get_header(BlockTag(block_hash=log_filter.block_hash))]
            )
        else:
            headers = self._iterate_headers(log_filter)
        found: list[dict[str, Any]] = []
        for header in headers:
            if is_bloom_match(header.bloom, log_filter):
                found.extend(self._get_block_logs(header, log_filter))
            if len(found) > self.max_logs:
                raise LimitExceeded(
                    f"query returns more than {self.max_logs} logs; "
                    "narrow the block range or the filter",
                    limit=self.max_logs,
                )
        return found

    def get_block_number(self, tag: BlockTag) -> int:
        """Return the height a filter bound names; numbers past the head stay as given."""
        if tag.number is not None and tag.block_hash is None:
            return tag.number
        return self._get_header(tag).block_number

    def _iterate_headers(self, log_filter: LogFilter) -> Iterator[BlockHeaderAPI]:
        """Yield the headers of a filter's block range, checked against the range bound."""
        start = self.get_block_number(log_filter.from_block)
        end = self.get_block_number(log_filter.to_block)
        if start > end:
            raise InvalidParams(
                f"filter.fromBlock {start} is after filter.toBlock {end}", param="filter"
            )
        # a range reaching past the head is read up to the head, so pollers that
        # ask ahead get what exists instead of an error
        end = min(end, self.chain.head.block_number)
        if end - start + 1 > self.max_log_range:
            raise LimitExceeded(
                f"block range of {end - start + 1} exceeds the limit of {self.max_log_range}",
                limit=self.max_log_range,
            )
        return (self.chain.get_header_by_number(n) for n in range(start, end + 1))

    def _get_block_logs(
        self, header: BlockHeaderAPI, log_filter: LogFilter
    ) -> list[dict[str, Any]]:
        """Return one block's logs that match ``log_filter``."""
        block = self.chain.get_block(header)
        return format_block_logs(block, self.chain.get_receipts(header), log_filter)


def describe_tag(tag: BlockTag) -> str:
    """Return a block tag as people write it, for error messages."""
    if tag.block_hash is not None:
        return encode_data(tag.block_hash)
    if tag.number is not None:
        return str(tag.number)
    return "pending" if tag.pending else "latest"
