"""Command-line plumbing the ``polder`` client commands share.

A command names a node with ``--node URL`` or a local devnet with
``--devnet DIR``; it signs with ``--key FILE`` or, on a devnet, with
``--as NAME`` (that municipality's devnet key). Mistakes raise
:class:`UsageError`, which every command turns into exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_account import Account
from web3.exceptions import Web3Exception

from consensus.errors import PolderError


class UsageError(Exception):
    """The command line is wrong; the command exits 2 with this message."""


def add_node_arguments(
    parser: argparse.ArgumentParser, contract: tuple[str, str, str], *, signs: bool = True
) -> None:
    """Add --node, --devnet, the contract-address flag and (``signs``) --key and --as.

    ``contract`` is (flag, contract name, default address), e.g.
    ``("--registry", "PollRegistry", "0x…0300")``.
    """
    flag, name, default = contract
    parser.add_argument("--node", help="a node's RPC URL")
    parser.add_argument("--devnet", type=Path, help="a devnet folder (its nodes and keys)")
    parser.add_argument(flag, help=f"{name} address (default {default})")
    if signs:
        parser.add_argument("--key", type=Path, help="key file of the signing account")
        parser.add_argument("--as", dest="member", help="with --devnet: sign as this municipality")


def read_manifest(directory: Path | None) -> dict[str, Any]:
    """Return ``DIR/devnet.json``, or ``{}`` when no devnet is named."""
    if directory is None:
        return {}
    try:
        manifest: dict[str, Any] = json.loads((directory / "devnet.json").read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {directory}/devnet.json: {exc}") from None
    return manifest


def choose_node_url(node: str | None, manifest: dict[str, Any], member: str | None = None) -> str:
    """``--node``, else the devnet node named ``member``, else the devnet's first node."""
    if node is not None:
        return node
    if manifest:
        named = [n for n in manifest["nodes"] if n["name"].lower() == (member or "").lower()]
        return str((named or manifest["nodes"])[0]["rpc"])
    raise UsageError("name a node with --node URL (or --devnet DIR)")


def load_account(key: Path | None, manifest: dict[str, Any], member: str | None) -> Any:
    """The signing account: ``--key FILE``, or the devnet key of ``--as NAME``."""
    path = key
    if path is None and member and manifest:
        path = Path(manifest["genesis"]).parent / "keys" / f"{member.lower()}.key"
    if path is None:
        raise UsageError("this command signs: pass --key FILE (or --devnet DIR --as NAME)")
    try:
        return Account.from_key(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the key {path}: {exc}") from exc


def run_command(top: str, handler: Callable[[], int]) -> int:
    """Run a command's handler; turn the errors users meet into a message and an exit status.

    0 done; 1 refused by the node or the contract, or not verified; 2 usage.
    """
    try:
        return int(handler())
    except UsageError as exc:
        print(f"polder {top}: {exc}", file=sys.stderr)
        return 2
    except PolderError as exc:
        print(f"refused: {exc.message}", file=sys.stderr)
        return 1
    except Web3Exception as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # requests' ConnectionError is one
        print(f"polder {top}: cannot reach the node or a file: {exc}", file=sys.stderr)
        return 1
