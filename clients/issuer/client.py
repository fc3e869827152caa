"""What a voter's client does against one issuer: obtain one verified credential.

The client makes ``compute_credential_message(poll_id, voting_address)``,
prepares and blinds it (RFC 9474), sends only the blinded message with the
voter id and code, then unblinds the answer and verifies it. The issuer never
sees the voting address nor the signature it produced.

Verify against the issuer key the poll stores on chain (``issuerKeys[i]``)
when you have it: a key fetched from the issuer itself could be one made for
this voter alone, which would let the issuer recognise the credential later.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from Crypto.PublicKey import RSA

from clients.issuer.errors import (
    ERRORS_BY_CODE,
    AlreadyIssued,
    InvalidIssuerAnswer,
    IssuerError,
    IssuerUnavailable,
    MalformedRequest,
    PollNotServed,
    RequestTooLarge,
    VoterLocked,
    WrongCode,
)
from contracts.ballot.blind import (
    PREFIX_SIZE,
    blind_message,
    compute_credential_message,
    decode_public_key,
    finalize_signature,
    prepare_message,
    validate_credential,
)
from contracts.ballot.errors import InvalidCredential

MAX_ANSWER_BYTES = 64 * 1024
"""Largest answer read from an issuer."""

DEFAULT_TIMEOUT = 30.0
"""Seconds to wait for one answer (signing takes milliseconds; the network may not)."""


@dataclass(frozen=True)
class Credential:
    """One issuer's credential for a voting address in a poll ([POLL-CRED.1])."""

    issuer_index: int
    """The issuer's 0-based position in the poll's issuer list."""
    message_prefix: bytes
    """The 32 random bytes RFC 9474's randomized Prepare put before the message."""
    signature: bytes
    """The finalized RSA-PSS signature on ``message_prefix ‖ credential message``."""


@dataclass(frozen=True)
class IssuerKey:
    """What ``GET /key`` serves."""

    name: str
    """The issuing municipality's name."""
    public_key: RSA.RsaKey
    """Its RSA public key."""


def encode_credential(credential: Credential) -> bytes:
    """``u8(issuerIndex) ‖ prefix(32) ‖ signature`` ([POLL-CRED.1])."""
    if not 0 <= credential.issuer_index <= 255:
        raise ValueError("issuer index must fit in one byte")
    if len(credential.message_prefix) != PREFIX_SIZE:
        raise ValueError(f"message prefix must be {PREFIX_SIZE} bytes")
    return bytes([credential.issuer_index]) + credential.message_prefix + credential.signature


