"""Polder clients: the polder command line, light client, polls and budgets.

Selects eth-hash's fast keccak backend first, as ``node/__init__.py`` explains.
"""

import os

os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
