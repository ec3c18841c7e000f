"""AMI framing: the parser against the recorded Asterisk 22 byte streams and bad input."""
import json

import pytest

from gateway import metrics
from gateway.ami.actionid import ActionIdGenerator, default_generator
from gateway.ami.message import AmiMessage, device_of, encode_action
from gateway.ami.parser import AmiParser, iter_messages
from tests._paths import ASTERISK

TRANSCRIPTS = sorted(p.name for p in ASTERISK.glob("*.ami.jsonl"))


def server_chunks(name):
    out = []
    for line in (ASTERISK / name).read_text(encoding="utf-8").splitlines():
        c = json.loads(line)
        if c["dir"] == "<":
            out.append(c["data"].encode("utf-8"))
    return out


def garbage_total():
    return metrics.AMI_GARBAGE._value.get()


@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_transcript_parses_the_same_whatever_the_chunks(name):
    chunks = server_chunks(name)
    data = b"".join(chunks)
    whole = list(iter_messages(data))
    p = AmiParser()
    as_recorded = [m for c in chunks for m in p.feed(c)]
    assert p.garbage_count == 0 and p.pending == 0
    assert whole[0].kind == "banner" and whole[0]["Banner"] == "Asterisk Call Manager/11.0.0"
    for size in (1, 2, 3, 5, 64, 1000):
        assert list(iter_messages(data, chunk=size)) == whole, size
    assert as_recorded == whole
    # Every message after the banner is an event or a response, and re-encodes to its bytes.
    assert all(m.kind in ("event", "response") for m in whole[1:])
    assert b"".join(m.to_bytes() for m in whole) == data


def test_banner_has_no_blank_line_after_it_and_shares_a_segment():
    p = AmiParser()
    out = p.feed(b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: a\r\n"
                 b"Message: Authentication accepted\r\n\r\nEvent: FullyB")
    assert [m.kind for m in out] == ["banner", "response"]
    assert out[1]["Message"] == "Authentication accepted"
    out = p.feed(b"ooted\r\nPrivilege: system,all\r\n\r\n")
    assert out[0].name == "FullyBooted" and out[0]["Privilege"] == "system,all"


def test_repeated_headers_keep_order_and_first_value_wins():
    data = (b"Asterisk Call Manager/11.0.0\r\nEvent: Newchannel\r\nChannel: PJSIP/a-00000001\r\n"
            b"ChanVariable: HOTLINE=110\r\nChanVariable: ORDER_CODE=\r\nUniqueid: 1.1\r\n\r\n")
    m = list(iter_messages(data))[1]
    assert m["ChanVariable"] == "HOTLINE=110"
    assert m.getall("ChanVariable") == ["HOTLINE=110", "ORDER_CODE="]
    assert m.chanvars() == {"HOTLINE": "110", "ORDER_CODE": ""}
    assert m.keys() == ["Event", "Channel", "ChanVariable", "ChanVariable", "Uniqueid"]
    assert m.pairs[2] == ("ChanVariable", "HOTLINE=110")
    assert "Uniqueid" in m and m.get("Nope", "x") == "x"
    # The full read (every header materialised) agrees: first value in the dict, all kept.
    assert m.first == {"Event": "Newchannel", "Channel": "PJSIP/a-00000001",
                       "ChanVariable": "HOTLINE=110", "Uniqueid": "1.1"}
    assert m.getall("ChanVariable") == ["HOTLINE=110", "ORDER_CODE="] and m.garbage is None


def test_near_miss_heads_are_judged_by_the_full_rules():
    # Heads the fast path does not take ("Action:" without its space, a truncated "Respons")
    # go through the line-by-line rules, as before.
    p = AmiParser(expect_banner=False)
    out = p.feed(b"Action:Ping\r\nActionID: 1\r\n\r\nRespons: x\r\nActionID: 2\r\n\r\n"
                 b"Action: Logoff\r\n\r\n")
    assert [(m.kind, m.name, m.get("ActionID")) for m in out] == [("action", "Ping", "1"),
                                                                  ("action", "Logoff", None)]
    assert p.garbage_count == 1 and p.garbage[0][0] == "not an expected message (unknown)"


