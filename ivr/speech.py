"""Order text to 8 kHz mono audio for Asterisk, with espeak-ng and sox, off the reactor thread.

Rendering runs as child processes (reactor.spawnProcess via getProcessOutputAndValue); results
are cached on disk by a hash of voice+text, and a render already running for the same text is
shared.  Where either program is missing, `render` answers None and the call plays the recorded
prompts only: speech is a help, never a condition for the order call.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from twisted.internet.defer import Deferred, succeed
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import Logger

log = Logger()


class OrderSpeech:
    def __init__(self, reactor, cache_dir: str | os.PathLike, *, voice: str = "cmn-latn-pinyin",
                 espeak: str | None = None, sox: str | None = None, timeout: float = 20.0):
        self.reactor = reactor
        self.cache_dir = Path(cache_dir)
        self.voice = voice
        self.espeak = espeak or shutil.which("espeak-ng")
        self.sox = sox or shutil.which("sox")
        self.timeout = timeout
        self._running: dict[str, list[Deferred]] = {}

    @property
    def available(self) -> bool:
        return bool(self.espeak and self.sox)

    def key(self, text: str) -> str:
        return hashlib.sha256(f"{self.voice}\0{text}".encode()).hexdigest()[:24]

    def render(self, text: str) -> Deferred:
        """Deferred[str | None]: the sound name for STREAM FILE (absolute, no extension)."""
        if not self.available or not text.strip():
            return succeed(None)
        key = self.key(text)
        target = self.cache_dir / f"order-{key}"
        if (self.cache_dir / f"order-{key}.wav").exists():
            return succeed(str(target))
        waiter = Deferred()
        if key in self._running:
            self._running[key].append(waiter)
            return waiter
        self._running[key] = [waiter]
        d = Deferred.fromCoroutine(self._render(text, target))
        d.addTimeout(self.timeout, self.reactor)

        def finish(result):
            if not isinstance(result, str):
                log.warn("order speech not rendered (key {key}): {why}", key=key,
                         why=getattr(result, "getErrorMessage", lambda: result)())
                result = None
            for w in self._running.pop(key, []):
                w.callback(result)
        d.addBoth(finish)
        return waiter

    async def _render(self, text: str, target: Path) -> str | None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        raw = target.with_suffix(".espeak.wav")
        out_tmp = target.with_suffix(".tmp.wav")
        # Text goes as an argument, never through a shell.
        _out, err, code = await getProcessOutputAndValue(
            self.espeak, ["-v", self.voice, "-w", str(raw), "--", text], env=os.environ, reactor=self.reactor)
        if code != 0 or not raw.exists():
            raise RuntimeError(f"espeak-ng exited {code}: {err[:200]!r}")
        _out, err, code = await getProcessOutputAndValue(
            self.sox, [str(raw), "-r", "8000", "-c", "1", "-b", "16", "-t", "wav", str(out_tmp)],
            env=os.environ, reactor=self.reactor)
        raw.unlink(missing_ok=True)
        if code != 0 or not out_tmp.exists():
            raise RuntimeError(f"sox exited {code}: {err[:200]!r}")
        os.replace(out_tmp, target.with_suffix(".wav"))    # whole file or none
        return str(target)
