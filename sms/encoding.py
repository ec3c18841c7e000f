"""Text → SMS-SUBMIT PDUs (3GPP TS 23.040 / 23.038).

GSM-7 when every character is in the default alphabet (or its extension table, sms.gsm7),
UCS-2 otherwise: a backtick, which TS 23.038 does not have, sends the text as UCS-2 rather than
as a look-alike, because the commander must read exactly what dispatch wrote (codes, addresses);
orders are Chinese and go as UCS-2 anyway, so it costs nothing in practice.  Limits: 160 septets / 70 UTF-16 units for one part; 153 / 67 per part with an 8-bit
concatenation reference, 152 / 66 with a 16-bit one.  Characters outside the BMP go out as
UTF-16 surrogate pairs (what handsets decode), and a pair is never split across parts; an
extension-table escape is never split either.  Nothing is ever cut short: a text that would
need more than 255 parts is refused.

python-gsmmodem-new supplies the address encoding; its encoder cannot encode non-BMP text, and
its alphabet table has a backtick where TS 23.038 has §, so the alphabet
(sms.gsm7), the splitting and the TPDU layout are here.
"""
from __future__ import annotations

from dataclasses import dataclass

from gsmmodem import pdu as gp

from sms import gsm7

GSM7 = "gsm7"
UCS2 = "ucs2"

SINGLE_LIMIT = {GSM7: 160, UCS2: 70}
MAX_PARTS = 255


class MessageTooLong(ValueError):
    """The text needs more than 255 parts: refused rather than cut short."""


@dataclass(frozen=True)
class SubmitPdu:
    seq: int
    pdu_hex: str       # SMSC octet ("00": the SIM's SMSC) + TPDU, upper-case hex
    tpdu_length: int   # what AT+CMGS=<length> takes: octets after the SMSC field
    text: str          # this part's text (for logs and tests)


def is_gsm7(text: str) -> bool:
    return all(gsm7.in_alphabet(c) for c in text)


def choose_encoding(text: str) -> str:
    return GSM7 if is_gsm7(text) else UCS2


def _gsm7_units(c: str) -> int:
    return gsm7.units(c)


def split_text(text: str, encoding: str | None = None, ref_bits: int = 8) -> tuple[str, list[str]]:
    """Split text into the parts it will travel in; returns (encoding, parts)."""
    encoding = encoding or choose_encoding(text)
    if ref_bits not in (8, 16):
        raise ValueError("concatenation reference must be 8 or 16 bits")
    if encoding == GSM7:
        size = sum(_gsm7_units(c) for c in text)
        if size <= SINGLE_LIMIT[GSM7]:
            return encoding, [text]
        per_part = 153 if ref_bits == 8 else 152
        parts, cur, used = [], [], 0
        for c in text:
            u = _gsm7_units(c)
            if used + u > per_part:          # an escape pair never straddles two parts
                parts.append("".join(cur))
                cur, used = [], 0
            cur.append(c)
            used += u
        parts.append("".join(cur))
    else:
        units = text.encode("utf-16-be")
        if len(units) <= 2 * SINGLE_LIMIT[UCS2]:
            return encoding, [text]
        per_part = 67 if ref_bits == 8 else 66
        parts, cur, used = [], [], 0
        for c in text:
            u = 2 if ord(c) > 0xFFFF else 1   # a surrogate pair travels in one part
            if used + u > per_part:
                parts.append("".join(cur))
                cur, used = [], 0
            cur.append(c)
            used += u
        parts.append("".join(cur))
    if len(parts) > MAX_PARTS:
        raise MessageTooLong(f"text needs {len(parts)} parts (max {MAX_PARTS})")
    return encoding, parts


def _udh(ref: int, ref_bits: int, total: int, seq: int) -> bytes:
    if ref_bits == 8:
        return bytes([5, 0x00, 3, ref & 0xFF, total, seq])
    return bytes([6, 0x08, 4, (ref >> 8) & 0xFF, ref & 0xFF, total, seq])


def encode_submit(phone: str, text: str, *, ref: int = 0, ref_bits: int = 8,
                  status_report: bool = True, validity_minutes: int = 24 * 60) -> tuple[str, list[SubmitPdu]]:
    """All SMS-SUBMIT PDUs for one recipient; returns (encoding, pdus).

    `ref` is the concatenation reference (per message and recipient; masked to ref_bits).
    TP-MR is 0: the modem assigns it and answers it in +CMGS.
    """
    encoding, parts = split_text(text, ref_bits=ref_bits)
    total = len(parts)
    ref &= 0xFF if ref_bits == 8 else 0xFFFF
    vp = _relative_vp(validity_minutes)
    out = []
    for i, part in enumerate(parts, 1):
        udh = _udh(ref, ref_bits, total, i) if total > 1 else b""
        first = 0x01 | 0x10 | (0x20 if status_report else 0) | (0x40 if udh else 0)   # SUBMIT, VPF relative
        tpdu = bytearray([first, 0x00])
        tpdu += gp._encodeAddressField(phone)
        tpdu.append(0x00)                                  # TP-PID
        if encoding == GSM7:
            tpdu.append(0x00)                              # TP-DCS: default alphabet
            tpdu.append(vp)
            septets = gsm7.encode(part)
            if udh:
                pad = (7 - (len(udh) * 8) % 7) % 7
                udh_septets = (len(udh) * 8 + pad) // 7
                tpdu.append(udh_septets + len(septets))
                tpdu += udh
                tpdu += _pack_septets(septets, pad)
            else:
                tpdu.append(len(septets))
                tpdu += _pack_septets(septets, 0)
        else:
            tpdu.append(0x08)                              # TP-DCS: UCS-2
            tpdu.append(vp)
            body = part.encode("utf-16-be")
            tpdu.append(len(udh) + len(body))
            tpdu += udh + body
        pdu = b"\x00" + bytes(tpdu)
        out.append(SubmitPdu(seq=i, pdu_hex=pdu.hex().upper(), tpdu_length=len(tpdu), text=part))
    return encoding, out


def _pack_septets(septets, pad: int) -> bytes:
    # LSB first; `pad` fill bits align the text on a septet boundary after the UDH
    # (python-gsmmodem-new's packSeptets takes the fill-bit count inverted, padBits=f giving 7-f
    # fill bits; its own encoder compensates, but the helper cannot be used as documented).
    out = bytearray()
    acc, nbits = 0, pad
    for s in septets:
        acc |= (s & 0x7F) << nbits
        nbits += 7
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def _relative_vp(minutes: int) -> int:
    # TS 23.040 9.2.3.12.1
    if minutes <= 720:
        return max(0, minutes // 5 - 1)
    if minutes <= 1440:
        return 143 + (minutes - 720) // 30
    if minutes <= 30 * 1440:
        return 166 + minutes // 1440
    return min(255, 192 + minutes // (7 * 1440))
