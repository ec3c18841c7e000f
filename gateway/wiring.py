"""Wiring: which parts the gateway runs, given its configuration.

Kept apart from the parts themselves so that each part can be built and tested alone.  Start
order follows the dependencies: database, SMS bank (its emulated modems first in embedded
mode), escalation and fan-out, the hotline tracker, the AMI link (after the tracker has loaded
the calls a previous run left open), the FastAGI server, and the HTTP port last.

Embedded mode (`gateway.embedded = true`, the default) runs the same parts on the built-in
emulators: a bank of emulated GSM modems on pseudo-terminals, driven through the real serial
code, and an emulated Asterisk (AMI server and FastAGI client) on loopback.  Emulated phones
of the roster answer order calls by pressing 1; that is the drill.
"""
from __future__ import annotations

import secrets
from dataclasses import replace

from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from gateway.config import Config
from gateway.service import Gateway, ListeningService, build_gateway

log = Logger()


class CallbackService(service.Service):
    """A part with start()/stop() callables, as a service of the gateway's tree."""

    def __init__(self, name: str, start, stop=None):
        self.name, self._start, self._stop = name, start, stop

    def startService(self):
        super().startService()
        d = defer.maybeDeferred(self._start)
        d.addErrback(lambda f: log.failure("{name}: failed to start", f, name=self.name))

    def stopService(self):
        super().stopService()
        if self._stop is not None:
            return defer.maybeDeferred(self._stop)
        return None