def decode_credential(data: bytes) -> Credential:
    """Split an encoded credential; the signature is every byte after the prefix."""
    if len(data) <= 1 + PREFIX_SIZE:
        raise InvalidCredential("credential is too short", reason="credential-length")
    return Credential(data[0], data[1 : 1 + PREFIX_SIZE], data[1 + PREFIX_SIZE :])


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_issuer_url(url: str, insecure: bool = False) -> None:
    """Refuse anything but https, or http to this machine (the code travels in the body)."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (
        parts.scheme == "http" and (insecure or _is_loopback(parts.hostname))
    ):
        return
    raise ValueError(f"issuer URL must start with https:// (http:// only to this machine): {url}")


def _advice(error: type[IssuerError], issuer: str, poll_id: bytes, detail: str) -> str:
    if error is WrongCode:
        return (
            f"wrong voter id or code for {issuer}; check both against the letter from the "
            "municipality (after a few wrong tries the voter id is locked for this poll)"
        )
    if error is AlreadyIssued:
        return (
            f"this voter id already received a credential for this poll from {issuer}; "
            "an issuer gives one credential per voter and poll"
        )
    if error is VoterLocked:
        return (
            f"this voter id is locked for this poll at {issuer} after too many wrong codes; "
            "contact the municipality to have it unlocked"
        )
    if error is PollNotServed:
        return (
            f"{issuer} does not issue credentials for poll 0x{poll_id.hex()}; "
            "check the poll id and the issuer's URL"
        )
    if error in (MalformedRequest, RequestTooLarge):
        return f"{issuer} refused the request ({detail}); this is a bug in the voter client"
    return f"{issuer} could not issue a credential ({detail}); try again later"


def _error_from_answer(status: int, raw: bytes, issuer: str, poll_id: bytes) -> IssuerError:
    try:
        error = json.loads(raw)["error"]
        code, detail = int(error["code"]), str(error["message"])
    except (ValueError, TypeError, KeyError):
        return IssuerUnavailable(issuer, f"{issuer} answered HTTP {status} without a JSON error")
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        return IssuerUnavailable(issuer, f"{issuer} answered HTTP {status}: {detail}")
    return cls(_advice(cls, issuer, poll_id, detail), issuer=issuer, detail=detail)


def _call(
    url: str, issuer: str, poll_id: bytes, body: dict[str, Any] | None, timeout: float
) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - scheme checked by validate_issuer_url
        url, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            raw = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise _error_from_answer(exc.code, exc.read(MAX_ANSWER_BYTES), issuer, poll_id) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise IssuerUnavailable(issuer, f"{issuer} cannot be reached: {exc}") from exc
    if len(raw) > MAX_ANSWER_BYTES:
        raise IssuerUnavailable(issuer, f"{issuer} answered more than {MAX_ANSWER_BYTES} bytes")
    try:
        answer = json.loads(raw)
    except (ValueError, RecursionError):
        answer = None
    if not isinstance(answer, dict):
        raise IssuerUnavailable(issuer, f"{issuer} did not answer with a JSON object")
    return answer


def _hex_field(answer: dict[str, Any], field: str, issuer: str) -> bytes:
    value = answer.get(field)
    if not isinstance(value, str) or not value.startswith("0x"):
        raise InvalidIssuerAnswer(f"{issuer}'s answer has no 0x-hex {field}", issuer=issuer)
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise InvalidIssuerAnswer(f"{issuer}'s {field} is not hex", issuer=issuer) from None


def fetch_issuer_key(
    url: str, timeout: float = DEFAULT_TIMEOUT, insecure: bool = False
) -> IssuerKey:
    """``GET /key``: the issuer's name and public key (prefer the copy on chain)."""
    validate_issuer_url(url, insecure)
    answer = _call(url.rstrip("/") + "/key", url, b"", None, timeout)
    name = answer.get("name") if isinstance(answer.get("name"), str) else url
    try:
        key = decode_public_key(_hex_field(answer, "publicKey", url))
    except InvalidCredential as exc:
        raise InvalidIssuerAnswer(f"{url} serves a bad key: {exc.message}", issuer=url) from exc
    return IssuerKey(str(name), key)


def request_credential(
    url: str,
    poll_id: bytes,
    voter_id: str,
    code: str,
    voting_address: bytes,
    *,
    issuer_index: int,
    public_key: RSA.RsaKey | bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    insecure: bool = False,
) -> Credential:
    """Obtain issuer ``issuer_index``'s credential for ``voting_address`` in ``poll_id``.

    ``public_key`` is the issuer's key (an RSA key or its DER, ideally from
    the poll on chain); without it the key is fetched from ``GET /key``. The
    credential is verified before it is returned. Raises :class:`WrongCode`,
    :class:`AlreadyIssued`, :class:`VoterLocked`, :class:`PollNotServed`,
    :class:`IssuerUnavailable` or :class:`InvalidIssuerAnswer`, each with a
    message that says what to do.
    """
    if len(poll_id) != 32 or len(voting_address) != 20:
        raise ValueError("poll id must be 32 bytes and the voting address 20 bytes")
    if not 0 <= issuer_index <= 255:
        raise ValueError("issuer index must fit in one byte")
    validate_issuer_url(url, insecure)
    if public_key is None:
        key = fetch_issuer_key(url, timeout, insecure).public_key
    elif isinstance(public_key, bytes):
        key = decode_public_key(public_key)
    else:
        key = public_key
    prepared = prepare_message(compute_credential_message(poll_id, voting_address))
    blinded = blind_message(key, prepared)
    answer = _call(
        f"{url.rstrip('/')}/polls/0x{poll_id.hex()}/credentials",
        url,
        poll_id,
        {"voterId": voter_id, "code": code, "blindedMessage": "0x" + blinded.blinded_message.hex()},
        timeout,
    )
    issuer = answer.get("issuer") if isinstance(answer.get("issuer"), str) else url
    blind_signature = _hex_field(answer, "blindSignature", str(issuer))
    try:
        signature = finalize_signature(key, prepared, blind_signature, blinded.inverse)
        validate_credential(key, poll_id, voting_address, prepared[:PREFIX_SIZE], signature)
    except InvalidCredential as exc:
        raise InvalidIssuerAnswer(
            f"{issuer}'s blind signature does not verify under its key ({exc.message}); "
            "the issuer misbehaved: report it to the municipality",
            issuer=str(issuer),
        ) from exc
    return Credential(issuer_index, prepared[:PREFIX_SIZE], signature)
