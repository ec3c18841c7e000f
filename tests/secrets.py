"""The secrets the test suite uses, and the suite-wide check that none of them ever reaches a
log line, an error message, an event or a subprocess's output.

Every test that needs a SIM PIN, an AMI secret, a webhook key or a call-token key takes it from
here; API keys made during a test are registered with `watch_also`.  The values
are distinctive (no 4-digit PIN that an order code or a port could match by chance), so that
finding one is proof of a leak.  A new kind of secret gets a line here and a place in ALL.

tests/conftest.py installs one `SecretWatch` for the whole run: a twisted.logger observer, a
stdlib logging handler, a wrapper around gateway.eventlog.build_event (every event logged) and around the ways tests run
subprocesses (subprocess.run, twisted's getProcessOutputAndValue and spawnProcess).  Each test fails in its
teardown if anything it caused leaked a secret (naming where), and the session fails for leaks
outside any test.  tests/test_no_secret_in_logs.py shows the watch finds each kind of leak.
"""
from __future__ import annotations

SIM_PIN = "39517264"                 # the emulated SIM's PIN (SIMs take 4 to 8 digits)
WRONG_SIM_PIN = "48263915"           # a wrong PIN a configuration gives
AMI_SECRET = "rig-secret"            # the emulated Asterisk's manager user (gateway/ami/emulator/server.py)
WRONG_AMI_SECRET = "ami-Wrong-3e8a51"
UNIT_AMI_SECRET = "ami-Unit-7d41c0e9"   # read from a credential file (ami.secret_file, the emulators' --secret-file)
WEBHOOK_SECRET = "whk-Secret-9c2d7a"
CALL_TOKEN_KEY = b"tok-Key-5b8e2f71c9a04d36e1b7a2c8"   # ivr.call_token_key (32 bytes)

ALL = (SIM_PIN, WRONG_SIM_PIN, AMI_SECRET, WRONG_AMI_SECRET, UNIT_AMI_SECRET, WEBHOOK_SECRET, CALL_TOKEN_KEY.decode())

# Secrets made while the suite runs (the HTTP API keys tests/_http_rig.py creates): watched too.
MADE: list[str] = []


def watch_also(secret: str) -> str:
    MADE.append(secret)
    return secret


class SecretWatch:
    """Scans text for the known secrets; keeps each hit as (where, secret, excerpt)."""

    def __init__(self, secrets=ALL, made=MADE):
        self._fixed = tuple(s for s in secrets if s)
        self._made = made
        self.hits: list[tuple[str, str, str]] = []

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._fixed + tuple(self._made)

    def scan(self, text, where: str) -> None:
        if not text:
            return
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        elif not isinstance(text, str):
            text = repr(text)
        for s in self.secrets:
            i = text.find(s)
            if i >= 0:
                excerpt = text[max(0, i - 60):i] + "<SECRET>" + text[i + len(s):i + len(s) + 20]
                self.hits.append((where, s, excerpt))

    # --- the sources ------------------------------------------------------------------------
    def twisted_event(self, event: dict) -> None:
        from twisted.logger import formatEvent
        text = formatEvent(event)
        f = event.get("log_failure")
        if f is not None:
            text += "\n" + f.getTraceback()
        self.scan(text, "log line")

    def stdlib_handler(self):
        import logging
        watch = self

        class Handler(logging.Handler):
            def emit(self, record):
                try:
                    watch.scan(self.format(record), f"stdlib log {record.name}")
                except Exception:  # noqa: BLE001 - a log handler must never raise
                    pass
        h = Handler(level=logging.DEBUG)
        h.setFormatter(logging.Formatter("%(message)s %(exc_text)s"))
        return h

    def event(self, kind: str, payload) -> None:
        self.scan(f"{kind} {payload!r}", f"event {kind}")

    def process_output(self, out, err, what: str) -> None:
        self.scan(out, f"stdout of {what}")
        self.scan(err, f"stderr of {what}")
