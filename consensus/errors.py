"""The one error tree of Polder.

Every validity check raises one of these (never ``assert``). Each class carries
a stable JSON-RPC error ``code`` so a node or CLI can turn any failure into a
clear message without string matching. It lives in ``consensus`` because that
is the lowest layer: ``contracts``, ``node`` and ``clients`` may all import it.
"""

from __future__ import annotations

from typing import Any


class PolderError(Exception):
    """Root of every error Polder raises on purpose."""

    code: int = -32000
    """JSON-RPC error code used when this error reaches an RPC client."""

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data: dict[str, Any] = data
        """Structured details (e.g. ``reason``, ``expected``) for clients."""


class InvalidBlock(PolderError):
    """A block or header breaks a chain or consensus rule."""

    code = -32010


class InvalidSeal(InvalidBlock):
    """A committed seal is malformed, duplicated or not by a validator."""

    code = -32011


class QuorumNotReached(InvalidBlock):
    """Fewer valid committed seals than the quorum of the validator set."""

    code = -32012


class InvalidTransaction(PolderError):
    """A transaction is refused at admission or inside a block."""

    code = -32003


class TransactionReverted(InvalidTransaction):
    """The transaction would revert against the pending state."""

    code = 3  # the code geth and web3.py use for execution reverts


class InvalidProof(PolderError):
    """A Merkle, ballot or credential proof does not verify."""

    code = -32020


class StorageError(PolderError):
    """The database is missing, locked or corrupted."""

    code = -32030


class ConfigError(PolderError):
    """A configuration or genesis file is missing or wrong."""

    code = -32040


class InvalidParams(PolderError):
    """A JSON-RPC request's parameters are missing, mistyped or out of range."""

    code = -32602


class ResourceNotFound(PolderError):
    """A block, header or state the request names is not (or no longer) held."""

    code = -32001


class LimitExceeded(PolderError):
    """A request exceeds a configured bound (block range, batch size, rate)."""

    code = -32005
