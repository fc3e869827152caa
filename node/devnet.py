"""A local devnet: keys, genesis and node processes on 127.0.0.1.

``polder devnet start`` generates fresh keys into ``DIR/keys`` (never
committed: the folder is git-ignored), writes ``DIR/genesis.json`` from the
repository's ``genesis.json`` template, starts one background node process per
validator, waits until each RPC answers, and records everything in
``DIR/devnet.json``::

    {"chainId": ..., "genesisHash": "0x..", "admin": {"address": .., "keyFile": ..},
     "nodes": [{"name": .., "rpc": "http://127.0.0.1:8545", "ws": "ws://..",
                "pid": 123, "config": "..", "log": ".."}]}
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from coincurve import PrivateKey
from eth_utils import to_checksum_address

from consensus.errors import ConfigError
from contracts.loader import load_artifact
from contracts.registry import REGISTRY_NAME, compute_registry_storage
from node.chain import compute_genesis_hash
from node.config import load_genesis, load_json, save_private_key
from node.service import address_of

MUNICIPALITIES = (
    "Schiedam",
    "Rotterdam",
    "Vlaardingen",
    "Maassluis",
    "Delft",
    "Dordrecht",
    "Gouda",
    "Leiden",
)
START_TIMEOUT = 60.0
P2P_PORT_OFFSET = 1000
"""A node's P2P port is its RPC port plus this."""
OBSERVER_NAME = "Observer"


def create_devnet_genesis(
    template: dict[str, Any], validators: list[tuple[str, bytes, int]], admin: bytes
) -> dict[str, Any]:
    """Return a concrete genesis: the template plus validators, admin and contract code.

    ``validators`` holds (name, address, rpc port). Contracts named in the
    template's ``contracts`` are pre-deployed from their committed artifacts.
    """
    genesis = {k: v for k, v in template.items() if not k.startswith("_")}
    genesis["validators"] = [
        {
            "name": name,
            "address": to_checksum_address(address),
            "p2p": f"ws://127.0.0.1:{port + P2P_PORT_OFFSET}/p2p",
            "rpc": f"http://127.0.0.1:{port}",
        }
        for name, address, port in validators
    ]
    genesis["admins"] = [{"name": "devnet admin", "address": to_checksum_address(admin)}]
    alloc = dict(genesis.get("alloc", {}))
    for name, address in genesis.get("contracts", {}).items():
        code = "0x" + load_artifact(name).runtime_bytecode.hex()
        alloc[address] = {**alloc.get(address, {}), "code": code}
        if name == REGISTRY_NAME:
            storage = compute_registry_storage([member for _, member, _ in validators])
            alloc[address]["storage"] = {hex(k): hex(v) for k, v in storage.items()}
    genesis["alloc"] = alloc
    return genesis


def write_node_config(
    directory: Path,
    name: str,
    port: int,
    key_file: Path,
    observers: list[dict[str, str]],
    *,
    validator: bool,
) -> Path:
    """Write one node's config file and return its path."""
    node_dir = directory / name.lower()
    node_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "name": name,
        "data_dir": str(node_dir / "data"),
        "genesis": str(directory / "genesis.json"),
        "rpc": {"host": "127.0.0.1", "port": port},
        "p2p": {"host": "127.0.0.1", "port": port + P2P_PORT_OFFSET, "observers": observers},
        ("validator_key_file" if validator else "node_key_file"): str(key_file),
    }
    path = node_dir / "config.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def start_node_process(config_path: Path, log_path: Path) -> int:
    """Start ``python -m node run`` in the background; return its pid."""
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "node", "run", "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid


def rpc_call(url: str, method: str, params: list[Any] | None = None, timeout: float = 5.0) -> Any:
    """Make one JSON-RPC call with the standard library (no web3 needed)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"node RPC URL must be http(s), got {url!r}")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        reply = json.loads(response.read())
    if "error" in reply:
        raise ConfigError(f"{method} failed: {reply['error']}")
    return reply["result"]


def wait_for_rpc(url: str, pid: int, log_path: Path, timeout: float = START_TIMEOUT) -> None:
    """Return once ``url`` answers; raise with the log's tail if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            tail = log_path.read_text()[-2000:] if log_path.exists() else ""
            raise ConfigError(f"node process {pid} exited during start-up; its log ends:\n{tail}")
        try:
            rpc_call(url, "eth_chainId", timeout=1.0)
            return
        except (OSError, urllib.error.URLError, ConfigError):
            time.sleep(0.2)
    raise ConfigError(f"node at {url} did not answer within {timeout:.0f} s; see {log_path}")


