"""One Asterisk's events feed the hotline tracker and alerts on ONE node: the holder of the lease
`ami-events:<host>:<port>` (gateway/cluster/singleton.py).

Every node keeps its own AMI link (its order calls are originated and followed on it, correlated
by ActionID), and every node's link sees every event; only the lease holder hands them to the
hotline tracker and alerts, so a call is recorded once.  On taking the lease the holder loads the
calls and alerts left open (by itself or by a dead holder) from the database, then resyncs the
tracker against Asterisk's channels (CoreShowChannels): calls that ended meanwhile are closed,
calls in progress are followed.  On losing it, it forgets them.
"""
from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

log = Logger()


class AmiEventFeed:
    def __init__(self, link, hotline, alerts=None):
        self.link, self.hotline, self.alerts = link, hotline, alerts
        self.feeding = False
        self._generation = 0           # a resync begun under an earlier holding is not finished
        link.add_event_listener(self.handle)
        link.add_resync_listener(self)

    # --- the lease's child part ------------------------------------------------------------------
    @defer.inlineCallbacks
    def start(self):
        yield self.hotline.restore()
        if self.alerts is not None:
            yield self.alerts.start()
        self.feeding = True
        self._generation += 1
        resynced = yield self.link.resync(self)
        log.info("hotline: following the AMI events of {host}:{port} on this node ({how})", host=self.link.host,
                 port=self.link.port, how="resynced" if resynced else "resync at the next AMI login")

    def stop(self):
        self.feeding = False
        self._generation += 1
        self.hotline.forget()
        if self.alerts is not None:
            self.alerts.forget()

    # --- the AMI link's listeners ----------------------------------------------------------------------
    def handle(self, ev) -> None:
        if not self.feeding:
            return
        self.hotline.tracker.handle(ev)
        if self.alerts is not None:
            self.alerts.handle(ev)

    def resync_begin(self):
        if not self.feeding:
            return None
        return self._generation, self.hotline.tracker, self.hotline.tracker.resync_begin()

    def resync_end(self, token, snapshot) -> None:
        if token is None:
            return
        generation, tracker, inner = token
        if self.feeding and generation == self._generation and tracker is self.hotline.tracker:
            tracker.resync_end(inner, snapshot)
