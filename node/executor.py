"""The chain thread: one thread for all blocking work, consensus first.

py-evm and LevelDB are not shared across threads here: every blocking task
(execution, database, WAL fsync) runs on this one thread, one at a time. Tasks
carry a priority so that consensus work (checking a proposal, building or
persisting a block) never waits behind a queue of transaction admissions: on
a busy node that queue alone outlasted the round timeout.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

CONSENSUS = 0
"""Priority of consensus work."""
NORMAL = 1
"""Priority of RPC requests and transaction admission."""
_STOP = 99


class ChainThread:
    """A single worker thread with a priority queue (FIFO within a priority)."""

    def __init__(self, name: str) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, priority: int, fn: Callable[[], Any]) -> Future[Any]:
        """Queue ``fn``; its result or exception arrives in the returned future."""
        if self._closed:
            raise RuntimeError("the chain thread is shut down")
        future: Future[Any] = Future()
        self._queue.put((priority, next(self._order), (future, fn)))
        return future

    def shutdown(self) -> None:
        """Finish every queued task, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put((_STOP, next(self._order), None))
        self._thread.join()

    def _work(self) -> None:
        while True:
            _, _, item = self._queue.get()
            if item is None:
                return
            future, fn = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the awaiting coroutine
                future.set_exception(exc)