def build_service(config: Config, reactor) -> Gateway:
    gw = build_gateway(config, reactor)
    db, events = gw.database, gw.events
    embedded = config.gateway.embedded

    # --- the domain's collaborators --------------------------------------------------------
    from gateway.escalation.engine import EscalationEngine
    from gateway.feedback.engine import FeedbackEngine
    from gateway.orders.fanout import FanOut
    from gateway.orders.service import OrderService
    esc_cfg = config.escalation

    # --- SMS -------------------------------------------------------------------------------
    from sms.bank import SmsBank, serial_opener
    from sms.store import SqlStore
    sms_cfg = config.sms
    if embedded:
        from sms.emulator import EmulatorBank
        modems_dir = config.data_dir.resolve() / "modems"
        emulators = EmulatorBank(reactor, config.embedded.modems, str(modems_dir),
                                 segment_time=config.embedded.segment_seconds)
        emulators.start()           # the ptys exist before the bank opens them
        sms_cfg = replace(sms_cfg, ports=tuple(emulators.paths))
        gw.emulated_modems = emulators
        CallbackService("modem-emulators", lambda: None, emulators.stop).setServiceParent(gw)
    bank = SmsBank(reactor, SqlStore(db), sms_cfg,
                   {p: serial_opener(reactor, p, sms_cfg.baudrate) for p in sms_cfg.ports})
    gw.sms_bank = bank

    # --- voice: AMI link, order caller -----------------------------------------------------
    from gateway.ami.link import AmiLink
    from ivr.order_caller import OrderCaller, RetryPolicy
    ami_cfg, ivr_cfg = config.ami, config.ivr
    ami_host, ami_port, ami_user, ami_secret = ami_cfg.host, ami_cfg.port, ami_cfg.username, ami_cfg.secret
    if embedded:
        from gateway.ami.emulator.pbx import EmulatedPbx, PbxService, Phone
        ami_secret = secrets.token_hex(16)       # this run's own; nothing outside knows it
        pbx = EmulatedPbx(reactor, agi_host=ivr_cfg.interface, agi_port=ivr_cfg.port,
                          default=Phone.presses("1", after=1.0),
                          users={ami_user: {"secret": ami_secret, "read": "all", "write": "all"}})
        ami_host, ami_port = "127.0.0.1", config.embedded.ami_port
        PbxService(pbx, ami_port, "127.0.0.1").setServiceParent(gw)
        gw.pbx = pbx
    link = AmiLink(reactor, ami_host, ami_port, username=ami_user, secret=ami_secret, auth=ami_cfg.auth,
                   events=ami_cfg.events, action_timeout=ami_cfg.action_timeout_s,
                   ping_interval=ami_cfg.ping_interval_s, ping_timeout=ami_cfg.ping_timeout_s,
                   backoff_max=ami_cfg.backoff_max_s)
    gw.ami_link = link
    # Order-call tokens: the key is the configured one, or one made once and kept in the data
    # directory (calls placed before a restart must still verify after it).
    from ivr.refusals import RefusalAudit
    from ivr.tokens import CallTokens, load_or_create_secret
    key_file = config.data_dir / "ivr-token.key"
    call_tokens = CallTokens(load_or_create_secret(ivr_cfg.token_secret, key_file), grace_s=ivr_cfg.token_grace_s)
    log.info("FastAGI: sessions only from {peers}; order calls carry one-time tokens (key {where})",
             peers=", ".join(ivr_cfg.allowed_peers),
             where="from ivr.token_secret" if ivr_cfg.token_secret else f"in {key_file}")
    refusals = RefusalAudit(reactor, db, window=ivr_cfg.refusal_window_s)
    caller = OrderCaller(reactor, link, db,
                         policy=RetryPolicy(attempts=ivr_cfg.call_attempts, delay=ivr_cfg.call_retry_delay_s,
                                            ring_timeout_ms=int(ivr_cfg.ring_timeout_s * 1000)),
                         channel_template=ivr_cfg.channel_template, caller_id=ivr_cfg.caller_id,
                         tokens=call_tokens)

    # --- orders, feedback, escalation ------------------------------------------------------
    escalation = EscalationEngine(db, reactor, bank, caller, events, esc_cfg)
    feedback = FeedbackEngine(db, bank, events, escalation, esc_cfg)
    bank.inbound.sink = feedback
    fanout = FanOut(db, reactor, bank, caller, esc_cfg)
    orders = OrderService(db, reactor, fanout, escalation, events, esc_cfg)
    gw.orders, gw.feedback, gw.escalation, gw.fanout = orders, feedback, escalation, fanout

    CallbackService("sms-bank", bank.start, bank.stop).setServiceParent(gw)
    CallbackService("escalation", escalation.start, escalation.stop).setServiceParent(gw)
    CallbackService("fan-out", fanout.start, fanout.stop).setServiceParent(gw)

    # --- hotlines --------------------------------------------------------------------------
    from gateway.hotline.service import HotlineService
    hotline = HotlineService(reactor, db, events, link, lines=tuple(ami_cfg.lines))
    hotline.setServiceParent(gw)
    gw.hotline = hotline
    if ami_cfg.enabled:
        CallbackService("ami", lambda: hotline.ready.addCallback(lambda _: link.startService()),
                        link.stopService).setServiceParent(gw)

    # --- FastAGI ---------------------------------------------------------------------------
    if ivr_cfg.enabled:
        from ivr.flows.answer_menu import MenuSettings
        from ivr.journal import KeypadJournal
        from ivr.orders import OrderBook
        from ivr.service import make_fastagi_factory
        speech = None
        if ivr_cfg.speech:
            from ivr.speech import OrderSpeech
            speech = OrderSpeech(reactor, config.data_dir / "speech")
        from ivr.member_pins import MemberPins
        from ivr.peers import PeerGate
        from ivr.token_gate import CallTokenGate
        token_gate = CallTokenGate(reactor, db, call_tokens, refusals)
        factory = make_fastagi_factory(reactor, sink=feedback, journal=KeypadJournal(reactor, db),
                                       orders=OrderBook(db), speech=speech,
                                       settings=MenuSettings(timeout_ms=ivr_cfg.menu_timeout_ms),
                                       tokens=token_gate,
                                       pins=MemberPins(db, refusals),
                                       peers=PeerGate(ivr_cfg.allowed_peers, refusals))
        gw.fastagi_factory = factory
        endpoint = serverFromString(reactor, f"tcp:{ivr_cfg.port}:interface={ivr_cfg.interface}")
        ListeningService(endpoint, factory, "fastagi").setServiceParent(gw)
        # Refusal counts still summing in a window are written before the database closes.
        CallbackService("fastagi-refusals", lambda: None, refusals.flush).setServiceParent(gw)
        # Keypad answers the classic-AGI fallback spooled while the gateway was down.
        from ivr.spool import SpoolIntake
        intake = SpoolIntake(reactor, ivr_cfg.spool_dir or config.data_dir / "spool" / "keypad",
                             KeypadJournal(reactor, db), feedback, tokens=token_gate)
        CallbackService("keypad-spool", lambda: defer.Deferred.fromCoroutine(intake.take_in())).setServiceParent(gw)

    # --- the API routes of the parts -------------------------------------------------------
    from adapters.orders_api import add_order_routes
    from adapters.hotline_api import add_hotline_routes
    add_order_routes(gw.api, db, orders, reactor, max_sms_parts=config.orders.max_sms_parts,
                     ref_bits=sms_cfg.concat_ref_bits)
    add_hotline_routes(gw.api, db, config.gateway.time_zone)
    from adapters.reports_api import add_report_routes
    add_report_routes(gw.api, db, esc_cfg, config.gateway.time_zone, reactor)
    gw.health_checks.append(lambda: ("ami", link.connected or not ami_cfg.enabled,
                                     "logged in" if link.connected else (link.last_error or "connecting")))
    gw.health_checks.append(lambda: ("sms", any(s.driver.healthy for s in bank.slots.values()) or not bank.slots,
                                     f"{sum(1 for s in bank.slots.values() if s.driver.healthy)}/{len(bank.slots)} "
                                     "modems healthy: " + ", ".join(
                                         f"{name.rsplit('/', 1)[-1]} {s.driver.state}"
                                         + (f" {s.driver.signal_dbm}dBm" if s.driver.signal_dbm is not None else "")
                                         for name, s in bank.slots.items())))
    if embedded:
        from adapters.emulator_control import EmulatorControl
        gw.root.putChild(b"emulator", EmulatorControl(gw.auth, gw.emulated_modems))
    from adapters.board import BoardResource
    def board_parts():
        """Each modem and the AMI link, as the wall shows them."""
        parts = [("AMI", link.connected or not ami_cfg.enabled, "logged in" if link.connected else "down")]
        return parts + [(f"短信猫{n}", s.driver.healthy, s.driver.state)
                        for n, s in enumerate(bank.slots.values(), start=1)]
    gw.root.putChild(b"board", gw.guard_board(BoardResource(
        reactor, db, esc_cfg, config.gateway.time_zone, gw.health_checks, parts=board_parts,
        node=config.gateway.node_name, drill=embedded)))
    return gw
