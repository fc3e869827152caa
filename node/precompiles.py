"""The ``PollCrypto`` precompile at ``0x…0b00`` (spec: docs/spec/polls.md, POLL-PRE, POLL-CHECK).

Ballot, key-generation and tally proofs are checked here, natively, instead of
in EVM bytecode: elliptic-curve arithmetic interpreted by py-evm would cost
tens of milliseconds per ballot. Being a precompile makes the check part of
block validity by construction: every node runs it whenever it executes the
block, so a byzantine proposer cannot include what the check refuses.

A contract calls it with ABI-encoded calldata like any other contract. Each
call goes through three steps, in this order:

1. charge ``GAS_BASE``, find the function by its selector and decode its
   arguments (malformed calldata reverts here);
2. charge the function's gas from the decoded sizes ([POLL-PRE.2]), before
   any cryptographic work, so a caller that cannot pay gets no work done;
3. run the checks of ``contracts.ballot``; return the ABI-encoded results, or
   revert with ``Error(string)`` naming what failed.

How the revert works in py-evm (0.12.1b1): a precompile is a function
``computation -> computation`` that ``BaseComputation.apply_computation`` calls
inside the computation's context manager. Raising ``eth.exceptions.Revert``
there ends the frame exactly as the REVERT opcode does: ``__exit__`` records
the error and, because ``Revert.burns_gas`` and ``Revert.erases_return_data``
are False, leaves the unused gas and ``computation.output`` alone. The
caller's CALL then pushes 0, receives the ``Error(string)`` payload as return
data and gets the unused gas back. Any other ``VMError`` (``OutOfGas``) burns
all the gas it was given.

Outcomes are pure functions of the calldata ([POLL-PRE.3]) and are cached by
``keccak256(calldata)``, failures included. A cached outcome is charged the
gas the first run charged, so the cache changes how fast a node is, never
what a block computes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from Crypto.PublicKey import RSA
from eth.abc import ComputationAPI
from eth.exceptions import Revert
from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_hash.auto import keccak
from eth_typing import Address

from consensus.errors import PolderError
from contracts.ballot import (
    MAX_OPTIONS,
    Ciphertext,
    Dealing,
    ElectionKey,
    EncryptedBallot,
    InvalidCredential,
    InvalidDecryption,
    InvalidEncoding,
    InvalidKeyGeneration,
    PartialDecryption,
    PollParameters,
    compute_ciphertext_sum,
    compute_election_key,
    compute_tally,
    compute_tracking_code,
    decode_public_key,
    validate_ballot,
    validate_credential,
    validate_dealing,
    validate_partial_decryption,
)
from contracts.ballot.blind import PREFIX_SIZE
from contracts.ballot.elgamal import CIPHERTEXT_SIZE, ZERO_CIPHERTEXT
from contracts.ballot.tally import MAX_TALLY_BOUND

PRECOMPILE_ADDRESS = Address(bytes.fromhex("0000000000000000000000000000000000000b00"))
"""Where ``PollCrypto`` lives in every Polder EVM."""

GAS_BASE = 3_000
"""Charged for every call, before the calldata is decoded."""
GAS_BALLOT = 20_000
"""``verifyBallot``: per call, on top of the base."""
GAS_BALLOT_OPTION = 12_000
"""``verifyBallot``: per option (a 0/1 proof, and a share of the range proof)."""
GAS_CREDENTIAL = 10_000
"""``verifyBallot``: per credential (an RSA-PSS verification)."""
GAS_COMMITMENT = 10_000
"""``verifyDealing``: per commitment of the dealing (``threshold`` of them)."""
GAS_DEALING = 10_000
"""``computeElectionKey``: per dealing."""
GAS_AGGREGATE_OPTION = 500
"""``addCiphertexts``: per option."""
GAS_PARTIAL_OPTION = 8_000
"""``verifyPartial``: per option (one Chaum-Pedersen proof)."""
GAS_TALLY_OPTION_PARTIAL = 8_000
"""``verifyTally``: per option per partial decryption."""
GAS_TALLY_BOUND_UNIT = 1
"""``verifyTally``: per unit of ``bound`` (the discrete-log search)."""

ERROR_SELECTOR = keccak(b"Error(string)")[:4]
"""``0x08c379a0``: the selector of Solidity's and Vyper's revert payload."""
WORD_SIZE = 32
"""Bytes of an ABI word."""
VERDICT_CACHE_SIZE = 4096
"""Outcomes kept by calldata hash: more than the ballots of several full blocks."""
ISSUER_KEY_CACHE_SIZE = 256
"""Decoded issuer keys kept: every ballot of a poll names the same few."""

GasCharge = Callable[[int], None]
"""Consumes gas from the running computation; raises ``OutOfGas`` when it runs out."""
Handler = Callable[[tuple[Any, ...], GasCharge], tuple[Any, ...]]
"""Charges a function's gas, runs its checks, and returns its ABI results."""


