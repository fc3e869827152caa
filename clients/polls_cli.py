"""``polder poll|trustee|vote ...`` and ``polder verify poll``: polls from the command line.

Every command talks to one node (``--node URL``, or a devnet's first node
with ``--devnet DIR``) and signs with a key file (``--key FILE``, or with
``--devnet DIR --as NAME`` the devnet's key of that municipality).
Exit status: 0 done, 1 refused or not verified (the reason is printed),
2 usage error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from eth_account import Account

from clients.cliargs import UsageError, choose_node_url, load_account, read_manifest
from clients.cliargs import add_node_arguments as add_shared_arguments
from clients.issuer.client import encode_credential, request_credential
from clients.light.receipt import load_receipt, save_receipt, verify_receipt
from clients.polls import organiser, trustee, voter
from clients.polls.chain import DEFAULT_REGISTRY, REGISTRY_NAME, PollChain, PollInfo
from clients.polls.verifier import collect_record, verify_record
from clients.verify_cli import add_arguments as add_verify_arguments
from clients.verify_cli import open_client
from clients.web3tools import connect
from consensus.errors import PolderError


def add_node_arguments(parser: argparse.ArgumentParser, signs: bool = True) -> None:
    add_shared_arguments(parser, ("--registry", REGISTRY_NAME, DEFAULT_REGISTRY), signs=signs)


def open_chain(args: argparse.Namespace) -> PollChain:
    manifest = read_manifest(args.devnet)
    url = choose_node_url(args.node, manifest)
    registry = args.registry or manifest.get("contracts", {}).get(REGISTRY_NAME, DEFAULT_REGISTRY)
    return PollChain(connect(url), registry)


def signer(args: argparse.Namespace, path: Path | None = None) -> Any:
    return load_account(path or args.key, read_manifest(args.devnet), getattr(args, "member", None))


def parse_poll_id(value: str) -> bytes:
    digits = value.removeprefix("0x")
    if len(digits) != 64:
        raise UsageError(f"a poll id is 32 bytes of hex, got {value!r}")
    return bytes.fromhex(digits)


def describe_poll(poll: PollInfo) -> str:
    now = time.time()
    phase = (
        "result published"
        if poll.published
        else "closed"
        if poll.closed
        else "open"
        if poll.key_final and poll.opens <= now < poll.closes
        else "key ceremony"
        if not poll.key_final
        else "waiting to close"
    )
    lines = [
        f"poll 0x{poll.poll_id.hex()} (#{poll.number}): {poll.question}",
        f"  phase      {phase}; {poll.ballot_count} ballots",
        f"  options    {', '.join(poll.options)}",
        f"  choose     {poll.min_selections} to {poll.max_selections}",
        f"  window     {time.ctime(poll.opens)} .. {time.ctime(poll.closes)}",
        f"  trustees   {poll.threshold} of {len(poll.trustees)}",
        f"  issuers    {poll.issuer_threshold} of {len(poll.issuers)}",
    ]
    return "\n".join(lines)


# -- the commands ----------------------------------------------------------------------


def resolve_address(args: argparse.Namespace, value: str) -> bytes:
    """An address given as 0x… or as the name of a devnet node."""
    if value.startswith("0x") and len(value) == 42:
        return bytes.fromhex(value[2:])
    manifest = read_manifest(args.devnet)
    keys = Path(manifest["genesis"]).parent / "keys" if manifest else None
    if keys is not None and (keys / f"{value.lower()}.key").exists():
        account = Account.from_key((keys / f"{value.lower()}.key").read_text().strip())
        return bytes.fromhex(account.address[2:])
    raise UsageError(f"{value!r} is neither an address nor a node of the devnet")


def parse_time(value: str, now: int) -> int:
    """``now``, ``+SECONDS`` or a unix time."""
    if value == "now":
        return now
    if value.startswith("+") and value[1:].isdigit():
        return now + int(value[1:])
    if value.isdigit():
        return int(value)
    raise UsageError(f"a time is 'now', '+SECONDS' or a unix time, got {value!r}")


def create(args: argparse.Namespace, chain: PollChain) -> int:
    from Crypto.PublicKey import RSA  # noqa: PLC0415

    account = signer(args)
    issuers, keys = [], []
    for item in args.issuer:
        who, _, path = item.partition("=")
        if not path:
            raise UsageError("--issuer is NAME_OR_ADDRESS=KEYFILE (the issuer's PEM key)")
        try:
            public = RSA.import_key(Path(path).read_bytes()).public_key()
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the issuer key {path}: {exc}") from exc
        issuers.append(resolve_address(args, who))
        keys.append(public.export_key(format="DER"))
    now = int(chain.w3.eth.get_block("latest")["timestamp"])
    poll_id = organiser.create_poll(
        chain,
        account,
        question=args.question,
        options=args.option,
        min_selections=args.min,
        max_selections=args.max,
        opens=parse_time(args.opens, now),
        closes=parse_time(args.closes, now),
        trustees=[resolve_address(args, t) for t in args.trustee],
        threshold=args.threshold,
        issuers=issuers,
        issuer_keys=keys,
        issuer_threshold=args.issuer_threshold,
    )
    print(f"poll 0x{poll_id.hex()}")
    return 0


def run_poll(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    if args.action == "create":
        return create(args, chain)
    if args.action == "show":
        print(describe_poll(chain.get_poll(parse_poll_id(args.poll))))
        return 0
    account = signer(args)
    poll = chain.get_poll(parse_poll_id(args.poll))
    if args.action == "close":
        chain.send(account, chain.functions.close(poll.poll_id))
        print(f"closed poll 0x{poll.poll_id.hex()} with {poll.ballot_count} ballots")
    elif args.action == "finalize-key":
        chain.send(account, chain.functions.finalizeKey(poll.poll_id))
        print("election key final; the poll takes ballots from its opening time")
    else:  # publish
        counts = trustee.publish_result(chain, account, poll)
        for option, count in zip(poll.options, counts, strict=True):
            print(f"  {option}: {count}")
    return 0


def run_trustee(args: argparse.Namespace) -> int:
    chain = open_chain(args)
    account = signer(args)
    poll = chain.get_poll(parse_poll_id(args.poll))
    if args.action == "register":
        state = trustee.register_key(chain, account, poll, args.state)
        print(f"registered as trustee {state.index}; keep {args.state} safe (mode 0600)")
        return 0
    state = trustee.TrusteeState.load(args.state)
    if args.action == "deal":
        trustee.post_dealing(chain, account, poll, state)
        print(f"dealing of trustee {state.index} posted, shares encrypted to each trustee")
    elif args.action == "share":
        state = trustee.derive_secret_share(chain, poll, state)
        state.save(args.state)
        print(f"secret share of trustee {state.index} derived and checked; saved in {args.state}")
    else:  # decrypt
        trustee.post_partial(chain, account, poll, state)
        print(f"partial decryption of trustee {state.index} posted")
    return 0


def run_vote(args: argparse.Namespace) -> int:
    if args.action == "check":
        receipt = load_receipt(args.receipt)
        verified = verify_receipt(receipt, open_client(args))
        print(f"VERIFIED  ballot receipt {args.receipt}")
        for check in verified.checks:
            print(f"  ✓ {check}")
        print(f"  agreed        {', '.join(verified.transaction.agreed)}")
        return 0
    if args.action == "key":
        account = Account.create()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(account.key.hex() + "\n")
        args.out.chmod(0o600)
        print(f"voting key {account.address} saved in {args.out}; use it for this poll only")
        return 0
    chain = open_chain(args)
    poll = chain.get_poll(parse_poll_id(args.poll))
    account = signer(args, args.voting_key)
    if args.action == "credential":
        if not 0 <= args.index < len(poll.issuers):
            raise UsageError(f"the poll has issuers 0..{len(poll.issuers) - 1}")
        obtained = request_credential(
            args.issuer,
            poll.poll_id,
            args.voter_id,
            args.code,
            bytes.fromhex(account.address[2:]),
            issuer_index=args.index,
            public_key=poll.issuer_keys[args.index],
        )
        print("0x" + encode_credential(obtained).hex())
        return 0
    selections = [1 if i in args.choose else 0 for i in range(len(poll.options))]
    if args.action == "spoil":
        _, opening = voter.spoil_ballot(poll, bytes.fromhex(account.address[2:]), selections)
        print("Benaloh challenge: the ballot was opened instead of cast; it encrypted")
        for option, chosen in zip(poll.options, opening.selections, strict=True):
            print(f"  {'[x]' if chosen else '[ ]'} {option}")
        print("which matches your choice if the list above is what you picked; nothing was sent")
        return 0
    credentials = [bytes.fromhex(c.removeprefix("0x")) for c in args.credential]
    cast = voter.cast_ballot(chain, account, poll, selections, credentials)
    save_receipt(cast.receipt, args.receipt)
    verb = "replaced your earlier ballot" if cast.replaced else "cast"
    print(f"ballot {verb} in block {cast.receipt.block_number}")
    print(f"tracking code {cast.receipt.body['trackingCode']}; receipt saved in {args.receipt}")
    return 0


def run_verify_poll(args: argparse.Namespace) -> int:
    manifest = read_manifest(args.devnet)
    urls = list(args.node or [])
    if manifest:
        urls += [n["rpc"] for n in manifest["nodes"] if n.get("role") == "validator"]
    if not urls:
        raise UsageError("name the nodes with --node URL (several, of different municipalities)")
    registry = args.registry or manifest.get("contracts", {}).get(REGISTRY_NAME, DEFAULT_REGISTRY)
    chains = [(url, PollChain(connect(url), registry)) for url in urls]
    record = collect_record(chains, parse_poll_id(args.poll))
    report = verify_record(record)
    print(f"poll 0x{record.poll_id.hex()}: record identical on {len(record.nodes)} node(s)")
    for name, ok, detail in report.checks:
        print(f"  {'✓' if ok else '✗'} {name}: {detail}")
    print("VERIFIED" if report.passed else "NOT VERIFIED")
    return 0 if report.passed else 1


def run_demo(args: argparse.Namespace) -> int:
    from clients.polls.demo import run_demo as demo  # noqa: PLC0415 - aiohttp only here

    if not 1 <= args.voters <= 10_000:
        raise UsageError("--voters is 1 to 10000")
    result = demo(args.devnet, args.voters)
    print(f"poll id 0x{result.poll_id.hex()}")
    return 0 if result.report.passed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polder", description=__doc__)
    top = parser.add_subparsers(dest="command", required=True)
    poll = top.add_parser("poll", help="show, close, finalize the key, publish the result")
    poll_sub = poll.add_subparsers(dest="action", required=True)
    for name in ("show", "close", "finalize-key", "publish"):
        command = poll_sub.add_parser(name)
        command.add_argument("poll")
        add_node_arguments(command, signs=name != "show")
    created = poll_sub.add_parser("create", help="create a poll (the organiser)")
    created.add_argument("--question", required=True)
    created.add_argument("--option", action="append", required=True, help="repeat per option")
    created.add_argument("--min", type=int, default=1, help="fewest options a ballot selects")
    created.add_argument("--max", type=int, default=1, help="most options a ballot selects")
    created.add_argument("--opens", default="now", help="'now', '+SECONDS' or a unix time")
    created.add_argument("--closes", required=True, help="'+SECONDS' or a unix time")
    created.add_argument("--trustee", action="append", required=True, help="address or node")
    created.add_argument("--threshold", type=int, required=True, help="trustees who decrypt")
    created.add_argument("--issuer", action="append", required=True, help="WHO=PEM_KEY_FILE")
    created.add_argument("--issuer-threshold", type=int, required=True)
    add_node_arguments(created)
    trustee_parser = top.add_parser("trustee", help="key ceremony and partial decryption")
    trustee_sub = trustee_parser.add_subparsers(dest="action", required=True)
    for name in ("register", "deal", "share", "decrypt"):
        command = trustee_sub.add_parser(name)
        command.add_argument("poll")
        command.add_argument("--state", type=Path, required=True, help="the trustee's state file")
        add_node_arguments(command)
    vote = top.add_parser("vote", help="a voting key, a ballot, a receipt, a check")
    vote_sub = vote.add_subparsers(dest="action", required=True)
    key = vote_sub.add_parser("key", help="create a fresh voting key for one poll")
    key.add_argument("--out", type=Path, required=True)
    credential = vote_sub.add_parser("credential", help="ask one issuer to vouch for your key")
    credential.add_argument("poll")
    credential.add_argument("--issuer", required=True, help="the issuer's URL")
    credential.add_argument("--index", type=int, required=True, help="its place in the poll")
    credential.add_argument("--voter-id", required=True)
    credential.add_argument("--code", required=True, help="the one-time code of your letter")
    credential.add_argument("--voting-key", type=Path, required=True)
    add_node_arguments(credential, signs=False)
    for name in ("cast", "spoil"):
        command = vote_sub.add_parser(name)
        command.add_argument("poll")
        command.add_argument("--voting-key", type=Path, required=True)
        command.add_argument("--choose", type=int, action="append", default=[],
                             help="an option number (0-based); repeat for several")  # fmt: skip
        if name == "cast":
            command.add_argument("--credential", action="append", default=[], required=True)
            command.add_argument("--receipt", type=Path, required=True)
        add_node_arguments(command, signs=False)
    check = vote_sub.add_parser("check", help="verify a ballot receipt with the light client")
    check.add_argument("receipt", type=Path)
    add_verify_arguments(check)
    demo = top.add_parser("demo", help="walkthroughs against a running devnet")
    demo_poll = demo.add_subparsers(dest="action", required=True).add_parser(
        "poll", help="a whole poll: credentials, ballots, close, threshold tally, verifier"
    )
    demo_poll.add_argument("--voters", type=int, default=20)
    demo_poll.add_argument("--devnet", type=Path, default=Path(".devnet"))
    verify = top.add_parser("verify-poll", help="recompute a poll from chain data")
    verify.add_argument("poll")
    verify.add_argument("--node", action="append")
    verify.add_argument("--devnet", type=Path)
    verify.add_argument("--registry")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    runners = {
        "poll": run_poll,
        "trustee": run_trustee,
        "vote": run_vote,
        "verify-poll": run_verify_poll,
        "demo": run_demo,
    }
    try:
        return runners[args.command](args)
    except UsageError as exc:
        print(f"polder {args.command}: {exc}", file=sys.stderr)
        return 2
    except PolderError as exc:
        print(f"refused: {exc.message}", file=sys.stderr)
        return 1
