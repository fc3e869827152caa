"""Benchmark secret polls: ballot encryption, node verification, devnet throughput, tally.

Every part uses the demo's poll: 3 options, choose exactly 1; 4 trustees, any
3 decrypt; 3 issuers with 3072-bit RSA keys, any 2 vouch for a voter (resident
i takes option ``PATTERN[i % 10]`` and the issuer pair ``PAIRS[i % 3]``).
Issuer keys are generated once into ``--workdir`` and reused. Parts can be
left out with ``--skip micro,devnet,tally``.

1. **micro**, in this process. Client: ``encrypt_ballot`` (encryptions and
   every proof) per ballot. Node: ``verifyBallot`` through the PollCrypto
   precompile as a py-evm state call (``node.governance.run_view`` on an
   in-memory ``node.chain.Chain``): uncached (every ballot new; decoded issuer
   keys stay cached, as on a running node) and cached (the same calldata
   again: the verdict cache). The uncached call is split into the crypto alone
   (``compute_outcome``: ballot proofs, then two RSA-PSS credentials) and the
   rest (ABI decoding, EVM call). For scale, the blind-signature round trip of
   one credential (client blind + finalize, issuer sign) is timed on a few.
2. **devnet**: a fresh 4-validator devnet (plus the observer the devnet always
   adds) in a temp dir, always stopped at the end (``--keep`` leaves it). The
   demo's ``PollWalkthrough`` creates the poll and runs the key ceremony on
   chain. Before any timing, ``--ballots`` residents get a fresh voting key
   and credentials from two issuers (``--issuance direct``: signed in this
   process with the issuers' keys, then each issuer reports its count on
   chain; ``service``: the demo's real issuance services over HTTP, about
   60 ms per credential), and every ballot is encrypted and its ``cast``
   transaction signed (nonce 0, zero fees, gas from an estimate plus 20 %).
   One extra resident casts first, untimed (warm-up: it creates the
   aggregate, so the estimate is taken after it). The casts are then offered
   at ``--rate`` ballots/s (default 0: all at once), one
   ``eth_sendRawTransaction`` per request, round-robin over
   the four validators' RPC, with ``bench_devnet.py``'s machinery: time to
   finality is the arrival of the ``newHeads`` notification of the ballot's
   block minus the moment it was sent. Finalized ballots/s = ballots /
   (last commit - first submission); steady state = ballots in the blocks
   after the first and before the last / time between those blocks' commits.
   The registry's ``ballotCount`` is checked against the finalized count.
3. **tally**, in this process (no devnet): a record of ``--verify-ballots``
   ballots (default 10,000) made offline with the same event shapes as
   ``clients.polls.verifier.collect_record`` returns. Its generation (a
   4-trustee dealing, ballots, credentials signed directly as RSASSA-PSS
   SHA-384 with a 48-byte salt on ``prefix || message``, which is exactly a
   finalized RFC 9474 signature; about 6 ms per ballot) is cached in
   ``--workdir/poll-record.pkl`` and extended when more ballots are asked
   for. Timed: (a) the trustees' tally: decode the ballots,
   ``compute_aggregate``, three ``compute_partial_decryption`` (trustee 4
   offline) and ``compute_tally``; (b) ``verify_record``, the universal
   verifier, end to end, with the time of each of its checks.

The machine is shared by everything on it: for each part the report gives the
CPU cores used by other processes (from /proc/stat), and the devnet part warns
when that was not close to 0.

    python scripts/bench_poll.py [--ballots 600] [--rate 0] [--issuance direct|service]
                                 [--verify-ballots 10000] [--micro-ballots 100]
                                 [--skip micro,devnet,tally] [--workdir DIR]
                                 [--json FILE] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import pathlib
import pickle
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any, cast

import aiohttp
from bench_chain import format_machine, get_machine, release_closed_databases
from bench_devnet import (
    CLIENT_CONNECTIONS,
    OTHER_LOAD_WARNING,
    CommitTracker,
    Result,
    format_details,
    on_sigterm,
    read_machine_busy,
    run_rate,
    running_devnet,
    stop_devnet,
    wait_until_ready,
)
from bench_devnet import (
    format_cores as cores,
)
from bench_devnet import (
    format_seconds as seconds,
)
from coincurve import PrivateKey as CurveKey
from Crypto.Hash import SHA384
from Crypto.PublicKey import RSA
from Crypto.Signature import pss
from eth.db.atomic import AtomicDB
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_abi.abi import decode, encode
from eth_account import Account
from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey
from eth_typing import Address
from eth_utils import to_checksum_address

import clients.polls.verifier as verifier
from clients.issuer.keys import generate_issuer_key, load_issuer_key, save_issuer_key
from clients.polls.demo import (
    OPTIONS,
    PATTERN,
    QUESTION,
    PollWalkthrough,
    Resident,
    load_members,
)
from clients.polls.shares import encrypt_share
from clients.polls.verifier import PollRecord, verify_record
from clients.web3tools import submit, wait
from consensus.genesis import decode_genesis
from contracts.ballot import (
    Ciphertext,
    Dealing,
    ElectionKey,
    EncryptedBallot,
    PartialDecryption,
    PollParameters,
    SecretShare,
    blind_message,
    compute_aggregate,
    compute_credential_message,
    compute_dealt_share,
    compute_election_key,
    compute_partial_decryption,
    compute_secret_share,
    compute_tally,
    compute_tracking_code,
    encode_public_key,
    encrypt_ballot,
    finalize_signature,
    generate_dealing,
    prepare_message,
    sign_blinded_message,
    validate_ballot,
    validate_credential,
)
from contracts.ballot.blind import PREFIX_SIZE, SALT_SIZE
from node.chain import Chain, apply_transaction
from node.config import load_genesis
from node.db import LevelDB
from node.governance import run_view
from node.precompiles import (
    FUNCTIONS,
    PRECOMPILE_ADDRESS,
    VERDICT_CACHE,
    VERIFY_BALLOT,
    compute_outcome,
    encode_call,
)

REPO = pathlib.Path(__file__).resolve().parents[1]
TEMPLATE = json.loads((REPO / "genesis.json").read_text())
CHAIN_ID = int(TEMPLATE["chainId"])
REGISTRY = TEMPLATE["contracts"]["PollRegistry"]

TARGET_BALLOTS_PER_SECOND = 100.0
"""Ballots the 4-validator devnet must finalize per second on a 2-core machine."""
TARGET_TALLY_SECONDS = 60.0
"""Tally plus universal verification of 10,000 ballots must take less than this."""
TARGET_TALLY_BALLOTS = 10_000

TRUSTEES, THRESHOLD = 4, 3
TALLY_TRUSTEES = (1, 2, 3)
"""Trustees that post partial decryptions (4 is offline, as in the demo)."""
ISSUERS, ISSUER_THRESHOLD = 3, 2
PAIRS = ((0, 1), (1, 2), (0, 2))
"""Resident i gets credentials from issuers PAIRS[i % 3] (as the demo)."""
MIN_SELECTIONS = MAX_SELECTIONS = 1
GAS_MARGIN = 1.2
"""Gas of each cast: ``eth_estimateGas`` of a cast made after the warm-up ballot, times this."""
BLIND_SAMPLES = 5
"""Credentials made by the real blind-signature round trip in the micro part, for scale."""
CAST_SAMPLES = 20
"""Casts executed in process on the stopped devnet's chain, to time py-evm alone."""
RECEIPT_SAMPLES = 5
"""Timed casts whose receipts give the gas per ballot."""
CACHE_NAME = "poll-record.pkl"
CACHE_FORMAT = 1
CHECKPOINT_BALLOTS = 1000
"""Generated ballots between two saves of the cache (an interrupted run keeps them)."""
RECORD_BALLOTS_PER_BLOCK = 100
"""How the offline record spreads BallotCast events over blocks (only the order matters)."""
RECORD_FIRST_BLOCK = 10
POLL_WINDOW_BASE = 600
"""Seconds the devnet poll stays open, plus POLL_WINDOW_PER_BALLOT per ballot: casting must end
before it closes (the benchmark never waits for the close)."""
POLL_WINDOW_PER_BALLOT = 0.5


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def selections_of(choice: int) -> list[int]:
    return [1 if option == choice else 0 for option in range(len(OPTIONS))]