class MalformedCall(PolderError):
    """Calldata that names no PollCrypto function or whose arguments do not decode."""


@dataclass(frozen=True)
class PollFunction:
    """One function of the precompile's ABI."""

    signature: str
    """Canonical Solidity signature; its keccak256 gives the selector."""

    output_types: tuple[str, ...]
    """ABI types of the results."""

    handler: Handler
    """What a call runs."""

    @property
    def name(self) -> str:
        """The function name, e.g. ``verifyBallot``."""
        return self.signature.split("(", 1)[0]

    @property
    def input_types(self) -> tuple[str, ...]:
        """ABI types of the arguments, read off the signature (no tuple types occur)."""
        inside = self.signature.split("(", 1)[1].rstrip(")")
        return tuple(inside.split(",")) if inside else ()

    @property
    def selector(self) -> bytes:
        """First four bytes of ``keccak256(signature)``."""
        return keccak(self.signature.encode())[:4]


@dataclass(frozen=True)
class Outcome:
    """What a call came to: enough to replay it from the cache."""

    gas: int
    """Gas the call charged in total (base included)."""

    output: bytes
    """ABI-encoded results, or the ``Error(string)`` payload of a revert."""

    reverted: bool
    """True when a check failed and the call reverts."""


@dataclass(frozen=True)
class Credential:
    """A credential as ``[POLL-CRED.1]`` encodes it: ``u8(issuer) ‖ prefix(32) ‖ signature``."""

    issuer_index: int
    """Position (0-based) of the issuer in the poll's issuer list."""

    message_prefix: bytes
    """The RFC 9474 random prefix of the signed message."""

    signature: bytes
    """The finalized RSA-PSS signature on ``prefix ‖ compute_credential_message(…)``."""


