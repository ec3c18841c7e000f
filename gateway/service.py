"""The root service: built from a validated Config, started by `yihu run` or `twist yihu`.

Start order follows dependencies (database, then the parts, then the HTTP port); Twisted stops
them in reverse, so the HTTP port closes first and the database pool drains last, after every
part has committed what it accepted.

Fail fast: every part reports whether it started (`Part.ready`); `Gateway.started` fails with
PartFailed, one line naming the part, when any of them did not (a port in use, a part whose
start raised), and `yihu run` then exits with status 2 so that systemd restarts it instead of a
gateway running without its API or its escalation.  The same state feeds /health.
"""
from __future__ import annotations

from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from gateway.config import Config, redact_url
from gateway.health import PartHealth, collect
from gateway.storage import Database

log = Logger()


class PartFailed(Exception):
    """A part could not start; str() is one line naming it."""

    def __init__(self, part: str, reason: str):
        self.part, self.reason = part, reason
        super().__init__(f"{part}: {reason}")


def _reason(failure) -> str:
    """One line for a start-up failure: the error, never a traceback."""
    err = failure.value
    if isinstance(err, CannotListenError):
        why = getattr(err.socketError, "strerror", None) or str(err.socketError)
        return f"cannot listen on {err.interface or '0.0.0.0'}:{err.port} ({why})"
    text = str(err).strip().splitlines()
    return f"{err.__class__.__name__}: {text[0]}" if text else err.__class__.__name__


class Part:
    """A service that reports whether it started: `ready` fires when it is up, or fails with
    PartFailed; `state` is "starting", "up", "failed" or "stopped" for /health."""
    state = "not started"
    detail = ""
    ready: defer.Deferred | None = None

    def _track_start(self, d: defer.Deferred) -> None:
        self.state, self.detail = "starting", ""
        self.ready = defer.Deferred()

        def up(result):
            self.state = "up"
            self.ready.callback(None)
            return result

        def down(f):
            self.state, self.detail = "failed", _reason(f)
            if not isinstance(f.value, CannotListenError):
                # a part that raised: the engineer wants the traceback in the log
                log.failure("{part}: failed to start", f, part=self.name)
            self.ready.errback(PartFailed(self.name, self.detail))
        d.addCallbacks(up, down)

    def health(self) -> PartHealth:
        return PartHealth(self.name, self.state == "up", self.detail or self.state, state=self.state)


class DatabaseService(service.Service):
    """Owns the database thread pool for the life of the gateway."""
    name = "database"

    def __init__(self, database: Database):
        self.database = database

    def startService(self):
        super().startService()
        self.database.start()
        log.info("database ready: {url} ({threads} thread(s))", url=redact_url(self.database.url),
                 threads=self.database.threads)

    def stopService(self):
        # The pool itself stops after reactor shutdown (Database.start registered that), so
        # parts stopping after us can still commit what they hold.
        return super().stopService()


class ListeningService(Part, service.Service):
    """Listens on an endpoint while running; `.port` is the listening port (port 0 in tests);
    `.listening` fires with it (None when listening failed: `ready` says why)."""

    def __init__(self, endpoint, factory, name: str):
        self.endpoint, self.factory, self.name = endpoint, factory, name
        self.port = None
        self.listening = None
        self.on_listening = None          # fn(port) once listening (port 0: who needs the number)

    def startService(self):
        super().startService()

        def listening(port):
            self.port = port
            host = port.getHost()
            self.detail = f"listening on {host.host}:{host.port}"
            log.info("{name}: listening on {host}:{port}", name=self.name, host=host.host, port=host.port)
            if self.on_listening is not None:
                self.on_listening(port)
            return port
        self.listening = defer.maybeDeferred(self.endpoint.listen, self.factory).addCallback(listening)
        self._track_start(self.listening)

    def stopService(self):
        super().stopService()
        self.state = "stopped"
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


