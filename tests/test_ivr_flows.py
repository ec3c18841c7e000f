"""The call flows, driven by scripted callers through the Asterisk emulator (in memory, Clock)."""
from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from ivr.drill import DrillKeypadSink
from ivr.emulator import EmulatedChannel, HangUp, Press, ScriptedCaller, Silence, agi_environment
from ivr.emulator.channel import Reply
from ivr.emulator.inmemory import InMemoryCall
from ivr.journal import MemoryJournal
from ivr.orders import OrderBrief
from ivr.service import make_fastagi_factory

COMMANDER = "+8613805761234"
ORDER_VARS = {"ORDER_CODE": "0427", "YIHU_PHONE": COMMANDER, "YIHU_DELIVERY": "7"}


class Call:
    def __init__(self, script, moves=(), *, variables=None, callerid="057687770110", sink=None,
                 journal=None, orders=None, speech=None, channel=None, pins=None, nuisance_notice=None):
        self.clock = Clock()
        self.journal = journal or MemoryJournal(self.clock)
        self.sink = sink or DrillKeypadSink({COMMANDER: ["0427"]})
        factory = make_fastagi_factory(self.clock, sink=self.sink, journal=self.journal, orders=orders,
                                       speech=speech, pins=pins, nuisance_notice=nuisance_notice)
        self.channel = channel or EmulatedChannel(caller=ScriptedCaller(moves), variables=dict(variables or {}),
                                                  callerid=callerid)
        env = agi_environment(script, callerid=callerid, uniqueid="yihu-order-0427-7-1")
        self.mem = InMemoryCall(factory, env, self.channel, self.clock)

    @property
    def commands(self):
        return self.channel.commands

    @property
    def played(self):
        return self.channel.played


def order_call(moves, **kw):
    kw.setdefault("variables", ORDER_VARS)
    return Call("order?order=0427", moves, **kw)


# --- order call ------------------------------------------------------------------------------------

def test_press_1_records_received_and_confirms_by_voice():
    c = order_call([Press("1")])
    assert c.commands[:6] == ["ANSWER", "GET VARIABLE ORDER_CODE", "GET VARIABLE YIHU_PHONE",
                              "GET VARIABLE YIHU_DELIVERY", 'STREAM FILE yihu/order-intro "01234"',
                              'SAY DIGITS 0427 "01234"']
    [answer] = c.sink.answers
    assert (answer.digit, answer.order_code, answer.caller, answer.call_id) == ("1", "0427", COMMANDER,
                                                                               "yihu-order-0427-7-1")
    [entry] = c.journal.entries
    assert answer.raw_id == 1 and (entry.digits, entry.state, entry.delivery_id) == ("1", "new", 7)
    # what the commander hears after the key: recorded, received, order 0427, goodbye
    assert c.played[-5:] == ["yihu/recorded", "yihu/status-received", "yihu/for-order", "digits:0427",
                             "yihu/goodbye"]
    assert c.commands[-1] == "HANGUP" and c.channel.hung_up_by == "gateway"
    assert c.mem.closed_by_gateway


def test_press_0_then_2_repeats_the_order_then_records_arrived():
    c = order_call([Press("0"), Press("2")])
    assert c.played.count("yihu/order-intro") == 2
    assert c.played.count("digits:0427") == 3          # read twice, confirmed once
    assert [a.digit for a in c.sink.answers] == ["2"]
    assert "yihu/status-arrived" in c.played
    assert [e.digits for e in c.journal.entries] == ["0", "2"]   # the repeat key is kept raw too


def test_silent_commander_is_recorded_as_no_answer_after_two_menus():
    c = order_call([])
    assert c.commands.count("GET DATA yihu/order-menu 5000 1") == 2
    assert c.sink.answers == []
    [na] = c.journal.no_answers
    assert na.delivery_id == 7 and na.order_code == "0427" and "no key pressed 2 times" in na.note
    assert c.played[-1] == "yihu/no-input-goodbye" and c.commands[-1] == "HANGUP"


def test_hang_up_during_the_order_prompt():
    c = order_call([HangUp()])
    assert c.commands[-1] == 'STREAM FILE yihu/order-intro "01234"'    # nothing sent after it
    assert c.sink.answers == []
    [na] = c.journal.no_answers
    assert "hung up before keying" in na.note
    assert c.mem.closed_by_gateway and c.channel.hung_up_by == "caller"


def test_hang_up_during_the_confirmation_keeps_the_answer():
    c = order_call([Press("3"), HangUp()])
    assert [a.digit for a in c.sink.answers] == ["3"]
    assert c.journal.no_answers == []
    assert c.mem.closed_by_gateway


