"""``polder demo poll``: a whole neighbourhood poll against a running devnet.

The devnet's validators play the municipalities: all of them are trustees
(any 3 of 4 decrypt), three of them issue credentials (any 2 of 3 vouch for a
voter), and one of the trustees is offline at tally time. Residents get a
fresh voting key, credentials from two issuers' real issuance services
(aiohttp on 127.0.0.1), and cast encrypted ballots; the poll closes, three
trustees post partial decryptions, the result is published, and the
universal verifier re-checks everything from every validator's chain data.
Each step is printed; the README's voter section walks the same steps by hand.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from eth_account import Account

from clients.issuer.client import encode_credential, request_credential
from clients.issuer.keys import (
    encode_issuer_public_key,
    generate_issuer_key,
    load_issuer_key,
    save_issuer_key,
)
from clients.issuer.roll import add_voters, open_roll
from clients.issuer.service import IssuerConfig, make_app
from clients.light.receipt import save_receipt
from clients.polls import trustee, voter
from clients.polls.chain import REGISTRY_NAME, PollChain, PollInfo, make_issued_reporter
from clients.polls.organiser import create_poll
from clients.polls.verifier import Report, collect_record, verify_record
from clients.web3tools import build_signed, connect, submit, wait
from contracts.ballot import encrypt_ballot

QUESTION = "Which should the neighbourhood budget fund first?"
OPTIONS = ("A playground on the Lange Haven", "Trees along the Broersvest", "Benches in the park")
PATTERN = (0, 1, 0, 2, 0, 1, 1, 0, 2, 0)
"""Resident i picks option PATTERN[i % 10]: a result that is not a tie."""


@dataclass(frozen=True)
class DemoResult:
    poll_id: bytes
    counts: tuple[int, ...]
    report: Report
    folder: Path
    """Where receipts and trustee states were saved."""


class IssuerServices:
    """Real issuance services on 127.0.0.1, in a background event loop."""

    def __init__(self, configs: Sequence[IssuerConfig]) -> None:
        self.configs = configs
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runners: list[web.AppRunner] = []
        self.urls: list[str] = []

    def __enter__(self) -> IssuerServices:
        self.thread.start()
        self.urls = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)
        return self

    async def _start(self) -> list[str]:
        urls = []
        for config in self.configs:
            runner = web.AppRunner(make_app(config))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.runners.append(runner)
            host, port = runner.addresses[0][:2]
            urls.append(f"http://{host}:{port}")
        return urls

    def __exit__(self, *exc_info: object) -> None:
        """Stop the services; their reporters put the final counts on chain first."""

        async def stop() -> None:
            for runner in self.runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(120)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def load_members(devnet: Path) -> list[tuple[str, Any]]:
    """The devnet's genesis validators with their keys: the municipalities."""
    manifest = json.loads((devnet / "devnet.json").read_text())
    keys = Path(manifest["genesis"]).parent / "keys"
    return [
        (node["name"], Account.from_key((keys / f"{node['name'].lower()}.key").read_text().strip()))
        for node in manifest["nodes"]
        if node.get("role") == "validator" and not node.get("joined")
    ]


def prepare_issuer(folder: Path, name: str, voters: int) -> tuple[Any, Path, dict[str, str]]:
    """An issuer's RSA key (made once) and a fresh roll of ``voters`` residents with codes."""
    key_path = folder / "issuers" / f"{name.lower()}.pem"
    if key_path.exists():
        key = load_issuer_key(key_path)
    else:
        key = generate_issuer_key()
        save_issuer_key(key_path, key)
    roll_path = folder / "issuers" / f"{name.lower()}-roll.sqlite"
    roll_path.unlink(missing_ok=True)
    connection = open_roll(roll_path)
    try:
        codes = add_voters(connection, [f"resident-{i:03d}" for i in range(1, voters + 1)])
    finally:
        connection.close()
    return key, roll_path, codes


@dataclass(frozen=True)
class Resident:
    """A resident of the walkthrough: a roll id, a fresh voting key, a choice."""

    voter_id: str
    account: Any
    selections: list[int]
    credentials: list[bytes]


