"""The issuance service of one municipality: blind-signs one credential per voter and poll.

HTTP API (JSON in, JSON out; every error is ``{"error": {"code", "message"}}``):

=====================================  =========================================
``POST /polls/{pollId}/credentials``   ``{"voterId", "code", "blindedMessage"}``
                                       → ``{"blindSignature", "issuer",
                                       "issuedCount"}``
``GET /polls/{pollId}/issued``         → ``{"count"}``
``GET /key``                           → ``{"publicKey": "0x<DER>", "name"}``
=====================================  =========================================

A request is checked in this order, so an answer reveals nothing it need not:
poll id (400, 404), body (413, 400), lock-out (429), voter id and code
together (401, one message for an unknown id and a wrong code, same scrypt
cost), then issuance (409). The transport-free core is
:func:`process_credential_request`; the store and the RSA signing run on one
dedicated thread, so requests are serialized and the event loop never blocks
on them. Logs never carry a code, nor a voter id next to a blinded message.

Shutdown (``cleanup_ctx``, after aiohttp stopped accepting and let in-flight
requests finish): report pending counts once more, close the roll last.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from Crypto.PublicKey import RSA

from clients.issuer.errors import (
    IssuerError,
    MalformedRequest,
    PollNotServed,
    RequestTooLarge,
    VoterLocked,
    WrongCode,
)
from clients.issuer.reporter import DEFAULT_REPORT_INTERVAL, IssuanceReporter, ReportIssued
from clients.issuer.roll import (
    MAX_CODE_LENGTH,
    apply_issuance,
    count_issued,
    get_failure_count,
    get_issued_counts,
    is_code_correct,
    is_valid_voter_id,
    open_roll,
    record_failure,
)
from contracts.ballot.blind import encode_public_key, sign_blinded_message

log = logging.getLogger("polder.issuer")

T = TypeVar("T")

DEFAULT_PORT = 8750
"""Port ``polder issuer serve`` listens on unless told."""

MAX_BODY_BYTES = 8 * 1024
"""Largest request body: a 4096-bit blinded message is 1,026 hex characters."""

MAX_FAILED_CODES = 5
"""Wrong codes per voter id and poll before the id is locked for that poll."""

WRONG_CODE_MESSAGE = "wrong voter id or code"
"""The one answer for an unknown voter id and for a wrong code."""

_POLL_ID = re.compile(r"(0x)?[0-9a-fA-F]{64}")
_HEX = re.compile(r"0x[0-9a-fA-F]*")


@dataclass(frozen=True)
class IssuerConfig:
    """What one issuance service needs."""

    name: str
    """The issuing municipality, as voters and answers name it."""
    key: RSA.RsaKey
    """The issuer's private RSA key (its public half is in each poll's ``issuerKeys``)."""
    roll_path: Path
    """The SQLite voter roll and issuance store."""
    polls: Collection[bytes] | Callable[[bytes], bool]
    """The 32-byte poll ids served, or a callable that says whether one is."""
    max_failed_codes: int = MAX_FAILED_CODES
    """Wrong codes per voter id and poll before the id is locked."""
    max_body_bytes: int = MAX_BODY_BYTES
    """Largest request body accepted."""
    report: ReportIssued | None = None
    """Optional ``report(poll_id, count)`` hook that puts counts on chain."""
    report_interval: float = DEFAULT_REPORT_INTERVAL
    """Seconds between two ``report`` calls for one poll."""


@dataclass(frozen=True)
class CredentialRequest:
    """A decoded ``POST /polls/{pollId}/credentials`` body."""

    voter_id: str
    """The voter id on the roll."""
    code: str
    """The one-time code, as typed."""
    blinded_message: bytes
    """The RFC 9474 blinded message, exactly the modulus size."""


@dataclass(frozen=True)
class Issuance:
    """A credential signed and recorded."""

    blind_signature: bytes
    """RFC 9474 BlindSign output for the request's blinded message."""
    count: int
    """Credentials issued for the poll, this one included."""


