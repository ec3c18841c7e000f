"""Scheduling and retry policy of the modem bank: pure logic, no ports, no reactor.

- Which modem gets a message: the healthy one that will finish it soonest, given what it has
  in hand, its measured time per segment and its rate limit.  All parts of a message go on one
  modem (handsets join parts by sender number and reference).
- What a +CMS ERROR means for the segment and for the modem (TS 27.005 3.2.5, 24.011 E.2).
"""
from __future__ import annotations

from dataclasses import dataclass

# --- errors --------------------------------------------------------------------------------

RETRY = "retry"            # later, or on another modem
OUR_BUG = "our_bug"        # the PDU or the command is wrong: retrying cannot help
BENCH = "bench"            # the modem/SIM is unfit: bench it, the segment goes elsewhere
FAIL = "fail"              # the network refuses this recipient: report, do not retry

# network-side temporary failures (24.011 E.2 / 27.005): try later or elsewhere
RETRYABLE_CMS = {38, 41, 42, 47, 331, 332, 500, 512, 513, 514, 515}
# the PDU or parameters we gave are wrong (300-305: ME failure excluded); 304 = invalid PDU param
OUR_BUG_CMS = {302, 303, 304, 305, 325}
# SIM missing/failed/PIN: this modem cannot send (310 SIM not inserted, 311 PIN, 313 SIM failure,
# 314 busy handled as retry, 315 wrong SIM, 316/317/318 PUK/PIN2, 330 SMSC unknown)
BENCH_CMS = {310, 311, 312, 313, 315, 316, 317, 318, 330}
# permanent refusals for this destination (barred, unassigned number, ...)
FAIL_CMS = {1, 8, 10, 21, 27, 28, 29, 30, 50, 69, 81, 95, 96, 97, 98, 99, 111, 127}


def classify_cms(code: int) -> str:
    if code in OUR_BUG_CMS:
        return OUR_BUG
    if code in BENCH_CMS:
        return BENCH
    if code in FAIL_CMS:
        return FAIL
    # 38/42/47/331/332 and anything unknown (incl. 500 "unknown error"): retry, bounded by attempts
    return RETRY


# --- planning ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModemView:
    name: str
    idle: bool                 # nothing in hand right now
    free_at: float             # when it will have finished what it has in hand (estimate)
    seconds_per_segment: float
    min_interval: float = 0.0  # rate limit: seconds between two segments


@dataclass(frozen=True)
class Job:
    key: object                # message id
    segments: int              # segments still to send
    modem: str | None = None   # pinned (a part already went out on it)


def finish_time(m: ModemView, segments: int, start: float) -> float:
    per = max(m.seconds_per_segment, m.min_interval)
    return start + segments * per


def plan(jobs: list[Job], modems: list[ModemView], now: float) -> list[tuple[object, str]]:
    """Assign queued jobs (in queue order) to the modems that will finish them soonest.

    Returns only the assignments that start now, i.e. to a modem that is idle; jobs whose best
    modem is busy stay queued (they go there when it frees, unless another frees sooner).
    Ties go to the modem named first (stable).
    """
    free = {m.name: max(m.free_at, now) for m in modems}
    by_name = {m.name: m for m in modems}
    idle_left = {m.name for m in modems if m.idle}
    out = []
    for job in jobs:
        if not idle_left:
            break
        if job.modem is not None:
            if job.modem not in by_name:
                continue                       # its modem is not healthy now: the job waits
            best = job.modem
        else:
            best = min(by_name, key=lambda n: (finish_time(by_name[n], job.segments, free[n]),
                                               list(by_name).index(n)))
        free[best] = finish_time(by_name[best], job.segments, free[best])
        if best in idle_left:
            idle_left.discard(best)
            out.append((job.key, best))
    return out
