"""The modem bank and its persistent outbox (implements ISmsOutbox).

Life of a message: enqueue → committed with its PDUs (state queued) → the planner gives it to
the healthy modem that will finish it soonest; from then on all its parts go on that modem →
each segment is committed "submitting" before AT+CMGS, then "sent" with its MR (the "sent"
of one segment and the "submitting" of the next share one transaction) → status reports make
them "delivered", "failed", or "queued" again when the SC gave up on a temporary error (handset
off or busy) and attempts are left; "SC still trying" keeps them waiting (TS 23.040 9.2.3.15).

When AT+CMGS times out after the PDU was written, or the port dies then, the segment's outcome
is *unknown*: it is counted (sms_segments.outcome_unknown), and settled by a late +CMGS, by a
status report, or after `unknown_wait` by the configured policy (resend — a possible duplicate,
counted — or report the message "unknown").  Never a blind resend.

Others learn outcomes through `add_observer(fn)`: fn(message_id, state) is called on every
message state change (queued sending sent delivered failed unknown).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from gateway import metrics
from gateway.cluster.claims import Claimer
from gateway.cluster.config import ClusterSection
from gateway.interfaces import ISmsOutbox
from sms import policy
from sms.at import AtError, AtTimeout, CmsError, PortLost, SubmitNotConfirmed
from sms.config import UNKNOWN_FAIL, SmsConfig
from sms.inbound import InboundProcessor
from sms.modem import ModemDriver
from sms.store import add_message_tx, add_messages_tx, message_state

log = Logger()


@dataclass
class _Message:
    id: int
    phone: str
    purpose: str
    state: str
    modem: str | None
    segments: list[dict]
    not_before: float = 0.0
    active: bool = False
    unpinned_wait_since: float | None = None

    def queued(self) -> list[dict]:
        return [s for s in self.segments if s["state"] == "queued"]

    @property
    def outcome_unknown(self) -> int:
        return sum(s.get("outcome_unknown", 0) for s in self.segments)


@dataclass
class _Slot:
    driver: ModemDriver
    busy: bool = False
    next_allowed: float = 0.0
    free_at: float = 0.0
    zombie: tuple | None = None          # (message, segment) whose +CMGS timed out
    in_hand: int = 0
    settle_timers: dict = field(default_factory=dict)


def serial_opener(reactor, path: str, baudrate: int):
    """Open a real serial port (or a pty) through the reactor."""
    from twisted.internet.serialport import SerialPort

    def open_(protocol):
        return SerialPort(protocol, path, reactor, baudrate=baudrate, timeout=0)
    return open_


@implementer(ISmsOutbox)
class SmsBank:
    def __init__(self, reactor, store, config: SmsConfig, openers: dict, *, sink=None, region: str = "CN",
                 node: str = "yihu-1", cluster: ClusterSection = ClusterSection()):
        """`openers`: modem name (its port) → opener(protocol) (see serial_opener); `node`: this
        gateway's node name, written on the messages it claims."""
        self.reactor = reactor
        self.node = node
        self.claimer = Claimer(node, cluster.node_timeout_s)
        # Free messages committed elsewhere (another node's fan-out, the CLI) are looked for this
        # often while a modem is idle; LISTEN/NOTIFY, where there is one, pokes sooner.
        self.sweep_seconds = min(self.CLAIM_POLL_SECONDS, cluster.heartbeat_s)
        self._sweep = None
        self._pool = True               # free messages may be waiting in the database
        self._claiming = False
        self._unusable_since: float | None = None
        self._last_empty = float("-inf")     # when a claim last found nothing
        self.store = store
        self.config = config
        self.messages: dict[int, _Message] = {}
        self.queue: list[int] = []
        self.slots: dict[str, _Slot] = {}
        self.observers: list = []
        self.alert_observers: list = []      # fn(modem name, reason): an operator must act
        self.inbound = InboundProcessor(reactor, store, sink, reassembly_timeout=config.reassembly_timeout,
                                        region=region, on_report=self._status_report)
        for name, opener in openers.items():
            d = ModemDriver(reactor, name, opener, config, inbound=self._inbound_pdu,
                            status_report=self._routed_report, late_submit=self._late_submit,
                            state_changed=self._modem_changed, garbage=self._garbage,
                            alert=self._modem_alert)
            self.slots[name] = _Slot(driver=d)
        self._dispatching = False
        self._again = False
        self._wakeup = None
        self._depth_call = None         # the outbox depth gauge's next recount
        self._settle_timers: dict[int, object] = {}      # segment id → timer
        self._workers: set[defer.Deferred] = set()        # one per modem sending a message
        self.started = False
        self._stopped = False           # stop() called: a start still reading the database opens nothing
        self.stats = {"sent": 0, "unknown": 0, "unknown_resent": 0, "retried": 0, "failed": 0,
                      "settled_late": 0, "settled_report": 0}

    # --- lifecycle -----------------------------------------------------------------------------
    @defer.inlineCallbacks
    def start(self):
        """Resume this node's own open messages from the database (a restart), then open the
        modems; messages of other nodes are left alone (a dead node's are taken over by claims)."""
        self._stopped = False
        rows = yield self.store.load_open(self.node)
        if self._stopped:
            # Stopped while it read (a gateway that could not start): nothing taken in, no modem
            # opened, no loop; the rows are taken in by the next start.
            return
        yield self._take_in(rows, "gateway restarted during submission")
        yield self.inbound.start()
        if self._stopped:
            return
        self.started = True
        for slot in self.slots.values():
            slot.driver.start()
        self._sweep = task.LoopingCall(self._poll)
        self._sweep.clock = self.reactor
        self._sweep.start(self.sweep_seconds, now=False)
        self._update_gauges()
        self.dispatch()

    @defer.inlineCallbacks
    def _take_in(self, rows, why: str):
        """Messages now ours (our own at start, or claimed): a segment left `submitting` may have
        gone out (its node died between the commit and the modem's answer): its outcome is unknown
        and the unknown-outcome policy settles it.  A dead node's message is unpinned from that
        node's modem and finished here with its remaining parts (already built, same reference)."""
        now = self.reactor.seconds()
        changes, taken = [], 0
        for r in rows:
            if r["id"] in self.messages:
                continue            # adopted while we were loading
            m = _Message(id=r["id"], phone=r["phone"], purpose=r["purpose"], state=r["state"], modem=r["modem"],
                         segments=r["segments"])
            dead = r.get("taken_from")
            for s in m.segments:
                if s["state"] == "submitting":
                    s["state"] = "unknown"
                    s["outcome_unknown"] = s.get("outcome_unknown", 0) + 1
                    self.stats["unknown"] += 1
                    reason = why if dead is None else f"node {dead} died during submission"
                    changes.append(("segment", s["id"], {"state": "unknown",
                                                         "outcome_unknown": s["outcome_unknown"],
                                                         "last_error": reason}))
                    log.warn("message {mid} part {seq} to {phone}: outcome unknown ({why})",
                             mid=m.id, seq=s["seq"], phone=m.phone, why=reason)
            if dead is not None:
                left = sum(1 for s in m.segments if s["state"] in ("queued", "unknown"))
                taken += left
                if m.modem is not None:
                    # the parts still to go leave from one of our modems (the modem it was pinned
                    # to belongs to the dead node's machine)
                    m.modem = None
                    changes.append(("message", m.id, {"modem": None}))
                log.warn("message {mid} to {phone}: taken over from dead node {dead}; {n} part(s) left to settle "
                         "or send here", mid=m.id, phone=m.phone, dead=dead, n=left)
            # The message's own state may lag its segments' (we died before that write): settle it.
            state = message_state([s["state"] for s in m.segments])
            if state != m.state:
                m.state = state
                changes.append(("message", m.id, {"state": "recomputed"}))
            self.messages[m.id] = m
            self.queue.append(m.id)
            for s in m.segments:
                if s["state"] == "unknown":
                    self._arm_settle(m, s)
        if taken:
            metrics.WORK_TAKEN_OVER.labels(kind="sms_segment").inc(taken)
        if changes:
            yield self.store.save(now, changes)

    def poke(self):
        """Look for messages to claim at the next free modem (work committed elsewhere: another
        node's fan-out, the CLI, a dead node's messages); the periodic sweep calls it too."""
        self._pool = True
        self.dispatch()

    def _poll(self):
        if any(s.driver.healthy and not s.busy for s in self.slots.values()):
            self.poke()
        self._release_if_unusable()

    def _release_if_unusable(self):
        """No usable modem for `affinity_wait`: the messages claimed here and not begun go back to
        the pool, for a node whose modems work (a message with a part out waits for its modem)."""
        if not self.started or not self.slots or any(s.driver.healthy for s in self.slots.values()):
            self._unusable_since = None
            return
        now = self.reactor.seconds()
        if self._unusable_since is None:
            self._unusable_since = now
        if now < self._unusable_since + self.config.affinity_wait:
            return
        held = [m for mid in self.queue if (m := self.messages.get(mid)) is not None and not m.active
                and m.modem is None and m.segments and all(x["state"] == "queued" for x in m.segments)]
        if not held:
            return
        for m in held:
            m.active = True             # no worker takes it while it is being given back

        def released(ids):
            for m in held:
                m.active = False
                if m.id in ids:
                    del self.messages[m.id]
            self.queue = [mid for mid in self.queue if mid in self.messages]
            if ids:
                log.warn("SMS bank: no usable modem on node {node} for {t:.0f} s; {n} message(s) given back for "
                         "another node", node=self.node, t=now - self._unusable_since, n=len(ids))
        self.store.release(now, self.claimer, [m.id for m in held]).addCallbacks(
            released, lambda f: (released(set()), log.failure("SMS bank: giving messages back failed", f)))

    def usable_modems(self) -> int:
        """Modems of this node that can take a message now (what `nodes.modems` reports)."""
        return sum(1 for s in self.slots.values() if s.driver.healthy)

    @defer.inlineCallbacks
    def stop(self):
        """Take no new work; wait (at most sms.drain_seconds) for the segments in flight to be
        answered by their modems and for every write to commit; then close the modems."""
        self.started = False
        self._stopped = True
        busy = [d for d in self._workers if not d.called]
        if busy:
            log.info("SMS bank stopping: waiting up to {t:.0f} s for {n} modem(s) to answer the segment in hand",
                     t=self.config.drain_seconds, n=len(busy))
            if not (yield self._within(defer.DeferredList(busy), self.config.drain_seconds)):
                log.warn("SMS bank stopping: segments still in flight after {t:.0f} s; their outcome will be "
                         "unknown at the next start", t=self.config.drain_seconds)
        if not (yield self._within(self.store.idle(), self.config.drain_seconds)):
            log.error("SMS bank stopping: outbox writes not committed after {t:.0f} s", t=self.config.drain_seconds)
        self._close()

    def _within(self, d, seconds: float):
        """Deferred[bool]: True when d fired within `seconds`, False when the time ran out."""
        out = defer.Deferred()
        timer = self.reactor.callLater(seconds, lambda: out.called or out.callback(False))

        def fired(_):
            if not out.called:
                timer.cancel()
                out.callback(True)
        d.addBoth(fired)
        return out

    def abandon(self):
        """Stop at once, waiting for nothing (what a crash does; tests of restarts)."""
        self.started = False
        self._stopped = True
        self._close()

    def _close(self):
        if self._sweep is not None and self._sweep.running:
            self._sweep.stop()
        for slot in self.slots.values():
            slot.driver.stop()
        for tm in list(self._settle_timers.values()):
            if tm.active():
                tm.cancel()
        self._settle_timers.clear()
        if self._wakeup is not None and self._wakeup.active():
            self._wakeup.cancel()
        if self._depth_call is not None and self._depth_call.active():
            self._depth_call.cancel()
        self._depth_call = None
        self.inbound.stop()

    # --- ISmsOutbox ----------------------------------------------------------------------------
    @defer.inlineCallbacks
    def enqueue(self, phone: str, text: str, *, purpose: str, order_id: int | None = None,
                delivery_id: int | None = None):
        # A node with modems sends what it enqueues itself; one without leaves it to a node with modems.
        mine = bool(self.slots)
        r = yield self.store.add_message(self.reactor.seconds(), phone, text, purpose, order_id, delivery_id,
                                         ref_bits=self.config.concat_ref_bits,
                                         status_report=self.config.status_reports,
                                         validity_minutes=self.config.validity_minutes,
                                         owner=self.node if mine else None)
        if not mine:
            log.info("message {mid} to {phone} queued for a node with modems ({purpose})", mid=r["id"], phone=phone,
                     purpose=purpose)
            return r["id"]
        m = _Message(id=r["id"], phone=phone, purpose=purpose, state="queued", modem=None, segments=r["segments"])
        self.messages[m.id] = m
        self.queue.append(m.id)
        log.info("message {mid} to {phone} queued ({parts} part(s), {purpose})", mid=m.id, phone=phone,
                 parts=len(m.segments), purpose=purpose)
        self._update_gauges()
        self.dispatch()
        return m.id

    def _modem_alert(self, driver: ModemDriver, reason: str):
        for fn in list(self.alert_observers):
            try:
                fn(driver.name, reason)
            except Exception:  # noqa: BLE001
                log.failure("modem alert observer failed")

    def describe_modems(self) -> str:
        """For /health and the board: "1/2 modems healthy: modem0 ready -71dBm, modem1 benched
        (SIM PIN refused: +CME ERROR: 16)"."""
        healthy = sum(1 for s in self.slots.values() if s.driver.healthy)
        return f"{healthy}/{len(self.slots)} modems healthy: " + ", ".join(
            f"{name.rsplit('/', 1)[-1]} {s.driver.describe()}"
            + (f" {s.driver.signal_dbm}dBm" if s.driver.signal_dbm is not None else "")
            for name, s in self.slots.items())

    def retry_pin(self, modem: str, pin: str | None = None) -> bool:
        """The operator's deliberate SIM PIN retry on one modem (`yihu modem pin`)."""
        slot = self.slots.get(modem) or next((s for n, s in self.slots.items() if n.rsplit("/", 1)[-1] == modem), None)
        if slot is None:
            raise KeyError(modem)
        return slot.driver.retry_pin(pin)
    def stage_tx(self, conn, now: datetime, phone: str, text: str, *, purpose: str, order_id: int | None = None,
                 delivery_id: int | None = None) -> dict:
        """Run inside another part's transaction: the message, queued, committed with the state
        change that causes it (transactional outbox).  After COMMIT give the result to adopt()."""
        return add_message_tx(conn, now, phone, text, purpose, order_id, delivery_id,
                              ref_bits=self.config.concat_ref_bits, status_report=self.config.status_reports,
                              validity_minutes=self.config.validity_minutes)

    def stage_many_tx(self, conn, items: list[dict]) -> list[dict]:
        """stage_tx for several messages (items: now, phone, text, purpose, order_id, delivery_id),
        written together: a batch of answers stages its confirmations in two statements."""
        return add_messages_tx(conn, items, ref_bits=self.config.concat_ref_bits,
                               status_report=self.config.status_reports,
                               validity_minutes=self.config.validity_minutes)

    def adopt(self, records) -> None:
        """Messages committed by stage_tx are free for any node with modems: claim them as this
        node's modems free up (so that two nodes share a fan-out by what they can carry)."""
        if records:
            self.poke()

    def add_observer(self, fn):
        """fn(message_id, state) on every state change of a message."""
        self.observers.append(fn)

    def message_state(self, message_id: int) -> str | None:
        m = self.messages.get(message_id)
        return m.state if m else None

    # --- scheduling ----------------------------------------------------------------------------
    def dispatch(self):
        if not self.started:
            return
        if self._dispatching:
            self._again = True
            return
        self._dispatching = True
        try:
            while True:
                self._again = False
                self._dispatch_once()
                if not self._again:
                    break
        finally:
            self._dispatching = False

    def _dispatch_once(self):
        now = self.reactor.seconds()
        healthy = {n: s for n, s in self.slots.items() if s.driver.healthy}
        if not any(not s.busy for s in healthy.values()):
            self._update_gauges()
            return              # nobody can take work now; a modem freeing up dispatches again
        views = []
        for n, s in healthy.items():
            views.append(policy.ModemView(
                name=n, idle=not s.busy, free_at=s.free_at if s.busy else max(now, s.next_allowed),
                seconds_per_segment=s.driver.seconds_per_segment, min_interval=self.config.min_interval))
        jobs, wake = [], None
        self.queue = [mid for mid in self.queue
                      if mid in self.messages and self.messages[mid].state in ("queued", "sending")]
        for mid in self.queue:
            if len(jobs) >= self.config.planning_horizon:
                break
            m = self.messages[mid]
            if m.active:
                continue
            q = m.queued()
            if not q:
                continue
            if m.not_before > now:
                wake = m.not_before if wake is None else min(wake, m.not_before)
                continue
            if m.modem is not None and m.modem not in healthy:
                if self._maybe_unpin(m, now):
                    pass
                else:
                    due = (m.unpinned_wait_since or now) + self.config.affinity_wait
                    wake = due if wake is None else min(wake, due)
                    continue
            elif m.modem is not None:
                m.unpinned_wait_since = None
            jobs.append(policy.Job(key=mid, segments=len(q), modem=m.modem))
        for mid, name in policy.plan(jobs, views, now):
            w = self._work(self.slots[name], self.messages[mid])
            self._workers.add(w)
            w.addBoth(lambda r, w=w: (self._workers.discard(w), r)[1])
        if wake is not None:
            self._wake_at(wake)
        self._claim(healthy, now)
        self._update_gauges()

    def _claim(self, healthy: dict, now: float):
        """Claim free messages for the modems left idle: as many as they can start now, no more,
        so that nodes sharing the database share the work by what their modems carry."""
        # After a claim found nothing, look again on a poke (work committed here, a wake-up) or
        # at most every CLAIM_AGAIN_SECONDS when something dispatches (a wake-up may call dispatch).
        if self._claiming or not self.started or (
                not self._pool and now < self._last_empty + self.CLAIM_AGAIN_SECONDS):
            return
        idle = sum(1 for s in healthy.values() if not s.busy)
        waiting = sum(1 for mid in self.queue
                      if (m := self.messages.get(mid)) is not None and not m.active and m.modem is None
                      and m.not_before <= now and m.queued())
        want = idle - waiting
        if want <= 0:
            return
        self._claiming = True

        @defer.inlineCallbacks
        def claim():
            try:
                rows = yield self.store.claim(now, self.claimer, want)
                if len(rows) < want:
                    self._pool = False          # none left: until a poke or the next sweep
                    self._last_empty = now
                yield self._take_in(rows, "its node restarted during submission")
            except Exception:  # noqa: BLE001 - the next sweep tries again
                log.failure("SMS bank: claiming queued messages failed; retrying at the next sweep")
                self._pool, self._last_empty = False, now
            finally:
                self._claiming = False
            self.dispatch()
        claim()

    def _wake_at(self, when: float):
        if self._wakeup is not None and self._wakeup.active():
            if self._wakeup.getTime() <= when:
                return
            self._wakeup.cancel()
        self._wakeup = self.reactor.callLater(max(0.0, when - self.reactor.seconds()), self.dispatch)

    def _maybe_unpin(self, m: _Message, now: float) -> bool:
        """A half-sent message whose modem is gone for too long goes whole to another modem."""
        if m.unpinned_wait_since is None:
            m.unpinned_wait_since = now
            return False
        if now < m.unpinned_wait_since + self.config.affinity_wait:     # same sum as the wake-up
            return False
        if self.config.unknown_policy == UNKNOWN_FAIL and any(s["state"] == "unknown" for s in m.segments):
            return False          # "fail" policy: an unknown part is never sent again
        log.warn("message {mid} to {phone}: modem {modem} unavailable for {t:.0f}s; sending it whole on "
                 "another modem", mid=m.id, phone=m.phone, modem=m.modem, t=now - m.unpinned_wait_since)
        changes = []
        for s in m.segments:
            if s["state"] in ("sent", "delivered", "unknown"):
                if s["state"] == "unknown":
                    self._cancel_settle(s)
                    self.stats["unknown_resent"] += 1
                s["state"] = "queued"
                changes.append(("segment", s["id"], {"state": "queued",
                                                     "last_error": f"moved off {m.modem}"}))
        m.modem = None
        m.unpinned_wait_since = None
        changes.append(("message", m.id, {"modem": None}))
        self.store.save(now, changes).addErrback(self._store_failed, m)
        return True

    # --- the worker ----------------------------------------------------------------------------
    @defer.inlineCallbacks
    def _work(self, slot: _Slot, m: _Message):
        d = slot.driver
        name = d.name
        slot.busy = True
        m.active = True
        slot.in_hand = len(m.queued())
        slot.free_at = self.reactor.seconds() + slot.in_hand * max(d.seconds_per_segment, self.config.min_interval)
        pending: list[dict] = []          # segments whose "sent" rides with the next commit
        closing = False
        try:
            while self.started:
                q = m.queued()
                if not q or not d.healthy or m.state in ("failed", "delivered", "unknown"):
                    break
                if m.not_before > self.reactor.seconds():
                    break                     # a part to send again later (a status report said so)
                seg = q[0]
                wait = slot.next_allowed - self.reactor.seconds()
                if wait > 0:
                    yield task.deferLater(self.reactor, wait, lambda: None)
                    if not d.healthy or not self.started:
                        break
                now = self.reactor.seconds()
                seg["state"] = "submitting"
                seg["modem"] = name
                seg["attempts"] = seg.get("attempts", 0) + 1
                changes = [self._seg_change(p) for p in pending]
                changes.append(("segment", seg["id"], {"state": "submitting", "modem": name, "mr": None,
                                                       "attempts": seg["attempts"], "submitted_at": _utc(now)}))
                pending = []
                if m.modem != name or m.state == "queued":
                    m.modem = name
                    changes.append(("message", m.id, {"modem": name, "state": "sending"}))
                    self._set_state(m, "sending", save=False)
                refused = yield self.store.save(now, changes)          # durable before submitted
                if refused and seg["id"] in refused:
                    # its order was closed: this part and those after it are not sent
                    unsent = m.queued() + [seg]
                    for s in unsent:
                        s["state"] = "cancelled"
                    log.info("message {mid} to {phone}: order closed; {n} part(s) not sent", mid=m.id,
                             phone=m.phone, n=len(unsent))
                    break
                if not d.healthy or not self.started:
                    seg["state"] = "queued"                   # never written to the modem
                    yield self.store.save(self.reactor.seconds(),
                                          [("segment", seg["id"], {"state": "queued"})])
                    break
                slot.next_allowed = now + self.config.min_interval
                try:
                    mr = yield d.submit(seg["tpdu_length"], seg["pdu"])
                except CmsError as e:
                    stop = yield self._cms_error(slot, m, seg, e)
                    if stop:
                        break
                    continue
                except AtError as e:
                    # a bare ERROR (no +CMS code: CMEE lost in a reboot): not sent, try again later
                    stop = yield self._cms_error(slot, m, seg, CmsError(e.command, 500, e.final))
                    if stop:
                        break
                    continue
                except (AtTimeout, SubmitNotConfirmed, PortLost) as e:
                    sent = isinstance(e, SubmitNotConfirmed) or (isinstance(e, AtTimeout) and e.pdu_sent)
                    yield self._lost_answer(slot, m, seg, e, sent)
                    break
                if seg["state"] == "submitting":
                    seg["state"] = "sent"
                seg["mr"] = mr
                pending.append(seg)
                self.stats["sent"] += 1
                metrics.SMS_SEGMENTS_SENT.labels(modem=name).inc()
                d.note_success(self.reactor.seconds() - now)
                slot.in_hand = max(0, slot.in_hand - 1)
                log.debug("{modem}: message {mid} part {seq}/{n} to {phone} sent, MR {mr}", modem=name,
                          mid=m.id, seq=seg["seq"], n=len(m.segments), phone=m.phone, mr=mr)
        except GeneratorExit:
            closing = True            # abandoned (the process is going away): write nothing more
            raise
        except Exception:  # noqa: BLE001 - a store failure: the segment stays as committed
            log.failure("{modem}: sending message {mid} failed unexpectedly", modem=name, mid=m.id)
            for s in m.segments:
                if s["state"] == "submitting" and s not in pending:
                    s["state"] = "queued"
            m.not_before = self.reactor.seconds() + self.config.retry_delay
        finally:
            slot.busy = False
            slot.in_hand = 0
            m.active = False
            if not closing:
                changes = [self._seg_change(p) for p in pending]
                if changes or message_state([s["state"] for s in m.segments]) != m.state:
                    changes.append(("message", m.id, {"state": "recomputed"}))
                    # Not awaited: no submission depends on it, so the modem takes its next message
                    # now and this commit rides with that message's first one (group commit).
                    # Observers hear "sent" only once it is committed.
                    self.store.save(self.reactor.seconds(), changes).addCallbacks(
                        lambda _: self._set_state(m, message_state([s["state"] for s in m.segments]),
                                                  save=False),
                        self._store_failed, errbackArgs=(m,))
                self.dispatch()

    @staticmethod
    def _seg_change(seg: dict):
        # a status report may already have settled it ("delivered"): never write it back to "sent"
        return ("segment", seg["id"], {"state": seg["state"], "mr": seg["mr"]})

    @defer.inlineCallbacks
    def _cms_error(self, slot: _Slot, m: _Message, seg: dict, e: CmsError):
        """Returns True when the worker should leave this message."""
        kind = policy.classify_cms(e.code)
        d = slot.driver
        now = self.reactor.seconds()
        metrics.SMS_SEGMENTS_FAILED.labels(modem=d.name, reason=f"cms{e.code}").inc()
        log.warn("{modem}: message {mid} part {seq} to {phone}: +CMS ERROR {code} ({kind})", modem=d.name,
                 mid=m.id, seq=seg["seq"], phone=m.phone, code=e.code, kind=kind)
        nothing_out = all(s["state"] in ("queued", "submitting") for s in m.segments)
        if kind in (policy.OUR_BUG, policy.FAIL) or (kind == policy.RETRY and
                                                     seg["attempts"] >= self.config.max_attempts):
            seg["state"] = "failed"
            self.stats["failed"] += 1
            if kind == policy.OUR_BUG:
                log.error("message {mid} part {seq}: the modem refused our PDU (+CMS ERROR {code}); "
                          "not retried — this is a bug to fix", mid=m.id, seq=seg["seq"], code=e.code)
            yield self.store.save(now, [("segment", seg["id"], {"state": "failed",
                                                                "last_error": f"+CMS ERROR: {e.code}"})])
            return True
        seg["state"] = "queued"
        self.stats["retried"] += 1
        change = {"state": "queued", "last_error": f"+CMS ERROR: {e.code}"}
        if kind == policy.BENCH:
            d.bench(f"+CMS ERROR {e.code} (SIM)")
        elif e.code in (331, 332):
            d.note_error()           # this modem's own network trouble
        m.not_before = now + (0 if kind == policy.BENCH else self.config.retry_delay)
        changes = [("segment", seg["id"], change)]
        if nothing_out:
            m.modem = None                                  # free to go on another modem
            changes.append(("message", m.id, {"modem": None}))
        yield self.store.save(now, changes)
        return True

    @defer.inlineCallbacks
    def _lost_answer(self, slot: _Slot, m: _Message, seg: dict, e: Exception, pdu_sent: bool):
        d = slot.driver
        now = self.reactor.seconds()
        d.note_error()
        if pdu_sent:
            d.quarantine(self.config.late_answer_grace)
        if seg["state"] in ("delivered", "failed"):
            pass                  # a status report already settled it while we waited
        elif not pdu_sent:
            seg["state"] = "queued"
            metrics.SMS_SEGMENTS_FAILED.labels(modem=d.name, reason="not_sent").inc()
            log.warn("{modem}: message {mid} part {seq}: {err} before the PDU went out; will retry",
                     modem=d.name, mid=m.id, seq=seg["seq"], err=str(e))
            changes = [("segment", seg["id"], {"state": "queued", "last_error": str(e)[:200]})]
            if all(s["state"] == "queued" for s in m.segments):
                m.modem = None
                changes.append(("message", m.id, {"modem": None}))
            yield self.store.save(now, changes)
        else:
            seg["state"] = "unknown"
            seg["outcome_unknown"] = seg.get("outcome_unknown", 0) + 1
            self.stats["unknown"] += 1
            slot.zombie = (m, seg)
            metrics.SMS_SEGMENTS_FAILED.labels(modem=d.name, reason="unknown").inc()
            log.warn("{modem}: message {mid} part {seq} to {phone}: outcome UNKNOWN ({err}); waiting "
                     "{t:.0f}s for a status report", modem=d.name, mid=m.id, seq=seg["seq"], phone=m.phone,
                     err=str(e), t=self.config.unknown_wait)
            yield self.store.save(now, [("segment", seg["id"], {"state": "unknown",
                                                                "outcome_unknown": seg["outcome_unknown"],
                                                                "last_error": str(e)[:200]})])
            self._arm_settle(m, seg)
        if isinstance(e, AtTimeout):
            d.check()

    # --- settling unknown outcomes -------------------------------------------------------------
    def _arm_settle(self, m: _Message, seg: dict):
        self._cancel_settle(seg)
        self._settle_timers[seg["id"]] = self.reactor.callLater(self.config.unknown_wait, self._settle_by_policy,
                                                                m, seg)

    def _cancel_settle(self, seg: dict):
        tm = self._settle_timers.pop(seg["id"], None)
        if tm is not None and tm.active():
            tm.cancel()

    def _settle_by_policy(self, m: _Message, seg: dict):
        self._settle_timers.pop(seg["id"], None)
        if seg["state"] != "unknown":
            return
        now = self.reactor.seconds()
        if self.config.unknown_policy == UNKNOWN_FAIL:
            seg["state"] = "lost"
            log.warn("message {mid} part {seq} to {phone}: no report after {t:.0f}s; reported as unknown "
                     "(policy)", mid=m.id, seq=seg["seq"], phone=m.phone, t=self.config.unknown_wait)
            change = {"state": "lost", "last_error": "outcome unknown: not resent (policy)"}
        else:
            seg["state"] = "queued"
            self.stats["unknown_resent"] += 1
            log.warn("message {mid} part {seq} to {phone}: no report after {t:.0f}s; sending again "
                     "(policy; a duplicate is possible)", mid=m.id, seq=seg["seq"], phone=m.phone,
                     t=self.config.unknown_wait)
            change = {"state": "queued", "last_error": "outcome unknown: resent (policy)"}
        new = message_state([s["state"] for s in m.segments])
        self.store.save(now, [("segment", seg["id"], change), ("message", m.id, {"state": new})]) \
            .addErrback(self._store_failed, m)
        self._set_state(m, new, save=False)
        if m.id not in self.queue:
            self.queue.append(m.id)
        self.dispatch()

    def _late_submit(self, driver: ModemDriver, mr: int):
        driver.end_quarantine()
        slot = self.slots.get(driver.name)
        if slot is None or slot.zombie is None:
            return
        m, seg = slot.zombie
        slot.zombie = None
        if seg["state"] != "unknown" or seg.get("modem") != driver.name:
            return
        self._cancel_settle(seg)
        seg["state"] = "sent"
        seg["mr"] = mr
        self.stats["settled_late"] += 1
        log.info("{modem}: late +CMGS {mr}: message {mid} part {seq} was sent after all", modem=driver.name,
                 mr=mr, mid=m.id, seq=seg["seq"])
        new = message_state([s["state"] for s in m.segments])
        self.store.save(self.reactor.seconds(), [("segment", seg["id"], {"state": "sent", "mr": mr}),
                                                 ("message", m.id, {"state": new})]).addErrback(self._store_failed, m)
        self._set_state(m, new, save=False)
        self.dispatch()

    @defer.inlineCallbacks
    def _status_report(self, modem: str, report, raw_row: dict, dedup: bool):
        """A status report settles its segment by TP-Status (policy.report_outcome): delivered;
        still trying (an unknown outcome is known to be with the SC: never resent); failed; or,
        when the SC gave up on a temporary error, sent again while attempts are left."""
        r = yield self.store.settle_report(self.reactor.seconds(), modem, report.mr, report.recipient,
                                           report.status, raw_row=raw_row, dedup=dedup,
                                           max_attempts=self.config.max_attempts, node=self.node)
        what = policy.describe_status(report.status)
        if r is None:
            log.info("{modem}: status report MR {mr} for {phone} ({what}) settles no segment", modem=modem,
                     mr=report.mr, phone=report.recipient, what=what)
            return
        mid, sid, _state, outcome = r
        m = self.messages.get(mid)
        if m is None or outcome is None:
            return
        for s in m.segments:
            if s["id"] != sid:
                continue
            if s["state"] == "unknown":
                self.stats["settled_report"] += 1
                self._cancel_settle(s)
                slot = self.slots.get(modem)
                if slot is not None and slot.zombie is not None and slot.zombie[1] is s:
                    slot.zombie = None
            if s["state"] in ("sent", "unknown", "submitting"):
                s["state"] = outcome
                s["mr"] = report.mr
                if outcome == "queued":
                    self.stats["retried"] += 1
                    metrics.SMS_SEGMENTS_FAILED.labels(modem=modem, reason="report_retry").inc()
                    log.warn("{modem}: message {mid} part {seq} to {phone} not delivered ({what}); sending it "
                             "again (attempt {n} of {max})", modem=modem, mid=mid, seq=s["seq"], phone=m.phone,
                             what=what, n=s.get("attempts", 0) + 1, max=self.config.max_attempts)
                    m.not_before = max(m.not_before, self.reactor.seconds() + self.config.retry_delay)
                    if mid not in self.queue:
                        self.queue.append(mid)
                elif outcome == "failed":
                    self.stats["failed"] += 1
                    metrics.SMS_SEGMENTS_FAILED.labels(modem=modem, reason="report").inc()
                    log.warn("{modem}: message {mid} to {phone} NOT delivered ({what})", modem=modem, mid=mid,
                             phone=m.phone, what=what)
                elif outcome == "sent":
                    log.info("{modem}: message {mid} part {seq}: the SC is still trying ({what}); waiting for "
                             "its final report", modem=modem, mid=mid, seq=s["seq"], what=what)
        self._set_state(m, message_state([s["state"] for s in m.segments]), save=False)
        self.dispatch()

    # --- inbound and modem events --------------------------------------------------------------
    def _inbound_pdu(self, driver: ModemDriver, pdu: str, length):
        return self.inbound.handle(driver.name, pdu, length)

    def _routed_report(self, driver: ModemDriver, pdu: str, length):
        # +CDS comes once, straight to us (never re-read from the SIM): no duplicate check
        return self.inbound.handle(driver.name, pdu, length, dedup=False)

    def _garbage(self, driver: ModemDriver, raw: bytes):
        self.store.store_inbound(self.reactor.seconds(), channel="sms", source=driver.name, raw=raw,
                                 state="garbage", note="unreadable bytes from the modem") \
            .addErrback(lambda f: log.failure("storing garbage from {modem} failed", f, modem=driver.name))

    def _modem_changed(self, driver: ModemDriver):
        if driver.healthy:
            self.reactor.callLater(0, self.dispatch)

    # --- helpers -------------------------------------------------------------------------------
    def _set_state(self, m: _Message, state: str, save: bool = True):
        if state == m.state:
            return
        m.state = state
        if save:
            self.store.save(self.reactor.seconds(), [("message", m.id, {"state": state})])
        log.info("message {mid} to {phone}: {state}", mid=m.id, phone=m.phone, state=state)
        for fn in self.observers:
            try:
                fn(m.id, state)
            except Exception:  # noqa: BLE001
                log.failure("message state observer failed")

    def _store_failed(self, f, m):
        log.failure("saving message {mid} failed", f, mid=m.id)

    CLAIM_POLL_SECONDS = 1.0
    CLAIM_AGAIN_SECONDS = 0.25
    DEPTH_EVERY = 1.0       # seconds between recounts of the outbox depth

    def _update_gauges(self):
        for n, s in self.slots.items():
            metrics.SMS_MODEM_QUEUE.labels(modem=n).set(s.in_hand)
        # The depth walks the whole queue: once a second at most, not on every message (a burst
        # of confirmations while the modems are down would cost the reactor O(n²)).
        if self._depth_call is None:
            self._depth_call = self.reactor.callLater(self.DEPTH_EVERY, self._count_depth)

    def _count_depth(self):
        self._depth_call = None
        metrics.SMS_QUEUE_DEPTH.set(sum(1 for i in self.queue if i in self.messages
                                        for s in self.messages[i].segments if s["state"] == "queued"))

    def summary(self) -> dict:
        out: dict = {}
        for m in self.messages.values():
            out[m.state] = out.get(m.state, 0) + 1
        return out


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)