def is_alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start_devnet(
    directory: Path, validators: int, base_port: int, template_path: Path
) -> dict[str, Any]:
    """Create keys, genesis and configs (first time only) and start every node."""
    manifest_path = directory / "devnet.json"
    if manifest_path.exists():
        manifest = load_json(manifest_path, "devnet manifest")
        if any(is_alive(n["pid"]) for n in manifest["nodes"]):
            raise ConfigError(f"a devnet is already running in {directory}; stop it first")
        founders = [n for n in manifest["nodes"] if n.get("role") == "validator"]
        if sum(not n.get("joined") for n in founders) != validators:
            raise ConfigError(
                f"{directory} holds a {len(manifest['nodes'])}-validator devnet; "
                "stop it and remove the folder to start another size"
            )
    else:
        manifest = create_devnet(directory, validators, base_port, template_path)
    for entry in manifest["nodes"]:
        entry["pid"] = start_node_process(Path(entry["config"]), Path(entry["log"]))
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    for entry in manifest["nodes"]:
        wait_for_rpc(entry["rpc"], entry["pid"], Path(entry["log"]))
    return manifest


def create_devnet(
    directory: Path, validators: int, base_port: int, template_path: Path
) -> dict[str, Any]:
    """Generate keys, genesis and node configs for a new devnet in ``directory``."""
    if not 1 <= validators <= len(MUNICIPALITIES):
        raise ConfigError(f"a devnet has 1 to {len(MUNICIPALITIES)} validators")
    directory = directory.resolve()
    keys_dir = directory / "keys"
    members = []
    for index in range(validators):
        name = MUNICIPALITIES[index]
        key = PrivateKey().secret
        save_private_key(keys_dir / f"{name.lower()}.key", key)
        members.append((name, address_of(key), base_port + index))
    admin_key = PrivateKey().secret
    admin_file = keys_dir / "admin.key"
    save_private_key(admin_file, admin_key)
    template = load_json(template_path, "genesis template")
    genesis = create_devnet_genesis(template, members, address_of(admin_key))
    (directory / "genesis.json").write_text(json.dumps(genesis, indent=2) + "\n")
    genesis_hash = compute_genesis_hash(load_genesis(directory / "genesis.json"))
    observer_key = PrivateKey().secret
    save_private_key(keys_dir / "observer.key", observer_key)
    observer_port = base_port + validators
    observers = [
        {
            "address": to_checksum_address(address_of(observer_key)),
            "url": f"ws://127.0.0.1:{observer_port + P2P_PORT_OFFSET}/p2p",
        }
    ]
    members_and_observer = [
        *((name, port, keys_dir / f"{name.lower()}.key", True) for name, _, port in members),
        (OBSERVER_NAME, observer_port, keys_dir / "observer.key", False),
    ]
    nodes = []
    for name, port, key_file, is_validator in members_and_observer:
        config = write_node_config(
            directory, name, port, key_file, observers, validator=is_validator
        )
        nodes.append(
            {
                "name": name,
                "role": "validator" if is_validator else "observer",
                "rpc": f"http://127.0.0.1:{port}",
                "ws": f"ws://127.0.0.1:{port}",
                "pid": 0,
                "config": str(config),
                "log": str(config.parent / "node.log"),
            }
        )
    return {
        "chainId": genesis["chainId"],
        "genesisHash": "0x" + genesis_hash.hex(),
        "genesis": str(directory / "genesis.json"),
        "admin": {
            "address": to_checksum_address(address_of(admin_key)),
            "keyFile": str(admin_file),
        },
        "contracts": genesis.get("contracts", {}),
        "nodes": nodes,
    }


