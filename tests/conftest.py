"""Shared fixtures.

Database tests run twice: on SQLite and on PostgreSQL.  PostgreSQL is a real component: when
it is unreachable the PostgreSQL tests FAIL (never skip), unless the developer explicitly
runs with YIHU_TEST_POSTGRES=off.  Each test gets its own PostgreSQL schema, so concurrent runs
and parallel developers never see each other's rows.
"""
from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

POSTGRES_URL = os.environ.get("YIHU_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
POSTGRES_OFF = os.environ.get("YIHU_TEST_POSTGRES", "").lower() == "off"

BACKENDS = ["sqlite"] + ([] if POSTGRES_OFF else ["postgres"])


def _postgres_schema_url():
    """Create a fresh schema; return (url with search_path, drop function)."""
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as e:  # noqa: BLE001 - any failure to reach PostgreSQL is a test failure
        admin.dispose()
        pytest.fail(f"PostgreSQL unreachable at {POSTGRES_URL.split('@')[-1]}: {e.__class__.__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''} (set YIHU_TEST_POSTGRES=off to run without it "
                    "on a developer machine; CI never does)", pytrace=False)
    sep = "&" if "?" in POSTGRES_URL else "?"
    url = f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"

    def drop():
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    return url, drop


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """An empty database URL (no tables) on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'yihu.sqlite'}"
    else:
        url, drop = _postgres_schema_url()
        try:
            yield url
        finally:
            drop()


@pytest.fixture
def migrated_url(db_url):
    """A database URL upgraded to the head migration."""
    from gateway.storage.migrate import upgrade
    upgrade(db_url)
    return db_url


@pytest.fixture
def pg_migrated_url(request):
    """PostgreSQL only (a test about its sequences, locks or pipelines): a fresh schema at the
    head migration.  Fails, never skips, without PostgreSQL."""
    from gateway.storage.migrate import upgrade
    if POSTGRES_OFF:
        pytest.fail(f"{request.node.name} is about PostgreSQL: it needs PostgreSQL")
    url, drop = _postgres_schema_url()
    request.addfinalizer(drop)
    upgrade(url)
    return url


def _started_database(url):
    from twisted.internet import reactor

    from gateway.storage import Database
    db = Database(reactor, url)
    db.start()
    return db


@pytest.fixture
def database(migrated_url):
    """A started gateway Database on the real reactor (pytest-twisted), stopped afterwards."""
    db = _started_database(migrated_url)
    yield db
    db.stop()


@pytest.fixture
def pg_database(pg_migrated_url):
    """PostgreSQL only: a started gateway Database on a fresh schema at head (pytest-twisted)."""
    db = _started_database(pg_migrated_url)
    yield db
    db.stop()


# --- no secret in any log line, error message, event or subprocess output (tests/secrets.py) ------

def _install_secret_watch():
    import logging
    import subprocess
    import sys

    from twisted.internet import utils
    from twisted.logger import globalLogPublisher

    from tests.secrets import SecretWatch
    watch = SecretWatch()
    globalLogPublisher.addObserver(watch.twisted_event)
    logging.getLogger().addHandler(watch.stdlib_handler())
    logging.getLogger().setLevel(min(logging.getLogger().level or logging.DEBUG, logging.DEBUG))

    real_run = subprocess.run

    def run(*args, **kw):
        result = real_run(*args, **kw)
        watch.process_output(result.stdout, result.stderr, " ".join(map(str, (args[0] if args else kw["args"])))[:80])
        return result
    subprocess.run = run

    real_gpoav = utils.getProcessOutputAndValue

    def get_output(executable, args=(), *a, **kw):
        d = real_gpoav(executable, args, *a, **kw)

        def seen(result):
            watch.process_output(result[0], result[1], " ".join(map(str, args))[:80])
            return result
        return d.addCallback(seen)
    utils.getProcessOutputAndValue = get_output

    from twisted.internet import reactor
    real_spawn = reactor.spawnProcess

    def spawn(proto, executable, args=(), *a, **kw):
        what = " ".join(map(str, args))[:80]
        for name, stream in (("outReceived", "stdout"), ("errReceived", "stderr")):
            real = getattr(proto, name)

            def received(data, real=real, stream=stream):
                watch.scan(data, f"{stream} of {what}")
                return real(data)
            setattr(proto, name, received)
        return real_spawn(proto, executable, args, *a, **kw)
    reactor.spawnProcess = spawn

    # every event is built in one place (gateway/eventlog.build_event) before it is logged
    from gateway import eventlog
    real_build = eventlog.build_event

    def build_event(kind, payload, at, **kw):
        watch.event(kind, payload)
        return real_build(kind, payload, at, **kw)
    eventlog.build_event = build_event
    from tests import _orders_rig
    real_fake = _orders_rig.FakeEvents.publish

    def fake_publish(self, kind, payload):
        watch.event(kind, payload)
        return real_fake(self, kind, payload)
    _orders_rig.FakeEvents.publish = fake_publish
    sys.modules[__name__].SECRET_WATCH = watch
    return watch


SECRET_WATCH = None


def pytest_configure(config):
    _install_secret_watch()


@pytest.fixture(autouse=True)
def no_secret_in_logs(request):
    """Fails the test (in its teardown) when anything it caused printed a known test secret."""
    watch = SECRET_WATCH
    before = len(watch.hits)
    yield
    new = watch.hits[before:]
    if new:
        pytest.fail("a secret leaked: " + "; ".join(f"{where}: ...{excerpt}..." for where, _s, excerpt in new[:5]),
                    pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    if SECRET_WATCH is not None and SECRET_WATCH.hits and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if SECRET_WATCH is not None and SECRET_WATCH.hits:
        terminalreporter.section("secrets leaked (tests/secrets.py)", red=True)
        for where, _s, excerpt in SECRET_WATCH.hits[:50]:
            terminalreporter.line(f"{where}: ...{excerpt}...")
