"""The consensus WAL and the signing guard: framing, crash recovery, corruption, refusals."""

from __future__ import annotations

import errno
import json
import logging
import os
import pathlib
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import node.wal as wal_module
from consensus.errors import StorageError
from node.wal import (
    HEADER_SIZE,
    MAGIC,
    RETAINED_POSITIONS,
    ConsensusWal,
    SignedEntry,
    SigningGuard,
    SigningRefused,
    WalKind,
    WalRecord,
    encode_record,
)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
PROPOSAL, PREPARE, COMMIT, ROUND_CHANGE = 0x12, 0x13, 0x14, 0x15
DIGEST_A = b"\xaa" * 32
DIGEST_B = b"\xbb" * 32


def sample_records(count: int) -> list[WalRecord]:
    """Records of several heights and kinds, data of varied length (empty included)."""
    return [
        WalRecord(
            height=3 + index // 7,
            kind=list(WalKind)[index % len(WalKind)],
            data=bytes([index % 251]) * (index * 13 % 90),
        )
        for index in range(count)
    ]


def write_wal(directory: pathlib.Path, records: list[WalRecord]) -> list[int]:
    """Append ``records``; return the file offset after the header and after each record."""
    boundaries = [HEADER_SIZE]
    with ConsensusWal(directory) as wal:
        for record in records:
            wal.append(record, sync=False)
            boundaries.append(os.path.getsize(wal.path))
    return boundaries


def copy_cut(source: pathlib.Path, directory: pathlib.Path, size: int) -> pathlib.Path:
    """A WAL directory holding the first ``size`` bytes of ``source``, as a crash leaves it."""
    directory.mkdir()
    (directory / wal_module.WAL_FILE_NAME).write_bytes(source.read_bytes()[:size])
    return directory


def read_back(directory: pathlib.Path) -> list[WalRecord]:
    with ConsensusWal(directory) as wal:
        return wal.records()


