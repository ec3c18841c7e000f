"""The emulated GSM network: what each phone received, and PDUs it sends towards modems.

Phones reassemble concatenated parts by (sender SIM, reference, total), as handsets do, so a
test can ask how many complete copies of a message each phone got.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

from sms import encoding as enc
from sms import gsm7
from sms.pdu import decode_submit


@dataclass(frozen=True)
class ReceivedPart:
    sender: str        # the emulated SIM's number
    phone: str
    text: str
    ref: int | None
    total: int
    seq: int
    at: float


class Network:
    def __init__(self, journal=None):
        """journal: a NetworkJournal (gateway/netjournal.py) that records every accepted segment."""
        self.parts: dict[str, list[ReceivedPart]] = defaultdict(list)
        self.undelivered: dict[str, list[ReceivedPart]] = defaultdict(list)
        self.submitted = 0
        self.journal = journal

    def submit(self, sim_number: str, pdu_hex: str, at: float, delivered: bool = True) -> dict:
        """A modem handed this SMS-SUBMIT to the network; the phone receives it, unless the SC
        never manages to deliver it (`delivered` False: its status report says so)."""
        d = decode_submit(pdu_hex)
        c = d["concat"]
        part = ReceivedPart(sender=sim_number, phone=d["phone"], text=d["text"],
                            ref=c.ref if c else None, total=c.total if c else 1,
                            seq=c.seq if c else 1, at=at)
        (self.parts if delivered else self.undelivered)[d["phone"]].append(part)
        self.submitted += 1
        if self.journal is not None:
            self.journal.append("sms", at=at, phone=part.phone, reference=part.ref, part=part.seq,
                                parts=part.total, text=part.text, sim=sim_number)
        return d

    def complete_messages(self, phone: str) -> Counter:
        """Texts of the complete messages the phone can show → number of complete copies."""
        groups: dict[tuple, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
        singles: Counter = Counter()
        for p in self.parts.get(phone, []):
            if p.total == 1:
                singles[p.text] += 1
            else:
                groups[(p.sender, p.ref, p.total)][p.seq].append(p.text)
        out = Counter(singles)
        for (_sender, _ref, total), seqs in groups.items():
            if len(seqs) != total:
                continue
            copies = min(len(v) for v in seqs.values())
            text = "".join(seqs[i][0] for i in range(1, total + 1))
            out[text] += copies
        return out

    def phones(self) -> list[str]:
        return sorted(self.parts)


# --- PDUs the network sends to a modem --------------------------------------------------------

def _scts(at: float) -> bytes:
    t = datetime.fromtimestamp(at, tz=timezone.utc)
    digits = [t.year % 100, t.month, t.day, t.hour, t.minute, t.second, 0]
    return bytes(((d % 10) << 4) | (d // 10) for d in digits)


def _address(number: str) -> bytes:
    from gsmmodem import pdu as gp
    return bytes(gp._encodeAddressField(number))


def deliver_pdus(sender: str, text: str, at: float, ref: int = 1, ref_bits: int = 8,
                 smsc: str = "+8613800100500") -> list[tuple[str, int]]:
    """SMS-DELIVER PDU(s) for an inbound text: [(hex with SMSC, tpdu length)]."""
    from gsmmodem import pdu as gp
    encoding, parts = enc.split_text(text, ref_bits=ref_bits)
    smsc_field = bytes(gp._encodeAddressField(smsc, smscField=True))
    out = []
    for i, part in enumerate(parts, 1):
        udh = enc._udh(ref, ref_bits, len(parts), i) if len(parts) > 1 else b""
        first = 0x04 | (0x40 if udh else 0)           # SMS-DELIVER, no more messages to send
        tpdu = bytearray([first]) + _address(sender) + bytes([0x00])
        if encoding == enc.GSM7:
            tpdu.append(0x00)
            tpdu += _scts(at)
            septets = gsm7.encode(part)
            if udh:
                pad = (7 - (len(udh) * 8) % 7) % 7
                tpdu.append((len(udh) * 8 + pad) // 7 + len(septets))
                tpdu += udh + enc._pack_septets(septets, pad)
            else:
                tpdu.append(len(septets))
                tpdu += enc._pack_septets(septets, 0)
        else:
            body = part.encode("utf-16-be")
            tpdu.append(0x08)
            tpdu += _scts(at)
            tpdu.append(len(udh) + len(body))
            tpdu += udh + body
        out.append(((smsc_field + bytes(tpdu)).hex().upper(), len(tpdu)))
    return out


def status_report_pdu(mr: int, recipient: str, at: float, status: int = 0) -> tuple[str, int]:
    """SMS-STATUS-REPORT for a submitted segment (TS 23.040 9.2.2.3)."""
    tpdu = bytes([0x06, mr & 0xFF]) + _address(recipient) + _scts(at) + _scts(at) + bytes([status])
    return ("00" + tpdu.hex().upper(), len(tpdu))
