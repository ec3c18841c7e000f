"""Unsolicited lines a real modem sends unasked (+CTZV, ^NWTIME, +QUSIM, *PSUTTZ, DST: ...), met
by the driver over a StringTransport with canned modem bytes: never taken for a message, never
the reason a real message is deleted; the PDU after a +CMGR/+CMGL header found by its shape in
every header form the reference makes write; +CDSI read from the storage it names; a boot
announced in four lines initialises once."""
import pytest
from prometheus_client import REGISTRY
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from sms import atparse
from sms.config import SmsConfig
from sms.modem import READY, ModemDriver

# An SMS-DELIVER as read from a SIM (SMSC 8613800100500, sender 8613700000001, UCS-2 "0427 到达"),
# written out by hand: SMSC field, first octet, OA, PID, DCS, SCTS, UDL, UD.
SMSC = "0891683108100005F0"
TPDU = ("04" "0D91683107000000F1" "00" "08" "62211010300000" "0E"
        "0030003400320037002089BE8FBE")
PDU = SMSC + TPDU
LENGTH = len(TPDU) // 2
# an SMS-STATUS-REPORT: MR 7 for 13900000001, delivered (TP-ST 0x00)
REPORT = "00" "06" "07" "0B813109000000F1" "62211010300000" "62211010300100" "00"
REPORT_LENGTH = len(REPORT) // 2 - 1

NOISE = ["+CTZV: +32,0", "^NWTIME: 26/12/01,09:30:00+32,00", "+QUSIM: 1", '*PSUTTZ: 2026,12,1,9,30,0,"+32",0',
         "DST: 0", "^RSSI: 18", "+CTZE: \"+32\",0,\"2026/12/01,09:30:00\""]
KINDS = ["CTZV", "NWTIME", "QUSIM", "PSUTTZ", "DST", "RSSI", "CTZE"]

# +CMGR header forms seen in ../shared/reference/modems/at-sms (and the alpha quoted or named)
CMGR_FORMS = ["+CMGR: 0,,{n}", "+CMGR: 0,{n}", '+CMGR: 0,"",{n}', '+CMGR: 1,"ZHANG SAN",{n}', "+CMGR: {n}",
              "+CMGR: ,,{n}", "+CMGR: 4,1,,{n}", "+CMGR: 1,,78"]
CMGL_FORMS = ["+CMGL: {i},0,,{n}", "+CMGL: {i},0,{n}", '+CMGL: {i},1,"",{n}', '+CMGL: {i},1,"ZHANG SAN",{n}']


def unsolicited(kind):
    return REGISTRY.get_sample_value("yihu_modem_unsolicited_total", {"kind": kind}) or 0.0


class Peer:
    """The modem side: canned answers (bytes exactly as a modem writes them) per command."""

    def __init__(self, answers=None):
        self.answers = {
            "AT": "OK", "ATE0": "OK", "AT+CMEE=1": "OK", "AT+CPIN?": "+CPIN: READY|OK", "AT+CMGF=0": "OK",
            "AT+CNMI=?": "+CNMI: (2),(1),(0),(1,2),(0)|OK", "AT+CPMS=?": '+CPMS: ("SM","SR"),("SM"),("SM")|OK',
            'AT+CPMS="SM","SM","SM"': "+CPMS: 0,30,0,30,0,30|OK", "AT+CSQ": "+CSQ: 20,99|OK",
            "AT+CREG?": "+CREG: 0,1|OK", "AT+CMGL=4": "OK"}
        self.answers.update(answers or {})
        self.seen: list[str] = []
        self.mem = "SM"

    def answer(self, command: str) -> bytes:
        self.seen.append(command)
        reply = self.answers.get(command if self.mem == "SM" else f"{self.mem}:{command}")
        if reply is None:
            reply = "OK" if command.startswith(("AT+CNMI=", "AT+CMGD=", "AT+CPMS=", "AT+CMGL=")) else "ERROR"
        if command.startswith('AT+CPMS="') and "," not in command and reply.endswith("OK"):
            self.mem = command[9:-1]             # the storage read and deleted from
        return b"".join(b"\r\n" + ln.encode("latin-1") + b"\r\n" for ln in reply.split("|"))


class Rig:
    def __init__(self, answers=None):
        self.clock = Clock()
        self.t = StringTransport()
        self.peer = Peer(answers)
        self.taken = []
        self.driver = ModemDriver(self.clock, "ttyUSB3", self._open, SmsConfig(probe_interval=0),
                                  inbound=self._inbound)

    def _open(self, protocol):
        protocol.makeConnection(self.t)
        return self.t

    def _inbound(self, modem, pdu, length):
        self.taken.append((pdu, length))
        return defer.succeed(None)

    def pump(self, seconds=5.0):
        for _ in range(int(seconds / 0.05)):
            data, _ = self.t.value(), self.t.clear()
            for raw in data.split(b"\r"):
                cmd = raw.replace(b"\x1b", b"").strip().decode("latin-1")
                if cmd and self.driver.session is not None:
                    self.driver.session.dataReceived(self.peer.answer(cmd))
            self.clock.advance(0.05)

    def start(self):
        self.driver.start()
        self.pump()
        assert self.driver.state == READY
        self.peer.seen.clear()
        self.taken.clear()
        return self

    def modem_says(self, *lines):
        self.driver.session.dataReceived(b"".join(b"\r\n" + ln.encode() + b"\r\n" for ln in lines))
        self.pump()


