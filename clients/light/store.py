"""The light client's persistent store: its trust root, verified headers and fork evidence.

SQLite (standard library) in one file per chain; every write is one
transaction, so a client killed mid-write keeps what it had. A header enters
only after it verified; the store never holds a provider's unchecked word.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import rlp

from clients.light.verify import LightBlock
from consensus.errors import ConfigError, StorageError
from consensus.seal import compute_block_hash, get_extra_data

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS headers (
    number INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    header BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    number INTEGER NOT NULL,
    first BLOB NOT NULL,
    second BLOB NOT NULL,
    providers TEXT NOT NULL,
    PRIMARY KEY (number, first, second)
);
"""


class HeaderStore:
    """Verified headers of one chain, keyed by height."""

    def __init__(self, path: Path | str | None = None) -> None:
        """Open (creating if needed) the store at ``path``; ``None`` keeps it in memory."""
        target = ":memory:" if path is None else str(path)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(target)
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StorageError(
                f"light-client store {target} is not readable ({exc}); move it away to start over"
            ) from exc

    def close(self) -> None:
        self._db.close()

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def save_genesis_hash(self, genesis_hash: bytes) -> None:
        """Pin the chain's genesis hash; refuse to change it."""
        value = "0x" + genesis_hash.hex()
        stored = self.get_meta("genesis_hash")
        if stored is not None and stored != value:
            raise ConfigError(
                f"this store is for genesis {stored}, not {value}; use another --store"
            )
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('genesis_hash', ?)", (value,))

    def save_trust_root(self, block: LightBlock) -> None:
        """Pin ``block`` as the root all later headers are verified from."""
        root = f"{block.number}:0x{block.hash.hex()}"
        stored = self.get_meta("trust_root")
        if stored is not None and stored != root:
            raise ConfigError(
                f"this store trusts {stored}, not {root}; use another --store for another"
                " chain or checkpoint"
            )
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('trust_root', ?)", (root,))
            self._insert(block)

    def get_trust_root(self) -> tuple[int, bytes] | None:
        stored = self.get_meta("trust_root")
        if stored is None:
            return None
        number, block_hash = stored.split(":")
        return int(number), bytes.fromhex(block_hash[2:])

    def save_header(self, block: LightBlock) -> None:
        """Keep a verified header."""
        with self._db:
            self._insert(block)

    def _insert(self, block: LightBlock) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO headers VALUES (?, ?, ?)",
            (block.number, block.hash, block.encode()),
        )

    def get_header(self, number: int) -> LightBlock | None:
        row = self._db.execute("SELECT header FROM headers WHERE number = ?", (number,)).fetchone()
        return None if row is None else load_block(row[0])

    def get_closest_below(self, number: int) -> LightBlock | None:
        """Return the highest verified header at or below ``number``."""
        row = self._db.execute(
            "SELECT header FROM headers WHERE number <= ? ORDER BY number DESC LIMIT 1", (number,)
        ).fetchone()
        return None if row is None else load_block(row[0])

    def get_latest(self) -> LightBlock | None:
        row = self._db.execute("SELECT header FROM headers ORDER BY number DESC LIMIT 1").fetchone()
        return None if row is None else load_block(row[0])

    def save_evidence(self, first: LightBlock, second: LightBlock, providers: list[str]) -> None:
        """Keep two conflicting quorum-sealed headers, and stop trusting that height."""
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO evidence VALUES (?, ?, ?, ?)",
                (first.number, first.encode(), second.encode(), json.dumps(providers)),
            )
            self._db.execute("DELETE FROM headers WHERE number = ?", (first.number,))

    def get_evidence(self, number: int | None = None) -> list[dict[str, Any]]:
        """Return stored fork evidence (at ``number``, or all), for people to check."""
        query = "SELECT number, first, second, providers FROM evidence"
        rows = (
            self._db.execute(query).fetchall()
            if number is None
            else self._db.execute(query + " WHERE number = ?", (number,)).fetchall()
        )
        return [
            {
                "number": row[0],
                "headers": ["0x" + row[1].hex(), "0x" + row[2].hex()],
                "providers": json.loads(row[3]),
            }
            for row in rows
        ]


def load_block(encoded: bytes) -> LightBlock:
    """Rebuild a stored header; the store holds only verified ones."""
    fields = rlp.decode(encoded)
    return LightBlock(
        number=int.from_bytes(fields[8], "big"),
        hash=compute_block_hash(fields),
        fields=tuple(fields),
        extra=get_extra_data(fields),
    )
