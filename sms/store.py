"""Persistence of the outbox and of inbound SMS: SQL (the product) and memory (fast trials).

Both stores offer the same Deferred-returning methods; each call is one transaction and its
Deferred fires after COMMIT ("durable before acknowledged").  Records cross as plain dicts.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from sqlalchemy import and_, func, insert, or_, select, update
from twisted.internet import defer
from twisted.python.failure import Failure

from gateway.cluster.claims import Claimer, skip_locked
from gateway.storage import schema as t
from gateway.storage.bulk import among, bulk_insert, draw_ids, insert_returning_ids, together
from gateway.storage.pool import DatabaseDeadline
from sms import encoding, policy

OPEN_MESSAGE_STATES = ("queued", "sending")
SETTLEABLE = ("sent", "unknown", "submitting")


def message_state(seg_states: list[str]) -> str:
    """A message's state from its segments' (superseded ones excluded)."""
    s = [x for x in seg_states if x != "superseded"]
    if any(x == "failed" for x in s):
        return "failed"
    if "cancelled" in s and not any(x in ("queued", "submitting", "unknown") for x in s):
        return "cancelled"          # its order was closed before the rest went out
    if s and all(x == "delivered" for x in s):
        return "delivered"
    if s and all(x in ("sent", "delivered") for x in s):
        return "sent"
    if any(x == "lost" for x in s):
        return "unknown"        # the unknown-outcome policy gave up on a segment
    if all(x == "queued" for x in s):
        return "queued"
    return "sending"


def _delivery_follows(conn, segment_where, now: datetime) -> None:
    """The order delivery an SMS carries follows its segments, in the same transaction: `sent`
    once a modem accepted a segment (before that it stays `queued`), `failed` when one failed."""
    seg, msg, dl = t.sms_segments, t.sms_messages, t.deliveries
    row = conn.execute(select(msg.c.id, msg.c.delivery_id).join(seg, seg.c.message_id == msg.c.id)
                       .where(segment_where).limit(1)).first()
    if row is None or row.delivery_id is None:
        return
    states = set(conn.execute(select(seg.c.state).where(seg.c.message_id == row.id)).scalars())
    if "failed" in states:
        new, before = "failed", ("queued", "handing", "sent")
    elif states & {"sent", "delivered"}:
        new, before = "sent", ("queued", "handing")
    else:
        return
    conn.execute(update(dl).where(dl.c.id == row.delivery_id, dl.c.state.in_(before))
                 .values(state=new, updated_at=now, detail=f"sms {row.id}: {new} by a modem"))


def same_phone(a: str, b: str) -> bool:
    da = "".join(c for c in a or "" if c.isdigit())
    db = "".join(c for c in b or "" if c.isdigit())
    n = min(len(da), len(db), 9)
    return n >= 5 and da[-n:] == db[-n:]


def build_segments(message_id: int, phone: str, text: str, ref_bits: int, status_report: bool,
                   validity_minutes: int):
    ref = message_id % (256 if ref_bits == 8 else 65536)
    enc, pdus = encoding.encode_submit(phone, text, ref=ref, ref_bits=ref_bits, status_report=status_report,
                                       validity_minutes=validity_minutes)
    return enc, ref, pdus


def _now(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def add_message_tx(conn, now: datetime, phone: str, text: str, purpose: str, order_id, delivery_id, *,
                   ref_bits: int = 8, status_report: bool = True, validity_minutes: int = 1440) -> dict:
    """The message and its segments, `queued`, inside the caller's transaction (the outbox row of
    the state change that causes it).  Refuses text that cannot be sent before writing anything."""
    encoding.split_text(text, ref_bits=ref_bits)
    return SqlStore._add(conn, now, phone, text, purpose, order_id, delivery_id, ref_bits, status_report,
                         validity_minutes)


def add_messages_tx(conn, items: list[dict], *, ref_bits: int = 8, status_report: bool = True,
                    validity_minutes: int = 1440) -> list[dict]:
    """Several messages at once, as add_message_tx each (items: now, phone, text, purpose,
    order_id, delivery_id), in the caller's transaction: the one-part ones (most confirmations)
    in two statements for all of them, not two each (a batch of answers stages one per answer).
    Refuses text that cannot be sent before writing anything.  Records in the items' order."""
    for it in items:
        encoding.split_text(it["text"], ref_bits=ref_bits)
    out: list = [None] * len(items)
    single = []
    for i, it in enumerate(items):
        enc, _ref, pdus = build_segments(0, it["phone"], it["text"], ref_bits, status_report, validity_minutes)
        if len(pdus) == 1:
            single.append((i, enc, pdus[0]))
        else:           # the concatenation reference comes from the row's id: one at a time
            out[i] = SqlStore._add(conn, it["now"], it["phone"], it["text"], it["purpose"], it.get("order_id"),
                                   it.get("delivery_id"), ref_bits, status_report, validity_minutes)
    if single:
        from gateway.cluster.wakeups import notify_tx
        notify_tx(conn, "sms")
        m, s = t.sms_messages, t.sms_segments
        messages = [dict(phone=items[i]["phone"], text=items[i]["text"], purpose=items[i]["purpose"],
                         order_id=items[i].get("order_id"), delivery_id=items[i].get("delivery_id"), state="queued",
                         created_at=items[i]["now"], updated_at=items[i]["now"], encoding=enc, concat_ref=None,
                         parts=1) for i, enc, _p in single]

        def segments(mids):
            return [dict(message_id=mid, seq=p.seq, pdu=p.pdu_hex, tpdu_length=p.tpdu_length, state="queued",
                         attempts=0, outcome_unknown=0, updated_at=items[i]["now"])
                    for mid, (i, _enc, p) in zip(mids, single)]
        if conn.dialect.name == "postgresql":
            # Both tables' ids in one round trip; the rows then go together (bulk.together).
            mids, sids = draw_ids(conn, [(m, len(single)), (s, len(single))])
            with together(conn):
                bulk_insert(conn, m, [{**r, "id": i} for r, i in zip(messages, mids)])
                bulk_insert(conn, s, [{**r, "id": i} for r, i in zip(segments(mids), sids)])
        else:
            mids = insert_returning_ids(conn, m, messages)
            sids = insert_returning_ids(conn, s, segments(mids))
        for mid, sid, (i, _enc, p) in zip(mids, sids, single):
            it = items[i]
            out[i] = dict(id=mid, phone=it["phone"], purpose=it["purpose"], state="queued", modem=None, parts=1,
                          segments=[dict(id=sid, seq=p.seq, pdu=p.pdu_hex, tpdu_length=p.tpdu_length,
                                         state="queued", modem=None, mr=None, attempts=0, outcome_unknown=0)])
    return out


