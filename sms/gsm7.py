"""The GSM 7-bit default alphabet and its extension table (3GPP TS 23.038 6.2.1 and 6.2.1.1).

Our own table, not python-gsmmodem-new's: that one has a backtick (`) at 0x5F, where TS 23.038
has the section sign (§), so a backtick went out as 0x5F and phones showed §.  The backtick is in
neither the default alphabet nor the extension table: a text containing one is not GSM-7 and goes
as UCS-2 (sms.encoding), so the commander reads exactly what was written.
"""
from __future__ import annotations

ESC = 0x1B

# 0x00-0x7F, row by row (0x1B is the escape to the extension table)
BASIC = ("@£$¥èéùìòÇ\nØø\rÅå"
         "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
         " !\"#¤%&'()*+,-./"
         "0123456789:;<=>?"
         "¡ABCDEFGHIJKLMNO"
         "PQRSTUVWXYZÄÖÑÜ§"
         "¿abcdefghijklmno"
         "pqrstuvwxyzäöñüà")
assert len(BASIC) == 128

# the extension table: character → code after ESC (0x0A is the page break)
EXTENDED = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E,
            "|": 0x40, "€": 0x65}

_CODE = {c: i for i, c in enumerate(BASIC) if i != ESC}
_FROM_EXTENDED = {v: k for k, v in EXTENDED.items()}


def in_alphabet(c: str) -> bool:
    return c in _CODE or c in EXTENDED


def units(c: str) -> int:
    """Septets a character takes (an extension character takes the escape too)."""
    return 2 if c in EXTENDED else 1


def encode(text: str) -> list[int]:
    """Septet values of a text; ValueError naming the first character that is not GSM-7."""
    out: list[int] = []
    for c in text:
        if c in _CODE:
            out.append(_CODE[c])
        elif c in EXTENDED:
            out += [ESC, EXTENDED[c]]
        else:
            raise ValueError(f"{c!r} (U+{ord(c):04X}) is not in the GSM 7-bit alphabet")
    return out


def decode(septets) -> str:
    """Text of septet values.  An unknown extension code shows as its default-table character
    (TS 23.038 6.2.1.1); a text ending in the escape raises ValueError."""
    out = []
    it = iter(septets)
    for s in it:
        s &= 0x7F
        if s != ESC:
            out.append(BASIC[s])
            continue
        nxt = next(it, None)
        if nxt is None:
            raise ValueError("GSM-7 text ends in an escape")
        nxt &= 0x7F
        out.append(_FROM_EXTENDED.get(nxt, " " if nxt == ESC else BASIC[nxt]))
    return "".join(out)