def flip_byte(path: pathlib.Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


# --- framing and round trips ---------------------------------------------------------


def test_the_file_format_is_the_documented_bytes(tmp_path: pathlib.Path) -> None:
    write_wal(tmp_path, [WalRecord(7, 2, b"hi")])
    raw = (tmp_path / "consensus.wal").read_bytes()
    marker = raw[8:12]
    assert b"\x00" not in marker
    assert b"\xff" not in marker
    header = b"PLDRWAL\x01" + marker + struct.pack(">I", zlib.crc32(b"PLDRWAL\x01" + marker))
    body = struct.pack(">QB", 7, 2) + b"hi"
    length = struct.pack(">I", len(body))
    frame = marker + length + struct.pack(">I", zlib.crc32(length + body)) + body
    assert frame[4:].hex() == "0000000ba158736d0000000000000007026869"
    assert raw == header + frame
    assert encode_record(WalRecord(7, 2, b"hi"), marker) == frame


def test_many_records_round_trip_through_a_reopen(tmp_path: pathlib.Path) -> None:
    records = sample_records(600)
    write_wal(tmp_path, records)
    with ConsensusWal(tmp_path) as wal:
        assert wal.records() == records
        assert wal.heights() == sorted({r.height for r in records})
        for height in wal.heights():
            assert wal.replay(height) == [r for r in records if r.height == height]
        assert wal.replay(10_000) == []
    assert all(isinstance(r.kind, WalKind) for r in records)


def test_replay_returns_one_height_in_append_order_including_unsynced_records(
    tmp_path: pathlib.Path,
) -> None:
    with ConsensusWal(tmp_path) as wal:
        interleaved = [
            WalRecord(5, WalKind.PEER_MESSAGE, b"a"),
            WalRecord(6, WalKind.PEER_MESSAGE, b"next height, early"),
            WalRecord(5, WalKind.OWN_MESSAGE, b"b"),
            WalRecord(5, WalKind.TIMEOUT, b"c"),
        ]
        for index, record in enumerate(interleaved):
            wal.append(record, sync=index == 2)
        assert wal.replay(5) == [interleaved[0], interleaved[2], interleaved[3]]
        assert wal.replay(6) == [interleaved[1]]


def test_unknown_kinds_read_back_as_plain_ints_and_bad_records_are_refused(
    tmp_path: pathlib.Path,
) -> None:
    write_wal(tmp_path, [WalRecord(1, 200, b"from a newer node")])
    (record,) = read_back(tmp_path)
    assert record.kind == 200
    assert not isinstance(record.kind, WalKind)
    with pytest.raises(ValueError, match="kind"):
        WalRecord(1, 0, b"")
    with pytest.raises(ValueError, match="height"):
        WalRecord(-1, 1, b"")
    with pytest.raises(ValueError, match="too large"):
        WalRecord(1, 1, bytes(wal_module.MAX_BODY_BYTES))


def test_sync_true_fsyncs_before_returning_and_sync_false_does_not(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_fsync = os.fsync
    with ConsensusWal(tmp_path) as wal:

        def counting_fsync(fd: int) -> None:
            calls.append(fd)
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", counting_fsync)
        wal.append(WalRecord(1, WalKind.PEER_MESSAGE, b"peer"), sync=False)
        assert calls == []
        # Written to the OS right away, not kept in a user-space buffer: a killed
        # process loses nothing.
        assert os.path.getsize(wal.path) == HEADER_SIZE + 12 + 9 + 4
        wal.append(WalRecord(1, WalKind.OWN_MESSAGE, b"mine"), sync=True)
        assert len(calls) == 1


# --- truncation ------------------------------------------------------------------------


def test_truncate_before_drops_lower_heights_and_keeps_appending(tmp_path: pathlib.Path) -> None:
    records = sample_records(70)  # heights 3..12
    write_wal(tmp_path, records)
    with ConsensusWal(tmp_path) as wal:
        wal.truncate_before(11)
        assert wal.heights() == [11, 12]
        assert wal.replay(10) == []
        later = WalRecord(13, WalKind.HEIGHT_START, b"")
        wal.append(later, sync=True)
    kept = [r for r in records if r.height >= 11]
    assert read_back(tmp_path) == [*kept, later]
    assert not (tmp_path / wal_module.COMPACT_FILE_NAME).exists()


def test_truncate_before_with_nothing_to_drop_leaves_the_file_alone(
    tmp_path: pathlib.Path,
) -> None:
    write_wal(tmp_path, sample_records(20))
    inode = (tmp_path / "consensus.wal").stat().st_ino
    with ConsensusWal(tmp_path) as wal:
        wal.truncate_before(3)
    assert (tmp_path / "consensus.wal").stat().st_ino == inode


def test_a_crash_during_compaction_leaves_the_whole_old_wal(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = sample_records(30)
    write_wal(tmp_path, records)
    # A crash before the rename leaves a half-written compacted copy behind.
    (tmp_path / wal_module.COMPACT_FILE_NAME).write_bytes(MAGIC + b"\x00\x01")
    assert read_back(tmp_path) == records
    assert not (tmp_path / wal_module.COMPACT_FILE_NAME).exists()

    def failing_replace(*_: object) -> None:
        raise OSError(errno.EIO, "I/O error")

    with ConsensusWal(tmp_path) as wal:
        monkeypatch.setattr(os, "replace", failing_replace)
        with pytest.raises(StorageError, match="it is unchanged"):
            wal.truncate_before(5)
        monkeypatch.undo()
        assert wal.records() == records
        wal.append(WalRecord(9, WalKind.TIMEOUT, b""), sync=True)
    assert read_back(tmp_path) == [*records, WalRecord(9, WalKind.TIMEOUT, b"")]


# --- crashes: torn tails ------------------------------------------------------------------


def test_a_crash_at_every_record_boundary_replays_exactly_the_records_before_it(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = sample_records(40)
    boundaries = write_wal(tmp_path / "full", records)
    source = tmp_path / "full" / "consensus.wal"
    with caplog.at_level(logging.WARNING, logger="polder.wal"):
        for count, size in enumerate(boundaries):
            assert read_back(copy_cut(source, tmp_path / f"cut-{size}", size)) == records[:count]
    assert caplog.records == []


def test_a_crash_at_every_byte_inside_the_last_record_cuts_it_off(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = [*sample_records(10), WalRecord(9, WalKind.OWN_MESSAGE, bytes(range(120)))]
    boundaries = write_wal(tmp_path / "full", records)
    source = tmp_path / "full" / "consensus.wal"
    for size in range(boundaries[-2] + 1, boundaries[-1]):
        caplog.clear()
        directory = copy_cut(source, tmp_path / f"cut-{size}", size)
        with caplog.at_level(logging.WARNING, logger="polder.wal"):
            assert read_back(directory) == records[:-1]
        assert "torn tail" in caplog.text
        assert f"at offset {boundaries[-2]}" in caplog.text
        assert (directory / "consensus.wal").stat().st_size == boundaries[-2]
    # After the cut, appending continues on a clean end.
    again = WalRecord(9, WalKind.OWN_MESSAGE, b"sent again")
    with ConsensusWal(directory) as wal:
        wal.append(again, sync=True)
    assert read_back(directory) == [*records[:-1], again]


def test_a_crash_inside_any_record_keeps_every_record_before_it(tmp_path: pathlib.Path) -> None:
    records = sample_records(12)
    boundaries = write_wal(tmp_path / "full", records)
    source = tmp_path / "full" / "consensus.wal"
    for size in range(HEADER_SIZE, boundaries[-1] + 1):
        complete = sum(1 for end in boundaries[1:] if end <= size)
        assert read_back(copy_cut(source, tmp_path / f"cut-{size}", size)) == records[:complete]


def test_a_torn_or_missing_header_starts_an_empty_wal(tmp_path: pathlib.Path) -> None:
    write_wal(tmp_path / "fresh", [])
    header = (tmp_path / "fresh" / "consensus.wal").read_bytes()
    assert len(header) == HEADER_SIZE
    for size in range(HEADER_SIZE):
        directory = copy_cut(tmp_path / "fresh" / "consensus.wal", tmp_path / f"h-{size}", size)
        assert read_back(directory) == []
        rewritten = (directory / "consensus.wal").read_bytes()
        assert len(rewritten) == HEADER_SIZE
        assert rewritten.startswith(MAGIC)


def test_a_damaged_header_is_refused_unless_no_record_follows_it(tmp_path: pathlib.Path) -> None:
    write_wal(tmp_path / "records", sample_records(3))
    write_wal(tmp_path / "empty", [])
    for offset in range(HEADER_SIZE):
        damaged = copy_cut(tmp_path / "records" / "consensus.wal", tmp_path / f"r-{offset}", 10**6)
        flip_byte(damaged / "consensus.wal", offset)
        with pytest.raises(StorageError, match=r"not a Polder consensus WAL|damaged header"):
            ConsensusWal(damaged)
        empty = copy_cut(tmp_path / "empty" / "consensus.wal", tmp_path / f"e-{offset}", 10**6)
        flip_byte(empty / "consensus.wal", offset)
        if offset >= len(MAGIC):  # only a marker or its checksum: no record to lose
            assert read_back(empty) == []
        else:
            with pytest.raises(StorageError, match="not a Polder consensus WAL"):
                ConsensusWal(empty)


def test_a_torn_multi_megabyte_record_of_length_like_bytes_is_cut_off_quickly(
    tmp_path: pathlib.Path,
) -> None:
    # Every 4th offset of this data reads as a plausible 512 KiB length: without
    # the frame marker, deciding "torn tail or damage" would checksum ~2 TB.
    block = WalRecord(8, WalKind.PEER_MESSAGE, b"\x00\x08\x00\x00" * (1 << 20))
    after = WalRecord(8, WalKind.TIMEOUT, b"")
    boundaries = write_wal(tmp_path / "full", [WalRecord(8, 6, b""), block, after])
    source = tmp_path / "full" / "consensus.wal"
    started = time.monotonic()
    torn = copy_cut(source, tmp_path / "torn", (boundaries[1] + boundaries[2]) // 2)
    assert read_back(torn) == [WalRecord(8, 6, b"")]
    damaged = copy_cut(source, tmp_path / "damaged", boundaries[3])
    flip_byte(damaged / "consensus.wal", boundaries[1] + 100)
    with pytest.raises(StorageError, match=f"byte offset {boundaries[1]}"):
        ConsensusWal(damaged)
    assert time.monotonic() - started < 2


def test_a_zero_filled_tail_after_power_loss_is_cut_off(tmp_path: pathlib.Path) -> None:
    records = sample_records(8)
    write_wal(tmp_path, records)
    with (tmp_path / "consensus.wal").open("ab") as file:
        file.write(bytes(4096))
    assert read_back(tmp_path) == records


# --- corruption ----------------------------------------------------------------------------


@pytest.mark.parametrize("where", [0, 3, 4, 7, 8, 15, 16, 17, 40])
def test_a_flipped_byte_in_the_middle_raises_a_clear_storage_error(
    tmp_path: pathlib.Path, where: int
) -> None:
    records = [
        *sample_records(5),
        WalRecord(4, WalKind.PEER_MESSAGE, bytes(60)),
        *sample_records(5),
    ]
    boundaries = write_wal(tmp_path, records)
    damaged = boundaries[5]
    flip_byte(tmp_path / "consensus.wal", damaged + where)
    with pytest.raises(StorageError) as caught:
        ConsensusWal(tmp_path)
    message = caught.value.message
    assert str(tmp_path / "consensus.wal") in message
    assert f"byte offset {damaged}" in message
    assert "move the directory" in message
    assert "signing guard" in message
    assert caught.value.data == {"path": str(tmp_path / "consensus.wal"), "offset": damaged}
    # The failed open released the lock: after moving the WAL aside the node starts.
    os.rename(tmp_path / "consensus.wal", tmp_path / "consensus.wal.damaged")
    assert read_back(tmp_path) == []


def test_a_flipped_byte_anywhere_in_the_last_record_cuts_it_off(tmp_path: pathlib.Path) -> None:
    records = sample_records(6)
    boundaries = write_wal(tmp_path / "full", records)
    source = tmp_path / "full" / "consensus.wal"
    for offset in range(boundaries[-2], boundaries[-1]):
        directory = copy_cut(source, tmp_path / f"flip-{offset}", boundaries[-1])
        flip_byte(directory / "consensus.wal", offset)
        assert read_back(directory) == records[:-1]


def test_a_file_that_is_not_a_wal_is_refused(tmp_path: pathlib.Path) -> None:
    (tmp_path / "consensus.wal").write_bytes(b"SQLite format 3\x00")
    with pytest.raises(StorageError, match="not a Polder consensus WAL"):
        ConsensusWal(tmp_path)


# --- failures while running -------------------------------------------------------------------


def test_a_failed_append_cuts_its_partial_record_and_the_wal_stays_usable(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = WalRecord(1, WalKind.PEER_MESSAGE, b"first")
    with ConsensusWal(tmp_path) as wal:
        wal.append(first, sync=True)
        size = os.path.getsize(wal.path)
        real_pwrite = os.pwrite

        def disk_full_half_way(fd: int, data: memoryview, offset: int) -> int:
            if len(data) > 10:
                return real_pwrite(fd, data[:10], offset)
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "pwrite", disk_full_half_way)
        with pytest.raises(StorageError, match="disk full"):
            wal.append(WalRecord(1, WalKind.PEER_MESSAGE, b"x" * 50), sync=False)
        monkeypatch.undo()
        assert os.path.getsize(wal.path) == size
        second = WalRecord(1, WalKind.OWN_MESSAGE, b"second")
        wal.append(second, sync=True)
    assert read_back(tmp_path) == [first, second]


def test_after_a_failed_fsync_the_wal_refuses_writes_until_restarted(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal = ConsensusWal(tmp_path)

    def failing_fsync(_: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StorageError, match="nothing may be sent"):
        wal.append(WalRecord(1, WalKind.OWN_MESSAGE, b"vote"), sync=True)
    with pytest.raises(StorageError, match="restart the node"):
        wal.append(WalRecord(1, WalKind.PEER_MESSAGE, b"later"), sync=False)
    with pytest.raises(StorageError, match="could not fsync"):
        wal.close()
    monkeypatch.undo()
    with ConsensusWal(tmp_path) as reopened:
        reopened.append(WalRecord(1, WalKind.PEER_MESSAGE, b"after restart"), sync=True)


def test_a_wal_directory_is_opened_by_one_owner_at_a_time(tmp_path: pathlib.Path) -> None:
    wal = ConsensusWal(tmp_path)
    with pytest.raises(StorageError, match="in use by another node process"):
        ConsensusWal(tmp_path)
    wal.close()
    wal.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        wal.append(WalRecord(1, WalKind.TIMEOUT, b""), sync=False)
    with ConsensusWal(tmp_path):
        pass


# --- property tests ---------------------------------------------------------------------------

record_strategy = st.builds(
    WalRecord,
    height=st.integers(min_value=0, max_value=5) | st.just(2**64 - 1),
    kind=st.integers(min_value=1, max_value=255),
    data=st.binary(max_size=48),
)


@settings(max_examples=60, deadline=None)
@given(records=st.lists(record_strategy, max_size=25), cut=st.floats(min_value=0, max_value=1))
def test_any_records_cut_anywhere_replay_as_the_complete_prefix(
    records: list[WalRecord], cut: float
) -> None:
    with tempfile.TemporaryDirectory() as name:
        root = pathlib.Path(name)
        boundaries = write_wal(root / "full", records)
        size = HEADER_SIZE + round(cut * (boundaries[-1] - HEADER_SIZE))
        directory = copy_cut(root / "full" / "consensus.wal", root / "cut", size)
        complete = records[: sum(1 for end in boundaries[1:] if end <= size)]
        with ConsensusWal(directory) as wal:
            assert wal.records() == complete
            for height in {r.height for r in records}:
                assert wal.replay(height) == [r for r in complete if r.height == height]


@settings(max_examples=40, deadline=None)
@given(records=st.lists(record_strategy, min_size=1, max_size=15), where=st.data())
def test_one_flipped_byte_is_cut_off_in_the_last_record_and_refused_before_it(
    records: list[WalRecord], where: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as name:
        directory = pathlib.Path(name)
        boundaries = write_wal(directory, records)
        offset = where.draw(st.integers(min_value=HEADER_SIZE, max_value=boundaries[-1] - 1))
        flip_byte(directory / "consensus.wal", offset)
        if offset >= boundaries[-2]:
            assert read_back(directory) == records[:-1]
        else:
            with pytest.raises(StorageError, match="corrupted"):
                ConsensusWal(directory)


# --- a real kill --------------------------------------------------------------------------------

WRITER = """
import pathlib, sys
from node.wal import ConsensusWal, WalKind, WalRecord
wal = ConsensusWal(pathlib.Path(sys.argv[1]))
index = 0
while True:
    wal.append(WalRecord(index // 10, WalKind.OWN_MESSAGE, b"%d:" % index + bytes(300)), sync=True)
    print(index, flush=True)
    index += 1
"""


@pytest.mark.slow
def test_every_record_acknowledged_before_sigkill_survives(tmp_path: pathlib.Path) -> None:
    for attempt, delay in enumerate((0.05, 0.3)):
        directory = tmp_path / f"wal-{attempt}"
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(directory)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        assert writer.stdout is not None
        assert writer.stdout.readline() == "0\n"
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        printed, _ = writer.communicate(timeout=30)
        # Only whole lines are acknowledgements: the kill may cut the last one.
        lines = printed.split("\n")[:-1]
        last_acknowledged = int(lines[-1]) if lines else 0
        survived = [int(r.data.split(b":")[0]) for r in read_back(directory)]
        assert survived == list(range(len(survived))), "records lost or reordered"
        assert len(survived) >= last_acknowledged + 1, "an acknowledged record was lost"
        assert len(survived) <= last_acknowledged + 2  # besides, at most the one in flight


# --- the signing guard ----------------------------------------------------------------------------


def restart(guard: SigningGuard) -> SigningGuard:
    """What a node restart does: the old object is gone, a new one reads the file."""
    guard.close()
    return SigningGuard(guard.path)


def test_the_guard_refuses_a_conflicting_digest_across_a_restart(tmp_path: pathlib.Path) -> None:
    guard = SigningGuard(tmp_path / "guard.json")
    assert guard.may_sign(10, 0, PREPARE, DIGEST_A)
    guard.record(10, 0, PREPARE, DIGEST_A)
    guard = restart(guard)
    assert not guard.may_sign(10, 0, PREPARE, DIGEST_B)
    with pytest.raises(SigningRefused, match="a different digest was signed"):
        guard.record(10, 0, PREPARE, DIGEST_B)
    # The same message again (re-broadcast after restart) is fine.
    assert guard.may_sign(10, 0, PREPARE, DIGEST_A)
    guard.record(10, 0, PREPARE, DIGEST_A)
    # Another kind at the same position, and higher positions, are fine.
    assert guard.may_sign(10, 0, COMMIT, DIGEST_B)
    assert guard.may_sign(10, 1, PREPARE, DIGEST_B)
    assert guard.may_sign(11, 0, PREPARE, DIGEST_B)
    guard.close()


def test_the_guard_refuses_every_kind_below_the_last_signed_position(
    tmp_path: pathlib.Path,
) -> None:
    guard = SigningGuard(tmp_path / "guard.json")
    guard.record(10, 0, PREPARE, DIGEST_A)
    guard.record(10, 1, ROUND_CHANGE, DIGEST_B)  # the round change into round 1
    guard = restart(guard)
    assert guard.high == (10, 1)
    other = b"\x01" * 32
    for kind in (PROPOSAL, PREPARE, COMMIT, ROUND_CHANGE):
        assert not guard.may_sign(9, 5, kind, other)
        assert not guard.may_sign(10, 0, kind, other)
    assert guard.may_sign(10, 0, PREPARE, DIGEST_A)  # identical to what was signed
    assert not guard.may_sign(10, 1, ROUND_CHANGE, other)
    for kind in (PROPOSAL, PREPARE, COMMIT):
        assert guard.may_sign(10, 1, kind, other)
    with pytest.raises(SigningRefused, match="below"):
        guard.record(10, 0, COMMIT, DIGEST_A)
    guard.close()


def test_the_guard_keeps_identical_digests_only_for_the_last_positions(
    tmp_path: pathlib.Path,
) -> None:
    guard = SigningGuard(tmp_path / "guard.json")
    for round_number in range(RETAINED_POSITIONS + 2):
        guard.record(20, round_number, ROUND_CHANGE, bytes([round_number]) * 32)
    guard = restart(guard)
    assert guard.may_sign(20, 2, ROUND_CHANGE, bytes([2]) * 32)
    assert not guard.may_sign(20, 1, ROUND_CHANGE, bytes([1]) * 32)
    assert len(guard.path.read_text().split("\n")) < 100  # stays small
    guard.close()


def test_the_guard_survives_a_crash_between_temp_file_and_rename(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Crash(BaseException):
        """The process dies: nothing after this point runs."""

    guard = SigningGuard(tmp_path / "guard.json")
    guard.record(30, 0, PREPARE, DIGEST_A)

    def crash(*_: object) -> None:
        raise Crash

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(Crash):
        guard.record(30, 0, COMMIT, DIGEST_B)
    monkeypatch.undo()
    temp = tmp_path / "guard.json.tmp"
    assert temp.exists()  # written and fsynced, never renamed
    guard = restart(guard)
    assert not temp.exists()
    # record() never returned, so nothing was signed: the old state holds.
    assert guard.may_sign(30, 0, COMMIT, DIGEST_A)
    assert not guard.may_sign(30, 0, PREPARE, DIGEST_B)
    guard.close()
    # A temp file torn half-way (crash during its write) is ignored the same way.
    temp.write_bytes(b'{"sha256": "00')
    guard = SigningGuard(tmp_path / "guard.json")
    assert not guard.may_sign(30, 0, PREPARE, DIGEST_B)
    guard.close()


def test_a_damaged_guard_file_stops_the_node_with_advice(tmp_path: pathlib.Path) -> None:
    guard = SigningGuard(tmp_path / "guard.json")
    guard.record(40, 2, COMMIT, DIGEST_A)
    guard.close()
    document = json.loads(guard.path.read_text())
    document["state"]["high"] = [4, 2]  # valid JSON, a lower height: bit rot or tampering
    guard.path.write_text(json.dumps(document))
    with pytest.raises(StorageError, match="is damaged") as caught:
        SigningGuard(guard.path)
    assert "WAL" in caught.value.message
    guard.path.write_text("{")
    with pytest.raises(StorageError, match="is damaged"):
        SigningGuard(guard.path)


def test_a_guard_is_held_by_one_owner_at_a_time(tmp_path: pathlib.Path) -> None:
    guard = SigningGuard(tmp_path / "guard.json")
    with pytest.raises(StorageError, match="in use by another node process"):
        SigningGuard(tmp_path / "guard.json")
    guard.close()
    with pytest.raises(StorageError, match="closed"):
        guard.may_sign(1, 0, PREPARE, DIGEST_A)


def encode_own(height: int, round_number: int, kind: int, digest: bytes) -> WalRecord:
    return WalRecord(
        height, WalKind.OWN_MESSAGE, struct.pack(">QIB", height, round_number, kind) + digest
    )


def decode_own(record: WalRecord) -> SignedEntry:
    height, round_number, kind = struct.unpack_from(">QIB", record.data)
    return SignedEntry(height, round_number, kind, record.data[13:])


def test_a_lost_guard_blocks_the_wal_heights_until_recovered_from_the_wal(
    tmp_path: pathlib.Path,
) -> None:
    with ConsensusWal(tmp_path / "wal") as wal:
        wal.append(WalRecord(50, WalKind.PEER_MESSAGE, b"peer"), sync=False)
        wal.append(encode_own(50, 0, PREPARE, DIGEST_A), sync=True)
        wal.append(encode_own(51, 1, ROUND_CHANGE, DIGEST_B), sync=True)
        wal.append(WalRecord(51, WalKind.TIMEOUT, b""), sync=False)
        guard = SigningGuard(tmp_path / "guard.json", wal=wal)
        assert guard.blocked_through == 51
        for height in (1, 50, 51):
            assert not guard.may_sign(height, 9, PREPARE, DIGEST_A)
        assert guard.may_sign(52, 0, PREPARE, DIGEST_A)
        guard = restart(guard)  # the block is on disk, not only in memory
        assert not guard.may_sign(51, 1, ROUND_CHANGE, DIGEST_B)
        guard.recover_from(wal.records(), decode_own)
    assert guard.blocked_through is None
    assert guard.high == (51, 1)
    assert guard.may_sign(51, 1, ROUND_CHANGE, DIGEST_B)
    assert not guard.may_sign(51, 1, ROUND_CHANGE, DIGEST_A)
    assert guard.may_sign(51, 1, PROPOSAL, DIGEST_A)
    assert not guard.may_sign(51, 0, PREPARE, DIGEST_A)
    assert not guard.may_sign(49, 0, PREPARE, DIGEST_A)
    guard = restart(guard)
    assert guard.high == (51, 1)
    guard.close()


def test_recovery_refuses_heights_the_wal_truncated_even_without_own_messages(
    tmp_path: pathlib.Path,
) -> None:
    with ConsensusWal(tmp_path / "wal") as wal:
        wal.append(WalRecord(60, WalKind.PEER_MESSAGE, b"peer"), sync=True)
        with SigningGuard(tmp_path / "guard.json", wal=wal) as guard:
            guard.recover_from(wal.records(), decode_own)
            assert not guard.may_sign(59, 3, COMMIT, DIGEST_A)
            assert guard.may_sign(60, 0, PREPARE, DIGEST_A)
            clash = [encode_own(60, 0, PREPARE, DIGEST_A), encode_own(60, 0, PREPARE, DIGEST_B)]
            with pytest.raises(StorageError, match="two different signed messages"):
                guard.recover_from(clash, decode_own)


def test_signing_above_the_blocked_heights_lifts_the_block(tmp_path: pathlib.Path) -> None:
    with ConsensusWal(tmp_path / "wal") as wal:
        wal.append(WalRecord(70, WalKind.PEER_MESSAGE, b"peer"), sync=True)
        guard = SigningGuard(tmp_path / "guard.json", wal=wal)
    guard.record(72, 0, PREPARE, DIGEST_A)  # the chain moved on by block sync
    assert guard.blocked_through is None
    assert not guard.may_sign(70, 0, PREPARE, DIGEST_A)
    guard.close()


def test_a_fresh_guard_without_a_wal_allows_signing(tmp_path: pathlib.Path) -> None:
    empty = ConsensusWal(tmp_path / "wal")
    with SigningGuard(tmp_path / "keys" / "guard.json", wal=empty) as guard:
        assert guard.blocked_through is None
        assert guard.high is None
        assert guard.may_sign(0, 0, PROPOSAL, DIGEST_A)
    empty.close()
