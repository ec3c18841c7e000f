"""Configuration: one TOML file, validated as a whole before anything starts.

Each section is a frozen dataclass owned by the part it configures; this module only knows how
to check a TOML table against a dataclass (unknown keys, wrong types) and gathers every problem
into one ConfigError whose lines each name the key involved.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """The configuration is unusable; str() is one line per problem, each naming its key."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


# --- the gateway's own sections ---------------------------------------------------------------

@dataclass(frozen=True)
class GatewaySection:
    node_name: str = "yihu-1"              # this node in logs, /health and AMI ActionIDs; unique among the nodes sharing one database
    data_dir: str = "var"                  # created on first run; the SQLite file lives here
    database_url: str = ""                 # empty: SQLite in data_dir; postgresql+psycopg://... for production
    db_threads: int = 0                    # 0: 1 for SQLite, 4 for PostgreSQL
    time_zone: str = "Asia/Shanghai"       # the center's: day/night rules, daily figures, messages
    mode: str = ""                         # "live" (real modems and Asterisk) or "drill" (the built-in emulators); empty: live, or drill when there is no configuration file and no database URL at all
    embedded: bool | None = None           # the older name: true means mode "drill", false "live"
    db_write_alarm_s: float = 30.0         # a state write not committed by then raises the alarm; it is retried until it commits
    db_statement_timeout_s: float = 30.0   # a database statement running longer fails (PostgreSQL statement_timeout; SQLite interrupted)
    db_pool_timeout_s: float = 30.0        # work waiting longer than this for a database thread or connection fails

    def __post_init__(self):
        from gateway.mode import MODES
        if self.mode not in MODES + ("",):
            raise ValueError(f"mode must be \"live\" or \"drill\", got {self.mode!r}")
        if self.db_statement_timeout_s <= 0 or self.db_pool_timeout_s <= 0:
            raise ValueError("db_statement_timeout_s and db_pool_timeout_s must be positive")


@dataclass(frozen=True)
class EmbeddedSection:
    """The built-in emulators the embedded default (and drills) run on."""
    modems: int = 4                        # emulated GSM modems on pseudo-terminals
    segment_seconds: float = 3.0           # how long an emulated modem takes per SMS segment
    ami_port: int = 15038                  # the emulated Asterisk's AMI port (loopback only); 0: any free port
    asterisk: str = "own"                  # "own": this node runs its emulated Asterisk; "127.0.0.1:PORT": one shared by several drill nodes
    asterisk_secret_file: str = ""         # with a shared emulated Asterisk: the file holding its AMI secret

    def __post_init__(self):
        if not 1 <= self.modems <= 64:
            raise ValueError(f"modems must be 1-64, got {self.modems}")
        if self.segment_seconds < 0:
            raise ValueError("segment_seconds must not be negative")
        if self.asterisk != "own":
            host, _, port = self.asterisk.rpartition(":")
            # an emulator started elsewhere, but on this machine: a drill never reaches out
            if host not in LOOPBACK_HOSTS or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"asterisk must be \"own\" or a loopback \"127.0.0.1:PORT\" "
                                 f"(an emulated Asterisk on this machine), got {self.asterisk!r}")
            if not self.asterisk_secret_file:
                raise ValueError("asterisk names a shared emulated Asterisk: set asterisk_secret_file")

    @property
    def shared_asterisk(self) -> tuple[str, int] | None:
        """(host, port) of the emulated Asterisk this node links to, when it does not run its own."""
        if self.asterisk == "own":
            return None
        host, _, port = self.asterisk.rpartition(":")
        return host.strip("[]"), int(port)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class HttpSection:
    interface: str = "127.0.0.1"           # where /health, /metrics, /board and the API listen
    port: int = 8080                       # 0: any free port
    tls_cert: str = ""                     # PEM certificate (chain) file: serve HTTPS; empty: plain HTTP
    tls_key: str = ""                      # PEM private key file of tls_cert (empty: in tls_cert)
    refusal_burst: int = 20                # refused requests (bad key, low scope) a peer may make per window
    refusal_window_s: float = 60.0         # past the burst the peer gets 429 until its window ends

    def __post_init__(self):
        if self.tls_key and not self.tls_cert:
            raise ValueError("tls_key is set but tls_cert is not")
        if self.refusal_burst < 1 or self.refusal_window_s <= 0:
            raise ValueError("refusal_burst must be 1 or more and refusal_window_s above 0")


