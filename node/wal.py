"""The consensus write-ahead log and the signing guard of a validator.

Two files keep a validator from ever signing two conflicting consensus messages
(DESIGN.md, "a consensus WAL"; docs/spec/consensus.md ``[QBFT-WAL.1]``/``[QBFT-WAL.2]``):

* :class:`ConsensusWal` records every input of the state machine before it is
  handled, and our own signed messages fsynced before they are sent, so that
  after a crash the node replays the height it was deciding and ends up in the
  state it had (it never "forgets" a vote it cast).
* :class:`SigningGuard` is a small file, rewritten atomically, that remembers
  what was signed last. It is checked before every signature, so even a lost or
  damaged WAL cannot make the validator sign a conflicting message.

WAL layout: one rolling file
----------------------------
The WAL is one append-only file, ``<directory>/consensus.wal``, holding records
of any height in the order they were appended (a peer's message for the next
height may arrive while this one is being decided). ``truncate_before`` compacts
it by writing the records to keep into ``consensus.wal.compact``, fsyncing it,
renaming it over the WAL and fsyncing the directory: a crash leaves either the
old or the new file, both complete. The file only ever holds the last one or
two heights, so the copy is small. ``<directory>/consensus.wal.lock`` is held
with ``flock`` while the WAL is open, so two node processes cannot write one WAL.

File format (all integers big-endian, unsigned)::

    file   = MAGIC marker hcrc:u32 frame*          16-byte file header, then frames
    MAGIC  = b"PLDRWAL" 0x01                      8 bytes, 0x01 = format version
    marker = 4 random bytes, none 0x00 or 0xff     chosen when the file is created
    hcrc   = zlib.crc32(MAGIC || marker)
    frame  = marker length:u32 crc:u32 body        12 + length bytes
    body   = height:u64 kind:u8 data               9 + len(data) bytes
    crc    = zlib.crc32(length_bytes || body)      CRC-32 (IEEE) over the 4 length
                                                   bytes and the body

``length`` is at least 9 and at most :data:`MAX_BODY_BYTES`; ``kind`` is at
least 1 (see :class:`WalKind`). With marker ``M``, a record of height 7, kind
2, data ``b"hi"`` is the 23 bytes
``M | 00 00 00 0b | a1 58 73 6d | 00 00 00 00 00 00 00 07 | 02 | 68 69``.

The marker repeated in every frame is what makes recovery linear: to decide
whether damage is a torn tail or lies in the middle, the reader looks for any
valid frame after it, and only offsets holding the marker (found with
``bytes.find``) are candidates. Without it every byte offset would be one, and
a torn multi-megabyte record whose data happens to look like lengths (ABI
words, or a peer's crafted block: peers' messages are logged too) would cost a
checksum of megabytes per offset. The marker is random per file and never sent
anywhere, so a peer cannot plant fake frames in a message.

Appends are written straight to the file (one ``pwrite``, no user-space
buffer), so a killed process loses nothing it appended; ``sync=True`` also
fsyncs, which makes that record and every record before it survive a power
loss. On open, the file is checked frame by frame:

* a **torn tail** (a partial last frame, or trailing bytes with a bad checksum
  and no valid frame after them) is what a crash in the middle of an append
  leaves: it is cut off with a warning in the log. Such a record was never
  fsynced, so nothing the node sent depended on it.
* a bad frame **followed by a valid frame** cannot come from a crash during an
  append: it is corruption, and opening raises :class:`StorageError` naming
  the file and offset. The operator moves the WAL directory aside; the node
  then starts an empty WAL and the signing guard (kept elsewhere, intact)
  still refuses every conflicting signature.

The signing guard rule
----------------------
Positions ``(height, round)`` are ordered lexicographically. The guard keeps
the highest position it has recorded (``high``), the digests recorded at the
last :data:`RETAINED_POSITIONS` distinct positions, and optionally
``blocked_through``. ``may_sign(height, round, kind, digest)`` is decided in
this order:

1. ``height <= blocked_through`` → refused (see "missing guard file" below);
2. a digest is held for ``(height, round, kind)`` → allowed only if it is the
   same digest (re-sending the identical message after a restart is harmless);
3. ``(height, round) < high`` → refused, whatever the kind: QBFT signs
   proposals, prepares, commits and round changes only for the round it is in,
   and rounds and heights only move up (a round change carries the round it
   moves to), so a lower position means a restart with an old state;
4. otherwise allowed: a higher position, or another kind at ``high``.

``kind`` is any integer the caller uses consistently (the node passes the
message code of :class:`consensus.messages.MessageKind`), and ``round`` is the
message's own round field.

Missing guard file: if the WAL holds records but the guard file is gone, the
validator may have signed at those heights and cannot know what. A guard
opened with ``wal=`` in that situation persists ``blocked_through`` = the
highest WAL height, and refuses every height up to it until
:meth:`SigningGuard.recover_from` rebuilds its state from our own messages in
the WAL (or the chain moves past that height). A guard file that is missing
together with the WAL cannot be detected; keep both in the node's data
directory and back up neither separately.

Guard file: UTF-8 JSON ``{"sha256": hex, "state": {...}}`` where the hash is
over the canonical JSON (sorted keys, no spaces) of ``state``, written to
``<path>.tmp``, fsynced, renamed over ``<path>``, and the directory fsynced,
all before ``record`` returns. ``<path>.lock`` is held with ``flock``.

Every method blocks on disk I/O (fsync): the node calls them on its executor
thread, one thread at a time; neither class is thread-safe.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

from consensus.errors import PolderError, StorageError

log = logging.getLogger("polder.wal")

WAL_FILE_NAME = "consensus.wal"
"""Name of the WAL file inside the WAL directory."""
COMPACT_FILE_NAME = "consensus.wal.compact"
"""Name of the compacted copy while ``truncate_before`` writes it."""
LOCK_FILE_NAME = "consensus.wal.lock"
"""Name of the lock file inside the WAL directory."""
MAGIC = b"PLDRWAL\x01"
"""First 8 bytes of a WAL file: a tag and the format version."""
MARKER_SIZE = 4
"""Bytes of the file's random frame marker, after MAGIC and before every frame."""
HEADER_SIZE = len(MAGIC) + MARKER_SIZE + 4
"""Bytes before the first frame: MAGIC, the marker and a CRC-32 of both."""
FRAME_HEADER = struct.Struct(">4sII")
"""The marker, ``length`` of the body and the CRC-32 of length bytes and body."""
BODY_HEADER = struct.Struct(">QB")
"""``height`` and ``kind`` at the start of each body."""
MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest body: room for a ``MAX_MESSAGE_BYTES`` (9 MiB) consensus message or a
built block with its fields. A larger length field is treated as damage."""
MAX_HEIGHT = 2**64 - 1
"""Largest height a record can carry (u64)."""
RETAINED_POSITIONS = 8
"""Distinct (height, round) positions whose digests the signing guard keeps, so
that identical messages of the last few rounds may be sent again."""
GUARD_VERSION = 1
"""Version of the signing-guard file's ``state``."""


