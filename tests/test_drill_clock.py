"""The drill's compressed clock, checked on a Clock standing in for the real reactor."""
from twisted.internet.task import Clock, LoopingCall

from gateway.drill.clock import ScaledClock


def test_timers_run_speed_times_faster_and_report_simulated_time():
    real = Clock()
    real.advance(1000)
    fast = ScaledClock(real, 60, start=5000)
    fired = []
    call = fast.callLater(180, fired.append, "3-minute rung")
    assert call.getTime() == 5180 and fast.seconds() == 5000
    real.advance(2.9)
    assert fired == [] and abs(fast.seconds() - 5174) < 1e-6
    real.advance(0.1)
    assert fired == ["3-minute rung"] and not call.active()
    later = fast.callLater(600, fired.append, "reset")
    later.reset(60)                       # simulated seconds: one real second at 60x
    real.advance(1)
    assert fired[-1] == "reset"
    ticks = []
    loop = LoopingCall(lambda: ticks.append(fast.seconds()))
    loop.clock = fast
    loop.start(60, now=False)
    for _ in range(3):
        real.advance(1)
    loop.stop()
    assert [round(t) for t in ticks] == [5300, 5360, 5420]
    # Everything but time is the real reactor's.
    assert fast.advance == real.advance
