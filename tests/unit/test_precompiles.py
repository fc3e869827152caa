"""The PollCrypto precompile (node/precompiles.py), called through Polder's EVM.

Every call runs in a real py-evm state of an in-memory chain: as a state call
straight to ``0x…0b00``, through a small contract that CALLs it and reports
what it saw, and as transactions in a built block that a second node imports.
Covers [POLL-PRE.1] (ABI in, ABI out, ``Error(string)`` reverts that keep the
caller's gas), [POLL-PRE.2] (gas schedule), [POLL-PRE.3] (cached outcomes),
[POLL-CRED.1] and the five checks [POLL-CHECK-BALLOT.1] …
[POLL-CHECK-TALLY.1].
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

import pytest
from Crypto.PublicKey import RSA
from eth.abc import ComputationAPI, SignedTransactionAPI, StateAPI
from eth.db.atomic import AtomicDB
from eth.exceptions import Revert
from eth.vm.forks.prague.computation import PragueComputation
from eth.vm.spoof import SpoofTransaction
from eth_abi.abi import decode, encode
from eth_hash.auto import keccak
from eth_typing import Address
from hypothesis import given, settings
from hypothesis import strategies as st

import node.precompiles
from consensus.genesis import Genesis, decode_genesis
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
    compute_ciphertext_sum,
    compute_credential_message,
    compute_dealt_share,
    compute_election_key,
    compute_partial_decryption,
    compute_secret_share,
    compute_tracking_code,
    encode_public_key,
    encrypt_ballot,
    finalize_signature,
    generate_dealing,
    generate_signing_key,
    prepare_message,
    sign_blinded_message,
)
from contracts.ballot.group import GROUP_ORDER
from node.chain import Chain
from node.evm import PolderComputation, PolderVM
from node.governance import VIEW_GAS, run_view
from node.precompiles import (
    ADD_CIPHERTEXTS,
    COMPUTE_ELECTION_KEY,
    ERROR_SELECTOR,
    FUNCTIONS,
    GAS_AGGREGATE_OPTION,
    GAS_BALLOT,
    GAS_BALLOT_OPTION,
    GAS_BASE,
    GAS_COMMITMENT,
    GAS_CREDENTIAL,
    GAS_DEALING,
    GAS_PARTIAL_OPTION,
    GAS_TALLY_BOUND_UNIT,
    GAS_TALLY_OPTION_PARTIAL,
    PRECOMPILE_ADDRESS,
    VERDICT_CACHE,
    VERIFY_BALLOT,
    VERIFY_DEALING,
    VERIFY_PARTIAL,
    VERIFY_TALLY,
    compute_outcome,
    decode_error,
    encode_call,
)
from tests.unit.test_chain import (
    CHAIN_ID,
    GAS_LIMIT,
    GENESIS_TIMESTAMP,
    VALIDATOR_KEYS,
    address_of,
    build_and_commit,
    fresh_key,
    send,
    sign_transaction,
)

POLL_ID = keccak(b"polder precompile test poll")
OTHER_POLL_ID = keccak(b"polder precompile test poll, another one")
TRUSTEES, THRESHOLD = 3, 2
OPTIONS, MIN_SELECTIONS, MAX_SELECTIONS = 3, 1, 2
VOTERS = tuple(address_of(fresh_key(f"precompile voter {i}")) for i in range(3))
CHOICES = ((1, 0, 1), (0, 1, 0), (1, 1, 0))
COUNTS = tuple(sum(column) for column in zip(*CHOICES, strict=True))
ISSUER_KEY_BITS = 2048
"""The smallest issuer key the spec allows: keeps key generation short."""
CALLER = bytes(18) + b"\x0c\x00"
"""Calls PollCrypto with all its gas."""
STINGY_CALLER = bytes(18) + b"\x0c\x01"
"""Calls PollCrypto with ``STINGY_GAS``: enough for the base charge only."""
STINGY_GAS = 30_000


def make_caller_code(gas: int | None) -> bytes:
    """A contract that forwards its calldata to PollCrypto with ``gas`` (None: all it has)
    and returns ``success ‖ gas left after the call ‖ the call's return data``."""
    forwarded = "5a" if gas is None else "62" + gas.to_bytes(3, "big").hex()  # GAS | PUSH3
    return bytes.fromhex(
        "365f5f37"  # CALLDATACOPY(0, 0, CALLDATASIZE)
        "5f5f365f5f610b00" + forwarded + "f1"  # CALL(gas, 0x0b00, 0, 0, CALLDATASIZE, 0, 0)
        "5f52"  # MSTORE(0, success)
        "5a602052"  # MSTORE(32, GAS)
        "3d5f60403e"  # RETURNDATACOPY(64, 0, RETURNDATASIZE)
        "3d6040015ff3"  # RETURN(0, 64 + RETURNDATASIZE)
    )


@dataclass(frozen=True)
class Poll:
    """Everything a poll's participants made: keys, dealings, ballots, credentials."""

    dealings: tuple[Dealing, ...]
    election_key: ElectionKey
    shares: tuple[SecretShare, ...]
    params: PollParameters
    ballots: tuple[EncryptedBallot, ...]
    """One ballot per voter, ``CHOICES[i]`` by ``VOTERS[i]``."""
    issuers: tuple[RSA.RsaKey, ...]
    issuer_keys: tuple[bytes, ...]
    """The issuers' public keys, DER SubjectPublicKeyInfo."""


