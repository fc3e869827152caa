"""QR codes of payment authorisations, for a phone screen at the till or a printed card.

:func:`make_qr` encodes the text (segno, a pure-Python encoder) as a full QR
code, never a Micro QR code, which many scanners do not read. The terminal
rendering gives each module one character column and half a row (Unicode
upper half blocks), so modules come out square; every character sets both
its colours explicitly (black on bright white), so the code is not inverted
on a terminal with a dark or a light theme, and a quiet zone of four modules
surrounds it, as ISO/IEC 18004 requires. :func:`save_png` writes a black and
white PNG (segno needs no imaging library for it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import segno

QUIET_ZONE = 4
"""Light modules around the code (ISO/IEC 18004: at least four)."""
ERROR_LEVEL = "M"
"""Up to 15 % of the code may be damaged (a scuffed card, a cracked screen)."""
PNG_SCALE = 8
"""Pixels per module in a saved PNG."""
UPPER_HALF = "▀"
DARK, LIGHT = 0, 15
"""ANSI colour numbers: black and bright white."""
RESET = "\033[0m"


def make_qr(text: str) -> segno.QRCode:
    """The QR code of ``text``: the smallest full version that holds it at level M."""
    return segno.make(text, error=ERROR_LEVEL, micro=False, boost_error=False)


def compute_modules(qr: segno.QRCode, border: int = QUIET_ZONE) -> list[list[bool]]:
    """The code's modules with the quiet zone, row by row; True is dark."""
    size = len(qr.matrix) + 2 * border
    light_rows = [[False] * size for _ in range(border)]
    body = [[False] * border + [bool(m) for m in row] + [False] * border for row in qr.matrix]
    return light_rows + body + [list(row) for row in light_rows]


def ansi_colour(dark: bool, background: bool) -> str:
    """The 256-colour escape for black or bright white, as foreground or background."""
    return f"\033[{48 if background else 38};5;{DARK if dark else LIGHT}m"


def render_half_blocks(modules: Sequence[Sequence[bool]]) -> str:
    """Two module rows per text line: the upper one as foreground of ``▀``, the lower as background.

    An odd last row is paired with a light row (more quiet zone, never less).
    """
    width = len(modules[0]) if modules else 0
    rows = [list(row) for row in modules]
    if len(rows) % 2:
        rows.append([False] * width)
    lines = []
    for top, bottom in zip(rows[0::2], rows[1::2], strict=True):
        cells = [
            ansi_colour(upper, background=False) + ansi_colour(lower, background=True) + UPPER_HALF
            for upper, lower in zip(top, bottom, strict=True)
        ]
        lines.append("".join(cells) + RESET)
    return "\n".join(lines) + "\n"


def compute_width(text: str) -> int:
    """Terminal columns (= modules, quiet zone included) the code of ``text`` needs."""
    return len(make_qr(text).matrix) + 2 * QUIET_ZONE


def render_terminal(text: str) -> str:
    """``text`` as a scannable QR code for an ANSI terminal."""
    return render_half_blocks(compute_modules(make_qr(text)))


def save_png(text: str, path: Path, scale: int = PNG_SCALE) -> segno.QRCode:
    """Write ``text``'s QR code to ``path`` as a PNG (``scale`` pixels a module); return it."""
    qr = make_qr(text)
    qr.save(str(path), kind="png", scale=scale, border=QUIET_ZONE, dark="black", light="white")
    return qr
