"""The SIM PIN: sent at most once per SIM per start, a refusal benches the modem for good (until
an operator retries on purpose), and the PIN never reaches a log line, an error or an event.

The emulated SIM behaves like a real one: three wrong PINs lock it and it then asks for its PUK.
"""
import pytest_twisted
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher

from sms.config import SmsConfig
from sms.emulator.harness import in_process
from sms.modem import BENCHED, READY
from sms.store import MemoryStore
from tests.secrets import SIM_PIN, WRONG_SIM_PIN

FAST = dict(probe_interval=5.0, bench_cooldown=20.0, errors_to_bench=1, reopen_interval=1.0,
            reopen_max_interval=2.0, command_timeout=2.0)


class LogLines:
    def __init__(self):
        self.events = []

    def __enter__(self):
        globalLogPublisher.addObserver(self.events.append)
        return self

    def __exit__(self, *exc):
        globalLogPublisher.removeObserver(self.events.append)

    @property
    def text(self):
        return "\n".join(str(formatEvent(e)) for e in self.events)


def rig_with(n, sim_pin, modem_pin, **cfg):
    clock = Clock()
    alerts = []
    rig = in_process(clock, n, MemoryStore(), SmsConfig(sim_pin=sim_pin, **{**FAST, **cfg}), pin=modem_pin,
                     segment_time=1.0)
    rig.bank.alert_observers.append(lambda modem, reason: alerts.append((modem, reason)))
    rig.bank.start()
    return clock, rig, alerts


def pin_entries(modem):
    return sum(1 for c in modem.commands_seen if c.upper().startswith("AT+CPIN="))


def run(clock, seconds, step=0.5):
    for _ in range(int(seconds / step)):
        clock.advance(step)


def test_a_wrong_pin_is_sent_once_per_sim_across_many_reinitialisations_and_benches_the_modem():
    with LogLines() as logs:
        clock, rig, alerts = rig_with(3, WRONG_SIM_PIN, SIM_PIN)
        run(clock, 10)
        for round_ in range(15):                     # restarts, lost ports, power cuts: 10 minutes of them
            for i, m in enumerate(rig.emulator.modems):
                if round_ % 3 == 0:
                    m.reboot(boot_time=1.0)
                elif round_ % 3 == 1:
                    rig.emulator.unplug(i)
                    clock.advance(1)
                    rig.emulator.replug(i, boot_time=0.5)
                else:
                    m.unsolicited("RDY")
            run(clock, 40)
    for i, m in enumerate(rig.emulator.modems):
        assert pin_entries(m) == 1, (m.name, m.commands_seen)
        assert m.pin_tries == 2                      # the SIM kept two of its three tries
        d = rig.bank.slots[m.name].driver
        assert d.state == BENCHED and not d.healthy
        assert "SIM PIN refused" in d.describe()
    assert sorted(a[0] for a in alerts) == ["emu0", "emu1", "emu2"]   # one alert per modem, not per retry
    assert all("SIM PIN refused" in reason for _, reason in alerts)
    assert "SIM PIN refused" in logs.text
    # what /health and the board show for the SMS part
    assert rig.bank.describe_modems().startswith("0/3 modems healthy: emu0 benched (SIM PIN refused: +CME ERROR: 16)")
    assert WRONG_SIM_PIN not in logs.text and SIM_PIN not in logs.text
    assert WRONG_SIM_PIN not in repr(alerts)


def test_a_benched_modem_sends_nothing_and_the_others_carry_the_order():
    clock, rig, alerts = rig_with(2, SIM_PIN, SIM_PIN)
    rig.emulator.modems[1].pin = "9999"             # this SIM was swapped for one with another PIN
    rig.emulator.modems[1].reboot(boot_time=0.5)
    run(clock, 10)
    assert rig.bank.slots["emu0"].driver.state == READY
    assert rig.bank.slots["emu1"].driver.state == BENCHED
    mids = []
    for k in range(4):
        rig.bank.enqueue(f"+8613900100{k:03d}", "集合", purpose="order").addCallback(mids.append)
    run(clock, 30)
    assert [rig.bank.message_state(m) for m in mids] == ["delivered"] * 4 or all(
        rig.bank.message_state(m) in ("sent", "delivered") for m in mids)
    assert rig.emulator.modems[1].submits_accepted == 0
    assert pin_entries(rig.emulator.modems[1]) == 1