class WalKind(IntEnum):
    """What a WAL record holds. Codes are stored on disk: never renumber."""

    OWN_MESSAGE = 1
    """A consensus message we signed (fsynced before sending)."""
    PEER_MESSAGE = 2
    """A consensus message received from a peer."""
    TIMEOUT = 3
    """A round timer that fired."""
    BLOCK_BUILT = 4
    """The node's answer to ``BuildBlock``."""
    PROPOSAL_CHECKED = 5
    """The node's answer to ``CheckProposal``."""
    HEIGHT_START = 6
    """The node started deciding a height."""


KNOWN_KINDS = frozenset(WalKind)
"""Kind codes this version names; others read back as plain ints."""


class SigningRefused(PolderError):
    """The signing guard refuses a signature that could conflict with an earlier one."""

    code = -32031


@dataclass(frozen=True)
class WalRecord:
    """One input (or own message) of the consensus engine, as logged."""

    height: int
    """Height being decided when the record was appended (0 to 2**64-1)."""
    kind: int
    """A :class:`WalKind` code (1 to 255; unknown codes read back as plain ints)."""
    data: bytes
    """The encoded event or message; opaque to the WAL."""

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            raise TypeError(f"WAL record data must be bytes, not {type(self.data).__name__}")
        if not 0 <= self.height <= MAX_HEIGHT:
            raise ValueError(f"WAL record height {self.height} is outside 0..2**64-1")
        if not 1 <= self.kind <= 255:
            raise ValueError(f"WAL record kind {self.kind} is outside 1..255")
        if len(self.data) > MAX_BODY_BYTES - BODY_HEADER.size:
            raise ValueError(f"WAL record data of {len(self.data)} bytes is too large")
        if self.kind in KNOWN_KINDS:
            object.__setattr__(self, "kind", WalKind(self.kind))


