"""Taking in the keypad answers the classic-AGI fallback spooled while the gateway was down.

On start the gateway reads spool/new/*.json (oldest first), stores each raw in the keypad journal
(committed), hands answers to the feedback engine, and moves the file to done/ (failed/ when the
engine refused to take it, bad/ when the file is not a spool record: kept for a person to see).
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
    def __init__(self, reactor, spool_dir, journal, sink):
        self.reactor = reactor
        self.dir = Path(spool_dir)
        self.journal = journal
        self.sink = sink

    def _thread(self, fn, *args):
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), fn, *args)

    async def take_in(self) -> dict:
        counts = {"answers": 0, "no_answer": 0, "bad": 0, "failed": 0}
        for name in await self._thread(_list, self.dir / "new"):
            path = self.dir / "new" / name
            rec = parse_record(await self._thread(_read, path))
            if rec is None:
                log.warn("keypad spool: {name} is not a spool record; moved to bad/", name=name)
                await self._thread(_move, path, self.dir / "bad")
                counts["bad"] += 1
                continue
            ok = await self._take(rec, name)
            counts["failed" if not ok else "answers" if rec["digits"] else "no_answer"] += 1
            await self._thread(_move, path, self.dir / ("done" if ok else "failed"))
        if any(counts.values()):
            log.info("keypad spool taken in: {counts}", counts=counts)
        return counts

    async def _take(self, rec: dict, name: str) -> bool:
        at = datetime.fromtimestamp(rec["spooled_at"], tz=timezone.utc)
        delivery = rec.get("delivery_id")
        entry = KeypadEntry(call_id=str(rec.get("call_id", ""))[:200], caller=rec.get("phone"),
                            digits=rec["digits"], script=str(rec.get("script", "order-fallback"))[:40],
                            state="new" if rec["digits"] else "parsed", order_code=rec["order_code"],
                            note=rec.get("note") or "spooled by the fallback AGI while the gateway was down",
                            delivery_id=int(delivery) if str(delivery or "").isdigit() else None,
                            received_at=at, meta={"spool_file": name})
        if not rec["digits"]:
            await self.journal.no_answer(entry)
            return True
        raw_id = await self.journal.record(entry)
        try:
            await self.sink.keypad_answer(KeypadAnswer(raw_id=raw_id, caller=rec.get("phone") or "",
                                                       digit=rec["digits"], call_id=entry.call_id,
                                                       received_at=at, order_code=rec["order_code"]))
        except Exception:  # noqa: BLE001 - kept raw; the file goes to failed/ for a person
            log.failure("keypad spool: feedback engine did not take {name} (raw {raw_id})", name=name,
                        raw_id=raw_id)
            return False
        return True
