"""Order text to 8 kHz audio: skipped cleanly without espeak-ng/sox, rendered and cached with them.

espeak-ng and sox are stood in for by small scripts (the CI host has neither); they are run as
real child processes through the reactor, as the product runs them.
"""
from __future__ import annotations

import os
import stat
import sys

import pytest_twisted
from twisted.internet.defer import gatherResults

from ivr.speech import OrderSpeech

FAKE_ESPEAK = """#!{py}
import sys, pathlib
args = sys.argv[1:]
out = args[args.index("-w") + 1]
text = args[-1]
log = pathlib.Path(out).parent / "espeak.calls"
with open(log, "a") as f:
    f.write(text + "\\n")
if "FAIL" in text:
    sys.exit(3)
pathlib.Path(out).write_bytes(b"RIFF" + text.encode())
"""
FAKE_SOX = """#!{py}
import sys, pathlib
src, dst = sys.argv[1], sys.argv[-1]
assert sys.argv[2:8] == ["-r", "8000", "-c", "1", "-b", "16"], sys.argv
pathlib.Path(dst).write_bytes(b"8k:" + pathlib.Path(src).read_bytes())
"""


def tool(tmp_path, name, body):
    p = tmp_path / name
    p.write_text(body.format(py=sys.executable))
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return str(p)


@pytest_twisted.ensureDeferred
async def test_without_espeak_or_sox_nothing_is_rendered(tmp_path):
    from twisted.internet import reactor
    s = OrderSpeech(reactor, tmp_path, espeak="", sox="")
    s.espeak = s.sox = None
    assert not s.available
    assert await s.render("城关镇河堤险情") is None


@pytest_twisted.ensureDeferred
async def test_rendered_once_and_cached_by_text(tmp_path):
    from twisted.internet import reactor
    cache = tmp_path / "cache"
    s = OrderSpeech(reactor, cache, espeak=tool(tmp_path, "espeak-ng", FAKE_ESPEAK),
                    sox=tool(tmp_path, "sox", FAKE_SOX))
    text = "城关镇河堤险情，立即出动"
    a, b = await gatherResults([s.render(text), s.render(text)])     # concurrent: one render
    assert a == b and a.startswith(str(cache)) and not a.endswith(".wav")
    assert (cache / (os.path.basename(a) + ".wav")).read_bytes() == b"8k:RIFF" + text.encode()
    assert await s.render(text) == a
    assert (cache / "espeak.calls").read_text().splitlines() == [text]
    assert not list(cache.glob("*.tmp.wav")) and not list(cache.glob("*.espeak.wav"))


@pytest_twisted.ensureDeferred
async def test_render_failure_means_no_speech(tmp_path):
    from twisted.internet import reactor
    s = OrderSpeech(reactor, tmp_path / "c", espeak=tool(tmp_path, "espeak-ng", FAKE_ESPEAK),
                    sox=tool(tmp_path, "sox", FAKE_SOX))
    assert await s.render("FAIL please") is None