@dataclass(frozen=True)
class SignedEntry:
    """What the signing guard knows of one signature."""

    height: int
    """Height of the signed message."""
    round: int
    """Round field of the signed message."""
    kind: int
    """Message kind code (e.g. ``MessageKind.PREPARE``)."""
    digest: bytes
    """Digest that was signed."""


# --- encoding ------------------------------------------------------------------


def compute_marker() -> bytes:
    """Return a fresh random frame marker (no 0x00 or 0xff: zero-filled or erased tails)."""
    while True:
        marker = os.urandom(MARKER_SIZE)
        if b"\x00" not in marker and b"\xff" not in marker:
            return marker


def encode_header(marker: bytes) -> bytes:
    """Return the file header: MAGIC, the frame marker, and a CRC-32 of both."""
    return MAGIC + marker + struct.pack(">I", zlib.crc32(MAGIC + marker))


def encode_record(record: WalRecord, marker: bytes) -> bytes:
    """Return the frame of ``record``: marker, length, checksum, body."""
    body = BODY_HEADER.pack(record.height, record.kind) + record.data
    length = struct.pack(">I", len(body))
    checksum = zlib.crc32(body, zlib.crc32(length))
    return marker + length + struct.pack(">I", checksum) + body


def decode_frame(buf: bytes, offset: int, marker: bytes) -> tuple[WalRecord, int] | None:
    """Return the record framed at ``offset`` and where it ends, or None if no valid frame."""
    if len(buf) - offset < FRAME_HEADER.size + BODY_HEADER.size:
        return None
    found, length, checksum = FRAME_HEADER.unpack_from(buf, offset)
    end = offset + FRAME_HEADER.size + length
    if found != marker or not BODY_HEADER.size <= length <= MAX_BODY_BYTES or end > len(buf):
        return None
    view = memoryview(buf)
    body = view[offset + FRAME_HEADER.size : end]
    length_bytes = view[offset + MARKER_SIZE : offset + MARKER_SIZE + 4]
    if zlib.crc32(body, zlib.crc32(length_bytes)) != checksum:
        return None
    height, kind = BODY_HEADER.unpack_from(body)
    if kind == 0:
        return None
    return WalRecord(height, kind, bytes(body[BODY_HEADER.size :])), end


def find_next_frame(buf: bytes, start: int, marker: bytes) -> int | None:
    """Return the first offset at or after ``start`` where a valid frame begins."""
    offset = buf.find(marker, start)
    while offset != -1:
        if decode_frame(buf, offset, marker) is not None:
            return offset
        offset = buf.find(marker, offset + 1)
    return None


# --- small disk helpers ----------------------------------------------------------


def write_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (``pwrite`` may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.EIO, "the disk accepted no bytes")
        view = view[written:]
        offset += written


