"""API routes for the directory: GET /teams (with commanders and deputies), and POST
/directory/import (admin): a whole roster, checked before anything is written, all or nothing."""
from __future__ import annotations

from dataclasses import asdict

from adapters.api import Router, refuse
from adapters.contract import Field, Response
from gateway.directory.roster import RosterError, parse_roster_text
from gateway.directory.store import import_roster, list_teams

IMPORT_MAX = 2 * 1024 * 1024
IMPORT_BODY = (Field("format", "string", "the roster's format, as its file would be", required=True,
                     enum=("yaml", "csv")),
               Field("content", "string", "the roster file's text (see deploy/examples/roster.yaml)",
                     required=True, multiline=True, max_length=IMPORT_MAX // 2, not_blank=True))


def add_directory_routes(router: Router, database) -> None:
    def teams(req):
        kind = req.query.get("kind")

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

    def import_directory(req):
        source = f"api:{req.principal.name}"
        try:
            roster = parse_roster_text(req.body["content"], req.body["format"], "content")
        except RosterError as e:
            raise refuse(422, "content", f"roster refused, nothing imported: {len(e.problems)} problem(s)",
                         problems=e.lines()) from None

        def refused(f):
            f.trap(RosterError)
            raise refuse(422, "content", "roster refused, nothing imported", problems=f.value.lines())
        return database.run(import_roster, roster, source=source, actor=req.actor) \
            .addCallbacks(lambda s: (200, asdict(s)), refused)

    router.add("GET", "/teams", teams, summary="teams with commander and deputy",
               query=(Field("kind", "string", "only teams of this kind", enum=("public", "professional", "expert")),),
               ok={200: Response("the teams", {"type": "object", "required": ["teams", "count"]})})
    router.add("POST", "/directory/import", import_directory, scope="admin", body=IMPORT_BODY, max_body=IMPORT_MAX,
               summary="import a whole roster (YAML or CSV text): checked first, all or nothing; teams and "
                       "members no longer listed are kept, inactive",
               ok={200: Response("what was imported", {"type": "object", "required": ["teams", "members"]})})