@pytest.mark.parametrize("form", CMGR_FORMS)
@pytest.mark.parametrize("where", ["before", "between", "after", "everywhere"])
def test_a_line_between_the_header_and_its_pdu_is_never_the_message(form, where):
    header = form.format(n=LENGTH)
    k = CMGR_FORMS.index(form) % len(NOISE)
    noise, kind = NOISE[k], KINDS[k]
    lines = {"before": [noise, header, PDU], "between": [header, noise, PDU], "after": [header, PDU, noise],
             "everywhere": [noise, header, noise, noise, PDU, noise]}[where]
    rig = Rig({"AT+CMGR=5": "|".join(lines + ["OK"])}).start()
    before = unsolicited(kind)
    rig.modem_says('+CMTI: "SM",5')
    assert rig.taken == [(PDU, 78 if form.endswith(",78") else LENGTH)]
    assert "AT+CMGD=5" in rig.peer.seen
    assert unsolicited(kind) - before == lines.count(noise)


@pytest.mark.parametrize("noise,kind", list(zip(NOISE, KINDS)))
def test_an_answer_with_no_pdu_keeps_the_message_on_the_sim(noise, kind):
    rig = Rig({"AT+CMGR=2": f"+CMGR: 0,,{LENGTH}|{noise}|OK"}).start()
    before = unsolicited(kind)
    rig.modem_says('+CMTI: "SM",2')
    assert rig.taken == []
    assert not any(c.startswith("AT+CMGD") for c in rig.peer.seen)
    assert unsolicited(kind) == before + 1


def test_a_hex_looking_intruder_of_the_wrong_length_loses_to_the_real_pdu():
    decoy = "0011AABB"                            # hex, but not the announced length
    rig = Rig({"AT+CMGR=1": f"+CMGR: 0,,{LENGTH}|{decoy}|{PDU}|OK"}).start()
    rig.modem_says('+CMTI: "SM",1')
    assert rig.taken == [(PDU, LENGTH)]


def test_a_modem_that_announces_a_wrong_length_still_has_its_pdu_read():
    # Gammu's dumps show makes announcing 78 for any size: the hex line is still the PDU
    rig = Rig({"AT+CMGR=1": f"+CMGR: 1,,78|+CTZV: +32,0|{PDU}|OK"}).start()
    rig.modem_says('+CMTI: "SM",1')
    assert rig.taken == [(PDU, 78)]


@pytest.mark.parametrize("form", CMGL_FORMS)
def test_the_sim_sweep_takes_each_pdu_by_shape_and_no_intruder(form):
    other = SMSC + TPDU[:-4] + "0021"            # a second message, same length ("0427 到!")
    listing = [form.format(i=3, n=LENGTH), "^NWTIME: 26/12/01,09:30:00+32,00", PDU,
               "+QUSIM: 1", form.format(i=7, n=LENGTH), "DST: 0", other, "+CTZV: +32,0"]
    rig = Rig().start()
    rig.peer.answers["AT+CMGL=4"] = "|".join(listing + ["OK"])
    rig.driver.sweep()
    rig.pump()
    assert rig.taken == [(PDU, LENGTH), (other, LENGTH)]
    assert [c for c in rig.peer.seen if c.startswith("AT+CMGD")] == ["AT+CMGD=3", "AT+CMGD=7"]


def test_cdsi_reads_the_storage_it_names_and_selects_the_sim_again():
    rig = Rig({"SR:AT+CMGR=4": f"+CMGR: 0,,{REPORT_LENGTH}|+CTZV: +32,0|{REPORT}|OK"}).start()
    rig.modem_says('+CDSI: "SR",4')
    assert rig.taken == [(REPORT, REPORT_LENGTH)]
    assert rig.peer.seen == ['AT+CPMS="SR"', "AT+CMGR=4", "AT+CMGD=4", 'AT+CPMS="SM"']


def test_a_report_whose_cdsi_was_lost_is_swept_from_sr():
    rig = Rig().start()
    rig.peer.answers["SR:AT+CMGL=4"] = f"+CMGL: 2,0,,{REPORT_LENGTH}|DST: 0|{REPORT}|OK"
    rig.driver.sweep()
    rig.pump()
    assert rig.taken == [(REPORT, REPORT_LENGTH)]
    assert rig.peer.seen == ["AT+CMGL=4", 'AT+CPMS="SR"', "AT+CMGL=4", "AT+CMGD=2", 'AT+CPMS="SM"']


def test_cdsi_that_cannot_select_its_storage_leaves_the_report_there():
    rig = Rig({'AT+CPMS="SR"': "+CMS ERROR: 302"}).start()
    rig.modem_says('+CDSI: "SR",4')
    assert rig.taken == [] and "AT+CMGR=4" not in rig.peer.seen


def test_a_boot_announced_in_four_lines_initialises_once():
    rig = Rig().start()
    rig.modem_says("RDY", "+CFUN: 1", "+CPIN: READY", "SMS Ready")
    assert rig.peer.seen.count("ATE0") == 1
    assert rig.driver.state == READY


def test_noise_inside_other_answers_is_not_taken_for_them():
    rig = Rig({"AT+CSQ": "^NWTIME: 26/12/01,09:30:00+32,00|+CSQ: 9,99|DST: 0|OK"}).start()
    rig.driver._health(rig.driver.session)
    rig.pump()
    assert rig.driver.signal_dbm == -113 + 18


def test_kind_names_the_prefix_and_is_bounded():
    assert [atparse.urc_kind(n) for n in NOISE] == KINDS
    assert atparse.urc_kind("RDY") == "RDY" and atparse.urc_kind("SMS Ready") == "SMS_READY"
    assert atparse.urc_kind("\x7f?garbage: 1") == "other"
    from sms import modem
    for i in range(modem.MAX_KINDS + 10):
        modem.note_unsolicited(f"K{i}")
    assert len(modem._kinds_seen) <= modem.MAX_KINDS