class _Lane:
    """One serial writer of a SqlStore: units of work handed to it while its transaction is in
    flight go together into the next one (urgent ones first, at most store.max_batch of them);
    each caller is told only after that COMMIT."""

    def __init__(self, store: "SqlStore", name: str, max_batch: int | None = None):
        self.store, self.name = store, name
        self.max_batch = max_batch          # None: the store's
        self.batch: list = []
        self.lazy: list = []
        self.flushing = False
        self.idle_waiters: list = []

    def unit(self, fn, args, urgent: bool):
        d = defer.Deferred()
        (self.batch if urgent else self.lazy).append((fn, args, d))
        if not self.flushing:
            self.flush()
        return d

    def flush(self):
        store = self.store
        if self.batch:
            # bounded, so that a burst of new messages does not hold back the modems' first commits
            n = self.max_batch or store.max_batch
            batch, self.batch = self.batch[:n], self.batch[n:]
        else:
            batch, self.lazy = self.lazy, []
        self.flushing = True

        def finished(result):
            if isinstance(result, Failure) and result.check(DatabaseDeadline):
                # Rolled back (or never run): the whole batch is tried again, first in line; its
                # callers are told only once it is committed.  The pool logged the deadline.
                self.batch[:0] = batch
                store.db.reactor.callLater(store.retry_delay, self.flush)
                return
            for i, (_fn, _args, d) in enumerate(batch):
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(result[i])
            self.flushing = False            # after the callbacks: their next writes batch together
            if self.batch or self.lazy:
                self.flush()
            else:
                waiters, self.idle_waiters = self.idle_waiters, []
                for w in waiters:
                    w.callback(None)
        items = [(fn, args) for fn, args, _d in batch]
        if store.clock is None:
            d = store.db.run(store._run_batch, items)
        else:
            from gateway.storage.retry import run_until_committed
            d = run_until_committed(store.db, store.clock, "sms", f"{len(items)} {self.name} write(s)",
                                    store._run_batch, items, alarm_after=store.alarm_after)
        d.addBoth(finished)

    def idle(self):
        if not self.flushing and not self.batch and not self.lazy:
            return defer.succeed(None)
        d = defer.Deferred()
        self.idle_waiters.append(d)
        return d