def make_credential(
    issuer: RSA.RsaKey, index: int, voting_address: bytes, poll_id: bytes = POLL_ID
) -> bytes:
    """The whole RFC 9474 round trip, encoded as ``[POLL-CRED.1]``."""
    public_key = issuer.public_key()
    prepared = prepare_message(compute_credential_message(poll_id, voting_address))
    blinded = blind_message(public_key, prepared)
    blind_signature = sign_blinded_message(issuer, blinded.blinded_message)
    signature = finalize_signature(public_key, prepared, blind_signature, blinded.inverse)
    return bytes((index,)) + prepared[:32] + signature


@pytest.fixture(scope="module")
def poll() -> Poll:
    drawn = [generate_dealing(POLL_ID, i, TRUSTEES, THRESHOLD) for i in range(1, TRUSTEES + 1)]
    secrets = tuple(secret for secret, _ in drawn)
    dealings = tuple(dealing for _, dealing in drawn)
    key = compute_election_key(POLL_ID, TRUSTEES, THRESHOLD, dealings)
    shares = tuple(
        compute_secret_share(key, dealings, [compute_dealt_share(s, j) for s in secrets], j)
        for j in range(1, TRUSTEES + 1)
    )
    params = PollParameters(POLL_ID, key.public_key, OPTIONS, MIN_SELECTIONS, MAX_SELECTIONS)
    ballots = tuple(
        encrypt_ballot(params, voter, choices)[0]
        for voter, choices in zip(VOTERS, CHOICES, strict=True)
    )
    issuers = tuple(generate_signing_key(ISSUER_KEY_BITS) for _ in range(2))
    issuer_keys = tuple(encode_public_key(issuer) for issuer in issuers)
    return Poll(dealings, key, shares, params, ballots, issuers, issuer_keys)


@pytest.fixture(scope="module")
def credentials(poll: Poll) -> tuple[bytes, ...]:
    """Voter 0's credentials from issuers 0 and 1."""
    return tuple(make_credential(issuer, i, VOTERS[0]) for i, issuer in enumerate(poll.issuers))


def make_genesis() -> Genesis:
    return decode_genesis(
        {
            "chainId": CHAIN_ID,
            "timestamp": GENESIS_TIMESTAMP,
            "gasLimit": GAS_LIMIT,
            "validators": [
                {
                    "name": "municipality-0",
                    "address": "0x" + address_of(VALIDATOR_KEYS[0]).hex(),
                    "p2p": "ws://127.0.0.1:9000",
                    "rpc": "http://127.0.0.1:8545",
                }
            ],
            "admins": [],
            "alloc": {
                "0x" + CALLER.hex(): {"code": "0x" + make_caller_code(None).hex()},
                "0x" + STINGY_CALLER.hex(): {"code": "0x" + make_caller_code(STINGY_GAS).hex()},
            },
        }
    )


@pytest.fixture(scope="module")
def genesis() -> Genesis:
    return make_genesis()


@pytest.fixture
def state(genesis: Genesis) -> StateAPI:
    chain = Chain(AtomicDB(), genesis)
    return chain.get_state(chain.head)


# --- calling helpers ----------------------------------------------------------------


def execute(state: StateAPI, calldata: bytes, to: bytes = PRECOMPILE_ADDRESS) -> ComputationAPI:
    """Run a state call like ``run_view`` does, undo it, and return the computation."""
    unsigned = PolderVM.create_unsigned_transaction(
        nonce=0, gas_price=0, gas=VIEW_GAS, to=Address(to), value=0, data=calldata
    )
    transaction = cast(SignedTransactionAPI, SpoofTransaction(unsigned, from_=bytes(20)))
    snapshot = state.snapshot()
    try:
        return state.apply_transaction(transaction)
    finally:
        state.revert(snapshot)


def call(state: StateAPI, selector: bytes, *arguments: Any) -> tuple[Any, ...]:
    """Call a function that must succeed; return its decoded results."""
    return call_with(state, encode_call(selector, *arguments))


def call_with(state: StateAPI, calldata: bytes) -> tuple[Any, ...]:
    """Run calldata that must succeed; return the decoded results."""
    output = run_view(state, PRECOMPILE_ADDRESS, calldata)
    return decode(list(FUNCTIONS[calldata[:4]].output_types), output)


def expect_revert(state: StateAPI, calldata: bytes, reason: str) -> ComputationAPI:
    """The call reverts with ``Error(reason…)``, ``reason`` a regex, and keeps its gas."""
    computation = execute(state, calldata)
    assert computation.is_error
    assert isinstance(computation.error, Revert)
    assert computation.output[:4] == ERROR_SELECTOR
    assert re.match(reason, decode_error(computation.output)), decode_error(computation.output)
    assert computation.get_gas_used() < VIEW_GAS // 2
    return computation


