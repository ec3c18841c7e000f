"""The bank on emulated modems, in-process and driven by a Clock: scheduling, retries by error
class, unknown outcomes, rate limit, inbound."""
import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from gateway.interfaces import ISmsOutbox
from sms.atparse import parse_cmgr_header
from sms.config import SmsConfig
from sms.emulator.harness import in_process
from sms.emulator.network import deliver_pdus
from sms.modem import BENCHED, READY
from sms.store import MemoryStore
from tests._paths import modem_dumps
from tests._sms_fixtures import ORDER, FakeSink, phone
from tests.secrets import SIM_PIN





EMULATOR_OPTIONS = ("segment_time", "report_delay", "status_reports", "boot_time", "cnmi_ranges", "pin", "seed",
                    "noise_rate", "noise_interval", "header_style", "submit_error_rate", "report_trouble_rate")


def make(n=2, sink=None, **cfg):
    clock = Clock()
    store = MemoryStore()
    emu_opts = {k: cfg.pop(k) for k in list(cfg) if k in EMULATOR_OPTIONS}
    emu_opts.setdefault("segment_time", 3.0)
    cfg.setdefault("probe_interval", 30.0)
    config = SmsConfig(**cfg)
    rig = in_process(clock, n, store, config, sink=sink, **emu_opts)
    rig.bank.start()
    for _ in range(100):                      # modems initialised (ESC, drain, AT, ...)
        if all(sl.driver.state == READY and not sl.driver.session.busy for sl in rig.bank.slots.values()):
            break
        clock.advance(0.1)
    else:
        raise AssertionError("modems not ready")
    return clock, store, rig


def run(clock, seconds, step=0.25):
    for _ in range(int(seconds / step)):
        clock.advance(step)


def enqueue(clock, bank, ph, text=ORDER):
    out = []
    bank.enqueue(ph, text, purpose="order").addBoth(out.append)
    clock.advance(0)
    assert out and isinstance(out[0], int), out
    return out[0]


def test_implements_the_outbox_interface():
    clock, store, rig = make()
    assert verifyObject(ISmsOutbox, rig.bank)


