"""The bank against emulated modems that answer as real ones do (TS 27.005 / 23.040 and the makes
in ../shared/reference/modems): unsolicited lines at random points, every +CMGR/+CMGL header form,
status reports that say "still trying" or "failed", reports stored in "SR", +CMS ERROR 330 / 500
/ Huawei 512+, a boot announced in four lines.  Clock-driven, in-process; one over ptys."""
import os
import random

import pytest
import pytest_twisted
from prometheus_client import REGISTRY
from sqlalchemy import select
from twisted.internet import reactor

from gateway.storage import schema as t
from sms.emulator.harness import on_ptys
from sms.emulator.modem import BOOT_LINES, NOISE_LINES
from sms.emulator.network import deliver_pdus
from sms.modem import BENCHED, READY
from sms.store import SqlStore
from tests._sms_fixtures import FakeSink, phone
from tests.test_sms_bank import enqueue, make, run
from tests.test_sms_pty import fast_config, rigs, until  # noqa: F401 - rigs is a fixture

REPLIES = [f"{427 + i:04d} 到达 第{i}队" + ("，人员装备齐全" * (25 if i % 4 == 0 else 0)) for i in range(12)]


def unsolicited_total():
    return sum(s.value for m in REGISTRY.collect() if m.name == "yihu_modem_unsolicited"
               for s in m.samples if s.name.endswith("_total"))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_noisy_modems_with_every_header_form_lose_no_reply_and_store_no_noise(seed):
    sink = FakeSink()
    clock, store, rig = make(n=2, sink=sink, seed=seed, noise_rate=0.4, noise_interval=3.0, header_style="random",
                             probe_interval=10.0)
    before, noise_before = unsolicited_total(), sum(m.noise_sent for m in rig.emulator.modems)
    for i, text in enumerate(REPLIES):
        rig.emulator.modems[i % 2].receive_sms(f"+86137000{i:05d}", text)
        run(clock, 0.5)
    run(clock, 60)
    assert sorted(s.text for s in sink.received) == sorted(REPLIES)
    assert all(m.sim == {} for m in rig.emulator.modems)
    assert not [r for r in store.inbound.values() if r["state"] == "garbage"]
    noise = sum(m.noise_sent for m in rig.emulator.modems) - noise_before
    assert noise > 10 and unsolicited_total() - before >= noise      # every one seen and counted


def test_a_lost_cmti_is_swept_from_a_noisy_listing():
    sink = FakeSink()
    clock, store, rig = make(n=1, sink=sink, seed=5, noise_rate=0.9, header_style="no_alpha", probe_interval=10.0)
    emu = rig.emulator.modems[0]
    for k, text in enumerate(["0427 到达", "0428 收到", "0429 处置完毕"]):
        pdu, length = deliver_pdus(f"+8613700000{k:03d}", text, clock.seconds())[0]
        emu.sim[5 + k] = (0, pdu, length)            # on the SIM, but no +CMTI ever came
    run(clock, 60)
    assert sorted(s.text for s in sink.received) == ["0427 到达", "0428 收到", "0429 处置完毕"]
    assert emu.sim == {}


@pytest.mark.parametrize("statuses,state,sends,copies", [
    ([(0x21, 0x00)], "delivered", 1, 1),              # handset busy, still trying; then received
    ([(0x20, 0x30, 0x00)], "delivered", 1, 1),        # congestion, SC-specific still trying; received
    ([(0x22, 0x62)], "delivered", 2, 1),              # no response, SC gave up: sent again, received
    ([(0x61,), (0x25, 0x65)], "delivered", 3, 1),     # gave up twice (busy, error in handset), then received
    ([(0x41,)], "failed", 1, 0),                      # incompatible destination: never resent
    ([(0x21, 0x46)], "failed", 1, 0),                 # still trying, then validity period expired
    ([(0x62,), (0x62,), (0x62,)], "failed", 3, 0),    # attempts exhausted (max_attempts 3)
])
def test_status_reports_drive_the_retry_policy(statuses, state, sends, copies):
    clock, store, rig = make(n=1, report_delay=2.0, retry_delay=5.0, max_attempts=3)
    rig.emulator.modems[0].script_reports(*statuses)
    mid = enqueue(clock, rig.bank, phone(1), "x")
    run(clock, 120)
    assert rig.bank.message_state(mid) == state
    assert rig.emulator.network.submitted == sends
    assert rig.phone_copies(phone(1), "x") == copies
    seg = next(s for s in store.segments.values() if s["message_id"] == mid)
    assert seg["attempts"] == sends and "TP-Status" in seg["last_error"]


