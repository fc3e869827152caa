"""Paying at the till: the holder's EIP-712 payment authorisation ([VOUCHER-TILL.1]).

The holder's wallet signs ``Payment(merchant, id, maxAmount, nonce, expiry)``
with a random nonce and a short expiry and shows it as a QR code; the shop
decodes it, checks it locally (signed by the holder, not expired, amount
within the cap) and submits ``payWithAuthorization``. The QR payload is a
compact JSON string; :mod:`clients.budget.qr` draws it in the terminal or
saves it as a PNG (for a screen, or printed for a resident without a phone).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address

from consensus.errors import PolderError

DOMAIN_NAME = "Polder VoucherBook"
DOMAIN_VERSION = "1"
MAX_VALIDITY = 900
"""The contract refuses an authorisation valid for longer (no static QR codes)."""
PAYMENT_TYPES = {
    "Payment": [
        {"name": "merchant", "type": "address"},
        {"name": "id", "type": "uint256"},
        {"name": "maxAmount", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "expiry", "type": "uint256"},
    ]
}
FORMAT = "polder-pay/1"


class InvalidAuthorization(PolderError):
    """The payment authorisation cannot be used; ``message`` says why."""

    code = -32041


@dataclass(frozen=True)
class Authorization:
    """A holder's signed permission for one shop to charge up to ``max_amount`` once."""

    chain_id: int
    """The chain it is signed for."""
    book: str
    """The VoucherBook address (lowercase 0x)."""
    holder: str
    """The paying holder (lowercase 0x)."""
    merchant: str
    """The only shop that may submit it (lowercase 0x)."""
    token_id: int
    """The budget it pays from."""
    max_amount: int
    """The most the shop may charge."""
    nonce: int
    """Random; usable once per holder."""
    expiry: int
    """Unix time it stops being valid."""
    signature: bytes
    """65 bytes r ‖ s ‖ v."""


def compute_typed_data(auth: Authorization) -> dict[str, Any]:
    """The EIP-712 typed data the holder signs."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            **PAYMENT_TYPES,
        },
        "primaryType": "Payment",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": auth.chain_id,
            "verifyingContract": to_checksum_address(auth.book),
        },
        "message": {
            "merchant": to_checksum_address(auth.merchant),
            "id": auth.token_id,
            "maxAmount": auth.max_amount,
            "nonce": auth.nonce,
            "expiry": auth.expiry,
        },
    }


def create_authorization(
    holder_key: Any,
    *,
    chain_id: int,
    book: str,
    merchant: str,
    token_id: int,
    max_amount: int,
    expiry: int,
    nonce: int | None = None,
) -> Authorization:
    """Sign a payment authorisation with the holder's key (a random nonce unless given)."""
    account = Account.from_key(holder_key) if not hasattr(holder_key, "address") else holder_key
    unsigned = Authorization(
        chain_id=chain_id,
        book=book.lower(),
        holder=account.address.lower(),
        merchant=merchant.lower(),
        token_id=token_id,
        max_amount=max_amount,
        nonce=secrets.randbits(256) if nonce is None else nonce,
        expiry=expiry,
        signature=b"",
    )
    signed = account.sign_message(encode_typed_data(full_message=compute_typed_data(unsigned)))
    return Authorization(**{**unsigned.__dict__, "signature": bytes(signed.signature)})


def encode_authorization(auth: Authorization) -> str:
    """The compact JSON string of the QR code."""
    return json.dumps(
        {
            "t": FORMAT,
            "c": auth.chain_id,
            "b": auth.book,
            "h": auth.holder,
            "m": auth.merchant,
            "i": hex(auth.token_id),
            "x": auth.max_amount,
            "n": hex(auth.nonce),
            "e": auth.expiry,
            "s": "0x" + auth.signature.hex(),
        },
        separators=(",", ":"),
    )


def decode_authorization(text: str) -> Authorization:
    """Parse a QR string; raise :class:`InvalidAuthorization` if it is not one."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("t") != FORMAT:
            raise InvalidAuthorization(f"this is not a Polder payment authorisation ({FORMAT})")
        signature = bytes.fromhex(str(data["s"]).removeprefix("0x"))
        auth = Authorization(
            chain_id=int(data["c"]),
            book=_address(data["b"]),
            holder=_address(data["h"]),
            merchant=_address(data["m"]),
            token_id=int(str(data["i"]), 16),
            max_amount=int(data["x"]),
            nonce=int(str(data["n"]), 16),
            expiry=int(data["e"]),
            signature=signature,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidAuthorization(f"the payment authorisation is unreadable: {exc}") from None
    if len(signature) != 65:
        raise InvalidAuthorization("the payment authorisation's signature is not 65 bytes")
    return auth


def _address(value: Any) -> str:
    text = str(value).lower()
    if len(text) != 42 or not text.startswith("0x"):
        raise ValueError(f"not an address: {value!r}")
    int(text, 16)
    return text


def compute_signer(auth: Authorization) -> str:
    """The address that signed the authorisation (lowercase 0x)."""
    message = encode_typed_data(full_message=compute_typed_data(auth))
    return str(Account.recover_message(message, signature=auth.signature)).lower()


def validate_authorization(
    auth: Authorization,
    *,
    merchant: str,
    amount: int,
    now: float,
    chain_id: int,
    book: str,
) -> None:
    """The shop's local check before submitting; raise :class:`InvalidAuthorization`."""
    if auth.chain_id != chain_id or auth.book != book.lower():
        raise InvalidAuthorization("the payment authorisation is for another chain or contract")
    if auth.merchant != merchant.lower():
        raise InvalidAuthorization("the payment authorisation names another shop")
    if now >= auth.expiry:
        raise InvalidAuthorization("the payment authorisation has expired")
    if auth.expiry > now + MAX_VALIDITY:
        raise InvalidAuthorization("the payment authorisation is valid for too long")
    if not 0 < amount <= auth.max_amount:
        raise InvalidAuthorization(
            f"the amount {amount} is not within the authorised maximum {auth.max_amount}"
        )
    try:
        signer = compute_signer(auth)
    except ValueError as exc:
        raise InvalidAuthorization(f"the signature cannot be recovered: {exc}") from None
    if signer != auth.holder:
        raise InvalidAuthorization("the payment authorisation is not signed by the holder")


def split_signature(signature: bytes) -> tuple[int, bytes, bytes]:
    """(v, r, s) for ``payWithAuthorization``; v is 27 or 28."""
    v = signature[64]
    return (v + 27 if v < 27 else v), signature[:32], signature[32:64]


def compute_call_arguments(auth: Authorization, amount: int) -> tuple[Any, ...]:
    """The arguments of ``payWithAuthorization`` charging ``amount``."""
    v, r, s = split_signature(auth.signature)
    return (
        to_checksum_address(auth.holder),
        to_checksum_address(auth.merchant),
        auth.token_id,
        amount,
        auth.max_amount,
        auth.nonce,
        auth.expiry,
        v,
        r,
        s,
    )
