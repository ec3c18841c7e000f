"""Live or drill: which one runs, and the few places that say so.

Live mode drives the real modems and the real Asterisk.  Drill mode runs every part on the
built-in emulators (GSM modems on pseudo-terminals, an emulated Asterisk on loopback); emulated
phones answer order calls.  The two must never be confused: a drill that looks live hides that no
SMS leaves, and a live run that looks like a drill is ignored.  So drill mode runs only when the
configuration says `gateway.mode = "drill"`, or when nothing at all was configured (no file and no
database URL: the embedded default `scripts/run` uses); a configuration that names real hardware
together with drill mode is refused; and in drill mode the log, /health, the board and every
event say so.  A drill *order* (an order marked drill, sent on real hardware in live mode) is the
other kind of drill: its messages carry DRILL_PREFIX and its figures are kept apart.
"""
from __future__ import annotations

LIVE, DRILL = "live", "drill"
MODES = (LIVE, DRILL)

DRILL_PREFIX = "【演练】"          # on every SMS and spoken message of a drill order

# What names real hardware: (section, key, what it is).  Any of these set (differing from its
# default) together with drill mode is a conflict: the operator meant one or the other.
HARDWARE_KEYS = (
    ("sms", "ports", "real modem ports"),
    ("sms", "sim_pin", "a SIM PIN"),
    ("ami", "host", "a real Asterisk host"),
    ("ami", "port", "a real Asterisk AMI port"),
    ("ami", "secret", "a real AMI secret"),
    ("ami", "secret_file", "a file with a real AMI secret"),
)


def resolve_mode(gateway_table: dict, has_file: bool) -> tuple[str | None, str]:
    """(mode, why) from the raw [gateway] table; mode None with `why` the problem when
    `mode` and the older `embedded` contradict each other."""
    mode = gateway_table.get("mode")
    embedded = gateway_table.get("embedded")
    if isinstance(embedded, bool):
        from_embedded = DRILL if embedded else LIVE
        if mode not in (None, "", from_embedded):
            return None, (f"gateway.embedded = {str(embedded).lower()} contradicts gateway.mode = {mode!r}; "
                          "keep only gateway.mode")
        mode = mode or from_embedded
        why = f"gateway.embedded = {str(embedded).lower()}"
    else:
        why = f"gateway.mode = {mode!r}"
    if mode:
        return mode, why
    if not has_file and not gateway_table.get("database_url"):
        return DRILL, "no configuration file and no database URL: the embedded default"
    return LIVE, "the default when a configuration file or a database URL is given"


def hardware_conflicts(sections: dict) -> list[str]:
    """One line per key that names real hardware while drill mode runs the emulators."""
    out = []
    for section, key, what in HARDWARE_KEYS:
        sec = sections.get(section)
        if sec is None:
            continue
        if getattr(sec, key) != getattr(type(sec)(), key):
            out.append(f"{section}.{key}: names {what}, but gateway.mode is \"drill\" (the built-in emulators); "
                       f"remove {section}.{key} for a drill, or set gateway.mode = \"live\"")
    return out


def mark_drill(payload: dict, drill: bool) -> dict:
    """An event payload with its `drill` flag: true in drill mode, and for anything about a drill
    order (or the payload already says `"drill": true`).  Called by gateway.eventlog.build_event,
    the one place events are built, so every event and webhook payload has it."""
    return {**payload, "drill": bool(drill or payload.get("drill"))}


def drill_text(text: str, drill: bool) -> str:
    """A message of a drill order, prefixed so that nobody takes it for a real incident."""
    if not drill or text.startswith(DRILL_PREFIX):
        return text
    return DRILL_PREFIX + text


def sqlite_file(mode: str) -> str:
    """The SQLite file in data_dir: a drill never writes into the live database."""
    return "drill.sqlite" if mode == DRILL else "yihu.sqlite"