def test_still_trying_settles_an_unknown_outcome_so_it_is_never_resent():
    clock, store, rig = make(n=1, submit_timeout=2.0, segment_time=1.0, report_delay=5.0, unknown_wait=8.0)
    emu = rig.emulator.modems[0]
    emu.delay_next_response(30.0)                     # the +CMGS answer never comes in time
    emu.script_reports((0x21, 0x21, 0x00))            # the final report only after unknown_wait
    mid = enqueue(clock, rig.bank, phone(2), "x")
    run(clock, 60)
    assert rig.bank.stats["unknown"] == 1 and rig.bank.stats["unknown_resent"] == 0
    assert rig.bank.message_state(mid) == "delivered"
    assert emu.network.submitted == 1 and rig.phone_copies(phone(2), "x") == 1


def test_reports_stored_in_sr_are_read_there_and_removed():
    clock, store, rig = make(n=1, cnmi_ranges="(1),(1),(0),(2),(0)", report_delay=1.0)
    emu = rig.emulator.modems[0]
    emu.script_reports((0x21, 0x00))
    mid = enqueue(clock, rig.bank, phone(3), "x")
    run(clock, 30)
    assert rig.bank.message_state(mid) == "delivered"
    assert emu.storages["SR"] == {} and emu.mems[0] == "SM"
    assert [c for c in emu.commands_seen if c.startswith('AT+CPMS="S')][-2:] == ['AT+CPMS="SR"', 'AT+CPMS="SM"']
    reports = [r for r in store.inbound.values() if r["channel"] == "status_report"]
    assert [r["meta"]["status"] for r in reports] == [0x21, 0x00]


def test_cms_330_smsc_unknown_benches_the_modem_and_the_message_goes_on_another():
    clock, store, rig = make(n=2, bench_cooldown=100.0, retry_delay=2.0)
    rig.emulator.modems[0].fail_next_submits(330)
    rig.emulator.modems[1].segment_time = 3.0           # modem 0 is tried first
    mid = enqueue(clock, rig.bank, phone(4), "x")
    run(clock, 40)
    assert rig.bank.slots["emu0"].driver.state == BENCHED
    assert rig.bank.message_state(mid) == "delivered"
    assert [p.sender for p in rig.emulator.network.parts[phone(4)]] == [rig.emulator.modems[1].sim_number]


@pytest.mark.parametrize("code", [500, 512, 513, 514, 515])
def test_unknown_and_huawei_errors_are_retried_without_benching(code):
    clock, store, rig = make(n=2, bench_cooldown=100.0, retry_delay=2.0)
    for m in rig.emulator.modems:
        m.fail_next_submits(code)
    mid = enqueue(clock, rig.bank, phone(4), "x")
    run(clock, 40)
    assert rig.bank.message_state(mid) == "delivered"
    assert rig.phone_copies(phone(4), "x") == 1
    assert all(sl.driver.state == READY for sl in rig.bank.slots.values())
    seg = next(s for s in store.segments.values() if s["message_id"] == mid)
    assert seg["attempts"] >= 2 and rig.bank.stats["retried"] >= 1


def noisy_trial(seed: int) -> list[str]:
    """30 orders through 3 modems that refuse at random (+CMS 500/330/512+), report trouble at
    random (still trying, given up, failed), and send unsolicited lines at random: what went wrong."""
    clock, store, rig = make(n=3, seed=seed, submit_error_rate=0.25, report_trouble_rate=0.4, noise_rate=0.2,
                             header_style="random", report_delay=3.0, retry_delay=3.0, max_attempts=4,
                             bench_cooldown=30.0)
    ids = {enqueue(clock, rig.bank, phone(100 + i), f"order {i}"): i for i in range(30)}
    run(clock, 900)
    problems = []
    for mid, i in ids.items():
        state = rig.bank.message_state(mid)
        copies = rig.phone_copies(phone(100 + i), f"order {i}")
        if state not in ("delivered", "failed") or copies != (1 if state == "delivered" else 0):
            problems.append(f"seed {seed}: message {mid} {state}, {copies} copies")
    if sum(rig.bank.message_state(m) == "delivered" for m in ids) < 15:
        problems.append(f"seed {seed}: too few delivered")
    rig.stop()
    return problems


