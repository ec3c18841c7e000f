"""What the emulated network saw, appended to a JSON-lines file that outlives the gateway.

In embedded mode the emulated GSM network and the emulated PBX run inside the gateway's process,
so after a kill -9 their memory is gone with it.  Every SMS segment the network accepts and every
call the PBX places is therefore written here, one JSON object per line, and flushed to the OS at
once (a kill -9 of the process loses nothing the kernel has; a power cut is not what this is for).
A test or an operator counts deliveries across restarts from this file alone.

    {"kind": "sms", "at": ..., "phone": "+447700900001", "reference": 12, "part": 1, "parts": 2,
     "text": "...", "sim": "+8613900000000"}
    {"kind": "call", "at": ..., "number": "07700900001", "channel_id": "yihu-order-17", ...}
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from twisted.logger import Logger

log = Logger()


class NetworkJournal:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Line-buffered append: each record reaches the OS as one write, whole.
        self._f = open(self.path, "a", encoding="utf-8", buffering=1)

    def append(self, kind: str, **fields) -> None:
        try:
            self._f.write(json.dumps(dict(kind=kind, **fields), ensure_ascii=False) + "\n")
            self._f.flush()
        except (OSError, ValueError) as e:      # a full disk must not stop the drill, but is told
            log.error("network journal {path}: record not written: {e}", path=str(self.path), e=e)

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

