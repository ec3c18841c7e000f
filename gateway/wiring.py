"""Wiring: which parts the gateway runs, given its configuration.

Kept apart from the parts themselves so that each part can be built and tested alone.  Start
order follows the dependencies: database, SMS bank (its emulated modems first in drill
mode), escalation and fan-out, the hotline tracker, the AMI link (after the tracker has loaded
the calls a previous run left open), the FastAGI server, and the HTTP port last.

Drill mode (`gateway.mode = "drill"`, or no configuration at all; see gateway/mode.py) runs the
same parts on the built-in emulators: a bank of emulated GSM modems on pseudo-terminals, driven
through the real serial code, and an emulated Asterisk (AMI server and FastAGI client) on
loopback.  Emulated phones of the roster answer order calls by pressing 1; that is the drill.

Every part is a `Part` (gateway/service.py): it reports whether it started, so that `yihu run`
fails fast, and its health, which /health and the board show.
"""
from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.config import Config, ConfigError
from gateway.eventlog import record_event
from gateway.health import PartHealth, off
from gateway.service import Gateway, ListeningService, Part, build_gateway

log = Logger()


class CallbackService(Part, service.Service):
    """A part with start()/stop() callables, as a service of the gateway's tree.  Once up, its
    health is `health()` when given (the part's own view: link state, modems), else "up"."""

    def __init__(self, name: str, start, stop=None, health=None):
        self.name, self._start, self._stop, self._health = name, start, stop, health

    def startService(self):
        super().startService()
        self._track_start(defer.maybeDeferred(self._start))

    def stopService(self):
        super().stopService()
        self.state = "stopped"
        if self._stop is not None:
            return defer.maybeDeferred(self._stop)
        return None

    def health(self):
        if self.state == "up" and self._health is not None:
            return self._health()
        return super().health()


def _modems_health(bank) -> list[PartHealth]:
    """One line per modem, and the bank as a whole: zero usable modems is down."""
    slots = bank.slots
    if not slots:
        return [off("sms", "no sms.ports configured: orders cannot go out by SMS")]
    usable = sum(1 for s in slots.values() if s.driver.healthy)
    out = [PartHealth("sms", usable > 0, f"{usable}/{len(slots)} modems usable")]
    for name, s in slots.items():
        d = s.driver
        # describe(): the state, and why a modem is benched ("SIM PIN refused: +CME ERROR: 16")
        detail = d.describe() + (f" {d.signal_dbm}dBm" if d.signal_dbm is not None else "")
        out.append(PartHealth(f"modem {name.rsplit('/', 1)[-1]}", d.healthy, detail, essential=False))
    return out


def _after(ready: defer.Deferred, fn) -> defer.Deferred:
    """fn() once `ready` fired; if it failed, fn never runs (its own part reports why) and
    `ready` keeps its failure for whoever else waits on it."""
    d = defer.Deferred()

    def go(result):
        if isinstance(result, Failure):
            d.callback(None)
        else:
            d.callback(fn())
        return result
    ready.addBoth(go)
    return d


class _PortOf:
    """A TCP client endpoint whose port is looked up at each connect (a server on port 0)."""

    def __init__(self, reactor, host: str, port_of):
        self.reactor, self.host, self.port_of = reactor, host, port_of

    def connect(self, factory):
        from twisted.internet.endpoints import TCP4ClientEndpoint
        return TCP4ClientEndpoint(self.reactor, self.host, self.port_of(), timeout=10).connect(factory)


