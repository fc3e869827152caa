"""The genesis document: chain id, consensus parameters, validators, allocations.

Pure decoding of an already-parsed JSON object into frozen data, shared by the
node (which builds block 0 from it) and the clients (which pin its hash). No
file I/O here: callers read the file and pass the dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from consensus.errors import ConfigError


@dataclass(frozen=True)
class ConsensusParams:
    """Timing parameters of the BFT protocol, in seconds."""

    block_period: float = 1.0
    """Minimum time between blocks that carry transactions."""
    empty_block_period: float = 5.0
    """Time between blocks when the mempool is empty."""
    request_timeout: float = 2.0
    """Round-0 timeout; round r waits ``request_timeout * 2**r``."""
    max_round_timeout: float = 30.0
    """Cap on a round's timeout, so a long outage never leaves hour-long rounds."""


@dataclass(frozen=True)
class Validator:
    """A municipality's validator node as listed in genesis."""

    name: str
    """Municipality name, for people and logs."""
    address: bytes
    """20-byte address of the validator's signing key."""
    p2p: str
    """Websocket endpoint of its P2P server."""
    rpc: str
    """HTTP endpoint of its JSON-RPC server."""


@dataclass(frozen=True)
class Account:
    """A genesis allocation."""

    balance: int = 0
    nonce: int = 0
    code: bytes = b""
    storage: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Genesis:
    """Everything block 0 and the chain's fixed rules are built from."""

    chain_id: int
    """EIP-155 chain id; every transaction signs it."""
    timestamp: int
    """Fixed timestamp of block 0, so the genesis hash is reproducible."""
    gas_limit: int
    """Gas limit of every block (constant on this chain)."""
    consensus: ConsensusParams
    validators: tuple[Validator, ...]
    """The initial validator set, in proposer order."""
    admins: frozenset[bytes]
    """Addresses allowed to deploy contracts (municipal admin keys)."""
    alloc: Mapping[bytes, Account]
    """Initial accounts, including pre-deployed system contracts."""
    contracts: Mapping[str, bytes] = field(default_factory=dict)
    """Names of pre-deployed system contracts to their addresses."""


def decode_hex(value: Any, what: str, length: int | None = None) -> bytes:
    """Decode a 0x-prefixed hex string, raising :class:`ConfigError` with context."""
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ConfigError(f"genesis {what} must be a 0x-prefixed hex string, got {value!r}")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError as exc:
        raise ConfigError(f"genesis {what} is not valid hex: {value!r}") from exc
    if length is not None and len(raw) != length:
        raise ConfigError(f"genesis {what} must be {length} bytes, got {len(raw)}")
    return raw


def decode_int(value: Any, what: str) -> int:
    """Decode an integer given as a JSON number or a 0x-hex string."""
    if isinstance(value, bool):
        raise ConfigError(f"genesis {what} must be an integer, got {value!r}")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.startswith("0x"):
        return int.from_bytes(decode_hex(value if len(value) % 2 == 0 else "0x0" + value[2:], what))
    raise ConfigError(f"genesis {what} must be a non-negative integer, got {value!r}")


def decode_validator(raw: Mapping[str, Any]) -> Validator:
    """Decode one entry of ``validators``."""
    try:
        return Validator(
            name=str(raw["name"]),
            address=decode_hex(raw["address"], f"validator {raw.get('name')} address", 20),
            p2p=str(raw["p2p"]),
            rpc=str(raw["rpc"]),
        )
    except KeyError as exc:
        raise ConfigError(f"genesis validator entry lacks {exc}: {dict(raw)!r}") from exc


def decode_account(address: str, raw: Mapping[str, Any]) -> Account:
    """Decode one entry of ``alloc``."""
    storage = raw.get("storage", {})
    return Account(
        balance=decode_int(raw.get("balance", 0), f"alloc {address} balance"),
        nonce=decode_int(raw.get("nonce", 0), f"alloc {address} nonce"),
        code=decode_hex(raw.get("code", "0x"), f"alloc {address} code"),
        storage={
            decode_int(k, f"alloc {address} slot"): decode_int(v, f"alloc {address} value")
            for k, v in storage.items()
        },
    )


def decode_genesis(raw: Mapping[str, Any]) -> Genesis:
    """Decode a parsed ``genesis.json``; raise :class:`ConfigError` naming what is wrong."""
    try:
        params = raw.get("consensus", {})
        validators = tuple(decode_validator(v) for v in raw["validators"])
        genesis = Genesis(
            chain_id=decode_int(raw["chainId"], "chainId"),
            timestamp=decode_int(raw["timestamp"], "timestamp"),
            gas_limit=decode_int(raw["gasLimit"], "gasLimit"),
            consensus=ConsensusParams(
                block_period=float(params.get("blockPeriodSeconds", 1.0)),
                empty_block_period=float(params.get("emptyBlockPeriodSeconds", 5.0)),
                request_timeout=float(params.get("requestTimeoutSeconds", 2.0)),
                max_round_timeout=float(params.get("maxRoundTimeoutSeconds", 30.0)),
            ),
            validators=validators,
            admins=frozenset(
                decode_hex(a["address"], f"admin {a.get('name')} address", 20)
                for a in raw.get("admins", [])
            ),
            alloc={
                decode_hex(addr, "alloc address", 20): decode_account(addr, acct)
                for addr, acct in raw.get("alloc", {}).items()
            },
            contracts={
                name: decode_hex(addr, f"contract {name} address", 20)
                for name, addr in raw.get("contracts", {}).items()
            },
        )
    except KeyError as exc:
        raise ConfigError(f"genesis lacks the required field {exc}") from exc
    validate_genesis(genesis)
    return genesis


def validate_genesis(genesis: Genesis) -> None:
    """Raise :class:`ConfigError` for a genesis no chain can run on."""
    if not genesis.validators:
        raise ConfigError("genesis must list at least one validator")
    addresses = [v.address for v in genesis.validators]
    if len(set(addresses)) != len(addresses):
        raise ConfigError("genesis lists one validator address twice")
    if genesis.chain_id == 0:
        raise ConfigError("genesis chainId must be positive")
    if genesis.consensus.max_round_timeout < genesis.consensus.request_timeout:
        raise ConfigError("maxRoundTimeoutSeconds must be at least requestTimeoutSeconds")
    for name, seconds in (
        ("blockPeriodSeconds", genesis.consensus.block_period),
        ("emptyBlockPeriodSeconds", genesis.consensus.empty_block_period),
    ):
        # block timestamps are whole seconds and heights start from them ([QBFT-PERIOD.1])
        if seconds < 1 or seconds != int(seconds):
            raise ConfigError(
                f"{name} must be a whole number of seconds, at least 1 (not {seconds})"
            )
