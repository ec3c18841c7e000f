"""Decoding PDUs read from a modem (+CMGR, +CMGL, +CDS): SMS-DELIVER and SMS-STATUS-REPORT.

Every PDU is untrusted: the decoder checks each length against the octets actually present and
raises `PduError` with a clear reason instead of inventing text (python-gsmmodem-new silently
returns what it could read).  The field primitives (addresses, septets, timestamps) are
python-gsmmodem-new's; the GSM-7 alphabet is sms.gsm7 (TS 23.038: § at 0x5F, not a backtick).  UCS-2 is read as UTF-16 so that surrogate pairs (rare
characters in Chinese names) come back as one character.
"""
from __future__ import annotations

import binascii
from dataclasses import dataclass, field
from datetime import datetime

from gsmmodem import pdu as gp

from sms import gsm7


class PduError(ValueError):
    """Not a decodable inbound SMS; str() says why."""


@dataclass(frozen=True)
class Concat:
    ref: int
    total: int
    seq: int
    ref_bits: int


@dataclass(frozen=True)
class Deliver:
    sender: str
    text: str
    smsc: str | None
    scts: bytes                    # TP-SCTS as sent (7 octets); `timestamp` reads it
    encoding: str                  # gsm7 / ucs2 / 8bit
    concat: Concat | None = None
    udh: bytes = b""
    note: str = ""                 # e.g. the modem announced a wrong length

    @property
    def timestamp(self) -> datetime | None:
        """The network's time stamp; read on demand (the gateway times a reply by its own clock)."""
        return _scts_time(self.scts)


@dataclass(frozen=True)
class StatusReport:
    mr: int                        # TP-MR of the submitted segment
    recipient: str
    status: int                    # TP-ST
    smsc: str | None = None
    discharge: datetime | None = None
    delivered: bool = field(init=False)
    final: bool = field(init=False)

    def __post_init__(self):
        # TS 23.040 9.2.3.15: 0x00-0x1F transaction completed, 0x20-0x3F the SC is still trying,
        # 0x40-0x7F it gave up (permanent or temporary error), 0x80-0xFF reserved.  What each
        # means for a segment: sms.policy.report_outcome.
        object.__setattr__(self, "delivered", self.status <= 0x1F)
        object.__setattr__(self, "final", not (0x20 <= self.status <= 0x3F))


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise PduError(f"truncated PDU: {what} needs {n} octet(s) at offset {self.pos}, "
                           f"{len(self.data) - self.pos} left")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def rest(self) -> bytes:
        return self.data[self.pos:]


