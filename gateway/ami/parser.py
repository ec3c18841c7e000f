"""AMI framing: bytes in, messages out.

A message is a block of ``Key: value\\r\\n`` lines ended by an empty line.  The stream starts
with a banner line (``Asterisk Call Manager/11.0.0\\r\\n``) that has *no* blank line after it:
the first real message follows at once, often in the same TCP segment.  Chunk boundaries are
wherever the socket read returned, so the parser keeps the incomplete tail and never depends on
them.

Robustness: a line that is not a header, a line longer than ``max_line`` and a message longer
than ``max_message`` are garbage: counted (``yihu_ami_garbage_total``), logged (rate-limited),
kept raw (truncated) in a small ring for diagnosis, and the parser carries on with the next
message.  A message of the wrong kind (no ``Event`` or ``Response`` from a server, no ``Action`` from
a client) is garbage too.

Speed: the complete part of each chunk is decoded once and split into messages in C
(``str.split``); a message is classified and named from its first line, and its headers are
materialised only when asked for (``gateway.ami.message``), so the common case runs no
per-header Python code at all.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from twisted.logger import Logger

from gateway import metrics
from gateway.ami.message import BANNER, AmiMessage

log = Logger()

MAX_MESSAGE = 64 * 1024
MAX_LINE = 8 * 1024
_KEEP_RAW = 512          # bytes of a garbage piece kept for diagnosis
_TERM = b"\r\n\r\n"
_new = object.__new__


def _is_banner(line: bytes) -> bool:
    # "Asterisk Call Manager/11.0.0"; tolerate other products' names ("... Manager/x.y").
    return b"/" in line and b": " not in line and len(line) < 200


class AmiParser:
    """Incremental AMI parser.  ``feed(bytes) -> list[AmiMessage]``.

    ``expect_banner``: the client side starts with a banner line (the server side does not).
    ``on_garbage(reason, raw)``: called for each garbage piece (default: metric + log).
    """

    def __init__(self, *, expect_banner: bool = True, max_message: int = MAX_MESSAGE,
                 max_line: int = MAX_LINE, on_garbage: Callable[[str, bytes], None] | None = None,
                 keep_garbage: int = 64, name: str = "ami",
                 accept: tuple[str, ...] | None = None):
        self._buf = b""
        self._want_banner = expect_banner
        self._discarding = False
        self.max_message = max_message
        self.max_line = max_line
        self.name = name
        self.garbage_count = 0
        self.garbage: deque[tuple[str, bytes]] = deque(maxlen=keep_garbage)
        self.messages = 0
        self.banner: str | None = None
        self._on_garbage = on_garbage
        # What a message must be to count: events and responses from a server (client side),
        # actions from a client (server side).
        if accept is None:
            accept = ("event", "response") if expect_banner else ("action",)
        self.accept = frozenset(accept)

    # --- garbage -------------------------------------------------------------------------
    def _garbage(self, reason: str, raw: bytes | str) -> None:
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "replace")
        kept = raw[:_KEEP_RAW]
        self.garbage_count += 1
        self.garbage.append((reason, kept))
        metrics.AMI_GARBAGE.inc()
        if self._on_garbage is not None:
            self._on_garbage(reason, kept)
        n = self.garbage_count
        if n <= 10 or n % 1000 == 0:
            log.warn("{name}: garbage #{n} ({reason}, {size} bytes): {raw!r}", name=self.name,
                     n=n, reason=reason, size=len(raw), raw=kept[:120])

    # --- feeding -------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Bytes held back waiting for the end of a message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[AmiMessage]:
        buf = self._buf + data if self._buf else bytes(data)
        out: list[AmiMessage] = []
        if self._discarding:
            i = buf.find(_TERM)
            if i < 0:
                self._buf = buf[-3:]       # the terminator may straddle two chunks
                return out
            self._discarding = False
            buf = buf[i + 4:]
        if self._want_banner and buf:
            i = buf.find(b"\r\n")
            if i < 0:
                if len(buf) > self.max_line:
                    self._want_banner = False
                    return self._overflow(buf, out)
                self._buf = buf
                return out
            self._want_banner = False
            line = buf[:i]
            if _is_banner(line):
                self.banner = line.decode("utf-8", "replace")
                out.append(AmiMessage.banner(self.banner))
                buf = buf[i + 2:]
        end = buf.rfind(_TERM)
        if end < 0:
            self._buf = buf
            if len(buf) > self.max_message:
                return self._overflow(buf, out)
            return out
        tail = buf[end + 4:]
        if len(tail) > self.max_message:
            self._buf = b""
            self._parse_region(buf, end, out)
            return self._overflow(tail, out)
        self._buf = tail
        self._parse_region(buf, end, out)
        return out

    def _overflow(self, buf: bytes, out: list) -> list:
        """An incomplete message already past the cap: drop it up to the next blank line."""
        self._garbage("message over %d bytes" % self.max_message, buf)
        self._buf = buf[-3:]
        self._discarding = True
        return out

    def _parse_region(self, buf: bytes, end: int, out: list) -> None:
        # buf[:end]: complete messages.  Decoded through a memoryview: no copy of the bytes.
        text = str(memoryview(buf)[:end], "utf-8", "replace")
        max_line = self.max_line
        accept = self.accept
        new = _new
        append = out.append
        before = len(out)
        events = "event" in accept
        for block in text.split("\r\n\r\n"):
            # Fast path: a block that starts with its kind, has no over-long line and has a
            # ": " on every line (checked by counting; the odd value holding a ": " that hides
            # a bad line is sorted out when the headers are materialised).  Slicing and
            # comparing the head is cheaper than startswith (which parses its arguments the
            # slow way).  Events, nearly all of a server's stream, first and in fewest steps;
            # a block this does not take is judged below as any other.
            if (block[:7] == "Event: " and events and len(block) <= max_line
                    and block.count(": ") > block.count("\r\n")):
                j = block.find("\r\n")
                # AmiMessage._from_text, inlined: one object per event.
                m = new(AmiMessage)
                m._raw = block
                m._pairs = m._first = m.garbage = None
                m.kind = "event"
                m.name = block[7:j] if j >= 0 else block[7:]
                append(m)
                continue
            if len(block) <= max_line:
                head = block[:7]
                if head == "Event: ":
                    kind = "event"
                    i = 7
                elif head == "Respons" and block[7:10] == "e: ":
                    kind = "response"
                    i = 10
                elif head == "Action:" and block[7:8] == " ":
                    kind = "action"
                    i = 8
                else:
                    kind = None
                if kind is not None and block.count(": ") > block.count("\r\n"):
                    if kind not in accept:
                        self._garbage("not an expected message (%s)" % kind, block)
                        continue
                    j = block.find("\r\n")
                    m = new(AmiMessage)
                    m._raw = block
                    m._pairs = m._first = m.garbage = None
                    m.kind = kind
                    m.name = block[i:j] if j >= 0 else block[i:]
                    append(m)
                    continue
            if len(block) > self.max_message:
                self._garbage("message over %d bytes" % self.max_message, block)
                continue
            self._parse_slow(block, out)
        self.messages += len(out) - before          # every message appended above

    def _parse_slow(self, block: str, out: list) -> None:
        pairs = []
        garbage = []
        banner = None
        for line in block.split("\r\n"):
            if not line:
                continue            # stray blank lines between messages
            if len(line) > self.max_line:
                self._garbage("line over %d bytes" % self.max_line, line)
                garbage.append(line[:_KEEP_RAW])
                continue
            k, sep, v = line.partition(": ")
            if not sep:
                k, sep, v = line.partition(":")
                v = v.lstrip(" ")
            if sep and k and " " not in k and "\t" not in k:
                pairs.append((k, v))
                continue
            if not pairs and banner is None and line.startswith("Asterisk Call Manager/"):
                banner = line
                continue
            self._garbage("not a header line", line)
            garbage.append(line[:_KEEP_RAW])
        if banner is not None:
            # A banner in the middle of a stream: report it (the link decides), then the rest.
            self.banner = banner
            out.append(AmiMessage.banner(banner))
        if not pairs:
            return
        msg = AmiMessage(pairs, garbage=garbage or None)
        if msg.kind not in self.accept:
            self._garbage("not an expected message (%s)" % msg.kind, block)
            return
        out.append(msg)


def iter_messages(data: bytes, *, chunk: int | None = None, expect_banner: bool = True):
    """Parse a whole byte string (tests, tools): every message, in order."""
    p = AmiParser(expect_banner=expect_banner)
    if chunk is None:
        yield from p.feed(data)
        return
    for i in range(0, len(data), chunk):
        yield from p.feed(data[i:i + chunk])


__all__ = ["AmiParser", "iter_messages", "MAX_MESSAGE", "MAX_LINE", "BANNER"]
