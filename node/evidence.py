"""Equivocation evidence: both signed messages, kept on disk and served over RPC.

Anyone can check a piece of evidence without trusting this node: both
messages carry the validator's signature over the same height, round and kind
(see ``consensus.qbft.validate_equivocation``).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from consensus.messages import Payload, SignedMessage, compute_message_kind, encode_signed


class EvidenceStore:
    """An append-only JSON-lines file of equivocations, fsynced per entry."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def save(
        self, validator: bytes, first: SignedMessage[Payload], second: SignedMessage[Payload]
    ) -> dict[str, Any]:
        entry = {
            "validator": "0x" + validator.hex(),
            "height": first.payload.height,
            "round": first.payload.round,
            "kind": compute_message_kind(first.payload).name,
            "first": "0x" + encode_signed(first).hex(),
            "second": "0x" + encode_signed(second).hex(),
        }
        with self._lock, self.path.open("a") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return entry

    def load(self) -> list[dict[str, Any]]:
        """Return every kept entry, oldest first (a torn last line is skipped)."""
        if not self.path.exists():
            return []
        entries = []
        for line in self.path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return entries
