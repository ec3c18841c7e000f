"""Which sound files the emulated Asterisk has, looked up the way Asterisk looks them up.

Asterisk resolves a sound name without extension: an absolute path as it is, a relative one under
its sounds directory, first in the channel language's folder (`zh/yihu/order-intro`), then with
no language (`yihu/order-intro`), then in the default `en`; any format it has a module for will
do.  What it cannot find it does not play: STREAM FILE answers `200 result=-1 endpos=0`, GET DATA
`200 result=-1`, and the channel stays up (order-call-missing-prompts transcript).
"""
from __future__ import annotations

import os
from pathlib import Path

# Formats a stock Asterisk 22 reads (file extensions of its format_* modules).
FORMATS = ("sln", "wav", "gsm", "ulaw", "alaw", "g722", "sln16", "wav16", "g729", "ilbc")

# From Asterisk's core sound package (English), installed with every Asterisk: the names the
# recordings and tests play.  The project's own prompts are not among them.
CORE_SOUNDS = frozenset({"beep", "goodbye", "please-try-call-later", "silence/1",
                         *(f"digits/{d}" for d in "0123456789")})


def _has_file(base: Path) -> bool:
    return any(base.with_name(f"{base.name}.{ext}").is_file() for ext in FORMATS)


class SoundLibrary:
    """dirs: sounds directories (like /var/lib/asterisk/sounds); names: sounds known to exist
    without a file here (Asterisk's core set)."""

    def __init__(self, dirs=(), names=CORE_SOUNDS, language: str = "en"):
        self.dirs = [Path(d) for d in dirs]
        self.names = frozenset(names)
        self.language = language

    @classmethod
    def installed(cls, language: str = "en") -> "SoundLibrary":
        """Asterisk with its core sounds and the project's shipped prompts installed as
        dialplans/README.md says."""
        from ivr.prompts import SHIPPED_DIR
        return cls([SHIPPED_DIR], CORE_SOUNDS, language)

    @classmethod
    def bare(cls) -> "SoundLibrary":
        """Core sounds only: the project's prompts were never installed."""
        return cls([], CORE_SOUNDS)

    def exists(self, name: str) -> bool:
        if not name or "\0" in name:
            return False
        if os.path.isabs(name):
            return _has_file(Path(name))
        if name in self.names:
            return True
        for d in self.dirs:
            for lang in dict.fromkeys((self.language, "", "en")):
                if _has_file(d / lang / name if lang else d / name):
                    return True
        return False
