"""A reactor whose clock runs `speed` times faster: the drill's compressed time.

Every part of the gateway takes its reactor as an argument and reads time only through it
(IReactorTime), so handing them this proxy compresses every timer at once (escalation ladders,
retry delays, the emulated phones' rings and key presses) without changing a rule and without a
sleep anywhere: a 3-minute rung fires after 3 simulated minutes, 3 real seconds at --speed 60.
Everything else (sockets, threads, ptys) is the real reactor's, delegated unchanged."""
from __future__ import annotations

from zope.interface import implementer
from twisted.internet.interfaces import IReactorTime


class _ScaledCall:
    """A real DelayedCall seen in simulated seconds."""

    def __init__(self, clock: "ScaledClock", call):
        self._clock, self._call = clock, call

    def getTime(self) -> float:
        return self._clock.simulated(self._call.getTime())

    def reset(self, seconds: float) -> None:
        self._call.reset(max(0.0, seconds) / self._clock.speed)

    def delay(self, seconds: float) -> None:
        self._call.delay(seconds / self._clock.speed)

    def cancel(self) -> None:
        self._call.cancel()

    def active(self) -> bool:
        return self._call.active()

    def __getattr__(self, name):
        return getattr(self._call, name)


@implementer(IReactorTime)
class ScaledClock:
    def __init__(self, reactor, speed: float, start: float | None = None):
        if speed <= 0:
            raise ValueError(f"speed must be above 0, got {speed}")
        self._reactor, self.speed = reactor, float(speed)
        self._real0 = reactor.seconds()
        self._sim0 = self._real0 if start is None else start

    def simulated(self, real: float) -> float:
        return self._sim0 + (real - self._real0) * self.speed

    def seconds(self) -> float:
        return self.simulated(self._reactor.seconds())

    def callLater(self, delay, f, *args, **kw):
        return _ScaledCall(self, self._reactor.callLater(max(0.0, delay) / self.speed, f, *args, **kw))

    def getDelayedCalls(self):
        return [_ScaledCall(self, c) for c in self._reactor.getDelayedCalls()]

    def __getattr__(self, name):
        return getattr(self._reactor, name)
