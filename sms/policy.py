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


# --- status reports (TS 23.040 9.2.3.15, TP-Status) --------------------------------------------

COMPLETED = "completed"        # 0x00-0x1F: transaction completed (0x00 received by the handset)
STILL_TRYING = "still_trying"  # 0x20-0x3F: temporary error, the SC is still trying to transfer it
PERMANENT = "permanent"        # 0x40-0x5F: permanent error, the SC makes no more attempts
GAVE_UP = "gave_up"            # 0x60-0x7F: temporary error, the SC makes no more attempts
RESERVED = "reserved"          # 0x80-0xFF: bit 7 is reserved: nothing can be concluded

STATUS_NAMES = {0x00: "received by the handset", 0x01: "forwarded, delivery unconfirmed",
                0x02: "replaced by the SC", 0x20: "congestion", 0x21: "handset busy",
                0x22: "no response from the handset", 0x23: "service rejected",
                0x24: "quality of service not available", 0x25: "error in the handset",
                0x40: "remote procedure error", 0x41: "incompatible destination",
                0x42: "connection rejected by the handset", 0x43: "not obtainable",
                0x44: "quality of service not available", 0x45: "no interworking available",
                0x46: "validity period expired", 0x47: "deleted by the sender",
                0x48: "deleted by SC administration", 0x49: "message does not exist",
                0x60: "congestion", 0x61: "handset busy", 0x62: "no response from the handset",
                0x63: "service rejected", 0x64: "quality of service not available",
                0x65: "error in the handset"}


def classify_status(status: int) -> str:
    if not 0 <= status <= 0x7F:
        return RESERVED
    return (COMPLETED, STILL_TRYING, PERMANENT, GAVE_UP)[status >> 5]


def describe_status(status: int) -> str:
    kind = classify_status(status)
    name = STATUS_NAMES.get(status, "reserved or SC-specific value")
    return f"TP-Status {status:#04x} ({kind.replace('_', ' ')}: {name})"


def report_outcome(status: int, attempts: int, max_attempts: int, state: str) -> str | None:
    """The state a segment in `state` takes on a status report, or None to leave it as it is.

    completed → delivered.  Still trying → the SC holds it: an unknown outcome becomes "sent"
    (never resent); the report that ends the SC's attempts comes later.  Permanent → failed.
    The SC gave up on a temporary error (handset off, busy, congestion) → sent again while
    attempts are left (queued), then failed.  Reserved values settle nothing.
    """
    kind = classify_status(status)
    if kind == COMPLETED:
        return "delivered"
    if kind == STILL_TRYING:
        return "sent" if state in ("unknown", "submitting") else None
    if kind == PERMANENT:
        return "failed"
    if kind == GAVE_UP:
        return "queued" if attempts < max_attempts else "failed"
    return None


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