class Gateway(service.MultiService):
    """The Yihu gateway.  `.database` and `.root` (the HTTP resource tree) for the parts."""

    def __init__(self, config: Config, reactor):
        super().__init__()
        self.config = config
        self.reactor = reactor
        gw = config.gateway
        threads = gw.db_threads or None
        self.database = Database(reactor, config.database_url, threads=threads,
                                 statement_timeout_s=gw.db_statement_timeout_s, pool_timeout_s=gw.db_pool_timeout_s,
                                 drill=config.drill)
        DatabaseService(self.database).setServiceParent(self)
        # This gateway as a node of the cluster: its name claimed (or the process stops), its heartbeat.
        from gateway.cluster.node import NodeService
        self.node_service = NodeService(reactor, self.database, gw.node_name, config.cluster,
                                        modems=self._usable_modems)
        self.node_service.setServiceParent(self)
        self.node = self.node_service.node
        # Work committed anywhere wakes the parts here (gateway/cluster/wakeups.py): in-process after
        # each COMMIT; from the other nodes by LISTEN/NOTIFY on PostgreSQL.
        from gateway.cluster.wakeups import PgListener, Wakeups
        from gateway.storage.pool import is_sqlite
        self.wakeups = Wakeups(reactor)
        self.database.add_wake_listener(lambda kinds: [self.wakeups.wake(k) for k in sorted(kinds)])
        self.wakeup_listener = None
        if not is_sqlite(config.database_url):
            self.wakeup_listener = PgListener(reactor, config.database_url, self.wakeups)
            self.wakeup_listener.setServiceParent(self)
        from adapters.events import EventsService, EventTail, RetentionSweep
        from adapters.http import build_site
        from adapters.stream import EventStreamResource
        from adapters.webhooks import Webhooks
        # The event log's live end, its retention and the webhooks: started after the database.
        self.events = EventTail(reactor, self.database, config.events)
        from gateway.cluster.claims import Claimer
        # one node per subscriber (its cursor has one writer); a dead node's are taken over
        self.webhooks = Webhooks(reactor, self.database, self.events, config.webhooks,
                                 claimer=Claimer(gw.node_name, config.cluster.node_timeout_s))
        EventsService(self.events, None, self.webhooks).setServiceParent(self)
        # Singletons, one node at a time, each held by a lease (gateway/cluster/singleton.py).
        from gateway.cluster.singleton import LeasedPart
        self.retention_sweep = RetentionSweep(reactor, self.database, config.events)
        LeasedPart(reactor, self.database, self.node, "event-retention", self.retention_sweep.start,
                   self.retention_sweep.stop, what="the event log's retention sweep").setServiceParent(self)
        # Each part's health: the parts (Part services) first, then checks the wiring adds.
        self.health_checks: list = [self._parts_health]
        if self.wakeup_listener is not None:
            self.health_checks.append(self.wakeup_listener.health)
        site, self.root = build_site(reactor, self.database, gw.node_name, reactor.seconds(), self.health_checks,
                                     mode=config.mode)
        from adapters.api import ApiResource, Router
        from adapters.auth import Authenticator, RefusalBrake, api_is_open
        from adapters.directory_api import add_directory_routes
        from adapters.http import Guarded, OpenApiResource, http_endpoint_description
        http = config.http
        self.api_open = api_is_open(config)
        self.auth = Authenticator(reactor, self.database, open_access=self.api_open,
                                  brake=RefusalBrake(reactor, http.refusal_burst, http.refusal_window_s))
        secure = bool(http.tls_cert)
        self.root.putChild(b"events", Guarded(EventStreamResource(self.events, reactor), self.auth, cookie=True,
                                              secure=secure))
        self.api = Router()
        add_directory_routes(self.api, self.database)
        self.root.putChild(b"api", ApiResource(self.api, self.auth))
        self.root.putChild(b"openapi.json", Guarded(OpenApiResource(self.api), self.auth))
        self.health_checks.append(lambda: ("api", True, "OPEN: drill mode on loopback, no API key needed"
                                           if self.api_open else "API keys required"))
        endpoint = serverFromString(reactor, http_endpoint_description(http.interface, http.port, http.tls_cert,
                                                                       http.tls_key))
        self.http_service = ListeningService(endpoint, site, "http")
        self.started: defer.Deferred | None = None

    def _usable_modems(self) -> int | None:
        bank = getattr(self, "sms_bank", None)
        if bank is None:
            return None
        return sum(1 for s in bank.slots.values() if s.driver.healthy)

    def _parts_health(self) -> list[PartHealth]:
        return [p for s in self if isinstance(s, Part) for p in collect([s.health])]

    def guard_board(self, board):
        """The wall board behind a read key, taken once as ?key= and kept in a cookie."""
        from adapters.http import Guarded
        return Guarded(board, self.auth, cookie=True, query_key=True, secure=bool(self.config.http.tls_cert))

    def startService(self):
        # The HTTP port opens last so /health is never green before the parts are up.
        if self.http_service.parent is None:
            self.http_service.setServiceParent(self)
        cfg = self.config
        if cfg.drill:
            log.warn("DRILL MODE (演练): built-in emulated modems and Asterisk; no SMS or call leaves this "
                     "machine; every event says \"drill\": true; database {url} ({why})",
                     url=redact_url(cfg.database_url), why=cfg.mode_reason)
        else:
            log.info("live mode: real modems and Asterisk ({why})", why=cfg.mode_reason)
        super().startService()
        self.started = self.when_started()
        self.started.addCallback(self._announce)

    def when_started(self) -> defer.Deferred:
        """Fires when every part is up; fails with the first PartFailed."""
        ds = [s.ready for s in self if isinstance(s, Part) and s.ready is not None]
        d = defer.DeferredList(ds, fireOnOneErrback=True, consumeErrors=True)
        d.addErrback(lambda f: f.value.subFailure)      # FirstError -> the part's own PartFailed
        return d

    def _announce(self, _):
        http = self.config.http
        log.info("Yihu gateway {node} started in {mode} mode; {scheme} {http}; {access}",
                 node=self.config.gateway.node_name, mode=self.config.mode,
                 scheme="HTTPS" if http.tls_cert else "HTTP", http=self.http_service.detail,
                 access="API OPEN without a key (drill on loopback)" if self.api_open else "API keys required")


def build_gateway(config: Config, reactor) -> Gateway:
    return Gateway(config, reactor)


def stop_on_failure(gateway: Gateway, reactor, report) -> None:
    """Fail fast: when a part cannot start, `report(line)` and stop the reactor (the caller exits
    with status 2).  A gateway half up (no API, no escalation) must not pass for a working one.
    Once the gateway is told to stop (SIGTERM while a part is still starting: the AMI link's
    resync cut off), a part's start ending early is the stop, not a part that cannot start."""
    stopping: list[bool] = []
    reactor.addSystemEventTrigger("before", "shutdown", stopping.append, True)   # before the parts stop

    def failed(f):
        line = str(f.value) if isinstance(f.value, PartFailed) else _reason(f)
        if stopping:
            log.info("stopped while starting: {line}", line=line)
            return None
        log.critical("cannot start: {line}; stopping", line=line)
        report(line)
        reactor.callWhenRunning(reactor.stop)
    gateway.started.addErrback(failed)
