"""The node's on-disk key-value store: LevelDB through plyvel, behind py-evm's API.

py-evm removed its LevelDB backend in 2023 and now ships only in-memory
databases, so the node owns this one. It implements py-evm's
``AtomicDatabaseAPI`` and passes py-evm's own database test suites.

Atomic batches are what make crash safety possible: a block, its receipts, its
state trie nodes and the new chain head are written in one ``atomic_batch()``,
which lands on disk as a single LevelDB write batch (one checksummed record in
LevelDB's log). A process killed at any instant therefore leaves either the
whole block or none of it, never a head that points at missing state.

Failures of the store surface as ``StorageError`` with a message that says what
to do, because the operator, not the code, has to fix a locked or corrupted
data directory.
"""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

import plyvel
from eth.abc import AtomicWriteBatchAPI
from eth.db.backends.base import BaseAtomicDB, BaseDB
from eth_utils.exceptions import ValidationError

from consensus.errors import StorageError

# LevelDB 1.22 guards against opening one directory twice in one process with
# a table keyed by the path *string*, and on a refused second open it closes
# its own descriptor of the LOCK file, which (POSIX fcntl semantics) silently
# drops the lock the first handle holds: another node process could then open
# the same directory and both would write to it. Other spellings of the path
# ("dir/./db", a symlink) are not even refused. So this process keeps its own
# registry of open directories by resolved path and never lets LevelDB see a
# second open of one.
_open_directories: set[pathlib.Path] = set()
_open_directories_lock = threading.Lock()

# Files only a LevelDB database directory contains. If they are there but
# CURRENT is not, LevelDB with create_if_missing would start a fresh, empty
# database over the remains of the old one instead of reporting the damage.
_LEVELDB_FILE_SUFFIXES = (".ldb", ".sst", ".log")
_LEVELDB_FILE_PREFIXES = ("MANIFEST-",)


def is_leveldb_without_current(path: pathlib.Path) -> bool:
    """Whether ``path`` holds LevelDB data files but lost its CURRENT file."""
    if not path.is_dir() or (path / "CURRENT").exists():
        return False
    return any(
        entry.name.endswith(_LEVELDB_FILE_SUFFIXES) or entry.name.startswith(_LEVELDB_FILE_PREFIXES)
        for entry in path.iterdir()
    )


def compute_in_use_error(path: pathlib.Path) -> StorageError:
    """The error for a data directory that another handle already holds."""
    return StorageError(
        f"The data directory {path} is in use by another process (or already open in "
        "this one). Stop the other node that uses it, or give this node a different "
        "data directory.",
        path=str(path),
        reason="in_use",
    )


def compute_corrupted_error(path: pathlib.Path, detail: str) -> StorageError:
    """The error for a database whose files LevelDB cannot trust."""
    return StorageError(
        f"The database in {path} is corrupted ({detail}). Stop the node, then restore "
        "the data directory from a backup, or move it aside and resync the node into "
        "an empty data directory.",
        path=str(path),
        reason="corrupted",
        detail=detail,
    )


def compute_storage_error(path: pathlib.Path, error: plyvel.Error) -> StorageError:
    """Translate a plyvel failure into a ``StorageError`` an operator can act on."""
    detail = error.args[0] if error.args else repr(error)
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", errors="replace")
    detail = str(detail)
    if isinstance(error, plyvel.CorruptionError):
        return compute_corrupted_error(path, detail)
    # LevelDB reports a failed fcntl on its LOCK file as "lock <dir>/LOCK: <errno
    # text>", whatever errno the platform uses for "held by someone else".
    if isinstance(error, plyvel.IOError) and detail.startswith("IO error: lock "):
        return compute_in_use_error(path)
    return StorageError(
        f"The database in {path} failed: {detail}. Check that the disk is present, "
        "writable and not full; if the files are damaged, restore the data directory "
        "from a backup or resync the node into an empty data directory.",
        path=str(path),
        reason="io",
        detail=detail,
    )


