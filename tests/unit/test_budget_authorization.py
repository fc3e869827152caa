"""Payment authorisations: encode/decode, the shop's local check, and the contract accepts them."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from clients.budget.authorization import (
    Authorization,
    InvalidAuthorization,
    compute_call_arguments,
    compute_signer,
    compute_typed_data,
    create_authorization,
    decode_authorization,
    encode_authorization,
    validate_authorization,
)
from tests.unit.test_chain import CHAIN_ID
from tests.unit.test_vouchers_contract import (
    BOOK,
    GROCER,
    HOLDER,
    LANDLORD,
    LIVING,
    addr,
    issue_budgets,
    set_up_town,
    token,
)

NOW = 1_800_000_000
BOOK_ADDRESS = "0x" + BOOK.hex()


def make(**changes: object) -> Authorization:
    auth = create_authorization(
        HOLDER,
        chain_id=CHAIN_ID,
        book=BOOK_ADDRESS,
        merchant=addr(GROCER),
        token_id=token(1, LIVING),
        max_amount=50_00,
        expiry=NOW + 300,
        nonce=7,
    )
    return replace(auth, **changes) if changes else auth


def check(auth: Authorization, amount: int = 42_00, now: float = NOW, shop: str = "") -> None:
    validate_authorization(
        auth,
        merchant=shop or addr(GROCER),
        amount=amount,
        now=now,
        chain_id=CHAIN_ID,
        book=BOOK_ADDRESS,
    )


def test_round_trip_and_signer() -> None:
    auth = make()
    text = encode_authorization(auth)
    assert " " not in text
    assert len(text) < 400, "compact enough for one QR code"
    assert decode_authorization(text) == auth
    assert compute_signer(auth) == addr(HOLDER)
    check(auth)
    assert (
        create_authorization(
            HOLDER,
            chain_id=CHAIN_ID,
            book=BOOK_ADDRESS,
            merchant=addr(GROCER),
            token_id=1,
            max_amount=1,
            expiry=NOW,
        ).nonce
        != create_authorization(
            HOLDER,
            chain_id=CHAIN_ID,
            book=BOOK_ADDRESS,
            merchant=addr(GROCER),
            token_id=1,
            max_amount=1,
            expiry=NOW,
        ).nonce
    ), "wallets pick random nonces"


@pytest.mark.parametrize(
    ("auth", "amount", "now", "shop", "reason"),
    [
        (make(), 42_00, NOW + 300, "", "has expired"),
        (make(expiry=NOW + 901), 42_00, NOW, "", "valid for too long"),
        (make(), 50_01, NOW, "", "authorised maximum"),
        (make(), 0, NOW, "", "authorised maximum"),
        (make(), 42_00, NOW, addr(LANDLORD), "names another shop"),
        (make(max_amount=500_00), 42_00, NOW, "", "not signed by the holder"),
        (make(holder=addr(LANDLORD)), 42_00, NOW, "", "not signed by the holder"),
        (make(chain_id=CHAIN_ID + 1), 42_00, NOW, "", "another chain"),
    ],
)
def test_the_shop_refuses_bad_authorisations(
    auth: Authorization, amount: int, now: int, shop: str, reason: str
) -> None:
    with pytest.raises(InvalidAuthorization, match=reason):
        check(auth, amount, now, shop)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        json.dumps({"t": "something else"}),
        encode_authorization(make()).replace('"x":5000', '"x":"many"'),
        encode_authorization(make(signature=b"\x01" * 64)),
    ],
)
def test_unreadable_strings_are_refused(text: str) -> None:
    with pytest.raises(InvalidAuthorization):
        decode_authorization(text)


def test_the_domain_matches_the_contract_and_it_pays() -> None:
    town = set_up_town()
    issue_budgets(town)
    auth = create_authorization(
        HOLDER,
        chain_id=CHAIN_ID,
        book=BOOK_ADDRESS,
        merchant=addr(GROCER),
        token_id=token(1, LIVING),
        max_amount=50_00,
        expiry=town.now + 300,
        nonce=99,
    )
    typed = compute_typed_data(auth)
    signable = encode_typed_data(full_message=typed)
    assert bytes(signable.header)[:32] == town.view("domainSeparator")
    assert Account.recover_message(signable, signature=auth.signature).lower() == addr(HOLDER)
    events = town.do(GROCER, "payWithAuthorization", *compute_call_arguments(auth, 42_00))
    assert [name for name, _ in events][-1] == "Paid"
    assert town.view("balanceOf", addr(GROCER), token(1, LIVING)) == 42_00
    replay = town.refused(GROCER, "payWithAuthorization", *compute_call_arguments(auth, 1_00))
    assert "already used" in replay
