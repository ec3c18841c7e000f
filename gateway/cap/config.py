"""[cap]: where CAP alerts come from, how they are checked, and the rule table that maps them to
orders.  A rule is a TOML table in `cap.rules`; the first rule whose every given criterion
matches the alert's zh-CN info block decides the order (empty criteria match anything)."""
from __future__ import annotations

from dataclasses import dataclass, field

from gateway.escalation.deadlines import RULES
from gateway.orders.order import KINDS, Target

CATEGORIES = ("Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra",
              "CBRNE", "Other")
SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
URGENCIES = ("Immediate", "Expected", "Future", "Past", "Unknown")
AREA_TOWNSHIPS = "township:*"        # target: the roster's townships named in the alert's areaDesc


@dataclass(frozen=True)
class CapRule:
    """One row of the rule table: criteria (any listed value matches) -> the order."""
    name: str = ""                          # shown on the board, in events and the audit
    category: list[str] = field(default_factory=list)    # Met, Geo, Fire, ... (any of)
    event: list[str] = field(default_factory=list)       # words the event contains, e.g. "暴雨"
    severity: list[str] = field(default_factory=list)    # Extreme, Severe, ...
    urgency: list[str] = field(default_factory=list)     # Immediate, Expected, ...
    area: list[str] = field(default_factory=list)        # words an areaDesc contains, e.g. "白塔镇"
    geocode: list[str] = field(default_factory=list)     # "valueName=value", value may end in *
    target: str = AREA_TOWNSHIPS            # all / kind:K / township:T / township:* / specialty:S / teams:A,B
    kind: str = "rescue"                    # the order's kind: stability / rescue / ordinary
    response_rule: str = "same_township"    # same_township / leaving_city
    voice: bool = False                     # call commanders too
    confirm: bool = True                    # a dispatcher confirms before anything is sent

    def __post_init__(self):
        for key, allowed in (("category", CATEGORIES), ("severity", SEVERITIES), ("urgency", URGENCIES)):
            bad = [v for v in getattr(self, key) if v not in allowed]
            if bad:
                raise ValueError(f"{key}: rule {self.name!r}: {', '.join(bad)} not one of {', '.join(allowed)}")
        for g in self.geocode:
            if "=" not in g:
                raise ValueError(f"geocode: rule {self.name!r}: {g!r} must be valueName=value")
        if self.kind not in KINDS:
            raise ValueError(f"kind: rule {self.name!r}: one of {', '.join(KINDS)}")
        if self.response_rule not in RULES:
            raise ValueError(f"response_rule: rule {self.name!r}: one of {', '.join(RULES)}")
        if self.target != AREA_TOWNSHIPS:
            Target.parse(self.target)       # ValueError naming the target


@dataclass(frozen=True)
class CapSection:
    inbox_dir: str = ""                   # watched directory of CAP files; empty: API only
    poll_s: float = 5.0                   # how often inbox_dir is looked at
    trusted_certs: list[str] = field(default_factory=list)   # PEM certificates whose XML signatures are trusted
    require_signature: bool = True        # with trusted_certs: an unsigned alert is refused
    max_bytes: int = 262144               # a larger document is refused unread
    max_text_chars: int = 16384           # an element with more text is refused, named
    text_chars: int = 120                 # the order text is cut to this (the full text is on the board)
    rules: list[CapRule] = field(default_factory=list)   # the rule table: the first matching rule decides

    def __post_init__(self):
        if self.poll_s <= 0:
            raise ValueError("poll_s must be positive")
        if self.max_bytes < 1024 or self.max_text_chars < 64 or self.text_chars < 20:
            raise ValueError("max_bytes (>= 1024), max_text_chars (>= 64) and text_chars (>= 20) are too small")
        from gateway.cap.signature import load_certs
        load_certs(self.trusted_certs)      # unreadable or not PEM: refused at start, naming the file
        for i, r in enumerate(self.rules):
            if not r.name:
                raise ValueError(f"rules: rule {i + 1} has no name (every rule needs one)")
        names = [r.name for r in self.rules]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"rules: names used twice: {', '.join(sorted(dup))}")
