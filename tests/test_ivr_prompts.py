"""The Mandarin prompts that ship: one list (ivr.prompts), every prompt the flows play is in the
committed set as a valid 8 kHz mono 16-bit WAV Asterisk can play, made from the text now in the
list; `yihu prompts build` renders them with espeak-ng and sox."""
from __future__ import annotations

import ast
import json
import os
import stat
import struct
from pathlib import Path

import pytest
from twisted.internet.defer import fail, succeed

from gateway.cli import main as yihu
from ivr.drill import DrillKeypadSink
from ivr.emulator import HangUp, Press, Silence
from ivr.orders import OrderBrief
from ivr.prompts import DIGITS, PROMPTS, SHIPPED_DIR, STATUS_PROMPT, shipped_files
from tests.test_ivr_flows import COMMANDER, Call, feedback, hotline, order_call

REPO = Path(__file__).resolve().parent.parent


def read_wav(path: Path) -> dict:
    """Our own RIFF/WAVE reader: the fmt chunk and the samples, as Asterisk's format_wav needs
    them (PCM, 8000 Hz, mono, 16-bit)."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", f"{path}: not a RIFF/WAVE file"
    assert struct.unpack_from("<I", data, 4)[0] == len(data) - 8, f"{path}: RIFF size wrong"
    chunks, i = {}, 12
    while i + 8 <= len(data):
        cid, size = data[i:i + 4], struct.unpack_from("<I", data, i + 4)[0]
        chunks[cid] = data[i + 8:i + 8 + size]
        i += 8 + size + (size & 1)
    tag, channels, rate, byte_rate, align, bits = struct.unpack_from("<HHIIHH", chunks[b"fmt "])
    samples = struct.unpack(f"<{len(chunks[b'data']) // 2}h", chunks[b"data"][: len(chunks[b"data"]) // 2 * 2])
    return {"tag": tag, "channels": channels, "rate": rate, "byte_rate": byte_rate, "align": align,
            "bits": bits, "samples": samples, "odd": len(chunks[b"data"]) % 2}


def assert_telephone_wav(path: Path, min_seconds: float = 0.3):
    w = read_wav(path)
    assert (w["tag"], w["channels"], w["rate"], w["bits"]) == (1, 1, 8000, 16), f"{path}: {w}"
    assert w["byte_rate"] == 16000 and w["align"] == 2 and not w["odd"]
    seconds = len(w["samples"]) / 8000
    assert min_seconds <= seconds <= 30, f"{path}: {seconds:.2f} s"
    loud = sum(1 for s in w["samples"] if abs(s) > 1000)
    assert loud > len(w["samples"]) // 20, f"{path}: mostly silence"     # speech, not a placeholder


# --- the shipped set ---------------------------------------------------------------------------------

@pytest.mark.parametrize("rel", sorted(shipped_files()))
def test_every_prompt_is_shipped_as_8khz_mono_wav(rel):
    assert_telephone_wav(SHIPPED_DIR / rel, 0.3)


def test_shipped_files_were_made_from_the_texts_in_the_list():
    manifest = json.loads((SHIPPED_DIR / "MANIFEST.json").read_text(encoding="utf-8"))
    expected = {rel: text for rel, (_sound, text) in shipped_files().items()}
    assert {rel: m["text"] for rel, m in manifest.items()} == expected, \
        "a prompt text changed without `yihu prompts build`"
    on_disk = {str(p.relative_to(SHIPPED_DIR)) for p in SHIPPED_DIR.rglob("*.wav")}
    assert on_disk == set(expected)                    # nothing stale shipped either


def test_every_sound_named_in_the_ivr_code_is_in_the_list():
    named = set()
    for path in list((REPO / "ivr" / "flows").glob("*.py")) + [REPO / "ivr" / "fallback_agi.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "sound" and node.args \
                    and isinstance(node.args[0], ast.Constant):
                named.add(node.args[0].value)
    assert named and named <= set(PROMPTS)
    assert set(STATUS_PROMPT.values()) <= set(PROMPTS)
    assert {f"hotline_{line}" for line in ("110", "119", "122")} <= set(PROMPTS)


def _leaving_city():
    class Orders:
        def brief(self, code):
            return succeed(OrderBrief(code, "赶赴白塔镇集结", "leaving_city"))
    return Orders()


class _Pins:
    """A member whose PIN is 2468 (the flow's PinCheck, in memory)."""
    class refusals:
        @staticmethod
        def refused(*a, **kw):
            return succeed(None)

    def required(self, e164):
        return succeed(True)

    def matches(self, e164, keyed):
        return succeed(keyed == "2468")


def _calls():
    class Broken(DrillKeypadSink):
        def keypad_answer(self, answer):
            return fail(RuntimeError("engine down"))
    two = {COMMANDER: ["0427", "0431"]}
    yield from (order_call([Press(d)]) for d in "123")
    yield order_call([Press("4")], orders=_leaving_city(), sink=DrillKeypadSink(leaving_city={"0427"}))
    yield order_call([Press("4")])                                   # refused: not-recorded
    yield order_call([Press("0"), Silence(), Silence()])             # repeat, then no answer
    yield order_call([Press("7"), Press("9"), Press("*")])           # invalid keys
    yield order_call([Press("1")], sink=Broken())                    # system error
    yield feedback([Press("1")], callerid="13900000000")             # unknown caller
    yield feedback([], sink=DrillKeypadSink({COMMANDER: []}))        # no open orders
    yield feedback([Press("999#"), Press("0431#"), Press("2")], sink=DrillKeypadSink(two))
    yield from (hotline([Press("2")], line=line) for line in ("110", "119", "122"))
    yield feedback([Press("1111#"), Press("2222#")], pins=_Pins())     # wrong PIN twice: refused
    yield feedback([Press("2468#"), Press("2")], pins=_Pins())        # the right PIN, then the answer
    yield Call("overflow", [])
    yield Call("overflow", [], nuisance_notice=lambda caller: True)  # a listed number with the notice on
    yield order_call([HangUp()])
    yield _situation_report()                                          # key 5: a spoken report


def _situation_report():
    import tempfile
    from types import SimpleNamespace

    from ivr.emulator import Speak
    from tests.test_ivr_situation_recording import feedback_call
    with tempfile.TemporaryDirectory() as d:
        _sink, _journal, channel = feedback_call([Press("5"), Speak(4.0, "#")], d)
    return SimpleNamespace(played=channel.played, channel=channel)


def test_every_prompt_the_flows_play_exists_in_the_shipped_set():
    """The flows run on an emulated Asterisk that has what we ship (and its core sounds):
    nothing they ask for is missing, and every prompt in the list is reachable."""
    asked, missing = set(), set()
    for c in _calls():
        asked.update(c.played)
        missing.update(c.channel.unplayable)
    assert missing == set()
    assert {p.sound for p in PROMPTS.values()} <= asked


def test_mandarin_digits_for_say_digits_are_shipped_for_the_zh_language():
    assert set(DIGITS) == set("0123456789")
    for d in DIGITS.values():
        assert_telephone_wav(SHIPPED_DIR / "zh" / f"{d.sound}.wav", 0.2)


# --- the builder ---------------------------------------------------------------------------------

def _fake_tools(tmp_path: Path, log: Path) -> Path:
    """espeak-ng and sox stand-ins: record their argv; sox writes an 8 kHz WAV."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    espeak = bin_dir / "espeak-ng"
    espeak.write_text("#!/bin/sh\n"
                      f'printf "espeak %s\\n" "$*" >> "{log}"\n'
                      'while [ "$1" != "-w" ]; do shift; done; printf x > "$2"\n')
    sample = bin_dir / "sample.wav"       # 1 s of a 8 kHz tone, as sox would write it
    pcm = (struct.pack("<4h", 0, 6000, 0, -6000)) * 2000
    sample.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVEfmt "
                       + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
                       + b"data" + struct.pack("<I", len(pcm)) + pcm)
    sox = bin_dir / "sox"
    sox.write_text("#!/bin/sh\n"
                   f'printf "sox %s\\n" "$*" >> "{log}"\n'
                   'while [ "$1" != "wav" ]; do shift; done; cp ' f'"{sample}"' ' "$2"\n')
    for f in (espeak, sox):
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_build_cli_renders_every_prompt_with_espeak_then_sox(tmp_path, monkeypatch):
    log = tmp_path / "argv.log"
    monkeypatch.setenv("PATH", f"{_fake_tools(tmp_path, log)}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "sounds"
    assert yihu(["prompts", "build", "--out", str(out), "-q"]) == 0
    lines = log.read_text(encoding="utf-8").splitlines()
    espeak = [ln for ln in lines if ln.startswith("espeak")]
    assert len(espeak) == len(shipped_files())
    assert "espeak -v cmn-latn-pinyin -w" in espeak[0] and "-- " in espeak[0]   # text after --, no shell
    assert any(PROMPTS["order_menu"].text in ln for ln in espeak)
    sox = [ln for ln in lines if ln.startswith("sox")]
    assert all("-r 8000 -c 1 -b 16" in ln and " -D " in f" {ln} " for ln in sox)
    for rel in shipped_files():
        assert_telephone_wav(out / rel)
    assert not list(out.rglob("*.tmp"))
    assert json.loads((out / "MANIFEST.json").read_text(encoding="utf-8"))["yihu/goodbye.wav"]["text"] == "再见。"


def test_build_without_the_tools_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert yihu(["prompts", "build", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "espeak-ng and sox not found" in err and "apt-get install espeak-ng sox" in err
    assert not (tmp_path / "x").exists()


def test_build_failure_names_the_prompt_and_keeps_no_half_file(tmp_path, monkeypatch, capsys):
    bin_dir = _fake_tools(tmp_path, tmp_path / "log")
    (bin_dir / "sox").write_text("#!/bin/sh\necho 'sox FAIL formats: no handler' >&2\nexit 1\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "sounds"
    assert yihu(["prompts", "build", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "prompt" in err and ".wav" in err and "sox exited 1" in err
    assert not list(out.rglob("*.wav")) and not list(out.rglob("*.tmp"))


def test_build_with_the_real_tools_gives_telephone_wavs(tmp_path):
    """The real espeak-ng and sox (the shipped set is committed; a rebuild needs them): installed
    by the test set-up where missing, never skipped."""
    import subprocess

    from tests._debian import ensure_tools
    ensure_tools({"espeak-ng": "espeak-ng", "sox": "sox"}, "the prompt build tests")

    from ivr.prompts.build import MANDARIN_VOICE
    # The voice reads every prompt as Mandarin: espeak-ng marks a switch to another language's
    # rules with "(en)" in its phonemes (what the plain `cmn` voice of 1.51 does).
    for p in list(PROMPTS.values()) + list(DIGITS.values()):
        phonemes = subprocess.run(["espeak-ng", "-v", MANDARIN_VOICE, "-q", "-x", "--", p.text],
                                  capture_output=True, text=True, check=True).stdout
        assert "(en)" not in phonemes, (p.text, phonemes)
    assert yihu(["prompts", "build", "--out", str(tmp_path), "-q"]) == 0
    assert_telephone_wav(tmp_path / "yihu" / "order-menu.wav", 3.0)
    assert_telephone_wav(tmp_path / "zh" / "digits" / "1.wav", 0.2)