def median_ms(seconds: Sequence[float]) -> float:
    return statistics.median(seconds) * 1000


class LoadMeter:
    """CPU cores used by other processes while a part ran (machine busy minus this process)."""

    def __init__(self) -> None:
        self.wall = time.monotonic()
        self.cpu = time.process_time()
        self.busy = read_machine_busy()

    def other_cores(self) -> float | None:
        busy = read_machine_busy()
        wall = time.monotonic() - self.wall
        if busy is None or self.busy is None or wall < 1.0:
            return None  # /proc/stat counts in clock ticks: too coarse for a shorter window
        return max(0.0, (busy - self.busy - (time.process_time() - self.cpu)) / wall)


# -- issuer keys and the offline poll ----------------------------------------------


def load_issuers(workdir: pathlib.Path) -> list[RSA.RsaKey]:
    """The three issuers' 3072-bit keys, generated once into ``workdir/issuers``."""
    keys = []
    for index in range(ISSUERS):
        path = workdir / "issuers" / f"issuer-{index}.pem"
        if not path.exists():
            log(f"generating issuer key {index} (3072 bits) into {path} ...")
            save_issuer_key(path, generate_issuer_key())
        keys.append(load_issuer_key(path))
    return keys


def sign_credential(issuer: RSA.RsaKey, index: int, poll_id: bytes, address: bytes) -> bytes:
    """A ``[POLL-CRED.1]`` credential signed directly (no blinding), about 10x faster.

    A finalized RFC 9474 RSABSSA-SHA384-PSS-Randomized signature is an ordinary
    RSASSA-PSS signature (SHA-384, MGF1-SHA-384, 48-byte salt) on ``prefix ||
    message``; the blind only changes what the issuer sees, not what it signs.
    """
    prepared = prepare_message(compute_credential_message(poll_id, address))
    signer = pss.new(
        issuer, mask_func=lambda seed, size: pss.MGF1(seed, size, SHA384), salt_bytes=SALT_SIZE
    )
    signature = signer.sign(SHA384.new(prepared))
    return bytes((index,)) + prepared[:PREFIX_SIZE] + signature


def sign_credential_blind(
    issuer: RSA.RsaKey, index: int, poll_id: bytes, address: bytes
) -> tuple[bytes, float, float]:
    """The real round trip; return the credential, client seconds and issuer seconds."""
    public_key = issuer.public_key()
    began = time.perf_counter()
    prepared = prepare_message(compute_credential_message(poll_id, address))
    blinded = blind_message(public_key, prepared)
    signing = time.perf_counter()
    blind_signature = sign_blinded_message(issuer, blinded.blinded_message)
    signed = time.perf_counter()
    signature = finalize_signature(public_key, prepared, blind_signature, blinded.inverse)
    client = (signing - began) + (time.perf_counter() - signed)
    return bytes((index,)) + prepared[:PREFIX_SIZE] + signature, client, signed - signing


@dataclass(frozen=True)
class PollSetup:
    """An offline poll after its key ceremony: everything but the ballots."""

    poll_id: bytes
    trustees: tuple[bytes, ...]
    trustee_keys: tuple[bytes, ...]
    """Each trustee's share-encryption private key (32 bytes)."""
    dealer_secrets: tuple[tuple[int, ...], ...]
    dealings: tuple[bytes, ...]
    encrypted_shares: tuple[bytes, ...]
    """Per dealer, ``[POLL-SHARES.1]`` for trustees 1..n."""
    election_key: bytes
    secret_shares: tuple[int, ...]
    """``s_j`` of trustees 1..n."""
    issuers: tuple[bytes, ...]
    issuer_keys: tuple[bytes, ...]
    """DER SubjectPublicKeyInfo of the issuers' keys."""

    @property
    def key(self) -> ElectionKey:
        return ElectionKey.decode(self.election_key)

    def params(self) -> PollParameters:
        return PollParameters(
            self.poll_id, self.key.public_key, len(OPTIONS), MIN_SELECTIONS, MAX_SELECTIONS
        )


def make_setup(issuers: Sequence[RSA.RsaKey]) -> PollSetup:
    """A poll numbered 1 in the template's registry, with a fresh 3-of-4 key ceremony."""
    poll_id = keccak(
        encode(["uint256", "address", "uint256"], [CHAIN_ID, to_checksum_address(REGISTRY), 1])
    )
    trustee_keys = tuple(os.urandom(32) for _ in range(TRUSTEES))
    public_keys = [CurveKey(k).public_key.format(compressed=True) for k in trustee_keys]
    drawn = [generate_dealing(poll_id, i, TRUSTEES, THRESHOLD) for i in range(1, TRUSTEES + 1)]
    dealings = [dealing for _, dealing in drawn]
    key = compute_election_key(poll_id, TRUSTEES, THRESHOLD, dealings)
    shares = tuple(
        compute_secret_share(key, dealings, [compute_dealt_share(s, j) for s, _ in drawn], j).value
        for j in range(1, TRUSTEES + 1)
    )
    encrypted = tuple(
        b"".join(
            encrypt_share(public_keys[j - 1], compute_dealt_share(secret, j).value, poll_id, i, j)
            for j in range(1, TRUSTEES + 1)
        )
        for i, (secret, _) in enumerate(drawn, start=1)
    )
    return PollSetup(
        poll_id=poll_id,
        trustees=tuple(os.urandom(20) for _ in range(TRUSTEES)),
        trustee_keys=trustee_keys,
        dealer_secrets=tuple(secret.coefficients for secret, _ in drawn),
        dealings=tuple(d.encode() for d in dealings),
        encrypted_shares=encrypted,
        election_key=key.encode(),
        secret_shares=shares,
        issuers=tuple(os.urandom(20) for _ in range(ISSUERS)),
        issuer_keys=tuple(encode_public_key(k) for k in issuers),
    )


