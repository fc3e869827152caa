"""The till's QR code ([VOUCHER-QR.1]): read back from the PNG and the terminal, then decoded.

No QR decoder is installed, so this file carries a small one, written from
ISO/IEC 18004 (the layout as in Nayuki's reference implementation) and
independent of segno: it reads the modules back from the PNG bytes (zlib
and struct only) and from the ANSI text, checks the format and version
information with their BCH codes, unmasks, reads the codewords in the
standard zigzag, de-interleaves the blocks with the standard's table for
error level M, recomputes every block's Reed-Solomon codewords, and parses
the data segments back to the text. A scanner does the same, plus error
correction, which an undamaged code does not need.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from clients.budget.authorization import create_authorization, encode_authorization
from clients.budget.qr import (
    QUIET_ZONE,
    compute_modules,
    make_qr,
    render_half_blocks,
    render_terminal,
    save_png,
)

Grid = list[list[bool]]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# fmt: off
ECC_PER_BLOCK_M = (
    -1, 10, 16, 26, 18, 24, 16, 18, 22, 22, 26, 30, 22, 22, 24, 24, 28, 28, 26, 26, 26,
    26, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28,
)
"""ISO/IEC 18004 table 9, level M: error correction codewords per block, by version."""
BLOCKS_M = (
    -1, 1, 1, 1, 2, 2, 4, 4, 4, 5, 5, 5, 8, 9, 9, 10, 10, 11, 13, 14, 16,
    17, 17, 18, 20, 21, 23, 25, 26, 28, 29, 31, 33, 35, 37, 38, 40, 43, 45, 47, 49,
)
"""ISO/IEC 18004 table 9, level M: error correction blocks, by version."""
# fmt: on
LEVEL_BITS = {1: "L", 0: "M", 3: "Q", 2: "H"}
ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
MASKS = (
    lambda x, y: (x + y) % 2 == 0,
    lambda x, y: y % 2 == 0,
    lambda x, y: x % 3 == 0,
    lambda x, y: (x + y) % 3 == 0,
    lambda x, y: (x // 3 + y // 2) % 2 == 0,
    lambda x, y: x * y % 2 + x * y % 3 == 0,
    lambda x, y: (x * y % 2 + x * y % 3) % 2 == 0,
    lambda x, y: ((x + y) % 2 + x * y % 3) % 2 == 0,
)


def authorisation_text() -> str:
    """What ``polder budget wallet authorize`` encodes: a real signed authorisation."""
    holder = Account.from_key(b"\x01" * 32)
    auth = create_authorization(
        holder,
        chain_id=1337,
        book="0x0000000000000000000000000000000000000400",
        merchant="0x" + "ab" * 20,
        token_id=1 << 64 | 4 << 32 | 202601,
        max_amount=50_00,
        expiry=1_767_225_600,
    )
    return encode_authorization(auth)


# --- reading the images back --------------------------------------------------------


def read_png(path: Path) -> Grid:
    """A 1-bit greyscale PNG's pixels (True: black), by the PNG specification alone."""
    raw = path.read_bytes()
    assert raw[:8] == PNG_SIGNATURE
    position, chunks = 8, []
    while position < len(raw):
        (length,) = struct.unpack(">I", raw[position : position + 4])
        kind = raw[position + 4 : position + 8]
        body = raw[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", raw[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        chunks.append((kind, body))
        position += 12 + length
    kinds = [kind for kind, _ in chunks]
    assert kinds[0] == b"IHDR"
    assert kinds[-1] == b"IEND"
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, interlace) == (1, 0, 0), "1-bit greyscale, not interlaced"
    data = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = (width + 7) // 8
    assert len(data) == height * (stride + 1)
    pixels, previous = [], bytes(stride)
    for y in range(height):
        line = data[y * (stride + 1) : (y + 1) * (stride + 1)]
        row = unfilter(line[0], line[1:], previous)
        bits = [(row[x // 8] >> (7 - x % 8)) & 1 for x in range(width)]
        pixels.append([bit == 0 for bit in bits])  # greyscale 0 is black
        previous = row
    return pixels


def unfilter(kind: int, line: bytes, previous: bytes) -> bytes:
    """Undo a PNG scanline filter (one byte per pixel group at bit depth 1)."""
    out = bytearray(line)
    for i in range(len(out)):
        left = out[i - 1] if i else 0
        up = previous[i]
        corner = previous[i - 1] if i else 0
        if kind == 1:
            out[i] = (out[i] + left) & 0xFF
        elif kind == 2:
            out[i] = (out[i] + up) & 0xFF
        elif kind == 3:
            out[i] = (out[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            guess = left + up - corner
            near = min(
                (abs(guess - left), left), (abs(guess - up), up), (abs(guess - corner), corner)
            )
            out[i] = (out[i] + near[1]) & 0xFF
        else:
            assert kind == 0, f"unknown PNG filter {kind}"
    return bytes(out)


def downscale(pixels: Grid, scale: int) -> Grid:
    """Modules from pixels; every module's square of pixels must be one colour."""
    assert len(pixels) % scale == 0
    assert len(pixels[0]) % scale == 0
    modules = []
    for y in range(0, len(pixels), scale):
        row = []
        for x in range(0, len(pixels[0]), scale):
            square = {pixels[y + dy][x + dx] for dy in range(scale) for dx in range(scale)}
            assert len(square) == 1, f"module ({x // scale}, {y // scale}) is not one colour"
            row.append(square.pop())
        modules.append(row)
    return modules


CELL = re.compile(r"\x1b\[38;5;(0|15)m\x1b\[48;5;(0|15)m▀")


def read_terminal(text: str) -> Grid:
    """Modules from the half-block rendering; every cell must set both its colours."""
    rows: Grid = []
    for line in text.rstrip("\n").split("\n"):
        assert line.endswith("\x1b[0m")
        cells = CELL.findall(line[: -len("\x1b[0m")])
        assert CELL.sub("", line[: -len("\x1b[0m")]) == "", "a cell without explicit colours"
        rows.append([top == "0" for top, _ in cells])
        rows.append([bottom == "0" for _, bottom in cells])
    return rows


# --- a decoder, from the standard ---------------------------------------------------


def strip_quiet_zone(modules: Grid) -> Grid:
    """The symbol without its quiet zone, which must be light and at least 4 modules."""
    dark_rows = [y for y, row in enumerate(modules) if any(row)]
    dark_cols = [x for x in range(len(modules[0])) if any(row[x] for row in modules)]
    top, left = dark_rows[0], dark_cols[0]
    bottom, right = len(modules) - 1 - dark_rows[-1], len(modules[0]) - 1 - dark_cols[-1]
    assert min(top, left, bottom, right) >= QUIET_ZONE
    return [row[left : dark_cols[-1] + 1] for row in modules[top : dark_rows[-1] + 1]]


def read_format(symbol: Grid) -> tuple[str, int]:
    """Error level and mask from the format information next to the top-left finder."""
    places = [(8, i) for i in range(6)] + [(8, 7), (8, 8), (7, 8)]
    places += [(14 - i, 8) for i in range(9, 15)]
    bits = sum(symbol[y][x] << i for i, (x, y) in enumerate(places)) ^ 0x5412
    data = remainder = bits >> 10
    for _ in range(10):
        remainder = (remainder << 1) ^ ((remainder >> 9) * 0x537)
    assert bits == data << 10 | remainder, "format information fails its BCH code"
    return LEVEL_BITS[data >> 3], data & 7


def read_version(symbol: Grid) -> int:
    version = (len(symbol) - 17) // 4
    assert len(symbol) == 17 + 4 * version
    assert all(len(row) == len(symbol) for row in symbol)
    if version >= 7:
        size = len(symbol)
        bits = sum(symbol[i // 3][size - 11 + i % 3] << i for i in range(18))
        remainder = version
        for _ in range(12):
            remainder = (remainder << 1) ^ ((remainder >> 11) * 0x1F25)
        assert bits == version << 12 | remainder, "version information fails its BCH code"
    return version


def alignment_positions(version: int) -> list[int]:
    if version == 1:
        return []
    count = version // 7 + 2
    step = (version * 8 + count * 3 + 5) // (count * 4 - 4) * 2
    return sorted([len_of(version) - 7 - i * step for i in range(count - 1)] + [6])


def len_of(version: int) -> int:
    return 17 + 4 * version


def function_modules(version: int) -> Grid:
    """Finders, separators, format, timing, alignment and version areas: not data."""
    size = len_of(version)
    used = [[False] * size for _ in range(size)]

    def mark(x0: int, y0: int, width: int, height: int) -> None:
        for y in range(max(y0, 0), min(y0 + height, size)):
            for x in range(max(x0, 0), min(x0 + width, size)):
                used[y][x] = True

    mark(0, 6, size, 1)
    mark(6, 0, 1, size)
    mark(0, 0, 9, 9)
    mark(size - 8, 0, 8, 9)
    mark(0, size - 8, 9, 8)
    centres = alignment_positions(version)
    last = len(centres) - 1
    for i, cy in enumerate(centres):
        for j, cx in enumerate(centres):
            if (i, j) not in ((0, 0), (0, last), (last, 0)):
                mark(cx - 2, cy - 2, 5, 5)
    if version >= 7:
        mark(size - 11, 0, 3, 6)
        mark(0, size - 11, 6, 3)
    return used


def read_codewords(symbol: Grid, mask: int, version: int) -> list[int]:
    """The unmasked data modules in the standard's zigzag, as codewords."""
    size, used = len(symbol), function_modules(version)
    bits: list[int] = []
    right = size - 1
    while right >= 1:
        if right == 6:
            right = 5
        for vert in range(size):
            for j in range(2):
                x = right - j
                y = size - 1 - vert if (right + 1) & 2 == 0 else vert
                if not used[y][x]:
                    bits.append(int(symbol[y][x] ^ MASKS[mask](x, y)))
        right -= 2
    return [int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits) - 7, 8)]


def gf_multiply(x: int, y: int) -> int:
    z = 0
    for i in reversed(range(8)):
        z = (z << 1) ^ ((z >> 7) * 0x11D)
        z ^= ((y >> i) & 1) * x
    return z


def reed_solomon(data: list[int], degree: int) -> list[int]:
    """One block's error correction codewords (GF(256), generator roots 2^0 … 2^(degree-1))."""
    divisor, root = [0] * (degree - 1) + [1], 1
    for _ in range(degree):
        for j in range(degree):
            divisor[j] = gf_multiply(divisor[j], root)
            if j + 1 < degree:
                divisor[j] ^= divisor[j + 1]
        root = gf_multiply(root, 2)
    remainder = [0] * degree
    for byte in data:
        factor = byte ^ remainder.pop(0)
        remainder.append(0)
        for i, coefficient in enumerate(divisor):
            remainder[i] ^= gf_multiply(coefficient, factor)
    return remainder


def deinterleave(codewords: list[int], version: int) -> list[int]:
    """The data codewords of every block in order; each block's ECC must be right."""
    size, blocks, ecc = len_of(version), BLOCKS_M[version], ECC_PER_BLOCK_M[version]
    raw_modules = size * size - sum(map(sum, function_modules(version)))
    total = raw_modules // 8
    assert len(codewords) >= total
    codewords = codewords[:total]
    short = total // blocks
    lengths = [short - ecc + (b >= blocks - total % blocks) for b in range(blocks)]
    data: list[list[int]] = [[] for _ in range(blocks)]
    stream = iter(codewords)
    for i in range(max(lengths)):
        for b in range(blocks):
            if i < lengths[b]:
                data[b].append(next(stream))
    checks: list[list[int]] = [[] for _ in range(blocks)]
    for _ in range(ecc):
        for b in range(blocks):
            checks[b].append(next(stream))
    for b in range(blocks):
        assert reed_solomon(data[b], ecc) == checks[b], f"block {b} fails Reed-Solomon"
    return [byte for block in data for byte in block]


def read_bits(data: list[int]) -> Iterator[int]:
    for byte in data:
        for i in range(7, -1, -1):
            yield (byte >> i) & 1


def take(bits: Iterator[int], count: int) -> int:
    value = 0
    for _ in range(count):
        value = value << 1 | next(bits)
    return value


def parse_segments(data: list[int], version: int) -> str:
    """Numeric, alphanumeric and byte segments up to the terminator."""
    bits, text = read_bits(data), ""
    small, medium = version <= 9, version <= 26
    while True:
        try:
            mode = take(bits, 4)
        except StopIteration:
            return text
        if mode == 0:
            return text
        if mode == 4:
            count = take(bits, 8 if small else 16)
            text += bytes(take(bits, 8) for _ in range(count)).decode("utf-8")
        elif mode == 2:
            count = take(bits, 9 if small else 11 if medium else 13)
            for _ in range(count // 2):
                pair = take(bits, 11)
                text += ALPHANUMERIC[pair // 45] + ALPHANUMERIC[pair % 45]
            if count % 2:
                text += ALPHANUMERIC[take(bits, 6)]
        elif mode == 1:
            count = take(bits, 10 if small else 12 if medium else 14)
            digits = ""
            while len(digits) < count:
                width = min(3, count - len(digits))
                digits += str(take(bits, {3: 10, 2: 7, 1: 4}[width])).zfill(width)
            text += digits
        else:
            raise AssertionError(f"mode {mode} is not expected here")


def decode(modules: Grid) -> tuple[str, int, str]:
    """Text, version and error level of a QR code given as modules with quiet zone."""
    symbol = strip_quiet_zone(modules)
    version = read_version(symbol)
    level, mask = read_format(symbol)
    assert level == "M", "this decoder carries the block table of level M only"
    data = deinterleave(read_codewords(symbol, mask, version), version)
    return parse_segments(data, version), version, level


# --- the tests ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["0x1", "HELLO TILL 42", "12345678901234567"])
def test_the_decoder_reads_codes_of_every_mode(text: str) -> None:
    """The test's decoder against segno's encoder in numeric, alphanumeric and byte mode."""
    qr = make_qr(text)
    assert decode(compute_modules(qr)) == (text, qr.version, "M")


def test_the_png_holds_the_authorisation(tmp_path: Path) -> None:
    text = authorisation_text()
    path = tmp_path / "till.png"
    qr = save_png(text, path, scale=3)
    modules = downscale(read_png(path), 3)
    assert modules == compute_modules(qr)
    assert qr.matrix == make_qr(text).matrix
    assert qr.is_micro is False
    decoded, version, level = decode(modules)
    assert decoded == text
    assert (version, level) == (qr.version, "M") == (version, qr.error.upper())
    assert len(modules) == len(qr.matrix) + 2 * QUIET_ZONE


def test_the_terminal_code_holds_the_authorisation() -> None:
    text = authorisation_text()
    rows = read_terminal(render_terminal(text))
    modules = compute_modules(make_qr(text))
    assert len(modules) % 2 == 1, "an odd symbol: the last text line pads with a light row"
    assert rows[: len(modules)] == modules
    assert rows[len(modules) :] == [[False] * len(modules[0])]
    assert decode(rows)[0] == text


def test_a_damaged_or_inverted_code_does_not_decode() -> None:
    """The decoder can fail: a flipped data module breaks Reed-Solomon; inversion the zone."""
    modules = compute_modules(make_qr(authorisation_text()))
    flipped = [list(row) for row in modules]
    flipped[-QUIET_ZONE - 1][-QUIET_ZONE - 1] ^= True
    with pytest.raises(AssertionError, match="Reed-Solomon"):
        decode(flipped)
    inverted = [[not m for m in row] for row in modules]
    with pytest.raises(AssertionError):
        decode(inverted)


def test_half_blocks_pair_rows_and_pad_with_light() -> None:
    assert render_half_blocks([[True, False]]) == (
        "\x1b[38;5;0m\x1b[48;5;15m▀\x1b[38;5;15m\x1b[48;5;15m▀\x1b[0m\n"
    )