def ballot_call(
    poll: Poll,
    credentials: tuple[bytes, ...],
    *,
    ballot: EncryptedBallot | bytes | None = None,
    voter: bytes = VOTERS[0],
    issuer_threshold: int = 2,
    issuer_keys: tuple[bytes, ...] | None = None,
    option_count: int = OPTIONS,
) -> bytes:
    """``verifyBallot`` calldata for voter 0's ballot, with one thing changed."""
    chosen = poll.ballots[0] if ballot is None else ballot
    return encode_call(
        VERIFY_BALLOT,
        POLL_ID,
        poll.election_key.encode(),
        option_count,
        MIN_SELECTIONS,
        MAX_SELECTIONS,
        "0x" + voter.hex(),
        issuer_threshold,
        list(poll.issuer_keys if issuer_keys is None else issuer_keys),
        list(credentials),
        chosen if isinstance(chosen, bytes) else chosen.encode(),
    )


def tamper_option_proof(ballot: EncryptedBallot, option: int) -> EncryptedBallot:
    """Add one to the first response of option ``option``'s 0/1 proof."""
    selection = ballot.selections[option]
    responses = ((selection.proof.responses[0] + 1) % GROUP_ORDER, *selection.proof.responses[1:])
    selections = list(ballot.selections)
    selections[option] = replace(selection, proof=replace(selection.proof, responses=responses))
    return replace(ballot, selections=tuple(selections))


def encode_ciphertexts(ciphertexts: tuple[Ciphertext, ...]) -> bytes:
    return b"".join(ciphertext.encode() for ciphertext in ciphertexts)


def aggregate_of(poll: Poll, voters: range | tuple[int, ...]) -> tuple[Ciphertext, ...]:
    return compute_aggregate(poll.params, [poll.ballots[i] for i in voters])


# --- wiring -------------------------------------------------------------------------


def test_selectors_are_keccak_of_the_canonical_signatures() -> None:
    assert bytes(18) + b"\x0b\x00" == PRECOMPILE_ADDRESS
    assert bytes.fromhex("08c379a0") == ERROR_SELECTOR
    expected = {
        "verifyBallot(bytes32,bytes,uint8,uint8,uint8,address,uint8,bytes[],bytes[],bytes)",
        "verifyDealing(bytes32,uint8,uint8,uint8,bytes)",
        "computeElectionKey(bytes32,uint8,uint8,bytes[])",
        "addCiphertexts(bytes,bytes,bytes)",
        "verifyPartial(bytes32,bytes,bytes,bytes)",
        "verifyTally(bytes32,bytes,bytes,bytes[],uint256[],uint256)",
    }
    assert {function.signature for function in FUNCTIONS.values()} == expected
    for selector, function in FUNCTIONS.items():
        assert selector == keccak(function.signature.encode())[:4]
    assert bytes.fromhex("d4614c9f") == VERIFY_BALLOT


def test_polder_vm_keeps_every_prague_precompile_and_adds_poll_crypto() -> None:
    ours = PolderComputation.get_precompiles()
    prague = PragueComputation.get_precompiles()
    assert set(ours) == {*prague, PRECOMPILE_ADDRESS}
    assert all(ours[address] is prague[address] for address in prague)
    assert PolderVM.get_state_class().computation_class is PolderComputation


# --- verifyBallot [POLL-CHECK-BALLOT.1], [POLL-CRED.1] ------------------------------


def test_valid_ballot_with_two_of_two_credentials_returns_tracking_code_and_ciphertexts(
    poll: Poll, credentials: tuple[bytes, ...], state: StateAPI
) -> None:
    tracking_code, ciphertexts = call_with(state, ballot_call(poll, credentials))
    ballot = poll.ballots[0]
    assert tracking_code == compute_tracking_code(ballot)
    assert len(ciphertexts) == OPTIONS * 66
    assert ciphertexts == encode_ciphertexts(tuple(s.ciphertext for s in ballot.selections))


def test_a_repeated_issuer_counts_once_but_one_of_one_suffices(
    poll: Poll, credentials: tuple[bytes, ...], state: StateAPI
) -> None:
    twice = (credentials[1], credentials[1])
    assert call_with(state, ballot_call(poll, twice, issuer_threshold=1))[0] == (
        compute_tracking_code(poll.ballots[0])
    )
    expect_revert(
        state,
        ballot_call(poll, twice),
        r"credentials from 1 distinct issuer\(s\), 2 required$",
    )


BallotCase = Callable[[Poll, tuple[bytes, ...]], bytes]


def too_many_selections(poll: Poll, credentials: tuple[bytes, ...]) -> bytes:
    # An honest client cannot encrypt 3 selections for bounds 1..2: prove them
    # for bounds 2..3 instead, whose range proof cannot pass as one for 1..2.
    wider = replace(poll.params, min_selections=2, max_selections=3)
    ballot, _ = encrypt_ballot(wider, VOTERS[0], (1, 1, 1))
    return ballot_call(poll, credentials, ballot=ballot)


def ballot_for_another_poll(poll: Poll, credentials: tuple[bytes, ...]) -> bytes:
    ballot, _ = encrypt_ballot(replace(poll.params, poll_id=OTHER_POLL_ID), VOTERS[0], (1, 0, 0))
    return ballot_call(poll, credentials, ballot=ballot)


