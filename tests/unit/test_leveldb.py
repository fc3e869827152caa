"""The LevelDB backend: py-evm's own suites, a model check, errors and crash safety."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import IO

import pytest
from eth.abc import AtomicDatabaseAPI
from eth.db.atomic import AtomicDB
from eth.tools.db.atomic import AtomicDatabaseBatchAPITestSuite
from eth.tools.db.base import DatabaseAPITestSuite
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from consensus.errors import StorageError
from node.db import LevelDB

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path: pathlib.Path) -> Iterator[LevelDB]:
    with LevelDB(tmp_path / "db") as database:
        yield database


@pytest.fixture
def atomic_db(db: LevelDB) -> LevelDB:
    return db


class TestLevelDBDatabaseAPI(DatabaseAPITestSuite):
    """py-evm's suite for every ``DatabaseAPI``."""


class TestLevelDBAtomicBatchAPI(AtomicDatabaseBatchAPITestSuite):
    """py-evm's suite for ``atomic_batch()``."""


# --- model check against py-evm's in-memory AtomicDB -------------------------

# A small pool so that operations collide on the same keys, with the edge cases
# LevelDB could plausibly treat differently from a dict (empty key, NUL, 0xff).
KEYS = (b"", b"a", b"b", b"\x00", b"\xff\xff", b"key-1")
keys = st.sampled_from(KEYS)
values = st.binary(max_size=8)
batch_ops = st.lists(
    st.tuples(st.sampled_from(["set", "delete", "del"]), keys, values), min_size=1, max_size=6
)


class AbortBatch(Exception):
    """Raised inside a batch to abandon it half-way."""


def run_batch(
    database: AtomicDatabaseAPI, ops: list[tuple[str, bytes, bytes]], abort_at: int | None
) -> list[object]:
    """Apply ``ops`` in one batch, aborting before op ``abort_at``; return what was seen."""
    seen: list[object] = []
    try:
        with database.atomic_batch() as batch:
            for index, (op, key, value) in enumerate(ops):
                if index == abort_at:
                    raise AbortBatch
                if op == "set":
                    batch[key] = value
                elif op == "delete":
                    batch.delete(key)
                else:
                    try:
                        del batch[key]
                    except KeyError:
                        seen.append("KeyError")
                seen.extend([batch.get(key), key in batch])
    except AbortBatch:
        seen.append("aborted")
    return seen


class LevelDBAgainstMemory(RuleBasedStateMachine):
    """Every operation gives the same result on LevelDB as on py-evm's ``AtomicDB``."""

    def __init__(self) -> None:
        super().__init__()
        # One fresh directory per example: pytest's tmp_path is per test, and
        # an example must not see the keys an earlier example left behind.
        self.directory = pathlib.Path(tempfile.mkdtemp(prefix="polder-leveldb-"))
        self.path = self.directory / "db"
        # Without fsync per write: durability is not what is compared here,
        # and fsync would dominate the run time.
        self.leveldb = LevelDB(self.path, sync=False)
        self.model = AtomicDB()

    @rule(key=keys, value=values)
    def set_key(self, key: bytes, value: bytes) -> None:
        self.leveldb[key] = value
        self.model[key] = value

    @rule(key=keys)
    def delete_key(self, key: bytes) -> None:
        self.leveldb.delete(key)
        self.model.delete(key)

    @rule(key=keys)
    def del_item(self, key: bytes) -> None:
        outcomes = []
        for database in (self.leveldb, self.model):
            try:
                del database[key]
            except KeyError:
                outcomes.append("KeyError")
            else:
                outcomes.append("deleted")
        assert outcomes[0] == outcomes[1]

    @rule(key=keys)
    def get_key(self, key: bytes) -> None:
        assert self.leveldb.get(key) == self.model.get(key)
        assert self.leveldb.exists(key) == self.model.exists(key)

    @rule(ops=batch_ops, abort_at=st.none() | st.integers(min_value=0, max_value=5))
    def batch(self, ops: list[tuple[str, bytes, bytes]], abort_at: int | None) -> None:
        assert run_batch(self.leveldb, ops, abort_at) == run_batch(self.model, ops, abort_at)

    @rule()
    def reopen(self) -> None:
        self.leveldb.close()
        self.leveldb = LevelDB(self.path, sync=False)

    @invariant()
    def same_contents(self) -> None:
        for key in KEYS:
            assert self.leveldb.get(key) == self.model.get(key)

    def teardown(self) -> None:
        self.leveldb.close()
        shutil.rmtree(self.directory, ignore_errors=True)


