"""``python -m node``: run a node, or manage a local devnet.

Users reach these through ``polder node ...`` and ``polder devnet ...``
(:mod:`clients.cli` hands those words to this module in a new process, so the
client package never imports the node).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from aiohttp import web

from consensus.errors import PolderError
from node.config import load_config
from node.devnet import (
    add_node,
    get_devnet_status,
    kill_node,
    restart_node,
    start_devnet,
    stop_devnet,
)

NEXT_STEPS = """\
Devnet is up ({count} nodes: validators and one observer; chain id {chain_id},
genesis {genesis_hash}).

  RPC        {rpc}   (HTTP and WebSocket; web3.py needs ExtraDataToPOAMiddleware)
  manifest   {directory}/devnet.json
  admin key  {admin_key}   (may deploy contracts)

Try next:
  curl -s -X POST -H 'Content-Type: application/json' \\
       --data '{{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}}' {rpc}
  .venv/bin/polder devnet status --dir {directory}
  .venv/bin/polder devnet kill Rotterdam --dir {directory}      # crash one; blocks go on
  .venv/bin/polder devnet restart Rotterdam --dir {directory}   # it syncs and signs again
  .venv/bin/python scripts/demo_chain.py --devnet {directory}   # deploy, transact, prove
  .venv/bin/polder verify receipt {directory}/demo-receipt.json --devnet {directory}
  .venv/bin/polder demo poll --voters 20 --devnet {directory}   # a secret poll, end to end
  .venv/bin/polder validators list --devnet {directory}         # the set, by on-chain vote
  make stop                                                # stop the devnet
"""


ADDED = """\
Started {name} (pid {pid}) at {rpc}; address {address}.
It follows the chain and signs once the current validators vote it in:

  .venv/bin/polder validators propose-add --name {name} --address {address} \\
       --endpoint {p2p} --devnet {directory} --as Schiedam
  .venv/bin/polder validators approve 1 --devnet {directory} --as Rotterdam
  .venv/bin/polder validators approve 1 --devnet {directory} --as Vlaardingen
  .venv/bin/polder validators list --devnet {directory}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polder", description="Polder node and devnet")
    sub = parser.add_subparsers(dest="command", required=True)
    node = sub.add_parser("node", help="run a node").add_subparsers(dest="action", required=True)
    run = node.add_parser("run", help="run one node in the foreground")
    run.add_argument("--config", type=Path, required=True)
    run.add_argument("--log-level", default="INFO")
    run_alias = sub.add_parser("run", help="same as 'node run'")
    run_alias.add_argument("--config", type=Path, required=True)
    run_alias.add_argument("--log-level", default="INFO")
    devnet = sub.add_parser("devnet", help="a local devnet").add_subparsers(
        dest="action", required=True
    )
    start = devnet.add_parser("start", help="create (first time) and start a devnet")
    start.add_argument("--validators", type=int, default=4)
    start.add_argument("--dir", type=Path, default=Path(".devnet"))
    start.add_argument("--base-port", type=int, default=8545)
    start.add_argument("--template", type=Path, default=Path("genesis.json"))
    for name in ("stop", "status"):
        devnet.add_parser(name).add_argument("--dir", type=Path, default=Path(".devnet"))
    for name, text in (
        ("kill", "SIGKILL one node"),
        ("restart", "start one node again"),
        ("add", "create and start a validator node that the set can then vote in"),
    ):
        one = devnet.add_parser(name, help=text)
        one.add_argument("name")
        one.add_argument("--dir", type=Path, default=Path(".devnet"))
    args = parser.parse_args(argv)
    try:
        if args.command in ("run", "node"):
            return run_node(args.config, args.log_level)
        return run_devnet(args)
    except PolderError as exc:
        print(f"polder: {exc.message}", file=sys.stderr)
        return 2


def run_node(config_path: Path, log_level: str) -> int:
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    config = load_config(config_path)
    web.run_app(
        make_app_lazily(config),
        host=config.rpc.host,
        port=config.rpc.port,
        print=None,
        shutdown_timeout=10.0,
        handle_signals=True,
    )
    return 0


def make_app_lazily(config):  # type: ignore[no-untyped-def]
    from node.server import make_app  # noqa: PLC0415 - keeps devnet commands light

    return make_app(config)


def run_devnet(args: argparse.Namespace) -> int:
    if args.action == "start":
        manifest = start_devnet(args.dir, args.validators, args.base_port, args.template)
        print(
            NEXT_STEPS.format(
                count=len(manifest["nodes"]),
                chain_id=manifest["chainId"],
                genesis_hash=manifest["genesisHash"],
                rpc=manifest["nodes"][0]["rpc"],
                directory=args.dir,
                admin_key=manifest["admin"]["keyFile"],
            )
        )
        return 0
    if args.action == "kill":
        print(f"killed {args.name} (pid {kill_node(args.dir, args.name)})")
        return 0
    if args.action == "add":
        entry = add_node(args.dir, args.name)
        print(ADDED.format(directory=args.dir, **entry))
        return 0
    if args.action == "restart":
        entry = restart_node(args.dir, args.name)
        print(f"restarted {entry['name']} (pid {entry['pid']}) at {entry['rpc']}")
        return 0
    if args.action == "stop":
        stopped = stop_devnet(args.dir)
        print(f"stopped {', '.join(stopped) if stopped else 'nothing (no node was running)'}")
        return 0
    for entry in get_devnet_status(args.dir):
        state = f"height {entry['height']}" if entry["alive"] else "not running"
        print(
            f"{entry['name']:<12} {entry.get('role', 'validator'):<10} pid {entry['pid']:<8} "
            f"{entry['rpc']:<24} {state}"
        )
    return 0