def test_random_errors_and_troubled_reports_never_duplicate_and_never_lose():
    assert noisy_trial(11) == []


@pytest.mark.slow
def test_many_seeds_of_random_errors_and_troubled_reports():
    base = int(os.environ.get("YIHU_SMS_NOISE_SEED", random.SystemRandom().randrange(1 << 30)))
    trials = int(os.environ.get("YIHU_SMS_NOISE_TRIALS", "40"))
    print(f"\nnoisy trials: seed {base}, {trials} trials (rerun: YIHU_SMS_NOISE_SEED={base})")
    problems = [p for k in range(trials) for p in noisy_trial(base + k)]
    assert problems == []


def test_a_reboot_announces_itself_in_four_lines_and_the_modem_is_initialised_once():
    clock, store, rig = make(n=1, probe_interval=1000.0)
    emu = rig.emulator.modems[0]
    seen = []
    real = emu._out
    emu._out = lambda data: (seen.append(data), real(data))
    emu.reboot(boot_time=2.0)
    before = emu.commands_seen.count("ATE0")
    run(clock, 30)
    text = b"".join(seen).decode("latin-1")
    boot = [ln for _d, ln in BOOT_LINES]
    assert [ln for ln in text.split("\r\n") if ln in boot][:len(boot)] == boot   # then AT+CPIN? answers too
    assert emu.commands_seen.count("ATE0") == before + 1
    assert rig.bank.slots["emu0"].driver.state == READY
    mid = enqueue(clock, rig.bank, phone(5), "x")
    run(clock, 20)
    assert rig.bank.message_state(mid) == "delivered"


def test_sms_commands_are_refused_until_sms_ready():
    clock, store, rig = make(n=1, probe_interval=1000.0)
    emu = rig.emulator.modems[0]
    rig.bank.stop()
    out = []
    emu.attach(out.append)
    emu.reboot(boot_time=1.0)
    clock.advance(1.3)                                 # RDY and +CFUN: 1 are out, SMS Ready is not
    emu.feed(b"AT+CMEE=1\r")
    emu.feed(b"AT+CMGL=4\r")
    clock.advance(2.0)
    emu.feed(b"AT+CMGL=4\r")
    text = b"".join(out).decode("latin-1")
    assert "+CMS ERROR: 314" in text
    assert text.index("SMS Ready") < text.rindex("OK")


def test_noise_lines_are_what_real_modems_send():
    # none of them may look like a PDU or a final result
    for ln in NOISE_LINES:
        assert not all(c in "0123456789ABCDEF" for c in ln)
        assert ln not in ("OK", "ERROR") and not ln.startswith(("+CMS ERROR", "+CME ERROR", "+CMTI", "+CDS"))


@pytest_twisted.inlineCallbacks
def test_noisy_modem_over_a_pty_with_the_database(database, tmp_path, rigs):  # noqa: F811
    sink = FakeSink()
    rig = on_ptys(reactor, 1, str(tmp_path / "ports"), SqlStore(database), fast_config(), sink=sink,
                  segment_time=0.02, report_delay=0.05, seed=3, noise_rate=0.5, noise_interval=0.2,
                  header_style="random")
    rigs.append(rig)
    yield rig.bank.start()
    driver = rig.bank.slots[rig.emulator.paths[0]].driver
    yield until(lambda: driver.state == READY, 10, "ready")
    emu = rig.emulator.modems[0]
    emu.script_reports((0x21, 0x00), (0x22, 0x62))
    first = yield rig.bank.enqueue(phone(1), "order 1", purpose="order")
    second = yield rig.bank.enqueue(phone(2), "order 2", purpose="order")
    for i, text in enumerate(REPLIES[:4]):
        emu.receive_sms(f"+86137000{i:05d}", text)
    yield until(lambda: sorted(s.text for s in sink.received) == sorted(REPLIES[:4]), 20, "replies",
                lambda: [s.text for s in sink.received])
    yield until(lambda: {rig.bank.message_state(first), rig.bank.message_state(second)} == {"delivered"}, 20,
                "both delivered")
    assert rig.phone_copies(phone(1), "order 1") == 1 and rig.phone_copies(phone(2), "order 2") == 1
    garbage = yield database.run(lambda c: c.execute(select(t.inbound_raw.c.id).where(
        t.inbound_raw.c.state == "garbage")).all())
    assert garbage == [] and emu.noise_sent > 0
