"""The state of each part, as /health and the status board show it.

Every part of the gateway (database, HTTP, FastAGI, AMI link, each modem, escalation engine,
fan-out, webhooks, ...) reports a PartHealth.  /health answers 503 when any part the
configuration enables is down; a part that is one of several (a modem in a bank that still has
usable ones) makes it "degraded" but still 200, because the service as a whole still works.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

UP, DOWN, OFF = "up", "down", "off"


@dataclass(frozen=True)
class PartHealth:
    name: str
    ok: bool
    detail: str = ""
    state: str = ""              # up / down / starting / failed / stopped / off; from `ok` when empty
    enabled: bool = True         # False: switched off by the configuration, never turns /health red
    essential: bool = True       # False: one of several (a modem); down makes /health degraded, not 503

    @property
    def shown_state(self) -> str:
        if not self.enabled:
            return OFF
        return self.state or (UP if self.ok else DOWN)

    def as_dict(self) -> dict:
        return {"ok": self.ok or not self.enabled, "state": self.shown_state, "detail": self.detail}


def off(name: str, why: str) -> PartHealth:
    return PartHealth(name, True, why, enabled=False)


def collect(checks: Iterable[Callable]) -> list[PartHealth]:
    """Every check's parts, in order.  A check returns a PartHealth, a list of them, or the older
    (name, ok, detail) tuple."""
    out: list[PartHealth] = []
    for check in checks:
        result = check()
        items = result if isinstance(result, list) else [result]
        for item in items:
            if isinstance(item, PartHealth):
                out.append(item)
            else:
                name, ok, detail = item
                out.append(PartHealth(name, bool(ok), str(detail)))
    return out


def overall(parts: Iterable[PartHealth]) -> tuple[str, int]:
    """("ok" | "degraded" | "down", HTTP status): 503 when an enabled, essential part is down."""
    down = [p for p in parts if p.enabled and not p.ok]
    if any(p.essential for p in down):
        return "down", 503
    return ("degraded" if down else "ok"), 200
