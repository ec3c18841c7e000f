"""The hotline's alerts to the duty supervisor, from what AMI shows (the gateway never holds a
call to learn it):

- overflow: a caller still in the call-takers' queue `overflow_after_s` after joining it
  (QueueCallerJoin, and no QueueCallerLeave/Abandon/Hangup since).  The queue itself plays the
  overflow message (queues.conf periodic-announce); this is what the center is told.
- no call-taker logged in: the dialplan's UserEvent YihuNoCalltaker (dialplans/extensions.conf),
  until a call-taker answers a call or logs in (AgentConnect, QueueMemberAdded, or a
  QueueMemberStatus that is not unavailable).

Each is one episode: raised (a row in hotline_alerts and the event hotline.overflow /
hotline.no_calltaker, one transaction), and, if still on after `supervisor_wait_s`, an SMS to
the duty supervisor of the roster's shifts (row notified, then the SMS queued, then the event
hotline.<kind>_supervisor with the SMS's id on the row); cleared when it ends (the row and the
event hotline.<kind>_cleared, one transaction).  A restart re-arms the supervisor's timer of every episode
still raised from its row: the condition cannot be seen from before the restart, and telling
the supervisor once too often is better than once too few.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import insert, select, update
from twisted.internet import defer
from twisted.logger import Logger

from gateway.eventlog import record_event
from gateway.hotline.config import HotlineSection
from gateway.orders import directory_queries as dq
from gateway.storage.schema import audit_log, hotline_alerts

log = Logger()

OVERFLOW, NO_CALLTAKER = "overflow", "no_calltaker"
_LEAVE = ("QueueCallerLeave", "QueueCallerAbandon")
_DEVICE_UNAVAILABLE, _DEVICE_INVALID = "5", "4"


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def supervisor_text(kind: str, detail: str, local_hhmm: str) -> str:
    what = "接警队列溢出" if kind == OVERFLOW else "无接警员在岗"
    return f"【应急联动中心】{what}（{local_hhmm}起）：{detail}。请立即安排接警员登录接听。"


# --- units of work (inside Database.run) ---------------------------------------------------------
def raise_tx(conn, kind: str, line, call_id, now: datetime, notify_at: datetime, detail: str,
             waited: float | None = None) -> int:
    """The episode's row and its event hotline.<kind>, one commit."""
    alert_id = conn.execute(insert(hotline_alerts).values(
        kind=kind, line=line, call_id=call_id, state="raised", raised_at=now, notify_at=notify_at,
        detail=detail)).inserted_primary_key[0]
    payload = {"alert_id": alert_id, "line": line, "call_id": call_id, "detail": detail}
    if waited is not None:
        payload["waited_s"] = round(waited, 1)
    record_event(conn, f"hotline.{kind}", payload, now)
    return alert_id


def notify_tx(conn, alert_id: int, now: datetime):
    """Claim the supervisor's SMS: (supervisor or None, row) once; None when already done/cleared."""
    row = conn.execute(select(hotline_alerts).where(hotline_alerts.c.id == alert_id)).first()
    if row is None or row.state != "raised":
        return None
    sup = dq.duty_supervisor(conn, now)
    conn.execute(update(hotline_alerts).where(hotline_alerts.c.id == alert_id, hotline_alerts.c.state == "raised")
                 .values(state="notified", notified_at=now, supervisor=sup.name if sup else None,
                         supervisor_phone=sup.phone if sup else None))
    if sup is None:
        conn.execute(insert(audit_log).values(at=now, actor="system", action="hotline.no_supervisor",
                                              subject=f"hotline alert {alert_id}",
                                              detail={"kind": row.kind, "detail": row.detail}))
        record_event(conn, "hotline.no_supervisor", {"alert_id": alert_id, "kind": row.kind}, now)
    return sup, row


def sms_queued_tx(conn, alert_id: int, kind: str, supervisor: str, message_id, now: datetime) -> None:
    conn.execute(update(hotline_alerts).where(hotline_alerts.c.id == alert_id).values(sms_message_id=message_id))
    record_event(conn, f"hotline.{kind}_supervisor", {"alert_id": alert_id, "supervisor": supervisor}, now)