# -- 1. micro ----------------------------------------------------------------------


@dataclass(frozen=True)
class MicroFigures:
    ballots: int
    encrypt_ms: float
    """Median client time to encrypt and prove one ballot."""
    encrypt_ms_mean: float
    ballot_bytes: int
    verify_uncached_ms: float
    """Median ``verifyBallot`` through the precompile in a py-evm state call, uncached."""
    verify_uncached_ms_mean: float
    verify_cached_ms: float
    """The same calls again: the verdict comes from the cache."""
    outcome_ms: float
    """Median ``compute_outcome``: ABI decoding and every check, no EVM."""
    ballot_proofs_ms: float
    """Median ``validate_ballot`` alone."""
    credentials_ms: float
    """Median of two ``validate_credential`` (3072-bit RSA-PSS)."""
    gas: int
    """What the precompile charges for one ballot."""
    blind_client_ms: float
    """Client side of one credential: prepare, blind, finalize (with its verification)."""
    blind_issuer_ms: float
    """Issuer side of one credential: ``sign_blinded_message`` (3072 bits)."""
    direct_sign_ms: float
    """One credential signed directly (what the tally part's generator uses)."""
    other_cpu: float | None


def make_micro_genesis() -> Any:
    validator = PrivateKey(keccak(b"bench_poll validator")).public_key.to_checksum_address()
    return decode_genesis(
        {
            "chainId": CHAIN_ID,
            "timestamp": TEMPLATE["timestamp"],
            "gasLimit": TEMPLATE["gasLimit"],
            "validators": [
                {
                    "name": "municipality-0",
                    "address": validator,
                    "p2p": "ws://127.0.0.1:9000",
                    "rpc": "http://127.0.0.1:8545",
                }
            ],
            "admins": [],
            "alloc": {},
        }
    )


def measure_micro(setup: PollSetup, issuers: Sequence[RSA.RsaKey], count: int) -> MicroFigures:
    meter = LoadMeter()
    params = setup.params()
    addresses = [os.urandom(20) for _ in range(count + 1)]
    log(f"micro: encrypting {count + 1} ballots ...")
    ballots: list[EncryptedBallot] = []
    encrypt_s = []
    for i, address in enumerate(addresses):
        began = time.perf_counter()
        ballot, _ = encrypt_ballot(params, address, selections_of(PATTERN[i % len(PATTERN)]))
        encrypt_s.append(time.perf_counter() - began)
        ballots.append(ballot)
    encrypt_s = encrypt_s[1:]  # the first pays for lazy imports and tables

    log(f"micro: credentials ({BLIND_SAMPLES} by the blind round trip, the rest directly) ...")
    credentials: list[list[bytes]] = []
    client_s, issuer_s, direct_s = [], [], []
    for i, address in enumerate(addresses):
        made = []
        for j in PAIRS[i % len(PAIRS)]:
            if len(client_s) < BLIND_SAMPLES:
                credential, client, issuer = sign_credential_blind(
                    issuers[j], j, setup.poll_id, address
                )
                client_s.append(client)
                issuer_s.append(issuer)
            else:
                began = time.perf_counter()
                credential = sign_credential(issuers[j], j, setup.poll_id, address)
                direct_s.append(time.perf_counter() - began)
            made.append(credential)
        credentials.append(made)

    calls = [
        encode_call(
            VERIFY_BALLOT,
            setup.poll_id,
            setup.election_key,
            len(OPTIONS),
            MIN_SELECTIONS,
            MAX_SELECTIONS,
            to_checksum_address(address),
            ISSUER_THRESHOLD,
            list(setup.issuer_keys),
            made,
            ballot.encode(),
        )
        for address, made, ballot in zip(addresses, credentials, ballots, strict=True)
    ]
    chain = Chain(AtomicDB(), make_micro_genesis())
    state = chain.get_state(chain.head)
    output_types = list(FUNCTIONS[VERIFY_BALLOT].output_types)
    VERDICT_CACHE.clear()
    log(f"micro: verifyBallot through the precompile, {count} ballots uncached then cached ...")
    # the first call decodes the issuer keys (a node keeps them) and warms py-evm: not counted
    uncached: list[float] = []
    cached: list[float] = []
    for samples in (uncached, cached):
        for i, calldata in enumerate(calls):
            began = time.perf_counter()
            output = run_view(state, PRECOMPILE_ADDRESS, calldata)
            elapsed = time.perf_counter() - began
            tracking, _ = decode(output_types, output)
            if bytes(tracking) != compute_tracking_code(ballots[i]):
                raise SystemExit(
                    f"micro: verifyBallot of ballot {i} returned a wrong tracking code"
                )
            if i:
                samples.append(elapsed)

    log("micro: the same checks without the EVM ...")
    VERDICT_CACHE.clear()
    outcome_s, proofs_s, credentials_s = [], [], []
    public_keys = [issuer.public_key() for issuer in issuers]
    gas = 0
    for i, calldata in enumerate(calls):
        charged: list[int] = []
        began = time.perf_counter()
        outcome = compute_outcome(calldata, charged.append)
        outcome_s.append(time.perf_counter() - began)
        if outcome.reverted:
            raise SystemExit(f"micro: ballot {i} does not verify")
        gas = sum(charged)
        began = time.perf_counter()
        validate_ballot(params, addresses[i], ballots[i])
        proofs_s.append(time.perf_counter() - began)
        began = time.perf_counter()
        for credential in credentials[i]:
            prefix, signature = credential[1 : 1 + PREFIX_SIZE], credential[1 + PREFIX_SIZE :]
            validate_credential(
                public_keys[credential[0]], setup.poll_id, addresses[i], prefix, signature
            )
        credentials_s.append(time.perf_counter() - began)
    VERDICT_CACHE.clear()
    return MicroFigures(
        ballots=count,
        encrypt_ms=median_ms(encrypt_s),
        encrypt_ms_mean=statistics.fmean(encrypt_s) * 1000,
        ballot_bytes=len(ballots[0].encode()),
        verify_uncached_ms=median_ms(uncached),
        verify_uncached_ms_mean=statistics.fmean(uncached) * 1000,
        verify_cached_ms=median_ms(cached),
        outcome_ms=median_ms(outcome_s[1:]),
        ballot_proofs_ms=median_ms(proofs_s[1:]),
        credentials_ms=median_ms(credentials_s[1:]),
        gas=gas,
        blind_client_ms=median_ms(client_s),
        blind_issuer_ms=median_ms(issuer_s),
        direct_sign_ms=median_ms(direct_s) if direct_s else math.nan,
        other_cpu=meter.other_cores(),
    )


# -- 2. devnet ---------------------------------------------------------------------