class VerdictCache:
    """Outcomes by ``keccak256(calldata)``, the least recently used evicted first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[bytes, Outcome] = OrderedDict()
        # RPC calls and block execution may run on different threads.
        self._lock = threading.Lock()

    def get(self, key: bytes) -> Outcome | None:
        """Return the outcome stored under ``key`` (and mark it recently used)."""
        with self._lock:
            outcome = self._entries.get(key)
            if outcome is not None:
                self._entries.move_to_end(key)
            return outcome

    def put(self, key: bytes, outcome: Outcome) -> None:
        """Store ``outcome``, evicting the least recently used beyond the size."""
        with self._lock:
            self._entries[key] = outcome
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every outcome."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


VERDICT_CACHE = VerdictCache(VERDICT_CACHE_SIZE)
"""The process-wide cache: outcomes do not depend on the chain or its state."""


# --- the precompile ---------------------------------------------------------------


def run_poll_crypto(computation: ComputationAPI) -> ComputationAPI:
    """The precompile function py-evm calls: charge, check, return or revert."""
    calldata = computation.msg.data_as_bytes
    key = keccak(calldata)
    outcome = VERDICT_CACHE.get(key)
    if outcome is None:
        outcome = compute_outcome(calldata, lambda gas: computation.consume_gas(gas, "PollCrypto"))
        # Only finished outcomes get here: OutOfGas depends on the caller's gas,
        # not on the calldata, and propagates past this line uncached.
        VERDICT_CACHE.put(key, outcome)
    else:
        computation.consume_gas(outcome.gas, "PollCrypto (cached outcome)")
    computation.output = outcome.output
    if outcome.reverted:
        raise Revert(decode_error(outcome.output))
    return computation


def compute_outcome(calldata: bytes, consume_gas: GasCharge) -> Outcome:
    """Decode, charge and run one call; a failed check becomes a reverting outcome."""
    charged = 0

    def charge(gas: int) -> None:
        nonlocal charged
        consume_gas(gas)
        charged += gas

    charge(GAS_BASE)
    try:
        function, arguments = decode_call(calldata)
        results = function.handler(arguments, charge)
    except PolderError as error:
        return Outcome(gas=charged, output=encode_error(error.message), reverted=True)
    return Outcome(gas=charged, output=encode(list(function.output_types), results), reverted=False)


def encode_error(reason: str) -> bytes:
    """The standard revert payload ``0x08c379a0 ‖ abi.encode(reason)``."""
    return ERROR_SELECTOR + encode(["string"], [reason])


def decode_error(payload: bytes) -> str:
    """The reason inside an ``Error(string)`` payload made by :func:`encode_error`."""
    (reason,) = decode(["string"], payload[len(ERROR_SELECTOR) :])
    return str(reason)


# --- calldata ---------------------------------------------------------------------


def decode_call(calldata: bytes) -> tuple[PollFunction, tuple[Any, ...]]:
    """Find the function and decode its arguments."""
    if len(calldata) < len(ERROR_SELECTOR):
        raise MalformedCall(
            f"malformed call: {len(calldata)} bytes of calldata, no 4-byte function selector",
            reason="selector",
        )
    function = FUNCTIONS.get(calldata[:4])
    if function is None:
        raise MalformedCall(
            f"unknown function selector 0x{calldata[:4].hex()}", reason="unknown-selector"
        )
    arguments = calldata[4:]
    types = list(function.input_types)
    validate_array_sizes(function.name, types, arguments)
    try:
        values = decode(types, arguments)
    except (DecodingError, OverflowError) as error:  # lengths beyond sys.maxsize overflow
        raise MalformedCall(
            f"malformed call: {function.name} arguments do not decode "
            f"({str(error).split(':', 1)[0]})",
            reason="calldata",
        ) from None
    # Not required to be canonical: Vyper leaves the padding of dynamic
    # arguments as it finds it in memory, and padding carries no meaning.
    return function, values


def validate_array_sizes(name: str, types: Sequence[str], arguments: bytes) -> None:
    """Refuse a ``bytes[]`` whose elements add up to more bytes than the calldata.

    The ABI lets many offsets point at one element. eth_abi follows each, so
    a few kilobytes of offsets at one large element would decode to gigabytes,
    before any check or gas charge could stop it.
    """
    for position, abi_type in enumerate(types):
        if abi_type != "bytes[]":
            continue
        start = read_word(name, arguments, WORD_SIZE * position)
        count = read_word(name, arguments, start)
        if count > len(arguments) // WORD_SIZE:
            raise MalformedCall(
                f"malformed call: {name} argument {position} claims {count} elements",
                reason="calldata",
            )
        total = 0
        for item in range(count):
            offset = read_word(name, arguments, start + WORD_SIZE * (1 + item))
            total += read_word(name, arguments, start + WORD_SIZE + offset)
        if total > len(arguments):
            raise MalformedCall(
                f"malformed call: {name} argument {position} elements overlap",
                reason="calldata",
            )


def read_word(name: str, arguments: bytes, position: int) -> int:
    """The ABI word at ``position`` as an unsigned integer."""
    if position + WORD_SIZE > len(arguments):
        raise MalformedCall(
            f"malformed call: {name} arguments do not decode: offset out of range",
            reason="calldata",
        )
    return int.from_bytes(arguments[position : position + WORD_SIZE], "big")


def decode_address(value: str) -> bytes:
    """eth_abi's checksummed ``0x…`` string as the 20 address bytes."""
    return bytes.fromhex(value[2:])


# --- shared checks ----------------------------------------------------------------


@contextmanager
def naming(context: str) -> Iterator[None]:
    """Prefix the message of a failed check with what was being checked."""
    try:
        yield
    except PolderError as error:
        raise type(error)(f"{context}: {error.message}", **error.data) from None


def compute_option_count(data: bytes, what: str, default: int) -> int:
    """Options held by ``data`` (m x 66 bytes); ``default`` when it is empty."""
    count, rest = divmod(len(data), CIPHERTEXT_SIZE)
    if rest:
        raise InvalidEncoding(
            f"{what}: {len(data)} bytes are not whole {CIPHERTEXT_SIZE}-byte ciphertexts",
            reason="ciphertexts",
        )
    count = count or default
    if not 1 <= count <= MAX_OPTIONS:
        raise InvalidEncoding(
            f"{what}: {count} options, not 1..{MAX_OPTIONS}", reason="option-count"
        )
    return count