def clear_tx(conn, alert_id: int, kind: str, now: datetime) -> None:
    """The episode ends: its row and the event hotline.<kind>_cleared, one commit (once)."""
    done = conn.execute(update(hotline_alerts).where(hotline_alerts.c.id == alert_id,
                                                     hotline_alerts.c.cleared_at.is_(None))
                        .values(state="cleared", cleared_at=now)).rowcount
    if done:
        record_event(conn, f"hotline.{kind}_cleared", {"alert_id": alert_id}, now)


def open_alerts_tx(conn) -> list:
    return conn.execute(select(hotline_alerts).where(hotline_alerts.c.cleared_at.is_(None))
                        .order_by(hotline_alerts.c.id)).all()


# --- the watcher ---------------------------------------------------------------------------------
class HotlineAlerts:
    """An AMI event listener (AmiLink.add_event_listener(alerts.handle)); time from `clock`."""

    def __init__(self, clock, database, outbox, cfg: HotlineSection = HotlineSection(),
                 time_zone: str = "Asia/Shanghai"):
        self.clock, self.db, self.outbox, self.cfg = clock, database, outbox, cfg
        from zoneinfo import ZoneInfo
        self.tz = ZoneInfo(time_zone)
        self.waiting: dict[str, dict] = {}            # caller's Uniqueid -> {joined, line, call_id, timer}
        self.lines: dict[str, str] = {}               # Uniqueid -> HOTLINE seen in a VarSet
        self.open: dict[str, dict] = {}               # kind -> {id, timer, callers}
        self._work: set[defer.Deferred] = set()

    # --- lifecycle -------------------------------------------------------------------------
    @defer.inlineCallbacks
    def start(self):
        for row in (yield self.db.run(open_alerts_tx)):
            ep = self.open.setdefault(row.kind, {"id": row.id, "timer": None, "callers": set()})
            if row.state == "raised":
                due = row.notify_at.timestamp() - self.clock.seconds()
                ep["timer"] = self.clock.callLater(max(0.0, due), self._notify, row.kind, row.id)

    def stop(self):
        for w in self.waiting.values():
            if w["timer"].active():
                w["timer"].cancel()
        for ep in self.open.values():
            if ep["timer"] is not None and ep["timer"].active():
                ep["timer"].cancel()

    def forget(self) -> None:
        """Stopped on this node (the lease of the AMI events moved): the next holder loads the open
        alerts from the database and follows the queue from its own events."""
        self.stop()
        self.waiting.clear()
        self.lines.clear()
        self.open.clear()

    def settle(self) -> defer.Deferred:
        """Fires when the database work started so far is done (tests)."""
        return defer.DeferredList(list(self._work))

    def _track(self, d: defer.Deferred, what: str) -> defer.Deferred:
        self._work.add(d)
        d.addErrback(lambda f: log.failure("hotline alert: {what} failed", f, what=what))
        d.addBoth(lambda r: self._work.discard(d) or r)
        return d

    # --- AMI --------------------------------------------------------------------------------
    def handle(self, msg) -> None:
        name = msg.name
        uid = msg.get("Uniqueid")
        if name == "VarSet" and msg.get("Variable", "").lstrip("_") == "HOTLINE" and uid:
            self.lines[uid] = msg.get("Value")
        elif name == "QueueCallerJoin" and msg.get("Queue") == self.cfg.queue and uid:
            line = msg.chanvars().get("HOTLINE") or self.lines.get(uid)
            timer = self.clock.callLater(self.cfg.overflow_after_s, self._overflowed, uid)
            self.waiting[uid] = {"joined": self.clock.seconds(), "line": line, "timer": timer,
                                 "call_id": msg.get("Linkedid") or uid}
        elif name in _LEAVE or name == "Hangup":
            self._left(uid)
            if name == "Hangup":
                self.lines.pop(uid, None)
        if name == "UserEvent" and msg.get("UserEvent") == "YihuNoCalltaker":
            line = msg.get("Line") or self.lines.get(uid)
            self._raise(NO_CALLTAKER, line, msg.get("Linkedid") or uid,
                        f"{line or '热线'}来电时无接警员登录")
        elif name == "AgentConnect" and msg.get("Queue") == self.cfg.queue:
            self._clear(NO_CALLTAKER)
        elif name in ("QueueMemberAdded", "QueueMemberStatus") and msg.get("Queue") == self.cfg.queue \
                and msg.get("Status") not in (_DEVICE_UNAVAILABLE, _DEVICE_INVALID) \
                and msg.get("Paused", "0") != "1":
            self._clear(NO_CALLTAKER)

    def _left(self, uid):
        w = self.waiting.pop(uid, None)
        if w is None:
            return
        if w["timer"].active():
            w["timer"].cancel()
        ep = self.open.get(OVERFLOW)
        if ep is not None:
            ep["callers"].discard(uid)
            if not ep["callers"] and not any(x.get("over") for x in self.waiting.values()):
                self._clear(OVERFLOW)

    def _overflowed(self, uid):
        w = self.waiting.get(uid)
        if w is None:
            return
        w["over"] = True
        waited = self.clock.seconds() - w["joined"]
        over = sum(1 for x in self.waiting.values() if x.get("over"))
        self._raise(OVERFLOW, w["line"], w["call_id"],
                    f"{over}名群众在接警队列等待超过{int(self.cfg.overflow_after_s)}秒", uid=uid, waited=waited)

    # --- episodes ---------------------------------------------------------------------------
    def _raise(self, kind: str, line, call_id, detail: str, uid=None, waited=None):
        ep = self.open.get(kind)
        if ep is not None:                 # the episode goes on: one alert, not one per caller
            if uid is not None:
                ep["callers"].add(uid)
            return
        ep = self.open[kind] = {"id": None, "timer": None, "callers": {uid} if uid else set()}
        now = self.clock.seconds()
        notify_at = now + self.cfg.supervisor_wait_s

        def raised(alert_id):
            ep["id"] = alert_id
            log.warn("hotline: {kind} ({detail}); duty supervisor told in {wait:.0f}s if it goes on",
                     kind=kind, detail=detail, wait=self.cfg.supervisor_wait_s)
            if self.open.get(kind) is ep:
                ep["timer"] = self.clock.callLater(max(0.0, notify_at - self.clock.seconds()),
                                                   self._notify, kind, alert_id)
            else:                          # it ended while the row was being written
                self._track(self.db.run(clear_tx, alert_id, kind, _utc(self.clock.seconds())), "clear")
        self._track(self.db.run(raise_tx, kind, line, call_id, _utc(now), _utc(notify_at), detail, waited)
                    .addCallback(raised), "raise")

    def _clear(self, kind: str):
        ep = self.open.pop(kind, None)
        if ep is None:
            return
        if ep["timer"] is not None and ep["timer"].active():
            ep["timer"].cancel()
        if ep["id"] is None:
            return                          # raise still being written: `raised` clears it
        alert_id = ep["id"]
        self._track(self.db.run(clear_tx, alert_id, kind, _utc(self.clock.seconds())), "clear")

    def _notify(self, kind: str, alert_id: int):
        now = _utc(self.clock.seconds())

        @defer.inlineCallbacks
        def work():
            claimed = yield self.db.run(notify_tx, alert_id, now)
            if claimed is None:
                return
            sup, row = claimed
            if sup is None:
                log.error("hotline alert {id} ({kind}): no duty supervisor on the roster at this time",
                          id=alert_id, kind=kind)
                return
            hhmm = row.raised_at.astimezone(self.tz).strftime("%H:%M")
            mid = yield self.outbox.enqueue(sup.phone, supervisor_text(kind, row.detail, hhmm), purpose="supervisor")
            yield self.db.run(sms_queued_tx, alert_id, kind, sup.name, mid, _utc(self.clock.seconds()))
        self._track(work(), "supervisor SMS")
