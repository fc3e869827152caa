"""The Polder light client: verify what is on the chain without trusting any one node.

Library first (:class:`LightClient`, :func:`verify_receipt`); the ``polder
verify`` commands are a thin layer on top. docs/spec/light-client.md says
what is verified and in which order.
"""

from clients.light.client import (
    Fault,
    LightClient,
    VerifiedAccount,
    VerifiedHeader,
    VerifiedTransaction,
)
from clients.light.errors import (
    ForkDetected,
    NotFound,
    ProviderError,
    StaleProvider,
    ValidatorChangeMissing,
    VerificationFailed,
)
from clients.light.provider import HttpProvider
from clients.light.receipt import Receipt, VerifiedReceipt, load_receipt, verify_receipt
from clients.light.store import HeaderStore

__all__ = [
    "Fault",
    "ForkDetected",
    "HeaderStore",
    "HttpProvider",
    "LightClient",
    "NotFound",
    "ProviderError",
    "Receipt",
    "StaleProvider",
    "ValidatorChangeMissing",
    "VerificationFailed",
    "VerifiedAccount",
    "VerifiedHeader",
    "VerifiedReceipt",
    "VerifiedTransaction",
    "load_receipt",
    "verify_receipt",
]
