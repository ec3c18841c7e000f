"""Structured logs through twisted.logger: human text, or one JSON object per line."""
from __future__ import annotations

import io
import json
import sys
from typing import IO

from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate,
                            eventAsJSON, formatEventAsClassicLogText, globalLogBeginner,
                            textFileLogObserver)
from zope.interface import provider
from twisted.logger import ILogObserver

LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn, "error": LogLevel.error}


def json_lines_observer(out: IO[str]):
    """One JSON object per line: twisted's event serialisation, with the rendered text added."""
    @provider(ILogObserver)
    def observe(event):
        text = formatEventAsClassicLogText(event)
        try:
            record = json.loads(eventAsJSON(event))
        except (TypeError, ValueError):
            record = {}
        record = {k: v for k, v in record.items() if not k.startswith("log_") or k in
                  ("log_namespace", "log_time", "log_format")}
        record["level"] = event.get("log_level", LogLevel.info).name
        record["message"] = text.rstrip("\n").split(" ", 2)[-1] if text else ""
        out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        out.flush()
    return observe


def make_observer(fmt: str, level: str, out: IO[str] | None = None):
    out = out or sys.stdout
    base = json_lines_observer(out) if fmt == "json" else textFileLogObserver(out)
    return FilteringLogObserver(base, [LogLevelFilterPredicate(defaultLogLevel=LEVELS[level])])


def start_logging(fmt: str = "text", level: str = "info", out: IO[str] | None = None) -> None:
    globalLogBeginner.beginLoggingTo([make_observer(fmt, level, out)], redirectStandardIO=False)


__all__ = ["make_observer", "start_logging", "json_lines_observer", "io"]