@dataclass(frozen=True)
class DevnetFigures:
    ballots: int
    issuance: str
    offered_rate: float | None
    """Ballots/s offered; None: all at once."""
    finalized_per_second: float
    """Finalized ballots / (last commit - first submission)."""
    steady_per_second: float | None
    """Ballots in the blocks after the first and before the last / time between their commits."""
    ttf_p50: float | None
    ttf_p95: float | None
    ttf_p99: float | None
    ttf_max: float | None
    blocks: int
    ballots_per_block_mean: float
    ballots_per_block_max: int
    finalized: int
    counted: int
    """The registry's ballotCount after the run, minus the warm-up ballot."""
    refused: int
    not_finalized: int
    gas_per_ballot: int
    """Median gasUsed of the last few timed casts (the warm-up, which creates the aggregate,
    costs more)."""
    gas_declared: int
    """Gas limit of every timed cast transaction."""
    gas_limit: int
    """The devnet's block gas limit: a block takes a cast while this minus its gas used so far
    is at least the cast's declared gas."""
    devnet_cpu_ms_per_ballot: float | None
    """CPU of all node processes per finalized ballot."""
    other_cpu: float | None
    """Cores used by processes outside the devnet and this client during the timed part."""
    machine_cpu: float | None
    setup_seconds: dict[str, float]
    """Untimed preparation: devnet start, poll and ceremony, issuance, encryption, signing."""
    cast_ms_uncached: float | None = None
    """Median time to execute one cast in py-evm in this process, on the observer's chain after
    the devnet stopped (no contention), the verdict not cached; None with ``--keep``."""
    cast_ms_cached: float | None = None
    """The same casts again on a fresh state: the verdict comes from the cache."""
    details: dict[str, Any] = field(default_factory=dict)
    """bench_devnet's full Result of the timed part."""

    @property
    def ballots_per_block_cap(self) -> int:
        return (self.gas_limit - self.gas_declared) // self.gas_per_ballot + 1


def install_issuer_keys(directory: pathlib.Path, issuers: Sequence[RSA.RsaKey]) -> None:
    """Put the cached issuer keys where the walkthrough looks before making new ones."""
    names = [name for name, _ in load_members(directory)][:ISSUERS]
    for name, key in zip(names, issuers, strict=True):
        save_issuer_key(directory / "polls" / "issuers" / f"{name.lower()}.pem", key)


def issue_directly(walk: PollWalkthrough, count: int, *, report: bool = True) -> list[Resident]:
    """Residents with credentials signed in process; each issuer then reports its count."""
    keys = [key for key, _, _ in walk.issuers]
    residents, issued = [], Counter[int]()
    for i in range(count):
        account = Account.create()
        address = bytes.fromhex(account.address[2:])
        pair = PAIRS[i % len(PAIRS)]
        credentials = [sign_credential(keys[j], j, walk.poll_id, address) for j in pair]
        issued.update(pair)
        selections = selections_of(PATTERN[i % len(PATTERN)])
        residents.append(Resident(f"resident-{i + 1:03d}", account, selections, credentials))
    for index, account in enumerate(walk.accounts[:ISSUERS] if report else ()):
        walk.chain.send(account, walk.chain.functions.reportIssued(walk.poll_id, issued[index]))
    return residents


def sign_cast_call(
    walk: PollWalkthrough, resident: Resident, ballot: EncryptedBallot, gas: int
) -> Any:
    """The resident's ``cast`` as a signed zero-fee transaction (nonce 0: a fresh key)."""
    data = walk.chain.contract.encode_abi(
        "cast", args=[walk.poll_id, ballot.encode(), list(resident.credentials)]
    )
    unsigned = PragueTransactionBuilder.new_unsigned_dynamic_fee_transaction(
        CHAIN_ID,
        0,
        0,
        0,
        gas,
        Address(bytes.fromhex(walk.chain.contract.address[2:])),
        0,
        bytes.fromhex(data[2:]),
        (),
    )
    return unsigned.as_signed_transaction(PrivateKey(bytes(resident.account.key)))


def sign_cast(
    walk: PollWalkthrough, params: PollParameters, resident: Resident, gas: int
) -> tuple[str, str, float, float]:
    """Encrypt the resident's ballot and sign its cast; (raw hex, hash hex, encrypt s, sign s)."""
    address = bytes.fromhex(resident.account.address[2:])
    began = time.perf_counter()
    ballot, _ = encrypt_ballot(params, address, resident.selections)
    encrypted = time.perf_counter()
    transaction = sign_cast_call(walk, resident, ballot, gas)
    raw, tx_hash = "0x" + transaction.encode().hex(), "0x" + transaction.hash.hex()
    return raw, tx_hash, encrypted - began, time.perf_counter() - encrypted


def estimate_cast_gas(walk: PollWalkthrough, params: PollParameters, resident: Resident) -> int:
    """``eth_estimateGas`` of a cast by ``resident`` (of a ballot made for it and not cast)."""
    address = bytes.fromhex(resident.account.address[2:])
    ballot, _ = encrypt_ballot(params, address, resident.selections)
    call = walk.chain.functions.cast(walk.poll_id, ballot.encode(), list(resident.credentials))
    return int(call.estimate_gas({"from": resident.account.address}))


def warm_up(walk: PollWalkthrough, params: PollParameters, residents: Sequence[Resident]) -> int:
    """Cast the first resident's ballot untimed (it creates the aggregate, the dearest cast);
    return the gas for every other cast: the second resident's estimate plus the margin."""
    first = residents[0]
    ballot, _ = encrypt_ballot(params, bytes.fromhex(first.account.address[2:]), first.selections)
    gas = math.ceil(estimate_cast_gas(walk, params, first) * GAS_MARGIN)
    receipt = wait(walk.w3, submit(walk.w3, sign_cast_call(walk, first, ballot, gas).encode()))
    if receipt["status"] != 1:
        raise SystemExit("the warm-up ballot's cast failed on the devnet")
    return math.ceil(estimate_cast_gas(walk, params, residents[1]) * GAS_MARGIN)


def read_gas_used(walk: PollWalkthrough, tx_hashes: Sequence[str]) -> int:
    """Median gasUsed of these casts; raise if one of them reverted."""
    used = []
    for tx_hash in tx_hashes:
        receipt = walk.w3.eth.get_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise SystemExit(f"cast {tx_hash} reverted on the devnet")
        used.append(int(receipt["gasUsed"]))
    return int(statistics.median(used))


