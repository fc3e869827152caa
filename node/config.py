"""Node configuration: a small JSON file per node, paths relative to it."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.errors import ConfigError
from consensus.genesis import Genesis, decode_genesis, decode_hex


@dataclass(frozen=True)
class RpcConfig:
    """Where and how the JSON-RPC server listens."""

    host: str = "127.0.0.1"
    port: int = 8545
    max_body_bytes: int = 1024 * 1024
    """Largest HTTP body or websocket message accepted."""
    max_batch: int = 100
    """Most requests in one JSON-RPC batch."""
    max_log_range: int = 10_000
    """Most blocks one eth_getLogs may scan."""


@dataclass(frozen=True)
class P2PConfig:
    """Where the validator-to-validator websocket server listens."""

    host: str = "127.0.0.1"
    port: int = 30303
    observers: tuple[tuple[bytes, str], ...] = ()
    """Non-validating nodes (address, ws URL) allowed to connect and follow."""


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node process needs to start."""

    name: str
    """The municipality (or observer) this node belongs to, for logs."""
    data_dir: Path
    """LevelDB chain database lives in ``data_dir / "chain"``."""
    genesis_path: Path
    rpc: RpcConfig
    validator_key_file: Path | None
    """Hex private key of the validator; absent for observer nodes."""
    node_key_file: Path | None = None
    """An observer's P2P identity key (validators use their validator key)."""
    p2p: P2PConfig = P2PConfig()
    byzantine: str | None = None
    """Test-only misbehaviour (``equivocate``); refused unless POLDER_ALLOW_BYZANTINE=1."""


def resolve(base: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else (base / path).resolve()


def load_config(path: Path) -> NodeConfig:
    """Read a node config file; raise :class:`ConfigError` saying what is wrong."""
    raw = load_json(path, "node config")
    base = path.parent.resolve()
    try:
        rpc = raw.get("rpc", {})
        p2p = raw.get("p2p", {})
        key = raw.get("validator_key_file")
        node_key = raw.get("node_key_file")
        return NodeConfig(
            name=str(raw["name"]),
            data_dir=resolve(base, raw["data_dir"]),
            genesis_path=resolve(base, raw["genesis"]),
            rpc=RpcConfig(
                host=str(rpc.get("host", "127.0.0.1")),
                port=int(rpc.get("port", 8545)),
                max_body_bytes=int(rpc.get("max_body_bytes", 1024 * 1024)),
                max_batch=int(rpc.get("max_batch", 100)),
                max_log_range=int(rpc.get("max_log_range", 10_000)),
            ),
            validator_key_file=resolve(base, key) if key else None,
            node_key_file=resolve(base, node_key) if node_key else None,
            p2p=P2PConfig(
                host=str(p2p.get("host", "127.0.0.1")),
                port=int(p2p.get("port", 30303)),
                observers=tuple(
                    (decode_hex(o["address"], "observer address", 20), str(o["url"]))
                    for o in p2p.get("observers", [])
                ),
            ),
            byzantine=raw.get("byzantine"),
        )
    except KeyError as exc:
        raise ConfigError(f"{path}: the node config lacks {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: a node config value has the wrong type: {exc}") from exc


def load_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object from ``path``; raise :class:`ConfigError` on any problem."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} {path} does not exist") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{what} {path} cannot be read as JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {path} must hold a JSON object")
    return raw


def load_genesis(path: Path) -> Genesis:
    return decode_genesis(load_json(path, "genesis file"))


def load_private_key(path: Path) -> bytes:
    """Read a hex private key file that only its owner may read."""
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"validator key file {path} cannot be read: {exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"validator key file {path} is readable by others; run chmod 600 on it")
    try:
        key = bytes.fromhex(text.removeprefix("0x"))
    except ValueError as exc:
        raise ConfigError(f"validator key file {path} does not hold a hex key") from exc
    if len(key) != 32:
        raise ConfigError(f"validator key file {path} must hold a 32-byte key")
    return key


def save_private_key(path: Path, key: bytes) -> None:
    """Write a key file readable only by its owner (created with mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("0x" + key.hex() + "\n")
