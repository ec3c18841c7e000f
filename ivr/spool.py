"""Taking in the keypad answers the classic-AGI fallback spooled while the gateway was down.

On start the gateway reads spool/new/*.json (oldest first), stores each raw in the keypad journal
(committed), hands answers to the feedback engine, and moves the file to done/ (failed/ when the
engine refused to take it, bad/ when the file is not a spool record, refused/ when its order-call
token does not hold: kept for a person to see).  With `tokens` (the gateway's CallTokenGate) a
record counts only with the call's own token, valid when the call began (`started_at`) and not
used before; otherwise it is journalled as refused and audited, and nothing reaches the engine.
File work runs in the reactor's thread pool, never on the reactor thread.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from gateway.interfaces import KeypadAnswer
from ivr.journal import KeypadEntry
from ivr.prompts import STATUS_BY_DIGIT

log = Logger()


def _list(new_dir: Path) -> list[str]:
    return sorted(p.name for p in new_dir.glob("*.json")) if new_dir.is_dir() else []


def _read(path: Path) -> bytes:
    return path.read_bytes()[:65536]


def _move(src: Path, dest_dir: Path) -> None:
    dest_dir.mkdir(parents=True, exist_ok=True)
    os.replace(src, dest_dir / src.name)


def parse_record(raw: bytes) -> dict | None:
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("digits", None), str):
        return None
    if rec["digits"] and rec["digits"] not in STATUS_BY_DIGIT:
        return None
    if not isinstance(rec.get("order_code"), str) or not isinstance(rec.get("spooled_at"), (int, float)):
        return None
    return rec


class SpoolIntake:
    MAX_CALL_SECONDS = 600.0       # a fallback call longer than this (start to key) is not believed

    def __init__(self, reactor, spool_dir, journal, sink, tokens=None):
        self.reactor = reactor
        self.dir = Path(spool_dir)
        self.journal = journal
        self.sink = sink
        self.tokens = tokens

    def _thread(self, fn, *args):
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), fn, *args)

    async def take_in(self) -> dict:
        counts = {"answers": 0, "no_answer": 0, "bad": 0, "failed": 0, "refused": 0}
        for name in await self._thread(_list, self.dir / "new"):
            path = self.dir / "new" / name
            rec = parse_record(await self._thread(_read, path))
            if rec is None:
                log.warn("keypad spool: {name} is not a spool record; moved to bad/", name=name)
                await self._thread(_move, path, self.dir / "bad")
                counts["bad"] += 1
                continue
            outcome = await self._take(rec, name)
            counts[outcome] += 1
            await self._thread(_move, path, self.dir / {"failed": "failed", "refused": "refused"}.get(outcome, "done"))
        if any(counts.values()):
            log.info("keypad spool taken in: {counts}", counts=counts)
        return counts

    async def _take(self, rec: dict, name: str) -> str:
        at = datetime.fromtimestamp(rec["spooled_at"], tz=timezone.utc)
        delivery = rec.get("delivery_id")
        if self.tokens is not None and not await self._admitted(rec, name):
            await self.journal.record(KeypadEntry(
                call_id=str(rec.get("call_id", ""))[:200], caller=rec.get("phone"), digits=rec["digits"],
                script="order-fallback", state="refused", order_code=rec["order_code"],
                note="spooled answer refused: its order-call token does not hold", received_at=at,
                meta={"spool_file": name}))
            return "refused"
        entry = KeypadEntry(call_id=str(rec.get("call_id", ""))[:200], caller=rec.get("phone"),
                            digits=rec["digits"], script=str(rec.get("script", "order-fallback"))[:40],
                            state="new" if rec["digits"] else "parsed", order_code=rec["order_code"],
                            note=rec.get("note") or "spooled by the fallback AGI while the gateway was down",
                            delivery_id=int(delivery) if str(delivery or "").isdigit() else None,
                            received_at=at, meta={"spool_file": name})
        if not rec["digits"]:
            await self.journal.no_answer(entry)
            return "no_answer"
        raw_id = await self.journal.record(entry)
        try:
            await self.sink.keypad_answer(KeypadAnswer(raw_id=raw_id, caller=rec.get("phone") or "",
                                                       digit=rec["digits"], call_id=entry.call_id,
                                                       received_at=at, order_code=rec["order_code"]))
        except Exception:  # noqa: BLE001 - kept raw; the file goes to failed/ for a person
            log.failure("keypad spool: feedback engine did not take {name} (raw {raw_id})", name=name,
                        raw_id=raw_id)
            return "failed"
        return "answers"

    async def _admitted(self, rec: dict, name: str) -> bool:
        started = rec.get("started_at")
        if not isinstance(started, (int, float)) or not 0 <= rec["spooled_at"] - started <= self.MAX_CALL_SECONDS:
            started = None          # no believable call start: the token is checked as of now
        token = rec.get("token")
        delivery = rec.get("delivery_id")
        return await self.tokens.admit(
            call_id=str(rec.get("call_id", ""))[:200], order_code=rec["order_code"],
            token=token if isinstance(token, str) else None,
            delivery=str(delivery) if delivery is not None else None,
            phone=rec.get("phone") if isinstance(rec.get("phone"), str) else None,
            peer=f"spool:{name}", at=started)
