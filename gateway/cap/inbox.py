"""The CAP inbox: a directory the early-warning feed drops files into (cap.inbox_dir).

Writers should write a file under a name starting with "." and rename it when complete; dot
files are never read.  Each file is taken in through the intake (committed with its raw bytes),
then moved to done/ or refused/ beside it, so the directory shows what is still to do.  A crash
between the commit and the move takes the file again: the second copy is a duplicate and makes
no second order.

Files are listed and read on the reactor thread: a local directory listing and a read capped at
cap.max_bytes (256 KiB by default) take well under a millisecond; everything heavier (parsing,
schema, signature, the database) runs in the intake's unit of work in the database pool.
"""
from __future__ import annotations

import os
from pathlib import Path

from twisted.internet import defer, task
from twisted.logger import Logger

log = Logger()


class CapInbox:
    def __init__(self, clock, intake, directory, poll_s: float, max_bytes: int):
        self.clock, self.intake = clock, intake
        self.dir = Path(directory)
        self.poll_s, self.max_bytes = poll_s, max_bytes
        self._loop: task.LoopingCall | None = None
        self._busy = False

    def start(self):
        for sub in ("done", "refused"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        log.info("CAP inbox: watching {dir} every {s:g} s", dir=str(self.dir), s=self.poll_s)
        self._loop = task.LoopingCall(self.sweep)
        self._loop.clock = self.clock
        self._loop.start(self.poll_s, now=True).addErrback(lambda f: log.failure("CAP inbox stopped", f))

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    @defer.inlineCallbacks
    def sweep(self):
        """Take every complete file once; a failure leaves the file for the next sweep."""
        if self._busy:
            return 0
        self._busy = True
        n = 0
        try:
            names = sorted(e.name for e in os.scandir(self.dir) if e.is_file() and not e.name.startswith("."))
            for name in names:
                path = self.dir / name
                try:
                    with open(path, "rb") as f:
                        raw = f.read(self.max_bytes + 1)
                except OSError as e:
                    log.warn("CAP inbox: cannot read {file}: {err}", file=name, err=e.strerror)
                    continue
                truncated = len(raw) > self.max_bytes
                try:
                    out = yield self.intake.take(raw[:self.max_bytes] if truncated else raw, f"inbox:{name}",
                                                 truncated=truncated)
                except Exception:  # noqa: BLE001 - the database is down: the file waits for the next sweep
                    log.failure("CAP inbox: {file} not taken; tried again next sweep", file=name)
                    break
                os.replace(path, self.dir / ("refused" if out.state == "refused" else "done") / name)
                n += 1
        finally:
            self._busy = False
        return n
