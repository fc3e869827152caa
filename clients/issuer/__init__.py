"""Credential issuance for polls: the municipality's service and the voter's client.

A municipality keeps a voter roll with one-time codes (the stand-in for
DigiD) and blind-signs one credential per voter id and poll (RFC 9474,
``docs/spec/ballots.md`` [BALLOT-BLIND.*]); the voter's client turns the
blind signature into the credential a ballot carries ([POLL-CRED.1]).
Library first: the CLI (``clients.issuer.cli``) is a thin layer on top.
"""

from clients.issuer.client import (
    Credential,
    IssuerKey,
    decode_credential,
    encode_credential,
    fetch_issuer_key,
    request_credential,
)
from clients.issuer.errors import (
    AlreadyIssued,
    InvalidIssuerAnswer,
    IssuerError,
    IssuerUnavailable,
    MalformedRequest,
    PollNotServed,
    RequestTooLarge,
    RollError,
    VoterLocked,
    WrongCode,
)
from clients.issuer.keys import (
    encode_issuer_public_key,
    generate_issuer_key,
    load_issuer_key,
    save_issuer_key,
)
from clients.issuer.reporter import IssuanceReporter, ReportIssued
from clients.issuer.roll import (
    add_voters,
    clear_failures,
    count_issued,
    generate_code,
    load_roll,
    open_roll,
)
from clients.issuer.service import IssuerConfig, make_app

__all__ = [
    "AlreadyIssued",
    "Credential",
    "InvalidIssuerAnswer",
    "IssuanceReporter",
    "IssuerConfig",
    "IssuerError",
    "IssuerKey",
    "IssuerUnavailable",
    "MalformedRequest",
    "PollNotServed",
    "ReportIssued",
    "RequestTooLarge",
    "RollError",
    "VoterLocked",
    "WrongCode",
    "add_voters",
    "clear_failures",
    "count_issued",
    "decode_credential",
    "encode_credential",
    "encode_issuer_public_key",
    "fetch_issuer_key",
    "generate_code",
    "generate_issuer_key",
    "load_issuer_key",
    "load_roll",
    "make_app",
    "open_roll",
    "request_credential",
    "save_issuer_key",
]
