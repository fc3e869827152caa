"""Load compiled contract artifacts at runtime.

The node never compiles: it reads ``contracts/artifacts/<Name>.json``, which
``python -m contracts.build`` (``make contracts``) writes. That is why this
module must not import vyper, which is a dev-time dependency only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from consensus.errors import ConfigError

_NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
"""Contract names are file stems; anything else could escape the artifacts folder."""

_REBUILD_HINT = "run `make contracts`"


@dataclass(frozen=True)
class Artifact:
    """A compiled contract as stored in ``contracts/artifacts``."""

    name: str
    """Contract name, the stem of its ``.vy`` source (e.g. ``"Notary"``)."""

    abi: tuple[dict[str, Any], ...]
    """ABI entries (functions, events) as the compiler emitted them."""

    bytecode: bytes
    """Deployment (init) code: send it in a contract-creation transaction."""

    runtime_bytecode: bytes
    """Code left at the contract address, e.g. for pre-deploying it at genesis."""

    source_sha256: str
    """Hex SHA-256 of the ``.vy`` source the artifact was compiled from."""

    storage_slots: dict[str, int]
    """First storage slot of each state variable (the compiler's layout)."""


def load_artifact(name: str) -> Artifact:
    """Read and decode the artifact of contract ``name``; raise ``ConfigError`` if unusable."""
    if not _NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"invalid contract name {name!r}", name=name)
    resource = resources.files(__package__ or "contracts") / "artifacts" / f"{name}.json"
    try:
        text = resource.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(
            f"contract artifact {name}.json is missing; {_REBUILD_HINT}", name=name
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"contract artifact {name}.json is unreadable ({error}); {_REBUILD_HINT}", name=name
        ) from error
    return decode_artifact(name, text)


def decode_artifact(name: str, text: str) -> Artifact:
    """Decode the JSON text of an artifact; raise ``ConfigError`` if it is garbled."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise _garbled(name, f"not JSON ({error.msg})") from error
    if not isinstance(raw, dict):
        raise _garbled(name, "not a JSON object")
    if raw.get("contract_name") != name:
        raise _garbled(name, f"contract_name is {raw.get('contract_name')!r}")
    abi = raw.get("abi")
    if not isinstance(abi, list) or not all(isinstance(entry, dict) for entry in abi):
        raise _garbled(name, "abi is not a list of objects")
    source_sha256 = raw.get("source_sha256")
    if not isinstance(source_sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", source_sha256):
        raise _garbled(name, "source_sha256 is not a hex SHA-256")
    return Artifact(
        name=name,
        abi=tuple(abi),
        bytecode=decode_hex_field(name, raw, "bytecode"),
        runtime_bytecode=decode_hex_field(name, raw, "runtime_bytecode"),
        source_sha256=source_sha256,
        storage_slots=decode_storage_slots(name, raw.get("storage_layout")),
    )


def decode_storage_slots(name: str, layout: Any) -> dict[str, int]:
    """Return each state variable's first slot from the compiler's storage layout."""
    if not isinstance(layout, dict):
        raise _garbled(name, "storage_layout is not an object")
    slots = {}
    for variable, entry in layout.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("slot"), int):
            raise _garbled(name, f"storage_layout of {variable} has no slot")
        slots[variable] = entry["slot"]
    return slots


def decode_hex_field(name: str, raw: dict[str, Any], field: str) -> bytes:
    """Decode a non-empty ``0x``-prefixed hex field of an artifact."""
    value = raw.get(field)
    if not isinstance(value, str) or not value.startswith("0x") or len(value) <= 2:
        raise _garbled(name, f"{field} is not 0x-prefixed hex")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as error:
        raise _garbled(name, f"{field} is not valid hex") from error


def _garbled(name: str, reason: str) -> ConfigError:
    """Build the error for an artifact that exists but cannot be used."""
    return ConfigError(
        f"contract artifact {name}.json is garbled: {reason}; {_REBUILD_HINT}",
        name=name,
        reason=reason,
    )
