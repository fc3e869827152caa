"""Puts an issuer's issuance counts on chain, debounced ([POLL-ISSUED.1]).

The service calls :meth:`IssuanceReporter.on_issued` after each credential;
the reporter calls ``report(poll_id, count)`` — in practice a PollRegistry
``reportIssued(pollId, count)`` transaction — at most once per ``interval``
seconds per poll: the first count at once, later ones coalesced into one call
when the interval has passed, and every count not yet reported once more at
shutdown. ``report`` may block (it sends a transaction), so it runs on a
worker thread; a failure is logged and retried after the interval. Counts
passed to ``report`` never decrease for a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger("polder.issuer")

ReportIssued = Callable[[bytes, int], None]
"""``report(poll_id, count)``: put this issuer's count for a poll on chain; may block."""

DEFAULT_REPORT_INTERVAL = 60.0
"""Seconds between two reports for one poll (one transaction a minute at most)."""


class IssuanceReporter:
    """Debounces ``report`` calls per poll; owned by one event loop."""

    def __init__(self, report: ReportIssued, interval: float = DEFAULT_REPORT_INTERVAL) -> None:
        if interval < 0:
            raise ValueError("report interval must not be negative")
        self.report = report
        self.interval = interval
        self.latest: dict[bytes, int] = {}
        """Highest count seen per poll."""
        self.reported: dict[bytes, int] = {}
        """Highest count ``report`` accepted per poll."""
        self.last_attempt: dict[bytes, float] = {}
        """Loop time of the last call per poll (successful or not)."""
        self.tasks: dict[bytes, asyncio.Task[None]] = {}
        self.closing = asyncio.Event()

    def is_pending(self, poll_id: bytes) -> bool:
        """True while a count for ``poll_id`` has not been reported yet."""
        return self.latest.get(poll_id, 0) > self.reported.get(poll_id, 0)

    def on_issued(self, poll_id: bytes, count: int) -> None:
        """Triggered by each issuance: note the count and make sure a report follows."""
        self.latest[poll_id] = max(count, self.latest.get(poll_id, 0))
        task = self.tasks.get(poll_id)
        if self.closing.is_set() or (task is not None and not task.done()):
            return
        task = asyncio.get_running_loop().create_task(self._run(poll_id))
        self.tasks[poll_id] = task

    async def _run(self, poll_id: bytes) -> None:
        while self.is_pending(poll_id):
            if not self.closing.is_set():
                await self._wait_turn(poll_id)
            final = self.closing.is_set()
            await self._send(poll_id)
            if final:
                return

    async def _wait_turn(self, poll_id: bytes) -> None:
        loop = asyncio.get_running_loop()
        last = self.last_attempt.get(poll_id)
        delay = 0.0 if last is None else last + self.interval - loop.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), delay)

    async def _send(self, poll_id: bytes) -> None:
        count = self.latest[poll_id]
        self.last_attempt[poll_id] = asyncio.get_running_loop().time()
        try:
            await asyncio.to_thread(self.report, poll_id, count)
        except Exception:
            log.exception("reporting %d credentials for poll 0x%s failed", count, poll_id.hex())
            return
        self.reported[poll_id] = max(count, self.reported.get(poll_id, 0))

    async def close(self, timeout: float = 30.0) -> None:
        """At shutdown: report every pending count once more, waiting at most ``timeout``."""
        self.closing.set()
        for poll_id in list(self.latest):
            self._start_final(poll_id)
        tasks = [task for task in self.tasks.values() if not task.done()]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            log.warning("%d issuance reports did not finish at shutdown", len(late))

    def _start_final(self, poll_id: bytes) -> None:
        task = self.tasks.get(poll_id)
        if self.is_pending(poll_id) and (task is None or task.done()):
            self.tasks[poll_id] = asyncio.get_running_loop().create_task(self._run(poll_id))
