"""Building blocks of the emulator's events, in the exact shapes Asterisk 22 sends.

Header order and names follow the recordings in shared/reference/asterisk-22 (a channel block is
Channel, ChannelState, ChannelStateDesc, CallerIDNum, CallerIDName, ConnectedLineNum,
ConnectedLineName, Language, AccountCode, Context, Exten, Priority, Uniqueid, Linkedid, then one
``ChanVariable`` per manager.conf ``channelvars`` entry).  ``tests/test_ami_emulator.py``
checks every event the emulator can make against the recorded ones.
"""
from __future__ import annotations

import itertools
import uuid

from gateway.ami.message import AmiMessage

STATE_DESC = {0: "Down", 1: "Rsrvd", 2: "OffHook", 3: "Dialing", 4: "Ring", 5: "Ringing", 6: "Up",
              7: "Busy"}

CHANNEL_KEYS = ("Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
                "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context",
                "Exten", "Priority", "Uniqueid", "Linkedid")

# Event -> class (the first word of its Privilege header), as recorded.
EVENT_CLASS = {
    "Newchannel": "call", "Newstate": "call", "NewCallerid": "call", "NewConnectedLine": "call",
    "Hangup": "call", "HangupRequest": "call", "SoftHangupRequest": "call", "DialBegin": "call",
    "DialEnd": "call", "LocalBridge": "call", "BridgeCreate": "call", "BridgeEnter": "call",
    "BridgeLeave": "call", "BridgeDestroy": "call", "OriginateResponse": "call",
    "DeviceStateChange": "call", "Newexten": "dialplan", "VarSet": "dialplan",
    "QueueCallerJoin": "agent", "QueueCallerLeave": "agent", "QueueCallerAbandon": "agent",
    "AgentCalled": "agent", "AgentConnect": "agent", "AgentComplete": "agent",
    "AgentRingNoAnswer": "agent", "QueueMemberStatus": "agent", "DTMFBegin": "dtmf",
    "DTMFEnd": "dtmf", "FullyBooted": "system", "Shutdown": "system", "Reload": "system",
}


class Ids:
    """Uniqueids like Asterisk's (``<boot epoch>.<n>``) and Local/PJSIP channel suffixes."""

    def __init__(self, epoch: int):
        self.epoch = int(epoch)
        self._n = itertools.count(1)
        self._suffix = itertools.count(1)

    def uniqueid(self) -> str:
        return f"{self.epoch}.{next(self._n)}"

    def suffix(self) -> str:
        return f"{next(self._suffix):08x}"

    @staticmethod
    def bridge() -> str:
        return str(uuid.uuid4())


class Chan:
    """A channel as the emulator tells it."""

    def __init__(self, name: str, uniqueid: str, linkedid: str | None = None, *, state: int = 0,
                 cid_num: str = "<unknown>", cid_name: str = "<unknown>", context: str = "default",
                 exten: str = "s", priority: int = 1, channelvars=("HOTLINE", "ORDER_CODE"),
                 variables: dict | None = None, language: str = "en"):
        self.name = name
        self.uniqueid = uniqueid
        self.linkedid = linkedid or uniqueid
        self.state = state
        self.cid_num, self.cid_name = cid_num, cid_name
        self.conn_num, self.conn_name = "<unknown>", "<unknown>"
        self.context, self.exten, self.priority = context, exten, priority
        self.language = language
        self.channelvars = tuple(channelvars)
        self.vars = dict(variables or {})

    def block(self, prefix: str = "") -> list[tuple[str, str]]:
        p = prefix
        out = [(p + "Channel", self.name), (p + "ChannelState", str(self.state)),
               (p + "ChannelStateDesc", STATE_DESC.get(self.state, "Unknown")),
               (p + "CallerIDNum", self.cid_num), (p + "CallerIDName", self.cid_name),
               (p + "ConnectedLineNum", self.conn_num), (p + "ConnectedLineName", self.conn_name),
               (p + "Language", self.language), (p + "AccountCode", ""),
               (p + "Context", self.context), (p + "Exten", self.exten),
               (p + "Priority", str(self.priority)), (p + "Uniqueid", self.uniqueid),
               (p + "Linkedid", self.linkedid)]
        for v in self.channelvars:
            out.append((p + "ChanVariable", f"{v}={self.vars.get(v, '')}"))
        return out


