"""The municipality's off-chain store: checks on what goes in, links, recovery, bank files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from clients.budget import office
from clients.budget.office import OfficeError

GROCERY = "0x00000000000000000000000000000000000000aa"
HOLDER = "0x00000000000000000000000000000000000000bb"
PHONE = "0x00000000000000000000000000000000000000cc"


@pytest.fixture
def db(tmp_path: Path) -> sqlite3.Connection:
    return office.open_office(tmp_path / "office.sqlite")


def test_the_store_file_is_private(tmp_path: Path) -> None:
    office.open_office(tmp_path / "o.sqlite").close()
    assert (tmp_path / "o.sqlite").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("bsn", ["111222333", "123456782"])
def test_valid_bsns_pass_the_eleven_test(bsn: str) -> None:
    assert office.validate_bsn(bsn) == bsn


@pytest.mark.parametrize("bsn", ["111222334", "12345678", "12345678a", "1234567820"])
def test_mistyped_bsns_are_refused(bsn: str) -> None:
    with pytest.raises(OfficeError):
        office.validate_bsn(bsn)


def test_ibans_are_normalized_and_check_digits_checked() -> None:
    assert office.normalize_iban("nl91 abna 0417 1643 00") == "NL91ABNA0417164300"
    with pytest.raises(OfficeError, match="check digits"):
        office.normalize_iban("NL92ABNA0417164300")
    with pytest.raises(OfficeError, match="not an IBAN"):
        office.normalize_iban("0417164300")


def test_a_person_once_per_bsn(db: sqlite3.Connection) -> None:
    person = office.add_person(db, "A. Jansen", "111222333")
    assert office.get_person(db, person).name == "A. Jansen"
    with pytest.raises(OfficeError, match="already"):
        office.add_person(db, "Someone Else", "111222333")
    with pytest.raises(OfficeError, match="name"):
        office.add_person(db, " ", "123456782")


def test_holder_links_follow_recovery(db: sqlite3.Connection) -> None:
    person = office.add_person(db, "A. Jansen", "111222333")
    office.link_holder(db, person, HOLDER, 1)
    with pytest.raises(OfficeError, match="already linked"):
        office.link_holder(db, person, HOLDER, 1)
    assert office.get_holder(db, person, 1) == to_checksum_address(HOLDER)
    office.record_recovery(db, HOLDER, PHONE)
    assert office.get_holder(db, person, 1) == to_checksum_address(PHONE)
    assert office.find_person(db, HOLDER).person == person
    assert office.find_person(db, PHONE).person == person
    with pytest.raises(OfficeError, match="no holder address"):
        office.get_holder(db, person, 2)


def test_plans_refuse_unknown_people_shops_and_categories(db: sqlite3.Connection) -> None:
    with pytest.raises(OfficeError, match="no person"):
        office.add_plan_line(db, 9, fund=1, period=1, category="RENT", amount=1, expiry=1)
    person = office.add_person(db, "A. Jansen", "111222333")
    with pytest.raises(OfficeError, match="not in the store"):
        office.add_charge(
            db, person, shop=GROCERY, fund=1, period=1, category="RENT", amount=1,
            first_due=0, interval=0, count=1,
        )  # fmt: skip
    with pytest.raises(OfficeError, match="category"):
        office.add_shop(db, GROCERY, name="X", iban="NL91ABNA0417164300", categories=["BEER"])


def test_the_bank_file_names_shops_and_amounts() -> None:
    shop = office.Shop(GROCERY, "Bakker & Zn", "NL91ABNA0417164300", "", ("LIVING",))
    text = office.compose_bank_file([(shop, 7, 12_345), (shop, 9, 5)], "BATCH-1")
    assert "<NbOfTxs>2</NbOfTxs><CtrlSum>123.50</CtrlSum>" in text
    assert "Bakker &amp; Zn" in text
    assert text.count("<IBAN>NL91ABNA0417164300</IBAN>") == 2
    assert "POLDER-PAYOUT-9" in text
    assert '<InstdAmt Ccy="EUR">0.05</InstdAmt>' in text
