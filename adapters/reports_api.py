"""API route for the reports: GET /reports/assessment?from=YYYY-MM-DD&to=YYYY-MM-DD (read scope).

Per team and per category (real / drill orders): orders received, median and p90 minutes to
receipt, assembly, arrival and report, on-time rates against each deadline, silences and
escalations, over local days [from, to] in gateway.time_zone."""
from __future__ import annotations

from datetime import date, datetime, timezone

from adapters.api import ApiError, Router
from adapters.contract import Field, Response
from gateway.reports.assessment import assessment_tx

MAX_DAYS = 800          # a half-year with room; a longer range is a mistake, not a report


def _date_field(name: str, what: str) -> Field:
    return Field(name, "string", f"{what} local day (gateway.time_zone), YYYY-MM-DD", required=True, fmt="date",
                 pattern=r"^\d{4}-\d{2}-\d{2}$")


ASSESSMENT = {"type": "object", "required": ["from", "to", "teams"],
              "properties": {"from": {"type": "string"}, "to": {"type": "string"},
                             "time_zone": {"type": "string"}, "teams": {"type": "array"}}}


def parse_range(raw_from: str, raw_to: str) -> tuple[date, date]:
    """Both days, checked: real dates, in order, at most MAX_DAYS apart (ValueError naming the field)."""
    days = []
    for name, raw in (("from", raw_from), ("to", raw_to)):
        try:
            days.append(date.fromisoformat(raw))
        except ValueError:
            raise ValueError(f"{name}: not a date YYYY-MM-DD: {raw!r}") from None
    start, end = days
    if end < start:
        raise ValueError(f"to: {end} is before from {start}")
    if (end - start).days > MAX_DAYS:
        raise ValueError(f"to: at most {MAX_DAYS} days after from")
    return start, end


def add_report_routes(router: Router, database, esc_cfg, time_zone: str, clock) -> None:
    def assessment(req):
        try:
            start, end = parse_range(req.query["from"], req.query["to"])
        except ValueError as e:
            field_name = str(e).split(":", 1)[0]
            raise ApiError(422, str(e), field=field_name) from None
        now = datetime.fromtimestamp(clock.seconds(), timezone.utc)
        d = database.run(assessment_tx, esc_cfg, start, end, time_zone, now)
        return d.addCallback(lambda a: (200, a.as_dict()))

    router.add("GET", "/reports/assessment", assessment,
               summary="per team: orders, median/p90 minutes to receipt, assembly, arrival, report, on-time "
                       "rates, silences and escalations; drill orders apart from real ones",
               query=(_date_field("from", "the first"), _date_field("to", "the last")),
               ok={200: Response("the assessment", ASSESSMENT)})
