"""The ``polder`` command.

Client commands run here. ``polder node ...`` and ``polder devnet ...`` are
handed to ``python -m node`` by replacing this process, so the clients
package never imports the node (DESIGN.md's layer arrows).
"""

from __future__ import annotations

import os
import sys

NODE_COMMANDS = ("node", "devnet")
POLL_COMMANDS = ("poll", "trustee", "vote", "demo")

USAGE = """\
usage: polder COMMAND ...

  polder node run --config FILE            run one node
  polder devnet start|stop|status --dir D  a local devnet on 127.0.0.1
  polder verify receipt|tx|account|head    verify with the light client (--node URL ...)
  polder validators list|propose-add|propose-remove|approve   vote validators in and out
  polder poll|trustee|vote ...             polls: key ceremony, ballots, tally
  polder issuer serve|add-voters|keygen    a municipality's credential issuance service
  polder budget admin|wallet|merchant|scheduler ...   debt-relief budgets (vouchers)
  polder budget office ...                 a municipality's off-chain store (people, IBANs)
  polder demo poll|budget --devnet DIR     walkthroughs against a running devnet
  polder verify books FUND --node URL ...  recompute a fund's books from chain data
  polder verify poll ID --node URL ...     recompute a poll from chain data
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in NODE_COMMANDS:
        os.execv(sys.executable, [sys.executable, "-m", "node", *args])  # noqa: S606
    if args[:2] in (["budget", "office"], ["demo", "budget"]):
        from clients.office_cli import main as office  # noqa: PLC0415

        return office(args)
    if args and (args[0] in POLL_COMMANDS or args[:2] == ["verify", "poll"]):
        from clients.polls_cli import main as polls  # noqa: PLC0415

        return polls(["verify-poll", *args[2:]] if args[0] == "verify" else args)
    if args and (args[0] == "budget" or args[:2] == ["verify", "books"]):
        from clients.budget_cli import main as budget  # noqa: PLC0415

        return budget(args)
    if args and args[0] == "verify":
        from clients.verify_cli import main as verify  # noqa: PLC0415 - only this command needs it

        return verify(args[1:])
    if args and args[0] == "issuer":
        from clients.issuer.cli import main as issuer  # noqa: PLC0415

        return issuer(args[1:])
    if args and args[0] == "validators":
        from clients.validators_cli import main as validators  # noqa: PLC0415

        return validators(args[1:])
    print(USAGE, file=sys.stderr if args else sys.stdout)
    return 2 if args else 0
