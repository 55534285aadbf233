"""Timing of the two durability steps, seen from the sequencer's side (for ``/metrics``).

The sequencer hands each batch's blocks to the ledger, held (``append_many(..., hold=True)``:
signed by the ledger's writer process at once), then its records to the journal
(``append_batch``: one write + one fsync, group committed); from the journal's writer thread it
then releases the blocks and asks to hear when they are durable (``release``,
``when_durable``). These thin wrappers stand between them and time each step from hand-over to
durable, calling an observer with the seconds: so the metrics measure what a command waits
for, without the journal or the ledger knowing anything of metrics. One ``perf_counter`` and
one closure per batch, never per command.

Only what the sequencer calls is wrapped; everything else goes to the real objects.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

Observer = Callable[[float], None]


def _ignore(_seconds: float) -> None:
    pass


class ObservedJournal:
    """The journal as the sequencer sees it; ``observer(seconds)`` per batch made durable."""

    def __init__(self, journal: Any, observer: Observer = _ignore) -> None:
        self._journal = journal
        self.observer = observer

    def append_batch(self, records: list[bytes], on_done: Callable[..., None]) -> int:
        started = time.perf_counter()

        def done(first: int, count: int, error: Any) -> None:
            if error is None:
                self.observer(time.perf_counter() - started)
            on_done(first, count, error)

        return self._journal.append_batch(records, done)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._journal, name)


class ObservedLedger:
    """The ledger as the sequencer sees it; ``observer(seconds)`` from ``append_many`` to the
    durability of the batch's last block. ``append_many`` runs on the event loop and
    ``when_durable`` later in the journal's writer thread, once per batch and in the same
    order: the start times wait in a queue between them."""

    def __init__(self, ledger: Any, observer: Observer = _ignore) -> None:
        self._ledger = ledger
        self.observer = observer
        self._started: deque[tuple[int, float]] = deque()  # (size, perf_counter) per batch

    def append_many(self, entries: list[tuple], hold: bool = False) -> int:
        started = time.perf_counter()
        # (``hold`` is passed on only when set, so a ledger without it is driven as before)
        if hold:
            size = self._ledger.append_many(entries, hold=True)
        else:
            size = self._ledger.append_many(entries)
        self._started.append((size, started))
        return size

    def when_durable(self, size: int, callback: Callable[[BaseException | None], None]) -> None:
        started = time.perf_counter()
        while self._started and self._started[0][0] <= size:
            started = self._started.popleft()[1]

        def durable(error: BaseException | None) -> None:
            if error is None:
                self.observer(time.perf_counter() - started)
            callback(error)

        self._ledger.when_durable(size, durable)

    @property
    def height(self) -> int:
        return self._ledger.height

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)