def measure_cast_execution(
    directory: pathlib.Path, manifest: dict[str, Any], walk: PollWalkthrough, gas: int
) -> tuple[float, float]:
    """Stop the devnet and execute fresh casts on the observer's chain, in this process.

    Return the median milliseconds per cast with the verdict uncached, then cached.
    """
    params = walk.poll.params()
    residents = issue_directly(walk, CAST_SAMPLES, report=False)
    stop_devnet(directory)
    observer = next(n for n in manifest["nodes"] if n["role"] == "observer")
    config = json.loads(pathlib.Path(observer["config"]).read_text())
    genesis = load_genesis(pathlib.Path(config["genesis"]))
    db = LevelDB(pathlib.Path(config["data_dir"]) / "chain")
    try:
        chain = Chain(db, genesis)
        transactions = [
            chain.decode_transaction(bytes.fromhex(sign_cast(walk, params, r, gas)[0][2:]))
            for r in residents
        ]
        head = chain.head
        samples: list[list[float]] = [[], []]
        VERDICT_CACHE.clear()
        for timed in samples:  # uncached, then cached: each on a fresh state on the head
            header = chain.get_next_header(
                head, timestamp=head.timestamp + 1, gas_limit=head.gas_limit
            )
            vm = chain.get_vm(header)
            for transaction in transactions:
                began = time.perf_counter()
                header, _ = apply_transaction(vm, header, transaction, genesis.admins)
                timed.append(time.perf_counter() - began)
    finally:
        db.close()
        release_closed_databases()
    return median_ms(samples[0][1:]), median_ms(samples[1][1:])


def compute_steady_rate(tracker: CommitTracker, hashes: set[str]) -> float | None:
    """Ballots in the blocks after the first and before the last / time between their commits."""
    ours = [
        (block.arrival, sum(h in hashes for h in block.tx_hashes))
        for block in tracker.blocks
        if hashes.intersection(block.tx_hashes)
    ]
    if len(ours) < 3:
        return None
    first, middle = ours[0][0], ours[1:-1]
    span = middle[-1][0] - first
    return sum(n for _, n in middle) / span if span > 0 else None


async def offer_casts(
    manifest: dict[str, Any], signed: Sequence[tuple[str, str]], rate: float
) -> tuple[Result, float | None]:
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=CLIENT_CONNECTIONS)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await wait_until_ready(session, manifest)
        tracker = CommitTracker(session, manifest)
        await tracker.start()
        try:
            result, _ = await run_rate(session, manifest, tracker, signed, rate)
        finally:
            await tracker.stop()
    return result, compute_steady_rate(tracker, {tx_hash for _, tx_hash in signed})


def measure_devnet(
    count: int, rate: float, issuance: str, issuers: Sequence[RSA.RsaKey], keep: bool
) -> DevnetFigures:
    setup: dict[str, float] = {}
    began = time.monotonic()
    with running_devnet(keep) as (directory, manifest):
        setup["devnet start"] = time.monotonic() - began
        if int(manifest["chainId"]) != CHAIN_ID:
            raise SystemExit(f"the devnet's chain id is {manifest['chainId']}, not {CHAIN_ID}")
        install_issuer_keys(directory, issuers)
        began = time.monotonic()
        voters = count + 1 if issuance == "service" else 0  # the rolls are for the services
        walk = PollWalkthrough(directory, voters, say=lambda text: log(f"  {text}"))
        walk.create(window=int(POLL_WINDOW_BASE + POLL_WINDOW_PER_BALLOT * count))
        walk.key_ceremony()
        setup["poll and key ceremony"] = time.monotonic() - began
        began = time.monotonic()
        log(f"issuing credentials to {count + 1} residents ({issuance}) ...")
        if issuance == "service":
            with walk.issuer_services() as services:
                residents = walk.residents(services, count + 1)
        else:
            residents = issue_directly(walk, count + 1)
        setup["credentials"] = time.monotonic() - began
        params = walk.poll.params()
        log("casting the warm-up ballot (untimed) ...")
        gas = warm_up(walk, params, residents)
        log(f"encrypting {count} ballots and signing their casts (gas {gas:,} each) ...")
        prepared = [sign_cast(walk, params, resident, gas) for resident in residents[1:]]
        setup["encrypt ballots"] = sum(p[2] for p in prepared)
        setup["sign casts"] = sum(p[3] for p in prepared)
        signed = [(raw, tx_hash) for raw, tx_hash, _, _ in prepared]
        offered = math.inf if rate == 0 else rate
        log(f"offering {count} casts {'at once' if rate == 0 else f'at {rate:g}/s'} ...")
        result, steady = asyncio.run(offer_casts(manifest, signed, offered))
        print(format_details(result), flush=True)
        counted = walk.poll.ballot_count - 1
        gas_used = read_gas_used(walk, [tx_hash for _, tx_hash in signed[-RECEIPT_SAMPLES:]])
        gas_limit = int(walk.w3.eth.get_block("latest")["gasLimit"])
        cast_ms: tuple[float | None, float | None] = (None, None)
        if not keep:
            log(f"executing {CAST_SAMPLES} more casts in process on the stopped devnet's chain ...")
            cast_ms = measure_cast_execution(directory, manifest, walk, gas)
    details = asdict(result)
    details["offered_rate"] = None if rate == 0 else rate
    return DevnetFigures(
        ballots=count,
        issuance=issuance,
        offered_rate=None if rate == 0 else rate,
        finalized_per_second=result.finalized_tps,
        steady_per_second=steady,
        ttf_p50=result.ttf_p50,
        ttf_p95=result.ttf_p95,
        ttf_p99=result.ttf_p99,
        ttf_max=result.ttf_max,
        blocks=result.blocks,
        ballots_per_block_mean=result.txs_per_block_mean,
        ballots_per_block_max=result.txs_per_block_max,
        finalized=result.finalized,
        counted=counted,
        refused=result.refused,
        not_finalized=result.not_finalized,
        gas_per_ballot=gas_used,
        gas_declared=gas,
        gas_limit=gas_limit,
        devnet_cpu_ms_per_ballot=result.devnet_cpu_ms_per_tx,
        other_cpu=result.other_cpu,
        machine_cpu=result.machine_cpu,
        setup_seconds=setup,
        cast_ms_uncached=cast_ms[0],
        cast_ms_cached=cast_ms[1],
        details=details,
    )


# -- 3. tally and universal verification ------------------------------------------


Entry = tuple[bytes, int, bytes, bytes, tuple[bytes, ...]]
"""(voting address, chosen option, encoded ballot, tracking code, credentials)."""


def save_cache(path: pathlib.Path, cache: dict[str, Any]) -> None:
    scratch = path.with_name(path.name + ".tmp")
    with scratch.open("wb") as handle:
        pickle.dump(cache, handle, protocol=pickle.HIGHEST_PROTOCOL)
    scratch.replace(path)


def load_cache(workdir: pathlib.Path, issuers: Sequence[RSA.RsaKey]) -> dict[str, Any]:
    """The cached offline poll and its ballots; a fresh one if missing or for other keys."""
    path = workdir / CACHE_NAME
    keys = tuple(encode_public_key(k) for k in issuers)
    if path.exists():
        try:
            with path.open("rb") as handle:
                cache: dict[str, Any] = pickle.load(handle)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
            log(f"cache {path} is unreadable ({exc}); making a new one")
        else:
            if cache.get("format") == CACHE_FORMAT and cache["setup"]["issuer_keys"] == keys:
                return cache
            log(f"cache {path} is for another format or other issuer keys; making a new one")
    setup = make_setup(issuers)
    cache = {"format": CACHE_FORMAT, "setup": asdict(setup), "ballots": []}
    save_cache(path, cache)
    return cache


