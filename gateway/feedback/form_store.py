"""The formal feedback form in the database: read, filled, completed (inside Database.run)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import and_, bindparam, func, insert, select, update

from gateway.eventlog import record_event
from gateway.feedback import form as ff
from gateway.orders import store as ostore
from gateway.storage.bulk import among
from gateway.storage.schema import audit_log, feedback_forms, order_teams, orders, teams

_COLUMNS = ff.FIELDS


@dataclass
class FormState:
    values: dict                 # field -> value (None: not given)
    missing: list                # required fields still empty, in the order they are asked for
    filled: list                 # the fields this change set
    complete: bool
    newly_complete: bool
    asked: str | None            # the field the next SMS asks for


def load_form(conn, order_team_id: int) -> dict:
    row = conn.execute(select(feedback_forms).where(feedback_forms.c.order_team_id == order_team_id)).first()
    return form_from_row(row)


def form_from_row(row) -> dict:
    """A form as load_form gives it; row None: not started yet."""
    return {c: (getattr(row, c) if row else None) for c in _COLUMNS} | {
        "asked_field": row.asked_field if row else None, "updated_by": row.updated_by if row else None,
        "updated_at": row.updated_at if row else None, "completed_at": row.completed_at if row else None}


def load_forms(conn, order_team_ids) -> dict[int, dict]:
    """load_form for many teams at once (a batch of answers)."""
    ids = sorted(set(order_team_ids))
    found = {r.order_team_id: r for r in conn.execute(select(feedback_forms)
                                                       .where(among(conn, feedback_forms.c.order_team_id, ids)))} if ids else {}
    return {i: form_from_row(found.get(i)) for i in ids}


def plan_form(old: dict, changes: dict, actor: str, at: datetime) -> tuple[FormState, dict, bool]:
    """What apply_tx writes, from the form as it was: (state, the row's columns, a new row?)."""
    was_complete = not ff.missing(old) and old["updated_at"] is not None
    values = ff.merge({c: old[c] for c in _COLUMNS}, changes)
    need = ff.missing(values)
    complete = not need
    row = {**values, "asked_field": need[0] if need else None, "complete": complete, "updated_at": at,
           "updated_by": actor[:100]}
    if complete and not was_complete:
        row["completed_at"] = at
    filled = [c for c in _COLUMNS if c in changes and changes[c] not in (None, "")]
    return (FormState(values, need, filled, complete, complete and not was_complete, row["asked_field"]),
            row, old["updated_at"] is None)


def form_after(old: dict, row: dict) -> dict:
    """The form as load_form would read it once `row` (plan_form's) is written."""
    return {**old, **row}


def write_forms(conn, writes: dict[int, tuple[dict, bool]]) -> None:
    """{order_team_id: (plan_form's columns, a new row?)}: an executemany per kind and set of columns."""
    groups: dict[tuple, list[dict]] = {}
    for ot, (row, new) in writes.items():
        groups.setdefault((new, tuple(sorted(row))), []).append({**row, ("order_team_id" if new else "b_ot"): ot})
    for (new, _cols), rows in groups.items():
        if new:
            conn.execute(insert(feedback_forms), rows)
        else:
            conn.execute(update(feedback_forms).where(feedback_forms.c.order_team_id == bindparam("b_ot")), rows)


def apply_tx(conn, order_team_id: int, changes: dict, actor: str, at: datetime) -> FormState:
    """Merge `changes` into the team's form (created on first use) and say what is still missing."""
    fs, row, new = plan_form(load_form(conn, order_team_id), changes, actor, at)
    if new:
        conn.execute(insert(feedback_forms).values(order_team_id=order_team_id, **row))
    else:
        conn.execute(update(feedback_forms).where(feedback_forms.c.order_team_id == order_team_id).values(**row))
    return fs


def record_form_event(conn, code: str, order_id: int, team_code: str, fs: FormState, actor: str,
                      at: datetime) -> dict:
    """The order.form event, in the transaction that changed the form."""
    event = {"order_code": code, "order_id": order_id, "team": team_code, "fields": fs.filled,
             "complete": fs.complete, "missing": fs.missing, "by": actor, "at": at.isoformat()}
    record_event(conn, "order.form", event, at)
    return event


def open_forms_for_team(conn, team_id: int, code: str | None = None) -> list:
    """(order_team id, order code, order id) of the team's finished teams-on-orders whose form is
    not complete, newest first; these are what a labelled SMS without a status fills."""
    q = (select(order_teams.c.id, orders.c.code, orders.c.id.label("order_id"))
         .join(orders, orders.c.id == order_teams.c.order_id)
         .where(and_(order_teams.c.team_id == team_id, order_teams.c.finished_at.is_not(None),
                     order_teams.c.form_complete.is_(False), orders.c.state == "open"))
         .order_by(orders.c.created_at.desc(), orders.c.id.desc()))
    if code is not None:
        q = q.where(orders.c.code == code)
    return conn.execute(q.limit(5)).all()


def complete_forms_count(conn, since: datetime | None = None, until: datetime | None = None) -> tuple[int, int]:
    """(complete forms, teams that finished) in a window: what the assessment counts."""
    base = select(func.count()).select_from(order_teams).where(order_teams.c.finished_at.is_not(None))
    if since is not None:
        base = base.where(order_teams.c.finished_at >= since)
    if until is not None:
        base = base.where(order_teams.c.finished_at < until)
    finished = conn.execute(base).scalar() or 0
    complete = conn.execute(base.where(order_teams.c.form_complete.is_(True))).scalar() or 0
    return complete, finished


class NotFinished(ValueError):
    """The team has not reported finished: there is no form to fill yet."""


def find_order_team(conn, code: str, team_code: str):
    """(order_team id, order id, order code, team name, finished_at) or None; the open order first."""
    return conn.execute(select(order_teams.c.id, orders.c.id.label("order_id"), orders.c.code, orders.c.incident_ref,
                               orders.c.created_at, teams.c.code.label("team_code"), teams.c.name.label("team_name"),
                               order_teams.c.finished_at)
                        .join(orders, orders.c.id == order_teams.c.order_id)
                        .join(teams, teams.c.id == order_teams.c.team_id)
                        .where(orders.c.code == code, teams.c.code == team_code)
                        .order_by((orders.c.state == "open").desc(), orders.c.created_at.desc())).first()


def dispatcher_update_tx(conn, code: str, team_code: str, changes: dict, actor: str, at: datetime):
    """A dispatcher completes or corrects the form: (FormState, order_team id, next due).  The team's
    report stage stops only when the form is complete."""
    ot = find_order_team(conn, code, team_code)
    if ot is None:
        raise LookupError(f"order {code} has no team {team_code}")
    if ot.finished_at is None:
        raise NotFinished(f"team {team_code} has not reported order {code} finished; the form follows 'finished'")
    _row, old = ostore.load_team_state(conn, ot.id)       # locked before the form is touched
    fs = apply_tx(conn, ot.id, changes, actor, at)
    new = replace(old, form_complete=fs.complete)
    ostore.save_team_state(conn, ot.id, old, new, at)
    next_due = ostore.cancel_satisfied_steps_tx(conn, ot.id, new, f"feedback form completed by {actor}", at)
    conn.execute(insert(audit_log).values(at=at, actor=actor, action="feedback.form",
                                          subject=f"order {code} team {team_code}",
                                          detail={"fields": sorted(changes), "complete": fs.complete}))
    record_form_event(conn, ot.code, ot.order_id, team_code, fs, actor, at)
    return fs, ot.id, next_due


def form_for_print_tx(conn, code: str, team_code: str):
    """Everything the printed form shows: (order-team row, form dict) or None."""
    ot = find_order_team(conn, code, team_code)
    if ot is None:
        return None
    return ot, load_form(conn, ot.id)