def _address(r: _Reader, what: str, smsc: bool = False) -> str | None:
    n = r.byte(what + " length")
    if n == 0:
        return None
    octets = (n - 1) if smsc else (n + 1) // 2
    if smsc and octets < 0:
        raise PduError(f"bad {what} length {n}")
    toa = r.byte(what + " type")
    raw = r.take(octets, what)
    ton = toa & 0x70
    try:
        if ton == 0x50:   # alphanumeric sender (e.g. an operator's name)
            return gsm7.decode(gp.unpackSeptets(bytearray(raw), (n * 4) // 7))
        digits = gp.decodeSemiOctets(bytearray(raw), octets)
    except (IndexError, ValueError, KeyError) as e:
        raise PduError(f"undecodable {what}: {e}") from None
    return ("+" + digits) if (ton == 0x10 and digits) else digits


def _timestamp(r: _Reader, what: str) -> datetime | None:
    return _scts_time(r.take(7, what))


def _scts_time(raw: bytes) -> datetime | None:
    try:
        return gp._decodeTimestamp(iter(bytearray(raw)))
    except (ValueError, IndexError, TypeError, StopIteration):
        return None       # a wrong clock is no reason to lose the message


def _alphabet(dcs: int) -> str:
    group = dcs & 0xF0
    if group in (0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70):
        if dcs & 0x20:
            raise PduError(f"compressed user data (DCS {dcs:#04x}) is not supported")
        a = (dcs >> 2) & 0x03
    elif group == 0xF0:
        a = 1 if dcs & 0x04 else 0
    elif group in (0xC0, 0xD0):
        a = 0
    elif group == 0xE0:
        a = 2
    else:
        raise PduError(f"reserved data coding scheme {dcs:#04x}")
    return {0: "gsm7", 1: "8bit", 2: "ucs2"}.get(a, "gsm7" if a == 3 else "8bit")


def _split_udh(body: bytes) -> tuple[bytes, bytes]:
    """(header, the rest) of user data whose header indicator is set."""
    if not body:
        raise PduError("user data header flagged but user data empty")
    hl = body[0]
    udh = body[1:1 + hl]
    if len(udh) != hl:
        raise PduError("user data header longer than the user data")
    return udh, body[1 + hl:]


def _parse_udh(udh: bytes) -> Concat | None:
    i = 0
    concat = None
    while i + 2 <= len(udh):
        iei, ln = udh[i], udh[i + 1]
        data = udh[i + 2:i + 2 + ln]
        if len(data) != ln:
            raise PduError("user data header element runs past its header")
        if iei == 0x00 and ln == 3:
            concat = Concat(ref=data[0], total=data[1], seq=data[2], ref_bits=8)
        elif iei == 0x08 and ln == 4:
            concat = Concat(ref=(data[0] << 8) | data[1], total=data[2], seq=data[3], ref_bits=16)
        i += 2 + ln
    if concat is not None and (concat.total == 0 or not 1 <= concat.seq <= concat.total):
        concat = None     # TS 23.040: a receiver ignores an inconsistent concatenation element
    return concat


def _user_data(r: _Reader, first: int, dcs: int) -> tuple[str, str, Concat | None, bytes]:
    enc = _alphabet(dcs)
    udl = r.byte("TP-UDL")
    udhi = bool(first & 0x40)
    if enc == "gsm7":
        nbytes = (udl * 7 + 7) // 8
        body = r.take(nbytes, "user data")
        udh = b""
        skip = 0
        if udhi:
            udh, _ = _split_udh(body)
            skip = ((len(udh) + 1) * 8 + 6) // 7     # header septets, fill bits included
        septets = gp.unpackSeptets(bytearray(body), udl)[:udl]
        try:
            text = gsm7.decode(septets[skip:])
        except ValueError:
            raise PduError("GSM-7 user data ends in an escape") from None
        return enc, text, _parse_udh(udh) if udhi else None, bytes(udh)
    body = r.take(udl, "user data")
    udh = b""
    if udhi:
        udh, body = _split_udh(body)
    concat = _parse_udh(udh) if udhi else None
    if enc == "ucs2":
        if len(body) % 2:
            body = body[:-1]       # odd octet: some phones pad; the last half-character is noise
        text = body.decode("utf-16-be", errors="replace")
    else:
        if udh and any(b[0] in (0x04, 0x05) for b in [udh[0:1]] if b):
            raise PduError("8-bit data with application port addressing (WAP push or similar), not a text")
        raise PduError("8-bit data message, not a text")
    return enc, text, concat, bytes(udh)


def decode(pdu_hex: str | bytes, tpdu_length: int | None = None) -> Deliver | StatusReport:
    """Decode a PDU as read from the modem (SMSC field first).

    `tpdu_length` is the length the modem announced (+CMGR/+CMGL/+CDS); when given it is
    checked against the octets actually present.
    """
    if isinstance(pdu_hex, bytes):
        try:
            pdu_hex = pdu_hex.decode("ascii")
        except UnicodeDecodeError:
            raise PduError("PDU line is not hex text") from None
    s = pdu_hex.strip().strip('"')
    try:
        data = binascii.unhexlify(s)
    except (binascii.Error, ValueError):
        raise PduError("PDU is not an even-length hex string") from None
    if not data:
        raise PduError("empty PDU")
    r = _Reader(data)
    smsc = _address(r, "SMSC address", smsc=True)
    note = ""
    if tpdu_length is not None and len(data) - r.pos != tpdu_length:
        # Several makes announce a wrong length (Gammu's dumps show 78 for any size); the PDU's
        # own lengths are checked octet by octet below, so the message is kept, with a note.
        note = f"modem announced TPDU length {tpdu_length}, PDU has {len(data) - r.pos}"
    first = r.byte("first octet")
    mti = first & 0x03
    if mti == 0x00:
        sender = _address(r, "originating address")
        r.byte("TP-PID")
        dcs = r.byte("TP-DCS")
        scts = r.take(7, "TP-SCTS")
        enc, text, concat, udh = _user_data(r, first, dcs)
        return Deliver(sender=sender or "", text=text, smsc=smsc, scts=scts, encoding=enc,
                       concat=concat, udh=udh, note=note)
    if mti == 0x02:
        mr = r.byte("TP-MR")
        recipient = _address(r, "recipient address")
        r.take(7, "TP-SCTS")
        discharge = _timestamp(r, "TP-DT")
        st = r.byte("TP-ST")
        return StatusReport(mr=mr, recipient=recipient or "", status=st, smsc=smsc, discharge=discharge)
    if mti == 0x01:
        raise PduError("SMS-SUBMIT (a message this SIM sent), not an inbound SMS")
    raise PduError(f"reserved message type indicator {mti} (first octet {first:#04x})")


def decode_submit(pdu_hex: str) -> dict:
    """Decode an SMS-SUBMIT (what the emulator's network receives).  Returns a dict with
    phone, text, concat (Concat|None), status_report (bool)."""
    data = binascii.unhexlify(pdu_hex)
    r = _Reader(data)
    _address(r, "SMSC address", smsc=True)
    first = r.byte("first octet")
    if first & 0x03 != 0x01:
        raise PduError("not an SMS-SUBMIT")
    r.byte("TP-MR")
    phone = _address(r, "destination address")
    r.byte("TP-PID")
    dcs = r.byte("TP-DCS")
    vpf = (first >> 3) & 0x03
    if vpf == 2:
        r.byte("TP-VP")
    elif vpf in (1, 3):
        r.take(7, "TP-VP")
    enc, text, concat, _udh = _user_data(r, first, dcs)
    return {"phone": phone or "", "text": text, "concat": concat, "status_report": bool(first & 0x20),
            "encoding": enc}
