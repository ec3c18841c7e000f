"""A hotline call run through the project's dialplan (dialplans/extensions.conf), step by step,
as Asterisk runs it: each priority is a Newexten on AMI, Set a VarSet, AGI a FastAGI connection
to the host:port its URL names, Queue the call-takers' queue, TIMEOUT(absolute) a deadline that
sends the channel to the `T` extension.  Nothing of the gateway is consulted unless the dialplan
says AGI.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from twisted.internet import defer

from gateway.ami.emulator.dialplan import Dialplan, DialplanError, substitute
from gateway.ami.emulator.model import Chan, event
from gateway.ami.emulator.scenarios import HotlineCall, _ev, _hangup, _newexten, _varset

MAX_STEPS = 500          # a dialplan that loops without waiting is a bug, not a call


@dataclass
class DialplanHotlineCall(HotlineCall):
    plan: Dialplan = None
    pbx: object = None                 # the EmulatedPbx: _run_agi, calltakers_logged_in
    caller_moves: object = None
    call: object = None
    globals_override: dict = None

    def steps(self, em):
        try:
            yield from self._run(em)
        finally:
            if not self.call.ended.called:
                self.call.ended.callback(self.call)

    def _run(self, em):
        ids = em.ids
        s = 1.0 / self.speed if self.speed else 0.0
        name = f"{self.tech}-{ids.suffix()}"
        c = Chan(name, ids.uniqueid(), state=4, cid_num=self.caller, cid_name=self.caller_name,
                 context=self.context, exten=self.line, channelvars=em.channelvars)
        c.conn_num, c.conn_name = self.caller, self.caller_name
        self.result.update(uniqueid=c.uniqueid, linkedid=c.linkedid, channel=c.name)
        self.call.info.update(self.result)
        yield 0.0, [_ev("Newchannel", c)]
        if self.outcome == "failed":
            yield 0.2 * s, [_ev("HangupRequest", c, [("Cause", "38")]), _hangup(c, 38, "Network out of order")]
            return
        variables = {**self.plan.globals, **(self.globals_override or {})}
        context, exten, i = self.context, self.line, 0
        deadline = None                # TIMEOUT(absolute), on the emulator's clock

        def lookup(var):
            if var == "EXTEN":
                return exten
            return c.vars.get(var, variables.get(var, ""))

        def function(fname, args):
            if fname == "QUEUE_MEMBER":
                queue, _, what = args.partition(",")
                return self.pbx.queue_member(queue.strip(), what.strip())
            raise DialplanError(f"{self.plan.source}: function {fname}() is not known to the emulated PBX")

        def goto(args):
            parts = [p.strip() for p in args.split(",")]
            if len(parts) == 1:
                return context, exten, self.plan.index(context, exten, parts[0])
            if len(parts) == 2:
                return context, parts[0], self.plan.index(context, parts[0], parts[1])
            return parts[0], parts[1], self.plan.index(parts[0], parts[1], parts[2])

        for _ in range(MAX_STEPS):
            steps = self.plan.steps(context, exten)
            if i >= len(steps):                          # off the end: Asterisk hangs up
                yield 0.0, [_hangup(c)]
                return
            step = steps[i]
            c.context, c.exten, c.priority = context, exten, step.priority
            args = substitute(step.args, lookup, function)
            app = step.app
            if app == "Queue":
                queue = args.split(",")[0]
                self.queue = queue
                if self.pbx.queue_member(queue, "logged") == 0:
                    self.calltaker = ""
                yield from self.queue_steps(em, c, args)
                return
            ev = [_newexten(c, app, args)]
            i += 1
            if app == "Answer":
                c.state = 6
                ev.append(_ev("Newstate", c))
            elif app == "Set":
                var, _, value = args.partition("=")
                if var == "TIMEOUT(absolute)":
                    secs = float(value or 0)
                    deadline = em.clock.seconds() + secs if secs > 0 else None
                else:
                    c.vars[var.lstrip("_")] = value
                    ev.append(_varset(c, var, value))
            elif app == "Goto":
                context, exten, i = goto(args)
            elif app == "GotoIf":
                cond, _, dests = args.partition("?")
                yes, _, no = dests.partition(":")
                target = yes if cond.strip() not in ("", "0") else no
                if target:
                    context, exten, i = goto(target)
            elif app == "UserEvent":
                uname, *fields = [f.strip() for f in args.split(",")]
                pairs = [("UserEvent", uname)] + [tuple(x.strip() for x in f.split(":", 1)) for f in fields if ":" in f]
                ev.append(event("UserEvent", c.block(), pairs, cls="user"))
            elif app == "Hangup":
                ev.append(_hangup(c))
                yield 0.0, ev
                return
            elif app in ("NoOp", "Playback", "Dial"):
                pass
            elif app == "AGI":
                yield 0.0, ev
                outcome = {}
                yield self._agi(em, c, args, deadline, outcome), []
                if outcome["status"] == "TIMEOUT":
                    # Asterisk: the absolute timeout hangs up the AGI and jumps to `T`
                    deadline = None
                    if not self.plan.has(context, "T"):
                        yield 0.0, [_hangup(c)]
                        return
                    exten, i = "T", 0
                    yield 0.0, [_varset(c, "AGISTATUS", "HANGUP")]
                    continue
                c.vars["AGISTATUS"] = outcome["status"]
                if outcome["status"] == "HANGUP":      # the caller is gone: nothing more runs
                    yield 0.0, [_varset(c, "AGISTATUS", "HANGUP"),
                                                 _ev("SoftHangupRequest", c, [("Cause", "16")]), _hangup(c)]
                    return
                yield 0.0, [_varset(c, "AGISTATUS", outcome["status"])]
                continue
            else:                                     # Dialplan.parse refused it already
                raise DialplanError(f"application {app} not runnable")
            yield 0.0, ev
        raise DialplanError(f"{self.plan.source}: more than {MAX_STEPS} steps without waiting (a loop?)")

    def _agi(self, em, c, url: str, deadline, outcome: dict) -> defer.Deferred:
        """Run the FastAGI session the URL names; "TIMEOUT" when TIMEOUT(absolute) passes first."""
        u = urlsplit(url)
        script = u.path.lstrip("/") + (f"?{u.query}" if u.query else "")
        d = self.pbx._run_agi(self.call, script, self.caller_moves, callerid=self.caller,
                              variables=dict(c.vars), channel=c.name, uniqueid=c.uniqueid, context=c.context,
                              extension=c.exten, priority=c.priority, host=u.hostname,
                              port=u.port or 4573)
        done = defer.Deferred()
        timer = None
        if deadline is not None:
            def timed_out():
                if not done.called:
                    self.pbx.drop_agi(self.call)
                    outcome["status"] = "TIMEOUT"
                    done.callback(None)
            timer = em.clock.callLater(max(0.0, deadline - em.clock.seconds()), timed_out)

        def ended(status):
            if timer is not None and timer.active():
                timer.cancel()
            if not done.called:
                outcome["status"] = status
                done.callback(None)
        d.addBoth(ended)
        return done
