"""Text → PDUs: alphabet choice, part limits, concatenation references, non-BMP characters."""
from datetime import datetime, timedelta, timezone

import pytest
from gsmmodem import pdu as gp

from sms import encoding
from sms.pdu import decode_submit

PHONE = "+8613800138000"


def roundtrip(text, **kw):
    enc, pdus = encoding.encode_submit(PHONE, text, **kw)
    decoded = [decode_submit(p.pdu_hex) for p in pdus]
    return enc, pdus, decoded


@pytest.mark.parametrize("text,enc,parts", [
    ("A" * 160, "gsm7", 1),
    ("A" * 161, "gsm7", 2),          # 153 + 8
    ("A" * 306, "gsm7", 2),
    ("A" * 307, "gsm7", 3),
    ("[" * 80, "gsm7", 1),           # extension characters count twice: 160 septets
    ("[" * 81, "gsm7", 2),
    ("集" * 70, "ucs2", 1),
    ("集" * 71, "ucs2", 2),          # 67 + 4
    ("集" * 134, "ucs2", 2),
    ("集" * 135, "ucs2", 3),
    ("Arrive 10:32 €", "gsm7", 1),
    ("Arrive 10:32 ₩", "ucs2", 1),  # one non-GSM character turns the whole text UCS-2
])
def test_alphabet_and_part_limits(text, enc, parts):
    got_enc, pdus, decoded = roundtrip(text)
    assert got_enc == enc
    assert len(pdus) == parts
    assert "".join(d["text"] for d in decoded) == text     # nothing cut short
    for d in decoded:
        assert d["encoding"] == enc
        assert d["phone"] == PHONE


def test_16_bit_references_give_152_and_66_per_part_and_decode_in_gsmmodem():
    _, pdus, decoded = roundtrip("B" * 161, ref=0x1234, ref_bits=16)
    assert [len(d["text"]) for d in decoded] == [152, 9]
    assert all(d["concat"].ref == 0x1234 and d["concat"].ref_bits == 16 for d in decoded)
    _, pdus, decoded = roundtrip("集" * 71, ref=0xBEEF, ref_bits=16)
    assert [len(d["text"]) for d in decoded] == [66, 5]
    # python-gsmmodem-new reads our PDUs the same way (its IEI 0x08 support)
    lib = gp.decodeSmsPdu(pdus[0].pdu_hex)
    assert lib["udh"][0].reference == 0xBEEF and lib["udh"][0].parts == 2 and lib["udh"][0].number == 1


def test_8_bit_reference_is_masked_and_parts_numbered():
    _, pdus, decoded = roundtrip("集" * 150, ref=300)
    assert [(d["concat"].ref, d["concat"].total, d["concat"].seq) for d in decoded] == [(44, 3, 1), (44, 3, 2), (44, 3, 3)]
    lib = [gp.decodeSmsPdu(p.pdu_hex) for p in pdus]
    assert "".join(x["text"] for x in lib) == "集" * 150


def test_tpdu_length_is_what_cmgs_takes():
    for text in ("hello", "集" * 100, "x" * 400):
        _, pdus = encoding.encode_submit(PHONE, text)
        for p in pdus:
            raw = bytes.fromhex(p.pdu_hex)
            assert raw[0] == 0                          # the SIM's SMSC
            assert p.tpdu_length == len(raw) - 1
            assert p.tpdu_length <= 140 + 15


def test_non_bmp_characters_encode_and_a_pair_is_never_split():
    rare = "𠀀"          # U+20000, a CJK Extension B character (rare in names)
    name = "张" + rare + "三"
    assert len(name.encode("utf-16-be")) == 8
    # 66 BMP characters then the rare one: 68 units > 67, the pair must move whole to part 2
    text = "集" * 66 + rare + "集" * 10
    _, pdus, decoded = roundtrip(text)
    assert "".join(d["text"] for d in decoded) == text
    for p in pdus:
        ud = bytes.fromhex(p.pdu_hex)
        body = ud[-(len(p.text.encode("utf-16-be"))):]
        body.decode("utf-16-be")                       # strict: no lone surrogate in any part
    assert decoded[0]["text"] == "集" * 66
    assert decoded[1]["text"].startswith(rare)
    # a single-part message with rare characters
    _, pdus, decoded = roundtrip("命令到达 " + name)
    assert len(pdus) == 1 and decoded[0]["text"] == "命令到达 " + name


def test_an_escape_pair_is_never_split():
    text = "A" * 152 + "€" + "B" * 10
    _, pdus, decoded = roundtrip(text)
    assert decoded[0]["text"] == "A" * 152
    assert decoded[1]["text"] == "€" + "B" * 10


def test_status_report_request_and_validity():
    _, pdus = encoding.encode_submit(PHONE, "x", status_report=True)
    assert decode_submit(pdus[0].pdu_hex)["status_report"]
    _, pdus = encoding.encode_submit(PHONE, "x", status_report=False)
    assert not decode_submit(pdus[0].pdu_hex)["status_report"]
    lib = gp.decodeSmsPdu(pdus[0].pdu_hex)
    assert lib["validity"].total_seconds() == 24 * 3600


def test_too_long_is_refused_not_cut():
    with pytest.raises(encoding.MessageTooLong):
        encoding.encode_submit(PHONE, "集" * (67 * 255 + 1))
    _, pdus = encoding.encode_submit(PHONE, "集" * (67 * 255))
    assert len(pdus) == 255


def test_national_number_destination():
    _, pdus, decoded = roundtrip("x", )
    _, pdus = encoding.encode_submit("13800138000", "到达")
    assert decode_submit(pdus[0].pdu_hex)["phone"] == "13800138000"


def _deliver_hex(scts_hex: str) -> str:
    # no SMSC; SMS-DELIVER; from +8613800138000; GSM 7-bit "hello" (packed by hand: E8 32 9B FD 06)
    return "00" + "04" + "0D91" + "683108108300F0" + "00" + "00" + scts_hex + "05" + "E8329BFD06"


@pytest.mark.parametrize("scts, expected", [
    ("62211032547023", datetime(2026, 12, 1, 23, 45, 7, tzinfo=timezone(timedelta(hours=8)))),
    ("6221103254700A", datetime(2026, 12, 1, 23, 45, 7, tzinfo=timezone(timedelta(hours=-5)))),
    ("FFFFFFFFFFFFFF", None),               # a modem's garbage clock: the message still reads
])
def test_a_delivered_sms_keeps_the_network_time_stamp(scts, expected):
    from sms.pdu import decode
    msg = decode(_deliver_hex(scts))
    assert (msg.sender, msg.text) == ("+8613800138000", "hello")
    assert msg.timestamp == expected
    if expected is not None:
        assert msg.timestamp.utcoffset() == expected.utcoffset()