def test_key_pressed_while_the_order_is_read_is_taken():
    c = order_call([Press("1", barge_in=True)])
    assert not any(cmd.startswith("GET DATA") for cmd in c.commands)
    assert [a.digit for a in c.sink.answers] == ["1"]


def test_answer_is_committed_before_it_is_confirmed():
    clock = Clock()
    pending = Deferred()

    class SlowJournal(MemoryJournal):
        def record(self, entry):
            super().record(entry)
            return pending
    c = order_call([Press("2")], journal=SlowJournal(clock))
    assert c.commands[-1] == "GET DATA yihu/order-menu 5000 1"
    assert c.sink.answers == [] and "yihu/recorded" not in c.played     # not yet committed: silence
    pending.callback(41)
    c.mem.pump()
    assert c.sink.answers[0].raw_id == 41 and "yihu/recorded" in c.played


def test_refused_answer_is_not_confirmed_as_recorded():
    c = order_call([Press("4")])                       # 4 = assembled, but not a leaving-the-city order
    assert "yihu/recorded" not in c.played and "yihu/not-recorded" in c.played


def test_leaving_city_order_offers_4_and_records_assembled():
    class Orders:
        def brief(self, code):
            return succeed(OrderBrief(code, "赶赴白塔镇集结", "leaving_city"))
    c = order_call([Press("4")], orders=Orders(), sink=DrillKeypadSink(leaving_city={"0427"}))
    assert "GET DATA yihu/order-menu-assembled 5000 1" in c.commands
    assert c.sink.answers[0].digit == "4" and "yihu/status-assembled" in c.played


def test_feedback_engine_failure_is_told_to_the_commander():
    class Broken(DrillKeypadSink):
        def keypad_answer(self, answer):
            return fail(RuntimeError("engine down"))
    c = order_call([Press("1")], sink=Broken())
    assert "yihu/system-error" in c.played and "yihu/recorded" not in c.played
    assert c.journal.entries[0].state == "new"        # the raw key is kept for the engine to take later


def test_invalid_keys_three_times_is_no_answer():
    c = order_call([Press("7"), Press("9"), Press("*")])
    assert c.played.count("yihu/invalid-key") == 2
    assert len(c.journal.no_answers) == 1 and c.sink.answers == []
    assert [e.state for e in c.journal.entries[:3]] == ["garbage"] * 3


def test_order_text_spoken_when_rendered():
    class Speech:
        def render(self, text):
            return succeed(f"/var/spool/yihu/order-{len(text)}")

    class Orders:
        def brief(self, code):
            return succeed(OrderBrief(code, "城关镇河堤险情，立即出动", "same_township"))
    c = order_call([Press("1")], orders=Orders(), speech=Speech())
    assert 'STREAM FILE /var/spool/yihu/order-12 "01234"' in c.commands


def test_order_code_from_query_when_the_variable_is_missing():
    c = order_call([Press("1")], variables={})
    assert c.sink.answers[0].order_code == "0427" and c.sink.answers[0].caller == ""


def test_garbage_order_code_is_not_read_out():
    c = order_call([Press("1")], variables={"ORDER_CODE": "04 27;x"})
    assert c.sink.answers == [] and "yihu/system-error" in c.played and c.commands[-1] == "HANGUP"


# --- feedback line -----------------------------------------------------------------------------------

def feedback(moves, callerid="13805761234", **kw):
    return Call("feedback", moves, callerid=callerid, **kw)


def test_unknown_caller_is_told_so_and_logged():
    c = feedback([Press("1")], callerid="13900000000")
    assert "yihu/unknown-caller" in c.played and c.sink.answers == []
    [entry] = c.journal.entries
    assert entry.state == "refused" and entry.caller == "+8613900000000" and "not on the roster" in entry.note
    assert c.commands[-1] == "HANGUP"


def test_withheld_number_is_unknown():
    c = feedback([Press("1")], callerid="unknown")
    assert "yihu/unknown-caller" in c.played and c.sink.answers == []


def test_one_open_order_takes_the_answer_directly():
    c = feedback([Press("2")])
    assert not any("enter-order-code" in cmd for cmd in c.commands)
    [a] = c.sink.answers
    assert (a.order_code, a.digit, a.caller) == ("0427", "2", COMMANDER)


def test_two_open_orders_the_caller_keys_the_code_first():
    sink = DrillKeypadSink({COMMANDER: ["0427", "0431"]})
    c = feedback([Press("0431#"), Press("3")], sink=sink)
    assert "GET DATA yihu/enter-order-code 8000 8" in c.commands
    [a] = sink.answers
    assert (a.order_code, a.digit) == ("0431", "3")
    assert c.journal.entries[0].digits == "0431"      # the keyed code is kept raw


