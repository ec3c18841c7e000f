"""`yihu report assessment`: the half-year assessment in the terminal, and as HTML and CSV files.

Runs without a reactor: one read transaction (Database.run_sync)."""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from gateway.orders.cli import _cfg, _db


def add_report_commands(subparsers, common=None) -> None:
    parents = [common] if common is not None else []
    p = subparsers.add_parser("report", help="the teams' assessment")
    sub = p.add_subparsers(dest="report_command", required=True, metavar="REPORT")
    a = sub.add_parser("assessment", parents=parents,
                       help="per team: orders, median/p90 times, on-time rates, silences, escalations")
    a.add_argument("--from", dest="start", required=True, metavar="DATE", help="first local day, YYYY-MM-DD")
    a.add_argument("--to", dest="end", required=True, metavar="DATE", help="last local day, YYYY-MM-DD")
    a.add_argument("--out", metavar="DIR", help="where the HTML and CSV go (default: DATA_DIR/reports)")
    a.set_defaults(func=cmd_assessment)


def output_dir(args, given: str | None) -> Path:
    config = getattr(args, "config", None)
    base = Path(given) if given else (config.data_dir if hasattr(config, "data_dir") else Path("var")) / "reports"
    base.mkdir(parents=True, exist_ok=True)
    return base


def cmd_assessment(args) -> int:
    from adapters.reports_api import parse_range
    from gateway.reports.assessment import assessment_tx
    from gateway.reports.render import assessment_csv, assessment_html, assessment_text
    try:
        start, end = parse_range(args.start, args.end)
    except ValueError as e:
        print(f"report not made: {e}", file=sys.stderr)
        return 2
    cfg = _cfg(args)
    zone = args.config.gateway.time_zone if hasattr(args.config, "gateway") else cfg.timezone
    db = _db(args)
    try:
        a = db.run_sync(assessment_tx, cfg, start, end, zone, datetime.now(timezone.utc))
    finally:
        db.engine.dispose()
    out = output_dir(args, args.out)
    stem = f"assessment-{start}-{end}"
    (out / f"{stem}.csv").write_text(assessment_csv(a), "utf-8")
    (out / f"{stem}.html").write_text(assessment_html(a, cfg), "utf-8")
    print(assessment_text(a))
    print(f"\nHTML: {out / (stem + '.html')}\nCSV:  {out / (stem + '.csv')}")
    return 0