def ballot_of_another_voter(poll: Poll, _: tuple[bytes, ...]) -> bytes:
    # Voter 1 copies voter 0's ballot and sends it with its own credentials.
    own = tuple(make_credential(issuer, i, VOTERS[1]) for i, issuer in enumerate(poll.issuers))
    return ballot_call(poll, own, voter=VOTERS[1])


def credential_for_another_voting_key(poll: Poll, credentials: tuple[bytes, ...]) -> bytes:
    return ballot_call(poll, (make_credential(poll.issuers[0], 0, VOTERS[1]), credentials[1]))


def credential_for_another_poll(poll: Poll, credentials: tuple[bytes, ...]) -> bytes:
    other = make_credential(poll.issuers[0], 0, VOTERS[0], OTHER_POLL_ID)
    return ballot_call(poll, (other, credentials[1]))


def forged_signature(poll: Poll, credentials: tuple[bytes, ...]) -> bytes:
    forged = credentials[1][:-1] + bytes((credentials[1][-1] ^ 1,))
    return ballot_call(poll, (credentials[0], forged))


def signature_of_another_issuer(poll: Poll, credentials: tuple[bytes, ...]) -> bytes:
    # Issuer 0's valid signature, presented as issuer 1's.
    return ballot_call(poll, (credentials[0], b"\x01" + credentials[0][1:]))


BALLOT_FAILURES: list[tuple[str, BallotCase, str]] = [
    (
        "tampered-proof",
        lambda p, c: ballot_call(p, c, ballot=tamper_option_proof(p.ballots[0], 1)),
        r"ballot: option 1: 0/1 proof does not verify$",
    ),
    ("another-poll", ballot_for_another_poll, r"ballot: ballot is for poll 0x"),
    ("another-voter", ballot_of_another_voter, r"ballot: ballot names voting address 0x"),
    ("too-many-selections", too_many_selections, r"ballot: range proof does not verify"),
    (
        "wrong-option-count",
        lambda p, c: ballot_call(p, c, option_count=4),
        r"ballot: ballot has 3 options, the poll has 4$",
    ),
    (
        "truncated-ballot",
        lambda p, c: ballot_call(p, c, ballot=p.ballots[0].encode()[:-1]),
        r"ballot: truncated in range proof",
    ),
    (
        "missing-credential",
        lambda p, c: ballot_call(p, c[:1]),
        r"credentials from 1 distinct issuer\(s\), 2 required$",
    ),
    (
        "no-credentials",
        lambda p, _: ballot_call(p, ()),
        r"credentials from 0 distinct issuer\(s\), 2 required$",
    ),
    ("forged-credential", forged_signature, r"credential from issuer 1 does not verify"),
    ("another-issuers-signature", signature_of_another_issuer, "credential from issuer 1 does"),
    ("wrong-poll-credential", credential_for_another_poll, "credential from issuer 0 does not"),
    ("another-voting-key", credential_for_another_voting_key, "credential from issuer 0 does"),
    (
        "unknown-issuer",
        lambda p, c: ballot_call(p, (c[0], b"\x02" + c[1][1:])),
        r"credential 1: issuer 2 is not one of the poll's 2 issuers",
    ),
    (
        "short-credential",
        lambda p, c: ballot_call(p, (c[0], c[1][:33])),
        r"credential 1: 33 bytes, too short",
    ),
    (
        "threshold-above-issuers",
        lambda p, c: ballot_call(p, c, issuer_threshold=3),
        r"issuer threshold 3 is not in 1\.\.2",
    ),
    (
        "zero-threshold",
        lambda p, c: ballot_call(p, c, issuer_threshold=0),
        r"issuer threshold 0 is not in 1\.\.2",
    ),
    (
        "issuer-key-not-der",
        lambda p, c: ballot_call(
            p, c, issuer_keys=(p.issuer_keys[0], p.issuers[1].public_key().export_key("PEM"))
        ),
        r"issuer 1: issuer key is not",
    ),
]


@pytest.mark.parametrize(
    ("make_calldata", "reason"),
    [pytest.param(make, reason, id=name) for name, make, reason in BALLOT_FAILURES],
)
def test_ballot_failures_revert_naming_what_failed(
    poll: Poll,
    credentials: tuple[bytes, ...],
    state: StateAPI,
    make_calldata: BallotCase,
    reason: str,
) -> None:
    expect_revert(state, make_calldata(poll, credentials), reason)


# --- verifyDealing, computeElectionKey [POLL-CHECK-DEALING.1], [POLL-CHECK-KEY.1] -----