@dataclass(frozen=True)
class OrdersSection:
    max_sms_parts: int = 8                 # an order whose SMS needs more parts is refused at creation
    major_report_minutes: float = 30.0     # a major order: each team on scene reports the situation this often
    pdf_converter: str = ""                # prints feedback forms as PDF; empty: chromium or wkhtmltopdf on PATH

    def __post_init__(self):
        if not 1 <= self.max_sms_parts <= 255:
            raise ValueError(f"max_sms_parts must be 1-255, got {self.max_sms_parts}")
        if not 0 < self.major_report_minutes <= 24 * 60:
            raise ValueError(f"major_report_minutes must be above 0 and at most 1440, got {self.major_report_minutes:g}")


@dataclass(frozen=True)
class LogSection:
    format: str = "text"                   # text / json
    level: str = "info"                    # debug / info / warn / error


def _sections() -> dict[str, type]:
    """Section name -> dataclass.  Parts register here; imported lazily to keep start-up light."""
    sections: dict[str, type] = {"gateway": GatewaySection, "http": HttpSection, "log": LogSection,
                                 "embedded": EmbeddedSection, "orders": OrdersSection}
    for name, dotted in _PART_SECTIONS.items():
        module, _, cls = dotted.rpartition(".")
        mod = __import__(module, fromlist=[cls])
        sections[name] = getattr(mod, cls)
    return sections


# Sections whose dataclass lives with the part it configures.
_PART_SECTIONS: dict[str, str] = {
    "events": "adapters.events.EventsSection",
    "webhooks": "adapters.webhooks.WebhookSection",
    "ami": "gateway.ami.config.AmiSection",
    "ivr": "ivr.config.IvrSection",
    "sms": "sms.config.SmsConfig",
    "escalation": "gateway.escalation.config.EscalationConfig",
    "leaders": "gateway.leaders.config.LeadersSection",
    "hotline": "gateway.hotline.config.HotlineSection",
    "cap": "gateway.cap.config.CapSection",
    "cluster": "gateway.cluster.config.ClusterSection",
}


@dataclass(frozen=True)
class Config:
    path: str | None
    sections: dict[str, Any] = field(default_factory=dict)
    mode_reason: str = ""                  # why this mode runs, for the start-up log

    @property
    def mode(self) -> str:
        return self.sections["gateway"].mode

    @property
    def drill(self) -> bool:
        from gateway.mode import DRILL
        return self.mode == DRILL

    def __getattr__(self, name: str) -> Any:
        try:
            return self.sections[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def database_url(self) -> str:
        gw = self.sections["gateway"]
        if gw.database_url:
            return gw.database_url
        from gateway.mode import sqlite_file
        from gateway.storage import default_sqlite_url
        return default_sqlite_url(self.data_dir, sqlite_file(self.mode))

    @property
    def data_dir(self) -> Path:
        gw = self.sections["gateway"]
        p = Path(gw.data_dir)
        if not p.is_absolute() and self.path:
            p = Path(self.path).resolve().parent / p
        return p


# --- validation -------------------------------------------------------------------------------

def _type_name(t: Any) -> str:
    origin = typing.get_origin(t)
    if origin in (list, tuple):
        args = typing.get_args(t)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(t) if a is not type(None))
    if dataclasses.is_dataclass(t):
        return "table"
    return {str: "string", int: "integer", float: "number", bool: "true/false", dict: "table"}.get(t, str(t))


_SECRET_WORDS = ("secret", "password", "token", "pin")


def _shown(key: str, value: Any) -> str:
    """A value as it may appear in an error: secrets are never echoed."""
    leaf = key.rsplit(".", 1)[-1].lower()
    if any(w in leaf for w in _SECRET_WORDS):
        return f"{type(value).__name__} (value hidden)"
    return f"{type(value).__name__} {value!r}"


