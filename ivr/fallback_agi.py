"""Classic-AGI fallback for the order call, for when the gateway (FastAGI) is down.

Asterisk runs it as a child process when `AGI(agi://gateway/order)` fails (AGISTATUS=FAILURE):

    same => n,AGI(agi://${GATEWAY}/order?order=${ORDER_CODE})      ; GATEWAY=host:port in [globals]
    same => n,GotoIf($["${AGISTATUS}" = "FAILURE"]?fallback)
    ...
    same => n(fallback),AGI(/opt/yihu/.venv/bin/python,-m,ivr.fallback_agi,--spool,/var/spool/yihu/keypad)

It reads the order the same way (recorded prompts + digits), takes one key, and spools the answer
to disk (written, fsync'd and renamed into spool/new/ BEFORE it is confirmed to the commander).
The gateway takes the spool in on restart (ivr.spool.SpoolIntake).  Uses pyst2's AGI class; it
runs outside the gateway process, so it is plain blocking code.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import uuid

from ivr.prompts import STATUS_BY_DIGIT, STATUS_PROMPT, sound

ANSWER_KEYS = "01234"
_SAFE = re.compile(r"[^0-9A-Za-z._-]")


def spool_answer(spool_dir: str, record: dict) -> str:
    """Write one record durably: tmp file, fsync, rename into new/, fsync the directory."""
    tmp_dir, new_dir = os.path.join(spool_dir, "tmp"), os.path.join(spool_dir, "new")
    os.makedirs(tmp_dir, exist_ok=True)
    os.makedirs(new_dir, exist_ok=True)
    name = f"{time.time_ns()}-{_SAFE.sub('_', record.get('call_id', ''))[:60]}-{uuid.uuid4().hex[:8]}.json"
    tmp = os.path.join(tmp_dir, name)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(new_dir, name))
    fd = os.open(new_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return name


def _play(agi, name: str, escape: str = "") -> str:
    """STREAM FILE; pyst2 raises on any result=-1, but a missing file answers -1 on a live
    channel (no HANGUP line): that prompt is skipped.  A caller really gone fails the next
    command (HANGUP, then 511), which pyst2 does raise on."""
    from asterisk.agi import AGIAppError
    try:
        return agi.stream_file(name, escape)
    except AGIAppError:
        print(f"yihu fallback: prompt {name} could not be played", file=sys.stderr)
        return ""


def _menu(agi, name: str, timeout_ms: int) -> str:
    """GET DATA for one key; where its prompt cannot be played, the key is still read."""
    from asterisk.agi import AGIAppError
    try:
        return agi.get_data(name, timeout_ms, 1)[:1]
    except AGIAppError:
        print(f"yihu fallback: menu {name} could not be played", file=sys.stderr)
        return agi.wait_for_digit(timeout_ms)


def order_call(agi, spool_dir: str, *, menu_timeout_ms: int = 5000) -> str:
    from asterisk.agi import AGIException
    env = agi.env
    record = {"call_id": env.get("agi_uniqueid", ""), "script": "order-fallback", "digits": "",
              "order_code": None, "phone": None, "delivery_id": None, "token": None,
              "started_at": time.time(), "spooled_at": None}
    try:
        agi.answer()
        code = agi.get_variable("ORDER_CODE") or ""
        if not re.fullmatch(r"[0-9A-Za-z]{1,8}", code):
            _play(agi, sound("system_error"))
            agi.hangup()
            return "error"
        # The call's one-time token goes into the record: the gateway checks it on intake, so a
        # file dropped into the spool cannot answer for a team either.
        record.update(order_code=code, phone=agi.get_variable("YIHU_PHONE") or None,
                      delivery_id=agi.get_variable("YIHU_DELIVERY") or None,
                      token=agi.get_variable("YIHU_TOKEN") or None)
        menu = sound("order_menu")
        no_input = plays = 0
        while no_input < 2 and plays < 4:
            plays += 1
            digit = (_play(agi, sound("order_intro"), ANSWER_KEYS) or agi.say_digits(code, ANSWER_KEYS)
                     or _menu(agi, menu, menu_timeout_ms))
            if digit == "0":
                continue
            if digit in STATUS_BY_DIGIT:
                record.update(digits=digit, spooled_at=time.time())
                spool_answer(spool_dir, record)          # durable before it is confirmed
                _play(agi, sound("recorded"))
                _play(agi, sound(STATUS_PROMPT[STATUS_BY_DIGIT[digit]]))
                _play(agi, sound("goodbye"))
                agi.hangup()
                return "recorded"
            no_input += 1
        record.update(note="no answer: no key pressed", spooled_at=time.time())
        spool_answer(spool_dir, record)
        _play(agi, sound("no_input_goodbye"))
        agi.hangup()
        return "no_answer"
    except AGIException:
        # Hung up (or Asterisk said something pyst2 cannot read): keep what we know.
        if not record["digits"] and record["order_code"]:
            record.update(note="no answer: hung up before keying an answer", spooled_at=time.time())
            spool_answer(spool_dir, record)
        return "hung_up"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Yihu classic-AGI fallback: spool keypad answers to disk")
    ap.add_argument("--spool", default=os.environ.get("YIHU_KEYPAD_SPOOL", "/var/spool/yihu/keypad"))
    ap.add_argument("--menu-timeout-ms", type=int, default=5000)
    args = ap.parse_args(argv)
    from asterisk.agi import AGI
    with open(os.devnull, "w") as quiet:      # pyst2 traces every line to stderr
        agi = AGI(stdin=sys.stdin, stdout=sys.stdout, stderr=quiet)
        order_call(agi, args.spool, menu_timeout_ms=args.menu_timeout_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
