"""The simulated people of a drill, planned in advance from a seed: who does what, when.

Citizens call 110 / 119 / 122 at a steady rate (Poisson arrivals); most are answered, some give
up in the queue or the IVR, a few are cut off.  Each team named by the order is, by draw, an SMS
team, a keypad team or a silent one.  Commanders and deputies answer after delays drawn from
log-normal distributions (most answer within two minutes, a few much later), and they type the
way people do: full-width digits, the code before or after the word, a report after 处置完毕,
and now and then a typo that the gateway refuses, followed by the corrected message.

Pure: no transport, no clock.  Times are seconds after the order; "{code}" in a text is the
order's code, known once it is sent.  The runner plays the plan; the report is checked
against it.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

SMS, KEYPAD, SILENT = "sms", "keypad", "silent"
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")

RECEIPT_TEXTS = ("{code} 收到", "收到{code}", "收到，{code}", "{fw} 收到", "{code}收到！", "收到 {fw}")
ARRIVAL_TEXTS = ("{code} 到达", "到达现场 {code}", "{fw}到达", "{code} 已到达现场", "已到达 {code}")
REPORT_TEXTS = ("{code} 处置完毕 无需后续跟进 负责人{name}",
                "处置完毕{code}，需后续跟进，负责人{name} 县应急管理局",
                "{fw} 处置完毕 现场已清理 需后续跟进 负责人{name}")
TYPOS = ("{code} 收倒", "{code} 到大", "O{tail} 收到", "{code} 己到达")
LINES = (("110", 0.6), ("119", 0.15), ("122", 0.25))
# Who gives up does so in the queue: after 30-90 s of waiting, or at once (within seconds).  While
# a call-taker is logged in, 110/119/122 go straight to the queue (dialplans/README.md): nobody
# meets the IVR, so nobody can give up there.
AT_ONCE = "abandoned_at_once"
CITIZEN_OUTCOMES = (("answered", 0.80), ("abandoned_queue", 0.12), (AT_ONCE, 0.05), ("failed", 0.03))


@dataclass(frozen=True)
class Person:
    team_code: str
    team_name: str
    role: str                 # commander / deputy
    name: str
    phone: str


@dataclass(frozen=True)
class Act:
    at: float                 # seconds after the order
    kind: str                 # sms / keypad_call (the order call) / keypad_line (feedback line) / citizen
    phone: str
    text: str = ""            # SMS text; keypad digit; citizen: the line
    status: str | None = None  # what the act means: received / arrived / finished; None: a typo
    team_code: str | None = None
    who: str = ""             # the person's name (citizen: "")
    role: str = ""            # commander / deputy / citizen
    ring: float = 0.0         # keypad_call: seconds the phone rings before it is answered
    outcome: str = ""         # citizen: answered / abandoned_queue / failed (the emulated PBX's outcomes)
    queue_seconds: float = 0.0
    talk_seconds: float = 0.0

    def message(self, code: str) -> str:
        tail = code[1:]
        return self.text.format(code=code, fw=code.translate(FULL_WIDTH), tail=tail)


@dataclass
class TeamPlan:
    team_code: str
    team_name: str
    behaviour: str            # sms / keypad / silent
    commander: Person
    deputy: Person
    acts: list = field(default_factory=list)

    def first(self, status: str) -> Act | None:
        """The act that gives this status first (a later step proves the earlier ones)."""
        proves = {"received": ("received", "arrived", "finished"), "arrived": ("arrived", "finished"),
                  "finished": ("finished",)}[status]
        found = [a for a in self.acts if a.status in proves]
        return min(found, key=lambda a: a.at) if found else None


@dataclass
class Plan:
    seed: int
    minutes: float
    response_minutes: int
    teams: list
    citizens: list

    def acts(self) -> list[Act]:
        return sorted([a for t in self.teams for a in t.acts] + self.citizens, key=lambda a: a.at)

    def team(self, code: str) -> TeamPlan:
        return next(t for t in self.teams if t.team_code == code)


def _lognormal(rng: random.Random, median_s: float, sigma: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, rng.lognormvariate(math.log(median_s), sigma)))


def _pick(rng: random.Random, weighted) -> str:
    r, acc = rng.random(), 0.0
    for value, weight in weighted:
        acc += weight
        if r < acc:
            return value
    return weighted[-1][0]


def plan_team(rng: random.Random, commander: Person, deputy: Person, behaviour: str, response_minutes: int,
              minutes: float) -> TeamPlan:
    plan = TeamPlan(commander.team_code, commander.team_name, behaviour, commander, deputy)
    if behaviour == SILENT:
        return plan
    end = minutes * 60 - 180          # every answer is in before the drill ends
    limit = response_minutes * 60

    def who():
        return commander if rng.random() < 0.7 else deputy

    def sms(at, texts, status, person=None, **fmt):
        person = person or who()
        text = rng.choice(texts).replace("{name}", fmt.get("name", person.name))
        if status == "received" and rng.random() < 0.15:          # a typo first, corrected a minute later
            plan.acts.append(Act(at, SMS, person.phone, rng.choice(TYPOS), None, plan.team_code, person.name,
                                 person.role))
            at += rng.uniform(40, 90)
        plan.acts.append(Act(at, SMS, person.phone, text, status, plan.team_code, person.name, person.role))
        return at

    if behaviour == KEYPAD:
        ring, after = rng.uniform(3, 20), rng.uniform(1, 4)
        plan.acts.append(Act(ring + after, "keypad_call", commander.phone, "1", "received", plan.team_code,
                             commander.name, commander.role, ring=ring))
        received = ring + after
    else:
        received = sms(_lognormal(rng, 90, 0.6, 20, 480), RECEIPT_TEXTS, "received")
    # Arrival: most well within the deadline, some after it (a late team the report must show).
    arrived = max(received + 60, rng.gauss(0.7 * limit, 0.25 * limit))
    if arrived < end:
        if behaviour == KEYPAD:
            plan.acts.append(Act(arrived, "keypad_line", commander.phone, "2", "arrived", plan.team_code,
                                 commander.name, commander.role))
        else:
            sms(arrived, ARRIVAL_TEXTS, "arrived")
        finished = arrived + rng.uniform(4, 12) * 60
        if finished < end and rng.random() < 0.6:
            sms(finished, REPORT_TEXTS, "finished", commander)
    return plan


def plan_citizens(rng: random.Random, minutes: float, per_hour: float, first_caller: int = 500) -> list[Act]:
    acts, t, n = [], 0.0, 0
    if per_hour <= 0:
        return acts
    while True:
        t += rng.expovariate(per_hour / 3600)
        if t > minutes * 60 - 240:          # every call ends within the drill
            return acts
        outcome = _pick(rng, CITIZEN_OUTCOMES)
        queue = rng.uniform(30, 90) if outcome == "abandoned_queue" else rng.expovariate(1 / 15) + 2
        if outcome == AT_ONCE:
            outcome, queue = "abandoned_queue", min(queue, 4.0)     # gone before anyone could answer
        acts.append(Act(t, "citizen", f"+447700900{first_caller + n % 400:03d}", _pick(rng, LINES), None,
                        role="citizen", outcome=outcome, queue_seconds=round(queue, 1),
                        talk_seconds=round(rng.uniform(40, 150), 1)))
        n += 1


def plan_drill(pairs: list[tuple[Person, Person]], seed: int, minutes: float, response_minutes: int,
               silent: int = 1, keypad_share: float = 0.35, citizens_per_hour: float = 30) -> Plan:
    """pairs: (commander, deputy) of each team the order names.  `silent` teams say nothing."""
    rng = random.Random(seed)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    silent_ix = set(order[:min(silent, len(pairs))])
    teams = []
    for i, (commander, deputy) in enumerate(pairs):
        behaviour = SILENT if i in silent_ix else (KEYPAD if rng.random() < keypad_share else SMS)
        teams.append(plan_team(rng, commander, deputy, behaviour, response_minutes, minutes))
    return Plan(seed, minutes, response_minutes, teams, plan_citizens(rng, minutes, citizens_per_hour))
