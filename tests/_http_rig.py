"""A gateway's HTTP face on the real reactor over loopback: every route the wiring mounts (orders,
hotline, teams, directory import, board, events, OpenAPI), keys of each scope, a roster and a
hotline call, without the emulators the full wiring starts."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import treq
from sqlalchemy import insert
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from adapters.apikeys import create_key_tx
from adapters.board import BoardResource
from adapters.forms_api import add_form_routes
from adapters.hotline_api import add_hotline_routes
from adapters.modems_api import add_modem_routes
from adapters.orders_api import add_order_routes
from gateway.config import load_config
from gateway.directory.roster import read_roster
from gateway.directory.store import import_roster
from gateway.orders.service import OrderService
from gateway.service import build_gateway
from gateway.storage.schema import hotline_calls
from tests.secrets import SIM_PIN, watch_also

ROSTER = Path(__file__).resolve().parent.parent / "deploy" / "examples" / "roster.yaml"
CALLER = "+8613905761234"
CALL_ID = "1764482000.12"


@dataclass
class Rig:
    gw: object
    root: str                     # http://127.0.0.1:PORT
    keys: dict                    # scope -> key
    bus: object

    @property
    def api(self) -> str:
        return f"{self.root}/api/v1"

    @property
    def db(self):
        return self.gw.database

    @inlineCallbacks
    def call(self, method, path, body=None, key=None, headers=None, raw=None, **kw):
        """(status, JSON body or text, response)."""
        h = dict(headers or {})
        if key:
            h["Authorization"] = f"Bearer {key}"
        url = path if path.startswith("http") else f"{self.root}{path}"
        if raw is not None:
            resp = yield treq.request(method, url, data=raw, headers=h, **kw)
        elif body is not None:
            resp = yield treq.request(method, url, json=body, headers=h, **kw)
        else:
            resp = yield treq.request(method, url, headers=h, **kw)
        content = yield resp.content()
        try:
            parsed = json.loads(content)
        except ValueError:
            parsed = content.decode("utf-8", "replace")
        return resp.code, parsed, resp

    @inlineCallbacks
    def stop(self):
        yield self.gw.stopService()
        self.gw.database.stop()


class BenchedModem:
    """A modem benched for its SIM PIN, as the modem route sees one (the SIM itself is tested in
    tests/test_sms_sim_pin.py); the PIN retry makes it ready."""
    name, state, pin_refused = "emu0", "benched", True

    def describe(self):
        return "benched (SIM PIN refused: +CME ERROR: 16)" if self.pin_refused else "ready"

    def retry_pin(self, pin):
        self.state, self.pin_refused = "ready", False


@inlineCallbacks
def start_rig(url: str, tmp_path, *, embedded: bool = False, http: dict | None = None, keys=True,
              seed=True) -> Rig:
    cfg = load_config(None, {"gateway": {"database_url": url, "data_dir": str(tmp_path), "embedded": embedded},
                             "http": {"port": 0, **(http or {})}})
    gw = build_gateway(cfg, reactor)
    orders = OrderService(gw.database, reactor, None, None, cfg.escalation)
    add_order_routes(gw.api, gw.database, orders, reactor, max_sms_parts=cfg.orders.max_sms_parts)
    add_hotline_routes(gw.api, gw.database, cfg.gateway.time_zone)
    add_form_routes(gw.api, gw.database, orders, reactor, cfg.gateway.time_zone)
    add_modem_routes(gw.api, SimpleNamespace(slots={"/dev/emu0": SimpleNamespace(driver=BenchedModem())}),
                     reactor, None, SIM_PIN, wait_s=1.0)
    gw.root.putChild(b"board", gw.guard_board(BoardResource(reactor, gw.database, cfg.escalation,
                                                            cfg.gateway.time_zone)))
    gw.startService()
    port = (yield gw.http_service.listening).getHost().port
    now = datetime.now(timezone.utc)
    if seed:
        yield gw.database.run(import_roster, read_roster(ROSTER), source="roster", actor="test")
        yield gw.database.run(lambda c: c.execute(insert(hotline_calls).values(
            call_id=CALL_ID, line="119", caller=CALLER, arrived_at=now, ended_at=now, outcome="abandoned_ivr",
            callback_state="pending", updated_at=now)))
    made = {}
    if keys:
        for scope in ("read", "dispatch", "admin"):
            made[scope] = watch_also((yield gw.database.run(create_key_tx, f"{scope}-desk", scope, now, "test")))
    scheme = "https" if cfg.http.tls_cert else "http"
    return Rig(gw, f"{scheme}://127.0.0.1:{port}", made, gw.events)
