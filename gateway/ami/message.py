"""One AMI message: an ordered list of (key, value) headers.

Asterisk repeats headers (``ChanVariable: HOTLINE=110`` then ``ChanVariable: ORDER_CODE=``,
``Output:`` lines of a Command): the message keeps every header in wire order, and gives
dict-like access to the *first* value of a key, which is what every single-valued header needs.

Headers are materialised on demand.  A busy Asterisk sends thousands of events a second and the
gateway reads a few headers of a few kinds of them, so the parser stores the message's text and
its kind and name; ``get(key)`` finds one header in that text (two C-level searches), and the
ordered pairs and the first-value dict are built the first time something asks for them.
"""
from __future__ import annotations

from typing import Iterator

from twisted.logger import Logger

from gateway import metrics

EVENT = "event"
RESPONSE = "response"
ACTION = "action"
BANNER = "banner"
UNKNOWN = "unknown"

log = Logger()
_needles: dict[str, str] = {}
_MISSING = object()
_HEADS = {"Event": "event", "Response": "response", "Action": "action"}
_HEAD_KEYS = {kind: key for key, kind in _HEADS.items()}


def _needle(key: str) -> str:
    n = _needles.get(key)
    if n is None:
        n = _needles[key] = f"\r\n{key}: "
    return n


def _kind_of(first: dict) -> str:
    if "Event" in first:
        return EVENT
    if "Response" in first:
        return RESPONSE
    if "Action" in first:
        return ACTION
    return UNKNOWN


