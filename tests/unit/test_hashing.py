"""Importing Polder selects eth-hash's pysha3 keccak backend, which hashes as pycryptodome does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from eth_hash.backends.pycryptodome import CryptodomeBackend
from eth_hash.backends.pysha3 import PySha3Backend

BACKEND_OF = (
    "import {module}\n"
    "from eth_hash.auto import keccak\n"
    "keccak(b'')\n"
    "print(type(keccak.hasher.__self__).__name__)\n"
)


def backend_after_import(module: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "ETH_HASH_BACKEND"} | env
    done = subprocess.run(
        [sys.executable, "-c", BACKEND_OF.format(module=module)],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
        timeout=120,
    )
    return done.stdout.strip()


@pytest.mark.parametrize("module", ["node.service", "clients.cli"])
def test_importing_polder_selects_pysha3(module: str) -> None:
    assert backend_after_import(module) == "PySha3Backend"


def test_an_operator_choice_of_backend_is_kept() -> None:
    chosen = backend_after_import("node.service", ETH_HASH_BACKEND="pycryptodome")
    assert chosen == "CryptodomeBackend"


@pytest.mark.parametrize("length", [0, 1, 31, 32, 33, 135, 136, 137, 271, 272, 273, 1000])
def test_both_backends_hash_alike(length: int) -> None:
    data = bytes((7 * i + length) % 256 for i in range(length))
    assert PySha3Backend().keccak256(data) == CryptodomeBackend().keccak256(data)


def test_keccak_of_nothing_is_the_known_value() -> None:
    expected = "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert PySha3Backend().keccak256(b"").hex() == expected
