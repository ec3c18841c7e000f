"""API routes for the modem bank's operator actions.

    POST /modems/{port}/pin   send the SIM PIN again on one modem (`yihu modem pin PORT`)

The request carries no PIN (its body is `{}`; a field in it is refused): the gateway reads
`sms.sim_pin` again from its configuration file, which the operator has corrected (see
sms/pin.py).  The answer waits until the modem is ready or benched again, up to `wait_s`.

Scope admin, not dispatch: the retry changes the state of a part of the gateway (it spends one
of the SIM's three PIN tries, and a third refusal locks the SIM until someone brings its PUK),
so it belongs to the engineers' keys, like the roster import, not to dispatch software.
"""
from __future__ import annotations

from urllib.parse import unquote

from twisted.internet import defer, task
from twisted.logger import Logger

from adapters.api import ApiError, Router
from adapters.contract import Response, text
from sms.modem import BENCHED, READY
from sms.pin import configured_pin


log = Logger()

PORT = text("port", 200, "the modem's serial port as in sms.ports, or its last path component (ttyUSB0)",
            required=True, not_blank=True)
ANSWER = {"type": "object", "required": ["modem", "state", "detail"],
          "properties": {"modem": {"type": "string"}, "state": {"type": "string"}, "detail": {"type": "string"}}}


def add_modem_routes(router: Router, bank, clock, config_path: str | None, default_pin: str | None,
                     wait_s: float = 30.0, read_pin=configured_pin) -> None:

    @defer.inlineCallbacks
    def pin(req):
        name = unquote(req.params["port"])
        slot = bank.slots.get(name) or next((s for n, s in bank.slots.items() if n.rsplit("/", 1)[-1] == name), None)
        if slot is None:
            raise ApiError(404, f"no modem {name}", field="port", modems=sorted(bank.slots))
        try:
            value = read_pin(config_path, default_pin)
        except Exception as e:  # noqa: BLE001 - a broken file: say so, never echo its content
            raise ApiError(409, f"cannot read sms.sim_pin from {config_path}: {e.__class__.__name__}",
                           field="sms.sim_pin") from None
        if not value:
            raise ApiError(409, f"sms.sim_pin is not set in {config_path or 'the configuration'}", field="sms.sim_pin")
        driver = slot.driver
        if not driver.pin_refused:
            raise ApiError(409, f"modem {name} is not benched for its SIM PIN ({driver.describe()}); nothing sent",
                           field="port")
        log.info("{modem}: SIM PIN sent once more, asked by {actor}", modem=driver.name, actor=req.actor)
        driver.retry_pin(value)
        waited = 0.0
        while waited < wait_s:
            yield task.deferLater(clock, 0.5, lambda: None)
            waited += 0.5
            if driver.state in (READY, BENCHED):
                break
        answer = {"modem": driver.name, "state": driver.state, "detail": driver.describe()}
        if driver.state != READY:
            raise ApiError(409, f"modem {driver.name}: {answer['detail']}", field="port", **answer)
        return 200, answer

    router.add("POST", "/modems/{port}/pin", pin, scope="admin", params=(PORT,), body=(), errors=(409,),
               summary="send sms.sim_pin (read again from the configuration file) once more on a modem benched "
               "for its SIM PIN; 200 ready, 409 refused again or nothing to do",
               ok={200: Response("the modem is ready", ANSWER)})
