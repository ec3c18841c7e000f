"""API routes for the modem bank's operator actions.

    POST /modems/{port}/pin   send the SIM PIN again on one modem (`yihu modem pin PORT`)

The request carries no PIN: the gateway reads `sms.sim_pin` again from its configuration file,
which the operator has corrected (see sms/pin.py).  The answer waits until the modem is ready
or benched again, up to `wait_s`.
"""
from __future__ import annotations

from urllib.parse import unquote

from twisted.internet import defer, task

from adapters.api import ApiError, Router
from sms.modem import BENCHED, READY
from sms.pin import configured_pin


def add_modem_routes(router: Router, bank, clock, config_path: str | None, default_pin: str | None,
                     wait_s: float = 30.0, read_pin=configured_pin) -> None:

    @defer.inlineCallbacks
    def pin(req):
        name = unquote(req.params["port"])
        slot = bank.slots.get(name) or next((s for n, s in bank.slots.items() if n.rsplit("/", 1)[-1] == name), None)
        if slot is None:
            raise ApiError(404, f"no modem {name}", modems=sorted(bank.slots))
        try:
            value = read_pin(config_path, default_pin)
        except Exception as e:  # noqa: BLE001 - a broken file: say so, never echo its content
            raise ApiError(409, f"cannot read sms.sim_pin from {config_path}: {e.__class__.__name__}") from None
        if not value:
            raise ApiError(409, f"sms.sim_pin is not set in {config_path or 'the configuration'}")
        driver = slot.driver
        if not driver.pin_refused:
            raise ApiError(409, f"modem {name} is not benched for its SIM PIN ({driver.describe()}); nothing sent")
        driver.retry_pin(value)
        waited = 0.0
        while waited < wait_s:
            yield task.deferLater(clock, 0.5, lambda: None)
            waited += 0.5
            if driver.state in (READY, BENCHED):
                break
        return (200 if driver.state == READY else 409), {"modem": driver.name, "state": driver.state,
                                                          "detail": driver.describe()}

    router.add("POST", "/modems/{port}/pin", pin)