class SqlStore:
    def __init__(self, db, clock=None, *, alarm_after: float = 30.0):
        """clock: with it, every write is retried through a database fault until it commits
        (gateway/storage/retry.py); without it (unit tests) a fault fails the write."""
        self.db = db
        self.clock = clock
        self.alarm_after = alarm_after
        # Two writers, each a serial group commit: the outbox's (segment states, new messages,
        # status reports) and the inbound records' (a commander's reply is not kept waiting
        # behind the modems' segment writes, nor they behind a burst of replies).
        self._out = _Lane(self, "outbox")
        # A burst of replies: a few hundred records a transaction (two statements for all of them).
        self._in = _Lane(self, "inbound", max_batch=500)
        self.max_batch = 16
        self.retry_delay = 1.0        # after a database deadline

    # --- outbox --------------------------------------------------------------------------------
    def add_message(self, now: float, phone: str, text: str, purpose: str, order_id, delivery_id, *,
                    ref_bits: int = 8, status_report: bool = True, validity_minutes: int = 1440,
                    owner: str | None = None):
        encoding.split_text(text, ref_bits=ref_bits)        # refuse before touching the database
        return self._unit(self._add, _now(now), phone, text, purpose, order_id, delivery_id, ref_bits,
                          status_report, validity_minutes, owner)

    @staticmethod
    def _add(conn, now, phone, text, purpose, order_id, delivery_id, ref_bits, status_report, validity,
             owner=None):
        # One part (most confirmations) carries no concatenation reference: the whole row in one
        # statement.  Several parts: the reference comes from the row's id, known after the insert.
        enc, ref, pdus = build_segments(0, phone, text, ref_bits, status_report, validity)
        from gateway.cluster.wakeups import notify_tx
        notify_tx(conn, "sms")
        single = len(pdus) == 1
        mid = conn.execute(insert(t.sms_messages).values(
            phone=phone, text=text, purpose=purpose, order_id=order_id, delivery_id=delivery_id,
            state="queued", created_at=now, updated_at=now, owner_node=owner,
            **(dict(encoding=enc, concat_ref=None, parts=1) if single else {}))).inserted_primary_key[0]
        if not single:
            enc, ref, pdus = build_segments(mid, phone, text, ref_bits, status_report, validity)
            conn.execute(update(t.sms_messages).where(t.sms_messages.c.id == mid).values(
                encoding=enc, concat_ref=ref, parts=len(pdus)))
        segs = []
        for p in pdus:
            sid = conn.execute(insert(t.sms_segments).values(
                message_id=mid, seq=p.seq, pdu=p.pdu_hex, tpdu_length=p.tpdu_length, state="queued",
                attempts=0, outcome_unknown=0, updated_at=now)).inserted_primary_key[0]
            segs.append(dict(id=sid, seq=p.seq, pdu=p.pdu_hex, tpdu_length=p.tpdu_length, state="queued",
                             modem=None, mr=None, attempts=0, outcome_unknown=0))
        return dict(id=mid, phone=phone, purpose=purpose, state="queued", modem=None, parts=len(pdus),
                    segments=segs)

    def save(self, now: float, changes: list[tuple[str, int, dict]]):
        """Apply [("segment"|"message", id, {column: value})]; fires after COMMIT."""
        return self._unit(self._save, _now(now), changes)

    # Group commit: every write of the bank made while a transaction is in flight goes into the
    # next one together (one fsync for all the modems waiting); each caller is told only after its
    # own commit.  In the outbox's writer, segment states and new messages (the modems wait on
    # them) go first; status reports go when no segment write is waiting.
    def _unit(self, fn, *args, urgent: bool = True, inbound: bool = False):
        return (self._in if inbound else self._out).unit(fn, args, urgent)

    def idle(self):
        """Deferred fired once every write handed to the store has committed (or failed)."""
        return defer.gatherResults([self._out.idle(), self._in.idle()]).addCallback(lambda _: None)

    @staticmethod
    def _run_batch(conn, items):
        out = []
        i = 0
        while i < len(items):
            fn, args = items[i]
            if fn is SqlStore._store_inbound:
                # A run of inbound records: checked and inserted together (a burst of replies).
                j = i
                while j < len(items) and items[j][0] is SqlStore._store_inbound:
                    j += 1
                out += SqlStore._store_inbound_many(conn, [a for _fn, a in items[i:j]])
                i = j
            else:
                out.append(fn(conn, *args))
                i += 1
        return out

    @staticmethod
    def _save(conn, now, changes):
        """Returns the ids of segments refused "submitting": cancelled meanwhile (order closed)."""
        refused = []
        for kind, rid, fields in changes:
            table = t.sms_segments if kind == "segment" else t.sms_messages
            if kind == "message" and "state" in fields:
                # from the segments as committed (a status report may have settled one meanwhile)
                states = conn.execute(select(t.sms_segments.c.state)
                                      .where(t.sms_segments.c.message_id == rid)).scalars().all()
                fields = dict(fields, state=message_state(states))
            q = update(table).where(table.c.id == rid)
            if kind == "segment" and fields.get("state") == "sent":
                # a status report may have settled it first: "delivered"/"failed" stay
                q = q.where(table.c.state.notin_(("delivered", "failed")))
            if kind == "segment":
                q = q.where(table.c.state != "cancelled")      # closing the order has the last word
            if conn.execute(q.values(updated_at=now, **fields)).rowcount == 0 and kind == "segment" \
                    and fields.get("state") == "submitting":
                refused.append(rid)
            if kind == "segment" and fields.get("state") in ("sent", "failed"):
                _delivery_follows(conn, t.sms_segments.c.id == rid, now)
        return refused

    def load_open(self, node: str | None = None):
        """The open messages (with `node`: only those this node owns, which a start resumes)."""
        return self.db.run(self._load_open, node)

    @classmethod
    def _load_open(cls, conn, node=None):
        m = t.sms_messages
        q = select(m).where(m.c.state.in_(OPEN_MESSAGE_STATES))
        if node is not None:
            q = q.where(m.c.owner_node == node)
        return cls._with_segments(conn, conn.execute(q.order_by(m.c.id)).mappings())

    def claim(self, now: float, claimer: Claimer, limit: int, exclude=()):
        """Up to `limit` open messages that are free or were a dead node's become this node's
        (skipping rows another node is claiming right now).  Each record says whose it was
        (`taken_from`: a dead node's name, or None)."""
        # A transaction of its own, not in the group commit: it locks only the rows it takes
        # (SKIP LOCKED waits for none), so it can never deadlock with an order being closed.
        # Through a database outage it is tried again like the other writes (and raises the alarm).
        args = (_now(now), claimer, limit, frozenset(exclude))
        if self.clock is None:
            return self.db.run(self._claim, *args)
        from gateway.storage.retry import run_until_committed
        return run_until_committed(self.db, self.clock, "sms", f"claim of up to {limit} message(s)", self._claim,
                                   *args, alarm_after=self.alarm_after)

    @classmethod
    def _claim(cls, conn, now, claimer: Claimer, limit, exclude):
        m = t.sms_messages
        q = (select(m.c.id, m.c.owner_node)
             .where(m.c.state.in_(OPEN_MESSAGE_STATES), claimer.free_or_mine(m.c.owner_node, now),
                    or_(m.c.owner_node.is_(None), m.c.owner_node != claimer.node))
             .order_by(m.c.id).limit(limit + len(exclude)))
        picked = [r for r in conn.execute(skip_locked(q, conn, m)) if r.id not in exclude][:limit]
        if not picked:
            return []
        conn.execute(update(m).where(m.c.id.in_([r.id for r in picked])).values(owner_node=claimer.node))
        was = {r.id: r.owner_node for r in picked}
        rows = conn.execute(select(m).where(m.c.id.in_(list(was))).order_by(m.c.id)).mappings()
        out = cls._with_segments(conn, rows)
        for rec in out:
            rec["taken_from"] = was[rec["id"]]
        return out

    def release(self, now: float, claimer: Claimer, ids):
        """Give messages back to the pool (owner cleared) if they are still untouched: queued,
        no part out.  Returns the ids given back."""
        return self.db.run(self._release, claimer.node, list(ids))

    @staticmethod
    def _release(conn, node, ids):
        m, s = t.sms_messages, t.sms_segments
        touched = select(s.c.message_id).where(s.c.message_id.in_(ids), s.c.state != "queued")
        q = select(m.c.id).where(m.c.id.in_(ids), m.c.owner_node == node, m.c.state == "queued",
                                 m.c.id.not_in(touched))
        free = conn.execute(q).scalars().all()
        if free:
            conn.execute(update(m).where(m.c.id.in_(free)).values(owner_node=None))
        return set(free)

    @staticmethod
    def _with_segments(conn, rows):
        s = t.sms_segments
        msgs = {}
        for r in rows:
            msgs[r["id"]] = dict(id=r["id"], phone=r["phone"], purpose=r["purpose"], state=r["state"],
                                 modem=r["modem"], parts=r["parts"], segments=[])
        if msgs:
            ids = list(msgs)
            for chunk in range(0, len(ids), 500):
                for r in conn.execute(select(s).where(s.c.message_id.in_(ids[chunk:chunk + 500]))
                                      .order_by(s.c.message_id, s.c.seq)).mappings():
                    msgs[r["message_id"]]["segments"].append(dict(
                        id=r["id"], seq=r["seq"], pdu=r["pdu"], tpdu_length=r["tpdu_length"], state=r["state"],
                        modem=r["modem"], mr=r["mr"], attempts=r["attempts"],
                        outcome_unknown=r["outcome_unknown"]))
        return list(msgs.values())

    def settle_report(self, now: float, modem: str, mr: int, recipient: str, status: int,
                      raw_row: dict | None = None, dedup: bool = True, max_attempts: int = 5,
                      node: str | None = None):
        """Store the report raw (raw_row) and settle the segment (modem, MR, recipient) by its
        TP-Status (policy.report_outcome) — one transaction.  Returns (message_id, segment_id,
        new message state, new segment state or None), or None when nothing matched (or the
        report was a duplicate)."""
        return self._unit(self._settle, _now(now), modem, mr, recipient, status, raw_row, dedup, max_attempts,
                          node, urgent=False)

    @classmethod
    def _settle(cls, conn, now, modem, mr, recipient, status, raw_row=None, dedup=True, max_attempts=5,
                node=None):
        if raw_row is not None:
            _rid, dup = cls._store_inbound(conn, now, raw_row, dedup)
            if dup is not None:
                return None
        if policy.classify_status(status) == policy.RESERVED:
            return None
        m, s = t.sms_messages, t.sms_segments
        q = (select(s.c.id, s.c.message_id, s.c.state, s.c.mr, s.c.attempts, m.c.phone)
             .join(m, m.c.id == s.c.message_id)
             .where(s.c.modem == modem, s.c.state.in_(SETTLEABLE),
                    or_(s.c.mr == mr, and_(s.c.mr.is_(None), s.c.state.in_(("unknown", "submitting")))))
             .order_by(s.c.submitted_at.desc(), s.c.id.desc()).limit(50))
        if node is not None:
            # a modem's port name may be the same on another machine: our modem's report is about our messages
            q = q.where(or_(m.c.owner_node == node, m.c.owner_node.is_(None)))
        rows = [r for r in conn.execute(q).mappings() if same_phone(r["phone"], recipient)]
        exact = [r for r in rows if r["mr"] == mr]
        row = (exact or rows or [None])[0]
        if row is None:
            return None
        outcome = policy.report_outcome(status, row["attempts"] or 0, max_attempts, row["state"])
        fields = dict(mr=mr, reported_at=now, updated_at=now, last_error=policy.describe_status(status)[:200])
        if outcome is not None:
            fields["state"] = outcome
        conn.execute(update(s).where(s.c.id == row["id"]).values(**fields))
        states = [r[0] for r in conn.execute(select(s.c.state).where(s.c.message_id == row["message_id"]))]
        new = message_state(states)
        conn.execute(update(m).where(m.c.id == row["message_id"]).values(state=new, updated_at=now))
        _delivery_follows(conn, s.c.id == row["id"], now)
        return (row["message_id"], row["id"], new, outcome)

    def counts(self):
        return self.db.run(lambda conn: dict(conn.execute(
            select(t.sms_messages.c.state, func.count()).group_by(t.sms_messages.c.state)).all()))

    # --- inbound -------------------------------------------------------------------------------
    def store_inbound(self, now: float, dedup: bool = True, **row):
        """Insert a raw inbound record; returns (id, duplicate_of or None).  The same PDU from the
        same modem (re-read after a crash before AT+CMGD) is recognised, not delivered twice."""
        return self._unit(self._store_inbound, _now(now), row, dedup, inbound=True)

    @staticmethod
    def _store_inbound(conn, now, row, dedup=True):
        ir = t.inbound_raw
        digest = hashlib.sha256(row["raw"]).hexdigest() if row.get("raw") is not None else None
        if dedup and digest is not None and row.get("channel") in ("sms", "sms_part", "status_report"):
            # By the indexed digest (the bytes compared too): one lookup, however many SMS are kept.
            dup = conn.execute(select(ir.c.id).where(ir.c.raw_sha256 == digest, ir.c.source == row.get("source"),
                                                     ir.c.raw == row["raw"], ir.c.channel == row["channel"])
                               .limit(1)).scalar()
            if dup is not None:
                return (dup, dup)
        rid = conn.execute(insert(ir).values(received_at=now, raw_sha256=digest, **row)).inserted_primary_key[0]
        if row.get("channel") in ("sms", "sms_part"):
            from gateway.cluster.wakeups import notify_tx
            notify_tx(conn, "reply")
        return (rid, None)

    @staticmethod
    def _store_inbound_many(conn, units) -> list[tuple]:
        """_store_inbound for [(now, row, dedup)] in arrival order: one duplicate check and one
        insert per run of rows with the same columns, not two statements each.  A row the same as
        an earlier one of the same batch is that one's duplicate, as one by one."""
        ir = t.inbound_raw
        prepared = []
        for now, row, dedup in units:
            digest = hashlib.sha256(row["raw"]).hexdigest() if row.get("raw") is not None else None
            # (as the one-by-one check's SQL: a row without a source never equals another)
            check = dedup and digest is not None and row.get("source") is not None \
                and row.get("channel") in ("sms", "sms_part", "status_report")
            prepared.append((now, row, digest, check))
        digests = sorted({d for _n, _r, d, check in prepared if check})
        seen: dict[tuple, int] = {}
        if digests:
            for r in conn.execute(select(ir.c.id, ir.c.raw_sha256, ir.c.source, ir.c.raw, ir.c.channel)
                                  .where(among(conn, ir.c.raw_sha256, digests)).order_by(ir.c.id)):
                seen.setdefault((r.raw_sha256, r.source, bytes(r.raw) if r.raw is not None else None, r.channel), r.id)
        out: list = [None] * len(units)
        run: list[tuple[int, tuple | None, dict]] = []     # (index, key, values): same columns

        def insert_run():
            if run:
                ids = insert_returning_ids(conn, ir, [v for _i, _k, v in run])
                for (i, key, _v), rid in zip(run, ids):
                    out[i] = (rid, None)
                    if key is not None:
                        seen.setdefault(key, rid)
                run.clear()
        in_run: set = set()
        for i, (now, row, digest, check) in enumerate(prepared):
            key = (digest, row.get("source"), row["raw"], row["channel"]) if check else None
            if key is not None and key in in_run:
                insert_run()            # its twin earlier in this run: inserted first, then found
                in_run.clear()
            if key is not None and key in seen:
                out[i] = (seen[key], seen[key])
                continue
            values = dict(received_at=now, raw_sha256=digest, **row)
            if run and set(run[0][2]) != set(values):
                insert_run()
                in_run.clear()
            run.append((i, key, values))
            if key is not None:
                in_run.add(key)
        insert_run()
        return out

    def update_inbound(self, rid: int, **fields):
        return self._unit(self._update_inbound, rid, fields, inbound=True)

    @staticmethod
    def _update_inbound(conn, rid, fields):
        conn.execute(update(t.inbound_raw).where(t.inbound_raw.c.id == rid).values(**fields))

    def load_parts(self):
        ir = t.inbound_raw
        return self.db.run(lambda conn: [dict(r) for r in conn.execute(
            select(ir).where(ir.c.channel == "sms_part", ir.c.state == "part").order_by(ir.c.id)).mappings()])

    def load_unjudged(self):
        """Whole SMS committed but never judged by the feedback engine (we stopped in between)."""
        ir = t.inbound_raw
        return self.db.run(lambda conn: [dict(r) for r in conn.execute(
            select(ir).where(ir.c.channel == "sms", ir.c.state == "new").order_by(ir.c.id)).mappings()])