def event(name: str, *parts, cls: str | None = None) -> AmiMessage:
    """``Event: name`` + ``Privilege: cls,all`` + the parts (lists of pairs), in order."""
    pairs = [("Event", name), ("Privilege", f"{cls or EVENT_CLASS.get(name, 'call')},all")]
    for part in parts:
        pairs.extend(part)
    return AmiMessage(pairs)


def list_item(name: str, *parts) -> AmiMessage:
    """An event of an action's list (no Privilege header)."""
    pairs = [("Event", name)]
    for part in parts:
        pairs.extend(part)
    return AmiMessage(pairs)


def response(action_id: str | None, status: str = "Success", *pairs) -> AmiMessage:
    head = [("Response", status)]
    if action_id is not None:
        head.append(("ActionID", action_id))
    return AmiMessage(head + list(pairs))


class ChannelModel:
    """What the emulator believes is live, kept from the events it sends (scripted or replayed),
    so that CoreShowChannels and QueueStatus answer like Asterisk would at that moment."""

    def __init__(self):
        self.channels: dict[str, dict] = {}      # uniqueid -> {"block", "created", "app", ...}
        self.queue_callers: dict[str, dict] = {}  # uniqueid -> {"queue", "joined", "block"}

    def clear(self):
        self.channels.clear()
        self.queue_callers.clear()

    def _block(self, msg: AmiMessage, prefix: str = "") -> list[tuple[str, str]] | None:
        uid = msg.get(prefix + "Uniqueid")
        if not uid or uid == "<unknown>" or not msg.get(prefix + "Channel") \
                or (prefix + "Linkedid") not in msg:
            return None
        n = len(prefix)
        keys = {prefix + k for k in CHANNEL_KEYS}
        keys.add(prefix + "ChanVariable")
        return [(k[n:], v) for k, v in msg if k in keys]

    def apply(self, msg: AmiMessage, now: float) -> None:
        name = msg.name
        for prefix in ("", "Dest", "LocalOne", "LocalTwo"):
            block = self._block(msg, prefix)
            if block is None:
                continue
            uid = dict(block)["Uniqueid"]
            ch = self.channels.get(uid)
            if ch is None:
                if name == "Hangup" and prefix == "":
                    continue
                ch = self.channels[uid] = {"created": now, "app": "", "appdata": "", "bridge": ""}
            ch["block"] = block
        uid = msg.get("Uniqueid")
        if name == "Hangup":
            self.channels.pop(uid, None)
            self.queue_callers.pop(uid, None)
        elif name == "Newexten" and uid in self.channels:
            self.channels[uid]["app"] = msg.get("Application", "")
            self.channels[uid]["appdata"] = msg.get("AppData", "")
        elif name == "BridgeEnter" and uid in self.channels:
            self.channels[uid]["bridge"] = msg.get("BridgeUniqueid", "")
        elif name == "BridgeLeave" and uid in self.channels:
            self.channels[uid]["bridge"] = ""
        elif name == "QueueCallerJoin" and uid in self.channels:
            self.queue_callers[uid] = {"queue": msg.get("Queue"), "joined": now}
        elif name in ("QueueCallerLeave", "QueueCallerAbandon"):
            self.queue_callers.pop(uid, None)

    def core_show_channels(self, action_id: str, now: float) -> list[AmiMessage]:
        out = []
        for ch in self.channels.values():
            secs = int(max(0, now - ch["created"]))
            dur = f"{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"
            out.append(list_item("CoreShowChannel", [("ActionID", action_id)], ch["block"],
                                 [("BridgeId", ch["bridge"]), ("Application", ch["app"]),
                                  ("ApplicationData", ch["appdata"]), ("Duration", dur)]))
        return out