def test_valid_dealing_verifies(poll: Poll, state: StateAPI) -> None:
    for dealing in poll.dealings:
        assert call(
            state,
            VERIFY_DEALING,
            POLL_ID,
            TRUSTEES,
            THRESHOLD,
            dealing.dealer_index,
            dealing.encode(),
        ) == (True,)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(
            {"dealing": "tampered"},
            r"dealing: dealer 2: proof of knowledge of the constant coefficient does not verify",
            id="tampered-proof",
        ),
        pytest.param(
            {"poll_id": OTHER_POLL_ID},
            r"dealing: dealer 2: proof of knowledge",
            id="another-poll",
        ),
        pytest.param(
            {"dealer_index": 3}, r"dealing: it is dealer 2's, not dealer 3's", id="another-dealer"
        ),
        pytest.param(
            {"trustee_count": 4},
            r"dealing: dealer 2: dealing is for 2 of 3 trustees, not 2 of 4",
            id="other-parameters",
        ),
        pytest.param({"dealing": "truncated"}, r"dealing: truncated", id="truncated"),
    ],
)
def test_bad_dealing_reverts(
    poll: Poll, state: StateAPI, change: dict[str, Any], reason: str
) -> None:
    dealing = poll.dealings[1]
    proof = replace(dealing.proof, response=(dealing.proof.response + 1) % GROUP_ORDER)
    encodings = {
        "tampered": replace(dealing, proof=proof).encode(),
        "truncated": dealing.encode()[:-1],
    }
    arguments: dict[str, Any] = {
        "poll_id": POLL_ID,
        "trustee_count": TRUSTEES,
        "threshold": THRESHOLD,
        "dealer_index": 2,
        "dealing": dealing.encode(),
    } | change
    arguments["dealing"] = encodings.get(arguments["dealing"], arguments["dealing"])
    expect_revert(state, encode_call(VERIFY_DEALING, *arguments.values()), reason)


def test_election_key_from_t_of_n_dealings(poll: Poll, state: StateAPI) -> None:
    for chosen in ((0, 2), (0, 1, 2)):
        dealings = [poll.dealings[i] for i in chosen]
        encoded = [dealing.encode() for dealing in dealings]
        (key,) = call(state, COMPUTE_ELECTION_KEY, POLL_ID, TRUSTEES, THRESHOLD, encoded)
        assert key == compute_election_key(POLL_ID, TRUSTEES, THRESHOLD, dealings).encode()
    (key,) = call(
        state,
        COMPUTE_ELECTION_KEY,
        POLL_ID,
        TRUSTEES,
        THRESHOLD,
        [d.encode() for d in poll.dealings],
    )
    assert ElectionKey.decode(key) == poll.election_key


@pytest.mark.parametrize(
    ("chosen", "reason"),
    [
        pytest.param((0,), r"election key: 1 dealings, at least 2 are needed", id="too-few"),
        pytest.param((0, 0), r"election key: two dealings from one dealer", id="duplicate"),
        pytest.param((0, "tampered"), r"election key: dealer 2: proof of knowledge", id="tampered"),
        pytest.param((0, "truncated"), r"dealings\[1\]: dealing: truncated", id="truncated"),
    ],
)
def test_bad_dealings_give_no_election_key(
    poll: Poll, state: StateAPI, chosen: tuple[int | str, ...], reason: str
) -> None:
    dealing = poll.dealings[1]
    proof = replace(dealing.proof, challenge=(dealing.proof.challenge + 1) % GROUP_ORDER)
    special = {
        "tampered": replace(dealing, proof=proof).encode(),
        "truncated": dealing.encode()[:-2],
    }
    encoded = [
        special[item] if isinstance(item, str) else poll.dealings[item].encode() for item in chosen
    ]
    expect_revert(
        state, encode_call(COMPUTE_ELECTION_KEY, POLL_ID, TRUSTEES, THRESHOLD, encoded), reason
    )


# --- addCiphertexts [POLL-CHECK-AGG.1] ----------------------------------------------


def test_add_to_an_empty_aggregate_gives_the_added_ciphertexts(poll: Poll, state: StateAPI) -> None:
    added = encode_ciphertexts(aggregate_of(poll, (0,)))
    assert call(state, ADD_CIPHERTEXTS, b"", added, b"") == (added,)


def test_add_and_remove_match_the_homomorphic_sum(poll: Poll, state: StateAPI) -> None:
    # Voter 1 re-votes: its old ballot leaves the aggregate, its new one joins it.
    old, new = poll.ballots[1], poll.ballots[2]
    aggregate = aggregate_of(poll, (0, 1))
    (result,) = call(
        state,
        ADD_CIPHERTEXTS,
        encode_ciphertexts(aggregate),
        encode_ciphertexts(tuple(s.ciphertext for s in new.selections)),
        encode_ciphertexts(tuple(s.ciphertext for s in old.selections)),
    )
    expected = aggregate_of(poll, (0, 2))
    assert result == encode_ciphertexts(expected)
    assert expected[0] == compute_ciphertext_sum(
        [poll.ballots[0].selections[0].ciphertext, new.selections[0].ciphertext]
    )


def test_removing_what_was_added_gives_encryptions_of_zero(poll: Poll, state: StateAPI) -> None:
    ballot = encode_ciphertexts(aggregate_of(poll, (1,)))
    assert call(state, ADD_CIPHERTEXTS, b"", ballot, ballot) == (bytes(OPTIONS * 66),)