TestLevelDBAgainstMemory = LevelDBAgainstMemory.TestCase
TestLevelDBAgainstMemory.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)


# --- errors -------------------------------------------------------------------

LOCK_HOLDER = """
import sys, plyvel
db = plyvel.DB(sys.argv[1], create_if_missing=True)
print("ready", flush=True)
sys.stdin.read()
"""

TRY_OPEN = """
import sys, plyvel
try:
    plyvel.DB(sys.argv[1])
except plyvel.IOError:
    print("locked")
else:
    print("opened")
"""


def read_line(stream: IO[str] | None) -> str:
    """One line a child process printed, without its newline."""
    if stream is None:
        raise RuntimeError("child process has no stdout pipe")
    return stream.readline().strip()


def test_second_open_in_same_process_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db"
    (tmp_path / "link").symlink_to(path)
    with LevelDB(path):
        # LevelDB itself would let the second and third spelling through.
        for same_directory in (path, tmp_path / "." / "db", tmp_path / "link"):
            with pytest.raises(StorageError, match="in use by another process") as raised:
                LevelDB(same_directory)
            assert str(path.resolve()) in raised.value.message
            assert "Stop the other node" in raised.value.message
            assert raised.value.data["reason"] == "in_use"


def test_refused_second_open_keeps_other_processes_out(tmp_path: pathlib.Path) -> None:
    # Regression guard: a refused second open inside LevelDB closes its LOCK
    # descriptor, which drops the first handle's fcntl lock.
    path = tmp_path / "db"
    with LevelDB(path):
        with pytest.raises(StorageError):
            LevelDB(path)
        child = subprocess.run(
            [sys.executable, "-c", TRY_OPEN, str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert child.stdout.strip() == "locked"


def test_open_held_by_another_process(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db"
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert read_line(holder.stdout) == "ready"
        with pytest.raises(StorageError, match="in use by another process") as raised:
            LevelDB(path)
        assert str(path) in raised.value.message
        assert "Stop the other node" in raised.value.message
    finally:
        holder.communicate(timeout=30)
    # Once the other process is gone the directory opens and is usable.
    with LevelDB(path) as database:
        database[b"k"] = b"v"


def fill(path: pathlib.Path, count: int = 2000) -> None:
    """Write ``count`` keys, then reopen once so that LevelDB moves them into a table file."""
    with LevelDB(path, sync=False) as database:
        for index in range(count):
            database[b"key-%d" % index] = b"value" * 20
    LevelDB(path).close()


def assert_corrupted_message(error: StorageError, path: pathlib.Path) -> None:
    message = error.message
    assert "is corrupted" in message
    assert str(path) in message
    assert "restore the data directory from a backup" in message
    assert "resync the node into an empty data directory" in message
    assert error.data["reason"] == "corrupted"


@pytest.mark.parametrize("victim", ["CURRENT", "MANIFEST-"])
def test_garbage_over_metadata_is_reported_as_corruption(
    tmp_path: pathlib.Path, victim: str
) -> None:
    path = tmp_path / "db"
    fill(path)
    targets = [entry for entry in path.iterdir() if entry.name.startswith(victim)]
    assert targets
    for target in targets:
        target.write_bytes(b"garbage" * 50)
    with pytest.raises(StorageError) as raised:
        LevelDB(path)
    assert_corrupted_message(raised.value, path)


def read_all(database: LevelDB, count: int = 2000) -> None:
    """Read every key ``fill`` wrote."""
    for index in range(count):
        database.get(b"key-%d" % index)


def test_damaged_table_is_reported_on_read(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db"
    fill(path)
    tables = list(path.glob("*.ldb"))
    assert tables
    for table in tables:
        data = bytearray(table.read_bytes())
        for index in range(len(data) // 3, len(data) // 3 + 64):
            data[index] ^= 0xFF
        table.write_bytes(bytes(data))
    # The table is only read on demand, so open succeeds and some read fails.
    with LevelDB(path) as database, pytest.raises(StorageError) as raised:
        read_all(database)
    assert_corrupted_message(raised.value, path)
    assert "checksum mismatch" in raised.value.data["detail"]


def test_missing_current_is_corruption_not_a_fresh_database(tmp_path: pathlib.Path) -> None:
    # LevelDB with create_if_missing would quietly start over here.
    path = tmp_path / "db"
    fill(path)
    (path / "CURRENT").unlink()
    with pytest.raises(StorageError) as raised:
        LevelDB(path)
    assert_corrupted_message(raised.value, path)
    assert "CURRENT" in raised.value.message


# --- atomic batches on disk -----------------------------------------------------


def open_copy_of_disk(path: pathlib.Path, into: pathlib.Path) -> LevelDB:
    """Open a copy of what is on disk now, as a process killed at this instant leaves it."""
    shutil.copytree(path, into)
    return LevelDB(into)


def write_then_abort(database: LevelDB) -> None:
    """Overwrite, add and delete keys in a batch, then abandon it."""
    with database.atomic_batch() as batch:
        batch[b"kept"] = b"after"
        batch[b"new"] = b"value"
        batch.delete(b"kept")
        raise AbortBatch


def test_aborted_batch_writes_nothing(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db"
    with LevelDB(path) as database:
        database[b"kept"] = b"before"
        with pytest.raises(AbortBatch):
            write_then_abort(database)
        assert database[b"kept"] == b"before"
        assert b"new" not in database
    with LevelDB(path) as reopened:
        assert reopened[b"kept"] == b"before"
        assert b"new" not in reopened


def test_batch_reaches_disk_only_when_it_exits(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db"
    with LevelDB(path) as database:
        database[b"old"] = b"value"
        with database.atomic_batch() as batch:
            batch[b"new-1"] = b"one"
            batch[b"new-2"] = b"two"
            del batch[b"old"]
            with open_copy_of_disk(path, tmp_path / "during") as during:
                assert during.get(b"new-1") is None
                assert during.get(b"new-2") is None
                assert during[b"old"] == b"value"
        with open_copy_of_disk(path, tmp_path / "after") as after:
            assert after[b"new-1"] == b"one"
            assert after[b"new-2"] == b"two"
            assert b"old" not in after
    with LevelDB(path) as reopened:
        assert reopened[b"new-1"] == b"one"
        assert b"old" not in reopened


BATCH_WRITER = """
import pathlib, sys
from node.db import LevelDB
database = LevelDB(pathlib.Path(sys.argv[1]))
generation = 0
while True:
    generation += 1
    with database.atomic_batch() as batch:
        for index in range(int(sys.argv[2])):
            batch[b"key-%d" % index] = b"%d" % generation
    print(generation, flush=True)
"""


@pytest.mark.slow
def test_kill_during_batches_leaves_whole_batches(tmp_path: pathlib.Path) -> None:
    # A writer that put the keys one by one (as py-evm's AtomicDB commits)
    # would, with fsync per write, almost surely be killed half-way.
    key_count = 200
    for round_number, delay in enumerate((0.1, 0.3)):
        path = tmp_path / f"db-{round_number}"
        writer = subprocess.Popen(
            [sys.executable, "-c", BATCH_WRITER, str(path), str(key_count)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        assert read_line(writer.stdout) == "1"
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        reported, _ = writer.communicate(timeout=30)
        last_reported = int(reported.split()[-1]) if reported.split() else 1
        with LevelDB(path) as database:
            generations = {database.get(b"key-%d" % index) for index in range(key_count)}
        assert len(generations) == 1, f"a killed batch was half-written: {generations}"
        # A batch the writer saw return was fsynced, so it must have survived.
        (generation,) = generations
        assert generation is not None
        assert int(generation) >= last_reported