def test_a_sim_already_asking_for_its_puk_gets_no_pin_at_all():
    clock, rig, alerts = rig_with(1, SIM_PIN, SIM_PIN)
    m = rig.emulator.modems[0]
    m.pin_tries = 0                                  # locked before we started
    run(clock, 60)
    assert pin_entries(m) == 0
    d = rig.bank.slots["emu0"].driver
    assert d.state == BENCHED and "PUK" in d.describe()
    assert alerts == [("emu0", "SIM PIN refused: the SIM asks for its PUK")]


def test_the_third_wrong_pin_locks_the_emulated_sim_as_a_real_one():
    clock, rig, alerts = rig_with(1, None, SIM_PIN)
    m = rig.emulator.modems[0]
    s = rig.bank.slots["emu0"].driver
    run(clock, 5)
    answers = []
    for cmd in ["AT+CPIN?", f"AT+CPIN={WRONG_SIM_PIN}", f"AT+CPIN={WRONG_SIM_PIN}", f"AT+CPIN={WRONG_SIM_PIN}",
                "AT+CPIN?", f"AT+CPIN={SIM_PIN}", "AT+CMGL=4", f"AT+CPIN=12345678,{SIM_PIN}", "AT+CPIN?"]:
        d = s.session.command(cmd, timeout=2.0)
        d.addCallbacks(lambda lines: answers.append(lines + ["OK"]), lambda f: answers.append([f.value.final]))
        run(clock, 1)
    assert answers == [["+CPIN: SIM PIN", "OK"], ["+CME ERROR: 16"], ["+CME ERROR: 16"], ["+CME ERROR: 16"],
                       ["+CPIN: SIM PUK", "OK"], ["+CME ERROR: 12"], ["+CMS ERROR: 316"], ["OK"],
                       ["+CPIN: READY", "OK"]]
    assert m.pin_tries == 3


def test_the_operator_retries_on_purpose_with_the_right_pin():
    clock, rig, alerts = rig_with(1, WRONG_SIM_PIN, SIM_PIN)
    run(clock, 30)
    d = rig.bank.slots["emu0"].driver
    assert d.state == BENCHED
    run(clock, 600)
    assert pin_entries(rig.emulator.modems[0]) == 1  # never on its own
    with LogLines() as logs:
        assert rig.bank.retry_pin("emu0", SIM_PIN)
        run(clock, 10)
    assert d.state == READY and d.describe() == "ready"
    assert pin_entries(rig.emulator.modems[0]) == 2
    assert SIM_PIN not in logs.text
    # a PIN the SIM accepted is entered again when the modem restarts (it cannot use up a try)
    rig.emulator.modems[0].reboot(boot_time=0.5)
    run(clock, 20)
    assert d.state == READY and pin_entries(rig.emulator.modems[0]) == 3


def test_an_error_message_of_a_refused_pin_names_no_pin():
    clock, rig, alerts = rig_with(1, None, SIM_PIN)
    run(clock, 5)
    failures = []
    rig.bank.slots["emu0"].driver.session.command(f"AT+CPIN={WRONG_SIM_PIN}", secret=True).addErrback(failures.append)
    run(clock, 2)
    assert failures and WRONG_SIM_PIN not in str(failures[0].value) and "AT+CPIN=****" in str(failures[0].value)


# --- `yihu modem pin PORT`: through the running gateway, or straight to the port when it is stopped ---

def _pin_route(bank, clock, pin_in_file):
    from adapters.api import Router
    from adapters.modems_api import add_modem_routes
    router = Router()
    add_modem_routes(router, bank, clock, "/etc/yihu/yihu.toml", None, read_pin=lambda path, default: pin_in_file)
    return router


def _post(router, clock, port):
    from adapters.api import ApiError, ApiRequest
    from adapters.auth import Principal
    route, params = router.match("POST", f"/modems/{port}/pin")
    assert route.scope == "admin"                    # it spends one of the SIM's PIN tries
    out = []
    route.handler(ApiRequest("POST", "", params, {}, {}, {}, Principal("engineer", "admin"))).addCallbacks(
        out.append, lambda f: out.append((f.value.status, {"error": f.value.message, **f.value.detail})) if f.check(ApiError)
        else f)
    run(clock, 40)
    return out[0]