def read_all(fd: int, size: int, offset: int = 0) -> bytes:
    """Read ``size`` bytes at ``offset`` (fewer if the file is shorter)."""
    chunks: list[bytes] = []
    while size > 0:
        chunk = os.pread(fd, min(size, 1 << 24), offset)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def acquire_lock(path: Path, what: str) -> int:
    """Hold an exclusive ``flock`` on ``path``; raise StorageError if someone else does."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StorageError(f"cannot open the {what} lock {path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            raise StorageError(
                f"the {what} at {path.parent} is in use by another node process "
                f"(lock {path} is held): stop that node first; two processes must "
                "never sign with one validator key",
                path=str(path),
            ) from exc
        raise StorageError(f"cannot lock {path}: {exc.strerror}") from exc
    return fd


def release_lock(fd: int) -> None:
    """Drop a lock taken by :func:`acquire_lock`."""
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


# --- the WAL ---------------------------------------------------------------------


class ConsensusWal:
    """An append-only log of consensus inputs in one directory (see the module doc)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / WAL_FILE_NAME
        self._fd = -1
        self._end = 0
        self._marker = b""
        self._index: list[tuple[int, int, int]] = []
        """(height, offset, frame size) of each record, in file order."""
        self._broken: str | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the WAL directory {self.directory}: {exc}") from exc
        self._lock_fd = acquire_lock(self.directory / LOCK_FILE_NAME, "consensus WAL")
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        compact = self.directory / COMPACT_FILE_NAME
        if compact.exists():
            # A crash during truncate_before, before its rename: the WAL is still whole.
            log.warning("removing %s left by an interrupted WAL compaction", compact)
            compact.unlink()
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            buf = read_all(self._fd, os.fstat(self._fd).st_size)
        except OSError as exc:
            raise StorageError(f"cannot open the consensus WAL {self.path}: {exc}") from exc
        if len(buf) < HEADER_SIZE and MAGIC.startswith(buf[: len(MAGIC)]):
            self._write_header(bool(buf))  # its creation was cut short: no records yet
            return
        if buf[: len(MAGIC)] != MAGIC:
            raise StorageError(
                f"{self.path} is not a Polder consensus WAL of format version 1 (its first "
                f"bytes are {buf[:8].hex()}): move it aside if it is stray, or run the node "
                "version that wrote it",
                path=str(self.path),
            )
        marker = buf[len(MAGIC) : len(MAGIC) + MARKER_SIZE]
        if buf[:HEADER_SIZE] != encode_header(marker):
            if len(buf) == HEADER_SIZE:
                self._write_header(True)
                return
            raise StorageError(
                f"consensus WAL {self.path} has a damaged header (byte offsets 0-15). Stop "
                f"the node, move the directory {self.directory} aside (keep it for "
                "inspection) and restart: the signing guard still refuses to sign anything "
                "that could conflict with what it signed before",
                path=str(self.path),
                offset=0,
            )
        self._marker = marker
        self._end = self._scan(buf)

    def _write_header(self, torn: bool) -> None:
        # A new WAL, or one whose creation was cut short before its first record.
        if torn:
            log.warning("consensus WAL %s has a torn header: starting it afresh", self.path)
        marker = compute_marker()
        try:
            os.ftruncate(self._fd, 0)
            write_all(self._fd, encode_header(marker), 0)
            os.fsync(self._fd)
            fsync_directory(self.directory)
        except OSError as exc:
            raise StorageError(f"cannot create the consensus WAL {self.path}: {exc}") from exc
        self._marker, self._end = marker, HEADER_SIZE

    def _scan(self, buf: bytes) -> int:
        """Index every frame; cut a torn tail; raise on damage before the end."""
        offset = HEADER_SIZE
        while offset < len(buf):
            frame = decode_frame(buf, offset, self._marker)
            if frame is None:
                break
            record, end = frame
            self._index.append((record.height, offset, end - offset))
            offset = end
        if offset == len(buf):
            return offset
        following = find_next_frame(buf, offset + 1, self._marker)
        if following is not None:
            raise StorageError(
                f"consensus WAL {self.path} is corrupted at byte offset {offset}: the "
                f"record there is damaged but a valid record follows at offset {following}, "
                "so this is not a write cut short by a crash. Stop the node, move the "
                f"directory {self.directory} aside (keep it for inspection) and restart: "
                "the node starts an empty WAL, its signing guard still refuses to sign "
                "anything that could conflict with what it signed before, and it rejoins "
                "by block sync",
                path=str(self.path),
                offset=offset,
            )
        log.warning(
            "consensus WAL %s: cut off a torn tail of %d bytes at offset %d (a record "
            "being written when the node stopped; it was never fsynced)",
            self.path,
            len(buf) - offset,
            offset,
        )
        try:
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)
        except OSError as exc:
            raise StorageError(f"cannot cut the torn tail of {self.path}: {exc}") from exc
        return offset

    def append(self, record: WalRecord, *, sync: bool) -> None:
        """Write ``record``; with ``sync``, make it and all before it durable before returning."""
        self._require_writable()
        frame = encode_record(record, self._marker)
        offset = self._end
        try:
            write_all(self._fd, frame, offset)
        except OSError as exc:
            self._roll_back(offset, exc)
        self._end = offset + len(frame)
        self._index.append((record.height, offset, len(frame)))
        if sync:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                # After a failed fsync the kernel may have dropped the dirty pages:
                # retrying could "succeed" without the data. Only a restart is safe.
                self._broken = f"fsync failed ({exc.strerror})"
                raise StorageError(
                    f"could not fsync the consensus WAL {self.path}: {exc.strerror}; "
                    "the record may not be durable, so nothing may be sent: restart the node",
                    path=str(self.path),
                ) from exc

    def _roll_back(self, offset: int, exc: OSError) -> NoReturn:
        """Cut a partly written frame so later appends never follow garbage; always raises."""
        try:
            os.ftruncate(self._fd, offset)
        except OSError:
            self._broken = f"a failed append left a partial record ({exc.strerror})"
        raise StorageError(
            f"could not append to the consensus WAL {self.path}: {exc.strerror} "
            "(is the disk full?); the record was not written",
            path=str(self.path),
        ) from exc

    def replay(self, height: int) -> list[WalRecord]:
        """Return every record of ``height``, in the order appended."""
        self._require_open()
        return [self._read(offset, size) for h, offset, size in self._index if h == height]

    def records(self) -> list[WalRecord]:
        """Return every record of every height, in the order appended."""
        self._require_open()
        return [self._read(offset, size) for _, offset, size in self._index]

    def heights(self) -> list[int]:
        """Return the heights that have records, lowest first."""
        self._require_open()
        return sorted({height for height, _, _ in self._index})

    def _read_frame(self, offset: int, size: int) -> tuple[bytes, WalRecord]:
        try:
            raw = read_all(self._fd, size, offset)
        except OSError as exc:
            raise StorageError(f"cannot read the consensus WAL {self.path}: {exc}") from exc
        frame = decode_frame(raw, 0, self._marker)
        if frame is None or frame[1] != size:
            raise StorageError(
                f"consensus WAL {self.path} changed on disk at offset {offset} while open: "
                f"stop the node and move {self.directory} aside",
                path=str(self.path),
                offset=offset,
            )
        return raw, frame[0]

    def _read(self, offset: int, size: int) -> WalRecord:
        return self._read_frame(offset, size)[1]

    def truncate_before(self, height: int) -> None:
        """Drop every record of a height below ``height``.

        Call it with the height just committed: that height (its commits may
        still be re-sent to a lagging peer) and later ones stay.
        """
        self._require_writable()
        keep = [entry for entry in self._index if entry[0] >= height]
        if len(keep) == len(self._index):
            return
        compact = self.directory / COMPACT_FILE_NAME
        index: list[tuple[int, int, int]] = []
        try:
            fd = os.open(compact, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot compact the consensus WAL into {compact}: {exc}") from exc
        try:
            write_all(fd, encode_header(self._marker), 0)
            end = HEADER_SIZE
            for record_height, offset, size in keep:
                write_all(fd, self._read_frame(offset, size)[0], end)
                index.append((record_height, end, size))
                end += size
            os.fsync(fd)
            os.replace(compact, self.path)
        except BaseException as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                compact.unlink()
            if isinstance(exc, OSError):
                raise StorageError(
                    f"cannot compact the consensus WAL {self.path}: {exc}; it is unchanged"
                ) from exc
            raise
        os.close(self._fd)
        self._fd, self._index, self._end = fd, index, end
        try:
            fsync_directory(self.directory)
        except OSError as exc:
            # Until the rename is durable a power loss could bring back the old
            # file without the records appended from now on.
            self._broken = f"the compacted WAL's rename was not made durable ({exc})"
            raise StorageError(
                f"cannot fsync {self.directory} after compacting the WAL: {exc}; restart the node"
            ) from exc

    def _require_open(self) -> None:
        if self._fd < 0:
            raise StorageError(f"the consensus WAL {self.path} is closed")

    def _require_writable(self) -> None:
        self._require_open()
        if self._broken is not None:
            raise StorageError(
                f"the consensus WAL {self.path} refuses writes: {self._broken}; restart the node",
                path=str(self.path),
            )

    def close(self) -> None:
        """Fsync and close the WAL and release its lock (idempotent)."""
        error: OSError | None = None
        if self._fd >= 0:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                error = exc
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            release_lock(self._lock_fd)
            self._lock_fd = -1
        if error is not None:
            raise StorageError(f"could not fsync the consensus WAL {self.path}: {error}")

    def __enter__(self) -> ConsensusWal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# --- the signing guard -------------------------------------------------------------

Position = tuple[int, int]
Key = tuple[int, int, int]


def compute_retained(entries: dict[Key, bytes]) -> dict[Key, bytes]:
    """Keep the digests of the last :data:`RETAINED_POSITIONS` distinct positions."""
    positions = sorted({(h, r) for h, r, _ in entries}, reverse=True)[:RETAINED_POSITIONS]
    kept = set(positions)
    return {key: digest for key, digest in entries.items() if (key[0], key[1]) in kept}


def encode_guard_state(
    high: Position | None, blocked_through: int | None, entries: dict[Key, bytes]
) -> bytes:
    """Return the guard file's bytes: its state and a hash over the canonical state."""
    state = {
        "version": GUARD_VERSION,
        "high": list(high) if high is not None else None,
        "blocked_through": blocked_through,
        "signed": [[h, r, k, entries[(h, r, k)].hex()] for h, r, k in sorted(entries)],
    }
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return json.dumps({"sha256": digest, "state": state}, sort_keys=True, indent=1).encode() + b"\n"


def is_uint(value: Any) -> bool:
    """Return True for a non-negative int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def decode_guard_state(raw: bytes) -> tuple[Position | None, int | None, dict[Key, bytes]]:
    """Return (high, blocked_through, entries) of a guard file; raise ValueError if damaged."""
    document = json.loads(raw)
    state = document["state"]
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"))
    if hashlib.sha256(canonical.encode()).hexdigest() != document["sha256"]:
        raise ValueError("its checksum does not match its contents")
    if state["version"] != GUARD_VERSION:
        raise ValueError(f"it has version {state['version']!r}, this node reads {GUARD_VERSION}")
    high_raw, blocked = state["high"], state["blocked_through"]
    if high_raw is not None and not (len(high_raw) == 2 and all(map(is_uint, high_raw))):
        raise ValueError("its 'high' is not a [height, round] pair")
    if blocked is not None and not is_uint(blocked):
        raise ValueError("its 'blocked_through' is not a height")
    entries: dict[Key, bytes] = {}
    for h, r, k, digest in state["signed"]:
        if not (is_uint(h) and is_uint(r) and is_uint(k)):
            raise ValueError("a signed entry is not (height, round, kind, digest)")
        entries[(h, r, k)] = bytes.fromhex(digest)
    high = (high_raw[0], high_raw[1]) if high_raw is not None else None
    if entries and (high is None or max((h, r) for h, r, _ in entries) > high):
        raise ValueError("a signed entry lies above its 'high'")
    return high, blocked, entries


class SigningGuard:
    """Persists what this validator signed; refuses what could conflict (see the module doc)."""

    def __init__(self, path: Path, *, wal: ConsensusWal | None = None) -> None:
        self.path = Path(path)
        self._temp = self.path.with_name(self.path.name + ".tmp")
        self._high: Position | None = None
        self._blocked_through: int | None = None
        self._entries: dict[Key, bytes] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the directory of {self.path}: {exc}") from exc
        self._lock_fd = acquire_lock(self.path.with_name(self.path.name + ".lock"), "signing guard")
        try:
            self._open(wal)
        except BaseException:
            self.close()
            raise

    def _open(self, wal: ConsensusWal | None) -> None:
        if self._temp.exists():
            # A crash between writing the temp file and its rename: record() had not
            # returned, so nothing was signed with it; the guard file is authoritative.
            log.warning("removing %s left by a crash before its rename", self._temp)
            self._temp.unlink()
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self._create(wal)
            return
        except OSError as exc:
            raise StorageError(f"cannot read the signing guard {self.path}: {exc}") from exc
        try:
            self._high, self._blocked_through, self._entries = decode_guard_state(raw)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise StorageError(
                f"the signing guard {self.path} is damaged ({exc}). Do not delete it lightly: "
                "it is what keeps this validator from signing twice. If you must, move it "
                "aside while the consensus WAL in the same data directory is intact; the "
                "node then refuses to sign at every height the WAL holds",
                path=str(self.path),
            ) from exc

    def _create(self, wal: ConsensusWal | None) -> None:
        heights = wal.heights() if wal is not None else []
        blocked = heights[-1] if heights else None
        if blocked is not None:
            log.warning(
                "signing guard %s is missing but the consensus WAL holds heights %d-%d: "
                "refusing to sign at any height up to %d until recovered from the WAL",
                self.path,
                heights[0],
                blocked,
                blocked,
            )
        self._save(None, blocked, {})

    @property
    def high(self) -> Position | None:
        """The highest (height, round) signed, or None."""
        return self._high

    @property
    def blocked_through(self) -> int | None:
        """Every height up to this one is refused (guard lost while the WAL was not)."""
        return self._blocked_through

    def may_sign(self, height: int, round: int, kind: int, digest: bytes) -> bool:
        """Return True if signing ``digest`` at (height, round, kind) cannot conflict."""
        return self._refusal(height, round, kind, digest) is None

    def _refusal(self, height: int, round_number: int, kind: int, digest: bytes) -> str | None:
        """Return why signing is refused (the rule in the module doc), or None."""
        self._require_open()
        if self._blocked_through is not None and height <= self._blocked_through:
            return (
                f"height {height} is at or below {self._blocked_through}, the highest height "
                "of a WAL whose signing guard was lost"
            )
        held = self._entries.get((height, round_number, kind))
        if held is not None:
            return None if held == digest else "a different digest was signed for it"
        if self._high is not None and (height, round_number) < self._high:
            return f"it lies below (height, round) {self._high}, signed before"
        return None

    def record(self, height: int, round: int, kind: int, digest: bytes) -> None:
        """Persist (fsynced) that ``digest`` is signed at (height, round, kind), before signing."""
        if not (is_uint(height) and is_uint(round) and is_uint(kind)):
            raise ValueError("height, round and kind must be non-negative integers")
        if not isinstance(digest, bytes) or not digest:
            raise ValueError("the digest must be non-empty bytes")
        if self._entries.get((height, round, kind)) == digest:
            return
        reason = self._refusal(height, round, kind, digest)
        if reason is not None:
            raise SigningRefused(
                f"refusing to sign kind {kind} at height {height} round {round}: {reason}",
                height=height,
                round=round,
                kind=kind,
            )
        entries = compute_retained({**self._entries, (height, round, kind): bytes(digest)})
        high = max(self._high, (height, round)) if self._high is not None else (height, round)
        self._save(high, self._blocked_through, entries)

    def recover_from(
        self, records: Iterable[WalRecord], decode: Callable[[WalRecord], SignedEntry]
    ) -> None:
        """Rebuild the guard from our own messages in the WAL, lifting ``blocked_through``.

        ``records`` must be every record of the WAL (``wal.records()``): every
        message we sent is there (fsynced before sending), and heights below
        the lowest one were truncated, so they are all refused. ``decode``
        turns an ``OWN_MESSAGE`` record into what was signed.
        """
        self._require_open()
        entries = dict(self._entries)
        high = self._high
        lowest: int | None = None
        for record in records:
            lowest = record.height if lowest is None else min(lowest, record.height)
            if record.kind != WalKind.OWN_MESSAGE:
                continue
            entry = decode(record)
            key = (entry.height, entry.round, entry.kind)
            if entries.get(key, entry.digest) != entry.digest:
                raise StorageError(
                    f"the consensus WAL holds two different signed messages of kind "
                    f"{entry.kind} at height {entry.height} round {entry.round}",
                    height=entry.height,
                    round=entry.round,
                )
            entries[key] = bytes(entry.digest)
            position = (entry.height, entry.round)
            high = position if high is None or position > high else high
        if lowest is not None and (high is None or (lowest, 0) > high):
            high = (lowest, 0)  # heights below the WAL's lowest were truncated: refuse them
        self._save(high, None, compute_retained(entries))
        log.info("signing guard %s recovered from the WAL: last signed %s", self.path, high)

    def _save(
        self, high: Position | None, blocked_through: int | None, entries: dict[Key, bytes]
    ) -> None:
        """Atomically replace the guard file, then adopt the new state."""
        if blocked_through is not None and high is not None and high[0] > blocked_through:
            blocked_through = None  # ``high`` alone now refuses those heights
        data = encode_guard_state(high, blocked_through, entries)
        try:
            fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                write_all(fd, data, 0)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._temp, self.path)
            fsync_directory(self.path.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._temp.unlink()
            raise StorageError(
                f"cannot write the signing guard {self.path}: {exc}; nothing may be signed",
                path=str(self.path),
            ) from exc
        self._high, self._blocked_through, self._entries = high, blocked_through, entries

    def _require_open(self) -> None:
        if self._lock_fd < 0:
            raise StorageError(f"the signing guard {self.path} is closed")

    def close(self) -> None:
        """Release the guard's lock (idempotent; everything is already on disk)."""
        if self._lock_fd >= 0:
            release_lock(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> SigningGuard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
