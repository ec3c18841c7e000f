"""Which callers hear the nuisance notice: the list's numbers with `notice` on, kept in memory
and reloaded every `hotline.nuisance_refresh_s` (and at once when the API changes the list), so
the overflow flow answers without a database round trip.  When the list cannot be loaded, the
last one known stays: a caller then hears, at worst, the usual message."""
from __future__ import annotations

from datetime import datetime, timezone

from twisted.internet import task
from twisted.logger import Logger

from gateway.hotline import nuisance

log = Logger()


class NuisanceNotices:
    def __init__(self, clock, db, refresh_s: float = 30.0, enabled: bool = True):
        self.clock, self.db, self.refresh_s, self.enabled = clock, db, refresh_s, enabled
        self.keys: frozenset[str] = frozenset()
        self._loop: task.LoopingCall | None = None

    def __call__(self, caller: str | None) -> bool:
        return self.enabled and bool(caller) and nuisance.number_key(caller) in self.keys

    def refresh(self):
        now = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
        d = self.db.run(nuisance.notice_keys, now)

        def loaded(keys):
            self.keys = frozenset(keys)
            return len(keys)

        def failed(f):
            log.warn("nuisance notices: list not reloaded ({err}); keeping {n} number(s)",
                     err=f.getErrorMessage(), n=len(self.keys))
        return d.addCallbacks(loaded, failed)

    def start(self):
        if not self.enabled:
            return
        self._loop = task.LoopingCall(self.refresh)
        self._loop.clock = self.clock
        self._loop.start(self.refresh_s, now=True)

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
