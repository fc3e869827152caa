"""Polder node: chain, mempool, P2P, RPC and the BFT driver.

Importing it selects eth-hash's ``pysha3`` keccak backend (the C extension
of ``safe-pysha3``) unless ``ETH_HASH_BACKEND`` says otherwise. eth-hash would
otherwise take pycryptodome, whose per-call overhead made keccak256 (trie
nodes, addresses, transaction hashes) about a sixth of executing a block in
py-evm. eth-hash fixes its backend at the first hash in the process, so this
must run before py-evm is imported (py-evm hashes at import).
"""

import os

os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
