"""Parsing of one FastAGI reply line, as Asterisk 22 sends them.

Seen on the wire (reference transcripts):
    200 result=1 (0427)          GET VARIABLE: data in parentheses
    200 result= (timeout)        GET DATA that timed out with no digit
    200 result=49 endpos=9760    STREAM FILE interrupted by '1' (ASCII 49)
    200 result=-1                media command cut by hang-up
    511 Command Not Permitted on a dead channel or intercept routine
Also documented: `100 result=0 Trying...` (provisional), `510 Invalid or unknown command`,
`520-Invalid command syntax.  Proper usage follows:` ... `520 End of proper usage.`
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# result= may be empty (GET DATA timeout); (data) may hold spaces; endpos= may follow either.
_RESULT = re.compile(r"^result=(?P<result>\S*)(?:\s+\((?P<data>.*?)\))?(?:\s+endpos=(?P<endpos>-?\d+))?\s*$")
_CODE = re.compile(r"^(?P<code>\d{3})(?P<sep>[ -])(?P<rest>.*)$|^(?P<bare>\d{3})$")
# Nearly every line is a plain 200 reply: matched at once, as _CODE then _RESULT would take it.
_OK = re.compile(r"^200 " + _RESULT.pattern[1:])


@dataclass(frozen=True)
class AgiReply:
    code: int
    result: str = ""            # as sent: "1", "-1", "49", "" (GET DATA timeout)
    data: str | None = None     # the text in parentheses, e.g. "0427" or "timeout"
    endpos: int | None = None   # playback position in samples where a stream stopped
    raw: str = ""

    @property
    def result_int(self) -> int | None:
        try:
            return int(self.result)
        except ValueError:
            return None


@dataclass(frozen=True)
class ReplyLine:
    """A classified line; kind is one of: hangup, reply, provisional, usage_start, usage_end,
    usage_body, garbage."""
    kind: str
    code: int | None = None
    text: str = ""
    reply: AgiReply | None = None


def parse_reply_line(line: str, *, in_usage: bool = False) -> ReplyLine:
    """Classify one line (without its line ending).  Never raises: garbage is a kind."""
    if not in_usage and "\n" not in line:
        ok = _OK.match(line)
        if ok is not None:
            endpos = ok.group("endpos")
            return ReplyLine("reply", code=200, text=line[4:], reply=AgiReply(
                200, ok.group("result"), ok.group("data"), int(endpos) if endpos is not None else None, line))
    if line == "HANGUP":
        return ReplyLine("hangup", text=line)
    m = _CODE.match(line)
    if not m:
        return ReplyLine("usage_body" if in_usage else "garbage", text=line)
    if m.group("bare"):
        code, sep, rest = int(m.group("bare")), " ", ""
    else:
        code, sep, rest = int(m.group("code")), m.group("sep"), m.group("rest")
    if code == 520 and sep == "-":
        return ReplyLine("usage_start", code=code, text=rest)
    if code == 520 and in_usage:
        return ReplyLine("usage_end", code=code, text=rest)
    if in_usage:
        return ReplyLine("usage_body", text=line)
    if code == 100:
        return ReplyLine("provisional", code=code, text=rest)
    if code == 200:
        r = _RESULT.match(rest)
        if not r:
            return ReplyLine("garbage", code=code, text=line)
        endpos = r.group("endpos")
        reply = AgiReply(200, r.group("result"), r.group("data"),
                         int(endpos) if endpos is not None else None, line)
        return ReplyLine("reply", code=code, text=rest, reply=reply)
    if code in (510, 511, 520) or 400 <= code < 600:
        return ReplyLine("reply", code=code, text=rest, reply=AgiReply(code, raw=line))
    return ReplyLine("garbage", code=code, text=line)
