"""Loaded by pytest before any test module: import the node package first.

``node`` selects eth-hash's keccak backend, which must happen before
py-evm (imported by most test modules) computes its first hash.
"""

import node  # noqa: F401