def test_two_open_orders_wrong_code_then_dropped_zero():
    sink = DrillKeypadSink({COMMANDER: ["0427", "0431"]})
    c = feedback([Press("999#"), Press("427#"), Press("1")], sink=sink)
    assert c.played.count("yihu/wrong-order-code") == 1
    assert sink.answers[0].order_code == "0427"


def test_two_open_orders_no_code_keyed():
    sink = DrillKeypadSink({COMMANDER: ["0427", "0431"]})
    c = feedback([], sink=sink)
    assert sink.answers == [] and c.played[-1] == "yihu/no-input-goodbye"


def test_known_caller_without_open_orders():
    c = feedback([], sink=DrillKeypadSink({COMMANDER: []}))
    assert "yihu/no-open-orders" in c.played


# --- hotline and overflow --------------------------------------------------------------------------

def hotline(moves, line="110", **kw):
    kw.setdefault("variables", {"HOTLINE": line})
    return Call(f"hotline?line={line}", moves, callerid="13805761234", **kw)


def test_hotline_takes_the_triage_key_and_hands_over_to_the_queue():
    c = hotline([Press("2")])
    assert c.commands[:3] == ["GET VARIABLE HOTLINE", "SET VARIABLE INTAKE_ID yihu-order-0427-7-1",
                              'STREAM FILE yihu/hotline-110 "0123456789*#"']
    assert "WAIT FOR DIGIT 3000" in c.commands
    assert c.channel.variables["TRIAGE"] == "2"
    assert "HANGUP" not in c.commands and c.channel.alive and c.mem.closed_by_gateway
    assert c.journal.entries[0].meta == {"line": "110"}


def test_hotline_silent_citizen_goes_to_the_queue():
    c = hotline([])
    assert "TRIAGE" not in c.channel.variables and "HANGUP" not in c.commands and c.mem.closed_by_gateway


def test_hotline_line_from_the_query_when_the_variable_is_missing():
    c = hotline([], line="119", variables={})
    assert 'STREAM FILE yihu/hotline-119 "0123456789*#"' in c.commands


def test_hotline_caller_hangs_up_in_the_ivr():
    c = hotline([HangUp()])
    assert c.commands[-1].startswith("STREAM FILE yihu/hotline-110") and c.mem.closed_by_gateway


def test_hotline_failure_never_holds_the_citizen():
    class Broken(EmulatedChannel):
        def handle(self, line):
            self.commands.append(line)
            return Reply(["510 Invalid or unknown command"] if "SET" in line else ["200 result=1 (110)"])
    c = hotline([], channel=Broken())
    assert c.mem.closed_by_gateway and "HANGUP" not in c.commands and len(c.commands) == 2


def test_hotline_stuck_asterisk_released_by_the_deadline():
    class Mute(EmulatedChannel):
        def handle(self, line):
            self.commands.append(line)
            return Reply([], 3600.0)        # never answers in time
    c = hotline([], channel=Mute())
    assert not c.mem.closed_by_gateway
    c.mem.advance(10.5)                      # the command deadline (10 s)
    assert c.mem.closed_by_gateway


def test_hotline_triage_key_kept_without_holding_the_call():
    clock = Clock()

    class StuckJournal(MemoryJournal):
        def record(self, entry):
            return Deferred()                 # a disk that never answers
    c = hotline([Press("1")], journal=StuckJournal(clock))
    assert c.mem.closed_by_gateway and c.channel.variables["TRIAGE"] == "1"


def test_overflow_plays_the_fixed_message_and_returns():
    c = Call("overflow", [])
    assert c.commands == ['STREAM FILE yihu/hotline-overflow ""']
    assert c.mem.closed_by_gateway and c.channel.alive


def test_overflow_caller_hangs_up():
    c = Call("overflow", [HangUp()])
    assert c.mem.closed_by_gateway and c.channel.hung_up_by == "caller"


def test_silence_move_is_accepted():
    c = order_call([Silence(), Press("1")])
    assert c.sink.answers[0].digit == "1"


def test_engine_answering_empty_for_a_stranger_roster_tells_unknown():
    class Engine(DrillKeypadSink):
        def open_orders_for(self, caller):
            return succeed([])          # the real engine's answer for a number not on the roster

    class Orders:
        def brief(self, code):
            return succeed(None)

        def known_phone(self, e164):
            return succeed(e164 == COMMANDER)
    stranger = feedback([], callerid="13900000000", sink=Engine(), orders=Orders())
    assert "yihu/unknown-caller" in stranger.played
    member = feedback([], sink=Engine(), orders=Orders())
    assert "yihu/no-open-orders" in member.played