SHAPES: list[tuple[str, Callable[[bytes], tuple[bytes, bytes, bytes]], str]] = [
    ("nothing-added", lambda one: (b"", b"", b""), r"added: no ciphertexts"),
    ("ragged", lambda one: (b"", one[:-1], b""), r"added: 197 bytes are not whole 66-byte"),
    ("short", lambda one: (one[:132], one, b""), r"aggregate: 132 bytes, expected 3 ciphertexts"),
    ("long", lambda one: (b"", one, one + one[:66]), r"removed: 264 bytes, expected 3 ciphertexts"),
]


@pytest.mark.parametrize(
    ("make_arguments", "reason"),
    [pytest.param(make, reason, id=name) for name, make, reason in SHAPES],
)
def test_ciphertexts_of_another_shape_are_refused(
    poll: Poll,
    state: StateAPI,
    make_arguments: Callable[[bytes], tuple[bytes, bytes, bytes]],
    reason: str,
) -> None:
    one_ballot = encode_ciphertexts(aggregate_of(poll, (0,)))
    expect_revert(state, encode_call(ADD_CIPHERTEXTS, *make_arguments(one_ballot)), reason)


def test_a_point_off_the_curve_is_refused(poll: Poll, state: StateAPI) -> None:
    one = encode_ciphertexts(aggregate_of(poll, (0,)))
    bad = one[:66] + b"\x05" + one[67:]
    expect_revert(
        state, encode_call(ADD_CIPHERTEXTS, b"", bad, b""), r"added: option 1: ciphertext"
    )


# --- verifyPartial, verifyTally [POLL-CHECK-PARTIAL.1], [POLL-CHECK-TALLY.1] ----------


def partial_of(poll: Poll, trustee: int, aggregate: tuple[Ciphertext, ...]) -> PartialDecryption:
    return compute_partial_decryption(
        POLL_ID, poll.election_key, poll.shares[trustee - 1], aggregate
    )


def test_valid_partial_decryption_returns_the_trustee(poll: Poll, state: StateAPI) -> None:
    aggregate = aggregate_of(poll, range(3))
    for trustee in (1, 3):
        partial = partial_of(poll, trustee, aggregate).encode()
        assert call(
            state,
            VERIFY_PARTIAL,
            POLL_ID,
            poll.election_key.encode(),
            encode_ciphertexts(aggregate),
            partial,
        ) == (trustee,)


def test_partial_of_an_empty_aggregate_verifies(poll: Poll, state: StateAPI) -> None:
    # No ballot counted: the empty aggregate stands for encryptions of zero.
    partial = partial_of(poll, 2, aggregate_of(poll, ())).encode()
    assert call(state, VERIFY_PARTIAL, POLL_ID, poll.election_key.encode(), b"", partial) == (2,)


@pytest.mark.parametrize("wrong", ["share", "aggregate", "trustee"])
def test_wrong_partial_decryption_reverts_naming_the_trustee(
    poll: Poll, state: StateAPI, wrong: str
) -> None:
    aggregate = aggregate_of(poll, range(3))
    if wrong == "share":
        share = SecretShare(2, (poll.shares[1].value + 1) % GROUP_ORDER)
        partial = compute_partial_decryption(POLL_ID, poll.election_key, share, aggregate)
    elif wrong == "aggregate":
        partial = partial_of(poll, 2, aggregate_of(poll, (0, 1)))
    else:  # trustee 1's shares presented as trustee 2's
        partial = replace(partial_of(poll, 1, aggregate), trustee_index=2)
    calldata = encode_call(
        VERIFY_PARTIAL,
        POLL_ID,
        poll.election_key.encode(),
        encode_ciphertexts(aggregate),
        partial.encode(),
    )
    expect_revert(
        state,
        calldata,
        r"partial decryption: trustee 2, option \d: partial decryption proof does not verify",
    )


def tally_call(
    poll: Poll,
    trustees: tuple[int, ...] = (1, 3),
    counts: tuple[int, ...] = COUNTS,
    bound: int = len(CHOICES),
    voters: range | tuple[int, ...] = range(3),
) -> bytes:
    aggregate = aggregate_of(poll, voters)
    partials = [partial_of(poll, trustee, aggregate).encode() for trustee in trustees]
    return encode_call(
        VERIFY_TALLY,
        POLL_ID,
        poll.election_key.encode(),
        encode_ciphertexts(aggregate) if voters else b"",
        partials,
        list(counts),
        bound,
    )


def test_valid_tally_verifies(poll: Poll, state: StateAPI) -> None:
    for trustees in ((1, 2), (2, 3), (1, 2, 3)):
        assert call_with(state, tally_call(poll, trustees)) == (True,)
    assert call_with(state, tally_call(poll, counts=(0, 0, 0), bound=0, voters=())) == (True,)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(
            {"counts": (2, 1, 2)},
            r"tally: counts do not match the decryption \(option 1: 1 published, 2 decrypted\)",
            id="wrong-counts",
        ),
        pytest.param(
            {"trustees": (3,)}, r"tally: 1 partial decryptions, 2 are needed", id="too-few"
        ),
        pytest.param(
            {"trustees": (3, 3)}, r"tally: two partial decryptions from one trustee", id="duplicate"
        ),
        pytest.param(
            {"bound": 1}, r"tally: option 0: decrypted value is not in 0\.\.1", id="above-bound"
        ),
        pytest.param({"bound": 2**32 + 1}, r"tally: bound 4294967297 is above", id="huge-bound"),
        pytest.param({"counts": (2, 2)}, r"tally: 2 counts for 3 options", id="count-shape"),
    ],
)
def test_wrong_tally_reverts(
    poll: Poll, state: StateAPI, change: dict[str, Any], reason: str
) -> None:
    expect_revert(state, tally_call(poll, **change), reason)


