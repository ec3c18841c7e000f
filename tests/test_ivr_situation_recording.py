"""Keypad 5: a spoken situation report, recorded by Asterisk (RECORD FILE) and kept with its
length; the emulated Asterisk answers RECORD FILE as Asterisk 22 does, unhappy answers included."""
from __future__ import annotations

import wave

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from gateway.interfaces import FeedbackOutcome, ISituationSink
from ivr.drill import DrillKeypadSink
from ivr.emulator import EmulatedChannel, Press, ScriptedCaller, Speak, agi_environment
from ivr.emulator.inmemory import InMemoryCall
from ivr.emulator.sounds import CORE_SOUNDS, SoundLibrary
from ivr.flows.answer_menu import MenuSettings
from ivr.journal import MemoryJournal
from ivr.orders import OrderBrief
from ivr.service import make_fastagi_factory

COMMANDER = "+8613805761234"


@implementer(ISituationSink)
class Sink(DrillKeypadSink):
    def __init__(self):
        super().__init__({COMMANDER: ["0427"]})
        self.reports = []

    def situation_recorded(self, report):
        self.reports.append(report)
        return succeed(FeedbackOutcome(True, "已记录", report.order_code, "situation"))


class MajorOrders:
    def brief(self, code):
        return succeed(OrderBrief(code, "白塔镇山体滑坡", "same_township", major=True))

    def known_phone(self, e164):
        return succeed(True)


def feedback_call(moves, recordings_dir, sounds=None):
    clock = Clock()
    sink, journal = Sink(), MemoryJournal(clock)
    factory = make_fastagi_factory(clock, sink=sink, journal=journal, orders=MajorOrders(),
                                   settings=MenuSettings(recordings_dir=str(recordings_dir)))
    channel = EmulatedChannel(caller=ScriptedCaller(moves), callerid=COMMANDER,
                              **({"sounds": sounds} if sounds else {}))
    env = agi_environment("feedback", callerid=COMMANDER, uniqueid="1764482000.77")
    InMemoryCall(factory, env, channel, clock)
    for _ in range(300):               # the caller talks in Clock time
        clock.advance(1.0)
    return sink, journal, channel


def wav_seconds(path) -> float:
    with wave.open(str(path), "rb") as w:       # read back independently of the flow
        return w.getnframes() / w.getframerate()


def test_key_5_records_a_spoken_report_with_its_length(tmp_path):
    sink, journal, channel = feedback_call([Press("5"), Speak(12.5, "#")], tmp_path)
    [report] = sink.reports
    assert report.order_code == "0427" and report.caller == COMMANDER and report.seconds == 12.5
    assert report.audio_path.startswith(str(tmp_path)) and report.audio_path.endswith(".wav")
    assert wav_seconds(report.audio_path) == 12.5
    [record] = [c for c in channel.commands if c.startswith("RECORD FILE")]
    assert record.endswith('wav "#" 180000 BEEP s=6')
    assert channel.played[-4:] == ["yihu/record-situation", "yihu/recorded", "yihu/status-situation", "yihu/goodbye"]
    # A major order: the caller is told once that 5 records a report, before the usual menu.
    assert channel.played.index("yihu/situation-hint") < channel.played.index("yihu/order-menu")
    assert [(e.digits, e.state) for e in journal.entries][-1] == ("5", "new")
    assert sink.answers == []          # a report is no status


def test_a_report_ended_by_hanging_up_is_kept_and_nothing_more_is_said(tmp_path):
    sink, _journal, channel = feedback_call([Press("5"), Speak(7.0, "hangup")], tmp_path)
    [report] = sink.reports
    assert report.seconds == 7.0 and wav_seconds(report.audio_path) == 7.0
    assert channel.played[-1] == "yihu/record-situation" and channel.hung_up_by == "caller"


def test_a_directory_asterisk_cannot_write_is_said_and_logged_not_lost_silently(tmp_path):
    sink, journal, channel = feedback_call([Press("5"), Speak(5.0)], tmp_path / "missing")
    assert sink.reports == []
    assert "yihu/not-recorded" in channel.played
    assert journal.entries[-1].state == "refused" and "writefile" in journal.entries[-1].note


def test_an_asterisk_without_a_beep_records_without_it(tmp_path):
    no_beep = SoundLibrary.installed()
    no_beep.names = frozenset(CORE_SOUNDS - {"beep"})
    sink, _journal, channel = feedback_call([Press("5"), Speak(3.0, "#")], tmp_path, sounds=no_beep)
    records = [c for c in channel.commands if c.startswith("RECORD FILE")]
    assert len(records) == 2 and "BEEP" in records[0] and "BEEP" not in records[1]
    assert [r.seconds for r in sink.reports] == [3.0]


def test_emulated_record_file_answers_as_asterisk_22(tmp_path):
    ch = EmulatedChannel(caller=ScriptedCaller([Speak(2.0, "#"), Speak(1.0, "silence")]))
    base = tmp_path / "r"
    assert ch.handle(f'RECORD FILE {base} wav "#" 5000 BEEP').lines == ["200 result=35 (dtmf) endpos=16000"]
    assert ch.handle(f'RECORD FILE {base} wav "#" 5000 s=3').lines == ["200 result=0 (timeout) endpos=8000"]
    assert ch.handle(f'RECORD FILE {base} mp3 "#" 5000').lines == ["200 result=-1 (writefile)"]
    assert ch.handle(f'RECORD FILE {tmp_path}/no/such wav "#" 5000').lines == ["200 result=-1 (writefile)"]
    assert ch.handle('RECORD FILE x wav "#" soon').lines[0].startswith("520-")
