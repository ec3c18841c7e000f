"""Scripted callers: what the person on the phone does, one move at a time.

Moves are taken in order by the media commands that reach the caller:
- Press(digits): answers the next GET DATA / WAIT FOR DIGIT; with barge_in=True it interrupts the
  next prompt whose escape digits allow it instead;
- Silence(): lets the next GET DATA / WAIT FOR DIGIT time out;
- HangUp(): hangs up during the next media command of any kind (a prompt or a wait);
- Speak(seconds, end): talks into the next RECORD FILE, then presses "#", falls silent or hangs up.
When the moves run out the caller stays silent.  `after` delays the answer (seconds).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Press:
    digits: str
    barge_in: bool = False
    after: float = 0.0


@dataclass(frozen=True)
class Speak:
    """Talks into the next RECORD FILE for `seconds`, then ends it: "#" (a key), "silence" (stops
    talking: the silence detector or the timeout ends it) or "hangup"."""
    seconds: float
    end: str = "#"
    after: float = 0.0


@dataclass(frozen=True)
class Silence:
    after: float = 0.0


@dataclass(frozen=True)
class HangUp:
    after: float = 0.0


class ScriptedCaller:
    def __init__(self, moves=()):
        self.moves = list(moves)

    def peek(self):
        return self.moves[0] if self.moves else None

    def take(self):
        return self.moves.pop(0) if self.moves else None
