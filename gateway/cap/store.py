"""CAP units of work (run inside Database.run / run_sync): take an alert, confirm a proposal.

One transaction per document: its raw bytes, the verdict, and whatever it caused (an order, a
proposal, an order updated or closed) are committed together, so a restart finds either all of
it or none, and the same alert taken again finds the first copy.  The events it causes
(cap.accepted / cap.refused / order.proposed / order.updated / ...) are written to the event log
in the same transaction (the new order's `order.created` by create_order_tx itself).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, insert, select, update

from gateway.cap import rules as cap_rules
from gateway.cap.config import CapRule, CapSection
from gateway.cap.document import Alert, CapRefused, order_text, parse
from gateway.escalation.config import EscalationConfig
from gateway.eventlog import record_event, record_events
from gateway.orders import directory_queries as dq
from gateway.orders.order import CreatedOrder, OrderRequest, Target
from gateway.orders.store import NoTeams, create_order_tx
from gateway.storage.schema import audit_log, cap_alerts, deliveries, order_proposals, orders, teams

ACTOR = "cap"


@dataclass
class Outcome:
    """What became of one document; `events` are recorded with it and `created` announced after COMMIT."""
    alert_id: int
    state: str                                  # accepted / refused / duplicate
    action: str | None = None
    element: str | None = None
    reason: str | None = None
    alert_key: str | None = None
    order_code: str | None = None
    order_id: int | None = None
    proposal_id: int | None = None
    rule: str | None = None
    signature: str | None = None
    created: list[tuple[CreatedOrder, OrderRequest]] = field(default_factory=list)
    resend: list[tuple[int, str]] = field(default_factory=list)    # (order id, code) with new deliveries
    events: list[tuple[str, dict]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("alert_id", "state", "action", "element", "reason", "alert_key",
                                              "order_code", "proposal_id", "rule", "signature") if getattr(self, k)
                is not None}


def _refuse(conn, raw: bytes, source: str, now: datetime, e: CapRefused, key: str | None = None) -> Outcome:
    aid = conn.execute(insert(cap_alerts).values(
        received_at=now, source=source[:200], raw=raw, state="refused", element=e.element[:200],
        reason=e.reason, alert_key=key)).inserted_primary_key[0]
    out = Outcome(aid, "refused", element=e.element, reason=e.reason, alert_key=key)
    out.events.append(("cap.refused", out.as_dict() | {"source": source}))
    return out


def take_alert_tx(conn, raw: bytes, source: str, now: datetime, cfg: CapSection, esc: EscalationConfig,
                  rng: random.Random, verify=None, truncated: bool = False, drill: bool = False) -> Outcome:
    """Check one CAP document and act on it, its events in the same transaction.
    `verify(root) -> (signature state, Alert)` is the signature check (gateway/cap/signature.py);
    it raises CapRefused.  `drill`: the gateway runs in drill mode, so every order it makes is a drill."""
    out = _take_alert(conn, raw, source, now, cfg, esc, rng, verify, truncated, drill)
    record_events(conn, out.events, now)
    return out


def _take_alert(conn, raw, source, now, cfg, esc, rng, verify, truncated, drill=False) -> Outcome:
    if truncated:
        return _refuse(conn, raw, source, now, CapRefused(
            "/alert", f"document is over the limit of {cfg.max_bytes} bytes (cap.max_bytes); its first "
                      f"{len(raw)} bytes are kept"))
    try:
        root, alert = parse(raw, cfg.max_bytes, cfg.max_text_chars)
        signature = "unchecked" if alert.signed else "none"
        if verify is not None:
            signature, alert = verify(root, alert)
    except CapRefused as e:
        return _refuse(conn, raw, source, now, e)
    first = conn.execute(select(cap_alerts.c.id, cap_alerts.c.order_id, cap_alerts.c.proposal_id)
                         .where(cap_alerts.c.accepted_key == alert.key)).first()
    if first is not None:
        aid = conn.execute(insert(cap_alerts).values(
            received_at=now, source=source[:200], raw=raw, state="duplicate", alert_key=alert.key[:400],
            msg_type=alert.msg_type, status=alert.status, reason=f"same alert as #{first.id}",
            order_id=first.order_id, proposal_id=first.proposal_id, signature=signature)).inserted_primary_key[0]
        out = Outcome(aid, "duplicate", action="none", alert_key=alert.key, reason=f"same alert as #{first.id}",
                      order_code=_code(conn, first.order_id), proposal_id=first.proposal_id, signature=signature)
        return out
    short, full = order_text(alert.info, cfg.text_chars) if alert.info else ("", "")
    aid = conn.execute(insert(cap_alerts).values(
        received_at=now, source=source[:200], raw=raw, state="accepted", alert_key=alert.key[:400],
        accepted_key=alert.key[:400], msg_type=alert.msg_type, status=alert.status,
        references=" ".join(alert.references) or None, signature=signature,
        headline=alert.info.headline if alert.info else None, text_full=full or None)).inserted_primary_key[0]
    out = Outcome(aid, "accepted", alert_key=alert.key, signature=signature)
    if alert.msg_type in ("Update", "Cancel") and _act_on_earlier(conn, alert, aid, short, full, now, out):
        pass
    elif alert.msg_type in ("Alert", "Update"):
        _new_alert(conn, alert, aid, short, full, now, cfg, esc, rng, out, drill)
    else:
        out.action = "none"           # Ack, Error, or a Cancel of something never seen
    conn.execute(update(cap_alerts).where(cap_alerts.c.id == aid).values(
        action=out.action, rule=out.rule, proposal_id=out.proposal_id,
        order_id=out.order_id))
    out.events.insert(0, ("cap.accepted", out.as_dict() | {"source": source, "msg_type": alert.msg_type,
                                                          "status": alert.status, "headline": alert.info.headline
                                                          if alert.info else None}))
    return out


def _code(conn, order_id):
    return None if order_id is None else conn.execute(select(orders.c.code).where(orders.c.id == order_id)).scalar()


def _request(alert: Alert, rule: CapRule, target: Target, short: str, drill: bool = False) -> OrderRequest:
    return OrderRequest(incident_ref=f"CAP {alert.identifier}"[:100], kind=rule.kind, text=short, target=target,
                        rule=rule.response_rule, voice=rule.voice, created_by=f"cap:{rule.name}"[:100],
                        idempotency_key=None, drill=drill)


def _new_alert(conn, alert: Alert, aid: int, short: str, full: str, now, cfg: CapSection, esc, rng,
               out: Outcome, drill: bool = False) -> None:
    if alert.status != "Actual":
        out.action = "not_actual"      # Exercise, Test, System, Draft: recorded, nothing sent
        return
    rule = cap_rules.first_match(cfg.rules, alert.info)
    if rule is None:
        out.action = "no_rule"
        out.events.append(("cap.unmatched", {"alert_id": aid, "alert_key": alert.key,
                                             "headline": alert.info.headline if alert.info else None}))
        return
    out.rule = rule.name
    try:
        townships = [t for t in conn.execute(select(teams.c.township).where(teams.c.township.is_not(None))).scalars()]
        req = _request(alert, rule, cap_rules.resolve_target(rule, alert.info, townships), short, drill)
    except (LookupError, ValueError) as e:
        out.action, out.reason = "no_teams", str(e)
        out.events.append(("cap.unmatched", {"alert_id": aid, "alert_key": alert.key, "rule": rule.name,
                                             "reason": str(e)}))
        return
    if rule.confirm:
        pid = conn.execute(insert(order_proposals).values(
            created_at=now, source="cap", cap_alert_id=aid, state="pending", request=_request_json(req),
            text_full=full, rule=rule.name)).inserted_primary_key[0]
        out.action, out.proposal_id = "proposal", pid
        out.events.append(("order.proposed", {"proposal_id": pid, "alert_id": aid, "rule": rule.name,
                                              **_request_json(req), "text_full": full}))
        return
    try:
        created = create_order_tx(conn, req, now, esc, rng)
    except (NoTeams, LookupError) as e:
        out.action, out.reason = "no_teams", str(e)
        return
    out.action, out.order_code, out.order_id = "order_created", created.code, created.order_id
    out.created.append((created, req))


def _request_json(req: OrderRequest) -> dict:
    return {"incident_ref": req.incident_ref, "kind": req.kind, "text": req.text, "target": req.target.describe(),
            "rule": req.rule, "voice": req.voice, "drill": req.drill}


def _earlier(conn, alert: Alert):
    """The newest accepted earlier alert named in `references` that made an order or proposal."""
    if not alert.references:
        return None
    return conn.execute(select(cap_alerts.c.id, cap_alerts.c.order_id, cap_alerts.c.proposal_id)
                        .where(cap_alerts.c.accepted_key.in_(list(alert.references)),
                               (cap_alerts.c.order_id.is_not(None)) | (cap_alerts.c.proposal_id.is_not(None)))
                        .order_by(cap_alerts.c.id.desc())).first()


def _act_on_earlier(conn, alert: Alert, aid: int, short: str, full: str, now, out: Outcome) -> bool:
    """Update or Cancel what an earlier alert made.  False when `references` names nothing we acted
    on (an Update then stands as a new alert, as CAP allows when the original was missed)."""
    prev = _earlier(conn, alert)
    if prev is None:
        return False
    why = f"CAP {alert.msg_type} {alert.key}"
    if prev.order_id is not None:
        order = conn.execute(select(orders.c.id, orders.c.code, orders.c.state).where(orders.c.id == prev.order_id)).first()
        out.order_code, out.order_id = order.code, order.id
        if order.state != "open":
            out.action = "none"
            out.reason = f"order {order.code} is already {order.state}"
            return True
        if alert.msg_type == "Cancel":
            from gateway.orders.cli import close_order_tx
            close_order_tx(conn, order.code, f"{ACTOR}:{alert.sender}"[:100], now)
            out.action = "order_closed"
            out.events.append(("order.closed", {"order_code": order.code, "by": "cap", "alert_key": alert.key}))
        else:
            conn.execute(update(orders).where(orders.c.id == order.id).values(text=short))
            n = _queue_update_sms(conn, order.id, now)
            conn.execute(insert(audit_log).values(at=now, actor=ACTOR, action="order.updated",
                                                  subject=f"order {order.code}",
                                                  detail={"why": why, "text": short, "deliveries": n}))
            out.action = "order_updated"
            out.resend.append((order.id, order.code))
            out.events.append(("order.updated", {"order_code": order.code, "text": short, "text_full": full,
                                                 "alert_key": alert.key}))
        return True
    prop = conn.execute(select(order_proposals).where(order_proposals.c.id == prev.proposal_id)).first()
    out.proposal_id = prop.id
    if prop.state != "pending":
        out.action, out.reason = "none", f"proposal {prop.id} is already {prop.state}"
        return True
    if alert.msg_type == "Cancel":
        conn.execute(update(order_proposals).where(order_proposals.c.id == prop.id).values(
            state="cancelled", decided_at=now, decided_by=f"{ACTOR}:{alert.sender}"[:100]))
        out.action = "proposal_cancelled"
        out.events.append(("order.proposal_cancelled", {"proposal_id": prop.id, "alert_key": alert.key}))
    else:
        conn.execute(update(order_proposals).where(order_proposals.c.id == prop.id).values(
            request={**prop.request, "text": short}, text_full=full))
        out.action = "proposal_updated"
        out.events.append(("order.proposal_updated", {"proposal_id": prop.id, "text": short, "text_full": full,
                                                      "alert_key": alert.key}))
    conn.execute(insert(audit_log).values(at=now, actor=ACTOR, action=f"proposal.{out.action.split('_')[1]}",
                                          subject=f"proposal {prop.id}", detail={"why": why}))
    return True


def _queue_update_sms(conn, order_id: int, now) -> int:
    """The updated text goes to every commander and deputy of the order's teams (the fan-out
    hands queued deliveries on)."""
    from gateway.storage.schema import order_teams
    team_ids = list(conn.execute(select(order_teams.c.team_id).where(order_teams.c.order_id == order_id)).scalars())
    rows = [dict(order_id=order_id, team_id=tid, member_id=m.id, phone=m.phone, channel="sms", state="queued",
                 attempts=0, detail="order updated by CAP", created_at=now, updated_at=now)
            for tid, people in dq.team_commanders(conn, team_ids).items() for m in people]
    if rows:
        conn.execute(insert(deliveries), rows)
        from gateway.cluster.wakeups import notify_tx
        notify_tx(conn, "order")
    return len(rows)


# --- proposals ------------------------------------------------------------------------------------

class ProposalError(ValueError):
    pass


def confirm_proposal_tx(conn, proposal_id: int, by: str, now: datetime, esc: EscalationConfig,
                        rng: random.Random, drill: bool = False) -> tuple[CreatedOrder, OrderRequest]:
    """A person confirms: the proposal becomes an order (once: confirming twice gives the same one)."""
    prop = conn.execute(select(order_proposals).where(order_proposals.c.id == proposal_id)).first()
    if prop is None:
        raise LookupError(f"no proposal {proposal_id}")
    if prop.state not in ("pending", "confirmed"):
        raise ProposalError(f"proposal {proposal_id} is {prop.state}; it cannot be confirmed")
    r = prop.request
    req = OrderRequest(incident_ref=r["incident_ref"], kind=r["kind"], text=r["text"],
                       target=Target.parse(r["target"]), rule=r["rule"], voice=bool(r["voice"]),
                       created_by=by[:100], idempotency_key=f"proposal-{proposal_id}",
                       drill=drill or bool(r.get("drill")))
    created = create_order_tx(conn, req, now, esc, rng)
    if prop.state == "pending":
        conn.execute(update(order_proposals).where(order_proposals.c.id == proposal_id).values(
            state="confirmed", decided_at=now, decided_by=by[:100], order_id=created.order_id))
        # Later Updates and Cancels of the alert find the order through these rows.
        conn.execute(update(cap_alerts).where(cap_alerts.c.proposal_id == proposal_id)
                     .values(order_id=created.order_id))
        conn.execute(insert(audit_log).values(at=now, actor=by[:100], action="proposal.confirmed",
                                              subject=f"proposal {proposal_id}",
                                              detail={"order_code": created.code}))
        record_event(conn, "order.proposal_confirmed", {"proposal_id": proposal_id, "order_code": created.code,
                                                        "by": by}, now)
    return created, req


def pending_proposals_tx(conn, limit: int = 50) -> list[dict]:
    rows = conn.execute(select(order_proposals).where(order_proposals.c.state == "pending")
                        .order_by(order_proposals.c.created_at.desc()).limit(limit)).all()
    return [dict(r._mapping) for r in rows]


def get_proposal_tx(conn, proposal_id: int) -> dict | None:
    r = conn.execute(select(order_proposals).where(order_proposals.c.id == proposal_id)).first()
    return None if r is None else dict(r._mapping)


ALERT_FIELDS = ("id", "received_at", "source", "state", "element", "reason", "alert_key", "msg_type", "status",
                "references", "signature", "action", "rule", "headline", "text_full", "order_id", "proposal_id")


def list_alerts_tx(conn, limit: int = 100) -> list[dict]:
    cols = [cap_alerts.c[k] for k in ALERT_FIELDS]
    return [dict(r._mapping) for r in conn.execute(select(*cols).order_by(cap_alerts.c.id.desc()).limit(limit))]


def get_alert_tx(conn, alert_id: int) -> dict | None:
    r = conn.execute(select(cap_alerts).where(cap_alerts.c.id == alert_id)).first()
    if r is None:
        return None
    d = dict(r._mapping)
    d["raw"] = d["raw"].decode("utf-8", "replace")
    return d


def full_texts_tx(conn, order_ids) -> dict[int, str]:
    """The full warning text of orders made from CAP alerts (the board shows it)."""
    ids = list(order_ids)
    if not ids:
        return {}
    rows = conn.execute(select(cap_alerts.c.order_id, cap_alerts.c.text_full)
                        .where(and_(cap_alerts.c.order_id.in_(ids), cap_alerts.c.state == "accepted",
                                    cap_alerts.c.text_full.is_not(None)))
                        .order_by(cap_alerts.c.id)).all()
    return {r.order_id: r.text_full for r in rows}      # the newest (an Update's) wins
