"""TimerQueue: one IDelayedCall for many due times."""
from twisted.internet.task import Clock

from gateway.escalation.timers import TimerQueue


def make():
    clock, fired = Clock(), []
    q = TimerQueue(clock, lambda items, now: fired.extend((k, d, now) for k, d in items))
    return clock, q, fired


def test_fires_in_order_at_their_times_with_one_delayed_call():
    clock, q, fired = make()
    for k in range(1000):
        q.set(k, 10.0 + (k % 10))
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(10)
    assert len(fired) == 100 and {d for _, d, _ in fired} == {10.0}
    clock.advance(9)
    assert len(fired) == 1000 and all(now == d or now >= d for _, d, now in fired)
    assert clock.getDelayedCalls() == []


def test_replace_discard_and_set_earlier():
    clock, q, fired = make()
    q.set("a", 5)
    q.set("a", 8)          # replaced: not at 5
    q.set("b", 6)
    q.discard("b")
    q.set_earlier("c", 7)
    q.set_earlier("c", 9)  # later: ignored
    clock.advance(5)
    clock.advance(1)
    assert fired == []
    clock.advance(1)
    assert [k for k, _, _ in fired] == ["c"]
    clock.advance(1)
    assert [k for k, _, _ in fired] == ["c", "a"]
    assert len(q) == 0


def test_earlier_setting_rearms_and_stale_entries_compact():
    clock, q, fired = make()
    q.set("x", 100)
    q.set("y", 1)          # earlier than the armed call: re-armed
    clock.advance(1)
    assert [k for k, _, _ in fired] == ["y"]
    for i in range(5000):
        q.set("x", 100 + i)
    assert len(q._heap) < 3000
    clock.advance(6000)
    assert [k for k, _, _ in fired] == ["y", "x"]


def test_a_failing_callback_does_not_stop_the_queue():
    clock = Clock()
    calls = []

    def boom(items, now):
        calls.append(items)
        raise RuntimeError("bug")
    q = TimerQueue(clock, boom)
    q.set(1, 1)
    q.set(2, 2)
    for _ in range(2):
        try:
            clock.advance(1)
        except RuntimeError:
            pass
    assert [i[0][0] for i in calls] == [1, 2]


def test_nothing_fires_after_stop():
    clock, q, fired = make()
    q.set("a", 1)
    q.stop()
    q.set("b", 2)
    clock.advance(5)
    assert fired == [] and clock.getDelayedCalls() == []