def test_values_with_colons_empty_values_and_no_space():
    m = list(iter_messages(b"x/1\r\nEvent: E\r\nAppData: agi://1.2.3.4:4573/h?line=110\r\n"
                           b"AccountCode: \r\nOdd:value\r\n\r\n"))[1]
    assert m["AppData"] == "agi://1.2.3.4:4573/h?line=110"
    assert m["AccountCode"] == "" and m["Odd"] == "value"


def test_utf8_split_across_chunks():
    data = "Asterisk Call Manager/11.0.0\r\nEvent: NewCallerid\r\nCallerIDName: 张三\r\n\r\n".encode()
    cut = data.index("张".encode()) + 1
    p = AmiParser()
    out = p.feed(data[:cut]) + p.feed(data[cut:])
    assert out[1]["CallerIDName"] == "张三"


def test_garbage_lines_are_counted_kept_and_the_parser_carries_on():
    before = garbage_total()
    p = AmiParser()
    out = p.feed(b"Asterisk Call Manager/11.0.0\r\n"
                 b"\x00\x01 line noise\r\nEvent: A\r\nKey: 1\r\n\r\n"      # noise glued before
                 b"%%%%%%\r\n\r\n"                                         # a block of noise
                 b"Event: B\r\nthis is not a header\r\nKey: 2\r\n\r\n"
                 b"\r\n\r\nEvent: C\r\n\r\n")                              # stray blank lines
    names = [m.name for m in out if m.kind == "event"]
    assert names == ["A", "B", "C"]
    assert out[2].garbage == ["this is not a header"]
    assert out[2]["Key"] == "2"
    assert p.garbage_count == 3
    assert garbage_total() - before == 3
    assert any(b"line noise" in raw for _why, raw in p.garbage)


def test_overlong_line_is_dropped_but_its_message_kept():
    p = AmiParser()
    long = b"x" * 10_000
    out = p.feed(b"Asterisk Call Manager/11.0.0\r\nEvent: A\r\nJunk: " + long + b"\r\nKey: 1\r\n\r\n"
                 b"Event: B\r\n\r\n")
    assert [m.name for m in out[1:]] == ["A", "B"]
    assert "Junk" not in out[1] and out[1]["Key"] == "1"
    assert p.garbage_count == 1
    assert len(p.garbage[0][1]) <= 512        # kept raw, truncated


def test_overlong_message_is_dropped_and_the_stream_resyncs():
    p = AmiParser()
    assert p.feed(b"Asterisk Call Manager/11.0.0\r\n") [0].kind == "banner"
    out = []
    out += p.feed(b"Event: Huge\r\nJunk: ")
    for _ in range(20):                         # 200 KB without a blank line
        out += p.feed(b"y" * 10_000)
        assert p.pending < 70_000                # bounded memory
    out += p.feed(b"\r\n\r\nEvent: After\r\nKey: ok\r\n\r\n")
    assert [m.name for m in out] == ["After"]
    assert p.garbage_count == 1


def test_a_huge_complete_message_in_one_chunk_is_dropped():
    p = AmiParser()
    out = p.feed(b"Asterisk Call Manager/11.0.0\r\nEvent: Huge\r\n"
                 + b"K: v\r\n" * 20_000 + b"\r\nEvent: Next\r\n\r\n")
    assert [m.name for m in out[1:]] == ["Next"]
    assert p.garbage_count == 1


def test_messages_of_the_wrong_kind_are_garbage():
    p = AmiParser()
    out = p.feed(b"Asterisk Call Manager/11.0.0\r\nAction: Login\r\n\r\nFoo: bar\r\n\r\n"
                 b"Response: Success\r\n\r\n")
    assert [m.kind for m in out] == ["banner", "response"]
    assert p.garbage_count == 2
    server = AmiParser(expect_banner=False)
    assert [m.name for m in server.feed(b"Action: Ping\r\nActionID: 1\r\n\r\n")] == ["Ping"]


def test_encode_action_repeats_list_values_and_refuses_line_breaks():
    data = encode_action("Originate", [("Channel", "PJSIP/1@t"),
                                       ("Variable", ["ORDER_CODE=0427", "X=1"])], "id-1")
    assert data == (b"Action: Originate\r\nChannel: PJSIP/1@t\r\nVariable: ORDER_CODE=0427\r\n"
                    b"Variable: X=1\r\nActionID: id-1\r\n\r\n")
    with pytest.raises(ValueError):
        encode_action("Originate", [("CallerID", "x\r\nAction: Command")])
    m = list(iter_messages(data, expect_banner=False))[0]
    assert m.kind == "action" and m.getall("Variable") == ["ORDER_CODE=0427", "X=1"]


