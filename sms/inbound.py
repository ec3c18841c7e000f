"""Inbound SMS: store raw, decode, reassemble multi-part replies, route status reports.

`handle(modem, pdu, length)` returns a Deferred that fires once the raw record is committed:
the modem driver deletes the message from the SIM only then.  Complete messages go to the
IInboundSmsSink (the feedback engine) after their own record is committed.  Parts wait in
`inbound_raw` (state "part") so that a restart resumes the reassembly; after
`reassembly_timeout` what arrived is passed on, marked incomplete, rather than lost.
"""
from __future__ import annotations

from datetime import datetime, timezone

from twisted.internet import defer
from twisted.logger import Logger

from gateway import metrics
from gateway.directory.phones import sender_e164
from gateway.interfaces import InboundSms
from gateway.logs import debug_enabled
from sms import pdu as pdumod

log = Logger()

MISSING = "…"


e164 = sender_e164


class InboundProcessor:
    def __init__(self, reactor, store, sink, *, reassembly_timeout: float = 300.0, region: str = "CN",
                 on_report=None):
        self.reactor = reactor
        self.store = store
        self.sink = sink
        self.reassembly_timeout = reassembly_timeout
        self.region = region
        self.on_report = on_report or (lambda modem, report, row, dedup:
                                       store.store_inbound(reactor.seconds(), dedup=dedup, **row))
        # (modem, sender, ref, total) → {seq: (raw_id, text, raw)}, first seen, timer
        self._parts: dict[tuple, dict] = {}
        self.delivered: list[InboundSms] = []

    @defer.inlineCallbacks
    def start(self):
        """Resume what a restart interrupted: replies committed but never judged go to the
        feedback engine now (it ignores one it has judged already), and reassemblies go on."""
        for r in (yield self.store.load_unjudged()):
            at = r.get("received_at")
            self._deliver(InboundSms(raw_id=r["id"], sender=r.get("sender") or "", text=r.get("text") or "",
                                     received_at=at if at is not None else _utc(self.reactor.seconds()),
                                     modem=r.get("source") or "?"))
        rows = yield self.store.load_parts()
        for r in rows:
            meta = r.get("meta") or {}
            key = (r.get("source"), r.get("sender"), meta.get("ref"), meta.get("total"))
            first = r["received_at"].timestamp() if r.get("received_at") else self.reactor.seconds()
            self._add_part(key, meta.get("seq"), r["id"], r.get("text") or "", r.get("raw") or b"", first)
        for key in list(self._parts):
            self._maybe_complete(key)

    @defer.inlineCallbacks
    def handle(self, modem: str, pdu_hex: str, length: int | None, dedup: bool = True):
        """`dedup`: the PDU was read from the SIM (it may be read again after a crash)."""
        now = self.reactor.seconds()
        raw = pdu_hex.encode("ascii", "replace") if isinstance(pdu_hex, str) else bytes(pdu_hex)
        try:
            msg = pdumod.decode(pdu_hex, length)
        except pdumod.PduError as e:
            log.warn("{modem}: inbound PDU refused: {why}", modem=modem, why=str(e))
            yield self.store.store_inbound(now, dedup=dedup, channel="sms", source=modem, raw=raw,
                                           state="garbage", note=str(e), meta={"length": length})
            return
        if isinstance(msg, pdumod.StatusReport):
            row = dict(channel="status_report", source=modem, sender=msg.recipient, raw=raw, state="parsed",
                       meta={"mr": msg.mr, "status": msg.status, "recipient": msg.recipient})
            yield self.on_report(modem, msg, row, dedup)      # raw row and settlement: one commit
            return
        sender = e164(msg.sender, self.region)
        if msg.concat is None:
            rid, dup = yield self.store.store_inbound(now, channel="sms", source=modem, sender=sender, raw=raw,
                                                      text=msg.text, state="new", note=msg.note or None,
                                                      meta={"encoding": msg.encoding})
            if dup is None:
                metrics.SMS_INBOUND.labels(modem=modem).inc()
                self._deliver(InboundSms(raw_id=rid, sender=sender, text=msg.text, received_at=_utc(now),
                                         modem=modem))
            return
        c = msg.concat
        meta = {"ref": c.ref, "total": c.total, "seq": c.seq, "ref_bits": c.ref_bits, "encoding": msg.encoding}
        rid, dup = yield self.store.store_inbound(now, channel="sms_part", source=modem, sender=sender, raw=raw,
                                                  text=msg.text, state="part", note=msg.note or None, meta=meta)
        if dup is not None:
            return
        key = (modem, sender, c.ref, c.total)
        self._add_part(key, c.seq, rid, msg.text, raw, now)
        self._maybe_complete(key)

    def _add_part(self, key, seq, rid, text, raw, first_seen):
        entry = self._parts.get(key)
        if entry is None:
            entry = self._parts[key] = {"parts": {}, "first": first_seen, "timer": None}
            delay = max(0.0, first_seen + self.reassembly_timeout - self.reactor.seconds())
            entry["timer"] = self.reactor.callLater(delay, self._expire, key)
        entry["parts"].setdefault(seq, (rid, text, raw))

    def _maybe_complete(self, key):
        entry = self._parts.get(key)
        if entry is not None and len(entry["parts"]) >= (key[3] or 0):
            self._complete(key, partial=False)

    def _expire(self, key):
        entry = self._parts.get(key)
        if entry is not None:
            entry["timer"] = None
            log.warn("{modem}: multi-part SMS from {sender} incomplete after {t:.0f}s ({got}/{total}); "
                     "passing on what arrived", modem=key[0], sender=key[1], t=self.reassembly_timeout,
                     got=len(entry["parts"]), total=key[3])
            self._complete(key, partial=True)

    @defer.inlineCallbacks
    def _complete(self, key, partial: bool):
        entry = self._parts.pop(key, None)
        if entry is None:
            return
        if entry["timer"] is not None and entry["timer"].active():
            entry["timer"].cancel()
        modem, sender, ref, total = key
        total = total or len(entry["parts"])
        texts, raws, ids, missing = [], [], [], []
        for seq in range(1, total + 1):
            if seq in entry["parts"]:
                rid, text, raw = entry["parts"][seq]
                texts.append(text)
                raws.append(raw)
                ids.append(rid)
            else:
                texts.append(MISSING)
                missing.append(seq)
        text = "".join(texts)
        now = self.reactor.seconds()
        try:
            rid, dup = yield self.store.store_inbound(
                now, channel="sms", source=modem, sender=sender, raw=b"\n".join(raws), text=text, state="new",
                note=(f"incomplete: parts {missing} of {total} missing" if missing else None),
                meta={"parts": ids, "ref": ref, "total": total, "missing": missing})
            for pid in ids:
                yield self.store.update_inbound(pid, state="parsed")
        except Exception:  # noqa: BLE001 - keep the parts; they are retried at the next start
            log.failure("{modem}: storing reassembled SMS from {sender} failed", modem=modem, sender=sender)
            return
        if dup is None:
            metrics.SMS_INBOUND.labels(modem=modem).inc()
            self._deliver(InboundSms(raw_id=rid, sender=sender, text=text, received_at=_utc(now), modem=modem))

    def _deliver(self, sms: InboundSms):
        self.delivered.append(sms)
        if self.sink is None:
            return
        if debug_enabled():     # the feedback engine's own line names the reply and its raw row
            log.debug("{modem}: SMS from {sender} (raw {rid}) to the feedback engine", modem=sms.modem,
                      sender=sms.sender, rid=sms.raw_id)
        try:
            d = defer.maybeDeferred(self.sink.sms_received, sms)
        except Exception:  # noqa: BLE001
            log.failure("feedback sink failed on raw {rid}", rid=sms.raw_id)
            return
        d.addErrback(lambda f: log.failure("feedback sink failed on raw {rid}", f, rid=sms.raw_id))

    def stop(self):
        for entry in self._parts.values():
            if entry["timer"] is not None and entry["timer"].active():
                entry["timer"].cancel()
        self._parts.clear()


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)
