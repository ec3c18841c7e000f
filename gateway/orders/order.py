"""What a dispatcher asks for: the order request, its targets, and who commands on scene."""
from __future__ import annotations

from dataclasses import dataclass, field

from gateway.escalation.deadlines import RULES

STABILITY, RESCUE, ORDINARY = "stability", "rescue", "ordinary"
KINDS = (STABILITY, RESCUE, ORDINARY)

# DIGEST, on-scene command (现场处置机制): the kind of incident decides who commands on scene.
ONSCENE_COMMANDER = {
    STABILITY: "县公安局局长",          # stability / public order: the police chief
    RESCUE: "分管副县长",               # rescue / relief: the deputy county head in charge
    ORDINARY: "专业队伍负责人",          # ordinary: the head of the professional team
}

TARGET_HOWS = ("all", "kind", "township", "teams")


@dataclass(frozen=True)
class Target:
    how: str                              # all / kind / township / teams
    values: tuple[str, ...] = ()

    @classmethod
    def parse(cls, s: str) -> "Target":
        """"all", "kind:public,expert", "township:白塔镇", "teams:PUB-01,PRO-04"."""
        s = s.strip()
        if s == "all":
            return cls("all")
        how, _, rest = s.partition(":")
        values = tuple(v.strip() for v in rest.replace("，", ",").split(",") if v.strip())
        if how not in TARGET_HOWS or how == "all" or not values:
            raise ValueError(f"target {s!r}: use all, kind:K, township:T or teams:CODE,CODE")
        return cls(how, values)

    def describe(self) -> str:
        return self.how if self.how == "all" else f"{self.how}:{','.join(self.values)}"


@dataclass(frozen=True)
class OrderRequest:
    incident_ref: str
    kind: str
    text: str
    target: Target
    rule: str
    voice: bool = False
    created_by: str = "system"
    idempotency_key: str | None = None
    onscene_name: str | None = None       # e.g. the deputy county head's name, added to the role
    major: bool = False                   # 重大突出事件: situation reports on a cadence, leaders informed
    drill: bool = False                   # an assembly drill on the real phones: 【演练】, counted apart

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"order kind {self.kind!r}: one of {', '.join(KINDS)}")
        if self.rule not in RULES:
            raise ValueError(f"response rule {self.rule!r}: one of {', '.join(RULES)}")
        if not self.text.strip() or not self.incident_ref.strip():
            raise ValueError("an order needs an incident reference and a text")

    def onscene_commander(self) -> str:
        role = ONSCENE_COMMANDER[self.kind]
        return f"{role} {self.onscene_name}" if self.onscene_name else role


@dataclass(frozen=True)
class CreatedOrder:
    order_id: int
    code: str
    sent_at_ts: float
    team_ids: tuple[int, ...]
    timers: tuple[tuple[int, float], ...] = field(default=())   # (order_team_id, first due) for the engine
    existing: bool = False                                      # idempotency key seen before
