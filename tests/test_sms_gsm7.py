"""GSM-7 per TS 23.038, checked with the tests' own reader (tests/_sms_independent.py): the
backtick is in neither table and sends the text as UCS-2; § is 0x5F; every character of both
tables goes out and comes back as itself.  And the README's word on python-gsmmodem-new."""
import pytest
from gsmmodem import pdu as gp

from sms import encoding, pdu
from tests._sms_independent import DEFAULT, EXTENSION, pack, read_submit, text_to_septets, unpack


def test_a_backtick_sends_the_text_as_ucs2_exactly_as_written():
    for text in ["`", "gate `B`", "run `yihu order show 0427`", "a" * 100 + "`", "0427 `到达`"]:
        enc, pdus = encoding.encode_submit("+8613900000001", text)
        assert enc == encoding.UCS2
        got = [read_submit(p.pdu_hex) for p in pdus]
        assert all(g["dcs"] == 0x08 for g in got)
        assert "".join(g["text"] for g in got) == text


def test_section_sign_is_0x5f_and_goes_as_gsm7():
    enc, [p] = encoding.encode_submit("+8613900000001", "§ 12")
    assert enc == encoding.GSM7
    b = bytes.fromhex(p.pdu_hex)
    assert unpack(b[-4:], 4)[0] == 0x5F and read_submit(p.pdu_hex)["text"] == "§ 12"


@pytest.mark.parametrize("code", [c for c in range(128) if c != 0x1B])
def test_every_default_alphabet_character_round_trips(code):
    ch = chr(DEFAULT[code])
    text = f"x{ch}y"
    enc, [p] = encoding.encode_submit("+8613900000001", text)
    assert enc == encoding.GSM7
    body = bytes.fromhex(p.pdu_hex)[-((3 * 7 + 7) // 8):]
    assert unpack(body, 3)[1] == code
    assert read_submit(p.pdu_hex)["text"] == text


@pytest.mark.parametrize("code", sorted(EXTENSION))
def test_every_extension_character_takes_an_escape(code):
    text = f"({chr(EXTENSION[code])})"
    enc, [p] = encoding.encode_submit("+8613900000001", text)
    assert enc == encoding.GSM7
    body = bytes.fromhex(p.pdu_hex)[-((4 * 7 + 7) // 8):]
    assert unpack(body, 4)[1:3] == [0x1B, code]
    assert read_submit(p.pdu_hex)["text"] == text


def test_an_inbound_0x5f_reads_as_section_sign_not_backtick():
    septets = text_to_septets("Art. ") + [0x5F] + text_to_septets("3")
    tpdu = (bytes([0x04, 0x0B, 0x81]) + bytes.fromhex("3109000000F1") + bytes([0x00, 0x00])
            + bytes.fromhex("62211010300000") + bytes([len(septets)]) + pack(septets))
    msg = pdu.decode("00" + tpdu.hex(), len(tpdu))
    assert msg.text == "Art. §3"


# --- what the README says of python-gsmmodem-new ------------------------------------------------

@pytest.mark.parametrize("n", [161, 200, 306, 307])
def test_gsmmodem_multipart_gsm7_reads_back_exactly(n):
    """Its encoder is right after a concatenation header (its packSeptets takes the fill-bit
    argument inverted, and the encoder compensates): the README must not claim otherwise."""
    text = "".join("Yihu order 0427: assemble at the east gate. "[k % 44] for k in range(n))
    parts = [read_submit(str(p)) for p in gp.encodeSmsSubmitPdu("+8613900000001", text)]
    assert len(parts) == (2 if n <= 306 else 3)
    assert all(p["concat"] is not None and p["dcs"] == 0 for p in parts)
    assert "".join(p["text"] for p in sorted(parts, key=lambda p: p["concat"][2])) == text


@pytest.mark.parametrize("fill", range(1, 7))
def test_gsmmodem_packing_helper_takes_the_fill_bits_inverted(fill):
    septets = text_to_septets("ABCDEFG")
    assert bytes(gp.packSeptets(bytearray(septets), fill)) == pack(septets, 7 - fill)


def test_gsmmodem_cannot_encode_characters_outside_the_bmp():
    with pytest.raises(ValueError):
        gp.encodeSmsSubmitPdu("+8613900000001", "指挥长张𠀀三")
    enc, pdus = encoding.encode_submit("+8613900000001", "指挥长张𠀀三")
    assert read_submit(pdus[0].pdu_hex)["text"] == "指挥长张𠀀三"
