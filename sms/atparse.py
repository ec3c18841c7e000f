"""Parsing the information lines of AT responses (TS 27.005 / 27.007), as real modems write them.

Lenient by design: missing quotes, empty fields, spaces or no space after the colon.  A line
that cannot be read gives None (the caller logs it), never an exception.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


def _fields(line: str, prefix: str) -> list[str] | None:
    if not line.upper().startswith(prefix.upper()):
        return None
    rest = line[len(prefix):].lstrip(":").strip()
    return [f.strip().strip('"').strip() for f in rest.split(",")] if rest else []


def _int(s: str) -> int | None:
    try:
        return int(s)
    except (TypeError, ValueError):
        return None


# --- signal and registration ------------------------------------------------------------------

def csq_to_dbm(line: str) -> int | None:
    """'+CSQ: 17,99' → -79 dBm (TS 27.007 8.5: 0 → -113, 31 → -51, 99 unknown)."""
    f = _fields(line, "+CSQ")
    if not f:
        return None
    rssi = _int(f[0])
    if rssi is None or rssi == 99 or not 0 <= rssi <= 31:
        return None
    return -113 + 2 * rssi


REG_STATES = {0: "not_registered", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming"}


@dataclass(frozen=True)
class Registration:
    stat: int | None
    lac: str | None = None
    ci: str | None = None

    @property
    def registered(self) -> bool:
        return self.stat in (1, 5)

    @property
    def name(self) -> str:
        return REG_STATES.get(self.stat, "unknown") if self.stat is not None else "unknown"


def parse_creg(lines: list[str]) -> Registration | None:
    """Answer to AT+CREG? (<n>,<stat>[,<lac>,<ci>[,<AcT>]]), or an unsolicited +CREG: <stat>[,...].

    Some makes omit quotes, leave the LAC empty or break the quoting; the state is what matters.
    """
    for line in lines:
        if not line.upper().startswith("+CREG"):
            continue
        rest = line[5:].lstrip(":").strip()
        parts = [p.strip().strip('"') for p in rest.split(",")]
        if not parts or parts == [""]:
            return None
        # solicited answers start with <n>; an unsolicited one starts with <stat>
        if len(parts) >= 2 and _int(parts[1]) is not None:
            stat = _int(parts[1])
            lac = parts[2] if len(parts) > 2 and parts[2] else None
            ci = parts[3] if len(parts) > 3 and parts[3] else None
        else:
            stat = _int(parts[0])
            lac = ci = None
        return Registration(stat, lac, ci)
    return None


# --- CNMI: new-message indications ------------------------------------------------------------

def _parse_range(group: str) -> set[int]:
    out: set[int] = set()
    for item in group.split(","):
        item = item.strip()
        if not item:
            continue
        if "-" in item:
            a, _, b = item.partition("-")
            if _int(a) is not None and _int(b) is not None:
                out.update(range(int(a), int(b) + 1))
        elif _int(item) is not None:
            out.add(int(item))
    return out


def parse_cnmi_ranges(lines: list[str]) -> list[set[int]] | None:
    """'+CNMI: (0-2),(0,1,3),(0),(0,1),(0,1)' → [{0,1,2},{0,1,3},{0},{0,1},{0,1}]."""
    for line in lines:
        if line.upper().startswith("+CNMI"):
            groups = re.findall(r"\(([^)]*)\)", line)
            if groups:
                return [_parse_range(g) for g in groups]
    return None


def choose_cnmi(ranges: list[set[int]] | None) -> tuple[int, int, int, int, int]:
    """Pick <mode>,<mt>,<bm>,<ds>,<bfr>: indications to the TE, new SMS stored with +CMTI (mt=1,
    so that the message is on the SIM — durable — before we read it), status reports routed
    to us (+CDS, ds=1, else stored with +CDSI, ds=2), buffer flushed (bfr=0) when allowed.
    """
    if not ranges:
        return (2, 1, 0, 1, 0)

    def pick(i: int, prefs: tuple[int, ...], default: int) -> int:
        allowed = ranges[i] if i < len(ranges) else set()
        for p in prefs:
            if p in allowed:
                return p
        return min(allowed) if allowed else default

    mode = pick(0, (2, 1, 3), 2)
    mt = pick(1, (1, 3, 2), 1)
    bm = pick(2, (0,), 0)
    ds = pick(3, (1, 2, 0), 0)
    bfr = pick(4, (0,), 0)
    return (mode, mt, bm, ds, bfr)


def cnmi_fallbacks(best: tuple[int, ...]) -> list[tuple[int, ...]]:
    """What to try when the modem refuses the chosen setting despite its ranges."""
    out = [best]
    for alt in ((2, 1, 0, 2, 0), (2, 1, 0, 0, 0), (1, 1, 0, 0, 0), (1, 1)):
        if alt not in out:
            out.append(alt)
    return out


# --- CPMS: message storage --------------------------------------------------------------------

def parse_cpms_ranges(lines: list[str]) -> list[list[str]]:
    """'+CPMS: ("SM","ME"),("SM","ME"),("SM","ME")' → [["SM","ME"], ...]; tolerates missing
    parentheses/quotes ('+CPMS: "SM","SM","SM"') and an empty answer."""
    for line in lines:
        if line.upper().startswith("+CPMS"):
            rest = line[5:].lstrip(":").strip()
            groups = re.findall(r"\(([^)]*)\)", rest)
            if groups:
                return [[m.upper() for m in re.findall(r"[A-Za-z_]+", g)] for g in groups]
            names = [m.upper() for m in re.findall(r"[A-Za-z_]+", rest)]
            return [[n] for n in names]
    return []


def choose_cpms(ranges: list[list[str]]) -> tuple[str, ...] | None:
    """Storage for read/delete, write, receive.  SIM ("SM") first: it survives a modem reset.
    None when the modem lists nothing (keep its default storage)."""
    if not ranges:
        return None
    chosen = []
    for i in range(min(3, len(ranges))):
        mems = ranges[i]
        for pref in ("SM", "ME", "MT"):
            if pref in mems:
                chosen.append(pref)
                break
        else:
            if not mems:
                return None
            chosen.append(mems[0])
    return tuple(chosen)


# --- message listing --------------------------------------------------------------------------

@dataclass(frozen=True)
class StoredHeader:
    index: int | None
    stat: int | None
    length: int | None


def parse_cmgr_header(line: str) -> StoredHeader | None:
    """'+CMGR: <stat>,[<alpha>],<length>' (some makes omit alpha or stat)."""
    f = _fields(line, "+CMGR")
    if f is None:
        return None
    nums = [_int(x) for x in f]
    length = nums[-1] if nums else None
    stat = nums[0] if len(f) > 1 else None
    return StoredHeader(index=None, stat=stat, length=length)


def parse_cmgl_header(line: str) -> StoredHeader | None:
    """'+CMGL: <index>,<stat>,[<alpha>],<length>'."""
    f = _fields(line, "+CMGL")
    if not f:
        return None
    nums = [_int(x) for x in f]
    return StoredHeader(index=nums[0], stat=nums[1] if len(nums) > 1 else None, length=nums[-1])


def parse_cmti(line: str) -> tuple[str, int] | None:
    """'+CMTI: "SM",3' → ("SM", 3)."""
    f = _fields(line, "+CMTI")
    if not f or len(f) < 2 or _int(f[-1]) is None:
        return None
    return (f[0] or "SM", int(f[-1]))


def parse_cmgs(line: str) -> int | None:
    f = _fields(line, "+CMGS")
    return _int(f[0]) if f else None
