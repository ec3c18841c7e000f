"""The gateway's text log lines are Twisted's textFileLogObserver lines, made with a cheaper clock
format (gateway/logs.py): the same text, checked against Twisted's own code, in several zones
(one with daylight saving, either side of its change)."""
from __future__ import annotations

import io
import os
import time

import pytest
from twisted.logger import LogLevel, formatTime, textFileLogObserver

from gateway.logs import format_time, text_observer

WHEN = [0.0, 1_700_000_000.25, 1_772_000_000.0,
        1_710_054_000.0 - 1, 1_710_054_000.0, 1_710_054_000.0 + 3600,   # US spring forward, 2024-03-10 07:00 UTC
        1_730_613_600.0 - 1, 1_730_613_600.0 + 1]                        # and back, 2024-11-03 06:00 UTC


@pytest.fixture(params=["UTC", "Asia/Shanghai", "America/New_York", "Asia/Kolkata"])
def zone(request):
    before = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    yield request.param
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_times_read_as_twisted_writes_them(zone):
    for when in WHEN:
        assert format_time(when) == formatTime(when), (zone, when)
    assert format_time(None) == formatTime(None) == "-"


def test_a_line_is_twisted_s_line(zone):
    event = {"log_format": "feedback order {code} from {phone}: {status}", "code": "0427",
             "phone": "+8613800000001", "status": "arrived", "log_level": LogLevel.info,
             "log_namespace": "gateway.feedback.engine", "log_time": 1_772_000_000.5, "log_system": "-"}
    ours, twisted_s = io.StringIO(), io.StringIO()
    text_observer(ours)(dict(event))
    textFileLogObserver(twisted_s)(dict(event))
    assert ours.getvalue() == twisted_s.getvalue() and "0427" in ours.getvalue()
