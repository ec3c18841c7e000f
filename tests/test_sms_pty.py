"""The bank through the real serial code on pseudo-terminals, against emulated modems, with the
real database (SQLite and PostgreSQL)."""
import random
import time

import pytest
import pytest_twisted
from sqlalchemy import select
from twisted.internet import defer, reactor, task

from gateway.storage import schema as t
from sms.config import SmsConfig
from sms.emulator.harness import on_ptys
from sms.emulator.network import deliver_pdus
from sms.modem import OFFLINE, READY
from sms.store import SqlStore
from tests._sms_fixtures import ORDER, FakeSink, phone





def fast_config(**kw):
    base = dict(expected_segment_seconds=0.02, command_timeout=3.0, submit_timeout=3.0, prompt_timeout=3.0,
                probe_interval=1.0, reopen_interval=0.1, reopen_max_interval=0.5, bench_cooldown=1.0,
                retry_delay=0.2, unknown_wait=3.0, affinity_wait=2.0)
    base.update(kw)
    return SmsConfig(**base)


@defer.inlineCallbacks
def until(predicate, timeout=30.0, what="condition", detail=lambda: ""):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} {detail()}")
        yield task.deferLater(reactor, 0.02, lambda: None)


@pytest.fixture
def rigs():
    made = []
    yield made
    for r in made:
        r.stop()


@pytest_twisted.inlineCallbacks
def test_two_part_chinese_order_to_80_phones_exactly_once_with_replies_during_sends(database, tmp_path, rigs):
    sink = FakeSink()
    rig = on_ptys(reactor, 4, str(tmp_path / "ports"), SqlStore(database), fast_config(), sink=sink,
                  segment_time=0.03, report_delay=0.05)
    rigs.append(rig)
    yield rig.bank.start()
    yield until(lambda: all(s.driver.state == READY for s in rig.bank.slots.values()), 10, "modems ready")
    ids = yield defer.gatherResults([rig.bank.enqueue(phone(i), ORDER, purpose="order") for i in range(80)])
    # commanders answer while the order is still going out
    rnd = random.Random(4)
    replies = {f"+8613700{i:05d}": f"0427 到达 第{i}队" + ("，人员齐整" * (30 if i % 5 == 0 else 0))
               for i in range(20)}
    for k, (sender, text) in enumerate(replies.items()):
        reactor.callLater(rnd.uniform(0, 1.0), rig.emulator.modems[k % 4].receive_sms, sender, text)
    yield until(lambda: all(rig.bank.message_state(i) == "delivered" for i in ids), 60, "all delivered",
                lambda: f"{rig.bank.summary()} {rig.bank.stats} "
                        f"{[(m.id, [(s['state'], s['mr'], s['modem']) for s in m.segments]) for m in rig.bank.messages.values() if m.state != 'delivered'][:5]}")
    yield until(lambda: len(sink.received) >= len(replies), 20, "all replies")
    for i in range(80):
        assert rig.phone_copies(phone(i), ORDER) == 1, phone(i)
    assert {s.sender: s.text for s in sink.received} == replies
    assert len(sink.received) == len(replies)
    rows = yield database.run(lambda c: c.execute(select(t.sms_segments.c.state, t.sms_segments.c.mr)).all())
    assert len(rows) == 160 and all(st == "delivered" and mr is not None for st, mr in rows)
    raws = yield database.run(lambda c: c.execute(select(t.inbound_raw.c.id).where(
        t.inbound_raw.c.channel == "sms")).all())
    assert {s.raw_id for s in sink.received} <= {r[0] for r in raws}
    yield until(lambda: all(m.sim == {} for m in rig.emulator.modems), 10, "SIMs emptied")


@pytest_twisted.inlineCallbacks
def test_cmti_inside_a_csq_answer_is_not_lost(database, tmp_path, rigs):
    sink = FakeSink()
    rig = on_ptys(reactor, 1, str(tmp_path / "ports"), SqlStore(database),
                  fast_config(probe_interval=0.2, sim_sweep_probes=0), sink=sink)
    rigs.append(rig)
    yield rig.bank.start()
    driver = rig.bank.slots[rig.emulator.paths[0]].driver
    emu = rig.emulator.modems[0]
    yield until(lambda: driver.state == READY and "AT+CMGL=4" in emu.commands_seen and not driver.session.busy,
                10, "ready, initial SIM sweep done")
    pdu_hex, length = deliver_pdus("+8613700000009", "0427 完成", reactor.seconds())[0]
    emu.sim[7] = (0, pdu_hex, length)               # stored; its only announcement comes inside +CSQ
    emu.inject_inside_next_response("AT+CSQ", '+CMTI: "SM",7')
    yield until(lambda: sink.received, 10, "the reply")
    assert [s.text for s in sink.received] == ["0427 完成"]
    yield until(lambda: emu.sim == {}, 10, "deleted from the SIM after the commit")
    assert any(c == "AT+CMGR=7" for c in emu.commands_seen)


@pytest_twisted.inlineCallbacks
def test_garbage_bytes_and_a_vanished_port_do_not_stop_the_bank(database, tmp_path, rigs):
    rig = on_ptys(reactor, 1, str(tmp_path / "ports"), SqlStore(database), fast_config(),
                  segment_time=0.02, report_delay=0.02)
    rigs.append(rig)
    yield rig.bank.start()
    path = rig.emulator.paths[0]
    driver = rig.bank.slots[path].driver
    yield until(lambda: driver.state == READY, 10, "ready")
    rig.emulator.modems[0].send_raw(b"\r\n\xff\xfe\x00\x80\xc3(\r\n")
    first = yield rig.bank.enqueue(phone(1), "order 1", purpose="order")
    yield until(lambda: rig.bank.message_state(first) == "delivered", 10, "first delivered")
    garbage = yield database.run(lambda c: c.execute(select(t.inbound_raw.c.raw).where(
        t.inbound_raw.c.state == "garbage")).all())
    assert any(b"\xff\xfe" in bytes(r[0]) for r in garbage)
    # the modem drops off USB, the path disappears; it comes back later
    rig.emulator.unplug(0)
    yield until(lambda: driver.state == OFFLINE, 10, "offline")
    second = yield rig.bank.enqueue(phone(2), "order 2", purpose="order")
    yield task.deferLater(reactor, 0.5, lambda: None)
    assert rig.bank.message_state(second) == "queued"
    rig.emulator.replug(0, boot_time=0.1)
    yield until(lambda: rig.bank.message_state(second) == "delivered", 20, "second delivered")
    assert rig.phone_copies(phone(2), "order 2") == 1
