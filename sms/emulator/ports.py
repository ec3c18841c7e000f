"""Linking emulated modems to clients: real pseudo-terminals, or an in-process loopback.

A pty port has a stable path (a symlink, like /dev/serial/by-id/...) so that a client reopens
the same name after the modem was unplugged and plugged in again (it gets a new pty).
"""
from __future__ import annotations

import os
import tty

from twisted.internet import abstract, fdesc
from twisted.logger import Logger

log = Logger()


class _Master(abstract.FileDescriptor):
    """The emulator's end of a pty, read through the reactor."""

    def __init__(self, reactor, fd: int, on_data):
        super().__init__(reactor)
        self.fd = fd
        self.on_data = on_data
        fdesc.setNonBlocking(fd)
        self.connected = 1

    def fileno(self):
        return self.fd

    def doRead(self):
        return fdesc.readFromFD(self.fd, self.on_data)

    def writeSomeData(self, data):
        return fdesc.writeToFD(self.fd, data)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        fd, self.fd = self.fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


class PtyPort:
    """Puts an EmulatedModem on a pseudo-terminal reachable at `path` (a symlink)."""

    def __init__(self, reactor, modem, path: str):
        self.reactor = reactor
        self.modem = modem
        self.path = path
        self._master: _Master | None = None
        self._slave_fd = -1
        self.tty_name: str | None = None

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def plug(self):
        if self._master is not None:
            return
        master, slave = os.openpty()
        tty.setraw(slave)
        self._slave_fd = slave        # kept open so that a client closing does not EIO the master
        self.tty_name = os.ttyname(slave)
        self._master = _Master(self.reactor, master, self.modem.feed)
        self._master.startReading()
        tmp = self.path + ".new"
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(self.tty_name, tmp)
        os.replace(tmp, self.path)
        self.modem.attach(self._master.write)

    def unplug(self):
        """The USB device vanishes: the path is gone and the client's reads fail."""
        self.modem.detach()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        m, self._master = self._master, None
        if m is not None:
            m.stopReading()
            m.stopWriting()
            fd, m.fd = m.fd, -1
            if fd >= 0:
                os.close(fd)
        if self._slave_fd >= 0:
            os.close(self._slave_fd)
            self._slave_fd = -1


class LoopbackTransport:
    """In-process link for Clock-driven tests: bytes cross in a later reactor turn, as on a wire."""

    def __init__(self, reactor, modem, protocol):
        self.reactor = reactor
        self.modem = modem
        self.protocol = protocol
        self.connected = True
        modem.attach(self._to_client)

    def _to_client(self, data: bytes):
        if self.connected:
            self.reactor.callLater(0, self._deliver, data)

    def _deliver(self, data):
        if self.connected:
            self.protocol.dataReceived(data)

    def write(self, data: bytes):
        if self.connected:
            self.reactor.callLater(0, self._feed, data)

    def _feed(self, data):
        if self.connected:
            self.modem.feed(data)

    def loseConnection(self):
        self.drop()

    def drop(self, reason=None):
        """The port goes away (unplug) or the client closes it."""
        if not self.connected:
            return
        self.connected = False
        self.modem.detach()
        self.reactor.callLater(0, self.protocol.connectionLost, reason)


class LoopbackPort:
    """A plug point for the loopback link: the driver's opener calls `open(protocol)`."""

    def __init__(self, reactor, modem):
        self.reactor = reactor
        self.modem = modem
        self.plugged = True
        self.transport: LoopbackTransport | None = None

    def open(self, protocol):
        if not self.plugged:
            raise FileNotFoundError(f"{self.modem.name}: no such device")
        if self.transport is not None and self.transport.connected:
            self.transport.drop()
        t = self.transport = LoopbackTransport(self.reactor, self.modem, protocol)
        protocol.makeConnection(t)
        return t

    def unplug(self):
        self.plugged = False
        if self.transport is not None:
            self.transport.drop()

    def plug(self):
        self.plugged = True
