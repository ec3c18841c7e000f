"""ActionIDs unique across processes and restarts.

Asterisk sends every OriginateResponse to *every* AMI session, with the ActionID of the
session that asked.  Two gateways (or a gateway and its restarted self, or a drill emulator and
production) must never take each other's answers, so an ActionID carries the host, the process
id, a random boot id drawn at start, and a counter: ``yihu-<host>-<pid>-<boot>-<n>``.
"""
from __future__ import annotations

import itertools
import os
import re
import secrets
import socket
import threading

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class ActionIdGenerator:
    def __init__(self, prefix: str = "yihu", host: str | None = None, pid: int | None = None,
                 boot: str | None = None):
        host = host if host is not None else socket.gethostname()
        host = _SAFE.sub("_", host)[:40] or "host"
        self.pid = os.getpid() if pid is None else pid
        self.boot = boot or secrets.token_hex(4)
        self.prefix = f"{prefix}-{host}-{self.pid}-{self.boot}-"
        self._count = itertools.count(1)
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            n = next(self._count)
        return f"{self.prefix}{n}"

    def ours(self, action_id: str | None) -> bool:
        """Was this ActionID made by this generator (this process, this boot)?"""
        return bool(action_id) and action_id.startswith(self.prefix)


_default: ActionIdGenerator | None = None


def default_generator() -> ActionIdGenerator:
    """The process-wide generator (re-drawn after fork, since the pid changes)."""
    global _default
    if _default is None or _default.pid != os.getpid():
        _default = ActionIdGenerator()
    return _default


def new_action_id() -> str:
    return default_generator()()