def extend_ballots(
    workdir: pathlib.Path,
    cache: dict[str, Any],
    setup: PollSetup,
    issuers: Sequence[RSA.RsaKey],
    count: int,
) -> float:
    """Generate ballots until the cache holds ``count``; return the seconds it took."""
    ballots: list[Entry] = cache["ballots"]
    if len(ballots) >= count:
        return 0.0
    params = setup.params()
    began = time.monotonic()
    start = len(ballots)
    log(f"tally: generating ballots {start + 1:,}..{count:,} (cached in {workdir / CACHE_NAME})")
    while len(ballots) < count:
        i = len(ballots)
        address = os.urandom(20)
        choice = PATTERN[i % len(PATTERN)]
        ballot, _ = encrypt_ballot(params, address, selections_of(choice))
        credentials = tuple(
            sign_credential(issuers[j], j, setup.poll_id, address) for j in PAIRS[i % len(PAIRS)]
        )
        ballots.append(
            (address, choice, ballot.encode(), compute_tracking_code(ballot), credentials)
        )
        if len(ballots) % CHECKPOINT_BALLOTS == 0 or len(ballots) == count:
            save_cache(workdir / CACHE_NAME, cache)
            elapsed = time.monotonic() - began
            pace = elapsed / (len(ballots) - start)
            log(
                f"  {len(ballots):,} ballots, {pace * 1000:.1f} ms each,"
                f" about {pace * (count - len(ballots)):.0f} s to go"
            )
    return time.monotonic() - began


@dataclass(frozen=True)
class TallyFigures:
    ballots: int
    generated_seconds: float
    """Spent generating ballots this run (0 when the cache had enough)."""
    decode_seconds: float
    aggregate_seconds: float
    partials_seconds: float
    """Three ``compute_partial_decryption``."""
    combine_seconds: float
    """``compute_tally``: checks the three partials, combines, discrete logs."""
    verify_seconds: float
    """``verify_record`` end to end."""
    verify_checks: dict[str, float]
    """Seconds of each of the verifier's checks."""
    counts: tuple[int, ...]
    other_cpu: float | None
    """Cores used by other processes from the start of the tally to the end of verification."""

    @property
    def tally_seconds(self) -> float:
        return (
            self.decode_seconds
            + self.aggregate_seconds
            + self.partials_seconds
            + self.combine_seconds
        )

    @property
    def total_seconds(self) -> float:
        return self.tally_seconds + self.verify_seconds

    @property
    def total_for_target(self) -> float:
        """The total scaled linearly to 10,000 ballots (per-ballot work dominates)."""
        return self.total_seconds * TARGET_TALLY_BALLOTS / self.ballots


def run_trustee_tally(
    setup: PollSetup, entries: Sequence[Entry]
) -> tuple[dict[str, float], tuple[Ciphertext, ...], list[PartialDecryption], tuple[int, ...]]:
    """What the trustees do after the close, timed step by step."""
    key, params = setup.key, setup.params()
    times: dict[str, float] = {}
    began = time.perf_counter()
    ballots = [EncryptedBallot.decode(ballot) for _, _, ballot, _, _ in entries]
    times["decode"] = time.perf_counter() - began
    began = time.perf_counter()
    aggregate = compute_aggregate(params, ballots)
    times["aggregate"] = time.perf_counter() - began
    began = time.perf_counter()
    partials = [
        compute_partial_decryption(
            setup.poll_id, key, SecretShare(j, setup.secret_shares[j - 1]), aggregate
        )
        for j in TALLY_TRUSTEES
    ]
    times["partials"] = time.perf_counter() - began
    began = time.perf_counter()
    counts = compute_tally(setup.poll_id, key, aggregate, partials, len(entries))
    times["combine"] = time.perf_counter() - began
    return times, aggregate, partials, counts


def build_record(
    setup: PollSetup,
    entries: Sequence[Entry],
    aggregate: Sequence[Ciphertext],
    partials: Sequence[PartialDecryption],
    counts: Sequence[int],
) -> PollRecord:
    """The poll's events as ``collect_record`` returns them (web3-decoded args + location)."""
    trustees = [to_checksum_address(a) for a in setup.trustees]
    issuers = [to_checksum_address(a) for a in setup.issuers]
    position = {"block": 0, "index": 0}

    def located(block: int, args: dict[str, Any]) -> dict[str, Any]:
        if block != position["block"]:
            position.update(block=block, index=0)
        index = position["index"]
        position["index"] += 1
        tx = keccak(b"bench_poll tx %d %d" % (block, index))
        return {"pollId": setup.poll_id, **args, "_block": block, "_tx": tx, "_index": index}

    issued = Counter[int]()
    for i in range(len(entries)):
        issued.update(PAIRS[i % len(PAIRS)])
    last_block = RECORD_FIRST_BLOCK + (len(entries) - 1) // RECORD_BALLOTS_PER_BLOCK
    dealings = [Dealing.decode(d) for d in setup.dealings]
    events: dict[str, list[dict[str, Any]]] = {
        "PollCreated": [
            located(
                1,
                {
                    "number": 1,
                    "creator": trustees[0],
                    "question": QUESTION,
                    "options": list(OPTIONS),
                    "minSelections": MIN_SELECTIONS,
                    "maxSelections": MAX_SELECTIONS,
                    "opens": TEMPLATE["timestamp"] + 10,
                    "closes": TEMPLATE["timestamp"] + 10 + 3600,
                    "trustees": trustees,
                    "threshold": THRESHOLD,
                    "issuers": issuers,
                    "issuerKeys": list(setup.issuer_keys),
                    "issuerThreshold": ISSUER_THRESHOLD,
                },
            )
        ],
        "TrusteeKeyRegistered": [
            located(
                2,
                {
                    "trustee": trustees[j],
                    "index": j + 1,
                    "key": CurveKey(setup.trustee_keys[j]).public_key.format(compressed=True),
                },
            )
            for j in range(TRUSTEES)
        ],
        "DealingPosted": [
            located(
                3,
                {
                    "trustee": trustees[d.dealer_index - 1],
                    "index": d.dealer_index,
                    "dealing": raw,
                    "encryptedShares": setup.encrypted_shares[d.dealer_index - 1],
                },
            )
            for d, raw in zip(dealings, setup.dealings, strict=True)
        ],
        "KeyFinalized": [located(4, {"electionKey": setup.election_key, "dealers": TRUSTEES})],
        "IssuedReported": [
            located(5, {"issuer": issuers[j], "index": j, "count": issued[j]})
            for j in range(ISSUERS)
        ],
        "BallotCast": [
            located(
                RECORD_FIRST_BLOCK + i // RECORD_BALLOTS_PER_BLOCK,
                {
                    "voter": to_checksum_address(address),
                    "trackingCode": tracking,
                    "ballot": ballot,
                    "credentials": list(credentials),
                    "replaced": False,
                },
            )
            for i, (address, _, ballot, tracking, credentials) in enumerate(entries)
        ],
        "PollClosed": [
            located(
                last_block + 1,
                {
                    "ballots": len(entries),
                    "aggregate": b"".join(c.encode() for c in aggregate),
                },
            )
        ],
        "PartialPosted": [
            located(
                last_block + 2,
                {
                    "trustee": trustees[p.trustee_index - 1],
                    "index": p.trustee_index,
                    "partial": p.encode(),
                },
            )
            for p in partials
        ],
        "ResultPublished": [
            located(last_block + 3, {"counts": list(counts), "ballots": len(entries)})
        ],
    }
    return PollRecord(setup.poll_id, events, ("bench_poll (offline record)",))


