"""Errors of credential issuance, on the service and on the voter's side.

Each class has a stable JSON-RPC-style ``code`` (the service sends it in its
JSON error object, the client maps it back to the class) and the HTTP status
the service answers with. The client's messages say what the resident should
do next; the service's say what was wrong with the request.
"""

from __future__ import annotations

from typing import Any

from consensus.errors import PolderError


class IssuerError(PolderError):
    """Issuance failed: the base class, also used for an issuer's internal errors."""

    code = -32060
    http_status = 500
    """HTTP status the service answers with."""


class MalformedRequest(IssuerError):
    """The request is not the JSON the service expects (field, type, hex or size)."""

    code = -32061
    http_status = 400


class WrongCode(IssuerError):
    """The voter id is not on the roll or the code is wrong (one error, so ids cannot be probed)."""

    code = -32062
    http_status = 401


class AlreadyIssued(IssuerError):
    """This voter id already received a credential for this poll from this issuer."""

    code = -32063
    http_status = 409


class VoterLocked(IssuerError):
    """Too many wrong codes for this voter id in this poll; the municipality must unlock it."""

    code = -32064
    http_status = 429


class PollNotServed(IssuerError):
    """The issuer does not issue credentials for this poll."""

    code = -32065
    http_status = 404


class RequestTooLarge(IssuerError):
    """The request body exceeds the service's limit."""

    code = -32066
    http_status = 413


class RollError(IssuerError):
    """The voter roll, or the file voters are added from, is wrong."""

    code = -32067


class IssuerUnavailable(IssuerError):
    """Client side: the issuer could not be reached or answered outside the protocol."""

    code = -32068
    http_status = 502

    def __init__(self, issuer: str, message: str, **data: Any) -> None:
        super().__init__(message, issuer=issuer, **data)
        self.issuer = issuer


class InvalidIssuerAnswer(IssuerError):
    """Client side: the issuer's key or blind signature does not verify (it misbehaved)."""

    code = -32069
    http_status = 502


ERRORS_BY_CODE: dict[int, type[IssuerError]] = {
    cls.code: cls
    for cls in (
        IssuerError,
        MalformedRequest,
        WrongCode,
        AlreadyIssued,
        VoterLocked,
        PollNotServed,
        RequestTooLarge,
    )
}
"""The errors a service may send, by code (what the client maps answers back to)."""
