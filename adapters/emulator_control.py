"""/emulator: the drill mode's phones, reached through the gateway's own HTTP port.

    POST /emulator/sms           {"from": PHONE, "text": TEXT}   a phone texts the gateway (dispatch scope)
    GET  /emulator/inbox/PHONE   what that emulated phone received (read scope)

Mounted only in drill mode (`gateway.mode = "drill"`), where the modems and phones are emulated.  Why here and not a
port of its own or a journal file: the gateway already listens (loopback by default), already
checks keys and scopes and audits refusals; a second listener would need all of that again, and
a file can tell what phones received but cannot carry a reply in.  The SMS goes in exactly as
a commander's would: through an emulated modem's SIM, the serial driver, the inbound store and
the feedback engine.  Read keys see the inbox's sender numbers masked, as everywhere."""
from __future__ import annotations

import json

from twisted.web.server import NOT_DONE_YET

from adapters.api import ApiError, reply_failure, write_json
from adapters.http import JsonResource
from gateway.directory.phones import PhoneError, normalise

MAX_BODY = 4096
MAX_TEXT = 1000


def _phone(raw: str, field_name: str) -> str:
    try:
        return normalise(raw)
    except PhoneError as e:
        raise ApiError(422, f"{field_name}: {e}", field=field_name) from None


def inbox(network, phone: str) -> list[dict]:
    """The complete messages the phone shows, oldest first, with how many copies arrived."""
    first_seen: dict[str, float] = {}
    for part in network.parts.get(phone, []):
        first_seen.setdefault(part.text, part.at)
    messages = network.complete_messages(phone)
    order = sorted(messages, key=lambda text: min((at for t, at in first_seen.items() if t in text),
                                                  default=0.0))
    return [{"text": text, "copies": messages[text]} for text in order]


class EmulatorControl(JsonResource):
    isLeaf = True

    def __init__(self, auth, emulators):
        super().__init__()
        self.auth, self.emulators = auth, emulators

    def render(self, request):
        path = [p.decode("utf-8", "replace") for p in request.postpath if p]
        method = request.method.decode("ascii", "replace")
        if path == ["sms"] and method == "POST":
            scope, handler = "dispatch", self._sms
        elif len(path) == 2 and path[0] == "inbox" and method in ("GET", "HEAD"):
            scope, handler = "read", self._inbox
        else:
            write_json(request, 404, {"error": f"no such emulator resource: {method} /emulator/{'/'.join(path)}",
                                      "field": "path"})
            return NOT_DONE_YET
        d = self.auth.check(request, scope)
        def allowed(principal):
            request.principal = principal
            write_json(request, *handler(request, path))
        d.addCallback(allowed)
        d.addErrback(lambda f: reply_failure(request, f, f"{method} /emulator"))
        return NOT_DONE_YET

    def _sms(self, request, path):
        ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if ctype != b"application/json":
            raise ApiError(415, "the body must be application/json", field="Content-Type")
        raw = request.content.read(MAX_BODY + 1) if request.content else b""
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"request body over {MAX_BODY} bytes", field="body")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ApiError(400, f"request body is not JSON: {e}", field="body") from None
        if not isinstance(body, dict) or set(body) != {"from", "text"}:
            raise ApiError(422, 'the body is {"from": PHONE, "text": TEXT}, nothing else', field="body")
        if not isinstance(body["from"], str) or not isinstance(body["text"], str):
            raise ApiError(422, "from and text must be text", field="body")
        text = body["text"]
        if not text.strip() or len(text) > MAX_TEXT or "\x00" in text:
            raise ApiError(422, f"text: 1 to {MAX_TEXT} characters, no NUL", field="text")
        sender = _phone(body["from"], "from")
        modem = self.emulators.modems[0]
        modem.receive_sms(sender, text)
        return 202, {"accepted": True, "from": sender, "modem": modem.name,
                     "note": "stored on the emulated SIM; the gateway reads it as from any modem"}

    def _inbox(self, request, path):
        phone = _phone(path[1], "phone")
        principal = getattr(request, "principal", None)
        messages = inbox(self.emulators.network, phone)
        shown = phone if principal is not None and principal.sees_full_numbers else "****" + phone[-4:]
        return 200, {"phone": shown, "messages": messages}
