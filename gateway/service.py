"""The root service: built from a validated Config, started by `yihu run` or `twist yihu`.

Start order follows dependencies (database, then the parts, then the HTTP port); Twisted stops
them in reverse, so the HTTP port closes first and the database pool drains last, after every
part has committed what it accepted.
"""
from __future__ import annotations

from twisted.application import service
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from gateway.config import Config, redact_url
from gateway.storage import Database

log = Logger()


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


class ListeningService(service.Service):
    """Listens on an endpoint while running; `.port` is the listening port (port 0 in tests)."""

    def __init__(self, endpoint, factory, name: str):
        self.endpoint, self.factory, self.name = endpoint, factory, name
        self.port = None
        self.listening = None

    def startService(self):
        super().startService()
        self.listening = self.endpoint.listen(self.factory)

        def listening(port):
            self.port = port
            return port

        def failed(f):
            log.failure("{name}: cannot listen", f, name=self.name)
            return f
        self.listening.addCallbacks(listening, failed)

    def stopService(self):
        super().stopService()
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
        self.database = Database(reactor, config.database_url, threads=threads)
        DatabaseService(self.database).setServiceParent(self)
        from adapters.events import EventsService, EventTail, RetentionSweep
        from adapters.http import build_site
        from adapters.stream import EventStreamResource
        from adapters.webhooks import Webhooks
        # The event log's live end, its retention and the webhooks: started after the database.
        self.events = EventTail(reactor, self.database, config.events)
        self.webhooks = Webhooks(reactor, self.database, self.events, config.webhooks)
        EventsService(self.events, RetentionSweep(reactor, self.database, config.events),
                      self.webhooks).setServiceParent(self)
        self.health_checks: list = []
        site, self.root = build_site(reactor, self.database, gw.node_name, reactor.seconds(), self.health_checks)
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
        self.health_checks.append(lambda: ("api", True, "OPEN: embedded default on loopback, no API key needed"
                                           if self.api_open else "API keys required"))
        endpoint = serverFromString(reactor, http_endpoint_description(http.interface, http.port, http.tls_cert,
                                                                       http.tls_key))
        self.http_service = ListeningService(endpoint, site, "http")

    def guard_board(self, board):
        """The wall board behind a read key, taken once as ?key= and kept in a cookie."""
        from adapters.http import Guarded
        return Guarded(board, self.auth, cookie=True, query_key=True, secure=bool(self.config.http.tls_cert))

    def startService(self):
        # The HTTP port opens last so /health is never green before the parts are up.
        if self.http_service.parent is None:
            self.http_service.setServiceParent(self)
        super().startService()
        http = self.config.http
        log.info("Yihu gateway {node} started; {scheme} on {iface}:{port}; {access}",
                 node=self.config.gateway.node_name, scheme="HTTPS" if http.tls_cert else "HTTP",
                 iface=http.interface, port=http.port,
                 access="API OPEN without a key (embedded default on loopback)" if self.api_open
                 else "API keys required")



def build_gateway(config: Config, reactor) -> Gateway:
    return Gateway(config, reactor)