# --- malformed calldata [POLL-PRE.1] ------------------------------------------------


def overlapping_dealings(poll: Poll) -> bytes:
    """``computeElectionKey`` whose 500 ``bytes[]`` offsets all point at one element."""
    element = poll.dealings[0].encode()
    count = 500
    head = encode(["bytes32", "uint8", "uint8"], [POLL_ID, TRUSTEES, THRESHOLD])
    array = count.to_bytes(32, "big") + (32 * count).to_bytes(32, "big") * count
    tail = encode(["bytes"], [element])[32:]
    return COMPUTE_ELECTION_KEY + head + (32 * 4).to_bytes(32, "big") + array + tail


MALFORMED: list[tuple[str, Callable[[Poll, bytes], bytes], str]] = [
    ("empty", lambda p, v: b"", r"malformed call: 0 bytes of calldata, no 4-byte"),
    ("short", lambda p, v: v[:3], r"malformed call: 3 bytes of calldata"),
    ("unknown", lambda p, v: b"\xde\xad\xbe\xef" + v[4:], r"unknown function selector 0xdeadbeef"),
    ("truncated", lambda p, v: v[:-32], r"malformed call: verifyBallot arguments do not decode"),
    # optionCount (third word) = 256 + 3: a uint8 with non-zero padding
    ("uint8-overflow", lambda p, v: v[: 4 + 94] + b"\x01" + v[4 + 95 :], r"malformed call: verify"),
    (
        "overlap",
        lambda p, v: overlapping_dealings(p),
        r"malformed call: computeElectionKey argument 3 elements overlap",
    ),
]


@pytest.mark.parametrize(
    ("make_calldata", "reason"),
    [pytest.param(make, reason, id=name) for name, make, reason in MALFORMED],
)
def test_malformed_calldata_reverts_after_the_base_gas_only(
    poll: Poll,
    credentials: tuple[bytes, ...],
    state: StateAPI,
    make_calldata: Callable[[Poll, bytes], bytes],
    reason: str,
) -> None:
    valid = ballot_call(poll, credentials)
    computation = expect_revert(state, make_calldata(poll, valid), reason)
    assert computation.get_gas_used() == GAS_BASE


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_arguments_only_ever_succeed_or_revert(
    poll: Poll, credentials: tuple[bytes, ...], data: st.DataObject
) -> None:
    # A byzantine proposer's junk must never raise out of the precompile: that
    # would abort block execution instead of reverting one call.
    aggregate = aggregate_of(poll, range(3))
    valid = data.draw(
        st.sampled_from(
            [
                ballot_call(poll, credentials),
                tally_call(poll),
                encode_call(
                    VERIFY_PARTIAL,
                    POLL_ID,
                    poll.election_key.encode(),
                    encode_ciphertexts(aggregate),
                    partial_of(poll, 1, aggregate).encode(),
                ),
            ]
        )
    )
    function = FUNCTIONS[valid[:4]]
    arguments = list(decode(list(function.input_types), valid[4:]))
    position = data.draw(
        st.sampled_from([i for i, t in enumerate(function.input_types) if t == "bytes"])
    )
    original = arguments[position]
    index = data.draw(st.integers(0, len(original) - 1))
    replacement = data.draw(st.binary(max_size=3))
    arguments[position] = original[:index] + replacement + original[index + 1 :]
    outcome = compute_outcome(encode_call(valid[:4], *arguments), lambda _: None)
    if outcome.reverted:
        assert decode_error(outcome.output)


# --- gas [POLL-PRE.2] and the cache [POLL-PRE.3] --------------------------------------


def test_gas_follows_the_schedule(
    poll: Poll, credentials: tuple[bytes, ...], state: StateAPI
) -> None:
    aggregate = aggregate_of(poll, range(3))
    added = encode_ciphertexts(aggregate)
    cases = [
        (
            ballot_call(poll, credentials),
            GAS_BALLOT + OPTIONS * GAS_BALLOT_OPTION + 2 * GAS_CREDENTIAL,
        ),
        (
            ballot_call(poll, credentials[:1]),  # reverts, charged the same way
            GAS_BALLOT + OPTIONS * GAS_BALLOT_OPTION + GAS_CREDENTIAL,
        ),
        (
            encode_call(VERIFY_DEALING, POLL_ID, TRUSTEES, THRESHOLD, 1, poll.dealings[0].encode()),
            THRESHOLD * GAS_COMMITMENT,
        ),
        (
            encode_call(
                COMPUTE_ELECTION_KEY,
                POLL_ID,
                TRUSTEES,
                THRESHOLD,
                [d.encode() for d in poll.dealings],
            ),
            TRUSTEES * GAS_DEALING,
        ),
        (encode_call(ADD_CIPHERTEXTS, b"", added, b""), OPTIONS * GAS_AGGREGATE_OPTION),
        (
            encode_call(
                VERIFY_PARTIAL,
                POLL_ID,
                poll.election_key.encode(),
                added,
                partial_of(poll, 1, aggregate).encode(),
            ),
            OPTIONS * GAS_PARTIAL_OPTION,
        ),
        (
            tally_call(poll, (1, 2, 3), bound=1000),
            OPTIONS * 3 * GAS_TALLY_OPTION_PARTIAL + 1000 * GAS_TALLY_BOUND_UNIT,
        ),
    ]
    for calldata, function_gas in cases:
        VERDICT_CACHE.clear()
        assert execute(state, calldata).get_gas_used() == GAS_BASE + function_gas


