"""An SMS-SUBMIT / SMS-DELIVER reader written for the tests from TS 23.040 and 23.038 alone: it
shares no code with sms/ nor with python-gsmmodem-new, so a test can check a PDU with it."""

# TS 23.038 6.2.1, the default alphabet as Unicode code points, code 0x00 to 0x7F (0x1B: escape)
DEFAULT = [
    0x40, 0xA3, 0x24, 0xA5, 0xE8, 0xE9, 0xF9, 0xEC, 0xF2, 0xC7, 0x0A, 0xD8, 0xF8, 0x0D, 0xC5, 0xE5,
    0x394, 0x5F, 0x3A6, 0x393, 0x39B, 0x3A9, 0x3A0, 0x3A8, 0x3A3, 0x398, 0x39E, None, 0xC6, 0xE6, 0xDF, 0xC9,
    *range(0x20, 0x24), 0xA4, *range(0x25, 0x40),
    0xA1, *range(0x41, 0x5B), 0xC4, 0xD6, 0xD1, 0xDC, 0xA7,
    0xBF, *range(0x61, 0x7B), 0xE4, 0xF6, 0xF1, 0xFC, 0xE0,
]
assert len(DEFAULT) == 128
# TS 23.038 6.2.1.1, the extension table: code after the escape → code point
EXTENSION = {0x0A: 0x0C, 0x14: 0x5E, 0x28: 0x7B, 0x29: 0x7D, 0x2F: 0x5C, 0x3C: 0x5B, 0x3D: 0x7E, 0x3E: 0x5D,
             0x40: 0x7C, 0x65: 0x20AC}


def unpack(octets: bytes, count: int, fill: int = 0) -> list[int]:
    """`count` septets, least significant bit first, after `fill` bits."""
    value = int.from_bytes(octets, "little")
    return [(value >> (fill + 7 * k)) & 0x7F for k in range(count)]


def pack(septets: list[int], fill: int = 0) -> bytes:
    value = 0
    for k, s in enumerate(septets):
        value |= s << (fill + 7 * k)
    return value.to_bytes((fill + 7 * len(septets) + 7) // 8, "little")


def septets_to_text(septets: list[int]) -> str:
    out, k = [], 0
    while k < len(septets):
        if septets[k] == 0x1B:
            out.append(chr(EXTENSION[septets[k + 1]]))
            k += 2
        else:
            out.append(chr(DEFAULT[septets[k]]))
            k += 1
    return "".join(out)


def text_to_septets(text: str) -> list[int]:
    rev = {cp: i for i, cp in enumerate(DEFAULT) if cp is not None}
    ext = {cp: i for i, cp in EXTENSION.items()}
    out = []
    for c in text:
        if ord(c) in rev:
            out.append(rev[ord(c)])
        else:
            out += [0x1B, ext[ord(c)]]
    return out


def read_submit(pdu_hex: str) -> dict:
    """SMS-SUBMIT with its SMSC field: dcs, udh (bytes), text, concat (ref, total, seq) or None."""
    b = bytes.fromhex(pdu_hex)
    p = 1 + b[0]                            # SMSC field
    first = b[p]
    assert first & 0x03 == 0x01, "not an SMS-SUBMIT"
    p += 2                                  # first octet, TP-MR
    digits = b[p]
    p += 2 + (digits + 1) // 2              # length, type, semi-octets
    p += 1                                  # TP-PID
    dcs = b[p]
    p += 1
    p += {0: 0, 2: 1, 1: 7, 3: 7}[(first >> 3) & 3]     # TP-VP
    udl = b[p]
    ud = b[p + 1:]
    udh = b""
    if first & 0x40:
        udh = ud[1:1 + ud[0]]
    concat = None
    if udh and udh[0] == 0x00:
        concat = (udh[2], udh[3], udh[4])
    elif udh and udh[0] == 0x08:
        concat = ((udh[2] << 8) | udh[3], udh[4], udh[5])
    if dcs & 0x0C == 0x08:
        text = ud[(1 + len(udh)) if udh else 0:udl].decode("utf-16-be")
    else:
        header_bits = (1 + len(udh)) * 8 if udh else 0
        skip = (header_bits + 6) // 7           # septets the header takes, fill bits included
        septets = unpack(ud, udl)[skip:]
        text = septets_to_text(septets)
    return {"dcs": dcs, "udh": udh, "text": text, "concat": concat}