def _coerce(value: Any, t: Any, key: str, problems: list[str]) -> Any:
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if value is None:
            return None
        for a in args:
            sub: list[str] = []
            out = _coerce(value, a, key, sub)
            if not sub:
                return out
        problems.append(f"{key}: expected {_type_name(t)}, got {_shown(key, value)}")
        return None
    if origin in (list, tuple):
        if not isinstance(value, list):
            problems.append(f"{key}: expected {_type_name(t)}, got {_shown(key, value)}")
            return ()
        (inner,) = typing.get_args(t)[:1] or (Any,)
        items = [_coerce(v, inner, f"{key}[{i}]", problems) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(t):
        if not isinstance(value, dict):
            problems.append(f"{key}: expected a table, got {_shown(key, value)}")
            return t()
        return build_section(t, value, key, problems)
    if t is Any:
        return value
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if t is dict:
        if isinstance(value, dict):
            return value
    elif isinstance(value, t) and not (t is int and isinstance(value, bool)):
        return value
    problems.append(f"{key}: expected {_type_name(t)}, got {_shown(key, value)}")
    return None


def build_section(cls: type, table: dict, prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in table.items():
        full = f"{prefix}.{key}"
        if key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            problems.append(f"{full}: unknown key (known keys in [{prefix}]: {known})")
            continue
        before = len(problems)
        coerced = _coerce(value, hints[key], full, problems)
        if len(problems) == before:
            kwargs[key] = coerced
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as e:   # a section's own __post_init__ checks
        first, _, rest = str(e).partition(" ")
        if first.rstrip(":") in fields and rest:    # "auth must be ..." -> "ami.auth: must be ..."
            problems.append(f"{prefix}.{first.rstrip(':')}: {rest}")
        else:
            problems.append(f"{prefix}: {e}")
        return cls()
    return obj


def _check_values(cfg: Config, problems: list[str]) -> None:
    log = cfg.sections["log"]
    if log.format not in ("text", "json"):
        problems.append(f"log.format: must be 'text' or 'json', got {log.format!r}")
    if log.level not in ("debug", "info", "warn", "error"):
        problems.append(f"log.level: must be debug, info, warn or error, got {log.level!r}")
    http = cfg.sections["http"]
    if not 0 <= http.port <= 65535:
        problems.append(f"http.port: must be 0-65535, got {http.port}")
    for key in ("tls_cert", "tls_key"):
        path = getattr(http, key)
        if path and not os.access(path, os.R_OK):
            problems.append(f"http.{key}: cannot read {path}")
    gw = cfg.sections["gateway"]
    try:
        from zoneinfo import ZoneInfo
        ZoneInfo(gw.time_zone)
    except Exception:  # noqa: BLE001 - any failure means the name is unusable
        problems.append(f"gateway.time_zone: unknown time zone {gw.time_zone!r}")
    if gw.database_url:
        from sqlalchemy.engine import make_url
        try:
            u = make_url(gw.database_url)
            if u.get_backend_name() not in ("sqlite", "postgresql"):
                problems.append(f"gateway.database_url: only sqlite and postgresql are supported, got {u.get_backend_name()!r}")
        except Exception:  # noqa: BLE001
            problems.append("gateway.database_url: not a database URL")


def _ami_secret_from_file(ami, problems: list[str]):
    """ami.secret_file read into ami.secret, so the configuration file itself holds no secret."""
    if not ami.secret_file:
        return ami
    if ami.secret:
        problems.append("ami.secret_file: give ami.secret or ami.secret_file, not both")
        return ami
    try:
        lines = Path(ami.secret_file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        problems.append(f"ami.secret_file: cannot read {ami.secret_file} ({why})")
        return ami
    secret = lines[0].strip() if lines else ""
    if not secret:
        problems.append(f"ami.secret_file: {ami.secret_file} is empty")
        return ami
    return dataclasses.replace(ami, secret=secret)


def load_config(path: str | os.PathLike | None, overrides: dict | None = None) -> Config:
    """Read and validate; raise ConfigError listing every problem.  path=None: the embedded default."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as e:
            raise ConfigError([f"{p}: cannot read the configuration file ({e.strerror})"]) from None
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError([f"{p}: not UTF-8 text"]) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError([f"{p}: not valid TOML: {e}"]) from None
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
    problems: list[str] = []
    known = _sections()
    built: dict[str, Any] = {}
    for name, value in data.items():
        if name not in known:
            problems.append(f"{name}: unknown section (known: {', '.join(sorted(known))})")
            continue
        if not isinstance(value, dict):
            problems.append(f"{name}: must be a table ([{name}])")
            continue
        built[name] = build_section(known[name], value, name, problems)
    for name, cls in known.items():
        built.setdefault(name, cls())
    # One time zone for the center unless [escalation] names its own.
    esc = built.get("escalation")
    if esc is not None and "timezone" not in data.get("escalation", {}) and hasattr(esc, "timezone"):
        try:
            built["escalation"] = esc = dataclasses.replace(esc, timezone=built["gateway"].time_zone)
        except ValueError:
            pass        # an unknown gateway.time_zone is reported below, once, by its own name
    if esc is not None and hasattr(esc, "major_report_minutes"):
        # The cadence is an order rule; the escalation engine that chases it reads it from its own config.
        built["escalation"] = dataclasses.replace(esc, major_report_minutes=built["orders"].major_report_minutes)
    from gateway.mode import DRILL, MODES, hardware_conflicts, resolve_mode
    raw_gateway = data.get("gateway") if isinstance(data.get("gateway"), dict) else {}
    mode, why = resolve_mode(raw_gateway, has_file=path is not None)
    if mode is None:
        problems.append(why)
    elif mode in MODES:           # anything else was reported as gateway.mode by its section
        built["gateway"] = dataclasses.replace(built["gateway"], mode=mode)
        if mode == DRILL:
            problems.extend(hardware_conflicts(built))
        else:
            built["ami"] = _ami_secret_from_file(built["ami"], problems)
    cfg = Config(path=str(path) if path is not None else None, sections=built, mode_reason=why)
    _check_values(cfg, problems)
    if problems:
        raise ConfigError(problems)
    return cfg


def redact_url(url: str) -> str:
    """A database URL fit for logs and errors: the password never appears."""
    from sqlalchemy.engine import make_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "<unparseable database URL>"


def _field_comments(cls) -> dict[str, str]:
    """The trailing '# ...' comment of each field in the class source: its meaning."""
    import inspect
    import re
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    last = None
    for line in source.splitlines():
        m = re.match(r"\s{4}(\w+)\s*:[^#]*?(?:#\s*(.*))?$", line)
        if m and not line.strip().startswith(("def ", "return", "#")):
            last = m.group(1)
            out[last] = (m.group(2) or "").strip()
        elif last and re.match(r"\s+#\s*(.*)$", line) and out.get(last):
            out[last] += " " + re.match(r"\s+#\s*(.*)$", line).group(1).strip()
        else:
            last = None
    return out


def reference_rows() -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for every key of every section: the README's reference is
    checked against this, so documentation and code cannot drift apart."""
    rows = []
    for name, cls in _sections().items():
        hints = typing.get_type_hints(cls)
        comments = _field_comments(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = f.default_factory()  # type: ignore[misc]
            else:
                default = None
            if dataclasses.is_dataclass(default) or (isinstance(default, (list, tuple)) and default
                                                     and dataclasses.is_dataclass(default[0])):
                shown = "(see below)"
            elif not f.repr:
                shown = '""' if default in ("", None) else "(hidden)"
            else:
                shown = json_literal(default)
            rows.append((f"{name}.{f.name}", _type_name(hints[f.name]), shown, comments.get(f.name, "")))
    return rows


def reference_markdown() -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, kind, default, meaning in reference_rows():
        lines.append(f"| `{key}` | {kind} | `{default}` | {meaning.replace('|', '/')} |")
    return "\n".join(lines)


def json_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "(none)"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(json_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


if __name__ == "__main__":     # python -m gateway.config: the README's configuration table
    print(reference_markdown())