def decode_ciphertexts(data: bytes, option_count: int, what: str) -> tuple[Ciphertext, ...]:
    """``option_count`` ciphertexts; empty ``data`` means that many encryptions of zero."""
    if not data:
        return (ZERO_CIPHERTEXT,) * option_count
    if len(data) != option_count * CIPHERTEXT_SIZE:
        raise InvalidEncoding(
            f"{what}: {len(data)} bytes, expected {option_count} ciphertexts of "
            f"{CIPHERTEXT_SIZE} bytes",
            reason="ciphertexts",
        )
    ciphertexts = []
    for option in range(option_count):
        with naming(f"{what}: option {option}"):
            chunk = data[option * CIPHERTEXT_SIZE : (option + 1) * CIPHERTEXT_SIZE]
            ciphertexts.append(Ciphertext.decode(chunk))
    return tuple(ciphertexts)


def encode_ciphertexts(ciphertexts: Sequence[Ciphertext]) -> bytes:
    """``enc(A) ‖ enc(B)`` per option, in option order."""
    return b"".join(ciphertext.encode() for ciphertext in ciphertexts)


def decode_credential(data: bytes) -> Credential:
    """Split ``u8(issuer) ‖ prefix(32) ‖ signature`` (the signature's size is checked later)."""
    if len(data) <= 1 + PREFIX_SIZE:
        raise InvalidCredential(
            f"{len(data)} bytes, too short for issuer index, prefix and signature",
            reason="credential-size",
        )
    return Credential(data[0], data[1 : 1 + PREFIX_SIZE], data[1 + PREFIX_SIZE :])


def validate_credentials(
    poll_id: bytes,
    voting_address: bytes,
    issuer_threshold: int,
    issuer_keys: Sequence[bytes],
    credentials: Sequence[bytes],
) -> None:
    """Every credential verifies and they come from ``issuer_threshold`` distinct issuers."""
    if not 1 <= issuer_threshold <= len(issuer_keys):
        raise InvalidCredential(
            f"issuer threshold {issuer_threshold} is not in 1..{len(issuer_keys)} "
            f"(the poll's issuers)",
            reason="issuer-threshold",
        )
    keys: dict[int, RSA.RsaKey] = {}
    for position, data in enumerate(credentials):
        with naming(f"credential {position}"):
            credential = decode_credential(data)
        issuer = credential.issuer_index
        if issuer >= len(issuer_keys):
            raise InvalidCredential(
                f"credential {position}: issuer {issuer} is not one of the poll's "
                f"{len(issuer_keys)} issuers (0..{len(issuer_keys) - 1})",
                reason="issuer-index",
            )
        if issuer not in keys:
            # Keys are decoded only when used: one bad key must not stop ballots
            # that carry enough credentials from the other issuers.
            with naming(f"issuer {issuer}"):
                keys[issuer] = decode_issuer_key(issuer_keys[issuer])
        validate_issuer_credential(keys[issuer], poll_id, voting_address, credential)
    # Every credential verified, so the decoded keys are exactly the issuers
    # with a valid credential; a repeated issuer counts once.
    if len(keys) < issuer_threshold:
        raise InvalidCredential(
            f"credentials from {len(keys)} distinct issuer(s), {issuer_threshold} required",
            reason="too-few-credentials",
        )


@lru_cache(maxsize=ISSUER_KEY_CACHE_SIZE)
def decode_issuer_key(data: bytes) -> RSA.RsaKey:
    """``decode_public_key``, remembered: parsing DER costs as much as verifying."""
    return decode_public_key(data)


def validate_issuer_credential(
    public_key: RSA.RsaKey, poll_id: bytes, voting_address: bytes, credential: Credential
) -> None:
    """One credential verifies for this poll and voting address under its issuer's key."""
    try:
        validate_credential(
            public_key, poll_id, voting_address, credential.message_prefix, credential.signature
        )
    except InvalidCredential as error:
        raise InvalidCredential(
            f"credential from issuer {credential.issuer_index} does not verify ({error.message})",
            reason=error.data.get("reason", "signature"),
            issuer=credential.issuer_index,
        ) from None


# --- the six functions ------------------------------------------------------------


