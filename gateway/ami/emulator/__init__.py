"""The AMI server emulator: tests, drills, and the embedded default when no Asterisk is set.

    em = AmiEmulator(reactor, users={"gateway": {"secret": "s3cret", "read": "all", "write": "all"}})
    em.listen(5038, "127.0.0.1")
    em.play(HotlineCall(line="119", caller="13905769876", outcome="abandoned_queue"))

Run it alone: ``python -m gateway.ami.emulator --port 5038``.
"""
from gateway.ami.emulator.scenarios import HOTLINE_OUTCOMES, HotlineCall, OrderCall
from gateway.ami.emulator.server import RIG_USER, AmiEmulator, default_originate_outcome
from gateway.ami.emulator.transcript import Segment, Transcript

__all__ = ["AmiEmulator", "HotlineCall", "OrderCall", "Transcript", "Segment", "RIG_USER",
           "HOTLINE_OUTCOMES", "default_originate_outcome"]
