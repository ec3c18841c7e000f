"""Real modems' answers (Gammu's test dumps): every PDU read or refused with a reason, CNMI/CPMS
choices made from real ranges, CREG corner cases, CSQ in dBm."""
import pytest

from sms import atparse, pdu
from tests._paths import modem_dumps


def dump_lines(*parts):
    raw = modem_dumps(*parts).read_bytes()
    return [ln.strip() for ln in raw.decode("latin-1").splitlines()[1:] if ln.strip()]


def sms_dumps():
    # Listed inside the tests, never at collection: the dumps live outside the project.
    return sorted(p.name for p in modem_dumps("at-sms").glob("*.dump"))


def read_cmgr(name):
    lines = dump_lines("at-sms", name)
    header = atparse.parse_cmgr_header(lines[0])
    return header, lines[1]


def test_there_are_dumps():
    assert len(sms_dumps()) >= 30


def test_every_dump_decodes_or_is_refused_with_a_reason():
    for name in sms_dumps():
        try:
            check_dump(name)
        except AssertionError as e:
            raise AssertionError(f"at-sms/{name}: {e}") from e


def check_dump(name):
    header, p = read_cmgr(name)
    assert header is not None and header.length is not None
    try:
        msg = pdu.decode(p, header.length)
    except pdu.PduError as e:
        assert str(e)                      # a clear reason, never a crash or an invented text
        return
    assert isinstance(msg, (pdu.Deliver, pdu.StatusReport))
    if isinstance(msg, pdu.Deliver):
        assert msg.sender and isinstance(msg.text, str)


@pytest.mark.parametrize("name,sender,text", [
    ("03.dump", "+919884280026", "Ok sir"),
    ("07.dump", "+358456709855", "Test"),
    ("08.dump", "+32478746863", "TEST -@@-"),
    ("10.dump", "+32478746863", "Tèätrc @ £."),
    ("12.dump", "+622291320408", "aa cakep deh"),
    ("42.dump", "+94774705017", "1917812300     22:30   RATTHI"),
])
def test_known_texts(name, sender, text):
    header, p = read_cmgr(name)
    msg = pdu.decode(p, header.length)
    assert (msg.sender, msg.text) == (sender, text)


def test_alphanumeric_sender_and_multipart_header():
    header, p = read_cmgr("04.dump")
    msg = pdu.decode(p, header.length)
    assert msg.sender.startswith("O2")
    header, p = read_cmgr("22.dump")
    msg = pdu.decode(p, header.length)
    assert msg.concat is not None and msg.concat.total >= 2 and msg.concat.seq == 1
    assert msg.text.startswith("Ahoj pavle")


def test_wrong_announced_length_keeps_the_message_with_a_note():
    # several makes announce 78 whatever the size: the message itself is intact
    header, p = read_cmgr("21.dump")
    assert header.length == 78
    msg = pdu.decode(p, header.length)
    assert msg.text == "3" and "78" in msg.note


@pytest.mark.parametrize("name,mr,recipient", [
    ("30.dump", 232, "+666666666666"),
    ("32.dump", 171, "604865888"),
    ("38.dump", 180, "602396602"),
])
def test_status_reports(name, mr, recipient):
    header, p = read_cmgr(name)
    msg = pdu.decode(p, header.length)
    assert isinstance(msg, pdu.StatusReport)
    assert (msg.mr, msg.recipient, msg.delivered, msg.final) == (mr, recipient, True, True)


@pytest.mark.parametrize("name,reason", [
    ("02.dump", "SMS-SUBMIT"),
    ("33.dump", "WAP push"),
    ("40.dump", "WAP push"),
    ("26.dump", "8-bit data"),
])
def test_not_an_sms_is_refused_clearly(name, reason):
    header, p = read_cmgr(name)
    with pytest.raises(pdu.PduError, match=reason):
        pdu.decode(p, header.length)


@pytest.mark.parametrize("bad", ["", "0", "ZZ", "07911326040000F0", "0791132604000000040B91",
                                 "0791448720003023440C91447723844223000001018002918240FF0500"])
def test_truncated_or_garbage_pdus_are_refused(bad):
    with pytest.raises(pdu.PduError):
        pdu.decode(bad)


@pytest.mark.parametrize("name,expected", [
    ("01.dump", (2, 1, 0, 1, 0)),   # (2),(0-1,3),(0,2),(0-1),(0)
    ("02.dump", (2, 1, 0, 1, 0)),
    ("03.dump", (2, 1, 0, 1, 0)),   # "+CNMI:(...)" without a space
])
def test_cnmi_choice_from_real_ranges(name, expected):
    ranges = atparse.parse_cnmi_ranges(dump_lines("at-cnmi", name))
    assert ranges is not None and len(ranges) == 5
    choice = atparse.choose_cnmi(ranges)
    assert choice == expected
    assert all(v in r for v, r in zip(choice, ranges))


def test_cnmi_fallback_when_ds_not_offered():
    ranges = atparse.parse_cnmi_ranges(["+CNMI: (0-2),(0-3),(0),(0),(0)"])
    assert atparse.choose_cnmi(ranges) == (2, 1, 0, 0, 0)
    assert atparse.cnmi_fallbacks((2, 1, 0, 1, 0))[1:] and atparse.choose_cnmi(None) == (2, 1, 0, 1, 0)


@pytest.mark.parametrize("folder,name,expected", [
    ("at-cpms", "alcatel-s320.dump", ("SM", "SM", "SM")),
    ("at-cpms", "brovi-e3372-325.dump", ("SM", "SM", "SM")),
    ("at-cpms", "generic.dump", ("SM", "SM", "SM")),
    ("at-cpms", "samsung-j700.dump", None),          # lists nothing: keep the default
    ("at-cpms-sm", "iwow.dump", ("SM", "SM", "SM")),  # no parentheses
    ("at-cpms-sr", "generic.dump", ("ME", "ME", "ME")),   # broken quoting, no SIM storage
])
def test_cpms_choice(folder, name, expected):
    assert atparse.choose_cpms(atparse.parse_cpms_ranges(dump_lines(folder, name))) == expected


@pytest.mark.parametrize("folder,name,stat,registered", [
    ("at-creg", "huawei.dump", 1, True),
    ("at-creg", "none.dump", 0, False),
    ("at-creg", "siemens.dump", 1, True),
    ("at-creg", "sierra312u.dump", 5, True),
    ("at-creg", "telit.dump", 1, True),
    ("at-creg-corner", "empty-lac.dump", 1, True),
    ("at-creg-corner", "mismatched-quotes.dump", 1, True),
    ("at-creg-corner", "single-quote.dump", 1, True),
])
def test_creg(folder, name, stat, registered):
    reg = atparse.parse_creg(dump_lines(folder, name))
    assert reg.stat == stat and reg.registered is registered


def test_creg_empty_answer_is_unknown_not_a_crash():
    assert atparse.parse_creg(dump_lines("at-creg", "empty.dump")) is None
    assert atparse.parse_creg(["+CREG: 2"]).stat == 2          # unsolicited form: <stat>


@pytest.mark.parametrize("line,dbm", [("+CSQ: 0,99", -113), ("+CSQ: 31,99", -51), ("+CSQ: 17,0", -79),
                                      ("+CSQ: 99,99", None), ("+CSQ:", None), ("+CSQ: x", None)])
def test_csq_in_dbm(line, dbm):
    assert atparse.csq_to_dbm(line) == dbm