def test_fanout_to_80_phones_once_each_with_near_ideal_makespan():
    clock, store, rig = make(n=4, segment_time=5.0)
    done = {}
    rig.bank.add_observer(lambda mid, st: done.setdefault(mid, clock.seconds()) if st == "sent" else None)
    t0 = clock.seconds()
    ids = [enqueue(clock, rig.bank, phone(i)) for i in range(80)]
    run(clock, 400, step=0.5)
    assert all(rig.bank.message_state(i) == "delivered" for i in ids)
    for i in range(80):
        assert rig.phone_copies(phone(i), ORDER) == 1
        senders = {p.sender for p in rig.emulator.network.parts[phone(i)]}
        assert len(senders) == 1                 # both parts from one modem (one sender number)
    makespan = max(done.values()) - t0
    ideal = (160 // 4) * 5.0
    assert makespan <= ideal * 1.05, (makespan, ideal)


def test_cms_42_is_retried_later_and_delivered_once():
    clock, store, rig = make(n=2, retry_delay=5.0)
    rig.emulator.modems[0].fail_next_submits(42)
    rig.emulator.modems[1].fail_next_submits(42)
    mid = enqueue(clock, rig.bank, phone(1), "short order 0427")
    run(clock, 60)
    assert rig.bank.message_state(mid) == "delivered"
    assert rig.phone_copies(phone(1), "short order 0427") == 1
    assert rig.bank.stats["retried"] >= 1


def test_cms_304_is_our_bug_and_never_retried():
    clock, store, rig = make(n=2)
    for m in rig.emulator.modems:
        m.fail_next_submits(304, 5)
    states = []
    rig.bank.add_observer(lambda mid, st: states.append(st))
    mid = enqueue(clock, rig.bank, phone(2), "x")
    run(clock, 120)
    assert rig.bank.message_state(mid) == "failed" and states[-1] == "failed"
    tries = sum(1 for m in rig.emulator.modems for c in m.commands_seen if c.startswith("AT+CMGS"))
    assert tries == 1


def test_cms_310_benches_the_modem_and_the_message_goes_elsewhere():
    clock, store, rig = make(n=2, bench_cooldown=100.0)
    rig.emulator.modems[0].fail_next_submits(310)
    rig.emulator.modems[1].segment_time = 3.0
    mid = enqueue(clock, rig.bank, phone(3), "x")
    run(clock, 20)
    d0 = rig.bank.slots["emu0"].driver
    assert d0.state == BENCHED
    assert rig.bank.message_state(mid) == "delivered"
    assert [p.sender for p in rig.emulator.network.parts[phone(3)]] == [rig.emulator.modems[1].sim_number]
    run(clock, 100)
    assert d0.state == READY                    # tried again after the cool-down


def test_timeout_after_pdu_is_unknown_and_settled_by_status_report_not_resent():
    clock, store, rig = make(n=1, submit_timeout=2.0, segment_time=1.0, report_delay=5.0, unknown_wait=60.0)
    rig.emulator.modems[0].delay_next_response(10.0)
    mid = enqueue(clock, rig.bank, phone(4), "x")
    run(clock, 120)
    assert rig.bank.stats["unknown"] == 1
    assert rig.bank.stats["settled_report"] == 1
    assert rig.bank.message_state(mid) == "delivered"
    assert rig.phone_copies(phone(4), "x") == 1
    seg = next(s for s in store.segments.values() if s["message_id"] == mid)
    assert seg["outcome_unknown"] == 1 and seg["state"] == "delivered"


def test_late_cmgs_settles_an_unknown_segment():
    clock, store, rig = make(n=1, submit_timeout=2.0, segment_time=1.0, status_reports=False, unknown_wait=60.0)
    rig.emulator.modems[0].delay_next_response(5.0)
    mid = enqueue(clock, rig.bank, phone(5), "x")
    run(clock, 120)
    assert rig.bank.stats["settled_late"] == 1
    assert rig.bank.message_state(mid) == "sent"
    assert rig.phone_copies(phone(5), "x") == 1


def test_unknown_policy_resend_is_explicit_and_counted():
    clock, store, rig = make(n=1, submit_timeout=5.0, status_reports=False, unknown_wait=30.0,
                             bench_cooldown=10.0)
    emu = rig.emulator.modems[0]
    mid = enqueue(clock, rig.bank, phone(6), "x")
    clock.advance(1)
    emu.hang(duration=20.0, network_gets_inflight=True)    # the segment reaches the phone; no answer
    run(clock, 200)
    assert rig.bank.message_state(mid) == "sent"
    assert rig.phone_copies(phone(6), "x") == 2             # the duplicate the policy accepted...
    seg = next(s for s in store.segments.values() if s["message_id"] == mid)
    assert seg["outcome_unknown"] == 1                       # ...and counted
    assert rig.bank.stats["unknown_resent"] == 1


def test_unknown_policy_fail_reports_unknown_and_never_resends():
    clock, store, rig = make(n=1, submit_timeout=5.0, status_reports=False, unknown_wait=30.0,
                             unknown_policy="fail", bench_cooldown=10.0)
    emu = rig.emulator.modems[0]
    states = []
    rig.bank.add_observer(lambda m, st: states.append(st))
    mid = enqueue(clock, rig.bank, phone(7), "x")
    clock.advance(1)
    emu.hang(duration=20.0, network_gets_inflight=False)
    run(clock, 200)
    assert rig.bank.message_state(mid) == "unknown" and states[-1] == "unknown"
    assert rig.phone_copies(phone(7), "x") == 0


def test_per_modem_rate_limit():
    clock, store, rig = make(n=1, segments_per_minute=6, segment_time=1.0)
    for i in range(3):
        enqueue(clock, rig.bank, phone(10 + i), f"m{i}")
    run(clock, 60)
    times = sorted(p.at for ph in rig.emulator.network.parts.values() for p in ph)
    assert len(times) == 3
    assert all(b - a >= 10.0 - 1e-6 for a, b in zip(times, times[1:]))


def test_a_vanished_port_is_reopened_and_sending_resumes():
    clock, store, rig = make(n=1, segment_time=2.0)
    ids = [enqueue(clock, rig.bank, phone(20 + i), "m") for i in range(6)]
    run(clock, 3)
    rig.emulator.unplug(0)
    run(clock, 20)
    assert rig.bank.slots["emu0"].driver.state != READY
    rig.emulator.replug(0)
    run(clock, 120)
    assert all(rig.bank.message_state(i) in ("sent", "delivered") for i in ids)


def test_reboot_is_noticed_and_the_modem_reinitialised():
    clock, store, rig = make(n=1, segment_time=2.0)
    emu = rig.emulator.modems[0]
    ids = [enqueue(clock, rig.bank, phone(30 + i), "m") for i in range(4)]
    run(clock, 3)
    before = emu.commands_seen.count("ATE0")
    emu.reboot(boot_time=2.0)
    run(clock, 200)
    assert emu.commands_seen.count("ATE0") > before
    assert emu.cnmi[1] == 1                     # indications restored after the reboot
    assert all(rig.bank.message_state(i) in ("sent", "delivered") for i in ids)


# --- inbound ------------------------------------------------------------------------------------

def test_replies_are_stored_before_deleted_and_multipart_reassembled():
    sink = FakeSink()
    clock, store, rig = make(n=2, sink=sink)
    emu = rig.emulator.modems[1]
    long_reply = "0427 到达。" + "我队已到达集结点，人员十二人，装备齐全，等待进一步指令。" * 3
    emu.receive_sms("+8613700000001", "0427 收到")
    emu.receive_sms("+8613700000002", long_reply)
    run(clock, 5)
    assert sorted(s.text for s in sink.received) == sorted(["0427 收到", long_reply])
    assert all(s.modem == "emu1" for s in sink.received)
    assert emu.sim == {}                        # deleted only after the commit
    for s in sink.received:
        assert store.inbound[s.raw_id]["channel"] == "sms"
    parts = [r for r in store.inbound.values() if r["channel"] == "sms_part"]
    assert len(parts) == 2 and all(r["state"] == "parsed" for r in parts)


def test_incomplete_multipart_is_passed_on_after_the_timeout():
    sink = FakeSink()
    clock, store, rig = make(n=1, sink=sink, reassembly_timeout=60.0)
    emu = rig.emulator.modems[0]
    pdus = deliver_pdus("+8613700000003", "甲" * 100, clock.seconds(), ref=9)
    emu.store_pdu(*pdus[0])                  # part 2 never comes
    run(clock, 30)
    assert sink.received == []
    run(clock, 40)
    assert len(sink.received) == 1 and sink.received[0].text == "甲" * 67 + "…"


def test_a_lost_cmti_is_found_by_the_sim_sweep():
    sink = FakeSink()
    clock, store, rig = make(n=1, sink=sink, probe_interval=10.0)
    emu = rig.emulator.modems[0]
    pdus = deliver_pdus("+8613700000004", "0427 到达", clock.seconds())
    emu.sim[5] = (0, pdus[0][0], pdus[0][1])   # on the SIM, but its +CMTI never arrived
    run(clock, 60)
    assert [s.text for s in sink.received] == ["0427 到达"]
    assert emu.sim == {}


def test_every_reference_pdu_is_stored_raw_and_the_sim_emptied():
    sink = FakeSink()
    clock, store, rig = make(n=1, sink=sink)
    emu = rig.emulator.modems[0]
    n = 0
    for f in sorted(modem_dumps("at-sms").glob("*.dump")):
        lines = [ln.strip() for ln in f.read_bytes().decode("latin-1").splitlines() if ln.strip()]
        length = parse_cmgr_header(lines[1]).length
        emu.store_pdu(lines[2].strip('"'), length)
        n += 1
        run(clock, 1)
    run(clock, 10)
    assert emu.sim == {}
    rows = list(store.inbound.values())
    assert len({r["raw"] for r in rows if r["channel"] in ("sms", "sms_part", "status_report")}) >= n - 2
    garbage = [r for r in rows if r["state"] == "garbage"]
    assert garbage and all(r["note"] for r in garbage)
    assert len(sink.received) >= 15


def test_a_reply_is_deleted_from_the_sim_only_after_its_commit():
    sink = FakeSink()
    clock, store, rig = make(n=1, sink=sink)
    held = []
    real = store.store_inbound

    def slow_commit(now, dedup=True, **row):
        d = defer.Deferred()
        held.append((d, real(now, dedup=dedup, **row)))
        return d
    store.store_inbound = slow_commit
    emu = rig.emulator.modems[0]
    emu.receive_sms("+8613700000005", "0427 到达")
    run(clock, 10)
    assert held and len(emu.sim) == 1                       # not committed: still on the SIM
    assert not any(c.startswith("AT+CMGD") for c in emu.commands_seen)
    assert sink.received == []
    for d, inner in held:
        inner.addCallback(d.callback)                          # the commit completes
    run(clock, 5)
    assert emu.sim == {} and [s.text for s in sink.received] == ["0427 到达"]


@pytest.mark.parametrize("ranges,expected", [
    ("(2),(0-1,3),(0,2),(0-1),(0)", (2, 1, 0, 1, 0)),      # a real device's answer (at-cnmi/01.dump)
    ("(0-2),(0,1,3),(0),(0),(0,1)", (2, 1, 0, 0, 0)),      # no status reports routed: still works
    ("(1),(1),(0),(2),(0)", (1, 1, 0, 2, 0)),              # reports stored on the SIM (+CDSI)
])
def test_cnmi_is_chosen_from_what_the_modem_offers(ranges, expected):
    clock, store, rig = make(n=1, cnmi_ranges=ranges)
    assert rig.bank.slots["emu0"].driver.cnmi == expected
    assert rig.emulator.modems[0].cnmi == expected
    mid = enqueue(clock, rig.bank, phone(40), "x")
    run(clock, 30)
    assert rig.bank.message_state(mid) in ("sent", "delivered")


def test_sim_pin_is_entered_and_never_logged():
    from twisted.logger import formatEvent, globalLogPublisher
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        clock, store, rig = make(n=1, pin=SIM_PIN, sim_pin=SIM_PIN)
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert rig.bank.slots["emu0"].driver.state == READY
    assert SIM_PIN not in " ".join(formatEvent(e) for e in seen)
    assert SIM_PIN not in repr(rig.bank.config)