class LevelDB(BaseAtomicDB):
    """A py-evm atomic database stored in a LevelDB directory."""

    path: pathlib.Path
    """The database directory, resolved (symlinks and ``..`` removed)."""

    sync: bool
    """Whether every write waits for fsync; off only where losing the last writes is fine."""

    def __init__(self, path: pathlib.Path, *, sync: bool = True) -> None:
        self.path = path.resolve()
        self.sync = sync
        with _open_directories_lock:
            if self.path in _open_directories:
                raise compute_in_use_error(self.path)
            self._db = _open_leveldb(self.path)
            _open_directories.add(self.path)

    def __getitem__(self, key: bytes) -> bytes:
        # Checksums are verified on every block read from disk so that a flipped
        # bit surfaces as an error instead of as a wrong trie node.
        try:
            value: bytes | None = self._db.get(key, verify_checksums=True)
        except plyvel.Error as error:
            raise compute_storage_error(self.path, error) from error
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        try:
            self._db.put(key, value, sync=self.sync)
        except plyvel.Error as error:
            raise compute_storage_error(self.path, error) from error

    def __delitem__(self, key: bytes) -> None:
        # LevelDB deletes missing keys silently; py-evm's API wants a KeyError.
        if not self._exists(key):
            raise KeyError(key)
        try:
            self._db.delete(key, sync=self.sync)
        except plyvel.Error as error:
            raise compute_storage_error(self.path, error) from error

    def _exists(self, key: bytes) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        """Collect writes, then put all of them on disk at once, or none if the block raises."""
        batch = LevelDBWriteBatch(self)
        try:
            yield batch
        finally:
            pending = batch._end()
        # Reached only when the block returned normally.
        self._write_batch(pending)

    def _write_batch(self, pending: dict[bytes, bytes | None]) -> None:
        if not pending:
            return
        try:
            with self._db.write_batch(transaction=True, sync=self.sync) as write_batch:
                for key, value in pending.items():
                    if value is None:
                        write_batch.delete(key)
                    else:
                        write_batch.put(key, value)
        except plyvel.Error as error:
            raise compute_storage_error(self.path, error) from error

    def close(self) -> None:
        """Close the database and release its directory; closing twice is harmless."""
        with _open_directories_lock:
            if self._db.closed:
                return
            self._db.close()
            _open_directories.discard(self.path)

    def __enter__(self) -> LevelDB:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _open_leveldb(path: pathlib.Path) -> plyvel.DB:
    if is_leveldb_without_current(path):
        raise compute_corrupted_error(path, "the CURRENT file is missing")
    try:
        # paranoid_checks makes LevelDB refuse a damaged log or table instead of
        # dropping the records it cannot read and carrying on with older state.
        return plyvel.DB(str(path), create_if_missing=True, paranoid_checks=True)
    except plyvel.Error as error:
        raise compute_storage_error(path, error) from error


class LevelDBWriteBatch(BaseDB, AtomicWriteBatchAPI):
    """The pending writes of one ``LevelDB.atomic_batch()``, readable before they land."""

    def __init__(self, db: LevelDB) -> None:
        self._db: LevelDB | None = db
        """The database the batch reads through to and writes into; None once ended."""

        self._pending: dict[bytes, bytes | None] = {}
        """Keys written in this batch: the new value, or None for a deletion."""

    def _live(self) -> tuple[LevelDB, dict[bytes, bytes | None]]:
        # py-evm's suite expects ValidationError for any use after the context.
        if self._db is None:
            raise ValidationError("Cannot use a LevelDB write batch outside its context")
        return self._db, self._pending

    def __getitem__(self, key: bytes) -> bytes:
        db, pending = self._live()
        if key not in pending:
            return db[key]
        value = pending[key]
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        _, pending = self._live()
        pending[key] = value

    def __delitem__(self, key: bytes) -> None:
        _, pending = self._live()
        if not self._exists(key):
            raise KeyError(key)
        pending[key] = None

    def _exists(self, key: bytes) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    def _end(self) -> dict[bytes, bytes | None]:
        """Stop accepting reads and writes and hand back what is pending."""
        _, pending = self._live()
        self._db = None
        self._pending = {}
        return pending