VERIFIER_CHECKS = (
    "check_key_ceremony",
    "check_ballots",
    "check_issued",
    "check_aggregate",
    "check_partials",
    "check_totals",
)


@contextmanager
def timing_checks(seconds: dict[str, float]) -> Iterator[None]:
    """Time each of the verifier's checks (its ``verify_record`` looks them up at call time)."""
    originals = {name: getattr(verifier, name) for name in VERIFIER_CHECKS}

    def timed(name: str, check: Callable[..., str]) -> Callable[..., str]:
        def run(*args: Any) -> str:
            began = time.perf_counter()
            try:
                return check(*args)
            finally:
                seconds[name.removeprefix("check_")] = time.perf_counter() - began

        return run

    for name, check in originals.items():
        setattr(verifier, name, timed(name, check))
    try:
        yield
    finally:
        for name, check in originals.items():
            setattr(verifier, name, check)


def measure_tally(
    workdir: pathlib.Path, issuers: Sequence[RSA.RsaKey], count: int
) -> tuple[TallyFigures, PollSetup]:
    cache = load_cache(workdir, issuers)
    setup = PollSetup(**cache["setup"])
    generated = extend_ballots(workdir, cache, setup, issuers, count)
    entries: list[Entry] = cache["ballots"][:count]
    expected = tuple(sum(e[1] == o for e in entries) for o in range(len(OPTIONS)))

    log(f"tally: the trustees' tally of {count:,} ballots ...")
    meter = LoadMeter()
    times, aggregate, partials, counts = run_trustee_tally(setup, entries)
    if counts != expected:
        raise SystemExit(f"tally: decrypted counts {counts} are not the cast {expected}")
    record = build_record(setup, entries, aggregate, partials, counts)

    log(f"tally: universal verification of {count:,} ballots ...")
    checks: dict[str, float] = {}
    began = time.perf_counter()
    with timing_checks(checks):
        report = verify_record(record)
    verify_seconds = time.perf_counter() - began
    other_cpu = meter.other_cores()
    if not report.passed or report.counts != expected:
        failed = "; ".join(f"{name}: {detail}" for name, ok, detail in report.checks if not ok)
        raise SystemExit(f"tally: the universal verifier refused the record: {failed}")
    figures = TallyFigures(
        ballots=count,
        generated_seconds=generated,
        decode_seconds=times["decode"],
        aggregate_seconds=times["aggregate"],
        partials_seconds=times["partials"],
        combine_seconds=times["combine"],
        verify_seconds=verify_seconds,
        verify_checks=checks,
        counts=counts,
        other_cpu=other_cpu,
    )
    return figures, setup


# -- the report --------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def format_report(
    machine: dict[str, Any],
    micro: MicroFigures | None,
    devnet: DevnetFigures | None,
    tally: TallyFigures | None,
) -> str:
    lines = [
        format_machine(machine),
        f"software: py-evm {machine['py-evm']}, coincurve {machine['coincurve']},"
        f" pycryptodome {machine['pycryptodome']}, plyvel {machine['plyvel']}",
        f"poll: {len(OPTIONS)} options, choose {MIN_SELECTIONS}; {THRESHOLD} of {TRUSTEES}"
        f" trustees decrypt; {ISSUER_THRESHOLD} of {ISSUERS} issuers (3072-bit RSA) vouch,"
        " so every ballot carries 2 credentials",
        "",
        f"{'figure':<62} {'value':>14} {'target':>8} {'verdict':>7}",
    ]

    def row(name: str, value: str, target: str = "", outcome: str = "") -> None:
        lines.append(f"{name:<62} {value:>14} {target:>8} {outcome:>7}".rstrip())

    if micro is not None:
        row("client: encrypt + prove one ballot (median)", f"{micro.encrypt_ms:.2f} ms")
        row(
            "node: verifyBallot via the precompile, uncached (median)",
            f"{micro.verify_uncached_ms:.2f} ms",
        )
        row("  PollCrypto alone, no EVM (compute_outcome)", f"{micro.outcome_ms:.2f} ms")
        row(
            "    checks: ballot proofs + 2 RSA-PSS credentials",
            f"{micro.ballot_proofs_ms:.2f}+{micro.credentials_ms:.2f} ms",
        )
        row("node: verifyBallot, cached verdict (median)", f"{micro.verify_cached_ms:.2f} ms")
        row(
            "(credential round trip: client blind+finalize / issuer sign)",
            f"{micro.blind_client_ms:.1f}/{micro.blind_issuer_ms:.1f} ms",
        )
    if devnet is not None:
        how = "all at once" if devnet.offered_rate is None else f"at {devnet.offered_rate:g}/s"
        row(
            f"devnet: finalized ballots/s ({devnet.ballots} offered {how})",
            f"{devnet.finalized_per_second:.1f}/s",
            f">= {TARGET_BALLOTS_PER_SECOND:.0f}",
            verdict(devnet.finalized_per_second >= TARGET_BALLOTS_PER_SECOND),
        )
        steady = devnet.steady_per_second
        row(
            "devnet: steady state (blocks after the first, before the last)",
            "-" if steady is None else f"{steady:.1f}/s",
        )
        row(
            "devnet: time to finality p50 / p95 / max",
            f"{seconds(devnet.ttf_p50)}/{seconds(devnet.ttf_p95)}/{seconds(devnet.ttf_max)} s",
        )
        row(
            "devnet: blocks; ballots per block mean (max)",
            f"{devnet.blocks}; {devnet.ballots_per_block_mean:.0f}"
            f" ({devnet.ballots_per_block_max})",
        )
        row(
            "devnet: finalized / counted by the registry / refused / lost",
            f"{devnet.finalized}/{devnet.counted}/{devnet.refused}/{devnet.not_finalized}",
        )
        if devnet.cast_ms_uncached is not None and devnet.cast_ms_cached is not None:
            row(
                "node: execute one cast in py-evm, verdict uncached/cached",
                f"{devnet.cast_ms_uncached:.1f}/{devnet.cast_ms_cached:.1f} ms",
            )
        per_ballot = devnet.devnet_cpu_ms_per_ballot
        row(
            "devnet: CPU of all 5 node processes per ballot",
            "-" if per_ballot is None else f"{per_ballot:.1f} ms",
        )
        tasks = devnet.details.get("task_ms_per_tx", {})
        row(
            "  ms/ballot, all nodes: admit/build/check/import/refresh",
            "/".join(
                f"{tasks.get(t, 0.0):.0f}"
                for t in ("add", "build", "check", "do_import", "on_new_head")
            ),
        )
        row(
            "devnet: gas per ballot (used, median of the last casts) / declared",
            f"{devnet.gas_per_ballot:,}/{devnet.gas_declared:,}",
        )
        row(
            f"  most ballots one block holds (gas limit {devnet.gas_limit:,})",
            f"{devnet.ballots_per_block_cap}",
        )
    if tally is not None:
        n = f"{tally.ballots:,}"
        row(f"tally by 3 trustees, {n} ballots", f"{tally.tally_seconds:.2f} s")
        row(
            "  decode / aggregate / 3 partials / combine",
            f"{tally.decode_seconds:.2f}/{tally.aggregate_seconds:.2f}/"
            f"{tally.partials_seconds:.2f}/{tally.combine_seconds:.2f} s",
        )
        row(f"universal verification (verify_record), {n} ballots", f"{tally.verify_seconds:.2f} s")
        checks = tally.verify_checks
        row(
            "  ballots / aggregate / everything else",
            f"{checks.get('ballots', 0):.1f}/{checks.get('aggregate', 0):.1f}/"
            f"{tally.verify_seconds - checks.get('ballots', 0) - checks.get('aggregate', 0):.1f} s",
        )
        exact = tally.ballots == TARGET_TALLY_BALLOTS
        row(
            f"tally + universal verification, {n} ballots",
            f"{tally.total_seconds:.2f} s",
            f"< {TARGET_TALLY_SECONDS:.0f} s" if exact else "",
            verdict(tally.total_seconds < TARGET_TALLY_SECONDS) if exact else "",
        )
        if not exact:
            row(
                f"  scaled linearly to {TARGET_TALLY_BALLOTS:,} ballots (estimate)",
                f"{tally.total_for_target:.1f} s",
                f"< {TARGET_TALLY_SECONDS:.0f} s",
                verdict(tally.total_for_target < TARGET_TALLY_SECONDS) + "*",
            )
    lines += ["", "CPU cores used by other processes while each part ran (should be ~0):"]
    parts = []
    if micro is not None:
        parts.append(f"micro {cores(micro.other_cpu)}")
    if devnet is not None:
        parts.append(
            f"devnet (timed part) {cores(devnet.other_cpu)} of the"
            f" {cores(devnet.machine_cpu)} the machine kept busy"
        )
    if tally is not None:
        parts.append(f"tally and verification {cores(tally.other_cpu)}")
    lines.append("  " + "; ".join(parts))
    if devnet is not None and (devnet.other_cpu or 0.0) > OTHER_LOAD_WARNING:
        lines.append(
            f"  WARNING: other processes kept {devnet.other_cpu:.2f} cores busy during the devnet"
            " part: its figures understate what this machine can do alone"
        )
    if devnet is not None:
        if devnet.counted != devnet.finalized:
            lines.append(
                f"  WARNING: the registry counted {devnet.counted} ballots, {devnet.finalized}"
                " were finalized: some casts were included but reverted"
            )
        prep = ", ".join(f"{k} {v:.0f} s" for k, v in devnet.setup_seconds.items())
        lines.append(f"devnet preparation (untimed): {prep}")
    if tally is not None and tally.generated_seconds:
        lines.append(
            f"tally record: generated {tally.generated_seconds:.0f} s this run (now cached)"
        )
    return "\n".join(lines)


