"""Strict readers for the canonical byte and JSON forms of ballot objects (BALLOT-ENC).

Decoders are the first line of defence of block validity: they refuse anything
but the one canonical encoding (no trailing bytes, no aliases, exact JSON keys,
lowercase ``0x`` hex of the exact length) with an ``InvalidEncoding`` that names
the field.
"""

from __future__ import annotations

import re

from contracts.ballot.errors import InvalidEncoding
from contracts.ballot.group import (
    POINT_SIZE,
    SCALAR_SIZE,
    Point,
    decode_point,
    decode_scalar,
    encode_point,
    encode_scalar,
)

JsonObject = dict[str, object]
"""A JSON object as ``json.loads`` returns it."""

_HEX_PATTERN = re.compile(r"0x(?:[0-9a-f]{2})*")


class Reader:
    """Consumes a byte string front to back; every short read is a typed error."""

    def __init__(self, data: bytes, what: str) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidEncoding(f"{what}: expected bytes", reason="type")
        self._data = bytes(data)
        self._offset = 0
        self._what = what

    def take(self, size: int, what: str) -> bytes:
        """Return the next ``size`` bytes."""
        end = self._offset + size
        if end > len(self._data):
            raise InvalidEncoding(f"{self._what}: truncated in {what}", reason="truncated")
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk

    def u8(self, what: str) -> int:
        """Return the next byte as an integer."""
        return self.take(1, what)[0]

    def point(self, what: str) -> Point:
        """Return the next canonical point."""
        return decode_point(self.take(POINT_SIZE, what), f"{self._what}: {what}")

    def scalar(self, what: str) -> int:
        """Return the next canonical scalar."""
        return decode_scalar(self.take(SCALAR_SIZE, what), f"{self._what}: {what}")

    def finish(self) -> None:
        """Refuse trailing bytes: they would give one object many encodings."""
        if self._offset != len(self._data):
            raise InvalidEncoding(
                f"{self._what}: {len(self._data) - self._offset} trailing bytes",
                reason="trailing-bytes",
            )


def encode_hex(data: bytes) -> str:
    """Bytes as lowercase ``0x``-prefixed hex, the JSON form of every byte field."""
    return "0x" + data.hex()


def decode_hex(value: object, size: int, what: str) -> bytes:
    """Parse lowercase ``0x`` hex of exactly ``size`` bytes."""
    if not isinstance(value, str) or not _HEX_PATTERN.fullmatch(value):
        raise InvalidEncoding(f"{what}: expected lowercase 0x-prefixed hex", reason="json-hex")
    data = bytes.fromhex(value[2:])
    if len(data) != size:
        raise InvalidEncoding(
            f"{what}: expected {size} bytes, got {len(data)}", reason="json-hex-length"
        )
    return data


def point_to_json(point: Point) -> str:
    """A point's JSON form: the hex of its 33-byte encoding."""
    return encode_hex(encode_point(point))


def point_from_json(value: object, what: str) -> Point:
    """Parse a point's JSON form with the byte decoder's checks."""
    return decode_point(decode_hex(value, POINT_SIZE, what), what)


def scalar_to_json(scalar: int) -> str:
    """A scalar's JSON form: the hex of its 32-byte encoding."""
    return encode_hex(encode_scalar(scalar))


def scalar_from_json(value: object, what: str) -> int:
    """Parse a scalar's JSON form with the byte decoder's checks."""
    return decode_scalar(decode_hex(value, SCALAR_SIZE, what), what)


def json_object(value: object, keys: tuple[str, ...], what: str) -> JsonObject:
    """Check ``value`` is an object with exactly ``keys`` (unknown keys are refused)."""
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise InvalidEncoding(f"{what}: expected a JSON object", reason="json-object")
    if set(value) != set(keys):
        raise InvalidEncoding(
            f"{what}: keys {sorted(value)} are not {sorted(keys)}", reason="json-keys"
        )
    return value


def json_int(value: object, low: int, high: int, what: str) -> int:
    """Parse a JSON integer within ``low..high`` (booleans are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidEncoding(f"{what}: expected an integer in {low}..{high}", reason="json-int")
    return value


def json_list(value: object, low: int, high: int, what: str) -> list[object]:
    """Parse a JSON array of ``low..high`` entries."""
    if not isinstance(value, list) or not low <= len(value) <= high:
        raise InvalidEncoding(f"{what}: expected a list of {low}..{high} items", reason="json-list")
    return value


def check_count(value: int, low: int, high: int, what: str) -> int:
    """Refuse a decoded count outside ``low..high`` (bounds the work a decoder does)."""
    if not low <= value <= high:
        raise InvalidEncoding(f"{what}: {value} is not in {low}..{high}", reason="count-range")
    return value
