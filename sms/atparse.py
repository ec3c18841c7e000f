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


# --- stored messages: the PDU after its header, recognised by its shape ------------------------

_HEX = re.compile(r"[0-9A-Fa-f]+")


def _pdu_octets(line: str) -> bytes | None:
    s = line.strip().strip('"')
    if len(s) < 4 or len(s) % 2 or not _HEX.fullmatch(s):
        return None
    return bytes.fromhex(s)


def pdu_shape(line: str, tpdu_length: int | None) -> int:
    """How well a line fits as the PDU announced by a +CMGR/+CMGL/+CDS header: 2 when it is hex
    of exactly the announced length (SMSC octets + TPDU length), 1 when it is hex whose SMSC
    field leaves a TPDU behind (some makes announce a wrong length: Gammu's dumps show 78 for
    any size), 0 when it cannot be a PDU (an unsolicited line such as +CTZV, *PSUTTZ, DST: 0)."""
    data = _pdu_octets(line)
    if data is None:
        return 0
    smsc = data[0]
    if smsc > 12 or 1 + smsc >= len(data):
        return 0
    return 2 if tpdu_length is not None and len(data) == 1 + smsc + tpdu_length else 1


def stored_messages(lines: list[str], prefix: str) -> tuple[list[tuple[StoredHeader, str | None]], list[str]]:
    """Split the information lines of AT+CMGR / AT+CMGL into (header, PDU) pairs and the other
    lines (unsolicited results that arrived inside the response).  Each header takes the
    best-fitting line before the next header, not merely the next line; a header with no
    fitting line gets None (the message stays on the SIM)."""
    parse = parse_cmgr_header if prefix.upper().startswith("+CMGR") else parse_cmgl_header
    entries: list[tuple[StoredHeader, str | None]] = []
    others: list[str] = []
    spans: list[tuple[StoredHeader, list[str]]] = []
    for ln in lines:
        h = parse(ln) if ln.upper().startswith(prefix.upper()) else None
        if h is not None:
            spans.append((h, []))
        elif spans:
            spans[-1][1].append(ln)
        else:
            others.append(ln)
    for h, span in spans:
        scored = [(pdu_shape(ln, h.length), k) for k, ln in enumerate(span)]
        best = max((sk for sk in scored if sk[0] > 0), key=lambda sk: (sk[0], -sk[1]), default=None)
        pdu = span[best[1]].strip().strip('"') if best else None
        entries.append((h, pdu))
        others.extend(ln for k, ln in enumerate(span) if best is None or k != best[1])
    return entries, others


_KIND = re.compile(r"[+^*]?([A-Za-z][A-Za-z0-9_]{0,15})\s*:")


def urc_kind(line: str) -> str:
    """'+CTZV: 26/12/01,...' → 'CTZV', '^NWTIME: ...' → 'NWTIME', '*PSUTTZ: ...' → 'PSUTTZ';
    a line with no such prefix → 'other'."""
    s = line.strip()
    m = _KIND.match(s)
    if m:
        return m.group(1).upper()
    if re.fullmatch(r"[A-Za-z][A-Za-z ]{0,15}", s):       # RDY, RING, SMS Ready
        return s.upper().replace(" ", "_")
    return "other"


def parse_cpms_current(lines: list[str]) -> str | None:
    """'+CPMS: "SM",3,30,"SM",3,30,"SM",3,30' (answer to AT+CPMS?) → 'SM' (the read storage)."""
    for line in lines:
        if line.upper().startswith("+CPMS"):
            m = re.search(r"[A-Za-z_]+", line[5:].lstrip(":"))
            return m.group(0).upper() if m else None
    return None
