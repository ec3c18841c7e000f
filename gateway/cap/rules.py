"""The rule table: which order a CAP alert's info block makes.  Pure functions."""
from __future__ import annotations

from gateway.cap.config import AREA_TOWNSHIPS, CapRule
from gateway.cap.document import Info
from gateway.orders.order import Target


def _geocode_matches(wanted: str, have: tuple[tuple[str, str], ...]) -> bool:
    name, _, value = wanted.partition("=")
    name, value = name.strip(), value.strip()
    for n, v in have:
        if n == name and (v == value or (value.endswith("*") and v.startswith(value[:-1]))):
            return True
    return False


def rule_matches(rule: CapRule, info: Info) -> bool:
    if rule.category and not set(rule.category) & set(info.categories):
        return False
    if rule.event and not any(w in info.event for w in rule.event):
        return False
    if rule.severity and info.severity not in rule.severity:
        return False
    if rule.urgency and info.urgency not in rule.urgency:
        return False
    if rule.area and not any(w in desc for w in rule.area for desc in info.area_descs):
        return False
    if rule.geocode and not any(_geocode_matches(g, info.geocodes) for g in rule.geocode):
        return False
    return True


def first_match(rules, info: Info | None) -> CapRule | None:
    if info is None:
        return None
    return next((r for r in rules if rule_matches(r, info)), None)


def resolve_target(rule: CapRule, info: Info, townships) -> Target:
    """The rule's target; `township:*` becomes the roster's townships named in an areaDesc
    (LookupError when none is)."""
    if rule.target != AREA_TOWNSHIPS:
        return Target.parse(rule.target)
    named = sorted({t for t in townships if t and any(t in d for d in info.area_descs)})
    if not named:
        raise LookupError(f"rule {rule.name!r}: no township of the roster is named in the area "
                          f"({'; '.join(info.area_descs) or 'no areaDesc'})")
    return Target("township", tuple(named))
