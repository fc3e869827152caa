"""The ValidatorRegistry system contract: its genesis storage and how to read it.

Genesis places the registry's runtime code at a fixed address; it has no
constructor, so the initial validator set is written straight into its
storage here, following the compiler's layout (committed in the artifact):
a ``DynArray`` keeps its length in its first slot and member ``i`` in the
slot ``first + 1 + i``. A test deploys this storage and reads it back through
the contract, so a layout change cannot go unnoticed.
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus.errors import ConfigError
from contracts.loader import load_artifact

REGISTRY_NAME = "ValidatorRegistry"
"""The name genesis ``contracts`` uses for the registry."""
MAX_VALIDATORS = 64
"""The registry's ``MAX_VALIDATORS``."""


def compute_registry_storage(validators: Sequence[bytes]) -> dict[int, int]:
    """Return the registry's genesis storage holding ``validators`` as the current set."""
    if not 0 < len(validators) <= MAX_VALIDATORS:
        raise ConfigError(f"a validator set has 1 to {MAX_VALIDATORS} members")
    first = load_artifact(REGISTRY_NAME).storage_slots["validators"]
    storage = {first: len(validators)}
    for index, address in enumerate(validators):
        storage[first + 1 + index] = int.from_bytes(address, "big")
    return storage
