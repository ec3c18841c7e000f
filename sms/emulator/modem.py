"""One emulated GSM modem speaking TS 27.005 in PDU mode, the way real modems do.

Bytes in (`feed`), bytes out (through the writer given to `attach`); time from the reactor.
Faithful points: echo on at power-up (ATE0 turns it off), "\\r\\n> " prompt with no line end,
"+CMGS: <mr>" after a configurable time per segment, +CMS ERROR codes (scripted, or at random:
500 unknown, 330 SMSC unknown, Huawei's 512-515), +CMTI then CMGR/CMGD, the +CMGR/+CMGL header
variants of the makes in ../shared/reference/modems, storages SM/ME/SR chosen with AT+CPMS,
+CDS status reports or reports stored in "SR" and announced with +CDSI, reports that say "still
trying" or "failed" (TS 23.040 9.2.3.15), unsolicited lines in the middle of a response and at
random points (between a +CMGR header and its PDU too; seeded), a response late after the
client's timeout, silence (hang), a reboot (echo back on, indications reset; RDY, +CFUN: 1,
+CPIN: READY, SMS Ready; SMS commands refused with 314 until SMS Ready), power loss (the port
layer makes the port disappear).

The SIM (TS 27.007 §8.3, as real SIMs do): with a `pin`, "+CPIN: SIM PIN" after every power-on
until the PIN is entered; three wrong PINs in a row (the count survives power cycles: it lives on
the SIM) lock it, after which it answers "+CPIN: SIM PUK" and takes only AT+CPIN=<puk>,<new pin>;
ten wrong PUKs block it for good ("+CME ERROR: 13", SIM failure).  A locked SIM refuses SMS
commands (+CMS ERROR 311 SIM PIN required / 316 SIM PUK required).
"""
from __future__ import annotations

import random
import re
from collections import deque

from twisted.logger import Logger

from sms.emulator.network import Network, deliver_pdus, status_report_pdu
from sms.pdu import decode_submit

log = Logger()

DEFAULT_CNMI_RANGES = "(0-2),(0,1,3),(0),(0,1),(0,1)"

# Unsolicited lines real modems send unasked (network time, SIM, signal, service state): SIMCom,
# Quectel and Huawei.  None of them is a PDU or a message.
NOISE_LINES = ("+CTZV: +32,0", "*PSUTTZ: 2026,12,1,9,30,0,\"+32\",0", "DST: 0", "+QUSIM: 1",
               "^NWTIME: 26/12/01,09:30:00+32,00", "^RSSI: 18", "^SRVST: 2", "^MODE: 5,4", "^SIMST: 1",
               "+CTZE: \"+32\",0,\"2026/12/01,09:30:00\"", "+QIND: \"csq\",20,99",
               "^HCSQ: \"LTE\",49,44,120,27", "+CIEV: 10,\"46000\",\"CMCC\",\"CMCC\",0,0")

# +CMGR header forms (<stat>, <alpha>, <length> as the makes in ../shared/reference/modems/at-sms
# write them: "no_alpha" as 07.dump, "length_only" as 38.dump, "no_stat" as 39.dump, "with_index"
# as 26.dump, "length_78" as 14.dump; the alpha quoted or named as 27.005 allows)
CMGR_HEADERS = {
    "standard": "+CMGR: {stat},,{length}",
    "no_alpha": "+CMGR: {stat},{length}",
    "quoted_alpha": '+CMGR: {stat},"",{length}',
    "named_alpha": '+CMGR: {stat},"ZHANG SAN",{length}',
    "length_only": "+CMGR: {length}",
    "no_stat": "+CMGR: ,,{length}",
    "with_index": "+CMGR: {index},{stat},,{length}",
    "length_78": "+CMGR: {stat},,78",          # as 14-24.dump: 78 announced whatever the size
}
CMGL_HEADERS = {
    "standard": "+CMGL: {index},{stat},,{length}",
    "no_alpha": "+CMGL: {index},{stat},{length}",
    "quoted_alpha": '+CMGL: {index},{stat},"",{length}',
    "named_alpha": '+CMGL: {index},{stat},"ZHANG SAN",{length}',
    "length_78": "+CMGL: {index},{stat},,78",
}
HEADER_STYLES = tuple(CMGR_HEADERS) + ("random",)