def parse_parts(text: str) -> set[str]:
    parts = {part.strip() for part in text.split(",") if part.strip()}
    unknown = parts - {"micro", "devnet", "tally"}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown parts {sorted(unknown)}: micro, devnet, tally")
    return parts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=cast(str, __doc__).split("\n\n")[0])
    parser.add_argument(
        "--ballots", type=int, default=600, help="ballots cast on the devnet (default 600)"
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="offered ballots/s on the devnet (0: all at once)"
    )
    parser.add_argument(
        "--issuance",
        choices=("direct", "service"),
        default="direct",
        help="devnet credentials signed in process (default) or by the demo's issuance services",
    )
    parser.add_argument(
        "--verify-ballots",
        type=int,
        default=TARGET_TALLY_BALLOTS,
        help="ballots in the offline record for tally and verification (default 10000)",
    )
    parser.add_argument(
        "--micro-ballots", type=int, default=100, help="ballots timed in the micro part (100)"
    )
    parser.add_argument(
        "--skip", type=parse_parts, default=set(), help="parts to leave out: micro,devnet,tally"
    )
    parser.add_argument(
        "--workdir",
        type=pathlib.Path,
        default=pathlib.Path("/tmp/polder-bench-poll"),
        help="issuer keys and the cached tally record (default /tmp/polder-bench-poll)",
    )
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures to this file")
    parser.add_argument(
        "--keep", action="store_true", help="leave the devnet running for inspection"
    )
    args = parser.parse_args(argv)
    if args.ballots < 3:
        parser.error("--ballots must be at least 3")
    if args.rate < 0:
        parser.error("--rate must be 0 (all at once) or positive")
    if args.verify_ballots < 1 or args.micro_ballots < 2:
        parser.error("--verify-ballots must be at least 1 and --micro-ballots at least 2")

    # a shell starts background jobs with SIGINT ignored: Ctrl-C or kill -INT must still clean up
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_sigterm)
    started = time.perf_counter()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    machine = get_machine() | {
        "aiohttp": metadata.version("aiohttp"),
        "pycryptodome": metadata.version("pycryptodome"),
    }
    micro = devnet = tally = None
    try:
        issuers = load_issuers(workdir)
        setup = PollSetup(**load_cache(workdir, issuers)["setup"])
        if "micro" not in args.skip:
            micro = measure_micro(setup, issuers, args.micro_ballots)
        if "tally" not in args.skip:
            tally, setup = measure_tally(workdir, issuers, args.verify_ballots)
        if "devnet" not in args.skip:
            devnet = measure_devnet(args.ballots, args.rate, args.issuance, issuers, args.keep)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print()
    print(format_report(machine, micro, devnet, tally))
    print(f"\n(total run time {time.perf_counter() - started:.0f} s; cache in {workdir})")
    if args.json:
        figures = {
            "machine": machine,
            "target_ballots_per_second": TARGET_BALLOTS_PER_SECOND,
            "target_tally_seconds": TARGET_TALLY_SECONDS,
            "target_tally_ballots": TARGET_TALLY_BALLOTS,
            "micro": None if micro is None else asdict(micro),
            "devnet": None
            if devnet is None
            else asdict(devnet)
            | {
                "ballots_per_block_cap": devnet.ballots_per_block_cap,
                "meets_target": devnet.finalized_per_second >= TARGET_BALLOTS_PER_SECOND,
            },
            "tally": None
            if tally is None
            else asdict(tally)
            | {
                "tally_seconds": tally.tally_seconds,
                "total_seconds": tally.total_seconds,
                "total_for_target": tally.total_for_target,
                "meets_target": tally.total_for_target < TARGET_TALLY_SECONDS,
            },
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