def on_verify_ballot(arguments: tuple[Any, ...], charge: GasCharge) -> tuple[Any, ...]:
    """``[POLL-CHECK-BALLOT.1]``: the ballot and its credentials; its tracking code, ciphertexts."""
    (
        poll_id,
        election_key,
        option_count,
        min_selections,
        max_selections,
        voter,
        issuer_threshold,
        issuer_keys,
        credentials,
        encoded_ballot,
    ) = arguments
    charge(GAS_BALLOT + GAS_BALLOT_OPTION * option_count + GAS_CREDENTIAL * len(credentials))
    voting_address = decode_address(voter)
    key = ElectionKey.decode(election_key)
    params = PollParameters(poll_id, key.public_key, option_count, min_selections, max_selections)
    ballot = EncryptedBallot.decode(encoded_ballot)
    with naming("ballot"):
        validate_ballot(params, voting_address, ballot)
    validate_credentials(poll_id, voting_address, issuer_threshold, issuer_keys, credentials)
    ciphertexts = encode_ciphertexts([selection.ciphertext for selection in ballot.selections])
    return compute_tracking_code(ballot), ciphertexts


def on_verify_dealing(arguments: tuple[Any, ...], charge: GasCharge) -> tuple[Any, ...]:
    """``[POLL-CHECK-DEALING.1]``: dealer ``dealerIndex``'s dealing for ``(N, t)`` verifies."""
    poll_id, trustee_count, threshold, dealer_index, encoded_dealing = arguments
    charge(GAS_COMMITMENT * threshold)
    dealing = Dealing.decode(encoded_dealing)
    if dealing.dealer_index != dealer_index:
        raise InvalidKeyGeneration(
            f"dealing: it is dealer {dealing.dealer_index}'s, not dealer {dealer_index}'s",
            reason="dealer-index",
            dealer=dealing.dealer_index,
        )
    with naming("dealing"):
        validate_dealing(poll_id, trustee_count, threshold, dealing)
    return (True,)


def on_compute_election_key(arguments: tuple[Any, ...], charge: GasCharge) -> tuple[Any, ...]:
    """``[POLL-CHECK-KEY.1]``: at least ``threshold`` valid dealings; the encoded key."""
    poll_id, trustee_count, threshold, encoded_dealings = arguments
    charge(GAS_DEALING * len(encoded_dealings))
    dealings = []
    for position, data in enumerate(encoded_dealings):
        with naming(f"dealings[{position}]"):
            dealings.append(Dealing.decode(data))
    with naming("election key"):
        key = compute_election_key(poll_id, trustee_count, threshold, dealings)
    return (key.encode(),)


def on_add_ciphertexts(arguments: tuple[Any, ...], charge: GasCharge) -> tuple[Any, ...]:
    """``[POLL-CHECK-AGG.1]``: ``aggregate + added - removed``, option by option."""
    encoded_aggregate, encoded_added, encoded_removed = arguments
    if not encoded_added:
        raise InvalidEncoding("added: no ciphertexts", reason="ciphertexts")
    option_count = compute_option_count(encoded_added, "added", 0)
    charge(GAS_AGGREGATE_OPTION * option_count)
    aggregate = decode_ciphertexts(encoded_aggregate, option_count, "aggregate")
    added = decode_ciphertexts(encoded_added, option_count, "added")
    removed = decode_ciphertexts(encoded_removed, option_count, "removed")
    result = [
        compute_ciphertext_sum((total, plus, Ciphertext(a=-minus.a, b=-minus.b)))
        for total, plus, minus in zip(aggregate, added, removed, strict=True)
    ]
    return (encode_ciphertexts(result),)


def on_verify_partial(arguments: tuple[Any, ...], charge: GasCharge) -> tuple[Any, ...]:
    """``[POLL-CHECK-PARTIAL.1]``: one trustee's partial decryption; its trustee index."""
    poll_id, election_key, encoded_aggregate, encoded_partial = arguments
    # An empty aggregate (no ballot counted) takes its option count from the partial.
    claimed = encoded_partial[1] if len(encoded_partial) > 1 else 0
    option_count = compute_option_count(encoded_aggregate, "aggregate", claimed)
    charge(GAS_PARTIAL_OPTION * option_count)
    key = ElectionKey.decode(election_key)
    aggregate = decode_ciphertexts(encoded_aggregate, option_count, "aggregate")
    partial = PartialDecryption.decode(encoded_partial)
    with naming("partial decryption"):
        validate_partial_decryption(poll_id, key, aggregate, partial)
    return (partial.trustee_index,)