def test_the_running_gateway_retries_with_the_pin_read_again_from_its_file():
    clock, rig, alerts = rig_with(1, WRONG_SIM_PIN, SIM_PIN)
    run(clock, 30)
    with LogLines() as logs:
        status, body = _post(_pin_route(rig.bank, clock, WRONG_SIM_PIN), clock, "emu0")   # not corrected yet
        assert (status, body["state"]) == (409, "benched") and "SIM PIN refused" in body["detail"]
        assert rig.emulator.modems[0].pin_tries == 1                        # that was a deliberate try
        status, body = _post(_pin_route(rig.bank, clock, SIM_PIN), clock, "emu0")
        assert (status, body["state"]) == (200, "ready")
        status, body = _post(_pin_route(rig.bank, clock, SIM_PIN), clock, "emu0")       # nothing to do
        assert status == 409 and "not benched" in body["error"]
        assert _post(_pin_route(rig.bank, clock, SIM_PIN), clock, "emu7")[0] == 404
    assert pin_entries(rig.emulator.modems[0]) == 3
    assert SIM_PIN not in logs.text and WRONG_SIM_PIN not in logs.text


@pytest_twisted.inlineCallbacks
def test_modem_pin_with_the_gateway_stopped_opens_the_port_and_enters_the_pin_once(tmp_path):
    import os
    import socket
    import sys

    from twisted.internet import reactor as real_reactor, utils  # the emulator on a pty, in this process

    from sms.emulator import EmulatorBank
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()                                            # nothing listens there: the gateway is stopped
    emu = EmulatorBank(real_reactor, 1, str(tmp_path / "modems"), pin=SIM_PIN)
    cfg = tmp_path / "yihu.toml"
    cfg.write_text(f'[gateway]\ndata_dir = "{tmp_path}"\n[http]\nport = {port}\n'
                   f'[sms]\nsim_pin = "{SIM_PIN}"\ncommand_timeout = 3.0\n')
    emu.start()
    try:
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ["-m", "gateway.cli", "modem", "pin", emu.paths[0], "--config", str(cfg)],
            env=dict(os.environ), path=os.getcwd())
    finally:
        emu.stop()
    out, err = out.decode(), err.decode()
    assert code == 0, err
    assert "accepted" in out and SIM_PIN not in out + err
    assert emu.modems[0].pin_ok and pin_entries(emu.modems[0]) == 1


def test_modem_pin_without_a_pin_in_the_configuration_is_a_usage_error(tmp_path, capsys):
    from gateway.cli import main
    cfg = tmp_path / "yihu.toml"
    cfg.write_text(f'[gateway]\ndata_dir = "{tmp_path}"\n[http]\nport = 1\n')
    assert main(["modem", "pin", "/dev/ttyUSB7", "--config", str(cfg)]) == 2
    assert "sms.sim_pin is not set" in capsys.readouterr().err


def test_modem_pin_through_the_running_gateway_sends_the_key_from_a_file_and_no_pin(tmp_path, capsys):
    """The gateway answers as it does for a key below admin (403); the CLI says what it needs."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from gateway.cli import main
    seen = []

    class Gateway(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.path, self.headers.get("Authorization"), self.headers.get("Content-Type"), body))
            answer = json.dumps({"error": "this needs the admin scope", "field": "Authorization"}).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = tmp_path / "yihu.toml"
        cfg.write_text(f'[gateway]\ndata_dir = "{tmp_path}"\n[http]\nport = {server.server_address[1]}\n'
                       f'[sms]\nsim_pin = "{SIM_PIN}"\n')
        key = tmp_path / "admin.key"
        key.write_text("yk_dispatch-desk-0000\n")
        assert main(["modem", "pin", "/dev/ttyUSB0", "--config", str(cfg), "--key-file", str(key)]) == 2
    finally:
        server.shutdown()
        server.server_close()
    [(path, auth, ctype, body)] = seen
    assert (path, auth, ctype, body) == ("/api/v1/modems/ttyUSB0/pin", "Bearer yk_dispatch-desk-0000",
                                         "application/json", b"{}")        # the PIN stays in the file
    err = capsys.readouterr().err
    assert "admin API key" in err and "yk_dispatch" not in err and SIM_PIN not in err
