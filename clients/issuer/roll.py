"""The voter roll and the issuance store of one issuing municipality (one SQLite file).

The roll (a list of voter ids, each with a one-time code sent on paper)
stands in for DigiD. Codes are stored only as scrypt hashes with a per-voter
salt. ``issuances`` records which voter id received a credential for which
poll — never the blinded message, never a time — so the store alone cannot
link a resident to a ballot. It is keyed (``WITHOUT ROWID``) by
``(poll_id, voter_id)``, so not even the row order tells who came first.

Every function takes an open connection and runs on one thread (the service
gives the store a dedicated executor thread); transactions are explicit.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from clients.issuer.errors import AlreadyIssued, RollError

VOTER_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")
"""A voter id: 1..64 characters, starting with a letter or digit (no spreadsheet formulas)."""

CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford's base 32: no I, L, O or U, so a code read aloud or typed is unambiguous."""

CODE_GROUPS = 4
"""Groups of four characters in a code: 16 characters, 80 bits."""

MAX_CODE_LENGTH = 64
"""Longest code string accepted as input (anything longer is not a code)."""

SALT_SIZE = 16
"""Bytes of each voter's random scrypt salt."""

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
"""scrypt cost (16 MiB, about 30 ms): an 80-bit code needs none, a stolen file costs this."""

HASH_SIZE = 32
"""Bytes of a stored code hash."""

_CODE_TRANSLATION = str.maketrans(
    {"O": "0", "I": "1", "L": "1", "-": None, " ": None, "\t": None, "\r": None, "\n": None}
)
"""Copying a code from a letter or a CSV file may bring line ends and tabs along."""

_DUMMY_SALT = bytes(SALT_SIZE)
"""Salt hashed for an unknown voter id, so it costs as much time as a known one."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS voters (
    voter_id TEXT PRIMARY KEY,
    code_hash BLOB NOT NULL,
    salt BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS issuances (
    poll_id BLOB NOT NULL,
    voter_id TEXT NOT NULL REFERENCES voters (voter_id),
    PRIMARY KEY (poll_id, voter_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS failures (
    poll_id BLOB NOT NULL,
    voter_id TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (poll_id, voter_id)
) WITHOUT ROWID;
"""
"""``failures`` has no foreign key: wrong codes for unknown ids lock them out just the same."""


def is_valid_voter_id(voter_id: object) -> bool:
    """True for a string of the form :data:`VOTER_ID_PATTERN` allows."""
    return isinstance(voter_id, str) and VOTER_ID_PATTERN.fullmatch(voter_id) is not None


def normalize_code(code: str) -> str:
    """Uppercase, drop dashes and white space, read O as 0 and I, L as 1 (Crockford)."""
    return code.upper().translate(_CODE_TRANSLATION)


def generate_code() -> str:
    """A fresh one-time code like ``7K3M-Q9TX-2HFD-8WPN`` (80 bits from ``secrets``)."""
    chars = "".join(secrets.choice(CODE_ALPHABET) for _ in range(4 * CODE_GROUPS))
    return "-".join(chars[i : i + 4] for i in range(0, len(chars), 4))


def compute_code_hash(code: str, salt: bytes) -> bytes:
    """scrypt of the normalized code under the voter's salt."""
    return hashlib.scrypt(
        normalize_code(code).encode(),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        dklen=HASH_SIZE,
    )