def is_poll_served(polls: Collection[bytes] | Callable[[bytes], bool], poll_id: bytes) -> bool:
    """True when the configured ``polls`` include ``poll_id``."""
    if callable(polls):
        return bool(polls(poll_id))
    return poll_id in polls


def decode_poll_id(text: str) -> bytes:
    """A poll id from a URL: 64 hex digits, ``0x`` optional."""
    if not _POLL_ID.fullmatch(text):
        raise MalformedRequest("poll id must be 32 bytes as 0x-prefixed hex")
    return bytes.fromhex(text.removeprefix("0x"))


def decode_credential_request(body: bytes, key: RSA.RsaKey) -> CredentialRequest:
    """Parse and check a request body; everything wrong with it is a :class:`MalformedRequest`."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedRequest("body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise MalformedRequest("body must be a JSON object")
    for field in ("voterId", "code", "blindedMessage"):
        if not isinstance(payload.get(field), str):
            raise MalformedRequest(f"{field} is missing or not a string")
    voter_id, code, blinded = payload["voterId"], payload["code"], payload["blindedMessage"]
    if not is_valid_voter_id(voter_id):
        raise MalformedRequest("voterId is not a valid voter id")
    if not 0 < len(code) <= MAX_CODE_LENGTH:
        raise MalformedRequest(f"code must be 1..{MAX_CODE_LENGTH} characters")
    size = (key.n.bit_length() + 7) // 8
    if not _HEX.fullmatch(blinded) or len(blinded) != 2 + 2 * size:
        raise MalformedRequest(f"blindedMessage must be {size} bytes as 0x-prefixed hex")
    message = bytes.fromhex(blinded[2:])
    if int.from_bytes(message, "big") >= key.n:
        raise MalformedRequest("blindedMessage is not below the issuer's modulus")
    return CredentialRequest(voter_id, code, message)


def process_credential_request(
    connection: sqlite3.Connection,
    key: RSA.RsaKey,
    poll_id: bytes,
    request: CredentialRequest,
    max_failed_codes: int = MAX_FAILED_CODES,
) -> Issuance:
    """Check the voter and blind-sign once per poll (blocking: runs on the roll's thread)."""
    if get_failure_count(connection, poll_id, request.voter_id) >= max_failed_codes:
        raise VoterLocked(
            "this voter id is locked for this poll after too many wrong codes; "
            "the municipality can unlock it"
        )
    if not is_code_correct(connection, request.voter_id, request.code):
        failures = record_failure(connection, poll_id, request.voter_id)
        if failures == max_failed_codes:
            log.warning(
                "voter id %r locked for poll 0x%s after %d wrong codes",
                request.voter_id,
                poll_id.hex(),
                failures,
            )
        raise WrongCode(WRONG_CODE_MESSAGE)
    signature, count = apply_issuance(
        connection,
        poll_id,
        request.voter_id,
        functools.partial(sign_blinded_message, key, request.blinded_message),
    )
    return Issuance(signature, count)


class IssuerState:
    """What a running service holds: its configuration, the roll and the roll's thread."""

    def __init__(
        self, config: IssuerConfig, executor: ThreadPoolExecutor, connection: sqlite3.Connection
    ) -> None:
        self.config = config
        self.executor = executor
        """The one thread that opened ``connection`` and does all roll and signing work."""
        self.connection = connection
        self.public_key = encode_public_key(config.key)
        self.reporter = (
            IssuanceReporter(config.report, config.report_interval) if config.report else None
        )

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking roll work on the roll's one thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args))


STATE_KEY = web.AppKey("issuer", IssuerState)


def error_response(error: IssuerError) -> web.Response:
    """The JSON error object with the error's stable code and HTTP status."""
    body = {"error": {"code": error.code, "message": error.message}}
    return web.json_response(body, status=error.http_status)


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer every failure, aiohttp's own 404/405/413 included, as a JSON error."""
    try:
        return await handler(request)
    except IssuerError as exc:
        return error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        return error_response(RequestTooLarge("request body is too large"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = IssuerError(exc.reason)
        error.http_status = exc.status
        return error_response(error)
    except Exception:
        log.exception("internal error answering %s %s", request.method, request.path)
        return error_response(IssuerError("internal error; try again later"))


def _served_poll(request: web.Request) -> bytes:
    poll_id = decode_poll_id(request.match_info["poll_id"])
    if not is_poll_served(request.app[STATE_KEY].config.polls, poll_id):
        raise PollNotServed(f"this issuer does not issue credentials for poll 0x{poll_id.hex()}")
    return poll_id


async def _read_body(request: web.Request, limit: int) -> bytes:
    too_large = RequestTooLarge(f"request body exceeds {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None


async def handle_credentials(request: web.Request) -> web.Response:
    """POST /polls/{poll_id}/credentials: blind-sign one credential."""
    state = request.app[STATE_KEY]
    config = state.config
    poll_id = _served_poll(request)
    body = await _read_body(request, config.max_body_bytes)
    credential_request = decode_credential_request(body, config.key)
    issuance = await state.run(
        process_credential_request,
        state.connection,
        config.key,
        poll_id,
        credential_request,
        config.max_failed_codes,
    )
    if state.reporter is not None:
        state.reporter.on_issued(poll_id, issuance.count)
    log.info("issued credential %d for poll 0x%s", issuance.count, poll_id.hex())
    return web.json_response(
        {
            "blindSignature": "0x" + issuance.blind_signature.hex(),
            "issuer": config.name,
            "issuedCount": issuance.count,
        }
    )


async def handle_issued(request: web.Request) -> web.Response:
    """GET /polls/{poll_id}/issued: credentials issued so far for the poll."""
    state = request.app[STATE_KEY]
    poll_id = _served_poll(request)
    return web.json_response({"count": await state.run(count_issued, state.connection, poll_id)})


async def handle_key(request: web.Request) -> web.Response:
    """GET /key: the issuer's public key (DER SubjectPublicKeyInfo) and name."""
    state = request.app[STATE_KEY]
    return web.json_response(
        {"publicKey": "0x" + state.public_key.hex(), "name": state.config.name}
    )


async def _report_counts_on_start(state: IssuerState) -> None:
    # A crash may have lost a pending report: put the stored counts on chain again.
    if state.reporter is None:
        return
    counts = await state.run(get_issued_counts, state.connection)
    for poll_id, count in counts.items():
        if is_poll_served(state.config.polls, poll_id):
            state.reporter.on_issued(poll_id, count)


def make_app(config: IssuerConfig) -> web.Application:
    """Build the aiohttp application; the roll opens in its cleanup context."""
    if not config.key.has_private():
        raise ValueError("the issuance service needs the issuer's private key")
    if not callable(config.polls) and any(len(p) != 32 for p in config.polls):
        raise ValueError("poll ids must be 32 bytes")
    # The limit aiohttp enforces is a backstop; _read_body answers first.
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[json_errors])

    async def roll_context(app: web.Application) -> AsyncIterator[None]:
        # sqlite3 connections refuse use from another thread than their creator's:
        # the roll opens on the thread that will do all its work.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="issuer-roll")
        try:
            connection = await asyncio.get_running_loop().run_in_executor(
                executor, open_roll, config.roll_path
            )
        except BaseException:
            executor.shutdown()
            raise
        state = IssuerState(config, executor, connection)
        app[STATE_KEY] = state
        await _report_counts_on_start(state)
        log.info("issuer %s serving with roll %s", config.name, config.roll_path)
        yield
        if state.reporter is not None:
            await state.reporter.close()
        await state.run(state.connection.close)
        state.executor.shutdown()

    app.cleanup_ctx.append(roll_context)
    app.router.add_post("/polls/{poll_id}/credentials", handle_credentials)
    app.router.add_get("/polls/{poll_id}/issued", handle_issued)
    app.router.add_get("/key", handle_key)
    return app
