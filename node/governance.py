"""Reading the validator set from the ValidatorRegistry system contract.

The registry (contracts/ValidatorRegistry.vy) is the chain's record of who
validates: a vote of more than two thirds of the current set adopts a change
that takes effect at a later height. The node asks it, on the state after
block ``n - 1``, which set seals block ``n``; block building puts the answer
into the header's vanity and every validating node recomputes it
(docs/spec/governance.md).
"""

from __future__ import annotations

from typing import cast

from eth.abc import SignedTransactionAPI, StateAPI
from eth.vm.spoof import SpoofTransaction
from eth_abi.abi import decode, encode
from eth_hash.auto import keccak
from eth_typing import Address
from eth_utils import ValidationError

from consensus.errors import InvalidBlock
from node.evm import PolderVM

SYSTEM_CALLER = b"\x00" * 20
"""Sender of the node's own read-only registry calls."""
VIEW_GAS = 5_000_000
VALIDATORS_AT = keccak(b"validators_at(uint256)")[:4]


def run_view(state: StateAPI, to: bytes, data: bytes) -> bytes:
    """Execute a read-only call on ``state``, undo it, and return its output."""
    unsigned = PolderVM.create_unsigned_transaction(
        nonce=state.get_nonce(Address(SYSTEM_CALLER)),
        gas_price=0,
        gas=VIEW_GAS,
        to=Address(to),
        value=0,
        data=data,
    )
    transaction = cast(SignedTransactionAPI, SpoofTransaction(unsigned, from_=SYSTEM_CALLER))
    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(transaction)
    except ValidationError as exc:
        raise InvalidBlock(f"registry call could not run: {exc}") from exc
    finally:
        state.revert(snapshot)
    if computation.is_error:
        raise InvalidBlock(f"registry call failed: {computation.error}")
    return bytes(computation.output)


def read_validators_at(state: StateAPI, registry: bytes, number: int) -> tuple[bytes, ...]:
    """Return the set that seals block ``number``, per the registry on ``state``."""
    output = run_view(state, registry, VALIDATORS_AT + encode(["uint256"], [number]))
    (members,) = decode(["address[]"], output)
    validators = tuple(bytes.fromhex(member[2:]) for member in members)
    if not validators:
        raise InvalidBlock(f"the registry names no validators for block {number}")
    return validators
