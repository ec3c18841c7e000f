"""Many due times, one IDelayedCall.

80,000 open team timers as 80,000 IDelayedCalls would cost memory and make every callLater
O(n) in the reactor's own heap; here a heap of (due, key) and a single callLater for the
earliest.  Replacing a key's due time leaves a stale heap entry behind, skipped when popped
(and compacted away when they outnumber the live ones).
"""
from __future__ import annotations

import heapq
from typing import Callable, Hashable


class TimerQueue:
    def __init__(self, clock, on_due: Callable[[list, float], None]):
        self.clock = clock
        self.on_due = on_due           # called with ([(key, due), ...] due now, now)
        self._heap: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}
        self._seq = 0
        self._call = None               # the one IDelayedCall
        self._armed_at: float | None = None
        self._stopped = False

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key) -> bool:
        return key in self._due

    def due(self, key) -> float | None:
        return self._due.get(key)

    def set(self, key, due: float) -> None:
        """Fire `key` at `due` (replacing an earlier setting)."""
        if self._due.get(key) == due:
            return
        self._due[key] = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, key))
        if len(self._heap) > 2 * len(self._due) + 1024:
            self._compact()
        self._arm()

    def set_earlier(self, key, due: float) -> None:
        """Fire `key` at `due` unless it is already set to fire sooner."""
        cur = self._due.get(key)
        if cur is None or due < cur:
            self.set(key, due)

    def discard(self, key) -> None:
        self._due.pop(key, None)       # its heap entry goes stale; the armed call may wake for nothing

    def stop(self) -> None:
        """Nothing fires any more (the service is stopping); due times are kept, not acted on."""
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call, self._armed_at = None, None

    def _compact(self) -> None:
        self._heap = [(d, s, k) for d, s, k in self._heap if self._due.get(k) == d]
        heapq.heapify(self._heap)

    def _top(self) -> float | None:
        while self._heap:
            d, _, k = self._heap[0]
            if self._due.get(k) == d:
                return d
            heapq.heappop(self._heap)
        return None

    def _arm(self) -> None:
        if self._stopped:
            return
        top = self._top()
        if top is None:
            if self._call is not None and self._call.active():
                self._call.cancel()
            self._call, self._armed_at = None, None
            return
        if self._call is not None and self._call.active():
            if self._armed_at is not None and self._armed_at <= top:
                return
            self._call.cancel()
        self._armed_at = top
        self._call = self.clock.callLater(max(0.0, top - self.clock.seconds()), self._fire)

    def _fire(self) -> None:
        self._call, self._armed_at = None, None
        now = self.clock.seconds()
        keys = []
        while self._heap and self._heap[0][0] <= now:
            d, _, k = heapq.heappop(self._heap)
            if self._due.get(k) == d:
                del self._due[k]
                keys.append((k, d))
        try:
            if keys:
                self.on_due(keys, now)
        finally:
            self._arm()
