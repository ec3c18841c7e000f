"""The AT session: one command in flight, unsolicited lines anywhere, the "> " prompt, timeouts,
late answers, echo, garbage bytes."""
import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from sms.at import ATSession, AtError, AtTimeout, CmeError, CmsError, PortLost, SubmitNotConfirmed
from tests.secrets import SIM_PIN


class Recorder:
    def __init__(self):
        self.urcs, self.garbage, self.late, self.echo, self.lost = [], [], [], [], []


def session():
    clock = Clock()
    rec = Recorder()
    s = ATSession(clock, "ttyUSB0", on_unsolicited=lambda l, p: rec.urcs.append((l, p)),
                  on_garbage=rec.garbage.append, on_late_submit=rec.late.append, on_echo=rec.echo.append,
                  on_lost=rec.lost.append)
    t = StringTransport()
    s.makeConnection(t)
    return clock, s, t, rec


def result(d):
    out = []
    d.addBoth(out.append)
    assert out, "deferred has not fired"
    return out[0]


def test_one_command_in_flight_and_information_lines():
    clock, s, t, rec = session()
    d1 = s.command("AT+CSQ")
    d2 = s.command("AT+CREG?")
    assert t.value() == b"AT+CSQ\r"            # the second waits for the first
    s.dataReceived(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    assert result(d1) == ["+CSQ: 20,99"]
    assert t.value() == b"AT+CSQ\rAT+CREG?\r"
    s.dataReceived(b"\r\n+CREG: 0,1\r\n\r\nOK\r\n")
    assert result(d2) == ["+CREG: 0,1"]
    assert rec.urcs == []                       # +CREG was the answer, not an unsolicited line


def test_cmti_inside_a_csq_response_is_not_lost():
    clock, s, t, rec = session()
    d = s.command("AT+CSQ")
    s.dataReceived(b"\r\n+CSQ: 17,99\r\n\r\n+CMTI: \"SM\",3\r\n\r\nOK\r\n")
    assert result(d) == ["+CSQ: 17,99"]
    assert rec.urcs == [('+CMTI: "SM",3', None)]


def test_urc_split_across_reads_and_cds_with_its_pdu_line():
    clock, s, t, rec = session()
    d = s.command("AT+CSQ")
    for chunk in (b"\r\n+CSQ: 1", b"7,99\r\n\r\n+CD", b"S: 25\r\n0791448720003023", b"06E80C91666666666666",
                  b"909070618422809090706184628000\r\n\r\nO", b"K\r\n"):
        s.dataReceived(chunk)
    assert result(d) == ["+CSQ: 17,99"]
    assert rec.urcs == [("+CDS: 25", "0791448720003023" "06E80C91666666666666" "909070618422809090706184628000")]


def test_submit_waits_for_prompt_without_line_end():
    clock, s, t, rec = session()
    d = s.submit(5, "0011AABBCCDD", prompt_timeout=5, timeout=30)
    assert t.value() == b"AT+CMGS=5\r"
    s.dataReceived(b"\r\n> ")                  # no line end after the prompt
    assert t.value() == b"AT+CMGS=5\r0011AABBCCDD\x1a"
    clock.advance(10)                           # a modem takes seconds per segment
    s.dataReceived(b"\r\n+CMGS: 42\r\n\r\nOK\r\n")
    assert result(d) == 42


def test_cms_error_and_cme_error_carry_the_code():
    clock, s, t, rec = session()
    d = s.submit(5, "00AA")
    s.dataReceived(b"\r\n> ")
    s.dataReceived(b"\r\n+CMS ERROR: 42\r\n")
    f = result(d)
    assert f.check(CmsError) and f.value.code == 42
    d = s.command(f"AT+CPIN={SIM_PIN}", secret=True)
    s.dataReceived(b"\r\n+CME ERROR: 16\r\n")
    f = result(d)
    assert f.check(CmeError) and f.value.code == 16
    d = s.command("AT+FOO")
    s.dataReceived(b"\r\nERROR\r\n")
    assert result(d).check(AtError)


def test_timeout_before_prompt_means_not_sent_and_cancels_with_esc():
    clock, s, t, rec = session()
    d = s.submit(5, "00AA", prompt_timeout=5, timeout=30)
    clock.advance(5)
    f = result(d)
    assert f.check(AtTimeout) and f.value.pdu_sent is False
    assert t.value().endswith(b"\x1b")
    assert b"00AA" not in t.value()


def test_timeout_after_pdu_is_unknown_and_a_late_cmgs_is_reported():
    clock, s, t, rec = session()
    d = s.submit(5, "00AA", prompt_timeout=5, timeout=30)
    s.dataReceived(b"> ")
    clock.advance(30)
    f = result(d)
    assert f.check(AtTimeout) and f.value.pdu_sent is True
    # next command goes out; the late answer of the timed-out one arrives in the middle
    d2 = s.command("AT")
    s.dataReceived(b"\r\n+CMGS: 77\r\n\r\nOK\r\n")
    assert rec.late == [77]
    assert result(d2) == []        # (the late OK completes the AT: harmless for a probe)


def test_late_cmgs_before_the_next_prompt_is_not_taken_for_the_next_answer():
    clock, s, t, rec = session()
    d = s.submit(5, "00AA", prompt_timeout=5, timeout=30)
    s.dataReceived(b"> ")
    clock.advance(30)
    result(d)
    d2 = s.submit(5, "00BB", prompt_timeout=5, timeout=30)
    s.dataReceived(b"\r\n+CMGS: 77\r\n\r\nOK\r\n\r\n> ")
    assert rec.late == [77]
    assert t.value().endswith(b"00BB\x1a")
    s.dataReceived(b"\r\n+CMGS: 78\r\n\r\nOK\r\n")
    assert result(d2) == 78


def test_ok_without_cmgs_is_not_taken_as_sent():
    clock, s, t, rec = session()
    d = s.submit(5, "00AA")
    s.dataReceived(b"> ")
    s.dataReceived(b"\r\nOK\r\n")
    assert result(d).check(SubmitNotConfirmed)


def test_garbage_bytes_are_kept_and_the_session_carries_on():
    clock, s, t, rec = session()
    d = s.command("AT+CSQ")
    s.dataReceived(b"\r\n\xff\xfe\x80garbage\xc3\r\n+CSQ: 12,99\r\n\r\nOK\r\n")
    assert result(d) == ["+CSQ: 12,99"]
    assert rec.garbage == [b"\xff\xfe\x80garbage\xc3"]
    s.dataReceived(b"\x00" * 5000)            # no line end ever: bounded, not a memory leak
    assert len(rec.garbage) >= 1
    d = s.command("AT")
    s.dataReceived(b"\r\nOK\r\n")
    assert result(d) == []


def test_echo_after_a_reboot_is_recognised():
    clock, s, t, rec = session()
    d = s.command("AT+CSQ")
    s.dataReceived(b"AT+CSQ\r\r\n+CSQ: 5,99\r\n\r\nOK\r\n")
    assert result(d) == ["+CSQ: 5,99"]
    assert rec.echo == ["AT+CSQ"]


def test_unsolicited_lines_without_a_command():
    clock, s, t, rec = session()
    s.dataReceived(b"\r\nRING\r\n\r\n^RSSI:14\r\n\r\n+CMTI: \"ME\",1\r\n\r\n+CREG: 1\r\n")
    assert [u[0] for u in rec.urcs] == ["RING", "^RSSI:14", '+CMTI: "ME",1', "+CREG: 1"]


def test_port_lost_fails_commands_in_flight():
    clock, s, t, rec = session()
    d1 = s.command("AT+CSQ")
    d2 = s.command("AT")
    s.connectionLost(None)
    assert result(d1).check(PortLost) and result(d2).check(PortLost)
    assert len(rec.lost) == 1


def test_port_lost_after_pdu_written_is_unknown():
    clock, s, t, rec = session()
    d = s.submit(5, "00AA")
    s.dataReceived(b"> ")
    s.connectionLost(None)
    f = result(d)
    assert f.check(AtTimeout) and f.value.pdu_sent


def test_pin_is_never_logged(capsys):
    from twisted.logger import globalLogPublisher
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        clock, s, t, rec = session()
        d = s.command(f"AT+CPIN={SIM_PIN}", secret=True, timeout=1)
        clock.advance(2)
        result(d)
    finally:
        globalLogPublisher.removeObserver(seen.append)
    from twisted.logger import formatEvent
    text = " ".join(formatEvent(e) for e in seen)
    assert SIM_PIN not in text and "CPIN" in text


REPORT_PDU = "0791448720003023" "06E80C91666666666666" "909070618422809090706184628000"


@pytest.mark.parametrize("intruders", [["+CTZV: +32,0"], ["^NWTIME: 26/12/01,09:30:00+32,00", "DST: 0"],
                                       ['*PSUTTZ: 2026,12,1,9,30,0,"+32",0', "+QUSIM: 1", "RING"]])
def test_unsolicited_lines_between_cds_and_its_pdu_are_not_the_pdu(intruders):
    clock, s, t, rec = session()
    s.dataReceived(b"\r\n+CDS: 25\r\n" + b"".join(b"\r\n" + i.encode() + b"\r\n" for i in intruders)
                   + b"\r\n" + REPORT_PDU.encode() + b"\r\n")
    assert ("+CDS: 25", REPORT_PDU) in rec.urcs
    assert [u[0] for u in rec.urcs if u[0] != "+CDS: 25"] == intruders


def test_a_cds_whose_pdu_never_comes_is_handed_on_empty_not_fed_the_next_answer():
    clock, s, t, rec = session()
    s.dataReceived(b"\r\n+CDS: 25\r\n")
    d = s.command("AT+CSQ")
    s.dataReceived(b"\r\n+CSQ: 9,99\r\n\r\nOK\r\n\r\n+CTZV: +32,0\r\n\r\n^RSSI: 9\r\n")
    assert result(d) == ["+CSQ: 9,99"]
    assert ("+CDS: 25", "") in rec.urcs       # kept (as garbage) by the receiver, never dropped


@pytest.mark.parametrize("line", ["+CTZV: +32,0", "^NWTIME: 26/12/01,09:30:00+32,00", "+QUSIM: 1",
                                  '*PSUTTZ: 2026,12,1,9,30,0,"+32",0'])
def test_a_foreign_line_inside_an_answer_is_unsolicited_not_part_of_it(line):
    clock, s, t, rec = session()
    d = s.command("AT+CMGR=1")
    s.dataReceived(b"\r\n+CMGR: 0,,2\r\n\r\n" + line.encode() + b"\r\n\r\n00AABB\r\n\r\nOK\r\n")
    assert result(d) == ["+CMGR: 0,,2", "00AABB"]
    assert rec.urcs == [(line, None)]
    s.dataReceived(b"\r\n" + line.encode() + b"\r\n")      # and with no command in flight
    assert rec.urcs == [(line, None), (line, None)]
