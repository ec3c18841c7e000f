"""The driver of one modem: opening (and reopening) its port, initialisation, health, inbound.

States: offline (port closed or vanished) → initialising → ready; benched after repeated errors
(tried again after a cool-down).  The bank gives segments only to a `healthy` modem.

The SIM PIN is sent at most once per start: a SIM locks itself (and then needs the operator's PUK)
after three wrong PINs, and re-initialisations come every few minutes.  A refusal (+CME ERROR,
or the SIM asking for its PUK) benches the modem for good, with `bench_reason` "SIM PIN refused";
only an operator's `retry_pin` (`yihu modem pin PORT`) sends a PIN again.  A PIN the SIM has
accepted is entered again when the SIM asks again (the modem restarted): a correct entry cannot
use up a try.  The PIN never reaches a log line, an error message or an event.

Inbound: +CMTI → AT+CMGR → handed to `inbound(modem, pdu, length)` whose Deferred fires once the
raw message is committed → only then AT+CMGD.  At every (re)initialisation and every few probes
the whole SIM is listed (AT+CMGL=4), so a message whose +CMTI was lost is still read.  The PDU
of a +CMGR/+CMGL entry is the line shaped like the PDU its header announces, wherever it sits;
any other line in the answer is an unsolicited result (logged, counted by kind in
yihu_modem_unsolicited_total), never stored as a message nor a reason to delete one.
+CDSI: "<mem>",<index> is read from the storage it names (AT+CPMS="<mem>" for the read).
"""
from __future__ import annotations

from typing import Callable

from twisted.internet import defer, task
from twisted.logger import Logger

from gateway import metrics
from sms import atparse
from sms.at import AtError, AtTimeout, ATSession, CmeError, PortLost
from sms.config import SmsConfig

log = Logger()

OFFLINE, INITIALISING, READY, BENCHED = "offline", "initialising", "ready", "benched"
STATES = (OFFLINE, INITIALISING, READY, BENCHED)
PIN_REFUSED = "SIM PIN refused"


def sim_status(lines: list[str]) -> str:
    """"+CPIN: SIM PIN" → "SIM PIN" (27.007 §8.3); "" when the answer has no +CPIN line."""
    for ln in lines:
        if ln.upper().startswith("+CPIN:"):
            return ln.split(":", 1)[1].strip().strip('"').upper()
    return ""

# lines with which a modem announces it has (re)started, and those that follow them in a boot
BOOT_LINES = ("RDY", "^SYSSTART", "+PBREADY")
BOOT_TAIL_LINES = ("+CPIN: READY", "+CPIN: SIM PIN", "+CPIN: SIM PUK", "+CPIN: NOT READY", "SMS READY", "CALL READY", "+QIND: SMS DONE", "+QIND: PB DONE")
BOOT_SETTLE = 1.0       # seconds of quiet after the last boot line before initialising


