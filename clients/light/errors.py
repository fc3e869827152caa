"""Errors of the light client; each names the provider it concerns.

They extend the one error tree (``consensus.errors``) so the CLI can print
any of them and exit non-zero, and carry stable codes like every Polder error.
"""

from __future__ import annotations

from typing import Any

from consensus.errors import PolderError


class ProviderError(PolderError):
    """A provider could not be reached or answered outside the protocol."""

    code = -32050

    def __init__(self, provider: str, message: str, **data: Any) -> None:
        super().__init__(message, provider=provider, **data)
        self.provider = provider


class StaleProvider(ProviderError):
    """A provider's verified head is too old or far behind the others (withholding)."""

    code = -32051


class ValidatorChangeMissing(ProviderError):
    """A provider's list of validator-set changes leaves out one the chain committed to."""

    code = -32052


class ForkDetected(PolderError):
    """Two headers at one height, each sealed by a quorum of the trusted set.

    This cannot happen while fewer than a third of the validators lie. The
    client keeps both headers as evidence and stops trusting that height.
    """

    code = -32053


class VerificationFailed(PolderError):
    """No provider (or too few) gave an answer that verified; ``faults`` says why."""

    code = -32054


class NotFound(PolderError):
    """Every provider that answered says the transaction or block does not exist."""

    code = -32001
