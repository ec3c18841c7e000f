"""SQLite is single-node: one gateway process per database file.

An OS lock (flock) on `<database file>.lock` beside it, taken without waiting and held for the
life of the process (the kernel drops it when the process dies, kill -9 included, so a stale lock
file never blocks a restart).  The holder writes its pid into the file so that the refusal can
name it.  Other commands (`yihu order send`, `db upgrade`, ...) do not take it: they are short
and SQLite serialises their writes; only a second running gateway would double-send.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url

_held: dict[str, int] = {}      # lock file -> descriptor, for the life of the process


class DatabaseInUse(RuntimeError):
    """Another gateway process holds this SQLite file; str() is one line naming it."""


def lock_path(url: str) -> Path | None:
    """The lock file of a SQLite database URL, None for PostgreSQL or an in-memory database."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    db = Path(u.database).resolve()
    return db.with_name(db.name + ".lock")


def hold(url: str) -> Path | None:
    """Take the lock (idempotent within this process); DatabaseInUse when another process has it.
    Returns the lock file when this call took it (None: PostgreSQL, in memory, or already held)."""
    path = lock_path(url)
    if path is None or str(path) in _held:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)     # not inherited by child processes
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DatabaseInUse(f"SQLite database {path.with_suffix('') if path.suffix == '.lock' else path} is in "
                            f"use by another gateway process (pid {holder}; lock {path}): SQLite is "
                            "single-node, use PostgreSQL to run several nodes") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[str(path)] = fd
    return path


def release(path: Path) -> None:
    """Let go of a lock taken by hold() (a gateway built and stopped inside a longer process: tests,
    `yihu drill`); `yihu run` keeps its lock until the process ends."""
    fd = _held.pop(str(path), None)
    if fd is not None:
        os.close(fd)