class PollWalkthrough:
    """The demo's steps, one method each, so tests can act between them."""

    def __init__(self, devnet: Path, voters: int, say: Callable[[str], None] = print) -> None:
        manifest = json.loads((devnet / "devnet.json").read_text())
        members = load_members(devnet)
        if len(members) < 4:
            raise ValueError("the demo needs a devnet of 4 validators (make run)")
        self.voters = voters
        self.say = say
        self.urls = [n["rpc"] for n in manifest["nodes"] if n.get("role") == "validator"]
        self.w3 = connect(self.urls[0])
        self.chain = PollChain(self.w3, manifest["contracts"][REGISTRY_NAME])
        self.names = [name for name, _ in members[:4]]
        self.accounts = [account for _, account in members[:4]]
        self.folder = devnet / "polls"
        say(f"municipalities: {', '.join(self.names)} (trustees, 3 of 4 decrypt)")
        self.issuers = [prepare_issuer(self.folder, name, voters) for name in self.names[:3]]
        say(f"issuers: {', '.join(self.names[:3])} (2 of 3 vouch); {voters} residents on each roll")
        self.poll_id = b""
        self.closes = 0
        self.states: list[trustee.TrusteeState] = []

    @property
    def poll(self) -> PollInfo:
        return self.chain.get_poll(self.poll_id)

    def create(self, window: int | None = None) -> bytes:
        now = self.w3.eth.get_block("latest")["timestamp"]
        self.closes = int(max(time.time(), now)) + (window or 30 + self.voters // 2)
        self.poll_id = create_poll(
            self.chain,
            self.accounts[0],
            question=QUESTION,
            options=OPTIONS,
            min_selections=1,
            max_selections=1,
            opens=now,
            closes=self.closes,
            trustees=[bytes.fromhex(a.address[2:]) for a in self.accounts],
            threshold=3,
            issuers=[bytes.fromhex(a.address[2:]) for a in self.accounts[:3]],
            issuer_keys=[encode_issuer_public_key(key) for key, _, _ in self.issuers],
            issuer_threshold=2,
        )
        self.folder = self.folder / self.poll_id.hex()[:16]
        self.say(
            f"1. {self.names[0]} created poll 0x{self.poll_id.hex()};"
            f" it closes at {time.ctime(self.closes)}"
        )
        return self.poll_id

    def key_ceremony(self) -> None:
        poll = self.poll
        paths = [self.folder / "trustees" / f"{name.lower()}.json" for name in self.names]
        states = [
            trustee.register_key(self.chain, account, poll, path)
            for account, path in zip(self.accounts, paths, strict=True)
        ]
        for account, state in zip(self.accounts, states, strict=True):
            trustee.post_dealing(self.chain, account, poll, state)
        self.chain.send(self.accounts[0], self.chain.functions.finalizeKey(self.poll_id))
        poll = self.poll
        self.states = [trustee.derive_secret_share(self.chain, poll, s) for s in states]
        for state, path in zip(self.states, paths, strict=True):
            state.save(path)
        self.say("2. key ceremony: 4 dealings checked on chain, election key final, shares derived")

    def issuer_services(self) -> IssuerServices:
        """Each issuer's real service; its reporter puts the issued count on chain."""
        configs = [
            IssuerConfig(
                name=name,
                key=key,
                roll_path=roll,
                polls=[self.poll_id],
                report=make_issued_reporter(self.urls[0], self.chain.contract.address, account),
                report_interval=5.0,
            )
            for name, account, (key, roll, _) in zip(
                self.names[:3], self.accounts[:3], self.issuers, strict=True
            )
        ]
        return IssuerServices(configs)

    def request_credentials(
        self, services: IssuerServices, number: int, account: Any, issuers: Sequence[int]
    ) -> list[bytes]:
        """Resident ``number`` (1-based) asks ``issuers`` to vouch for ``account``."""
        voter_id = f"resident-{number:03d}"
        address = bytes.fromhex(account.address[2:])
        return [
            encode_credential(
                request_credential(
                    services.urls[j],
                    self.poll_id,
                    voter_id,
                    self.issuers[j][2][voter_id],
                    address,
                    issuer_index=j,
                    public_key=self.issuers[j][0].public_key().export_key(format="DER"),
                )
            )
            for j in issuers
        ]

    def residents(self, services: IssuerServices, count: int | None = None) -> list[Resident]:
        """Residents 1..count get a voting key and credentials from two issuers."""
        made = []
        for i in range(count or self.voters):
            account = Account.create()
            pair = ((0, 1), (1, 2), (0, 2))[i % 3]
            selections = [1 if o == PATTERN[i % len(PATTERN)] else 0 for o in range(3)]
            credentials = self.request_credentials(services, i + 1, account, pair)
            made.append(Resident(f"resident-{i + 1:03d}", account, selections, credentials))
        self.say(f"3. {len(made)} residents got credentials from 2 issuers each (blind signatures)")
        return made

    def cast(self, residents: Sequence[Resident]) -> list[bytes]:
        tx_hashes = cast_all(self.chain, self.poll, residents, self.folder)
        self.say(
            f"4. {len(tx_hashes)} encrypted ballots cast; receipts in {self.folder / 'receipts'}"
        )
        return tx_hashes

    def close(self) -> None:
        wait_until(self.w3, self.closes)
        self.chain.send(self.accounts[1], self.chain.functions.close(self.poll_id))
        self.say(f"5. the poll closed with {self.poll.ballot_count} ballots")

    def tally(self, trustees: Sequence[int] = (0, 1, 2)) -> tuple[int, ...]:
        poll = self.poll
        for index in trustees:
            trustee.post_partial(self.chain, self.accounts[index], poll, self.states[index])
        offline = [self.names[i] for i in range(4) if i not in trustees]
        self.say(
            f"6. {len(trustees)} trustees posted partial decryptions"
            + (f" ({', '.join(offline)} offline)" if offline else "")
        )
        counts = trustee.publish_result(self.chain, self.accounts[2], self.poll)
        self.say(
            "7. result published: "
            + ", ".join(f"{o}: {c}" for o, c in zip(OPTIONS, counts, strict=True))
        )
        return counts

    def verify(self) -> Report:
        record = collect_record(
            [(u, PollChain(connect(u), self.chain.contract.address)) for u in self.urls],
            self.poll_id,
        )
        report = verify_record(record)
        self.say(f"8. universal verifier, from the chain data of {len(record.nodes)} validators:")
        for name, ok, detail in report.checks:
            self.say(f"   {'✓' if ok else '✗'} {name}: {detail}")
        self.say("   VERIFIED" if report.passed else "   NOT VERIFIED")
        return report


def run_demo(devnet: Path, voters: int, say: Callable[[str], None] = print) -> DemoResult:
    """Run the whole poll; see the module docstring."""
    walk = PollWalkthrough(devnet, voters, say)
    walk.create()
    walk.key_ceremony()
    with walk.issuer_services() as services:
        walk.cast(walk.residents(services))
    walk.close()
    counts = walk.tally()
    report = walk.verify()
    return DemoResult(walk.poll_id, counts, report, walk.folder)


def cast_all(
    chain: PollChain, poll: PollInfo, residents: Sequence[Resident], folder: Path
) -> list[bytes]:
    """Send every ballot, then wait for all; save each resident's receipt."""
    pending = []
    for resident in residents:
        account = resident.account
        address = bytes.fromhex(account.address[2:])
        ballot, _ = encrypt_ballot(poll.params(), address, resident.selections)
        call = chain.functions.cast(poll.poll_id, ballot.encode(), resident.credentials)
        raw = build_signed(chain.w3, account, call)
        pending.append((resident.voter_id, account, ballot, submit(chain.w3, raw)))
    genesis = bytes(chain.w3.eth.get_block(0)["hash"])
    for voter_id, account, ballot, tx_hash in pending:
        receipt = wait(chain.w3, tx_hash)
        save_receipt(
            voter.make_ballot_receipt(
                chain,
                poll=poll,
                voting_address=account.address,
                ballot=ballot,
                tx=receipt,
                genesis_hash=genesis,
            ),
            folder / "receipts" / f"{voter_id}.json",
        )
    return [tx for *_, tx in pending]


def wait_until(w3: Any, moment: int) -> None:
    """Wait for a block timestamped at or after ``moment`` (calls run on the head's time)."""
    while w3.eth.get_block("latest")["timestamp"] < moment:
        time.sleep(0.5)