def add_node(directory: Path, name: str) -> dict[str, Any]:
    """Create and start a validator node that is not in the set yet.

    It has its own key and syncs from the genesis validators; it signs once
    the set votes it in (``polder validators propose-add``).
    """
    manifest_path = directory / "devnet.json"
    manifest = load_json(manifest_path, "devnet manifest")
    if any(n["name"].lower() == name.lower() for n in manifest["nodes"]):
        raise ConfigError(f"this devnet already has a node named {name}")
    if not name.isalnum():
        raise ConfigError("a node name is letters and digits only")
    directory = directory.resolve()
    key_file = directory / "keys" / f"{name.lower()}.key"
    key = PrivateKey().secret
    save_private_key(key_file, key)
    port = max(int(n["rpc"].rsplit(":", 1)[1]) for n in manifest["nodes"]) + 1
    founder = next(n for n in manifest["nodes"] if n["role"] == "validator")
    observers = load_json(Path(founder["config"]), "node config")["p2p"]["observers"]
    config = write_node_config(directory, name, port, key_file, observers, validator=True)
    entry: dict[str, Any] = {
        "name": name,
        "role": "validator",
        "joined": True,
        "address": to_checksum_address(address_of(key)),
        "p2p": f"ws://127.0.0.1:{port + P2P_PORT_OFFSET}/p2p",
        "rpc": f"http://127.0.0.1:{port}",
        "ws": f"ws://127.0.0.1:{port}",
        "pid": start_node_process(config, config.parent / "node.log"),
        "config": str(config),
        "log": str(config.parent / "node.log"),
    }
    manifest["nodes"].append(entry)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    wait_for_rpc(entry["rpc"], entry["pid"], Path(entry["log"]))
    return entry


def find_node(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    for entry in manifest["nodes"]:
        if entry["name"].lower() == name.lower():
            return dict(entry)
    names = ", ".join(n["name"] for n in manifest["nodes"])
    raise ConfigError(f"no node named {name!r} in this devnet; it has {names}")


def kill_node(directory: Path, name: str) -> int:
    """SIGKILL one node (a crash drill); return its pid."""
    manifest = load_json(directory / "devnet.json", "devnet manifest")
    entry = find_node(manifest, name)
    if not is_alive(entry["pid"]):
        raise ConfigError(f"{entry['name']} is not running")
    os.kill(entry["pid"], signal.SIGKILL)
    return int(entry["pid"])


def restart_node(directory: Path, name: str) -> dict[str, Any]:
    """Start one node again (after kill or stop) and wait for its RPC."""
    manifest_path = directory / "devnet.json"
    manifest = load_json(manifest_path, "devnet manifest")
    entry = find_node(manifest, name)
    if is_alive(entry["pid"]):
        stop_process(entry["pid"], 20.0)
    pid = start_node_process(Path(entry["config"]), Path(entry["log"]))
    for node in manifest["nodes"]:
        if node["name"] == entry["name"]:
            node["pid"] = pid
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    wait_for_rpc(entry["rpc"], pid, Path(entry["log"]))
    return find_node(manifest, name)


def stop_devnet(directory: Path, timeout: float = 20.0) -> list[str]:
    """Stop every node of the devnet gracefully (SIGTERM, then SIGKILL)."""
    manifest = load_json(directory / "devnet.json", "devnet manifest")
    stopped = []
    for entry in manifest["nodes"]:
        if stop_process(entry["pid"], timeout):
            stopped.append(entry["name"])
    return stopped


def stop_process(pid: int, timeout: float) -> bool:
    """SIGTERM ``pid`` and wait; SIGKILL it if it lingers. False if it was not running."""
    if pid <= 0 or not is_alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def get_devnet_status(directory: Path) -> list[dict[str, Any]]:
    """Return each node's name, pid, liveness and head height."""
    manifest = load_json(directory / "devnet.json", "devnet manifest")
    status = []
    for entry in manifest["nodes"]:
        alive = is_alive(entry["pid"])
        height: int | None = None
        if alive:
            try:
                height = int(rpc_call(entry["rpc"], "eth_blockNumber", timeout=2.0), 16)
            except (OSError, ConfigError):
                height = None
        status.append(
            {
                "name": entry["name"],
                "role": entry.get("role", "validator"),
                "pid": entry["pid"],
                "alive": alive,
                "height": height,
                "rpc": entry["rpc"],
            }
        )
    return status