def test_too_little_gas_runs_out_before_any_check(
    poll: Poll, credentials: tuple[bytes, ...], state: StateAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    VERDICT_CACHE.clear()
    monkeypatch.setattr(node.precompiles, "validate_ballot", refuse_to_run)
    computation = execute(state, ballot_call(poll, credentials), to=STINGY_CALLER)
    success, _ = decode(["uint256", "uint256"], computation.output[:64])
    assert success == 0
    assert computation.output[64:] == b""  # out of gas: no return data
    assert computation.get_gas_used() > STINGY_GAS  # what it forwarded is burnt
    assert len(VERDICT_CACHE) == 0  # running out of gas depends on the caller, not the input


def refuse_to_run(*_: object) -> None:
    raise AssertionError("the check ran although its outcome was cached or unpaid")


@pytest.mark.parametrize("valid", [True, False], ids=["success", "failure"])
def test_cached_outcome_gives_the_same_result_and_gas(
    poll: Poll,
    credentials: tuple[bytes, ...],
    state: StateAPI,
    monkeypatch: pytest.MonkeyPatch,
    valid: bool,
) -> None:
    VERDICT_CACHE.clear()
    calldata = ballot_call(poll, credentials if valid else credentials[:1])
    first = execute(state, calldata)
    assert first.is_error is not valid
    assert len(VERDICT_CACHE) == 1
    monkeypatch.setattr(node.precompiles, "validate_ballot", refuse_to_run)
    second = execute(state, calldata)
    assert second.is_error is first.is_error
    assert second.output == first.output
    assert second.get_gas_used() == first.get_gas_used()


# --- through a contract and through a block -----------------------------------------


def test_calling_contract_sees_the_revert_payload_and_keeps_its_gas(
    poll: Poll, credentials: tuple[bytes, ...], state: StateAPI
) -> None:
    failing = ballot_call(poll, credentials, ballot=tamper_option_proof(poll.ballots[0], 2))
    computation = execute(state, failing, to=CALLER)
    assert computation.is_success
    success, gas_left = decode(["uint256", "uint256"], computation.output[:64])
    assert success == 0
    payload = computation.output[64:]
    assert payload[:4] == ERROR_SELECTOR
    assert decode_error(payload) == "ballot: option 2: 0/1 proof does not verify"
    charged = GAS_BASE + GAS_BALLOT + OPTIONS * GAS_BALLOT_OPTION + 2 * GAS_CREDENTIAL
    # The caller lost what PollCrypto charged plus a few thousand for its own opcodes
    # (a burning failure would have taken 63/64 of everything it had).
    assert computation.get_gas_used() - charged < 10_000
    assert gas_left > VIEW_GAS * 9 // 10

    passing = execute(state, ballot_call(poll, credentials), to=CALLER)
    success, _ = decode(["uint256", "uint256"], passing.output[:64])
    assert success == 1
    assert decode(["bytes32", "bytes"], passing.output[64:])[0] == compute_tracking_code(
        poll.ballots[0]
    )


def test_ballot_transactions_in_a_block_are_checked_by_builder_and_importer(
    poll: Poll, credentials: tuple[bytes, ...], genesis: Genesis
) -> None:
    builder, importer = Chain(AtomicDB(), genesis), Chain(AtomicDB(), genesis)
    good = sign_transaction(
        fresh_key("precompile good"),
        to=PRECOMPILE_ADDRESS,
        data=ballot_call(poll, credentials),
        gas=500_000,
    )
    bad = sign_transaction(
        fresh_key("precompile bad"),
        to=PRECOMPILE_ADDRESS,
        data=ballot_call(poll, credentials, ballot=tamper_option_proof(poll.ballots[0], 0)),
        gas=500_000,
    )
    built, sealed = build_and_commit(builder, [good, bad])
    assert [tx.hash for tx in built.block.transactions] == [good.hash]
    [excluded] = built.excluded
    assert excluded.tx_hash == bad.hash
    assert excluded.reason == "execution reverted: ballot: option 0: 0/1 proof does not verify"
    [receipt] = builder.get_receipts(builder.head)
    assert receipt.state_root == b"\x01"
    VERDICT_CACHE.clear()  # the importer checks the ballot itself
    importer.import_block(send(sealed, importer))
    assert importer.head.hash == builder.head.hash
