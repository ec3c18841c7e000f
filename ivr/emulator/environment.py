"""The agi_ environment block exactly as Asterisk 22 sends it (keys and order from the rig)."""
from __future__ import annotations

_counter = [0]


def agi_environment(script: str, *, host: str = "127.0.0.1", port: int = 4573,
                    channel: str = "PJSIP/trunk-00000001", uniqueid: str | None = None,
                    callerid: str = "unknown", calleridname: str = "unknown",
                    context: str = "default", extension: str = "s", priority: int = 1,
                    language: str = "en") -> list[tuple[str, str]]:
    if uniqueid is None:
        _counter[0] += 1
        uniqueid = f"1796012000.{_counter[0]}"
    return [
        ("agi_network", "yes"),
        ("agi_network_script", script),
        ("agi_request", f"agi://{host}:{port}/{script}"),
        ("agi_channel", channel),
        ("agi_language", language),
        ("agi_type", channel.split("/", 1)[0]),
        ("agi_uniqueid", uniqueid),
        ("agi_version", "22.10.1"),
        ("agi_callerid", callerid),
        ("agi_calleridname", calleridname),
        ("agi_callingpres", "67" if callerid == "unknown" else "0"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", "unknown"),
        ("agi_rdnis", "unknown"),
        ("agi_context", context),
        ("agi_extension", extension),
        ("agi_priority", str(priority)),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", ""),
        ("agi_threadid", "139824815441600"),
    ]


def environment_bytes(env: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{k}: {v}\n".encode() for k, v in env) + b"\n"