def on_verify_tally(arguments: tuple[Any, ...], charge: GasCharge) -> tuple[Any, ...]:
    """``[POLL-CHECK-TALLY.1]``: the partials combine to ``counts``, each at most ``bound``."""
    poll_id, election_key, encoded_aggregate, encoded_partials, counts, bound = arguments
    if bound > MAX_TALLY_BOUND:
        # Checked before charging: one gas per unit would otherwise burn all gas.
        raise InvalidDecryption(
            f"tally: bound {bound} is above the largest supported count {MAX_TALLY_BOUND}",
            reason="bound",
        )
    option_count = compute_option_count(encoded_aggregate, "aggregate", len(counts))
    charge(
        GAS_TALLY_OPTION_PARTIAL * option_count * len(encoded_partials)
        + GAS_TALLY_BOUND_UNIT * bound
    )
    key = ElectionKey.decode(election_key)
    aggregate = decode_ciphertexts(encoded_aggregate, option_count, "aggregate")
    if len(counts) != option_count:
        raise InvalidDecryption(
            f"tally: {len(counts)} counts for {option_count} options", reason="count-shape"
        )
    partials = []
    for position, data in enumerate(encoded_partials):
        with naming(f"partials[{position}]"):
            partials.append(PartialDecryption.decode(data))
    with naming("tally"):
        decrypted = compute_tally(poll_id, key, aggregate, partials, bound)
    validate_counts(counts, decrypted)
    return (True,)


def validate_counts(counts: Sequence[int], decrypted: Sequence[int]) -> None:
    """The published counts are the decrypted ones, option by option."""
    for option, (claimed, actual) in enumerate(zip(counts, decrypted, strict=True)):
        if claimed != actual:
            raise InvalidDecryption(
                f"tally: counts do not match the decryption (option {option}: "
                f"{claimed} published, {actual} decrypted)",
                reason="counts",
                option=option,
            )


VERIFY_BALLOT_FUNCTION = PollFunction(
    "verifyBallot(bytes32,bytes,uint8,uint8,uint8,address,uint8,bytes[],bytes[],bytes)",
    ("bytes32", "bytes"),
    on_verify_ballot,
)
VERIFY_DEALING_FUNCTION = PollFunction(
    "verifyDealing(bytes32,uint8,uint8,uint8,bytes)", ("bool",), on_verify_dealing
)
COMPUTE_ELECTION_KEY_FUNCTION = PollFunction(
    "computeElectionKey(bytes32,uint8,uint8,bytes[])", ("bytes",), on_compute_election_key
)
ADD_CIPHERTEXTS_FUNCTION = PollFunction(
    "addCiphertexts(bytes,bytes,bytes)", ("bytes",), on_add_ciphertexts
)
VERIFY_PARTIAL_FUNCTION = PollFunction(
    "verifyPartial(bytes32,bytes,bytes,bytes)", ("uint8",), on_verify_partial
)
VERIFY_TALLY_FUNCTION = PollFunction(
    "verifyTally(bytes32,bytes,bytes,bytes[],uint256[],uint256)", ("bool",), on_verify_tally
)

VERIFY_BALLOT = VERIFY_BALLOT_FUNCTION.selector
VERIFY_DEALING = VERIFY_DEALING_FUNCTION.selector
COMPUTE_ELECTION_KEY = COMPUTE_ELECTION_KEY_FUNCTION.selector
ADD_CIPHERTEXTS = ADD_CIPHERTEXTS_FUNCTION.selector
VERIFY_PARTIAL = VERIFY_PARTIAL_FUNCTION.selector
VERIFY_TALLY = VERIFY_TALLY_FUNCTION.selector

FUNCTIONS: dict[bytes, PollFunction] = {
    function.selector: function
    for function in (
        VERIFY_BALLOT_FUNCTION,
        VERIFY_DEALING_FUNCTION,
        COMPUTE_ELECTION_KEY_FUNCTION,
        ADD_CIPHERTEXTS_FUNCTION,
        VERIFY_PARTIAL_FUNCTION,
        VERIFY_TALLY_FUNCTION,
    )
}
"""Every function of the precompile, by selector."""


def encode_call(selector: bytes, *arguments: Any) -> bytes:
    """Calldata for the function ``selector`` (what a Solidity or Vyper caller sends)."""
    return selector + encode(list(FUNCTIONS[selector].input_types), arguments)