class MemoryStore:
    """The same contract, in memory, synchronous: for randomised trials driven by a Clock."""

    def __init__(self):
        self.messages: dict[int, dict] = {}
        self.segments: dict[int, dict] = {}
        self.inbound: dict[int, dict] = {}
        self._ids = 0

    def _id(self):
        self._ids += 1
        return self._ids

    def add_message(self, now, phone, text, purpose, order_id, delivery_id, *, ref_bits=8, status_report=True,
                    validity_minutes=1440, owner=None):
        try:
            mid = self._id()
            enc, ref, pdus = build_segments(mid, phone, text, ref_bits, status_report, validity_minutes)
        except ValueError as e:
            return defer.fail(e)
        segs = []
        for p in pdus:
            sid = self._id()
            seg = dict(id=sid, message_id=mid, seq=p.seq, pdu=p.pdu_hex, tpdu_length=p.tpdu_length,
                       state="queued", modem=None, mr=None, attempts=0, outcome_unknown=0, submitted_at=None)
            self.segments[sid] = seg
            segs.append({k: v for k, v in seg.items() if k not in ("message_id", "submitted_at")})
        self.messages[mid] = dict(id=mid, phone=phone, text=text, purpose=purpose, state="queued", modem=None,
                                  parts=len(pdus), encoding=enc, owner_node=owner)
        return defer.succeed(dict(id=mid, phone=phone, purpose=purpose, state="queued", modem=None,
                                  parts=len(pdus), segments=segs))

    def save(self, now, changes):
        for kind, rid, fields in changes:
            rec = (self.segments if kind == "segment" else self.messages)[rid]
            if kind == "segment" and fields.get("state") == "sent" and rec["state"] in ("delivered", "failed"):
                continue
            if kind == "message" and "state" in fields:
                fields = dict(fields, state=message_state([x["state"] for x in self.segments.values()
                                                           if x["message_id"] == rid]))
            rec.update(fields)
        return defer.succeed(None)

    def load_open(self, node=None):
        return defer.succeed(self._open(lambda m: node is None or m.get("owner_node") == node))

    def claim(self, now, claimer, limit, exclude=()):
        """One node in memory: the free messages (no liveness to judge here)."""
        picked = [m for m in self._open(lambda m: m.get("owner_node") is None and m["id"] not in exclude)][:limit]
        for rec in picked:
            self.messages[rec["id"]]["owner_node"] = claimer.node
            rec["taken_from"] = None
        return defer.succeed(picked)

    def release(self, now, claimer, ids):
        free = {i for i in ids if self.messages[i].get("owner_node") == claimer.node
                and all(x["state"] == "queued" for x in self.segments.values() if x["message_id"] == i)}
        for i in free:
            self.messages[i]["owner_node"] = None
        return defer.succeed(free)

    def _open(self, which):
        out = []
        for m in self.messages.values():
            if m["state"] in OPEN_MESSAGE_STATES and which(m):
                segs = [{k: v for k, v in s.items() if k not in ("message_id", "submitted_at")}
                        for s in sorted(self.segments.values(), key=lambda s: s["seq"]) if s["message_id"] == m["id"]]
                out.append(dict(id=m["id"], phone=m["phone"], purpose=m["purpose"], state=m["state"],
                                modem=m["modem"], parts=m["parts"], segments=segs))
        return out

    def settle_report(self, now, modem, mr, recipient, status, raw_row=None, dedup=True, max_attempts=5, node=None):
        if raw_row is not None:
            _rid, dup = self.store_inbound(now, dedup=dedup, **raw_row).result
            if dup is not None:
                return defer.succeed(None)
        if policy.classify_status(status) == policy.RESERVED:
            return defer.succeed(None)
        cands = [s for s in self.segments.values()
                 if s["modem"] == modem and s["state"] in SETTLEABLE
                 and (s["mr"] == mr or (s["mr"] is None and s["state"] in ("unknown", "submitting")))
                 and same_phone(self.messages[s["message_id"]]["phone"], recipient)]
        cands.sort(key=lambda s: (s["mr"] == mr, s["submitted_at"].timestamp() if s.get("submitted_at") else 0,
                                  s["id"]), reverse=True)
        if not cands:
            return defer.succeed(None)
        seg = cands[0]
        outcome = policy.report_outcome(status, seg.get("attempts") or 0, max_attempts, seg["state"])
        seg.update(mr=mr, last_error=policy.describe_status(status))
        if outcome is not None:
            seg["state"] = outcome
        mid = seg["message_id"]
        new = message_state([s["state"] for s in self.segments.values() if s["message_id"] == mid])
        self.messages[mid]["state"] = new
        return defer.succeed((mid, seg["id"], new, outcome))

    def store_inbound(self, now, dedup=True, **row):
        if dedup and row.get("raw") is not None:
            for rid, r in self.inbound.items():
                if r.get("source") == row.get("source") and r.get("raw") == row["raw"] \
                        and r.get("channel") == row.get("channel"):
                    return defer.succeed((rid, rid))
        rid = self._id()
        self.inbound[rid] = dict(row, id=rid, received_at=_now(now))
        return defer.succeed((rid, None))

    def update_inbound(self, rid, **fields):
        self.inbound[rid].update(fields)
        return defer.succeed(None)

    def load_parts(self):
        return defer.succeed([dict(r) for r in self.inbound.values()
                              if r.get("channel") == "sms_part" and r.get("state") == "part"])

    def load_unjudged(self):
        return defer.succeed([dict(r) for r in self.inbound.values()
                              if r.get("channel") == "sms" and r.get("state") == "new"])

    def idle(self):
        return defer.succeed(None)
