"""A gateway that cannot start stops at once, often while other parts are still starting (reading
the database before their loops begin): nothing they were about to set going may run on after
the stop (on a closed database pool, for the life of the process)."""
from __future__ import annotations

from datetime import datetime, timezone

from twisted.internet import defer
from twisted.internet.task import Clock

from adapters.events import EventsService
from adapters.webhooks import Webhooks, WebhookSection
from gateway.escalation.engine import EscalationEngine
from gateway.orders.fanout import FanOut


class HeldDatabase:
    """Every unit of work waits until the test answers it, and is counted."""

    def __init__(self):
        self.calls = []

    def run(self, fn, *args):
        d = defer.Deferred()
        self.calls.append((fn.__name__, d))
        return d


def test_webhooks_stopped_during_their_first_refresh_never_refresh_again():
    clock, db = Clock(), HeldDatabase()
    hooks = Webhooks(clock, db, tail=None, cfg=WebhookSection(refresh_s=5.0), post=lambda *a, **kw: None)
    started = hooks.start()
    assert [name for name, _ in db.calls] == ["sync_config_tx"]
    stopped = hooks.stop()                      # the gateway stops while that read is in the database
    db.calls[0][1].callback((0, 0))
    db.calls[1][1].callback([])                 # the subscribers: none
    assert started.called and stopped.called
    clock.advance(60.0)                         # twelve refresh periods
    assert [name for name, _ in db.calls] == ["sync_config_tx", "load_tx"]


def test_webhooks_not_stopped_go_on_refreshing():
    clock, db = Clock(), HeldDatabase()
    hooks = Webhooks(clock, db, tail=None, cfg=WebhookSection(refresh_s=5.0), post=lambda *a, **kw: None)
    hooks.start()
    db.calls[0][1].callback((0, 0))
    db.calls[1][1].callback([])
    clock.advance(5.0)
    assert [name for name, _ in db.calls] == ["sync_config_tx", "load_tx", "load_tx"]
    hooks.stop()


class Tail:
    def __init__(self):
        self.started = defer.Deferred()
        self.stopped = False

    def start(self):
        return self.started

    def stop(self):
        self.stopped = True


class Recorder:
    def __init__(self):
        self.starts = self.stops = 0

    def start(self):
        self.starts += 1

    def stop(self):
        self.stops += 1


def test_a_service_stopped_before_its_tail_started_starts_neither_sweep_nor_webhooks():
    tail, sweep, hooks = Tail(), Recorder(), Recorder()
    events = EventsService(tail, sweep, hooks)
    events.startService()
    events.stopService()
    tail.started.callback(None)                 # the tail's start ends after the stop
    assert (sweep.starts, hooks.starts) == (0, 0) and tail.stopped


def test_a_service_running_when_its_tail_started_starts_sweep_and_webhooks():
    tail, sweep, hooks = Tail(), Recorder(), Recorder()
    events = EventsService(tail, sweep, hooks)
    events.startService()
    tail.started.callback(None)
    assert (sweep.starts, hooks.starts) == (1, 1) and events.state == "up"
    events.stopService()
    assert (sweep.stops, hooks.stops) == (1, 1)


def test_a_fan_out_stopped_while_it_requeues_never_sweeps():
    clock, db = Clock(), HeldDatabase()
    fanout = FanOut(db, clock, outbox=None, caller=None)
    started = fanout.start()
    fanout.stop()
    db.calls[0][1].callback((0, 0))            # nothing left being handed
    assert started.called and not fanout.running
    clock.advance(600.0)
    assert [name for name, _ in db.calls] == ["requeue_handing_tx"]


def test_a_fan_out_not_stopped_sweeps_and_stops():
    clock, db = Clock(), HeldDatabase()
    fanout = FanOut(db, clock, outbox=None, caller=None)
    fanout.start()
    db.calls[0][1].callback((0, 0))
    assert fanout.running and len(db.calls) > 1        # its first sweep went at once
    fanout.stop()
    assert not fanout.running


def test_an_escalation_engine_stopped_while_it_loads_sets_no_timer_and_no_loop():
    clock, db = Clock(), HeldDatabase()
    engine = EscalationEngine(db, clock, outbox=None, caller=None)
    started = engine.start()
    engine.stop()
    db.calls[0][1].callback(([(7, datetime.fromtimestamp(30.0, timezone.utc))], 0))   # a team timer due at 30 s
    assert started.called and not engine.running and len(engine.timers) == 0
    clock.advance(600.0)
    assert [name for name, _ in db.calls] == ["load_pending_tx"]


def test_an_escalation_engine_not_stopped_loads_its_timers_and_loops():
    clock, db = Clock(), HeldDatabase()
    engine = EscalationEngine(db, clock, outbox=None, caller=None)
    engine.start()
    db.calls[0][1].callback(([(7, datetime.fromtimestamp(30.0, timezone.utc))], 0))
    assert engine.running and len(engine.timers) == 1
    engine.stop()
    assert not engine.running


def test_an_sms_bank_stopped_while_it_reads_its_open_messages_opens_no_modem():
    from sms.emulator.harness import in_process
    from sms.store import MemoryStore

    class SlowStore(MemoryStore):
        def __init__(self):
            super().__init__()
            self.loading = defer.Deferred()

        def load_open(self, node=None):
            return self.loading.addCallback(lambda _: [])

    clock, store = Clock(), SlowStore()
    rig = in_process(clock, 2, store)
    opened = []
    for name, slot in rig.bank.slots.items():
        slot.driver.start = lambda name=name: opened.append(name)
    started = rig.bank.start()
    rig.bank.abandon()                         # what a gateway that could not start does with it
    store.loading.callback(None)
    clock.advance(600.0)
    assert started.called and opened == [] and not rig.bank.started
    rig.emulator.stop()


def test_an_sms_bank_not_stopped_opens_its_modems():
    from sms.emulator.harness import in_process
    from sms.store import MemoryStore
    clock = Clock()
    rig = in_process(clock, 2, MemoryStore())
    opened = []
    for name, slot in rig.bank.slots.items():
        slot.driver.start = lambda name=name: opened.append(name)
    rig.bank.start()
    assert sorted(opened) == sorted(rig.bank.slots) and rig.bank.started
    rig.bank.abandon()
    rig.emulator.stop()


def test_an_order_domain_stopped_while_its_engine_loads_never_starts_the_fan_out():
    from gateway.orders.domain import OrderDomain
    clock, db = Clock(), HeldDatabase()
    domain = OrderDomain(clock, db, outbox=None, caller=None)
    started = domain.start()
    domain.stop()
    db.calls[0][1].callback(([], 0))
    clock.advance(600.0)
    assert started.called and not domain.fanout.running
    assert [name for name, _ in db.calls] == ["load_pending_tx"]
