"""`yihu modem pin PORT`: the operator's deliberate SIM PIN retry, after the gateway refused to
send a PIN again (sms/modem.py: at most once per start).

The PIN lives in one place, `sms.sim_pin` in the configuration file: the operator corrects it
there first, then runs the command.  So no PIN crosses a socket or a command line (argv shows in
`ps` and shell history), and the next start sends the corrected PIN, not the wrong one again.

A serial port has one owner:
- the gateway is running: it holds the port, so the CLI asks it over its HTTP port
  (POST /api/v1/modems/{port}/pin, no body).  The gateway reads `sms.sim_pin` again from its
  configuration file and sends it once on that modem, then answers with the modem's state.
- the gateway is stopped (its HTTP port refuses): the CLI opens the serial port itself, asks
  AT+CPIN? and enters the PIN once.  The SIM stays unlocked until the modem loses power, so the
  next start finds "+CPIN: READY".
"""
from __future__ import annotations

from twisted.internet import defer

from sms.at import AtError, ATSession
from sms.modem import PIN_REFUSED, sim_status


class PinRefused(Exception):
    """The SIM did not take the PIN (or wants its PUK); the message names no PIN."""


@defer.inlineCallbacks
def enter_pin_once(session: ATSession, pin: str, timeout: float = 10.0):
    """On a port nobody else holds: "already unlocked" or "accepted"; PinRefused otherwise."""
    yield session.command("AT", timeout=timeout)
    yield session.command("ATE0", timeout=timeout)
    yield session.command("AT+CMEE=1", timeout=timeout)
    state = sim_status((yield session.command("AT+CPIN?", timeout=timeout)))
    if state == "READY":
        return "already unlocked"
    if state != "SIM PIN":
        raise PinRefused(f"{PIN_REFUSED}: the SIM asks for {state or 'nothing known'}, not its PIN"
                         + ("; it needs the operator's PUK" if state == "SIM PUK" else ""))
    try:
        yield session.command(f"AT+CPIN={pin}", timeout=timeout, secret=True)
    except AtError as e:
        raise PinRefused(f"{PIN_REFUSED}: {e.final}") from None
    return "accepted"


def configured_pin(config_path: str | None, fallback: str | None) -> str | None:
    """`sms.sim_pin` as the configuration file says now (the operator may have corrected it)."""
    if not config_path:
        return fallback
    from gateway.config import load_config
    return load_config(config_path).sms.sim_pin or None
