"""The real gateway as a child process in drill mode (the built-in emulators), for crash tests.

Starts `python -m gateway.cli run` with a configuration of its own (every port 0), waits for it
to be up by reading its JSON log, kills it (-9) or stops it (SIGTERM).  Orders are committed to
its database from here, as the CLI does; the gateway's fan-out sweep picks them up.  What the
emulated network saw is read from DATA_DIR/network.jsonl, and counted by the test's own code.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROSTER = ROOT / "deploy" / "examples" / "roster.yaml"
ORDER_TEXT = "白塔镇山体滑坡，请立即赶赴现场，带好破拆装备。"   # with the header ~89 UCS-2 characters: 2 segments,
# the order code in both (so each order's parts are told apart from the others')


def pause(seconds: float) -> None:
    """Real time passing for a child process (never product code; no Clock reaches another process)."""
    threading.Event().wait(seconds)


def config_text(data_dir: Path, database_url: str, **sections) -> str:
    base = {
        "gateway": {"data_dir": str(data_dir), "database_url": database_url, "mode": "drill"},
        "http": {"port": 0},
        "log": {"format": "json"},
        "embedded": {"modems": 4, "segment_seconds": 0.03, "ami_port": 0},
        "ivr": {"port": 0, "speech": False, "call_retry_delay_s": 0.5, "ring_timeout_s": 5.0},
        "sms": {"unknown_wait": 1.0, "retry_delay": 0.5, "late_answer_grace": 1.0},
        # the ladder would start at 3 min; these trials look at the order's own SMS and calls
        "escalation": {"refresh_seconds": 0.3, "receipt_ladder": [{"minutes": 60, "action": "supervisor"}]},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    lines = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        for k, v in values.items():
            lines.append(f"{k} = {_toml(v)}")
    return "\n".join(lines) + "\n"


def _toml(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(v)


class GatewayProcess:
    def __init__(self, tmp: Path, database_url: str, **sections):
        self.tmp = tmp
        self.data_dir = tmp / "data"
        self.database_url = database_url
        self.config = tmp / "yihu.toml"
        self.config.write_text(config_text(self.data_dir, database_url, **sections))
        self.proc: subprocess.Popen | None = None
        self.runs = 0
        self.log_path: Path | None = None

    @property
    def journal(self) -> Path:
        return self.data_dir / "network.jsonl"

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until the AMI link is logged in (every part is up by then)."""
        self.runs += 1
        self.log_path = self.tmp / f"run{self.runs}.log"
        with self.log_path.open("w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "--config", str(self.config)],
                                         stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited at start ({self.proc.returncode}):\n{self.log()[-3000:]}")
            if "logged in as" in self.log():
                return
            pause(0.05)
        raise AssertionError(f"gateway not up within {timeout} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def records(self) -> list[dict]:
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class OutageProxy:
    """A TCP proxy on loopback port 0 in front of PostgreSQL: `outage()` cuts every connection and
    refuses new ones (accepted, then closed at once) until `restore()` — the database gone."""

    def __init__(self, upstream_host: str, upstream_port: int):
        import socket
        self.upstream = (upstream_host, upstream_port)
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.down = False
        self.pairs: list = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            try:
                up = socket.create_connection(self.upstream, timeout=5)
                up.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                if self.down:            # the outage began while we connected upstream
                    client.close()
                    up.close()
                    continue
                self.pairs.append((client, up))
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def outage(self):
        import socket
        with self.lock:
            self.down = True
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass

    def restore(self):
        self.down = False

    def close(self):
        self.closed = True
        self.outage()
        self.server.close()


class SqliteOutage:
    """SQLite 'gone' for the gateway: another process holds the write lock (BEGIN EXCLUSIVE)."""

    def __init__(self, path):
        import sqlite3
        self.conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)

    def outage(self):
        self.conn.execute("BEGIN EXCLUSIVE")

    def restore(self):
        self.conn.execute("ROLLBACK")

    def close(self):
        self.conn.close()
