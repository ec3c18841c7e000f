"""`yihu prompts build`: render every prompt's text to Mandarin speech Asterisk can play.

espeak-ng speaks the text to a WAV, with the voice `cmn-latn-pinyin` (MANDARIN_VOICE): the plain
`cmn` voice of espeak-ng 1.51 turns the characters into tone-numbered pinyin and then reads that
with English rules ("ling2" as "ling two"), which no commander would understand; sox turns it into Asterisk's telephone format,
8 kHz mono 16-bit PCM WAV, normalised, without dither (so a rebuild of the same text with the
same tools gives the same bytes).  A run of the operator's command, not of the gateway: it
blocks, and each file is written whole (temporary name, then renamed) or not at all.  A manifest
(MANIFEST.json) records which text and voice each file was made from, so a text edited without
a rebuild is caught by the tests.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ivr.prompts import SHIPPED_DIR, shipped_files

MANIFEST = "MANIFEST.json"
MANDARIN_VOICE = "cmn-latn-pinyin"
INSTALL_HINT = "install them with: apt-get install espeak-ng sox"


class BuildError(Exception):
    """A prompt could not be built; the message names it."""


def tools(espeak: str | None = None, sox: str | None = None) -> tuple[str, str]:
    found = (espeak or shutil.which("espeak-ng"), sox or shutil.which("sox"))
    missing = [name for name, path in zip(("espeak-ng", "sox"), found) if not path]
    if missing:
        raise BuildError(f"{' and '.join(missing)} not found on PATH; {INSTALL_HINT}")
    return found


def _run(argv: list[str], what: str) -> None:
    # Texts go as arguments, never through a shell.
    done = subprocess.run(argv, capture_output=True, timeout=60)
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip()[:300]
        raise BuildError(f"{what}: {Path(argv[0]).name} exited {done.returncode}: {err}")


def render(text: str, target: Path, *, voice: str, espeak: str, sox: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="yihu-prompt-") as tmp:
        raw, out = Path(tmp) / "espeak.wav", Path(tmp) / "out.wav"
        _run([espeak, "-v", voice, "-w", str(raw), "--", text], f"prompt {target.name}")
        _run([sox, "-D", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
              "-t", "wav", str(out), "norm", "-3"], f"prompt {target.name}")
        shutil.copyfile(out, target.with_suffix(".tmp"))
    os.replace(target.with_suffix(".tmp"), target)


def build(out_dir: str | os.PathLike = SHIPPED_DIR, *, voice: str = MANDARIN_VOICE, espeak: str | None = None,
          sox: str | None = None, progress=None) -> list[Path]:
    """Render every prompt into out_dir (laid out as Asterisk's sounds directory); returns the
    files written."""
    espeak, sox = tools(espeak, sox)
    out = Path(out_dir)
    written, manifest = [], {}
    for rel, (name, text) in sorted(shipped_files().items()):
        target = out / rel
        render(text, target, voice=voice, espeak=espeak, sox=sox)
        manifest[rel] = {"sound": name, "text": text, "voice": voice}
        written.append(target)
        if progress is not None:
            progress(f"{rel}  {text}")
    (out / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True) + "\n",
                                encoding="utf-8")
    return written
