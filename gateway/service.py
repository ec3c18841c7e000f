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
        self.on_listening = None          # fn(port) once listening (port 0: who needs the number)

    def startService(self):
        super().startService()
        self.listening = self.endpoint.listen(self.factory)

        def listening(port):
            self.port = port
            log.info("{name}: listening on {host}:{port}", name=self.name, host=port.getHost().host,
                     port=port.getHost().port)
            if self.on_listening is not None:
                self.on_listening(port)
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
        from adapters.events import EventBus
        from adapters.http import build_site
        from adapters.stream import EventStreamResource
        from adapters.webhooks import Webhooks
        self.events = EventBus(reactor, node=gw.node_name)
        self.webhooks = Webhooks(reactor, self.events, config.webhooks)
        self.health_checks: list = []
        site, self.root = build_site(reactor, self.database, gw.node_name, reactor.seconds(), self.health_checks)
        self.root.putChild(b"events", EventStreamResource(self.events, reactor))
        from adapters.api import ApiResource, Router
        from adapters.directory_api import add_directory_routes
        self.api = Router()
        add_directory_routes(self.api, self.database)
        self.root.putChild(b"api", ApiResource(self.api))
        http = config.http
        endpoint = serverFromString(reactor, f"tcp:{http.port}:interface={http.interface}")
        self.http_service = ListeningService(endpoint, site, "http")

    def startService(self):
        # The HTTP port opens last so /health is never green before the parts are up.
        if self.http_service.parent is None:
            self.http_service.setServiceParent(self)
        super().startService()
        log.info("Yihu gateway {node} started; HTTP on {iface}:{port}", node=self.config.gateway.node_name,
                 iface=self.config.http.interface, port=self.config.http.port)

    def stopService(self):
        self.webhooks.stop()
        return super().stopService()


def build_gateway(config: Config, reactor) -> Gateway:
    return Gateway(config, reactor)