def test_action_ids_unique_across_processes_and_boots():
    a = ActionIdGenerator(host="cc-gw1", pid=100, boot="aaaa")
    b = ActionIdGenerator(host="cc-gw1", pid=100, boot="bbbb")     # same pid, restarted
    c = ActionIdGenerator(host="cc gw:2", pid=101)
    ids = [a() for _ in range(1000)] + [b() for _ in range(1000)] + [c() for _ in range(10)]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "yihu-cc-gw1-100-aaaa-1"
    assert a.ours(ids[5]) and not a.ours(ids[1500]) and not a.ours(None)
    assert " " not in c() and ":" not in c()
    assert default_generator() is default_generator()


def test_message_helpers():
    m = AmiMessage.build(("Event", "Hangup"), ("Cause", 16))
    assert m.kind == "event" and m.name == "Hangup" and m["Cause"] == "16"
    assert m.to_bytes() == b"Event: Hangup\r\nCause: 16\r\n\r\n"
    assert device_of("PJSIP/1001-0000000a") == "PJSIP/1001"
    assert device_of("Local/1001@calltaker-00000025;1") == "Local/1001@calltaker"
    assert device_of("DAHDI/1-1") == "DAHDI/1-1"


def test_a_bad_line_hidden_by_a_value_with_a_colon_is_caught_when_read():
    before = garbage_total()
    data = (b"Asterisk Call Manager/11.0.0\r\nResponse: Error\r\nActionID: x\r\n"
            b"Message: Invalid/unknown command: Foo\r\nbroken line\r\n\r\n")
    (_banner, m) = list(iter_messages(data))
    assert m.get("ActionID") == "x"                 # single headers read without a full parse
    assert m["Message"] == "Invalid/unknown command: Foo"
    assert m.first["Message"] == "Invalid/unknown command: Foo"     # the full read finds it
    assert m.garbage == ["broken line"] and garbage_total() - before == 1
    assert m.keys() == ["Response", "ActionID", "Message"]


def test_headers_read_on_demand_match_the_full_parse():
    for name in TRANSCRIPTS:
        for m in iter_messages(b"".join(server_chunks(name))):
            if m.kind == "banner":
                continue
            lazy = {k: m.get(k) for k in ("Event", "Response", "ActionID", "Linkedid",
                                          "ChanVariable", "Nope")}
            full = {k: m.first.get(k) for k in lazy}
            assert lazy == full
            assert list(m) == [tuple(line.split(": ", 1)) for line in
                               m.to_bytes().decode().split("\r\n")[:-2]]


def first_values(block: bytes) -> dict:
    """The first value of every key, read plainly from a message's bytes."""
    out = {}
    for line in block.decode("utf-8").split("\r\n"):
        k, v = line.split(": ", 1)
        out.setdefault(k, v)
    return out


def test_the_full_read_holds_the_first_value_of_every_line():
    for name in TRANSCRIPTS:
        data = b"".join(server_chunks(name))
        banner, _, rest = data.partition(b"\r\n")
        blocks = rest.split(b"\r\n\r\n")
        assert blocks[-1] == b""
        msgs = list(iter_messages(data))[1:]
        assert len(msgs) == len(blocks) - 1
        for m, block in zip(msgs, blocks):
            assert m.first == first_values(block), (name, block)
            assert m["Event" if m.kind == "event" else "Response"] == m.name
    # The head line's key is the message's kind, and a repeated head keeps its first value.
    (a,) = AmiParser(expect_banner=False).feed(
        b"Action: Originate\r\nVariable: A=1\r\nAction: Other\r\nVariable: B=2\r\n\r\n")
    (e,) = AmiParser(expect_banner=False, accept=("event",)).feed(
        b"Event: Newexten\r\nAppData: Set(x=1: y)\r\nEvent: Again\r\n\r\n")
    assert a.first == {"Action": "Originate", "Variable": "A=1"} and a.name == "Originate"
    assert e.first == {"Event": "Newexten", "AppData": "Set(x=1: y)"} and e.name == "Newexten"
    assert a.getall("Action") == ["Originate", "Other"] and e.getall("Event") == ["Newexten", "Again"]
