"""The suite-wide secret check (tests/secrets.py, installed by tests/conftest.py) finds a leak
wherever it happens: a twisted log line (also inside a traceback), a stdlib log line, an event,
a subprocess's output.  Each source is fed to a watch of its own here, so that this test does not
trip the suite's watch on purpose."""
import logging

import pytest_twisted

from twisted.python.failure import Failure

from tests import conftest
from tests.secrets import ALL, AMI_SECRET, SIM_PIN, WEBHOOK_SECRET, SecretWatch


def test_the_secrets_are_distinctive():
    assert len(set(ALL)) == len(ALL)
    assert all(len(s) >= 8 for s in ALL)        # no 4-digit PIN an order code could match


def test_each_source_is_scanned():
    w = SecretWatch()
    w.twisted_event({"log_format": "emu0: sending {cmd}", "cmd": f"AT+CPIN={SIM_PIN}"})
    try:
        raise ValueError(f"login refused for secret {AMI_SECRET}")
    except ValueError:
        w.twisted_event({"log_format": "AMI failed", "log_failure": Failure()})
    record = logging.LogRecord("sqlalchemy", logging.INFO, __file__, 1, "url %s", (f"x:{WEBHOOK_SECRET}@h",), None)
    w.stdlib_handler().handle(record)
    w.event("sms.modem_alert", {"reason": f"PIN {SIM_PIN} refused"})
    w.process_output(f"pin {SIM_PIN}".encode(), b"", "yihu modem pin")
    assert [h[0] for h in w.hits] == ["log line", "log line", "stdlib log sqlalchemy", "event sms.modem_alert",
                                      "stdout of yihu modem pin"]
    assert all("<SECRET>" in h[2] and h[1] not in h[2] for h in w.hits)


def test_clean_text_is_no_hit():
    w = SecretWatch()
    w.twisted_event({"log_format": "emu0: {reason}", "reason": "SIM PIN refused: +CME ERROR: 16"})
    w.scan("AT+CPIN=****", "x")
    assert w.hits == []


def test_the_suite_watch_is_installed():
    from twisted.logger import globalLogPublisher
    assert conftest.SECRET_WATCH is not None
    assert conftest.SECRET_WATCH.twisted_event in globalLogPublisher._observers


@pytest_twisted.inlineCallbacks
def test_the_suite_watch_reads_subprocess_output_and_log_lines():
    # leaks on purpose through the suite's own hooks, then takes them back out of the watch
    # (so that this test's teardown does not fail for them)
    import subprocess
    import sys

    from twisted.internet import utils
    from twisted.logger import Logger
    watch = conftest.SECRET_WATCH
    before = len(watch.hits)
    try:
        code = f"import sys; print('pin {SIM_PIN}'); print('{AMI_SECRET}', file=sys.stderr)"
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        yield utils.getProcessOutputAndValue(sys.executable, ["-c", code])
        Logger().info("modem: {cmd}", cmd=f"AT+CPIN={SIM_PIN}")
        logging.getLogger("yihu.test").warning("webhook key %s", WEBHOOK_SECRET)
        wheres = [h[0] for h in watch.hits[before:]]
    finally:
        del watch.hits[before:]
    assert sum(w.startswith("stdout of") for w in wheres) >= 2 and sum(w.startswith("stderr of") for w in wheres) >= 2
    assert "log line" in wheres and "stdlib log yihu.test" in wheres