# +CMS ERROR codes drawn at random: unknown error, SMSC address unknown, Huawei's own (512+)
SUBMIT_ERROR_CODES = (500, 330, 512, 513, 514, 515)
# Status-report sequences drawn at random for a troubled segment: still trying then delivered,
# still trying then given up (handset off), a permanent failure.
TROUBLED_REPORTS = ((0x21, 0x00), (0x22, 0x62), (0x41,))
BOOT_LINES = ((0.0, "RDY"), (0.2, "+CFUN: 1"), (0.5, "+CPIN: READY"), (1.5, "SMS Ready"))
SMS_COMMANDS = ("+CMGS", "+CMGR", "+CMGL", "+CMGD", "+CPMS", "+CNMI", "+CMGF")
STORAGES = ("SM", "ME", "SR")


class EmulatedModem:
    def __init__(self, reactor, name: str, sim_number: str, network: Network, *,
                 segment_time: float = 3.0, report_delay: float = 0.5, boot_time: float = 2.0,
                 latency: float = 0.0, status_reports: bool = True, pin: str | None = None,
                 puk: str = "12345678",
                 cnmi_ranges: str = DEFAULT_CNMI_RANGES, rssi: int = 20, creg_stat: int = 1,
                 seed: int | None = None, noise_rate: float = 0.0, noise_interval: float = 0.0,
                 noise_lines: tuple[str, ...] = NOISE_LINES, header_style: str = "standard",
                 submit_error_rate: float = 0.0, submit_error_codes: tuple[int, ...] = SUBMIT_ERROR_CODES,
                 report_trouble_rate: float = 0.0, report_storage: str = "SR"):
        """Fidelity options: `noise_rate` (0-1) is the chance of an unsolicited line at each point
        of a response (before each line, between a +CMGR header and its PDU too); `noise_interval`
        > 0: one also comes on its own every so many seconds on average; `header_style`: one of
        HEADER_STYLES ("random": a form per read); `submit_error_rate`: chance that a submission
        is refused with one of `submit_error_codes`; `report_trouble_rate`: chance that a
        segment's status reports are one of TROUBLED_REPORTS.  All draws come from `seed`."""
        if header_style not in HEADER_STYLES:
            raise ValueError(f"header_style must be one of {HEADER_STYLES}")
        self.reactor = reactor
        self.name = name
        self.sim_number = sim_number
        self.network = network
        self.segment_time = segment_time
        self.report_delay = report_delay
        self.boot_time = boot_time
        self.latency = latency
        self.status_reports = status_reports
        self.pin = pin
        self.puk = puk
        self.pin_tries = 3                      # on the SIM: kept across power cycles
        self.puk_tries = 10
        self.cnmi_ranges = cnmi_ranges
        self.rssi = rssi
        self.creg_stat = creg_stat
        self.rng = random.Random(seed)
        self.noise_rate = noise_rate
        self.noise_interval = noise_interval
        self.noise_lines = noise_lines
        self.header_style = header_style
        self.submit_error_rate = submit_error_rate
        self.submit_error_codes = submit_error_codes
        self.report_trouble_rate = report_trouble_rate
        self.report_storage = report_storage
        self.noise_sent = 0
        # storages by name: index → (stat, pdu hex, tpdu length); `sim` is "SM"
        self.storages: dict[str, dict[int, tuple[int, str, int]]] = {m: {} for m in STORAGES}
        self.sim = self.storages["SM"]
        self.sim_size = 30
        self._report_script: deque[tuple[int, ...]] = deque()
        self._noise_call = None
        self._write = None
        self._buf = b""
        self._pdu_len: int | None = None       # in PDU entry after AT+CMGS=<n>
        self._calls: list = []
        self._mr = 0
        self._inbound_ref = 0
        # faults
        self._fail_codes: deque[int] = deque()
        self._extra_delay = 0.0
        self._inside: list[tuple[str, str]] = []
        self._network_gets_inflight = True
        self.hung = False
        self.powered = True
        self.submits_accepted = 0
        self.commands_seen: list[str] = []
        self._power_on_state()

    # --- link -----------------------------------------------------------------------------------
    def attach(self, write):
        self._write = write

    def detach(self):
        self._write = None

    def _out(self, data: bytes):
        if self._write is not None and self.powered and not self.hung:
            self._write(data)

    def _later(self, delay: float, fn, *args):
        call = self.reactor.callLater(delay, self._run_call, fn, args)
        self._calls.append(call)
        return call

    def _run_call(self, fn, args):
        self._calls = [c for c in self._calls if c.active()]
        fn(*args)

    def _cancel_all(self):
        for c in self._calls:
            if c.active():
                c.cancel()
        self._calls = []

    def _power_on_state(self):
        self.echo = True
        self.cmee = 0
        self.cmgf = 0
        self.cnmi = (0, 0, 0, 0, 0)
        self.pin_ok = self.pin is None
        self.sms_ready = True
        self.mems = ["SM", "SM", "SM"]          # read/delete, write/send, receive
        self._pdu_len = None
        self._buf = b""
        self._inflight = None

    # --- scripted traffic and faults (the public API) ------------------------------------------
    def receive_sms(self, sender: str, text: str, ref_bits: int = 8) -> list[int]:
        """A phone sends this text to our SIM: stored, then announced with +CMTI."""
        self._inbound_ref = (self._inbound_ref + 1) % 256
        indexes = []
        for pdu_hex, length in deliver_pdus(sender, text, self.reactor.seconds(), ref=self._inbound_ref,
                                            ref_bits=ref_bits):
            indexes.append(self.store_pdu(pdu_hex, length))
        return indexes

    def store_pdu(self, pdu_hex: str, length: int, stat: int = 0) -> int:
        """Put a PDU (possibly malformed, from the reference dumps) in the receive storage and
        announce it."""
        mem = self.mems[2]
        store = self.storages[mem]
        idx = next(i for i in range(self.sim_size) if i not in store)
        store[idx] = (stat, pdu_hex, length)
        if self.cnmi[0] in (1, 2, 3) and self.cnmi[1] == 1:
            self.unsolicited(f'+CMTI: "{mem}",{idx}')
        return idx

    def script_reports(self, *sequences):
        """The status reports of the next submitted segments, one sequence of TP-Status values
        per segment, sent `report_delay` apart: e.g. (0x21, 0x62) "handset busy, still trying",
        then "no response, given up"; (0x41,) incompatible destination."""
        self._report_script.extend(tuple(s) for s in sequences)

    def noise(self) -> str:
        """One unsolicited line of the kinds real modems send unasked."""
        self.noise_sent += 1
        return self.rng.choice(self.noise_lines)

    def unsolicited(self, line: str):
        self._out(b"\r\n" + line.encode("latin-1") + b"\r\n")

    def send_raw(self, data: bytes):
        """Whatever bytes a broken modem might send (garbage tests)."""
        self._out(data)

    def fail_next_submits(self, code: int, count: int = 1):
        self._fail_codes.extend([code] * count)

    def delay_next_response(self, extra: float):
        """The next answer comes `extra` seconds late (after the client's timeout)."""
        self._extra_delay = extra

    def inject_inside_next_response(self, command_prefix: str, line: str):
        """Put an unsolicited line between the information lines and the final result of the
        next command starting with command_prefix (e.g. +CMTI inside the +CSQ answer)."""
        self._inside.append((command_prefix.upper(), line))

    def hang(self, duration: float | None = None, network_gets_inflight: bool = True):
        """Silent: no answers, input ignored.  A segment in flight reaches the network or not."""
        self.hung = True
        self._network_gets_inflight = network_gets_inflight
        if not network_gets_inflight:
            self._drop_inflight()
        if duration is not None:
            self.reactor.callLater(duration, self.unhang)

    def unhang(self):
        self.hung = False
        self._buf = b""
        self._pdu_len = None

    def power_off(self, network_gets_inflight: bool = False):
        """Power lost: everything scheduled (answers, boot lines, noise) is cancelled."""
        if network_gets_inflight and self._inflight is not None:
            self._deliver_inflight()
        self._drop_inflight()
        self._cancel_all()
        self.powered = False

    def power_on(self, boot_time: float | None = None):
        self._cancel_all()
        self.powered = False
        self.hung = False
        self._power_on_state()
        self.reactor.callLater(self.boot_time if boot_time is None else boot_time, self._booted)

    def reboot(self, boot_time: float | None = None, network_gets_inflight: bool = False):
        self.power_off(network_gets_inflight)
        self.power_on(boot_time)

    def _booted(self):
        """Power-up as SIMCom/Quectel modems announce it; SMS commands wait for "SMS Ready"."""
        self.powered = True
        self.sms_ready = False
        for delay, line in BOOT_LINES:
            self._later(delay, self._boot_line, line)
        self._arm_noise()

    def _boot_line(self, line: str):
        if line == "+CPIN: READY":
            # what the SIM says at power-on: a PIN-locked SIM asks for it (27.007 §8.3)
            state = self.sim_state
            line = "+CPIN: NOT READY" if state == "BLOCKED" else f"+CPIN: {state}"
        if line == "SMS Ready":
            self.sms_ready = True
        self.unsolicited(line)

    def _arm_noise(self):
        if self.noise_interval > 0 and (self._noise_call is None or not self._noise_call.active()):
            self._noise_call = self._later(self.rng.expovariate(1.0 / self.noise_interval), self._noise_tick)

    def _noise_tick(self):
        if self._pdu_len is None:          # not in the middle of the "> " PDU entry
            self.unsolicited(self.noise())
        self._arm_noise()

    def start_noise(self):
        """Unsolicited lines on their own, every `noise_interval` seconds on average."""
        self._arm_noise()

    def stop_noise(self):
        c, self._noise_call = self._noise_call, None
        if c is not None and c.active():
            c.cancel()

    # --- the SIM --------------------------------------------------------------------------------
    @property
    def sim_state(self) -> str:
        if self.puk_tries <= 0:
            return "BLOCKED"
        if self.pin_tries <= 0:
            return "SIM PUK"
        return "READY" if self.pin_ok else "SIM PIN"

    def _cpin_query(self, cmd: str):
        state = self.sim_state
        if state == "BLOCKED":
            self._error("CME", 13, cmd)           # SIM failure
        else:
            self._respond([f"+CPIN: {state}"], "OK", cmd)

    def _cpin_enter(self, args: str, cmd: str):
        given = [a.strip().strip('"') for a in args.split(",")]
        state = self.sim_state
        if state == "BLOCKED":
            self._error("CME", 13, cmd)
        elif state == "READY":
            self._error("CME", 3, cmd)            # operation not allowed: nothing to unlock
        elif state == "SIM PIN":
            if len(given) != 1:
                self._error("CME", 3, cmd)
            elif given[0] == self.pin:
                self.pin_tries, self.pin_ok = 3, True
                self._final("OK", cmd)
            else:
                self.pin_tries -= 1
                self._error("CME", 16, cmd)       # incorrect password
        elif len(given) != 2:
            self._error("CME", 12, cmd)           # SIM PUK required
        elif given[0] == self.puk and given[1]:
            self.pin, self.pin_tries, self.puk_tries, self.pin_ok = given[1], 3, 10, True
            self._final("OK", cmd)
        else:
            self.puk_tries -= 1
            self._error("CME", 16, cmd)

    def _sim_locked(self, cmd: str) -> bool:
        """SMS commands on a locked SIM: +CMS ERROR 311 (SIM PIN required) / 316 (PUK)."""
        if self.pin_ok:
            return False
        self._error("CMS", 311 if self.sim_state == "SIM PIN" else 316, cmd)
        return True

    # --- input ----------------------------------------------------------------------------------
    def feed(self, data: bytes):
        if not self.powered or self.hung:
            return
        self._buf += data
        while self._buf:
            if self._pdu_len is not None:
                end = min([i for i in (self._buf.find(b"\x1a"), self._buf.find(b"\x1b")) if i >= 0], default=-1)
                if end < 0:
                    if self.echo:
                        self._out(self._buf)
                        self._buf_echoed = True
                    return
                body, term, self._buf = self._buf[:end], self._buf[end:end + 1], self._buf[end + 1:]
                length, self._pdu_len = self._pdu_len, None
                if term == b"\x1b":
                    self._final("OK")       # the command is abandoned
                    continue
                self._submit(body.decode("latin-1").strip(), length)
                continue
            i = self._buf.find(b"\r")
            if i < 0:
                if len(self._buf) > 1024:
                    self._buf = b""
                return
            raw, self._buf = self._buf[:i], self._buf[i + 1:]
            if self.echo:
                self._out(raw + b"\r")
            line = raw.replace(b"\x1b", b"").strip(b"\n \x1a").decode("latin-1")   # ESC outside a prompt: ignored
            if line:
                self._command(line)

    # --- responses ------------------------------------------------------------------------------
    def _respond(self, info: list[str], final: str, cmd: str = "", delay: float | None = None):
        d = self.latency if delay is None else delay
        if self._extra_delay:
            d += self._extra_delay
            self._extra_delay = 0.0
        inside = None
        for k, (prefix, line) in enumerate(self._inside):
            if cmd.upper().startswith(prefix):
                inside = line
                del self._inside[k]
                break
        lines = []
        for ln in info + [None]:
            if self.noise_rate and self.rng.random() < self.noise_rate:
                lines.append(self.noise())       # before any line: between a header and its PDU too
            if ln is not None:
                lines.append(ln)
        if inside is not None:
            lines.append(inside)
        lines.append(final)
        data = b"".join(b"\r\n" + ln.encode("latin-1") + b"\r\n" for ln in lines)
        if d <= 0:
            self._out(data)
        else:
            self._later(d, self._out, data)

    def _final(self, final: str, cmd: str = ""):
        self._respond([], final, cmd)

    def _error(self, kind: str, code: int, cmd: str = ""):
        self._respond([], f"+{kind} ERROR: {code}" if self.cmee else "ERROR", cmd)

    def _command(self, line: str):
        self.commands_seen.append(line if not line.upper().startswith("AT+CPIN=") else "AT+CPIN=****")
        u = line.upper()
        if not u.startswith("AT"):
            self._final("ERROR")
            return
        body = u[2:]
        if not self.sms_ready and body.startswith(SMS_COMMANDS):
            self._error("CMS", 314, u)          # SIM busy: still booting
            return
        if body in ("", "Z", "&F"):
            if body:
                self.echo = True
                self.cnmi = (0, 0, 0, 0, 0)
            self._final("OK", u)
        elif body in ("E0", "E1", "E"):
            self.echo = body == "E1"
            self._final("OK", u)
        elif body.startswith("+CMEE="):
            self.cmee = int(body[6:] or 0)
            self._final("OK", u)
        elif body == "+CPIN?":
            self._cpin_query(u)
        elif body.startswith("+CPIN="):
            self._cpin_enter(line[8:], u)
        elif body.startswith(("+CPMS=", "+CMGR=", "+CMGL=", "+CMGD=")) and self._sim_locked(u):
            pass
        elif body.startswith("+CMGF="):
            self.cmgf = int(body[6:] or 0)
            self._final("OK", u)
        elif body == "+CNMI=?":
            self._respond([f"+CNMI: {self.cnmi_ranges}"], "OK", u)
        elif body.startswith("+CNMI="):
            self._set_cnmi(body[6:], u)
        elif body == "+CPMS=?":
            self._respond(['+CPMS: ("SM","ME","SR"),("SM","ME"),("SM","ME")'], "OK", u)
        elif body == "+CPMS?":
            self._respond(["+CPMS: " + ",".join(f'"{m}",{len(self.storages[m])},{self.sim_size}' for m in self.mems)],
                          "OK", u)
        elif body.startswith("+CPMS="):
            self._set_cpms(body[6:], u)
        elif body == "+CSQ":
            self._respond([f"+CSQ: {self.rssi},99"], "OK", u)
        elif body == "+CREG?":
            self._respond([f"+CREG: 0,{self.creg_stat}"], "OK", u)
        elif body.startswith("+CREG="):
            self._final("OK", u)
        elif body.startswith("+CMGS="):
            if self._sim_locked(u):
                return
            if self.cmgf != 0:
                self._error("CMS", 302, u)
                return
            self._pdu_len = int(body[6:] or 0)
            self._out(b"\r\n> ")
        elif body.startswith("+CMGR="):
            store = self.storages[self.mems[0]]
            idx = _int(body[6:])
            if idx not in store:
                self._error("CMS", 321, u)
                return
            stat, pdu, length = store[idx]
            if stat == 0:
                store[idx] = (1, pdu, length)
            self._respond([self._header(CMGR_HEADERS, index=idx, stat=stat, length=length), pdu], "OK", u)
        elif body.startswith("+CMGD="):
            idx = _int(body[6:].split(",")[0])
            if idx is None:
                self._error("CMS", 304, u)
                return
            self.storages[self.mems[0]].pop(idx, None)
            self._final("OK", u)
        elif body.startswith("+CMGL="):
            want = _int(body[6:] or "4")
            store = self.storages[self.mems[0]]
            info = []
            for idx in sorted(store):
                stat, pdu, length = store[idx]
                if want == 4 or stat == want:
                    info += [self._header(CMGL_HEADERS, index=idx, stat=stat, length=length), pdu]
                    if stat == 0:
                        store[idx] = (1, pdu, length)
            self._respond(info, "OK", u)
        elif body.startswith(("+CGMI", "+CGMM", "+CGMR", "I")):
            self._respond(["Yihu emulated modem"], "OK", u)
        else:
            self._final("ERROR", u)

    def _header(self, forms: dict, **fields) -> str:
        style = self.header_style
        if style == "random":
            style = self.rng.choice(list(forms))
        return forms.get(style, forms["standard"]).format(**fields)

    def _set_cpms(self, args: str, cmd: str):
        names = [a.strip().strip('"').upper() for a in args.split(",")]
        if not names or len(names) > 3 or any(n not in STORAGES for n in names) or \
                any(n == "SR" for n in names[1:]):
            self._error("CMS", 302, cmd)          # operation not allowed (SR is read/delete only)
            return
        self.mems[:len(names)] = names
        self._respond(["+CPMS: " + ",".join(f"{len(self.storages[m])},{self.sim_size}" for m in self.mems)],
                      "OK", cmd)

    def _set_cnmi(self, args: str, cmd: str):
        ranges = [set() for _ in range(5)]
        for k, g in enumerate(re.findall(r"\(([^)]*)\)", self.cnmi_ranges)[:5]):
            for item in g.split(","):
                if "-" in item:
                    a, b = item.split("-")
                    ranges[k].update(range(int(a), int(b) + 1))
                elif item.strip():
                    ranges[k].add(int(item))
        try:
            vals = [int(v) for v in args.split(",")]
        except ValueError:
            self._error("CMS", 303, cmd)
            return
        vals = (vals + [0] * 5)[:5]
        if any(v not in ranges[k] for k, v in enumerate(vals) if ranges[k]):
            self._error("CMS", 303, cmd)
            return
        self.cnmi = tuple(vals)
        self._final("OK", cmd)

    # --- sending ---------------------------------------------------------------------------------
    def _submit(self, pdu_hex: str, length: int):
        try:
            raw = bytes.fromhex(pdu_hex)
            smsc_len = raw[0]
            if len(raw) - 1 - smsc_len != length:
                raise ValueError("length")
            decode_submit(pdu_hex)
        except (ValueError, IndexError):
            self._error("CMS", 304, "AT+CMGS")
            return
        code = None
        if self._fail_codes:
            code = self._fail_codes.popleft()
        elif self.submit_error_rate and self.rng.random() < self.submit_error_rate:
            code = self.rng.choice(self.submit_error_codes)
        if code is not None:
            self._later(self.segment_time, self._respond, [], f"+CMS ERROR: {code}", "AT+CMGS", 0)
            return
        self._inflight = pdu_hex
        self._inflight_call = self._later(self.segment_time, self._submitted, pdu_hex)

    def _deliver_inflight(self):
        pdu_hex, self._inflight = self._inflight, None
        if pdu_hex is not None:
            self._to_network(pdu_hex)

    def _drop_inflight(self):
        self._inflight = None

    def _to_network(self, pdu_hex: str) -> int:
        self._mr = (self._mr + 1) % 256
        if self._report_script:
            statuses = self._report_script.popleft()
        elif self.report_trouble_rate and self.rng.random() < self.report_trouble_rate:
            statuses = self.rng.choice(TROUBLED_REPORTS)
        else:
            statuses = (0x00,)
        # the handset gets it only when the SC's last word is "completed" (0x00-0x1F)
        d = self.network.submit(self.sim_number, pdu_hex, self.reactor.seconds(), delivered=statuses[-1] < 0x20)
        self.submits_accepted += 1
        if d["status_report"] and self.status_reports:
            mr = self._mr
            for k, st in enumerate(statuses, 1):
                self.reactor.callLater(self.report_delay * k, self._status_report, mr, d["phone"], st)
        return self._mr

    def _submitted(self, pdu_hex: str):
        if self._inflight != pdu_hex:
            return
        self._inflight = None
        if self.hung:
            if self._network_gets_inflight:
                self._to_network(pdu_hex)
            return
        mr = self._to_network(pdu_hex)
        self._respond([f"+CMGS: {mr}"], "OK", "AT+CMGS", 0 if not self._extra_delay else None)

    def _status_report(self, mr: int, phone: str, status: int = 0x00):
        if not self.powered or self.cnmi[3] == 0:
            return
        pdu, length = status_report_pdu(mr, phone, self.reactor.seconds(), status)
        if self.cnmi[3] == 1:
            self._out(f"\r\n+CDS: {length}\r\n{pdu}\r\n".encode("ascii"))
        else:
            mem = self.report_storage
            store = self.storages[mem]
            idx = next((i for i in range(self.sim_size) if i not in store), None)
            if idx is not None:
                store[idx] = (1, pdu, length)
                self.unsolicited(f'+CDSI: "{mem}",{idx}')


def _int(s: str) -> int | None:
    try:
        return int(s)
    except (TypeError, ValueError):
        return None