class ModemDriver:
    def __init__(self, reactor, name: str, opener: Callable, config: SmsConfig, *,
                 inbound: Callable | None = None, status_report: Callable | None = None,
                 late_submit: Callable | None = None, state_changed: Callable | None = None,
                 garbage: Callable | None = None, alert: Callable | None = None):
        """`opener(protocol)` connects the protocol to the port and returns the transport, or
        raises when the port is absent (e.g. SerialPort(protocol, path, reactor, baudrate))."""
        self.reactor = reactor
        self.name = name
        self.opener = opener
        self.config = config
        self.inbound = inbound or (lambda modem, pdu, length: defer.succeed(None))
        self.status_report = status_report or (lambda modem, pdu, length: defer.succeed(None))
        self.late_submit = late_submit or (lambda modem, mr: None)
        self.state_changed = state_changed or (lambda modem: None)
        self.garbage = garbage or (lambda modem, raw: None)
        self.alert = alert or (lambda modem, reason: None)   # something an operator must act on
        self.state = OFFLINE
        self.session: ATSession | None = None
        self.transport = None
        self.signal_dbm: int | None = None
        self.registration: atparse.Registration | None = None
        self.errors = 0
        self.seconds_per_segment = config.expected_segment_seconds
        self.cnmi: tuple | None = None
        self.storage: tuple | None = None
        self.report_storage: str | None = None
        self._generation = 0
        self._reopen_call = None
        self._reopen_delay = config.reopen_interval
        self._bench_call = None
        self._probe = task.LoopingCall(self._probe_tick)
        self._probe.clock = reactor
        self._probe_count = 0
        self._reading: set[tuple[str, int]] = set()     # (storage, index) being read
        self._sim_lock = defer.DeferredLock()             # a storage switch spans several commands
        self._boot_call = None
        self._read_mem: str | None = None                 # the read storage, when not chosen by us
        self._stopped = True
        self._quiet_call = None
        self.bench_reason: str | None = None    # why it is benched, for /health and the board
        self._pin: str | None = config.sim_pin or None
        self._pin_sent = False                  # this start (or since the operator's retry)
        self._pin_accepted = False
        self._pin_alerted: str | None = None    # the refusal already reported

    # --- lifecycle -----------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return (self.state == READY and self.session is not None and self.session.connected
                and (self.registration is None or self.registration.registered)
                and self._quiet_call is None)

    def quarantine(self, seconds: float):
        """No new submissions for a while: an unanswered AT+CMGS may still answer late, and its
        "+CMGS: <mr>" must not be taken for the answer to the next segment."""
        self.end_quarantine(notify=False)
        self._quiet_call = self.reactor.callLater(seconds, self.end_quarantine)

    def end_quarantine(self, notify: bool = True):
        c, self._quiet_call = self._quiet_call, None
        if c is not None and c.active():
            c.cancel()
        if notify and c is not None:
            self.state_changed(self)

    def start(self):
        self._stopped = False
        self._open()
        if not self._probe.running and self.config.probe_interval > 0:
            self._probe.start(self.config.probe_interval, now=False)

    def stop(self):
        self._stopped = True
        if self._probe.running:
            self._probe.stop()
        for c in (self._reopen_call, self._bench_call, self._quiet_call, self._boot_call):
            if c is not None and c.active():
                c.cancel()
        self._set_state(OFFLINE)
        t, self.transport = self.transport, None
        if t is not None:
            try:
                t.loseConnection()
            except Exception:  # noqa: BLE001
                pass

    @property
    def pin_refused(self) -> bool:
        return self.bench_reason is not None and self.bench_reason.startswith(PIN_REFUSED)

    def describe(self) -> str:
        """The state as an operator reads it: "benched (SIM PIN refused: ...)"."""
        return f"{self.state} ({self.bench_reason})" if self.state == BENCHED and self.bench_reason else self.state

    def _set_state(self, state: str):
        if state == self.state:
            return
        if state != BENCHED:
            self.bench_reason = None
        log.info("{modem}: {old} → {new}", modem=self.name, old=self.state, new=state)
        self.state = state
        for s in STATES:
            metrics.SMS_MODEM_STATE.labels(modem=self.name, state=s).set(1 if s == state else 0)
        self.state_changed(self)

    def _open(self):
        self._reopen_call = None
        if self._stopped:
            return
        self._generation += 1
        gen = self._generation
        session = ATSession(self.reactor, self.name,
                            on_unsolicited=lambda line, pdu: self._urc(gen, line, pdu),
                            on_garbage=lambda raw: self.garbage(self, raw),
                            on_late_submit=lambda mr: self.late_submit(self, mr),
                            on_echo=lambda line: self._echo(gen, line),
                            on_lost=lambda reason: self._lost(gen, reason))
        try:
            self.transport = self.opener(session)
        except Exception as e:  # noqa: BLE001 - absent device, permission, busy: try again later
            log.info("{modem}: cannot open port ({err}); retrying in {delay:.1f}s", modem=self.name,
                     err=f"{e.__class__.__name__}: {e}", delay=self._reopen_delay)
            self._schedule_reopen()
            return
        self.session = session
        self._sim_lock = defer.DeferredLock()             # the old port's holders release the old lock
        self._reopen_delay = self.config.reopen_interval
        self._initialise(gen)

    def _schedule_reopen(self):
        if self._stopped or (self._reopen_call is not None and self._reopen_call.active()):
            return
        self._reopen_call = self.reactor.callLater(self._reopen_delay, self._open)
        self._reopen_delay = min(self._reopen_delay * 2, self.config.reopen_max_interval)

    def _lost(self, gen: int, reason):
        if gen != self._generation:
            return
        log.warn("{modem}: port lost", modem=self.name)
        self.session = None
        self.transport = None
        self._set_state(OFFLINE)
        self._schedule_reopen()

    def reopen(self):
        """Close and open the port again (after a hang that no command clears)."""
        self._generation += 1
        t, self.transport, self.session = self.transport, None, None
        self._set_state(OFFLINE)
        if t is not None:
            try:
                t.loseConnection()
            except Exception:  # noqa: BLE001
                pass
        self._schedule_reopen()

    def _echo(self, gen: int, line: str):
        # Echo we turned off is back: the modem restarted and lost its settings.
        if gen == self._generation and self.state == READY:
            log.warn("{modem}: echo is on again ({line!r}): modem restarted, initialising", modem=self.name,
                     line=line)
            self._initialise(gen)

    # --- initialisation ------------------------------------------------------------------------
    @defer.inlineCallbacks
    def _initialise(self, gen: int):
        self._set_state(INITIALISING)
        s = self.session
        t = self.config.command_timeout
        try:
            # A previous life (ours or the modem's) may have left a half-typed SMS prompt or answers
            # in flight: ESC, let stale answers drain, then check the modem answers at all.
            for attempt in range(3):
                self.transport.write(b"\x1b")
                yield s.quiet(0.3)
                try:
                    yield s.command("AT", timeout=min(t, 3.0))
                    break
                except AtTimeout:
                    if attempt == 2:
                        raise
            yield s.quiet(0.1)
            yield s.command("ATE0", timeout=t)
            yield s.command("AT+CMEE=1", timeout=t)
            if not (yield self._unlock_sim(s, gen)):
                return
            yield s.command("AT+CMGF=0", timeout=t)
            try:
                ranges = atparse.parse_cnmi_ranges((yield s.command("AT+CNMI=?", timeout=t)))
            except AtError:
                ranges = None
            self.cnmi = None
            for choice in atparse.cnmi_fallbacks(atparse.choose_cnmi(ranges)):
                try:
                    yield s.command("AT+CNMI=" + ",".join(map(str, choice)), timeout=t)
                    self.cnmi = choice
                    break
                except AtError:
                    continue
            if self.cnmi is None:
                log.warn("{modem}: no AT+CNMI setting accepted; inbound SMS found by polling only",
                         modem=self.name)
            try:
                offered = atparse.parse_cpms_ranges((yield s.command("AT+CPMS=?", timeout=t)))
                # status reports stored apart ("SR", read-only storage): swept too
                self.report_storage = "SR" if offered and "SR" in offered[0] else None
                storage = atparse.choose_cpms(offered)
                if storage:
                    yield s.command("AT+CPMS=" + ",".join(f'"{m}"' for m in storage), timeout=t)
                    self.storage = storage
            except AtError as e:
                log.info("{modem}: keeping default SMS storage ({err})", modem=self.name, err=str(e))
            yield self._health(s)
        except (AtError, AtTimeout, PortLost) as e:
            if gen != self._generation:
                return
            log.warn("{modem}: initialisation failed: {err}", modem=self.name, err=str(e))
            self.note_error()             # repeated failures bench it for a cool-down
            if self.state != BENCHED:
                self.reopen()
            return
        if gen != self._generation:
            return
        self.errors = 0
        self._set_state(READY)
        self.sweep()

    @defer.inlineCallbacks
    def _unlock_sim(self, s: ATSession, gen: int):
        """True when the SIM is ready; False when the modem is benched for its PIN."""
        t = self.config.command_timeout
        answer = sim_status((yield s.command("AT+CPIN?", timeout=t)))
        if answer == "READY":
            self._pin_accepted = self._pin_accepted or self._pin_sent   # its answer may have been lost
            return True
        if answer == "SIM PUK":
            self._refuse_pin(gen, "the SIM asks for its PUK")
            return False
        if answer != "SIM PIN":
            raise AtError("AT+CPIN?", f"SIM not ready: {answer or 'no +CPIN answer'}")
        if not self._pin:
            raise AtError("AT+CPIN?", "the SIM asks for a PIN and sms.sim_pin is not set")
        if self._pin_sent and not self._pin_accepted:
            self._refuse_pin(gen, "the SIM still asks for it")
            return False
        self._pin_sent = True                # before it goes out: a lost answer may still cost a try
        try:
            yield s.command(f"AT+CPIN={self._pin}", timeout=t, secret=True)
        except (AtError, CmeError) as e:
            self._refuse_pin(gen, e.final)
            return False
        self._pin_accepted = True
        log.info("{modem}: SIM PIN accepted", modem=self.name)
        return True

    def _refuse_pin(self, gen: int, why: str):
        if gen != self._generation:
            return
        if self._pin_alerted:                # already told (the port was reopened since)
            self._bench(self._pin_alerted, cooldown=False)
            return
        reason = self._pin_alerted = f"{PIN_REFUSED}: {why}"
        self._bench(reason, cooldown=False)
        log.error("{modem}: {reason}; not sent again until an operator runs `yihu modem pin {modem}`",
                  modem=self.name, reason=reason)
        self.alert(self, reason)

    def retry_pin(self, pin: str | None = None) -> bool:
        """The operator's deliberate retry: one more PIN (this one, or the configured one) and a
        fresh initialisation.  False when there is no PIN to send."""
        if pin:
            self._pin = pin
        if not self._pin:
            return False
        self._pin_sent = self._pin_accepted = False
        self._pin_alerted = None
        if self._bench_call is not None and self._bench_call.active():
            self._bench_call.cancel()
        self.errors = 0
        log.info("{modem}: operator retries the SIM PIN", modem=self.name)
        self.reopen()
        return True

    # --- health --------------------------------------------------------------------------------
    @defer.inlineCallbacks
    def _health(self, s: ATSession):
        t = self.config.command_timeout
        csq = yield s.command("AT+CSQ", timeout=t)
        for ln in csq:
            if not ln.upper().startswith("+CSQ"):
                continue              # an unsolicited line inside the answer (DST: 0, ...)
            dbm = atparse.csq_to_dbm(ln)
            self.signal_dbm = dbm
            if dbm is not None:
                metrics.SMS_MODEM_SIGNAL_DBM.labels(modem=self.name).set(dbm)
        reg = atparse.parse_creg((yield s.command("AT+CREG?", timeout=t)))
        if reg is not None:
            if self.registration is None or reg.registered != self.registration.registered:
                log.info("{modem}: network registration {reg}", modem=self.name, reg=reg.name)
            self.registration = reg

    def _probe_tick(self):
        if self.state != READY or self.session is None:
            return
        gen = self._generation
        self._probe_count += 1
        d = self._health(self.session)

        def ok(_):
            self.state_changed(self)       # registration may have changed
            n = self.config.sim_sweep_probes
            if n > 0 and self._probe_count % n == 0:
                self.sweep()

        def bad(f):
            if gen != self._generation:
                return
            log.warn("{modem}: health probe failed: {err}", modem=self.name, err=f.getErrorMessage())
            self.note_error()
        d.addCallbacks(ok, bad)

    def note_error(self):
        """A failed command; repeated errors bench the modem for a cool-down."""
        self.errors += 1
        if self.errors >= self.config.errors_to_bench and self.state != BENCHED:
            self._bench()

    def note_success(self, seconds: float | None = None):
        self.errors = 0
        if seconds is not None and seconds > 0:
            self.seconds_per_segment = 0.7 * self.seconds_per_segment + 0.3 * seconds

    def bench(self, why: str):
        log.warn("{modem}: benched: {why}", modem=self.name, why=why)
        self._bench(why)

    def _bench(self, why: str | None = None, cooldown: bool = True):
        """Benched for a cool-down, or (cooldown=False) until an operator acts."""
        self.bench_reason = why or "repeated errors"
        self._set_state(BENCHED)
        if self._bench_call is not None and self._bench_call.active():
            self._bench_call.cancel()
        self._bench_call = self.reactor.callLater(self.config.bench_cooldown, self._unbench) if cooldown else None

    def _unbench(self):
        self._bench_call = None
        if self._stopped:
            return
        self.errors = 0
        log.info("{modem}: cool-down over, trying again", modem=self.name)
        # a fresh port, as after unplugging: clears a wedged driver or a half-typed command
        self.reopen()

    def check(self):
        """After a timeout: is the modem still answering?  If not, reopen the port."""
        s, gen = self.session, self._generation
        if s is None:
            return

        def failed(f):
            if gen == self._generation and f.check(AtTimeout):
                log.warn("{modem}: not answering after a timeout; reopening the port", modem=self.name)
                self.note_error()
                if self.state != BENCHED:
                    self.reopen()
        s.command("AT", timeout=min(self.config.command_timeout, 5.0)).addErrback(failed)

    # --- sending -------------------------------------------------------------------------------
    def submit(self, tpdu_length: int, pdu_hex: str) -> defer.Deferred:
        if self.session is None:
            return defer.fail(PortLost(f"{self.name}: offline"))
        return self.session.submit(tpdu_length, pdu_hex, prompt_timeout=self.config.prompt_timeout,
                                   timeout=self.config.submit_timeout)

    # --- inbound -------------------------------------------------------------------------------
    def _urc(self, gen: int, line: str, pdu: str | None):
        u = line.upper()
        kind = atparse.urc_kind(line)
        note_unsolicited(kind)
        if u.startswith("+CMTI:") or u.startswith("+CDSI:"):
            where = atparse.parse_cmti("+CMTI:" + line.split(":", 1)[1])
            if where is not None:
                # +CDSI names the storage of the report (often "SR"): read it there
                self._read_stored(where[1], where[0])
        elif u.startswith("+CDS:"):
            try:
                length = int(line.split(":", 1)[1].strip().split(",")[-1])
            except ValueError:
                length = None
            self.status_report(self, pdu or "", length).addErrback(
                lambda f: log.failure("{modem}: status report not stored", f, modem=self.name))
        elif u.startswith("+CMT:"):
            # delivered straight to us (mt=2) — not acknowledged with CNMA; kept as inbound anyway
            try:
                length = int(line.split(",")[-1])
            except ValueError:
                length = None
            self.inbound(self, pdu or "", length).addErrback(
                lambda f: log.failure("{modem}: inbound SMS not stored", f, modem=self.name))
        elif u in BOOT_LINES or u.startswith("+CFUN: 1"):
            if gen == self._generation and self.state in (READY, INITIALISING):
                log.warn("{modem}: modem announced a restart ({line})", modem=self.name, line=line)
                self._boot_settling(gen)
        elif u in BOOT_TAIL_LINES:
            # the rest of a boot sequence (+CPIN: READY, SMS Ready): initialise once it is quiet
            if self._boot_call is not None and self._boot_call.active():
                self._boot_settling(gen)
        elif u.startswith("+CREG:"):
            reg = atparse.parse_creg([line])
            if reg is not None:
                self.registration = reg
                self.state_changed(self)
        else:
            log.info("{modem}: unsolicited {kind} line ignored: {line!r}", modem=self.name, kind=kind,
                     line=line[:200])

    def _boot_settling(self, gen: int):
        """A boot announces itself in several lines (RDY, +CFUN: 1, +CPIN: READY, SMS Ready); the
        modem is initialised once, when they have stopped coming, not once per line."""
        if self._boot_call is not None and self._boot_call.active():
            self._boot_call.cancel()

        def settled():
            self._boot_call = None
            if gen == self._generation and not self._stopped and self.state in (READY, INITIALISING):
                self._initialise(gen)
        self._boot_call = self.reactor.callLater(BOOT_SETTLE, settled)

    def _stray(self, lines: list[str], command: str):
        """Lines inside a +CMGR/+CMGL answer that are neither a header nor its PDU."""
        for ln in lines:
            kind = atparse.urc_kind(ln)
            note_unsolicited(kind)
            log.info("{modem}: unsolicited {kind} line inside the answer to {command}: {line!r}",
                     modem=self.name, kind=kind, command=command, line=ln[:200])

    def _read_mem_name(self) -> str:
        return (self.storage[0] if self.storage else self._read_mem) or "SM"

    @defer.inlineCallbacks
    def _in_storage(self, s: ATSession, mem: str | None, work: Callable):
        """Run work() with `mem` selected for reading and deleting (AT+CPMS="<mem>"), then select
        the usual storage again.  Under the lock: a switch spans several commands, and a +CMTI
        read in between would read the wrong storage."""
        lock = self._sim_lock
        yield lock.acquire()
        restore = None
        try:
            restore = yield self._select_read_storage(s, mem)
            return (yield work())
        finally:
            if restore is not None and s.connected:
                # the next command is queued after this one, so it is not awaited
                s.command(f'AT+CPMS="{restore}"', timeout=self.config.command_timeout).addErrback(
                    lambda f: log.warn("{modem}: could not select storage {mem} again: {err}",
                                       modem=self.name, mem=restore, err=f.getErrorMessage()))
            lock.release()

    @defer.inlineCallbacks
    def _read_stored(self, index: int, mem: str | None = None):
        key = ((mem or self._read_mem_name()).upper(), index)
        if key in self._reading or self.session is None:
            return
        self._reading.add(key)
        s = self.session
        try:
            yield self._in_storage(s, mem, lambda: self._read_one(s, index, mem))
        except (AtError, AtTimeout, PortLost) as e:
            log.warn("{modem}: reading {mem} index {index} failed: {err} (kept there)", modem=self.name,
                     mem=mem or "SIM", index=index, err=str(e))
        finally:
            self._reading.discard(key)

    @defer.inlineCallbacks
    def _read_one(self, s: ATSession, index: int, mem: str | None):
        command = f"AT+CMGR={index}"
        lines = yield s.command(command, timeout=self.config.command_timeout)
        entries, others = atparse.stored_messages(lines, "+CMGR")
        self._stray(others, command)
        if not entries or entries[0][1] is None:
            log.warn("{modem}: {command} ({mem}) gave no PDU: {lines!r} (kept there)", modem=self.name,
                     command=command, mem=mem or "SIM", lines=lines)
            return
        header, pdu = entries[0]
        yield self._take(s, index, pdu, header.length)

    @defer.inlineCallbacks
    def _select_read_storage(self, s: ATSession, mem: str | None):
        """Select `mem` for reading and deleting (AT+CPMS=<mem1>); returns the storage to select
        again afterwards, or None when no switch was needed."""
        if not mem:
            return None
        current = self.storage[0] if self.storage else self._read_mem
        if current is None:
            try:
                current = atparse.parse_cpms_current((yield s.command("AT+CPMS?",
                                                                      timeout=self.config.command_timeout)))
            except AtError as e:
                log.info("{modem}: storage in use unknown ({err}); reading {mem} where we are", modem=self.name,
                         err=str(e), mem=mem)
                return None
            self._read_mem = current
        if current is None or current.upper() == mem.upper():
            return None
        yield s.command(f'AT+CPMS="{mem}"', timeout=self.config.command_timeout)
        return current

    @defer.inlineCallbacks
    def _take(self, s: ATSession, index: int, pdu: str, length):
        """Commit, then delete from the SIM: durable before acknowledged.  Status reports and
        messages alike: the processor tells them apart by the PDU's own type."""
        yield self.inbound(self, pdu, length)
        yield s.command(f"AT+CMGD={index}", timeout=self.config.command_timeout)

    @defer.inlineCallbacks
    def sweep(self):
        """Read everything left on the SIM (a lost +CMTI, messages stored while we were away), and
        in the status-report storage ("SR") when the modem has one (a lost +CDSI)."""
        s = self.session
        if s is None or self.state != READY:
            return
        for mem in [None] + ([self.report_storage] if self.report_storage else []):
            try:
                yield self._in_storage(s, mem, lambda mem=mem: self._sweep_one(s, mem))
            except (AtError, AtTimeout, PortLost) as e:
                if not isinstance(e, CmeError):
                    log.info("{modem}: listing {mem} failed: {err}", modem=self.name, mem=mem or "SIM", err=str(e))
                return

    @defer.inlineCallbacks
    def _sweep_one(self, s: ATSession, mem: str | None):
        where = (mem or self._read_mem_name()).upper()
        lines = yield s.command("AT+CMGL=4", timeout=self.config.command_timeout)
        entries, others = atparse.stored_messages(lines, "+CMGL")
        self._stray(others, f"AT+CMGL=4 ({where})")
        for h, pdu in entries:
            key = (where, h.index)
            if h.index is None or key in self._reading:
                continue
            if pdu is None:
                log.warn("{modem}: {mem} index {index} listed without a PDU; kept there", modem=self.name, mem=where,
                         index=h.index)
                continue
            self._reading.add(key)
            try:
                yield self._take(s, h.index, pdu, h.length)
            except (AtError, AtTimeout, PortLost) as e:
                log.warn("{modem}: {mem} index {index}: {err}", modem=self.name, mem=where, index=h.index, err=str(e))
            finally:
                self._reading.discard(key)


_kinds_seen: set[str] = set()
MAX_KINDS = 64          # labels come from untrusted bytes: bounded, the rest count as "other"


def note_unsolicited(kind: str):
    if kind not in _kinds_seen:
        if len(_kinds_seen) >= MAX_KINDS:
            kind = "other"
        else:
            _kinds_seen.add(kind)
    metrics.MODEM_UNSOLICITED.labels(kind=kind).inc()
