"""A bank of emulated GSM modems (TS 27.005, PDU mode) for tests, drills and the embedded default.

    bank = EmulatorBank(reactor, count=4, directory="/run/yihu/modems", segment_time=3.0)
    bank.start()                 # bank.paths: serial ports to give the gateway
    bank.modems[0].receive_sms("+8613900000001", "0427 到达")
    bank.unplug(1); bank.replug(1)
    bank.network.complete_messages("+8613800000001")
    bank.stop()

`loopback=True` links the modems in-process (no ptys) for Clock-driven tests: give the driver
`bank.opener(i)` instead of a serial path.
"""
from __future__ import annotations

import os

from sms.emulator.modem import EmulatedModem
from sms.emulator.network import Network
from sms.emulator.ports import LoopbackPort, PtyPort

__all__ = ["EmulatorBank", "EmulatedModem", "Network"]


class EmulatorBank:
    def __init__(self, reactor, count: int, directory: str | None = None, *, loopback: bool = False,
                 sim_prefix: str = "+8613900000", journal=None, **modem_options):
        self.reactor = reactor
        self.network = Network(journal)
        self.loopback = loopback
        self.directory = directory
        self.modems: list[EmulatedModem] = []
        self.ports: list = []
        seed = modem_options.pop("seed", None)
        for i in range(count):
            m = EmulatedModem(reactor, f"emu{i}", f"{sim_prefix}{i:03d}", self.network,
                              seed=None if seed is None else seed + i, **modem_options)
            self.modems.append(m)
            if loopback:
                self.ports.append(LoopbackPort(reactor, m))
            else:
                if directory is None:
                    raise ValueError("a directory for the port links is needed")
                self.ports.append(PtyPort(reactor, m, os.path.join(directory, f"modem{i}")))

    @property
    def paths(self) -> list[str]:
        return [p.path for p in self.ports] if not self.loopback else [m.name for m in self.modems]

    def opener(self, i: int):
        return self.ports[i].open

    def start(self):
        if self.directory:
            os.makedirs(self.directory, exist_ok=True)
        for p in self.ports:
            p.plug()
        for m in self.modems:
            m.start_noise()

    def stop(self):
        for m in self.modems:
            m.stop_noise()
        for p in self.ports:
            p.unplug()

    def unplug(self, i: int, network_gets_inflight: bool = False):
        """The modem drops off USB: power lost, port gone."""
        self.modems[i].power_off(network_gets_inflight)
        self.ports[i].unplug()

    def replug(self, i: int, boot_time: float | None = None):
        self.modems[i].power_on(boot_time)
        self.ports[i].plug()