def build_service(config: Config, reactor) -> Gateway:
    gw = build_gateway(config, reactor)
    db = gw.database
    drill = config.drill              # on the emulators (gateway/mode.py)

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
    journal = None
    if drill:
        # What the emulated network and PBX saw, kept on disk across kill -9 (gateway/netjournal.py).
        from gateway.netjournal import NetworkJournal
        from sms.emulator import EmulatorBank
        journal = NetworkJournal(config.data_dir.resolve() / "network.jsonl")
        gw.network_journal = journal
        modems_dir = config.data_dir.resolve() / "modems"
        emulators = EmulatorBank(reactor, config.embedded.modems, str(modems_dir),
                                 segment_time=config.embedded.segment_seconds, journal=journal)
        emulators.start()           # the ptys exist before the bank opens them
        sms_cfg = replace(sms_cfg, ports=tuple(emulators.paths))
        gw.emulated_modems = emulators
    alarm = config.gateway.db_write_alarm_s
    # This node's name on the work rows it claims; other nodes' rows are left alone while they live.
    from gateway.cluster.claims import Claimer
    node, cluster = config.gateway.node_name, config.cluster
    claimer = Claimer(node, cluster.node_timeout_s)
    bank = SmsBank(reactor, SqlStore(db, reactor, alarm_after=alarm), sms_cfg,
                   {p: serial_opener(reactor, p, sms_cfg.baudrate) for p in sms_cfg.ports},
                   node=node, cluster=cluster)
    gw.sms_bank = bank
    # a refused SIM PIN benches its modem until an operator acts: tell the dispatch software
    def modem_alert(modem, reason):
        at = datetime.fromtimestamp(reactor.seconds(), timezone.utc)
        db.run(record_event, "sms.modem_alert", {"modem": modem, "reason": reason}, at).addErrback(
            lambda f: log.failure("{modem}: the event sms.modem_alert was not logged", f, modem=modem))
    bank.alert_observers.append(modem_alert)

    # --- voice: AMI link, order caller -----------------------------------------------------
    from gateway.ami.link import AmiLink
    from ivr.order_caller import OrderCaller, RetryPolicy
    ami_cfg, ivr_cfg = config.ami, config.ivr
    ami_host, ami_port, ami_user, ami_secret = ami_cfg.host, ami_cfg.port, ami_cfg.username, ami_cfg.secret
    shared_pbx = config.embedded.shared_asterisk if drill else None
    if shared_pbx is not None:
        # Several drill nodes on one emulated Asterisk (started elsewhere on this machine, e.g.
        # `python -m gateway.ami.emulator.pbx`), as several gateways share one real Asterisk.
        ami_host, ami_port = shared_pbx
        secret_file = config.embedded.asterisk_secret_file
        try:
            with open(secret_file, encoding="utf-8") as f:      # read once, before the reactor runs
                ami_secret = f.read().strip()
        except OSError as e:
            raise ConfigError([f"embedded.asterisk_secret_file {secret_file}: {e.strerror}"]) from None
        log.warn("DRILL MODE: AMI link to the shared EMULATED Asterisk at {host}:{port} (not a real Asterisk)",
                 host=ami_host, port=ami_port)
        gw.pbx = None
        ami_endpoint = None
    elif drill:
        from gateway.ami.emulator.pbx import EmulatedPbx, Phone
        ami_secret = secrets.token_hex(16)       # this run's own; nothing outside knows it
        pbx = EmulatedPbx(reactor, agi_host=ivr_cfg.interface, agi_port=ivr_cfg.port,
                          default=Phone.presses("1", after=1.0), journal=journal,
                          users={ami_user: {"secret": ami_secret, "read": "all", "write": "all"}})
        ami_host, ami_port = "127.0.0.1", config.embedded.ami_port
        CallbackService("emulated-asterisk", lambda: pbx.listen(ami_port, "127.0.0.1"), pbx.stop
                        ).setServiceParent(gw)
        gw.pbx = pbx
        # Port 0 (tests): the link asks the PBX for the port it got, at each connection.
        ami_endpoint = _PortOf(reactor, "127.0.0.1", lambda: pbx.port_number)
    else:
        ami_endpoint = None
    link = AmiLink(reactor, ami_host, ami_port, endpoint=ami_endpoint, username=ami_user, secret=ami_secret,
                   auth=ami_cfg.auth,
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
                         tokens=call_tokens, write_alarm_s=alarm, claimer=claimer,
                         takeover_seconds=cluster.heartbeat_s)

    # --- orders, feedback, escalation ------------------------------------------------------
    # Every SMS about a drill order is labelled 【演练】 on its way to the bank (events about one say
    # "drill": true: gateway/eventlog.build_event reads the order's row); its figures are counted apart.
    from gateway.orders.drill import DrillLabelledOutbox, DrillOrders
    drills = DrillOrders(db)
    outbox = DrillLabelledOutbox(bank, drills)
    escalation = EscalationEngine(db, reactor, outbox, caller, esc_cfg, claimer=claimer,
                                  takeover_seconds=cluster.heartbeat_s)
    feedback = FeedbackEngine(db, outbox, escalation, esc_cfg, clock=reactor, write_alarm_s=alarm)
    bank.inbound.sink = feedback
    fanout = FanOut(db, reactor, outbox, caller, esc_cfg, claimer=claimer)
    orders = OrderService(db, reactor, fanout, escalation, esc_cfg, drills=drills, drill_mode=drill)
    escalation.is_drill = feedback.is_drill = drills.is_drill
    gw.orders, gw.feedback, gw.escalation, gw.fanout = orders, feedback, escalation, fanout

    def stop_bank():
        # The services stop all at once: the emulated modems must outlive the bank's drain, or
        # the segments in their hands would end "unknown" on a clean stop.
        d = defer.maybeDeferred(bank.stop)
        if drill:
            d.addBoth(lambda _: emulators.stop())
        return d
    CallbackService("drill-orders", drills.start).setServiceParent(gw)
    CallbackService("sms-bank", bank.start, stop_bank, lambda: _modems_health(bank)).setServiceParent(gw)
    escalation.auditor_by_lease = True
    CallbackService("escalation", escalation.start, escalation.stop).setServiceParent(gw)
    from gateway.cluster.singleton import LeasedPart
    LeasedPart(reactor, db, gw.node, "escalation-auditor", escalation.start_auditor, escalation.stop_auditor,
               what="the escalation auditor").setServiceParent(gw)
    CallbackService("fan-out", fanout.start, fanout.stop).setServiceParent(gw)
    from gateway.leaders.notifier import LeaderNotifier
    leaders = LeaderNotifier(db, reactor, outbox, config.leaders, esc_cfg)      # a drill order: 【演练】
    gw.leaders = leaders
    CallbackService("leaders", leaders.start, leaders.stop).setServiceParent(gw)
    CallbackService("order-calls", caller.start, caller.stop).setServiceParent(gw)
    # Wake-ups (gateway/cluster/wakeups.py): work committed here or on another node wakes the part
    # that acts on it at once; each part's own polling remains the fallback.
    wake = gw.wakeups
    wake.on("order", lambda: fanout.send() if fanout.running else None)
    refresh = lambda: escalation.refresh() if escalation.running else None      # noqa: E731 - once started
    wake.on("order", refresh)
    wake.on("step", refresh)
    wake.on("call", caller.place_due)
    wake.on("sms", bank.dispatch)
    # A peer's heartbeat running out frees its work at that moment: every takeover looks at once
    # (their periodic sweeps stay as the fallback), so a dead node's work resumes within
    # node_timeout_s of its last heartbeat plus the time to send it.
    gw.node.peer_timeout_observers += [
        bank.poke,
        lambda: fanout.sweep() if fanout.running else None,
        lambda: escalation.take_over() if escalation.running else None,
        lambda: caller.take_over() if caller.running else None,
    ]
    # How old the oldest work due and not done is, database-wide (every node says the same)
    from gateway.cluster.outbox import OutboxAges
    ages = OutboxAges(reactor, db, every=max(cluster.heartbeat_s, 5.0))
    CallbackService("outbox-ages", ages.start, ages.stop).setServiceParent(gw)

    # --- hotlines --------------------------------------------------------------------------
    from gateway.hotline.service import HotlineService
    # Every node has its own AMI link (its order calls); the hotline tracker and alerts follow
    # one Asterisk's events on ONE node, the holder of its lease (gateway/hotline/feed.py), which
    # loads the calls and alerts left open from the database when it takes the lease.
    hotline = HotlineService(reactor, db, None, lines=tuple(ami_cfg.lines), callers=config.hotline,
                             restore_at_start=False)
    hotline.setServiceParent(gw)
    gw.hotline = hotline
    # overflow and "no call-taker logged in": events, then the duty supervisor (from AMI only)
    from gateway.hotline.alerts import HotlineAlerts
    from gateway.hotline.feed import AmiEventFeed
    alerts = HotlineAlerts(reactor, db, bank, config.hotline, config.gateway.time_zone)
    gw.hotline_alerts = alerts
    feed = AmiEventFeed(link, hotline, alerts)
    gw.ami_feed = feed
    # The emulated Asterisk of a drill belongs to its node, unless several drill nodes share one
    # (embedded.asterisk); a real one is named by its address.
    if drill and shared_pbx is None:
        ami_lease = f"ami-events:{config.gateway.node_name}/emulated"
    else:
        ami_lease = f"ami-events:{ami_host}:{ami_port}" + ("/emulated" if drill else "")
    if ami_cfg.enabled:
        gw.ami_lease = LeasedPart(reactor, db, gw.node, ami_lease, feed.start, feed.stop,
                                  what="the hotline tracker and alerts")
        gw.ami_lease.setServiceParent(gw)
    if ami_cfg.enabled:
        # a drill names the emulated Asterisk it is linked to, shared by several nodes or its own
        where = "" if not drill else (f" to the emulated Asterisk at {ami_host}:{ami_port} (shared)"
                                      if shared_pbx is not None else " to this node's emulated Asterisk")

        def ami_health():
            return PartHealth("ami", link.connected,
                              f"logged in{where}" if link.connected else (link.last_error or "connecting"))
        # after the tracker has loaded the calls a previous run left open
        CallbackService("ami", lambda: _after(hotline.ready, link.startService), link.stopService,
                        ami_health).setServiceParent(gw)
    else:
        gw.health_checks.append(lambda: off("ami", "ami.enabled = false"))

    # Who hears the nuisance notice at the overflow point: the list, kept in memory.
    from ivr.nuisance_notice import NuisanceNotices
    notices = NuisanceNotices(reactor, db, config.hotline.nuisance_refresh_s, config.hotline.nuisance_notice)
    CallbackService("nuisance-notices", notices.start, notices.stop).setServiceParent(gw)

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
        # Spoken situation reports: Asterisk writes them here (the same filesystem as Asterisk's).
        recordings = Path(ivr_cfg.recordings_dir) if ivr_cfg.recordings_dir else config.data_dir / "recordings"
        if not ivr_cfg.recordings_dir:
            recordings.mkdir(parents=True, exist_ok=True)
        from ivr.member_pins import MemberPins
        from ivr.peers import PeerGate
        from ivr.token_gate import CallTokenGate, UsedTokenSweep
        token_gate = CallTokenGate(reactor, db, call_tokens, refusals)
        token_sweep = UsedTokenSweep(reactor, db)
        LeasedPart(reactor, db, gw.node, "call-token-retention", token_sweep.start, token_sweep.stop,
                   what="the sweep of expired call tokens").setServiceParent(gw)
        factory = make_fastagi_factory(reactor, sink=feedback, journal=KeypadJournal(reactor, db),
                                       orders=OrderBook(db), speech=speech,
                                       settings=MenuSettings(timeout_ms=ivr_cfg.menu_timeout_ms,
                                                             recordings_dir=str(recordings)),
                                       tokens=token_gate, nuisance_notice=notices,
                                       pins=MemberPins(db, refusals),
                                       peers=PeerGate(ivr_cfg.allowed_peers, refusals),
                                       env_timeout=ivr_cfg.env_timeout_s, command_timeout=ivr_cfg.command_timeout_s)
        gw.fastagi_factory = factory
        endpoint = serverFromString(reactor, f"tcp:{ivr_cfg.port}:interface={ivr_cfg.interface}")
        fastagi = ListeningService(endpoint, factory, "fastagi")
        fastagi.setServiceParent(gw)
        if drill and shared_pbx is None:       # port 0 (tests): the emulated Asterisk dials the port we got
            fastagi.on_listening = lambda port: setattr(gw.pbx, "agi_port", port.getHost().port)
        # Refusal counts still summing in a window are written before the database closes.
        CallbackService("fastagi-refusals", lambda: None, refusals.flush).setServiceParent(gw)
        # Keypad answers the classic-AGI fallback spooled while the gateway was down.
        from ivr.spool import SpoolIntake
        intake = SpoolIntake(reactor, ivr_cfg.spool_dir or config.data_dir / "spool" / "keypad",
                             KeypadJournal(reactor, db), feedback, tokens=token_gate)
        CallbackService("keypad-spool", lambda: defer.Deferred.fromCoroutine(intake.take_in())).setServiceParent(gw)
        # Keypad answers committed but never judged (the gateway stopped in between).
        from ivr.journal import resume_unjudged_keypad
        CallbackService("keypad-resume", lambda: defer.Deferred.fromCoroutine(
            resume_unjudged_keypad(db, feedback))).setServiceParent(gw)
    else:
        gw.health_checks.append(lambda: off("fastagi", "ivr.enabled = false"))

    # --- the API routes of the parts -------------------------------------------------------
    from adapters.orders_api import add_order_routes
    from adapters.hotline_api import add_hotline_routes
    add_order_routes(gw.api, db, orders, reactor, max_sms_parts=config.orders.max_sms_parts,
                     ref_bits=sms_cfg.concat_ref_bits)
    add_hotline_routes(gw.api, db, config.gateway.time_zone, callers=config.hotline, clock=reactor,
                       on_nuisance_change=notices.refresh)
    # --- CAP alerts -> orders and proposals --------------------------------------------------
    from adapters.cap_api import add_cap_routes
    from gateway.cap.intake import CapIntake
    from gateway.cap.signature import SignatureCheck, load_certs
    cap_cfg = config.cap
    cap_intake = CapIntake(db, reactor, orders, cap_cfg, esc_cfg,
                           verify=SignatureCheck(load_certs(cap_cfg.trusted_certs), cap_cfg.require_signature))
    gw.cap_intake = cap_intake
    add_cap_routes(gw.api, db, cap_intake, cap_cfg.max_bytes)
    if cap_cfg.inbox_dir:
        from pathlib import Path

        from gateway.cap.inbox import CapInbox
        inbox_dir = Path(cap_cfg.inbox_dir)
        if not inbox_dir.is_absolute():
            inbox_dir = config.data_dir / inbox_dir
        inbox = CapInbox(reactor, cap_intake, inbox_dir, cap_cfg.poll_s, cap_cfg.max_bytes)
        gw.cap_inbox = inbox
        CallbackService("cap-inbox", inbox.start, inbox.stop).setServiceParent(gw)
    from adapters.reports_api import add_report_routes
    add_report_routes(gw.api, db, esc_cfg, config.gateway.time_zone, reactor)
    from adapters.forms_api import add_form_routes
    add_form_routes(gw.api, db, orders, reactor, config.gateway.time_zone, config.orders.pdf_converter)
    gw.health_checks.append(gw.webhooks.health)
    from adapters.modems_api import add_modem_routes
    add_modem_routes(gw.api, bank, reactor, config.path, sms_cfg.sim_pin)
    if drill:
        # a commander's SMS reply and an emulated phone's inbox, for `yihu drill sms|inbox`
        from adapters.emulator_control import EmulatorControl
        gw.root.putChild(b"emulator", EmulatorControl(gw.auth, gw.emulated_modems))
    from adapters.board import BoardResource
    # the wall's health chips are /health's parts (each modem, the AMI link, any part down)
    gw.root.putChild(b"board", gw.guard_board(BoardResource(
        reactor, db, esc_cfg, config.gateway.time_zone, gw.health_checks, node=config.gateway.node_name,
        mode=config.mode, callers=config.hotline)))
    return gw
