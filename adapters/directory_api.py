"""API routes for the directory: GET /teams (with commanders and deputies)."""
from __future__ import annotations

from dataclasses import asdict

from adapters.api import ApiError, Router
from gateway.directory.store import list_teams


def add_directory_routes(router: Router, database) -> None:
    def teams(req):
        kind = req.query.get("kind")
        if kind and kind not in ("public", "professional", "expert"):
            raise ApiError(400, f"kind must be public, professional or expert, got {kind!r}")

        def done(views):
            out = []
            for v in views:
                if kind and v.kind != kind:
                    continue
                item = asdict(v)
                item["commander"] = {"name": v.commander[0], "phone": v.commander[1]} if v.commander else None
                item["deputies"] = [{"name": n, "phone": p} for n, p in v.deputies]
                out.append(item)
            return 200, {"teams": out, "count": len(out)}
        return database.run(list_teams).addCallback(done)

    router.add("GET", "/teams", teams)