class AmiMessage:
    """A parsed AMI message.

    ``msg["Channel"]`` / ``msg.get("Channel")``: first value of a header (case-sensitive, as
    Asterisk sends it).  ``msg.getall("ChanVariable")``: every value, in order.
    ``msg.pairs``: the headers as (key, value) tuples in wire order.  ``msg.first``: the
    first-value dict.  ``msg.garbage``: raw lines of the message that were not headers.
    """

    __slots__ = ("_raw", "_pairs", "_first", "kind", "name", "garbage")

    def __init__(self, pairs, first=None, kind=None, garbage=None):
        self._raw = None
        self._pairs = pairs
        if first is None:
            first = dict(reversed(pairs))
        self._first = first
        if kind is None:
            kind = _kind_of(first)
        self.kind = kind
        if kind == EVENT:
            self.name = first["Event"]
        elif kind == RESPONSE:
            self.name = first["Response"]
        elif kind == ACTION:
            self.name = first["Action"]
        else:
            self.name = None
        self.garbage = garbage

    @classmethod
    def _from_text(cls, raw: str, kind: str, name: str) -> "AmiMessage":
        """The parser's fast path: ``raw`` is the message's lines joined by CRLF, every line
        holds a ``": "``, and the first line is ``Event:``/``Response:``/``Action:``."""
        m = cls.__new__(cls)
        m._raw = raw
        m._pairs = None
        m._first = None
        m.kind = kind
        m.name = name
        m.garbage = None
        return m

    # --- construction --------------------------------------------------------------------
    @classmethod
    def build(cls, *pairs: tuple[str, str], **kw) -> "AmiMessage":
        return cls([(k, "" if v is None else str(v)) for k, v in pairs], **kw)

    @classmethod
    def banner(cls, line: str) -> "AmiMessage":
        return cls([("Banner", line)], kind=BANNER)

    # --- materialising ---------------------------------------------------------------------
    def _materialise(self) -> dict:
        # Only the dict is kept: str-only dicts are not tracked by the cyclic GC, while a kept
        # list of per-line pairs would be (and collecting those cost more than parsing them).
        # Lines are read last to first so that the first of a repeated header wins; partition
        # (one C call, no argument parsing) beats split(": ", 1) and says when ": " is missing.
        # The head line ("Event: <name>") was split by the parser: its pair goes in last, from
        # the kind and the name, instead of being split again.
        first = {}
        lines = self._raw.split("\r\n")
        lines.reverse()
        lines.pop()
        for line in lines:
            # Unpacked straight into the dict (two steps fewer per line); a line without ": "
            # stores a stray entry first, but that dict is then dropped.
            k, sep, first[k] = line.partition(": ")
            if not sep:
                break
        else:
            first[_HEAD_KEYS[self.kind]] = self.name
            self._first = first
            return first
        # A line without ": " hid behind a value holding one: sort it out line by line.
        good, bad = [], []
        for line in self._raw.split("\r\n"):
            k, sep, v = line.partition(": ")
            if sep:
                good.append((k, v))
            else:
                bad.append(line)
        for line in bad:
            metrics.AMI_GARBAGE.inc()
            log.warn("AMI: not a header line in a {name} message: {line!r}", name=self.name,
                     line=line[:120])
        self._pairs = good
        self._first = first = dict(reversed(good))
        self.garbage = bad
        return first

    @property
    def first(self) -> dict:
        """The first-value dict (read it, don't change it)."""
        first = self._first
        if first is None:
            first = self._materialise()
        return first

    # --- mapping-like access ---------------------------------------------------------------
    def get(self, key: str, default=None):
        f = self._first
        if f is not None:
            return f.get(key, default)
        if _HEADS.get(key) == self.kind:
            return self.name            # the first line of a fast-path message
        raw = self._raw
        n = _needle(key)
        i = raw.find(n)
        if i < 0:
            return default
        i += len(n)
        j = raw.find("\r\n", i)
        return raw[i:] if j < 0 else raw[i:j]

    def __getitem__(self, key: str) -> str:
        v = self.get(key, _MISSING)
        if v is _MISSING:
            raise KeyError(key)
        return v

    def __contains__(self, key: str) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def as_dict(self) -> dict[str, str]:
        """First value of each header, in wire order."""
        out: dict[str, str] = {}
        for k, v in self:
            out.setdefault(k, v)
        return out

    def keys(self):
        return [k for k, _ in self]

    def getall(self, key: str) -> list[str]:
        return [v for k, v in self if k == key]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(self)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        if self._pairs is None:
            if self._first is None:
                self._materialise()          # finds (and reports) any bad line first
            if self._pairs is None:
                for line in self._raw.split("\r\n"):
                    k, _sep, v = line.partition(": ")
                    yield k, v
                return
        for p in self._pairs:
            yield p[0], p[1]

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __eq__(self, other) -> bool:
        if not isinstance(other, AmiMessage):
            return NotImplemented
        return self.kind == other.kind and self.pairs == other.pairs

    def __hash__(self):
        return hash(tuple(self.pairs))

    # --- helpers -----------------------------------------------------------------------------
    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    def chanvars(self, key: str = "ChanVariable") -> dict[str, str]:
        """``ChanVariable: NAME=value`` headers as a dict (first wins)."""
        out: dict[str, str] = {}
        for v in self.getall(key):
            name, _, value = v.partition("=")
            out.setdefault(name, value)
        return out

    def to_bytes(self) -> bytes:
        if self.kind == BANNER:
            return (self.get("Banner") + "\r\n").encode("utf-8")
        if self._raw is not None and self.garbage is None:
            return (self._raw + "\r\n\r\n").encode("utf-8")
        return ("".join(f"{k}: {v}\r\n" for k, v in self) + "\r\n").encode("utf-8")

    def __repr__(self) -> str:
        pairs = self.pairs
        head = ", ".join(f"{k}={v!r}" for k, v in pairs[:4])
        more = f", +{len(pairs) - 4}" if len(pairs) > 4 else ""
        return f"<AmiMessage {self.kind} {head}{more}>"


def device_of(channel: str | None) -> str | None:
    """The device behind a channel name: ``PJSIP/1001-0000000a`` -> ``PJSIP/1001``,
    ``Local/1001@calltaker-00000025;1`` -> ``Local/1001@calltaker``."""
    if not channel:
        return channel
    name = channel.split(";", 1)[0]
    head, sep, tail = name.rpartition("-")
    if sep and len(tail) == 8 and all(c in "0123456789abcdef" for c in tail):
        return head
    return name


def encode_action(name: str, headers=(), action_id: str | None = None) -> bytes:
    """Wire form of an action.  ``headers``: (key, value) pairs or a dict; a list value repeats
    the header (``Variable``).  Values may not contain CR or LF: that would let a value inject
    headers, so they are refused."""
    lines = [f"Action: {name}"]
    items = headers.items() if hasattr(headers, "items") else headers
    for k, v in items:
        if v is None:
            continue
        values = v if isinstance(v, (list, tuple)) else (v,)
        for one in values:
            s = str(one)
            if "\r" in s or "\n" in s or "\r" in k or "\n" in k:
                raise ValueError(f"AMI header {k!r} contains a line break")
            lines.append(f"{k}: {s}")
    if action_id is not None:
        lines.append(f"ActionID: {action_id}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
