"""A modem bank wired to emulated modems, for drills, tests and the bench.

`in_process(reactor, n, store, config)` links the emulators in-process (works with a Clock);
`on_ptys(reactor, n, directory, store, config)` puts them on real pseudo-terminals and drives them
through the real serial code.
"""
from __future__ import annotations

from dataclasses import dataclass

from sms.bank import SmsBank, serial_opener
from sms.config import SmsConfig
from sms.emulator import EmulatorBank


@dataclass
class Rig:
    emulator: EmulatorBank
    bank: SmsBank

    def phone_copies(self, phone: str, text: str) -> int:
        return self.emulator.network.complete_messages(phone)[text]

    def stop(self):
        self.bank.stop()
        self.emulator.stop()


def in_process(reactor, n: int, store, config: SmsConfig | None = None, *, sink=None, **modem_options) -> Rig:
    emu = EmulatorBank(reactor, n, loopback=True, **modem_options)
    emu.start()
    bank = SmsBank(reactor, store, config or SmsConfig(), {m.name: emu.opener(i) for i, m in enumerate(emu.modems)},
                   sink=sink)
    return Rig(emu, bank)


def on_ptys(reactor, n: int, directory: str, store, config: SmsConfig | None = None, *, sink=None,
            **modem_options) -> Rig:
    emu = EmulatorBank(reactor, n, directory, **modem_options)
    emu.start()
    config = config or SmsConfig()
    bank = SmsBank(reactor, store, config, {p: serial_opener(reactor, p, config.baudrate) for p in emu.paths},
                   sink=sink)
    return Rig(emu, bank)