def open_roll(path: Path) -> sqlite3.Connection:
    """Open (or create, readable by its owner only) the roll; transactions are explicit."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        connection = sqlite3.connect(path, timeout=10.0, isolation_level=None)
        connection.execute("PRAGMA foreign_keys = ON")
        connection.executescript(SCHEMA)
    except sqlite3.DatabaseError as exc:
        raise RollError(f"voter roll {path} cannot be opened: {exc}") from exc
    return connection


def _voter_ids_from_json(data: Any, path: Path) -> list[str]:
    if not isinstance(data, list):
        raise RollError(f"{path}: expected a JSON list of voter ids")
    ids = []
    for index, item in enumerate(data):
        voter_id = item.get("voterId") if isinstance(item, dict) else item
        if not isinstance(voter_id, str):
            raise RollError(f"{path}: entry {index} is neither a string nor has a voterId")
        ids.append(voter_id)
    return ids


def _voter_ids_from_csv(text: str, path: Path) -> list[str]:
    reader = csv.DictReader(text.splitlines())
    columns = {name.strip().lower(): name for name in reader.fieldnames or []}
    column = columns.get("voter_id") or columns.get("voterid")
    if column is None:
        raise RollError(f"{path}: the first row must name a voter_id column")
    return [
        (row[column] or "").strip()
        for row in reader
        if any((v or "").strip() for v in row.values())
    ]


def load_roll(path: Path) -> list[str]:
    """Read voter ids from a CSV file (a ``voter_id`` column) or a JSON list (``.json``).

    JSON entries are strings or objects with a ``voterId``. Every id must be
    valid and appear once; the error names the first offender.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RollError(f"cannot read voter ids from {path}: {exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            ids = _voter_ids_from_json(json.loads(text), path)
        except (ValueError, RecursionError) as exc:
            raise RollError(f"{path} is not valid JSON: {exc}") from exc
    else:
        try:
            ids = _voter_ids_from_csv(text, path)
        except csv.Error as exc:
            raise RollError(f"{path} is not valid CSV: {exc}") from exc
    seen: set[str] = set()
    for voter_id in ids:
        if not is_valid_voter_id(voter_id):
            raise RollError(
                f"{path}: voter id {voter_id!r} is not 1..64 letters, digits or ._:@- "
                "starting with a letter or digit"
            )
        if voter_id in seen:
            raise RollError(f"{path}: voter id {voter_id!r} appears more than once")
        seen.add(voter_id)
    return ids


def add_voters(connection: sqlite3.Connection, voter_ids: Iterable[str]) -> dict[str, str]:
    """Put voters on the roll with fresh codes; return ``{voter_id: code}`` (shown once).

    All or nothing: refused if any id is invalid or already on the roll. The
    plain codes exist only in the returned dict.
    """
    ids = list(voter_ids)
    invalid = next((v for v in ids if not is_valid_voter_id(v)), None)
    if invalid is not None:
        raise RollError(f"voter id {invalid!r} is not valid")
    if len(set(ids)) != len(ids):
        raise RollError("the same voter id is given more than once")
    codes = {voter_id: generate_code() for voter_id in ids}
    salts = {voter_id: secrets.token_bytes(SALT_SIZE) for voter_id in ids}
    # hashlib.scrypt releases the GIL: hash on every core.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        hashes = list(pool.map(lambda v: compute_code_hash(codes[v], salts[v]), ids))
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.executemany(
            "INSERT INTO voters (voter_id, code_hash, salt) VALUES (?, ?, ?)",
            [(v, h, salts[v]) for v, h in zip(ids, hashes, strict=True)],
        )
    except sqlite3.IntegrityError:
        connection.execute("ROLLBACK")
        on_roll = _first_on_roll(connection, ids)
        raise RollError(f"voter id {on_roll!r} is already on the roll; nothing was added") from None
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return codes


def _first_on_roll(connection: sqlite3.Connection, ids: list[str]) -> str | None:
    for voter_id in ids:
        if connection.execute("SELECT 1 FROM voters WHERE voter_id = ?", (voter_id,)).fetchone():
            return voter_id
    return None


def count_voters(connection: sqlite3.Connection) -> int:
    """Voters on the roll."""
    return int(connection.execute("SELECT COUNT(*) FROM voters").fetchone()[0])


def is_code_correct(connection: sqlite3.Connection, voter_id: str, code: str) -> bool:
    """True when ``voter_id`` is on the roll and ``code`` is its code.

    An unknown id costs the same scrypt as a known one and answers the same.
    """
    row = connection.execute(
        "SELECT code_hash, salt FROM voters WHERE voter_id = ?", (voter_id,)
    ).fetchone()
    stored, salt = (bytes(row[0]), bytes(row[1])) if row else (bytes(HASH_SIZE), _DUMMY_SALT)
    matches = hmac.compare_digest(compute_code_hash(code, salt), stored)
    return matches and row is not None


def get_failure_count(connection: sqlite3.Connection, poll_id: bytes, voter_id: str) -> int:
    """Wrong codes given so far for this voter id in this poll."""
    row = connection.execute(
        "SELECT count FROM failures WHERE poll_id = ? AND voter_id = ?", (poll_id, voter_id)
    ).fetchone()
    return int(row[0]) if row else 0


def record_failure(connection: sqlite3.Connection, poll_id: bytes, voter_id: str) -> int:
    """Count one more wrong code for this voter id in this poll; return the new count."""
    connection.execute(
        "INSERT INTO failures (poll_id, voter_id, count) VALUES (?, ?, 1) "
        "ON CONFLICT (poll_id, voter_id) DO UPDATE SET count = count + 1",
        (poll_id, voter_id),
    )
    return get_failure_count(connection, poll_id, voter_id)


def clear_failures(connection: sqlite3.Connection, poll_id: bytes, voter_id: str) -> None:
    """Unlock a voter id for a poll (after the municipality checked who asks)."""
    connection.execute(
        "DELETE FROM failures WHERE poll_id = ? AND voter_id = ?", (poll_id, voter_id)
    )


def apply_issuance(
    connection: sqlite3.Connection, poll_id: bytes, voter_id: str, sign: Callable[[], bytes]
) -> tuple[bytes, int]:
    """Record that ``voter_id`` gets its credential for ``poll_id``, then ``sign()``.

    One transaction: the insert comes first and ``sign`` runs only if it
    succeeded; if ``sign`` raises, the insert is rolled back, so a voter is
    never recorded without a signature nor signed for twice. Returns the
    signature and the poll's issuance count including this one.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(
            "INSERT INTO issuances (poll_id, voter_id) VALUES (?, ?)", (poll_id, voter_id)
        )
        signature = sign()
        count = count_issued(connection, poll_id)
    except sqlite3.IntegrityError as exc:
        connection.execute("ROLLBACK")
        if "UNIQUE" not in str(exc):
            raise RollError(f"voter id {voter_id!r} is not on the roll") from exc
        raise AlreadyIssued("this voter id already received a credential for this poll") from None
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return signature, count


def count_issued(connection: sqlite3.Connection, poll_id: bytes) -> int:
    """Credentials issued for ``poll_id``."""
    row = connection.execute("SELECT COUNT(*) FROM issuances WHERE poll_id = ?", (poll_id,))
    return int(row.fetchone()[0])


def get_issued_counts(connection: sqlite3.Connection) -> dict[bytes, int]:
    """Credentials issued, per poll that has any."""
    rows = connection.execute("SELECT poll_id, COUNT(*) FROM issuances GROUP BY poll_id")
    return {bytes(poll_id): int(count) for poll_id, count in rows}
